"""Staff force a circuit open or closed, from the API or the admin, with an audit record and a bounded expiry;
the change and its record happen together or not at all."""

from contextlib import contextmanager

import pytest
from django.db import DatabaseError, connection
from django.urls import reverse

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.overrides import (
    OVERRIDE_MAX_SECONDS,
    circuit_override,
)
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


@contextmanager
def failing_audit_writes():
    """The database refuses every INSERT into the override table (as a full disk or a lost connection would)."""

    def refuse(execute, sql, params, many, context):
        if sql.startswith("INSERT") and "plant_identification_circuitoverride" in sql:
            raise DatabaseError("disk full")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield


@pytest.mark.parametrize("expires_in", ["1e17", str(OVERRIDE_MAX_SECONDS + 1), "inf", "nan", "0", "-5"])
def test_an_expiry_out_of_bounds_is_a_400_before_anything_changes(admin_client, expires_in):
    response = force(admin_client, "plantnet", "open", reason="x", expires_in=expires_in)
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["expires_in"]
    assert response.json()["detail"].startswith("expires_in: ")
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
    assert not CircuitOverride.objects.exists()


def test_a_huge_expiry_in_json_is_a_400(admin_client):
    url = reverse("plant_identification:circuit-close", args=["plantnet"])
    response = admin_client.post(url, {"reason": "x", "expires_in": 1e17}, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "expires_in" in response.json()["errors"]
    assert not CircuitOverride.objects.exists()


def test_the_longest_expiry_is_accepted(admin_client, clock):
    response = force(admin_client, "plant_id", "open", reason="long maintenance", expires_in=OVERRIDE_MAX_SECONDS)
    assert response.status_code == 200, response.content
    assert response.json()["circuit"]["retry_after"] == OVERRIDE_MAX_SECONDS


def test_the_service_refuses_an_unbounded_expiry_too(admin_user):
    with pytest.raises(ValueError, match="expires_in"):
        circuit_override(provider=Provider.PLANTNET, action="close", reason="x", user=admin_user, expires_in=1e17)
    assert not CircuitOverride.objects.exists()


def test_the_admin_form_refuses_a_huge_expiry_naming_the_field(admin_client):
    url = reverse("admin:plant_identification_circuit_changelist")
    form = {"action": "force_close", "_selected_action": ["plantnet"], "reason": "x", "apply": "1"}
    page = admin_client.post(url, {**form, "expires_in": "100000000000000000"})
    assert page.status_code == 200
    assert f"Ensure this value is less than or equal to {OVERRIDE_MAX_SECONDS}" in page.content.decode()
    assert 'name="expires_in"' in page.content.decode()
    assert not CircuitOverride.objects.exists()


def test_a_failed_audit_write_leaves_the_circuit_as_it_was(admin_client):
    with failing_audit_writes(), pytest.raises(DatabaseError):
        force(admin_client, "plantnet", "open", reason="incident")
    assert ProviderCircuitBreaker(Provider.PLANTNET).snapshot().state == "closed"  # as every worker sees it
    assert not CircuitOverride.objects.exists()


def test_a_failed_audit_write_keeps_an_open_circuit_open_for_as_long(admin_client, clock):
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.hold_open(120, "quota")
    with failing_audit_writes(), pytest.raises(DatabaseError):
        force(admin_client, "plant_id", "close", reason="false alarm", expires_in=300)
    snapshot = ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock).snapshot()
    assert (snapshot.state, snapshot.retry_after, snapshot.reason) == ("open", 120, "quota")
    assert not CircuitOverride.objects.exists()


def test_an_unreachable_redis_refuses_the_override_and_records_nothing(admin_client, redis_unreachable):
    response = force(admin_client, "plantnet", "open", reason="incident")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert "Nothing was changed" in response.json()["detail"]
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"  # not even in this worker's memory
    assert not CircuitOverride.objects.exists()


def test_the_admin_says_when_redis_is_unreachable(admin_client, redis_unreachable):
    url = reverse("admin:plant_identification_circuit_changelist")
    form = {"action": "force_open", "_selected_action": ["plantnet"], "reason": "x", "expires_in": "", "apply": "1"}
    page = admin_client.post(url, form, follow=True).content.decode()
    assert "Redis is unreachable" in page
    assert "Nothing was changed." in page
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
    assert not CircuitOverride.objects.exists()


def test_a_forced_close_is_recorded_as_forced(admin_client):
    force(admin_client, "plantnet", "open", reason="incident")
    force(admin_client, "plantnet", "close", reason="recovered")
    events = CircuitEvent.objects.filter(circuit_id="plantnet").order_by("created_at")
    assert list(events.values_list("from_state", "to_state", "reason")) == [
        ("closed", "open", "forced"),
        ("open", "closed", "forced"),
    ]
