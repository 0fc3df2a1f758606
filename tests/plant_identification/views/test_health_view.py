"""/health/, /health/live/, /health/ready/ and the staff circuit list report the truth, calling no provider."""

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.providers import Provider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_recent_latency():
    """Earlier tests' successful calls stay in the recent latency (closing a circuit keeps it)."""
    for provider in Provider:
        breaker_for(provider).store.clear_latency()


def health(client):
    response = client.get(reverse("health"))
    return response.status_code, response.json()


def test_all_closed_is_healthy(anonymous_client, mocked_responses):
    status, body = health(anonymous_client)
    assert status == 200
    assert body["status"] == "healthy"
    assert body["plant_id_available"] is True
    assert body["plantnet_available"] is True
    assert body["circuit_breakers"]["plant_id"] == {
        "state": "closed",
        "fail_count": 0,
        "fail_max": 3,
        "reset_timeout": 60.0,
        "retry_after": None,
        "reason": None,
        "latency": {"p50_ms": None, "p95_ms": None, "samples": 0, "scope": "fleet"},
    }
    assert body["checks"] == {"database": {"status": "pass"}, "redis": {"status": "pass"}}
    assert len(mocked_responses.calls) == 0


def test_one_open_circuit_is_degraded_but_serving(anonymous_client, clock):
    breaker_for(Provider.PLANTNET).open()
    clock.advance(10)
    status, body = health(anonymous_client)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["plantnet_available"] is False
    assert body["circuit_breakers"]["plantnet"]["state"] == "open"
    assert body["circuit_breakers"]["plantnet"]["retry_after"] == 20


def test_both_open_is_unhealthy_503(anonymous_client):
    for provider in Provider:
        breaker_for(provider).open()
    status, body = health(anonymous_client)
    assert (status, body["status"]) == (503, "unhealthy")


def test_open_circuit_past_its_reset_timeout_reads_half_open(anonymous_client, clock):
    breaker_for(Provider.PLANT_ID).open()
    clock.advance(breaker_for(Provider.PLANT_ID).reset_timeout)
    _status, body = health(anonymous_client)
    assert body["circuit_breakers"]["plant_id"]["state"] == "half-open"
    assert body["plant_id_available"] is True
    assert body["status"] == "healthy"


def test_unconfigured_provider_is_unavailable(anonymous_client, settings):
    settings.PLANTNET_API_KEY = ""
    status, body = health(anonymous_client)
    assert (status, body["plantnet_available"], body["status"]) == (200, False, "healthy")
    settings.PLANT_ID_API_KEY = ""
    assert health(anonymous_client)[0] == 503


def test_redis_not_configured(anonymous_client, settings):
    settings.REDIS_URL = ""
    assert health(anonymous_client)[1]["checks"]["redis"] == {"status": "not_configured"}


def test_redis_down_is_degraded_and_not_ready(anonymous_client, redis_unreachable):
    status, body = health(anonymous_client)
    assert (status, body["status"], body["checks"]["redis"]["status"]) == (200, "degraded", "fail")
    ready = anonymous_client.get(reverse("health-ready"))
    assert ready.status_code == 503
    assert anonymous_client.get(reverse("health-live")).status_code == 200


def test_ready_and_live(anonymous_client):
    ready = anonymous_client.get(reverse("health-ready"))
    assert (ready.status_code, ready.json()["status"]) == (200, "pass")
    assert anonymous_client.get(reverse("health-live")).json() == {"status": "pass"}


def test_circuit_list_is_staff_only(api_client, admin_client):
    url = reverse("plant_identification:circuits")
    assert api_client.get(url).status_code == 403
    response = admin_client.get(url)
    assert response.status_code == 200
    assert set(response.json()) == {"plant_id", "plantnet"}
