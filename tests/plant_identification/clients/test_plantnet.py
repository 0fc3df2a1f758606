"""Pl@ntNet v2 client: the multipart request we send and how each answer and error is classified."""

import pytest
import requests
from django.conf import settings

from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
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
    assert answer.suggestions[2].details == {}  # no gbif, no powo, no images


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


def test_proxy_html_502_is_unavailable(client, mocked_responses):
    mocked_responses.post(
        PLANTNET_URL, body="<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html"
    )
    with pytest.raises(ProviderUnavailableError):
        client.identify(make_request())


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


def test_retry_after_header_wins(client, mocked_responses):
    mocked_responses.post(
        PLANTNET_URL, body=fixture_text("plantnet_too_many_requests.json"), status=429, headers={"Retry-After": "120"}
    )
    with pytest.raises(ProviderRateLimitedError) as caught:
        client.identify(make_request())
    assert caught.value.retry_after == 120


def test_timeout_and_malformed_body(client, mocked_responses):
    mocked_responses.post(PLANTNET_URL, body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(ProviderTimeoutError):
        client.identify(make_request())
    mocked_responses.replace("POST", PLANTNET_URL, body='{"results": [{"score": "x"}]}')
    with pytest.raises(ProviderResponseError):
        client.identify(make_request())


def test_key_in_query_never_appears_in_errors(mocked_responses):
    client = PlantNetClient(api_key="sekrit-pn-key", base_url=settings.PLANTNET_API_URL, timeout=5, project="all")
    # requests' own messages carry the URL, and with it the key: it must be stripped.
    mocked_responses.post(
        PLANTNET_URL,
        body=requests.ConnectionError("Max retries exceeded with url: /v2/identify/all?api-key=sekrit-pn-key"),
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        client.identify(make_request())
    assert "sekrit-pn-key" not in str(caught.value)
