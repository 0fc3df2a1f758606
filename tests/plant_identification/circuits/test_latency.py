"""Recent latency: every successful upstream call's duration, fleet-wide in Redis (or this worker's while Redis
is unreachable), reported as p50/p95 in /health/, the circuits API, the admin and /metrics; never a cache hit,
a failure or a rejected call, and never a round trip of its own."""

import json

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.latency import LATENCY_SAMPLES, RecentLatency, recent_latency
from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.providers import Provider
from tests.factories import PLANTNET_URL, UNREACHABLE_REDIS, FakeClock, fixture_json, make_request, point_circuits_at

NONE_YET = {"p50_ms": None, "p95_ms": None, "samples": 0}


@pytest.fixture(autouse=True)
def _no_recent_latency():
    """Closing a circuit keeps its recent latency (it describes the provider): start each test without any."""
    for provider in Provider:
        breaker_for(provider).store.clear_latency()
    yield
    for provider in Provider:
        breaker_for(provider).store.clear_latency()


def succeed(breaker, clock, *seconds: float) -> None:
    """One successful call per duration, taking that long on the breaker's clock."""
    for duration in seconds:
        with breaker.protect():
            clock.advance(duration)


def latency_of(body: dict, provider: str = "plantnet") -> dict:
    return body["circuit_breakers"][provider]["latency"] if "circuit_breakers" in body else body[provider]["latency"]


def test_percentiles_are_nearest_rank_whole_milliseconds():
    assert recent_latency([], "fleet") == RecentLatency(None, None, 0, "fleet")
    assert recent_latency([7], "worker") == RecentLatency(7, 7, 1, "worker")
    assert recent_latency(range(100, 0, -1), "fleet") == RecentLatency(50, 95, 100, "fleet")
    assert recent_latency([10, 20, 30, 40], "fleet") == RecentLatency(20, 40, 4, "fleet")


@pytest.mark.django_db
def test_health_reports_the_fleets_latency_of_successful_calls_only(anonymous_client, clock):
    breaker = breaker_for(Provider.PLANTNET)
    assert latency_of(anonymous_client.get(reverse("health")).json()) == {**NONE_YET, "scope": "fleet"}

    succeed(breaker, clock, *[0.2] * 18, 1.5, 2.5)
    for _ in range(3):  # failures are not latency samples
        try:
            with breaker.protect():
                clock.advance(9)
                raise ProviderUnavailableError("plantnet", "HTTP 503")
        except ProviderUnavailableError:
            pass
    breaker.open()
    with pytest.raises(ProviderCircuitOpenError), breaker.protect():  # nor are calls the circuit turns away
        pass

    body = anonymous_client.get(reverse("health")).json()
    assert latency_of(body) == {"p50_ms": 200, "p95_ms": 1500, "samples": 20, "scope": "fleet"}
    assert latency_of(body, "plant_id") == {**NONE_YET, "scope": "fleet"}


@pytest.mark.django_db
def test_the_staff_circuit_list_has_the_same_latency(admin_client, clock):
    succeed(breaker_for(Provider.PLANT_ID), clock, 0.3, 0.4)
    body = admin_client.get(reverse("plant_identification:circuits")).json()
    assert latency_of(body, "plant_id") == {"p50_ms": 300, "p95_ms": 400, "samples": 2, "scope": "fleet"}


def test_a_cache_hit_is_no_sample_and_the_call_is_timed_around_the_upstream_answer(mocked_responses, clock, settings):
    def answer_in_800_ms(request):
        clock.advance(0.8)
        return 200, {}, json.dumps(fixture_json("plantnet_identify_ok.json"))

    mocked_responses.add_callback("POST", PLANTNET_URL, callback=answer_in_800_ms)
    client = PlantNetClient(
        api_key=settings.PLANTNET_API_KEY, base_url=settings.PLANTNET_API_URL, timeout=20, project="all"
    )
    client.identify(make_request())
    assert client.identify(make_request()).cached
    assert breaker_for(Provider.PLANTNET).snapshot().latency == RecentLatency(800, 800, 1, "fleet")


def test_only_the_latest_samples_are_kept(clock):
    breaker = breaker_for(Provider.PLANT_ID)
    succeed(breaker, clock, *[10.0] * 5, *[0.001 * ms for ms in range(1, LATENCY_SAMPLES + 1)])
    assert breaker.snapshot().latency == RecentLatency(50, 95, LATENCY_SAMPLES, "fleet")


def test_every_workers_calls_count_and_a_quiet_success_waits_for_its_workers_next_script_call():
    """Two breakers on one provider stand for two workers. A success in a closed circuit with nothing to count
    runs no script: its duration reaches Redis with that worker's next admission or health read."""
    clock = FakeClock()
    one, other = (ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock) for _ in range(2))
    succeed(one, clock, 1.0)
    assert other.snapshot().latency.samples == 0  # still waiting in the first worker
    succeed(one, clock, 2.0)  # its admission took the first one along
    assert other.snapshot().latency.samples == 1
    assert one.snapshot().latency == RecentLatency(1000, 2000, 2, "fleet")  # a health read takes the rest
    succeed(other, clock, 3.0)
    assert other.snapshot().latency == RecentLatency(2000, 3000, 3, "fleet")


def test_while_redis_is_unreachable_each_worker_reports_its_own_and_shares_them_once_it_is_back(settings):
    clock = FakeClock()
    reachable = settings.CACHES["circuits"]["LOCATION"]
    worker, other = (ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock) for _ in range(2))
    succeed(worker, clock, 0.1)
    point_circuits_at(settings, UNREACHABLE_REDIS)
    succeed(worker, clock, 0.2, 0.3)
    assert worker.snapshot().latency == RecentLatency(200, 300, 3, "worker")  # its own, the shared one unknown
    assert other.snapshot().latency == RecentLatency(None, None, 0, "worker")

    point_circuits_at(settings, reachable)
    assert worker.snapshot().latency == RecentLatency(200, 300, 3, "fleet")  # what it measured meanwhile too


def test_without_redis_the_latency_is_the_workers(settings, clock):
    settings.REDIS_URL = ""
    breaker = ProviderCircuitBreaker(Provider.PLANTNET, clock=clock)
    succeed(breaker, clock, 0.05)
    assert breaker.snapshot().latency == RecentLatency(50, 50, 1, "worker")


@pytest.mark.django_db
def test_the_admin_dashboard_shows_the_recent_latency(admin_client, clock):
    succeed(breaker_for(Provider.PLANTNET), clock, 0.25, 0.75)
    page = admin_client.get(reverse("admin:plant_identification_circuit_changelist")).content.decode()
    cell = '<span class="circuit-latency" data-scope="fleet">p50 250 ms, p95 750 ms (2 calls, fleet-wide)</span>'
    assert cell in page
    detail = admin_client.get(reverse("admin:plant_identification_circuit_change", args=["plantnet"])).content
    assert b"p50 250 ms, p95 750 ms" in detail


def test_metrics_expose_the_recent_latency_in_seconds(anonymous_client, clock):
    succeed(breaker_for(Provider.PLANTNET), clock, 0.25, 0.75)
    text = anonymous_client.get("/metrics").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    quantile = "plantid_provider_recent_latency_seconds"
    assert samples[(quantile, (("provider", "plantnet"), ("quantile", "0.5")))] == 0.25
    assert samples[(quantile, (("provider", "plantnet"), ("quantile", "0.95")))] == 0.75
    assert samples[("plantid_provider_recent_latency_samples", (("provider", "plantnet"),))] == 2
    assert (quantile, (("provider", "plant_id"), ("quantile", "0.5"))) not in samples  # no samples: no value
