"""Admin pages: identifications (filters, search, detail) and circuits with live state and history."""

import re

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


def test_an_identification_waiting_for_a_late_answer_lists_as_pending(admin_client, identification):
    waiting = Identification.objects.create(
        image_count=1, complete=False, top_scientific_name="Ficus lyrata", scientific_names="Ficus lyrata"
    )
    ProviderResult.objects.create(identification=waiting, provider="plant_id", status="pending")
    url = reverse("admin:plant_identification_identification_changelist")

    pending = admin_client.get(url, {"complete__exact": "0"}).content.decode()
    assert "Ficus lyrata" in pending
    assert "Monstera deliciosa" not in pending
    assert '<td class="field-complete_mark"><em>pending</em></td>' in pending
    done = admin_client.get(url, {"complete__exact": "1"}).content.decode()
    assert '<td class="field-complete_mark">yes</td>' in done
    by_status = admin_client.get(url, {"plant_id_status": "pending"}).content.decode()
    assert "Ficus lyrata" in by_status
    assert "Monstera deliciosa" not in by_status


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


SECONDS = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def circuit_url(provider: str) -> str:
    return reverse("admin:plant_identification_circuit_change", args=[provider])


def force_url(provider: str, action: str) -> str:
    return reverse("admin:plant_identification_circuit_force", args=[provider, action])


@pytest.fixture
def plantnet_error():
    """An identification where Pl@ntNet failed, the latest of two."""
    older = Identification.objects.create(image_count=1, top_scientific_name="Older failure")
    ProviderResult.objects.create(identification=older, provider="plantnet", status="error", error_class="Old")
    latest = Identification.objects.create(image_count=1, top_scientific_name="Latest failure")
    ProviderResult.objects.create(
        identification=latest,
        provider="plantnet",
        status="error",
        http_status=502,
        error_class="ProviderError",
        error_detail="<b>bad gateway</b>",
    )
    return latest


def test_the_circuit_dashboard_shows_state_in_colour_countdown_and_last_error(admin_client, clock, plantnet_error):
    breaker_for(Provider.PLANTNET).open()
    clock.advance(5)
    page = admin_client.get(reverse("admin:plant_identification_circuit_changelist")).content.decode()
    assert 'data-state="open" style="background-color: #c62828' in page  # red
    assert 'data-state="closed" style="background-color: #2e7d32' in page  # green
    assert '<span class="circuit-countdown" data-seconds="25">25 s</span>' in page
    assert "ProviderError: &lt;b&gt;bad gateway&lt;/b&gt; (HTTP 502)" in page  # escaped
    assert reverse("admin:plant_identification_identification_change", args=[plantnet_error.pk]) in page
    assert "Old" not in page.split("circuit-last-error")[1].split("</a>")[0]
    failing = reverse("admin:plant_identification_identification_changelist") + "?plantnet_status=error"
    assert failing in page
    assert "Latest failure" in admin_client.get(failing).content.decode()
    assert "var refreshSeconds = 15;" in page
    assert '<meta http-equiv="refresh" content="15">' in page


def test_a_half_open_circuit_is_amber(admin_client, clock):
    breaker_for(Provider.PLANTNET).open()
    clock.advance(31)
    page = admin_client.get(reverse("admin:plant_identification_circuit_changelist")).content.decode()
    assert 'data-state="half-open" style="background-color: #f9a825' in page


def test_the_circuit_page_shows_recent_transitions_to_the_second_and_force_buttons(admin_client, plantnet_error):
    breaker_for(Provider.PLANTNET).open()
    page = admin_client.get(circuit_url("plantnet")).content.decode()
    transitions = page.split('id="circuit-recent-transitions"')[1].split("</table>")[0]
    assert SECONDS.search(transitions)
    assert "forced" in transitions
    assert f'action="{force_url("plantnet", "open")}"' in page
    assert f'action="{force_url("plantnet", "close")}"' in page
    assert "ProviderError" in page  # the last error
    assert "var refreshSeconds = 15;" in page


