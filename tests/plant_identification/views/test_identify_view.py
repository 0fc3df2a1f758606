"""POST identify and GET identification over HTTP, with providers faked in their wire formats."""

import io
import json

import pytest
import requests
from django.urls import reverse
from PIL import Image

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, jpeg_bytes

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")


def upload(name="leaf.jpg", data=None):
    file = io.BytesIO(jpeg_bytes() if data is None else data)
    file.name = name
    return file


def post(client, **fields):
    fields.setdefault("images", [upload()])
    return client.post(IDENTIFY, fields, format="multipart")


def test_both_providers_answer_merged_and_stored(api_client, plant_id_ok, plantnet_ok, user):
    response = post(
        api_client,
        images=[upload(), upload("flower.jpg", jpeg_bytes((200, 30, 30)))],
        organs=["leaf", "flower"],
        latitude="52.37",
        longitude="4.89",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["degraded"] is False
    assert body["message"] is None
    assert body["is_plant"] == {"probability": 0.9981, "binary": True}
    top = body["suggestions"][0]
    assert top["scientific_name"] == "Monstera deliciosa"
    assert top["sources"] == ["plant_id", "plantnet"]
    assert 0 < top["confidence"] <= 1
    assert top["family"] == "Araceae"
    assert "Swiss cheese plant" in top["common_names"]
    assert body["health"]["diseases"][0]["local_name"] == "Root rot"
    assert body["providers"]["plant_id"]["status"] == "ok"
    plantnet = dict(body["providers"]["plantnet"])
    latency_ms = plantnet.pop("latency_ms")
    assert type(latency_ms) is int
    assert latency_ms >= 0
    assert plantnet == {"status": "ok", "cached": False}
    stored = Identification.objects.get(pk=body["id"])
    assert stored.user == user
    assert len(plant_id_ok.calls) == 2  # one call per provider, health included in Plant.id's


def test_plantnet_species_not_found_is_no_match_not_an_outage(api_client, plant_id_ok):
    plant_id_ok.post(PLANTNET_URL, json=fixture_json("plantnet_species_not_found.json"), status=404)
    body = post(api_client).json()
    assert body["providers"]["plantnet"]["status"] == "no_match"
    assert body["degraded"] is False
    assert body["suggestions"][0]["sources"] == ["plant_id"]


def test_one_provider_failing_gives_degraded_200(api_client, plant_id_ok):
    plant_id_ok.post(PLANTNET_URL, status=500, json=fixture_json("plantnet_internal_error.json"))
    response = post(api_client)
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True
    assert "Pl@ntNet error" in body["message"]
    assert body["providers"]["plantnet"]["status"] == "error"


def test_quota_exhausted_is_reported(api_client, plant_id_ok):
    plant_id_ok.post(PLANTNET_URL, status=429, json=fixture_json("plantnet_too_many_requests.json"))
    assert post(api_client).json()["providers"]["plantnet"]["status"] == "quota_exhausted"


def test_both_circuits_open_answers_503_with_retry_after_and_no_call(api_client, mocked_responses):
    for provider in Provider:
        breaker_for(provider).open()
    response = post(api_client)

    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["detail"]
    assert {p: s["status"] for p, s in body["providers"].items()} == {
        "plant_id": "circuit_open",
        "plantnet": "circuit_open",
    }
    assert len(mocked_responses.calls) == 0


def test_circuit_opened_by_failures_closes_again_through_the_endpoint(api_client, mocked_responses, clock):
    breaker = breaker_for(Provider.PLANTNET)
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    mocked_responses.post(PLANTNET_URL, status=502, body="bad gateway")
    for _ in range(breaker.fail_max):
        post(api_client)
    assert post(api_client).json()["providers"]["plantnet"]["status"] == "circuit_open"

    clock.advance(breaker.reset_timeout)
    mocked_responses.replace("POST", PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    statuses = []
    for attempt in range(breaker.success_threshold):  # new images: cache misses
        response = post(api_client, images=[upload(data=jpeg_bytes((100 + 50 * attempt, 0, 0)))])
        plantnet = response.json()["providers"]["plantnet"]
        statuses.append((plantnet["status"], plantnet["cached"]))
    assert statuses == [("ok", False)] * breaker.success_threshold
    assert breaker.current_state == "closed"


def test_second_identical_request_is_served_from_cache(api_client, plant_id_ok, plantnet_ok):
    post(api_client)
    calls = len(plant_id_ok.calls)
    body = post(api_client).json()
    assert len(plant_id_ok.calls) == calls
    assert body["providers"]["plant_id"]["cached"] is True
    assert body["providers"]["plantnet"]["cached"] is True
    assert Identification.objects.count() == 2  # every answered identification is stored


def test_stored_identification_is_served_back(api_client, plant_id_ok, plantnet_ok):
    created = post(api_client).json()
    response = api_client.get(reverse("plant_identification:identification-detail", args=[created["id"]]))
    assert response.status_code == 200
    assert response.json() == created


def test_other_users_cannot_read_an_identification(api_client, plant_id_ok, plantnet_ok, django_user_model):
    created = post(api_client).json()
    url = reverse("plant_identification:identification-detail", args=[created["id"]])
    stranger = django_user_model.objects.create_user(username="stranger")
    api_client.force_authenticate(stranger)
    assert api_client.get(url).status_code == 404
    stranger.is_staff = True
    stranger.save()
    assert api_client.get(url).status_code == 200


def test_anonymous_identifications_are_readable_by_id(anonymous_client, plant_id_ok, plantnet_ok, settings):
    settings.IDENTIFY_ALLOW_ANONYMOUS = True
    created = post(anonymous_client).json()
    url = reverse("plant_identification:identification-detail", args=[created["id"]])
    assert anonymous_client.get(url).status_code == 200


def test_anonymous_is_refused_by_default(anonymous_client, mocked_responses):
    response = post(anonymous_client)
    assert response.status_code == 401  # TokenAuthentication comes first, so DRF challenges rather than forbids
    assert "WWW-Authenticate" in response
    assert "detail" in response.json()
    assert len(mocked_responses.calls) == 0


def test_token_authentication(user, plant_id_ok, plantnet_ok, anonymous_client):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user)
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert post(anonymous_client).status_code == 200


def test_throttled_caller_gets_429_with_retry_after(api_client, plant_id_ok, plantnet_ok, settings):
    settings.IDENTIFY_THROTTLE_RATE = "2/min"
    assert [post(api_client).status_code for _ in range(2)] == [200, 200]
    response = post(api_client)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_no_provider_configured_is_503(api_client, settings, mocked_responses):
    settings.PLANT_ID_API_KEY = settings.PLANTNET_API_KEY = ""
    response = post(api_client)
    assert response.status_code == 503
    assert response.json()["detail"] == "No identification provider is configured."
    assert response["Retry-After"].isdigit()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"images": []}, "images"),
        ({"images": [upload("notes.jpg", b"just some text")]}, "images"),
        ({"images": [upload("empty.jpg", b"")]}, "images"),
        ({"images": [upload("cut.jpg", jpeg_bytes()[:300])]}, "images"),
        ({"images": [upload(f"{i}.jpg") for i in range(6)]}, "images"),
        ({"organs": ["leaf", "flower"]}, "organs"),
        ({"organs": ["root"]}, "organs"),
        ({"latitude": "91", "longitude": "0"}, "latitude"),
        ({"latitude": "10"}, "latitude"),
        ({"longitude": "east"}, "longitude"),
    ],
)
def test_bad_input_is_400_and_calls_no_provider(api_client, mocked_responses, fields, field):
    response = post(api_client, **fields)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"]
    assert field in body["errors"]
    assert len(mocked_responses.calls) == 0
    assert Identification.objects.count() == 0


