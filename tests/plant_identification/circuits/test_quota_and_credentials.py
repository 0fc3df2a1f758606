"""Quota and credentials are not outages: the circuit is held open for as long as the provider says."""

import logging
import math
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.periods import seconds_until_period_end
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, fixture_text, jpeg_bytes

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")


def identify(client, color=(40, 120, 40)):
    import io

    upload = io.BytesIO(jpeg_bytes(color))
    upload.name = "leaf.jpg"
    return client.post(IDENTIFY, {"images": [upload]}, format="multipart")


def plantnet_calls(mocked):
    return sum(1 for call in mocked.calls if call.request.url.startswith(PLANTNET_URL))


def test_plantnet_ratelimit_header_holds_the_circuit_until_the_quota_resets(api_client, plant_id_ok, clock):
    plant_id_ok.post(
        PLANTNET_URL,
        status=429,
        body=fixture_text("plantnet_too_many_requests.json"),
        headers={"RateLimit": '"dailyQuota";r=0;t=3600'},
    )
    assert identify(api_client).json()["providers"]["plantnet"]["status"] == "quota_exhausted"
    snapshot = breaker_for(Provider.PLANTNET).snapshot()
    assert (snapshot.state, snapshot.reason, snapshot.retry_after, snapshot.fail_count) == ("open", "quota", 3600, 0)

    clock.advance(3599)  # not probed before the quota is back: no call, reported as quota, not outage
    body = identify(api_client, (200, 10, 10)).json()
    assert body["providers"]["plantnet"]["status"] == "quota_exhausted"
    assert plantnet_calls(plant_id_ok) == 1

    clock.advance(1)
    plant_id_ok.replace("POST", PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    assert identify(api_client, (10, 10, 200)).json()["providers"]["plantnet"]["status"] == "ok"


def test_plant_id_day_limit_holds_until_the_utc_day_ends(api_client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=429, body=fixture_text("plant_id_day_limit.txt"))
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    identify(api_client)
    wait = breaker_for(Provider.PLANT_ID).snapshot().retry_after
    assert wait == pytest.approx(seconds_until_period_end("day"), abs=5)


def test_out_of_credits_holds_until_staff_close_it(api_client, mocked_responses, clock, admin_client):
    mocked_responses.post(PLANT_ID_URL, status=429, body=fixture_text("plant_id_insufficient_credits.txt"))
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    identify(api_client)
    clock.advance(30 * 86400)
    snapshot = breaker_for(Provider.PLANT_ID).snapshot()
    assert (snapshot.state, snapshot.reason, snapshot.retry_after) == ("open", "quota", None)
    assert identify(api_client, (1, 200, 1)).json()["providers"]["plant_id"]["status"] == "quota_exhausted"

    admin_client.post(reverse("plant_identification:circuit-close", args=["plant_id"]), {"reason": "topped up"})
    assert breaker_for(Provider.PLANT_ID).snapshot().state == "closed"


def test_rejected_credentials_hold_until_staff_close_it_and_name_the_variable(
    api_client, mocked_responses, clock, caplog
):
    mocked_responses.post(PLANT_ID_URL, status=401, body=fixture_text("plant_id_api_key_not_found.txt"))
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    with caplog.at_level(logging.ERROR):
        identify(api_client)
    assert "PLANT_ID_API_KEY" in caplog.text
    clock.advance(86400)
    snapshot = breaker_for(Provider.PLANT_ID).snapshot()
    assert (snapshot.state, snapshot.reason, snapshot.retry_after) == ("open", "credentials", None)
    identify(api_client, (90, 90, 9))
    assert sum(1 for c in mocked_responses.calls if c.request.url.startswith(PLANT_ID_URL)) == 1


def test_the_request_that_finds_both_keys_rejected_says_come_back_later(api_client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=401, body=fixture_text("plant_id_api_key_not_found.txt"))
    mocked_responses.post(PLANTNET_URL, status=401, json=fixture_json("plantnet_unauthorized.json"))
    response = identify(api_client)
    assert response.status_code == 503
    assert int(response["Retry-After"]) == 3600  # held until staff close them: not "retry in 1 s"


def test_both_held_for_staff_says_come_back_later(api_client, mocked_responses):
    for provider in Provider:
        breaker_for(provider).hold_open(math.inf, "credentials")
    response = identify(api_client)
    assert response.status_code == 503
    assert int(response["Retry-After"]) == 3600


@pytest.mark.parametrize(
    ("now", "period", "seconds"),
    [
        (datetime(2026, 11, 23, 23, 0, tzinfo=UTC), "day", 3600),
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), "week", 6.5 * 86400),  # a Monday noon -> next Monday
        (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), "week", 1800),  # Sunday night
        (datetime(2026, 12, 31, 12, 0, tzinfo=UTC), "month", 12 * 3600),
        (datetime(2026, 2, 28, 0, 0, tzinfo=UTC), "month", 86400),
    ],
)
def test_quota_periods_end_at_utc_boundaries(now, period, seconds):
    assert seconds_until_period_end(period, now) == seconds
