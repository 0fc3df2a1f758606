"""The real clients and the whole identify endpoint against the provider sandbox over HTTP, every fault kind."""

import base64
import io

import pytest
import requests
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.providers import Provider
from tests.factories import jpeg_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
IDENTIFY = reverse("plant_identification:identify")
GREEN = (40, 160, 40)


@pytest.fixture
def faults(sandbox, settings):
    """Point both providers at the sandbox; returns a function that sets its faults."""
    settings.PLANT_ID_API_URL, settings.PLANTNET_API_URL = sandbox.plant_id_url(), sandbox.plantnet_url()
    settings.PLANT_ID_TIMEOUT = settings.PLANTNET_TIMEOUT = 0.5
    control = f"{sandbox.base_url}/sandbox/_control"
    calm = {"latency": {"fixed": 0}, "rates": {}, "hang_seconds": 1.5, "retry_after": 120}
    requests.post(f"{control}/faults", json={"plant_id": calm, "plantnet": calm, "seed": 1}, timeout=5)
    requests.post(f"{control}/reset", timeout=5)

    def set_faults(**providers):
        response = requests.post(f"{control}/faults", json=providers, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    return set_faults


def identify(client, color=GREEN):
    upload = io.BytesIO(jpeg_bytes(color))
    upload.name = "plant.jpg"
    return client.post(IDENTIFY, {"images": [upload]}, format="multipart")


def test_identify_end_to_end_against_the_sandbox(api_client, faults):
    response = identify(api_client)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["degraded"] is False
    top = body["suggestions"][0]
    assert top["sources"] == ["plant_id", "plantnet"]
    assert top["scientific_name"]
    assert body["is_plant"]["binary"] is True
    assert body["health"]["is_healthy"]["binary"] is True


def test_answers_are_chosen_by_image_content_and_are_deterministic(api_client, faults):
    first = identify(api_client, (200, 40, 40)).json()["suggestions"][0]["scientific_name"]
    again = identify(api_client, (201, 41, 40)).json()["suggestions"][0]["scientific_name"]
    other = identify(api_client, (40, 40, 200)).json()["suggestions"][0]["scientific_name"]
    assert first == again
    assert first != other


def test_a_grey_photo_is_not_a_plant_for_both(api_client, faults):
    body = identify(api_client, (128, 128, 128)).json()
    assert body["providers"]["plant_id"]["status"] == "no_match"
    assert body["providers"]["plantnet"]["status"] == "no_match"
    assert body["is_plant"]["binary"] is False


COMMON_FAULTS = [
    ("timeout", "timeout"),
    ("reset", "error"),
    ("500", "error"),
    ("502", "error"),
    ("429", "quota_exhausted"),
    ("401", "error"),
    ("malformed", "error"),
]
FAULT_CASES = [("plant_id", *case) for case in [*COMMON_FAULTS, ("not_plant", "no_match")]] + [
    ("plantnet", *case) for case in [*COMMON_FAULTS, ("not_found", "no_match")]
]


@pytest.mark.parametrize(("provider", "fault", "status"), FAULT_CASES)
def test_every_fault_kind_has_its_outcome(api_client, faults, provider, fault, status):
    faults(**{provider: {"rates": {fault: 1.0}}})
    response = identify(api_client)
    assert response.status_code == 200
    body = response.json()
    assert body["providers"][provider]["status"] == status
    other = "plantnet" if provider == "plant_id" else "plant_id"
    assert body["providers"][other]["status"] == "ok"
    if fault == "429":
        assert breaker_for(Provider(provider)).snapshot().reason == "quota"


def test_latency_is_injected(sandbox, api_client, faults):
    plan = faults(plantnet={"latency": {"fixed": 150}})
    assert plan["plantnet"]["latency"] == {"fixed": 150}
    assert sandbox.state.faults.draw("plantnet") == (None, 0.15)  # no fault, and the seconds the handler sleeps
    plantnet = identify(api_client).json()["providers"]["plantnet"]
    assert (plantnet["status"], plantnet["cached"]) == ("ok", False)  # answered by the slowed sandbox, not the cache


def test_faults_change_at_run_time_and_bad_plans_are_refused(sandbox, faults):
    plan = faults(plantnet={"rates": {"502": 0.25}, "latency": {"uniform": [10, 20]}})
    assert plan["plantnet"]["rates"] == {"502": 0.25}
    bad = requests.post(
        f"{sandbox.base_url}/sandbox/_control/faults", json={"plantnet": {"rates": {"teapot": 1}}}, timeout=5
    )
    assert bad.status_code == 400
    assert "teapot" in bad.json()["detail"]


def test_plant_id_wire_format_errors(sandbox, faults):
    url = f"{sandbox.plant_id_url()}/identification"
    no_key = requests.post(url, json={"images": ["x"]}, timeout=5)
    assert (no_key.status_code, no_key.headers["Content-Type"], no_key.text) == (
        401,
        "text/plain",
        "No api key provided.",
    )
    bad_image = requests.post(url, json={"images": ["%%%"]}, headers={"Api-Key": "k"}, timeout=5)
    assert (bad_image.status_code, bad_image.text) == (400, "Invalid image data")
    ok = requests.post(
        url,
        json={"images": [base64.b64encode(jpeg_bytes(GREEN)).decode()]},
        params={"details": "common_names,taxonomy"},
        headers={"Api-Key": "k"},
        timeout=5,
    )
    assert ok.status_code == 201
    details = ok.json()["result"]["classification"]["suggestions"][0]["details"]
    assert set(details) == {"common_names", "taxonomy", "language", "entity_id"}  # only the asked-for views


def test_plantnet_wire_format_errors(sandbox, faults):
    url = f"{sandbox.plantnet_url()}/identify/all"
    image = ("images", ("a.jpg", jpeg_bytes(GREEN), "image/jpeg"))
    assert requests.post(url, files=[image], data={"organs": ["leaf"]}, timeout=5).status_code == 401
    mismatch = requests.post(url, params={"api-key": "k"}, files=[image], data={"organs": ["leaf", "bark"]}, timeout=5)
    assert mismatch.status_code == 400
    assert mismatch.json()["error"] == "Bad Request"
    gif = ("images", ("a.gif", b"GIF89a" + b"\0" * 100, "image/gif"))
    assert (
        requests.post(url, params={"api-key": "k"}, files=[gif], data={"organs": ["leaf"]}, timeout=5).status_code
        == 415
    )
    grey = ("images", ("g.jpg", jpeg_bytes((128, 128, 128)), "image/jpeg"))
    rejected = requests.post(url, params={"api-key": "k"}, files=[grey], data={"organs": ["auto"]}, timeout=5)
    assert rejected.json() == {"statusCode": 404, "error": "Not Found", "message": "Species not found"}
    kept = requests.post(
        url, params={"api-key": "k", "no-reject": "true"}, files=[grey], data={"organs": ["auto"]}, timeout=5
    )
    assert kept.status_code == 200
    assert "r=" in kept.headers["RateLimit"]
    assert kept.json()["remainingIdentificationRequests"] < 500
