"""Pl@ntNet v2 client: the multipart request we send and how each answer and error is classified."""

import pytest
from django.conf import settings

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
    ProviderUnavailableError,
)
from apps.plant_identification.providers import Provider
from apps.plant_identification.types import Organ, ProviderStatus
from tests.factories import PLANTNET_URL, fixture_json, fixture_text, make_request


@pytest.fixture
def client():
    return PlantNetClient(
        api_key=settings.PLANTNET_API_KEY, base_url=settings.PLANTNET_API_URL, timeout=5, project="all"
    )


def test_request_is_multipart_with_one_organ_per_image_and_key_in_query(client, plantnet_ok):
    request = make_request()
    request = make_request(images=request.images * 2, organs=(Organ.LEAF, Organ.AUTO))
    client.identify(request)

    sent = plantnet_ok.calls[0].request
    assert f"api-key={settings.PLANTNET_API_KEY}" in sent.url
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    body = sent.body
    assert body.count(b'name="images"') == 2
    assert body.count(b'name="organs"') == 2
    assert b"leaf" in body
    assert b"auto" in body
    assert settings.PLANTNET_API_KEY.encode() not in body


def test_200_identification_is_parsed(client, plantnet_ok):
    answer = client.identify(make_request())

    assert answer.status == ProviderStatus.OK
    top = answer.suggestions[0]
    assert (top.scientific_name, top.score) == ("Monstera deliciosa", 0.87654)
    assert (top.family, top.genus) == ("Araceae", "Monstera")
    assert top.details["gbif_id"] == "2868241"
    assert top.details["iucn_category"] == "LC"
    assert top.details["images"][0]["url"].endswith("/m/aaa111")
    assert answer.suggestions[2].details == {  # no gbif, no powo, no images
        "name_authority": "Thaumatophyllum bipinnatifidum (Schott ex Endl.) Sakur., Calazans & Mayo"
    }


def test_every_documented_result_field_is_kept(client, plantnet_ok):
    top = client.identify(make_request()).suggestions[0]

    assert top.details["name_authority"] == "Monstera deliciosa Liebm."
    assert (top.details["iucn_id"], top.details["powo_id"]) == ("000000", "87250-1")
    assert top.details["images"] == [
        {
            "organ": "leaf",
            "url": "https://bs.plantnet.example/image/m/aaa111",
            "url_small": "https://bs.plantnet.example/image/s/aaa111",
            "url_original": "https://bs.plantnet.example/image/o/aaa111",
            "author": "Jan Example",
            "date": {"timestamp": 1622548800000, "string": "June 1, 2021"},
            "citation": "Jan Example / Pl@ntNet, cc-by-sa",
            "license": "cc-by-sa",
        }
    ]


def test_integer_gbif_and_missing_ids_are_tolerated(client, mocked_responses):
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_int_gbif.json"))
    first, second = client.identify(make_request()).suggestions
    assert first.details["gbif_id"] == "2868241"
    assert "gbif_id" not in second.details


def test_species_not_found_is_an_answer_without_species(client, mocked_responses):
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_species_not_found.json"), status=404)
    answer = client.identify(make_request())
    assert answer.status == ProviderStatus.NO_MATCH
    assert answer.suggestions == ()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, "plantnet_bad_request.json", ProviderRejectedRequestError),
        (401, "plantnet_unauthorized.json", ProviderAuthError),
        (404, None, ProviderRejectedRequestError),
        (413, "plantnet_payload_too_large.json", ProviderRejectedRequestError),
        (429, "plantnet_too_many_requests.json", ProviderRateLimitedError),
        (500, "plantnet_internal_error.json", ProviderUnavailableError),
    ],
)
def test_boom_errors_are_classified(client, mocked_responses, status, body, error):
    text = fixture_text(body) if body else '{"statusCode":404,"error":"Not Found","message":"Unknown project"}'
    mocked_responses.post(PLANTNET_URL, body=text, status=status, content_type="application/json")
    with pytest.raises(error) as caught:
        client.identify(make_request())
    assert caught.value.status_code == status


@pytest.mark.parametrize("body", ["[]", '"x"', "null", '{"message": 3}'])
def test_a_404_that_is_not_an_error_object_is_a_rejected_request_and_never_opens(client, mocked_responses, body):
    mocked_responses.post(PLANTNET_URL, body=body, status=404, content_type="application/json")
    breaker = breaker_for(Provider.PLANTNET)
    for _ in range(breaker.fail_max):
        with pytest.raises(ProviderRejectedRequestError):
            client.identify(make_request())
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_quota_reset_is_read_from_ratelimit_header(client, mocked_responses):
    mocked_responses.post(
        PLANTNET_URL,
        body=fixture_text("plantnet_too_many_requests.json"),
        status=429,
        headers={"RateLimit": '"dailyQuota";r=0;t=3600'},
    )
    with pytest.raises(ProviderRateLimitedError) as caught:
        client.identify(make_request())
    assert caught.value.retry_after == 3600


def test_a_429_without_headers_waits_for_the_utc_midnight_reset(client, mocked_responses):
    mocked_responses.post(PLANTNET_URL, body=fixture_text("plantnet_too_many_requests.json"), status=429)
    with pytest.raises(ProviderRateLimitedError) as caught:
        client.identify(make_request())
    assert 0 < caught.value.retry_after <= 86400


def test_a_malformed_result_is_a_response_error(client, mocked_responses):
    mocked_responses.post(PLANTNET_URL, body='{"results": [{"score": "x"}]}')
    with pytest.raises(ProviderResponseError):
        client.identify(make_request())
