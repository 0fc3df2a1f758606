"""Plant.id v3 client: the request we send and how each answer and error is classified."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.clients import PlantIdClient
from apps.plant_identification.clients.plant_id import DISEASE_DETAIL_KEYS, PLANT_DETAIL_KEYS
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
)
from apps.plant_identification.periods import seconds_until_period_end
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
    assert sent.headers["Content-Type"] == "application/json"
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
    assert answer.suggestions[0].details["similar_images"][0]["id"] == "3e1f0c9d8b7a6e5d4c3b2a190817263544536271"


def test_every_documented_plant_view_and_similar_image_field_is_kept(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_all_details.json"), status=201)
    top, second = client.identify(make_request()).suggestions

    details = top.details
    assert (details["name_authority"], details["rank"], details["inaturalist_id"]) == (
        "Monstera deliciosa Liebm.",
        "species",
        100101,
    )
    assert details["best_light_condition"].startswith("Bright, indirect light")
    assert details["common_uses"].startswith("Grown as an ornamental")
    assert details["taxonomy"]["order"] == "Alismatales"
    assert details["description_attribution"]["license_url"] == "https://creativecommons.org/licenses/by-sa/3.0/"
    assert details["representative_images"][1]["value"].endswith("cd2e3f4a.jpg")
    assert details["similar_images"] == [
        {
            "id": "3e1f0c9d8b7a6e5d4c3b2a190817263544536271",
            "url": "https://plant-id.example-cdn.invalid/similar_images/5/3e1/f0c9d8b7.jpeg",
            "url_small": "https://plant-id.example-cdn.invalid/similar_images/5/3e1/f0c9d8b7.small.jpeg",
            "similarity": 0.806,
            "citation": "B. Botanist",
            "license_name": "CC BY 4.0",
            "license_url": "https://creativecommons.org/licenses/by/4.0/",
        },
        {
            "id": "8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716",
            "url": "https://plant-id.example-cdn.invalid/similar_images/5/8d7/c6b5a4f3.jpeg",
            "url_small": "https://plant-id.example-cdn.invalid/similar_images/5/8d7/c6b5a4f3.small.jpeg",
            "similarity": 0.744,
            "citation": None,  # the optional fields are not always sent
            "license_name": None,
            "license_url": None,
        },
    ]
    assert "toxicity" not in second.details  # a view the service has no data for comes back null


def test_diseases_keep_their_id_redundant_flag_and_similar_images(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_all_details.json"), status=201)
    overwatering, deficiency = client.identify(make_request()).health["diseases"]

    assert overwatering["id"] == "5c4b3a2918273645"
    assert [image["id"] for image in overwatering["similar_images"]] == [
        "6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b",
        "9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    ]
    assert overwatering["similar_images"][0]["license_url"] == "https://creativecommons.org/licenses/by/4.0/"
    assert overwatering["treatment"]["biological"][0].startswith("Trim soft roots")
    assert "redundant" not in overwatering
    assert (deficiency["redundant"], deficiency["local_name"]) == (False, "Nutrient deficiency")


def test_a_health_only_answer_is_an_answer_without_species_not_an_outage(client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_health_only.json"), status=201)
    answer = client.identify(make_request())

    assert answer.status == ProviderStatus.NO_MATCH
    assert answer.is_plant == {"probability": 0.9968, "binary": True}
    assert answer.health["is_healthy"] == {"probability": 0.22, "binary": False}
    overwatering, fungi = answer.health["diseases"]
    assert overwatering["similar_images"][1]["citation"] is None
    assert (fungi["id"], fungi["redundant"], fungi["cause"]) == ("3e2d1c0b9a8f7e6d", True, "Fungi")
    breaker = breaker_for(Provider.PLANT_ID)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_the_request_asks_for_every_view_the_parser_keeps(client, plant_id_ok):
    client.identify(make_request())
    asked = set(parse_qs(urlsplit(plant_id_ok.calls[0].request.url).query)["details"][0].split(","))
    assert {*PLANT_DETAIL_KEYS, *DISEASE_DETAIL_KEYS, "images", "image", "common_names"} - {"language"} <= asked


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


def test_the_same_photo_comes_from_the_answer_cache_and_another_photo_does_not(client, plant_id_ok):
    """The key names each photo by the digest of its bytes, not by the base64 text sent."""
    first, again = client.identify(make_request()), client.identify(make_request())
    other = client.identify(make_request(color=(120, 40, 40)))

    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert len(plant_id_ok.calls) == 2
    assert client.cache_key(client.build_request(make_request())) != client.cache_key(
        client.build_request(make_request(color=(120, 40, 40)))
    )
