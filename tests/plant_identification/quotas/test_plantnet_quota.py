"""Pl@ntNet's daily quota: its body and RateLimit headers are recorded fleet-wide; 0 left holds it until the reset."""

import io
import math
import time

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.clients.plantnet import plantnet_quota
from apps.plant_identification.periods import seconds_to_utc_midnight
from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.report import quota_report
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, fixture_text, jpeg_bytes

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")
HEADERS = {"RateLimit-Policy": '"dailyQuota";q=500;w=86400'}


def identify(client, color=(40, 120, 40)):
    upload = io.BytesIO(jpeg_bytes(color))
    upload.name = "leaf.jpg"
    return client.post(IDENTIFY, {"images": [upload]}, format="multipart")


def plantnet_answer(remaining, **headers):
    body = fixture_json("plantnet_identify_ok.json")
    body["remainingIdentificationRequests"] = remaining
    return {"json": body, "headers": {**HEADERS, **headers}}


def plantnet_calls(mocked):
    return sum(1 for call in mocked.calls if call.request.url.startswith(PLANTNET_URL))


def test_the_body_and_headers_of_an_answer_are_recorded(api_client, plant_id_ok):
    plant_id_ok.post(PLANTNET_URL, **plantnet_answer(321, RateLimit='"dailyQuota";r=321;t=7200'))
    assert identify(api_client).json()["providers"]["plantnet"]["status"] == "ok"
    report = quota_report(Provider.PLANTNET)
    assert (report.remaining, report.limit, report.source, report.exhausted) == (321, 500, "response", False)
    assert report.reset_at - report.observed_at == 7200


def test_an_error_response_with_headers_is_recorded_too(api_client, plant_id_ok):
    plant_id_ok.post(
        PLANTNET_URL,
        status=404,
        json=fixture_json("plantnet_species_not_found.json"),
        headers={**HEADERS, "RateLimit": '"dailyQuota";r=41;t=100'},
    )
    assert identify(api_client).json()["providers"]["plantnet"]["status"] == "no_match"
    assert quota_report(Provider.PLANTNET).remaining == 41


def test_zero_left_in_the_body_holds_the_circuit_until_utc_midnight(api_client, plant_id_ok, clock):
    plant_id_ok.post(PLANTNET_URL, **plantnet_answer(0))  # no RateLimit header: the reset is 00:00 UTC
    first = identify(api_client).json()
    assert first["providers"]["plantnet"]["status"] == "ok"  # the last identification of the day still answers
    snapshot = breaker_for(Provider.PLANTNET).snapshot()
    assert (snapshot.state, snapshot.reason) == ("open", "quota")
    assert snapshot.retry_after == pytest.approx(seconds_to_utc_midnight(time.time()), abs=5)
    assert quota_report(Provider.PLANTNET).exhausted

    second = identify(api_client, (200, 30, 30)).json()
    assert second["providers"]["plantnet"]["status"] == "quota_exhausted"
    assert plantnet_calls(plant_id_ok) == 1


def test_zero_left_in_the_header_is_not_called_until_its_t(api_client, plant_id_ok, clock):
    plant_id_ok.post(PLANTNET_URL, **plantnet_answer(0, RateLimit='"dailyQuota";r=0;t=600'))
    identify(api_client)
    clock.advance(599)
    assert identify(api_client, (10, 10, 200)).json()["providers"]["plantnet"]["status"] == "quota_exhausted"
    assert plantnet_calls(plant_id_ok) == 1

    clock.advance(1)  # the quota is back: called again, and a fresh count is recorded
    plant_id_ok.replace("POST", PLANTNET_URL, **plantnet_answer(499, RateLimit='"dailyQuota";r=499;t=86000'))
    assert identify(api_client, (200, 200, 10)).json()["providers"]["plantnet"]["status"] == "ok"
    assert plantnet_calls(plant_id_ok) == 2
    assert quota_report(Provider.PLANTNET).remaining == 499


def test_with_plant_id_out_too_the_503_says_when_the_quota_is_back(api_client, mocked_responses, clock):
    mocked_responses.post(PLANT_ID_URL, status=429, body=fixture_text("plant_id_insufficient_credits.txt"))
    mocked_responses.post(PLANTNET_URL, **plantnet_answer(0, RateLimit='"dailyQuota";r=0;t=1800'))
    identify(api_client)  # Plant.id: out of credits (held for staff); Pl@ntNet: its last one
    response = identify(api_client, (90, 20, 160))
    assert response.status_code == 503
    assert response.json()["providers"]["plantnet"]["status"] == "quota_exhausted"
    assert int(response["Retry-After"]) == 1800


def test_a_cached_answer_is_still_served_while_the_quota_is_spent(api_client, plant_id_ok, clock):
    plant_id_ok.post(PLANTNET_URL, **plantnet_answer(0, RateLimit='"dailyQuota";r=0;t=600'))
    identify(api_client)
    again = identify(api_client).json()["providers"]["plantnet"]  # the same photo
    assert (again["status"], again["cached"]) == ("ok", True)
    assert plantnet_calls(plant_id_ok) == 1


def test_health_shows_the_quota(anonymous_client, api_client, plant_id_ok, clock):
    plant_id_ok.post(PLANTNET_URL, **plantnet_answer(0, RateLimit='"dailyQuota";r=0;t=600'))
    identify(api_client)
    body = anonymous_client.get(reverse("health")).json()
    quota = body["quota"]["plantnet"]
    assert (quota["remaining"], quota["limit"], quota["exhausted"], quota["source"]) == (0, 500, True, "response")
    assert quota["reset_at"].endswith("Z")
    assert quota["observed_at"].endswith("Z")
    assert (quota["credits"], quota["budget"]) == (None, None)
    assert body["plantnet_available"] is False
    assert body["circuit_breakers"]["plantnet"]["reason"] == "quota"


class _Response:
    def __init__(self, status_code, text="", headers=None):
        self.status_code, self.text, self.headers = status_code, text, headers or {}


@pytest.mark.parametrize(
    ("response", "remaining", "reset"),
    [
        (_Response(200, '{"remainingIdentificationRequests": 17}'), 17, None),
        (_Response(200, '{"remainingIdentificationRequests": 3}', {"RateLimit": '"q";r=2;t=50'}), 2, 50),
        (_Response(429, "{}", {"RateLimit": '"dailyQuota";r=0;t=70'}), 0, 70),
        (_Response(429, "{}"), 0, None),  # a 429 without headers: none left until 00:00 UTC
        (_Response(500, '{"remainingIdentificationRequests": 9}'), None, None),  # only a 2xx body counts
    ],
)
def test_what_a_response_says(response, remaining, reset):
    now = 1_700_000_000.0
    seen = plantnet_quota(response, now)
    if remaining is None:
        assert seen is None
        return
    assert seen["remaining"] == remaining
    expected = reset if reset is not None else seconds_to_utc_midnight(now)
    assert math.isclose(seen["reset_at"] - now, expected)
