"""The early answer over HTTP: ``complete`` and ``pending`` in the identify response, the merged result on read,
and a part that never arrived settled when read after its deadline. Providers faked in their wire formats."""

import json
import threading
from datetime import timedelta

import pytest
from django.urls import reverse

from apps.plant_identification.models import Identification
from apps.plant_identification.services.late_answers import late_answers_drain
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json
from tests.plant_identification.test_metrics import delta, scrape
from tests.plant_identification.views.test_identify_view import post

pytestmark = pytest.mark.django_db(transaction=True)


def read(client, identification_id):
    return client.get(reverse("plant_identification:identification-detail", args=[identification_id]))


@pytest.fixture
def plant_id_held(settings, mocked_responses):
    """Plant.id answers its recorded identification once the test sets the event; Pl@ntNet answers at once."""
    settings.IDENTIFY_LATE_GRACE = 0.05
    settings.IDENTIFY_LATE_GRACE_FACTOR = 0
    release = threading.Event()

    def plant_id(request):
        release.wait(10)
        return 201, {}, json.dumps(fixture_json("plant_id_identification_ok.json"))

    mocked_responses.add_callback("POST", PLANT_ID_URL, callback=plant_id, content_type="application/json")
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)
    yield release
    release.set()
    late_answers_drain(timeout=10)


def test_the_early_response_lists_the_pending_provider_and_a_read_shows_the_merged_result(
    api_client, anonymous_client, plant_id_held
):
    before = scrape(anonymous_client)
    response = post(api_client)

    assert response.status_code == 200, response.content
    early = response.json()
    assert early["complete"] is False
    assert early["pending"] == ["plant_id"]
    assert early["degraded"] is False
    assert early["providers"]["plant_id"] == {"status": "pending", "latency_ms": None, "cached": False}
    assert early["providers"]["plantnet"]["status"] == "ok"
    assert early["suggestions"][0]["sources"] == ["plantnet"]
    assert early["is_plant"] is None
    assert early["health"] is None
    assert read(api_client, early["id"]).json() == early  # read before the late answer: the same body

    plant_id_held.set()
    late_answers_drain(timeout=10)

    merged = read(api_client, early["id"]).json()
    assert merged["complete"] is True
    assert merged["pending"] == []
    assert merged["message"] is None
    assert merged["providers"]["plant_id"]["status"] == "ok"
    assert merged["suggestions"][0]["sources"] == ["plant_id", "plantnet"]
    assert merged["is_plant"] == {"probability": 0.9981, "binary": True}
    assert merged["health"]["diseases"][0]["local_name"] == "Root rot"
    assert {k: merged[k] for k in ("id", "created_at")} == {k: early[k] for k in ("id", "created_at")}
    after = scrape(anonymous_client)
    for outcome in ("pending", "merged"):
        assert delta(before, after, "plantid_late_answers_total", provider="plant_id", outcome=outcome) == 1


def test_a_read_after_the_deadline_settles_a_part_that_never_arrived(api_client, plant_id_held):
    body = post(api_client).json()
    answered_at = Identification.objects.get(pk=body["id"]).created_at
    Identification.objects.filter(pk=body["id"]).update(created_at=answered_at - timedelta(minutes=5))  # worker died

    settled = read(api_client, body["id"]).json()
    assert settled["complete"] is True
    assert settled["pending"] == []
    assert settled["degraded"] is True
    assert settled["providers"]["plant_id"]["status"] == "error"
    assert settled["message"] == "Partial result from Pl@ntNet only (Plant.id error)."
