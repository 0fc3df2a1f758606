"""Staff force a circuit open or closed, from the API or the admin, with an audit record and an expiry."""

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.models import CircuitEvent, CircuitOverride
from apps.plant_identification.providers import Provider

pytestmark = pytest.mark.django_db


def force(client, provider, action, **data):
    return client.post(reverse(f"plant_identification:circuit-{action}", args=[provider]), data)


def test_force_open_rejects_on_every_worker_and_is_audited(admin_client, admin_user):
    response = force(admin_client, "plantnet", "open", reason="provider incident #42")
    assert response.status_code == 200, response.content
    assert response.json()["state_before"] == "closed"
    assert response.json()["circuit"]["state"] == "open"

    other_worker = ProviderCircuitBreaker(Provider.PLANTNET)  # shares the Redis state
    with pytest.raises(ProviderCircuitOpenError), other_worker.protect():
        pass
    override = CircuitOverride.objects.get()
    assert (override.user, override.action, override.reason) == (admin_user, "open", "provider incident #42")
    assert (override.state_before, override.state_after, override.expires_at) == ("closed", "open", None)
    assert CircuitEvent.objects.filter(circuit_id="plantnet", to_state="open", reason="forced").exists()


def test_forced_open_lapses_after_its_expiry(admin_client, clock):
    force(admin_client, "plant_id", "open", reason="maintenance window", expires_in=600)
    assert breaker_for(Provider.PLANT_ID).snapshot().retry_after == 600
    clock.advance(600)
    assert breaker_for(Provider.PLANT_ID).snapshot().state == "half-open"
    assert CircuitOverride.objects.get().expires_at is not None


def test_force_close_with_expiry_stops_counting_failures_until_then(admin_client, clock):
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.open()
    force(admin_client, "plant_id", "close", reason="false alarm", expires_in=300)
    assert breaker.current_state == "closed"
    for _ in range(breaker.fail_max * 2):
        with pytest.raises(ProviderUnavailableError), breaker.protect():
            raise ProviderUnavailableError("plant_id", "HTTP 500")
    assert breaker.current_state == "closed"
    clock.advance(300)
    for _ in range(breaker.fail_max):
        with pytest.raises(ProviderUnavailableError), breaker.protect():
            raise ProviderUnavailableError("plant_id", "HTTP 500")
    assert breaker.current_state == "open"


def test_reason_is_required_and_staff_only(admin_client, api_client):
    assert force(admin_client, "plant_id", "open", reason="  ").status_code == 400
    assert force(api_client, "plant_id", "open", reason="x").status_code == 403
    assert force(admin_client, "nope", "open", reason="x").status_code == 404
    assert CircuitOverride.objects.count() == 0


def test_admin_actions_force_open_and_close(admin_client, admin_user):
    url = reverse("admin:plant_identification_circuit_changelist")
    form = {
        "action": "force_open",
        "_selected_action": ["plantnet"],
        "reason": "upstream incident",
        "expires_in": "",
        "apply": "1",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302
    assert breaker_for(Provider.PLANTNET).snapshot().state == "open"

    admin_client.post(url, {**form, "action": "force_close", "reason": "recovered"})
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
    assert list(CircuitOverride.objects.order_by("created_at").values_list("action", "user")) == [
        ("open", admin_user.pk),
        ("close", admin_user.pk),
    ]


def test_admin_action_asks_for_a_reason_first(admin_client):
    url = reverse("admin:plant_identification_circuit_changelist")
    page = admin_client.post(url, {"action": "force_open", "_selected_action": ["plantnet"]})
    assert page.status_code == 200
    assert "reason" in page.content.decode()
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
