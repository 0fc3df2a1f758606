"""Plant.id's free usage_info is polled by one caller fleet-wide per PLANT_ID_USAGE_POLL_INTERVAL, never per
request, and what it says is shown in /health/."""

import threading
import time

import pytest
import requests
from django.core.cache import cache
from django.urls import reverse

from apps.plant_identification.clients.plant_id import PlantIdClient
from apps.plant_identification.providers import Provider
from apps.plant_identification.quotas.report import quota_report
from apps.plant_identification.quotas.usage_poll import usage_poll, usage_poll_due, usage_poll_maybe
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import make_request

pytestmark = pytest.mark.django_db
NOW = 1_800_000_000.0  # the start of a 300 s interval


@pytest.fixture
def sandbox(settings):
    server = sandbox_start()
    settings.PLANT_ID_API_URL = server.plant_id_url()
    settings.PLANT_ID_USAGE_POLL_INTERVAL = 300
    yield server
    server.shutdown()
    server.server_close()


def polls(server) -> int:
    return requests.get(f"{server.base_url}/sandbox/_control/stats", timeout=5).json().get("plant_id:usage_info", 0)


def claims_at(now, callers=16) -> int:
    start, won = threading.Barrier(callers), []

    def claim():
        start.wait()
        won.append(usage_poll_due(now))

    threads = [threading.Thread(target=claim) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(won)


def test_one_claim_per_interval_among_concurrent_callers(settings):
    settings.PLANT_ID_USAGE_POLL_INTERVAL = 300
    assert claims_at(NOW) == 1
    assert claims_at(NOW + 299) == 0  # the same interval
    assert claims_at(NOW + 300) == 1  # the next one


def test_interval_zero_or_no_key_never_polls(settings):
    settings.PLANT_ID_USAGE_POLL_INTERVAL = 0
    assert claims_at(NOW, callers=2) == 0
    settings.PLANT_ID_USAGE_POLL_INTERVAL = 300
    settings.PLANT_ID_API_KEY = ""
    assert claims_at(NOW, callers=2) == 0


def test_the_poll_records_plant_ids_credits(sandbox):
    PlantIdClient(api_key="test-plant-id-key", base_url=sandbox.plant_id_url(), timeout=5).identify(make_request())
    observation = usage_poll()
    assert observation["source"] == "usage_info"
    report = quota_report(Provider.PLANT_ID)
    assert (report.remaining, report.limit, report.reset_at) == (100_000 - 2, 100_000, None)  # a total limit
    assert report.credits["used"]["total"] == 2
    assert report.credits["can_use"] is True


def test_identify_requests_start_one_poll_per_interval(sandbox):
    client = PlantIdClient(api_key="test-plant-id-key", base_url=sandbox.plant_id_url(), timeout=5)
    for color in ((10, 200, 10), (200, 10, 10), (10, 10, 200), (200, 200, 10)):
        client.identify(make_request(color=color))
    give_up = time.monotonic() + 10
    while quota_report(Provider.PLANT_ID).source != "usage_info" and time.monotonic() < give_up:
        time.sleep(0.02)  # the poll runs in its own thread
    assert polls(sandbox) == 1


def test_a_refused_poll_records_nothing(sandbox, settings):
    settings.PLANT_ID_API_KEY = "unknown-key"
    assert usage_poll() is None
    assert quota_report(Provider.PLANT_ID).credits is None


def test_health_shows_the_credits_and_never_polls(sandbox, anonymous_client):
    thread = usage_poll_maybe(NOW)
    thread.join(10)
    body = anonymous_client.get(reverse("health")).json()
    quota = body["quota"]["plant_id"]
    assert (quota["remaining"], quota["limit"], quota["source"], quota["exhausted"]) == (
        100_000,
        100_000,
        "usage_info",
        False,
    )
    assert quota["credits"]["remaining"] == {"day": None, "week": None, "month": None, "total": 100_000}
    assert quota["budget"]["budget"] is None
    for _ in range(3):
        anonymous_client.get(reverse("health"))
    assert polls(sandbox) == 1


def test_a_process_asks_for_each_interval_once(settings):
    """After one try for an interval, the request path costs no Redis round trip for the poll until the next."""
    settings.PLANT_ID_USAGE_POLL_INTERVAL = 300
    assert usage_poll_due(NOW + 600) is True
    cache.clear()  # even with the claim gone, this process does not ask again in that interval
    assert usage_poll_due(NOW + 601) is False
    assert usage_poll_due(NOW + 900) is True
