"""Admin pages: identifications (filters, search, detail) and circuits with live state and history."""

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.models import Circuit, CircuitEvent, CircuitOverride, Identification, ProviderResult
from apps.plant_identification.providers import Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def identification():
    identification = Identification.objects.create(
        image_count=1,
        image_hashes=["abc"],
        organs=["leaf"],
        degraded=True,
        message="Partial",
        suggestions=[{"scientific_name": "Monstera deliciosa"}],
        top_scientific_name="Monstera deliciosa",
        scientific_names="Monstera deliciosa",
    )
    ProviderResult.objects.create(
        identification=identification, provider="plant_id", status="ok", raw_payload={"access_token": "x"}
    )
    ProviderResult.objects.create(identification=identification, provider="plantnet", status="timeout")
    return identification


def test_identification_changelist_filters_and_search(admin_client, identification):
    url = reverse("admin:plant_identification_identification_changelist")
    assert admin_client.get(url).status_code == 200
    assert "Monstera deliciosa" in admin_client.get(url, {"q": "monstera"}).content.decode()
    assert "Monstera deliciosa" not in admin_client.get(url, {"q": "ficus"}).content.decode()
    filtered = admin_client.get(url, {"degraded__exact": "1", "plantnet_status": "timeout"})
    assert "Monstera deliciosa" in filtered.content.decode()
    assert "Monstera deliciosa" not in admin_client.get(url, {"plant_id_status": "timeout"}).content.decode()


def test_identification_detail_shows_provider_results(admin_client, identification):
    url = reverse("admin:plant_identification_identification_change", args=[identification.pk])
    page = admin_client.get(url).content.decode()
    assert "access_token" in page
    assert "timeout" in page


def test_circuit_admin_shows_live_state_and_history(admin_client, clock):
    breaker_for(Provider.PLANTNET).open()
    circuit_events_flush()
    clock.advance(5)
    changelist = admin_client.get(reverse("admin:plant_identification_circuit_changelist")).content.decode()
    assert "open" in changelist
    assert "25 s" in changelist
    detail = admin_client.get(
        reverse("admin:plant_identification_circuit_change", args=[Circuit.objects.get(pk="plantnet").pk])
    ).content.decode()
    assert "closed" in detail
    assert "open" in detail
    events = admin_client.get(reverse("admin:plant_identification_circuitevent_changelist")).content.decode()
    assert "closed" in events
    assert "waits in its worker&#x27;s memory" in events  # what the history may miss


def test_the_circuit_pages_store_transitions_still_waiting_in_redis(admin_client):
    breaker_for(Provider.PLANT_ID).open()  # not flushed: the admin page does it
    page = admin_client.get(reverse("admin:plant_identification_circuitevent_changelist")).content.decode()
    assert "plant_id" in page
    assert "forced" in page


SPECIES = [f"Plantae sp{n:02d}" for n in range(1, 12)]


def listed(page) -> set[str]:
    """The species of the identifications a changelist page lists."""
    return {name for name in SPECIES if name in page.content.decode()}


@pytest.fixture
def eleven_identifications():
    """The issue's rows: Plant.id ok in 4 of 11, Pl@ntNet ok in 10 of 11."""
    outcomes = [("ok", "ok")] * 3 + [("ok", "timeout")] + [("timeout", "ok")] * 5 + [("error", "ok")] * 2
    for name, (plant_id, plantnet) in zip(SPECIES, outcomes, strict=True):
        identification = Identification.objects.create(
            image_count=1, degraded=plant_id != "ok" or plantnet != "ok", top_scientific_name=name
        )
        ProviderResult.objects.create(identification=identification, provider="plant_id", status=plant_id)
        ProviderResult.objects.create(identification=identification, provider="plantnet", status=plantnet)


def test_a_provider_status_filter_means_that_providers_result(admin_client, eleven_identifications):
    url = reverse("admin:plant_identification_identification_changelist")
    assert listed(admin_client.get(url, {"plant_id_status": "ok"})) == set(SPECIES[:4])
    assert listed(admin_client.get(url, {"plantnet_status": "timeout"})) == {SPECIES[3]}
    assert listed(admin_client.get(url, {"plant_id_status": "ok", "plantnet_status": "ok"})) == set(SPECIES[:3])
    assert listed(admin_client.get(url, {"plant_id_status": "error", "plantnet_status": "ok"})) == set(SPECIES[9:])
    assert listed(admin_client.get(url, {"plant_id_status": "no_match"})) == set()
    page = admin_client.get(url).content.decode()
    assert "By Plant.id status" in page
    assert "By Pl@ntNet status" in page


def test_degraded_reads_as_a_warning_not_a_green_tick(admin_client, eleven_identifications):
    url = reverse("admin:plant_identification_identification_changelist")
    degraded = admin_client.get(url, {"degraded__exact": "1"}).content.decode()
    assert '<strong style="color: var(--error-fg)">yes</strong>' in degraded
    assert "icon-yes.svg" not in degraded
    healthy = admin_client.get(url, {"degraded__exact": "0"}).content.decode()
    assert '<td class="field-degraded_mark">no</td>' in healthy


@pytest.fixture
def audit_trail(admin_client):
    """A real override and the transition it made."""
    url = reverse("plant_identification:circuit-open", args=["plantnet"])
    assert admin_client.post(url, {"reason": "incident"}).status_code == 200
    return CircuitOverride.objects.get(), CircuitEvent.objects.get()


@pytest.mark.parametrize("model", ["circuitoverride", "circuitevent", "circuit"])
def test_the_circuit_audit_trail_cannot_be_deleted_or_edited_even_by_a_superuser(admin_client, audit_trail, model):
    override, event = audit_trail
    pk = {"circuitoverride": override.pk, "circuitevent": event.pk, "circuit": "plantnet"}[model]
    changelist = admin_client.get(reverse(f"admin:plant_identification_{model}_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()
    delete_url = reverse(f"admin:plant_identification_{model}_delete", args=[pk])
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse(f"admin:plant_identification_{model}_change", args=[pk])
    assert admin_client.post(change_url, {"reason": "rewritten"}).status_code == 403
    assert admin_client.post(
        reverse(f"admin:plant_identification_{model}_changelist"),
        {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
    ).status_code in (200, 302)
    assert (CircuitOverride.objects.get(), CircuitEvent.objects.get()) == (override, event)
    assert CircuitOverride.objects.get().reason == "incident"
