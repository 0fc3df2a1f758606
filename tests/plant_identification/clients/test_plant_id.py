"""Plant.id v3 client: the request we send and how each answer and error is classified."""

import base64
import json

import pytest
from django.conf import settings

from apps.plant_identification.clients import PlantIdClient
from apps.plant_identification.clients.base import seconds_until_period_end
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
)
from apps.plant_identification.providers import Provider
from apps.plant_identification.types import ProviderStatus
from tests.factories import PLANT_ID_URL, fixture_json, fixture_text, make_request


@pytest.fixture
def client():
    return PlantIdClient(api_key=settings.PLANT_ID_API_KEY, base_url=settings.PLANT_ID_API_URL, timeout=5)


def test_request_uses_api_key_header_base64_json_and_details_in_query(client, plant_id_ok):
    request = make_request(latitude=52.37, longitude=4.89)
    client.identify(request)

    sent = plant_id_ok.calls[0].request
    assert sent.headers["Api-Key"] == settings.PLANT_ID_API_KEY
    assert sent.url.startswith(PLANT_ID_URL + "?")
    assert "details=common_names%2Curl%2Cdescription" in sent.url
    body = json.loads(sent.body)
    assert body["images"] == [base64.b64encode(request.images[0].data_for(Provider.PLANT_ID)).decode()]
    assert body["health"] == "all"
    assert (body["latitude"], body["longitude"]) == (52.37, 4.89)
    assert settings.PLANT_ID_API_KEY not in sent.url


def test_health_is_asked_in_the_same_single_call(client, plant_id_ok):
    answer = client.identify(make_request())

    assert len(plant_id_ok.calls) == 1
    assert answer.health["is_healthy"] == {"probability": 0.31, "binary": False}
    root_rot = answer.health["diseases"][0]
    assert root_rot["local_name"] == "Root rot"
    assert root_rot["treatment"]["prevention"][0].startswith("Water only")
    assert answer.health["question"]["options"]["yes"]["suggestion_index"] == 0


def test_without_diseases_no_health_is_requested(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_no_health.json"), status=201)
    answer = client.identify(make_request(include_diseases=False))

    assert "health" not in json.loads(mocked_responses.calls[0].request.body)
    assert answer.health is None
    assert "latitude" not in json.loads(mocked_responses.calls[0].request.body)


def test_201_identification_is_parsed(client, plant_id_ok):
    answer = client.identify(make_request())

    assert answer.status == ProviderStatus.OK
    assert answer.is_plant == {"probability": 0.9981, "binary": True}
    top, second = answer.suggestions
    assert (top.scientific_name, top.score) == ("Monstera deliciosa", 0.9412)
    assert top.common_names[0] == "Swiss cheese plant"
    assert (top.family, top.genus) == ("Araceae", "Monstera")
    assert top.details["description"].startswith("Evergreen climbing aroid")
    assert top.details["image"].endswith("ab1c2d3e.jpg")
    assert top.details["watering"] == {"min": 2, "max": 2}
    assert second.details["description"] is None  # a null detail view stays null


def test_not_a_plant_is_no_match(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_not_plant.json"), status=201)
    answer = client.identify(make_request())

    assert answer.status == ProviderStatus.NO_MATCH
    assert answer.is_plant["binary"] is False


def test_no_suggestions_is_no_match(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_empty.json"), status=201)
    assert client.identify(make_request()).status == ProviderStatus.NO_MATCH


def test_raw_classification_form_uses_species_list(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_raw.json"), status=201)
    answer = client.identify(make_request())
    assert [s.scientific_name for s in answer.suggestions] == ["Monstera deliciosa", "Monstera adansonii"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, "plant_id_invalid_image.txt", ProviderRejectedRequestError),
        (401, "plant_id_api_key_not_found.txt", ProviderAuthError),
        (429, "plant_id_insufficient_credits.txt", ProviderRateLimitedError),
        (429, "plant_id_day_limit.txt", ProviderRateLimitedError),
        (429, "plant_id_month_limit.txt", ProviderRateLimitedError),
    ],
)
def test_plain_text_errors_are_classified(client, mocked_responses, status, body, error):
    text = fixture_text(body)
    mocked_responses.post(PLANT_ID_URL, body=text, status=status, content_type="text/plain")

    with pytest.raises(error) as caught:
        client.identify(make_request())
    assert caught.value.status_code == status
    assert text[:40] in caught.value.message


SUGGESTIONS = '{"result": {"classification": {"suggestions": [%s]}}}'


@pytest.mark.parametrize(
    "body",
    [
        '{"result": {}}',
        "[]",
        '{"result": {"classification": 3}}',
        SUGGESTIONS % '{"name": null, "probability": 0.5}',
        SUGGESTIONS % '{"name": "Monstera deliciosa", "probability": 7}',
        SUGGESTIONS % '{"name": "Monstera deliciosa", "probability": 0.5, "details": {"common_names": [1]}}',
    ],
)
def test_malformed_success_body_is_a_response_error(client, mocked_responses, body):
    mocked_responses.post(PLANT_ID_URL, body=body, status=201)
    with pytest.raises(ProviderResponseError):
        client.identify(make_request())


@pytest.mark.parametrize(("body", "period"), [("plant_id_day_limit.txt", "day"), ("plant_id_month_limit.txt", "month")])
def test_a_credit_limit_is_back_when_its_period_ends(client, mocked_responses, body, period):
    mocked_responses.post(PLANT_ID_URL, body=fixture_text(body), status=429, content_type="text/plain")
    with pytest.raises(ProviderRateLimitedError) as caught:
        client.identify(make_request())
    assert caught.value.retry_after == pytest.approx(seconds_until_period_end(period), abs=5)