def test_png_and_image_alias_are_accepted(api_client, plant_id_ok, plantnet_ok):
    response = api_client.post(IDENTIFY, {"image": upload("leaf.png", png_bytes())}, format="multipart")
    assert response.status_code == 200


def test_oversized_image_is_413_and_calls_no_provider(api_client, mocked_responses, settings):
    settings.IDENTIFY_MAX_IMAGE_BYTES = 1000
    response = post(api_client)
    assert response.status_code == 413
    assert response.json()["detail"]
    assert len(mocked_responses.calls) == 0


def test_oversized_request_is_413(api_client, mocked_responses, settings):
    settings.IDENTIFY_MAX_REQUEST_BYTES = 1000
    assert post(api_client).status_code == 413


def test_api_keys_never_reach_the_response_the_store_or_the_logs(
    api_client, plant_id_ok, plantnet_ok, settings, caplog
):
    body = post(api_client).content.decode()
    stored = json.dumps(
        [
            list(Identification.objects.values()),
            [r.raw_payload for i in Identification.objects.all() for r in i.provider_results.all()],
        ],
        default=str,
    )
    for key in (settings.PLANT_ID_API_KEY, settings.PLANTNET_API_KEY):
        assert key not in body
        assert key not in stored
        assert key not in caplog.text


@pytest.mark.parametrize("down", list(Provider))
@pytest.mark.parametrize(
    ("failure", "status"),
    [
        ({"body": requests.ReadTimeout("slow")}, "timeout"),
        ({"body": requests.ConnectionError("refused")}, "error"),
        ({"status": 503, "body": "unavailable"}, "error"),
        ({"status": 401, "body": "The specified api key not found."}, "error"),
        ({"status": 200, "body": "{not json"}, "error"),
    ],
)
def test_each_provider_out_leaves_the_other_answering(api_client, mocked_responses, down, failure, status):
    urls = {Provider.PLANT_ID: PLANT_ID_URL, Provider.PLANTNET: PLANTNET_URL}
    ok = {
        Provider.PLANT_ID: ("plant_id_identification_ok.json", 201),
        Provider.PLANTNET: ("plantnet_identify_ok.json", 200),
    }
    up = next(p for p in Provider if p != down)
    mocked_responses.post(urls[up], json=fixture_json(ok[up][0]), status=ok[up][1])
    mocked_responses.post(urls[down], **failure)

    response = post(api_client)
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True
    assert body["providers"][down.value]["status"] == status
    assert body["providers"][up.value]["status"] == "ok"
    assert body["suggestions"][0]["sources"] == [up.value]


def test_request_that_trips_both_circuits_says_when_to_retry(api_client, mocked_responses, settings):
    settings.PLANT_ID_CIRCUIT_FAIL_MAX = settings.PLANTNET_CIRCUIT_FAIL_MAX = 1
    mocked_responses.post(PLANT_ID_URL, status=500, body="boom")
    mocked_responses.post(PLANTNET_URL, status=500, json=fixture_json("plantnet_internal_error.json"))
    response = post(api_client)
    assert response.status_code == 503
    assert int(response["Retry-After"]) == min(
        settings.PLANT_ID_CIRCUIT_RESET_TIMEOUT, settings.PLANTNET_CIRCUIT_RESET_TIMEOUT
    )


def test_empty_post_is_400_json(api_client, mocked_responses):
    response = api_client.post(IDENTIFY)
    assert response.status_code == 400
    assert response.json()["errors"]["images"]


def test_unknown_url_is_json_404(api_client):
    response = api_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
