"""/metrics: Prometheus text open to scrapers (or behind a token), what identify requests and circuits record, and
one scrape summing several real gunicorn workers (multiprocess mode)."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.clients.outages import Backoff, OutageWatch
from apps.plant_identification.exceptions import ProviderUnavailableError
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.identify import plant_identify
from tests.factories import (
    PLANT_ID_URL,
    PLANTNET_URL,
    fixture_json,
    jpeg_bytes,
    log_counter,
    make_request,
    providers_held,
)
from tests.gunicorn import GunicornProcess

ROOT = Path(__file__).resolve().parents[2]
METRICS = "/metrics"
IDENTIFY = reverse("plant_identification:identify")
IDENTIFY_ROUTE = "plant_identification:identify"


def parse(text: str) -> dict:
    """Every sample of an exposition, keyed by (sample name, frozenset of its labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **headers) -> dict:
    response = client.get(METRICS, **headers)
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def has(samples: dict, name: str, **labels) -> bool:
    return (name, frozenset(labels.items())) in samples


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def identify(client, color=(40, 120, 40)):
    photo = io.BytesIO(jpeg_bytes(color))
    photo.name = "leaf.jpg"
    return client.post(IDENTIFY, {"images": [photo]}, format="multipart")


# ---------------------------------------------------------------------------- the endpoint
def test_open_to_scrapers_as_prometheus_text_never_cached_and_calls_no_provider(anonymous_client, mocked_responses):
    response = anonymous_client.get(METRICS, HTTP_ACCEPT="text/plain")  # a scraper's Accept, not JSON

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert {"no-cache", "no-store"} <= {part.strip() for part in response["Cache-Control"].split(",")}
    families = {family.name: family.type for family in text_string_to_metric_families(response.content.decode())}
    assert families["plantid_circuit_state"] == "gauge"
    assert families["plantid_provider_calls"] == "counter"
    assert families["plantid_provider_latency_seconds"] == "histogram"
    assert families["plantid_http_request_duration_seconds"] == "histogram"
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong", 401), ("Token s3cret-metrics", 401), ("Bearer s3cret-metrics", 200)],
)
def test_with_metrics_token_set_only_its_bearer_may_scrape(anonymous_client, settings, authorization, status):
    settings.METRICS_TOKEN = "s3cret-metrics"
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = anonymous_client.get(METRICS, **headers)

    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "METRICS_TOKEN" in response.json()["detail"]
        assert "plantid_" not in response.content.decode()


def test_circuit_state_is_a_gauge_per_provider_while_closed_and_follows_the_shared_circuit(anonymous_client):
    samples = scrape(anonymous_client)
    for provider in Provider:
        assert value(samples, "plantid_circuit_state", provider=provider.value, state="closed") == 1
        assert value(samples, "plantid_circuit_state", provider=provider.value, state="open") == 0
        assert has(samples, "plantid_circuit_state", provider=provider.value, state="half-open")
        assert has(samples, "plantid_circuit_failures", provider=provider.value)
        assert value(samples, "plantid_provider_configured", provider=provider.value) == 1

    breaker_for(Provider.PLANTNET).open()
    samples = scrape(anonymous_client)
    assert value(samples, "plantid_circuit_state", provider="plantnet", state="open") == 1
    assert value(samples, "plantid_circuit_state", provider="plantnet", state="closed") == 0
    assert value(samples, "plantid_circuit_state", provider="plant_id", state="closed") == 1


