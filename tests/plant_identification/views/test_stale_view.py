"""Stale-if-error over HTTP: with the providers out, their last answers for the same photo make a 200 degraded
answer (entries marked ``stale`` with their age) instead of a 503, stored and read back as answered."""

import io

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, jpeg_bytes

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")


@pytest.fixture(autouse=True)
def _answers_go_stale_at_once(settings):
    """A TTL of 0: every cached answer is past its TTL at once, so only a failure can bring it back."""
    settings.PLANT_ID_CACHE_TTL = 0
    settings.PLANTNET_CACHE_TTL = 0


def post(client, color=(40, 120, 40)):
    file = io.BytesIO(jpeg_bytes(color))
    file.name = "leaf.jpg"
    return client.post(IDENTIFY, {"images": [file]}, format="multipart")


def answered_once(client, mocked_responses, *, plantnet=True) -> dict:
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    if plantnet:
        mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)
    response = post(client)
    assert response.status_code == 200, response.content
    mocked_responses.reset()
    return response.json()


def test_both_circuits_open_answers_200_degraded_from_the_last_answers(api_client, mocked_responses):
    first = answered_once(api_client, mocked_responses)
    for provider in Provider:
        breaker_for(provider).open()

    response = post(api_client)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["degraded"] is True
    assert body["id"] != first["id"]
    assert body["suggestions"] == first["suggestions"]
    for provider in ("plant_id", "plantnet"):
        entry = body["providers"][provider]
        assert entry["status"] == "circuit_open"
        assert entry["cached"] is True
        assert entry["stale"] is True
        assert isinstance(entry["age_s"], int)
        assert entry["age_s"] >= 0
    assert "No provider answered now" in body["message"]
    assert "Earlier answers for these images were used" in body["message"]
    assert len(mocked_responses.calls) == 0  # open circuits: nobody was asked


def test_the_stale_answer_is_stored_and_read_back_alike(api_client, mocked_responses):
    answered_once(api_client, mocked_responses)
    breaker_for(Provider.PLANTNET).open()
    breaker_for(Provider.PLANT_ID).open()

    body = post(api_client).json()
    read = api_client.get(reverse("plant_identification:identification-detail", args=[body["id"]]))

    assert read.status_code == 200
    assert read.json() == body
    stored = ProviderResult.objects.get(identification_id=body["id"], provider="plantnet")
    assert (stored.status, stored.cached, stored.stale) == ("circuit_open", True, True)
    assert stored.raw_payload is not None  # the answer it stood in with
    assert stored.error_class == "ProviderCircuitOpenError"


def test_one_provider_failing_with_an_earlier_answer_keeps_the_full_merge(api_client, mocked_responses):
    first = answered_once(api_client, mocked_responses)
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    mocked_responses.post(PLANTNET_URL, status=500, json={"statusCode": 500, "error": "Internal Server Error"})

    body = post(api_client).json()

    assert body["providers"]["plant_id"] == {
        "status": "ok",
        "latency_ms": body["providers"]["plant_id"]["latency_ms"],
        "cached": False,
    }
    assert body["providers"]["plantnet"]["status"] == "error"
    assert body["providers"]["plantnet"]["stale"] is True
    assert body["suggestions"] == first["suggestions"]  # both providers' names, as when both answered
    assert body["degraded"] is True
    assert body["message"].startswith("Partial result from Plant.id only (Pl@ntNet error).")


def test_a_provider_with_no_earlier_answer_stays_missing(api_client, mocked_responses):
    answered_once(api_client, mocked_responses, plantnet=False)  # Pl@ntNet failed the first time
    for provider in Provider:
        breaker_for(provider).open()

    body = post(api_client).json()

    assert body["providers"]["plant_id"]["stale"] is True
    assert "stale" not in body["providers"]["plantnet"]
    assert body["providers"]["plantnet"]["cached"] is False


def test_other_photos_get_the_503(api_client, mocked_responses):
    answered_once(api_client, mocked_responses)
    for provider in Provider:
        breaker_for(provider).open()

    response = post(api_client, color=(200, 30, 30))

    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1


def test_with_stale_answers_off_both_out_is_a_503(settings, api_client, mocked_responses):
    settings.PLANT_ID_STALE_MAX_AGE = 0
    settings.PLANTNET_STALE_MAX_AGE = 0
    answered_once(api_client, mocked_responses)
    for provider in Provider:
        breaker_for(provider).open()

    assert post(api_client).status_code == 503
    assert Identification.objects.count() == 1