def test_the_circuit_pages_buttons_force_it_through_the_audited_service(admin_client, admin_user):
    response = admin_client.post(force_url("plantnet", "open"), {"reason": "maintenance", "expires_in": "600"})
    assert response.status_code == 302
    assert response["Location"] == circuit_url("plantnet")
    assert breaker_for(Provider.PLANTNET).snapshot().state == "open"
    response = admin_client.post(force_url("plantnet", "close"), {"reason": "back"}, follow=True)
    assert "Force close: done for plantnet." in response.content.decode()
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
    overrides = list(CircuitOverride.objects.order_by("created_at", "pk"))
    assert [(o.action, o.reason, o.user) for o in overrides] == [
        ("open", "maintenance", admin_user),
        ("close", "back", admin_user),
    ]


@pytest.mark.parametrize("data", [{"reason": ""}, {"reason": "x", "expires_in": "100000000000000000"}])
def test_an_invalid_force_from_the_circuit_page_changes_nothing(admin_client, data):
    response = admin_client.post(force_url("plantnet", "open"), data)
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"
    assert not CircuitOverride.objects.exists()


def test_the_force_view_needs_a_known_action_circuit_and_staff(admin_client, client):
    assert admin_client.get(force_url("plantnet", "open")).status_code == 200  # the form
    assert admin_client.post(force_url("plantnet", "explode"), {"reason": "x"}).status_code == 404
    assert admin_client.post(force_url("nope", "open"), {"reason": "x"}).status_code == 404
    assert client.post(force_url("plantnet", "open"), {"reason": "x"}).status_code == 302  # to the login
    assert breaker_for(Provider.PLANTNET).snapshot().state == "closed"


def test_event_and_override_times_have_seconds(admin_client, audit_trail):
    for model in ("circuitevent", "circuitoverride"):
        page = admin_client.get(reverse(f"admin:plant_identification_{model}_changelist")).content.decode()
        assert SECONDS.search(page), model
    page = admin_client.get(circuit_url("plantnet")).content.decode()
    assert len(SECONDS.findall(page)) >= 3  # recent transitions, the events and the overrides inlines


def test_suggestions_are_a_table_and_payloads_are_folded_pretty_json(admin_client):
    identification = Identification.objects.create(
        image_count=1,
        suggestions=[
            {
                "scientific_name": "Monstera <deliciosa>",
                "common_names": ["Swiss cheese plant"],
                "family": "Araceae",
                "genus": "Monstera",
                "confidence": 0.91,
                "sources": ["plant_id"],
                "scores": {"plant_id": 0.91},
                "details": {"url": "https://example.org/?a=1&b=2"},
            }
        ],
        health={"is_healthy": True},
    )
    ProviderResult.objects.create(
        identification=identification, provider="plant_id", status="ok", raw_payload={"result": {"x": "<script>"}}
    )
    page = admin_client.get(
        reverse("admin:plant_identification_identification_change", args=[identification.pk])
    ).content.decode()
    assert '<table class="suggestions">' in page
    assert "<td>Monstera &lt;deliciosa&gt;</td><td>Swiss cheese plant</td><td>Araceae</td>" in page
    assert "<td>plant_id: 0.91</td>" in page
    assert '<details class="json-payload"><summary>1 keys</summary>' in page
    assert "&quot;x&quot;: &quot;&lt;script&gt;&quot;" in page  # pretty-printed and escaped
    assert "{\n    &quot;x&quot;" in page  # indented
    assert '<script>"' not in page
    assert "a=1&amp;b=2" in page


def test_the_plant_id_circuit_page_and_buttons_work_with_the_admins_quoted_pk(admin_client):
    page = admin_client.get(reverse("admin:plant_identification_circuit_change", args=["plant_5Fid"]))
    assert page.status_code == 200
    assert 'action="/admin/plant_identification/circuit/plant_5Fid/force/open/"' in page.content.decode()
    response = admin_client.post("/admin/plant_identification/circuit/plant_5Fid/force/open/", {"reason": "x"})
    assert response.status_code == 302
    assert breaker_for(Provider.PLANT_ID).snapshot().state == "open"