# ---------------------------------------------------------------------------- what identify records
@pytest.mark.django_db
def test_identify_counts_calls_latency_cache_and_status(api_client, anonymous_client, plant_id_ok, plantnet_ok):
    before = scrape(anonymous_client)
    assert identify(api_client).status_code == 200
    first = scrape(anonymous_client)

    for provider in ("plant_id", "plantnet"):
        assert delta(before, first, "plantid_provider_calls_total", provider=provider, outcome="ok") == 1
        assert delta(before, first, "plantid_provider_latency_seconds_count", provider=provider, outcome="ok") == 1
        assert delta(before, first, "plantid_cache_misses_total", provider=provider) == 1
        assert delta(before, first, "plantid_cache_hits_total", provider=provider) == 0
        assert delta(before, first, "plantid_provider_retries_total", provider=provider) == 0
    request = {"route": IDENTIFY_ROUTE, "method": "POST"}
    assert delta(before, first, "plantid_http_requests_total", **request, status="200") == 1
    assert delta(before, first, "plantid_http_request_duration_seconds_count", **request, status_class="2xx") == 1

    assert identify(api_client).status_code == 200  # the same photo: both answers come from the cache
    second = scrape(anonymous_client)
    for provider in ("plant_id", "plantnet"):
        assert delta(first, second, "plantid_cache_hits_total", provider=provider) == 1
        assert delta(first, second, "plantid_cache_misses_total", provider=provider) == 0
        assert delta(first, second, "plantid_provider_calls_total", provider=provider, outcome="ok") == 0
    assert delta(first, second, "plantid_http_requests_total", **request, status="200") == 1


@pytest.mark.django_db
def test_failures_count_by_outcome_and_a_trip_is_one_transition(api_client, anonymous_client, plant_id_ok, settings):
    settings.PLANTNET_CIRCUIT_FAIL_MAX = 1
    plant_id_ok.post(PLANTNET_URL, status=500, json=fixture_json("plantnet_internal_error.json"))
    before = scrape(anonymous_client)

    assert identify(api_client).status_code == 200  # degraded: Pl@ntNet failed and its circuit opened
    assert identify(api_client, color=(200, 30, 30)).status_code == 200  # Pl@ntNet not called: circuit open
    after = scrape(anonymous_client)

    assert delta(before, after, "plantid_provider_calls_total", provider="plantnet", outcome="error") == 1
    assert delta(before, after, "plantid_provider_calls_total", provider="plantnet", outcome="circuit_open") == 1
    assert delta(before, after, "plantid_provider_calls_total", provider="plant_id", outcome="ok") == 2
    opened = {"provider": "plantnet", "from_state": "closed", "to_state": "open", "reason": "failures"}
    assert delta(before, after, "plantid_circuit_transitions_total", **opened) == 1
    assert value(after, "plantid_circuit_state", provider="plantnet", state="open") == 1


@pytest.mark.django_db
def test_a_503_is_counted_with_its_status_and_each_provider_failure(api_client, anonymous_client, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=502, body="<html>502 Bad Gateway</html>")
    mocked_responses.post(PLANTNET_URL, status=503, body="busy")
    before = scrape(anonymous_client)

    assert identify(api_client).status_code == 503
    after = scrape(anonymous_client)

    assert delta(before, after, "plantid_http_requests_total", route=IDENTIFY_ROUTE, method="POST", status="503") == 1
    labels = {"route": IDENTIFY_ROUTE, "method": "POST", "status_class": "5xx"}
    assert delta(before, after, "plantid_http_request_duration_seconds_count", **labels) == 1
    for provider in ("plant_id", "plantnet"):
        assert delta(before, after, "plantid_provider_calls_total", provider=provider, outcome="error") == 1


@pytest.mark.django_db
def test_retries_are_counted_per_provider(anonymous_client, mocked_responses, settings):
    settings.PROVIDER_MAX_RETRIES = 1
    mocked_responses.post(PLANTNET_URL, status=503, body="busy")
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    client = PlantNetClient(
        api_key="test-plantnet-key",
        base_url="https://plantnet.test/v2",
        timeout=5,
        project="all",
        outage_watch=OutageWatch(sleep=lambda _: None),
    )
    before = scrape(anonymous_client)

    plant_identify(request=make_request(), clients={Provider.PLANTNET: client})
    after = scrape(anonymous_client)

    assert len(mocked_responses.calls) == 2
    assert delta(before, after, "plantid_provider_retries_total", provider="plantnet") == 1
    assert delta(before, after, "plantid_provider_calls_total", provider="plantnet", outcome="ok") == 1


def _refusal_budget(settings, watch: OutageWatch) -> dict:
    settings.PROVIDER_RETRY_BUDGET_FLOOR = settings.PROVIDER_RETRY_BUDGET_PERCENT = 0
    return {}


def _refusal_no_time(settings, watch: OutageWatch) -> dict:
    return {"deadline": time.monotonic()}


