"""Admin pages: identifications (filters, search, detail) and circuits with live state and history."""

import pytest
from django.urls import reverse

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.models import Circuit, Identification, ProviderResult
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
    filtered = admin_client.get(url, {"degraded__exact": "1", "provider_results__status": "timeout"})
    assert "Monstera deliciosa" in filtered.content.decode()


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