def _refusal_worker_outage(settings, watch: OutageWatch) -> dict:
    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER + 1):  # this worker's attempts before: all failed, none
        watch.start_attempt()  # out,
        watch.record_attempt(failed=True)
    assert watch.backoff(0) is Backoff.GO  # and the probe they made it send failed too
    watch.start_attempt()
    watch.record_attempt(failed=True)
    return {}


def _refusal_circuit_outage(settings, watch: OutageWatch) -> dict:
    settings.PLANTNET_CIRCUIT_FAIL_MAX = 10  # closed, but other workers' failed calls in a row were counted

    def fail():
        raise ConnectionError("another worker's call failed")

    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
        with pytest.raises(ConnectionError):
            breaker_for(Provider.PLANTNET).call(fail)
    return {}


def _refusal_fleet_outage(settings, watch: OutageWatch) -> dict:
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER - 1):  # other workers' attempts, in backoff
        breaker_for(Provider.PLANTNET).attempt_failed()
    return {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reason", "arrange"),
    [
        ("budget", _refusal_budget),
        ("no_time", _refusal_no_time),
        ("worker_outage", _refusal_worker_outage),
        ("circuit_outage", _refusal_circuit_outage),
        ("fleet_outage", _refusal_fleet_outage),
    ],
)
def test_a_retryable_failure_not_retried_is_counted_with_its_reason(
    anonymous_client, mocked_responses, settings, reason, arrange
):
    settings.PROVIDER_MAX_RETRIES = 1
    mocked_responses.post(PLANTNET_URL, status=502, body="bad gateway")
    watch = OutageWatch(sleep=lambda _: None)
    client = PlantNetClient(
        api_key="test-plantnet-key", base_url="https://plantnet.test/v2", timeout=5, project="all", outage_watch=watch
    )
    identify_options = arrange(settings, watch)
    before = scrape(anonymous_client)

    with pytest.raises(ProviderUnavailableError) as failed:
        client.identify(make_request(), **identify_options)
    after = scrape(anonymous_client)

    assert failed.value.attempts == len(mocked_responses.calls) == 1
    assert delta(before, after, "plantid_provider_retries_refused_total", provider="plantnet", reason=reason) == 1
    others = {"budget", "no_time", "worker_outage", "circuit_outage", "fleet_outage"} - {reason}
    assert not any(
        delta(before, after, "plantid_provider_retries_refused_total", provider="plantnet", reason=other)
        for other in others
    )


@pytest.mark.django_db
def test_requests_are_labelled_by_route_name_never_by_raw_path(api_client, anonymous_client):
    unknown_id = uuid.uuid4()
    assert anonymous_client.get("/no/such/page-8f3a/").status_code == 404
    assert api_client.get(f"/api/v1/plant-identification/identifications/{unknown_id}/").status_code == 404
    assert anonymous_client.generic("BREW", "/health/live/").status_code == 405
    response = anonymous_client.get(METRICS)
    text = response.content.decode()
    samples = parse(text)

    assert value(samples, "plantid_http_requests_total", route="unmatched", method="GET", status="404") >= 1
    detail = {"route": "plant_identification:identification-detail", "method": "GET", "status": "404"}
    assert value(samples, "plantid_http_requests_total", **detail) >= 1
    assert value(samples, "plantid_http_requests_total", route="health-live", method="other", status="405") >= 1
    assert "page-8f3a" not in text
    assert str(unknown_id) not in text
    assert "BREW" not in text


# ---------------------------------------------------------------------------- several processes, one scrape
def _http(sock: Path, path: str) -> tuple[int, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock))
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        return _read_response(conn)


def _read_response(conn: socket.socket) -> tuple[int, str]:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


class Gunicorn(GunicornProcess):
    """Sync workers of a real gunicorn on a unix socket, in prometheus-client's multiprocess mode."""

    def __init__(self, tmp_path: Path, metrics_dir: Path, workers: int) -> None:
        self.sock = tmp_path / "gunicorn.sock"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        super().__init__(["-k", "sync", "-w", str(workers), "--timeout", "60", "-b", f"unix:{self.sock}"], env)


@pytest.mark.slow
def test_one_scrape_sums_every_gunicorn_worker_and_survives_a_worker_exit(tmp_path):
    """Two sync workers each answer one /health/live/: the first request is held half-sent in one worker, so
    the other must answer the second. Every scrape, whichever worker answers it, counts both; so it does after
    a worker exits; a counter left by an earlier run is wiped at start; the circuit comes from Redis."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = 'from prometheus_client import Counter; Counter("plantid_http_requests", "", ["route", "method", "status"])'
    stale += '.labels("health-live", "GET", "200").inc(100)'
    subprocess.run(  # noqa: S603 - a counter file left by an earlier run
        [sys.executable, "-c", stale], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, check=True
    )
    assert list(metrics_dir.glob("*.db"))
    breaker_for(Provider.PLANTNET).open()  # in the shared Redis, from this process
    server = Gunicorn(tmp_path, metrics_dir, workers=2)
    try:
        pids = {server.booted_worker(), server.booted_worker()}
        live = {"route": "health-live", "method": "GET", "status": "200"}

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
            held.settimeout(30)
            held.connect(str(server.sock))
            held.sendall(b"GET /health/live/ HTTP/1.0\r\nHost: localhost\r\n")  # the worker that takes it waits
            assert _http(server.sock, "/health/live/")[0] == 200  # so the other worker answers this one
            held.sendall(b"\r\n")
            assert _read_response(held)[0] == 200

        for _ in range(4):
            status, text = _http(server.sock, METRICS)
            assert status == 200
            samples = parse(text)
            assert value(samples, "plantid_http_requests_total", **live) == 2
            assert value(samples, "plantid_circuit_state", provider="plantnet", state="open") == 1
            assert value(samples, "plantid_circuit_state", provider="plant_id", state="closed") == 1

        os.kill(min(pids), signal.SIGTERM)  # gunicorn replaces it; child_exit tells prometheus-client
        assert server.booted_worker() not in pids
        for _ in range(4):
            status, text = _http(server.sock, METRICS)
            assert status == 200
            assert value(parse(text), "plantid_http_requests_total", **live) == 2
        assert server.process.poll() is None
    finally:
        server.stop()
    assert "Traceback" not in "".join(server.log), "".join(server.log)


@pytest.mark.slow
def test_a_missing_multiprocess_directory_stops_start_up_naming_it(tmp_path):
    env = {**os.environ, "DJANGO_DEBUG": "true", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "absent")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_wait_for_an_identical_call_in_flight_is_counted_by_how_it_ended(anonymous_client, mocked_responses):
    release, entered = providers_held(mocked_responses)
    client = PlantNetClient(
        api_key="test-plantnet-key", base_url=PLANTNET_URL.rsplit("/identify", 1)[0], timeout=5, project="all"
    )
    before = scrape(anonymous_client)
    with log_counter("apps.plant_identification.clients.single_flight", "waiting for an identical call") as waits:
        leader = threading.Thread(target=client.identify, args=(make_request(),))
        leader.start()
        assert entered.wait(10)
        follower = threading.Thread(target=client.identify, args=(make_request(),))
        follower.start()
        waits.wait_for(1)
        release.set()
        leader.join(10)
        follower.join(10)
    after = scrape(anonymous_client)

    assert len(mocked_responses.calls) == 1
    assert delta(before, after, "plantid_single_flight_waits_total", provider="plantnet", outcome="answer") == 1


@pytest.mark.django_db
def test_a_stale_answer_is_counted_with_the_failure_it_stood_in_for(anonymous_client, plantnet_ok, settings):
    settings.PLANTNET_CACHE_TTL = 0  # every answer is stale at once
    client = PlantNetClient(
        api_key="test-plantnet-key", base_url=PLANTNET_URL.rsplit("/identify", 1)[0], timeout=5, project="all"
    )
    plant_identify(request=make_request(), clients={Provider.PLANTNET: client})
    breaker_for(Provider.PLANTNET).open()
    before = scrape(anonymous_client)

    plant_identify(request=make_request(), clients={Provider.PLANTNET: client})
    after = scrape(anonymous_client)

    assert delta(before, after, "plantid_stale_answers_total", provider="plantnet") == 1
    assert delta(before, after, "plantid_provider_calls_total", provider="plantnet", outcome="circuit_open") == 1
    assert delta(before, after, "plantid_cache_hits_total", provider="plantnet") == 0
