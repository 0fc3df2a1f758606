"""Prometheus metrics for /metrics: definitions, recording helpers, the request middleware and the circuit collector."""

import hmac
import logging
import time
from collections.abc import Iterable, Iterator

from django.conf import settings
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.types import ProviderOutcome

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the Prometheus text format every scraper reads
UNMATCHED_ROUTE = "unmatched"  # a request that matched no URL pattern (never its raw path)
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0)

# The same series in development (in-process) and under gunicorn (multiprocess mode exports no _created).
_disable_created_metrics()

# This process's metrics. Under PROMETHEUS_MULTIPROC_DIR (read by prometheus-client from the environment when it
# is imported) their values live in that directory, one file per worker, and a scrape sums every worker's files.
_REGISTRY = CollectorRegistry()

PROVIDER_CALLS = Counter(
    "plantid_provider_calls",
    "Provider parts of identify requests not served from the answer cache, by outcome (the API's provider status).",
    ["provider", "outcome"],
    registry=_REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "plantid_provider_latency_seconds",
    "Time from the fan-out's call to the provider's outcome (breaker, retries and HTTP included), by outcome.",
    ["provider", "outcome"],
    buckets=PROVIDER_BUCKETS,
    registry=_REGISTRY,
)
PROVIDER_RETRIES = Counter(
    "plantid_provider_retries",
    "Retried provider requests (attempts beyond the first).",
    ["provider"],
    registry=_REGISTRY,
)
RETRIES_REFUSED = Counter(
    "plantid_provider_retries_refused",
    "Retryable failures not retried, by reason: no time left, the retry budget spent, an outage seen by this"
    " worker (failed attempts in a row and a failed probe), by the circuit (open, or failed calls in a row"
    " fleet-wide) or by the fleet (failed attempts in a row, retries included).",
    ["provider", "reason"],
    registry=_REGISTRY,
)
CACHE_HITS = Counter(
    "plantid_cache_hits",
    "Provider parts of identify requests answered from the answer cache.",
    ["provider"],
    registry=_REGISTRY,
)
CACHE_MISSES = Counter(
    "plantid_cache_misses",
    "Provider parts of identify requests not answered from the answer cache.",
    ["provider"],
    registry=_REGISTRY,
)
STALE_ANSWERS = Counter(
    "plantid_stale_answers",
    "Provider parts answered by the provider's last answer for the same images because it could not answer "
    "(stale-if-error); the failure itself is counted in plantid_provider_calls.",
    ["provider"],
    registry=_REGISTRY,
)
LATE_ANSWERS = Counter(
    "plantid_late_answers",
    "Provider parts an identify answered without (the early answer: outcome pending), and how they ended: merged "
    "into the stored identification, lost when the worker stopped, or settled when their worker had died.",
    ["provider", "outcome"],
    registry=_REGISTRY,
)
CREDITS_SPENT = Counter(
    "plantid_credits_spent",
    "Provider credits spent by this fleet's calls (Plant.id: 1 per identification, 2 with health; a timeout counts, "
    "as it may have been charged); credits given back for calls that were not charged are not counted.",
    ["provider"],
    registry=_REGISTRY,
)
SINGLE_FLIGHT_WAITS = Counter(
    "plantid_single_flight_waits",
    "Provider calls that found an identical call in flight and waited for it, by how the wait ended: its answer, "
    "its failure, a takeover (the leader left neither), or the caller's deadline.",
    ["provider", "outcome"],
    registry=_REGISTRY,
)
CIRCUIT_TRANSITIONS = Counter(
    "plantid_circuit_transitions",
    "Circuit transitions, counted once fleet-wide (by the worker that made them); reason is set on opens.",
    ["provider", "from_state", "to_state", "reason"],
    registry=_REGISTRY,
)
HTTP_REQUESTS = Counter(
    "plantid_http_requests",
    "HTTP requests answered, by route name, method and status code.",
    ["route", "method", "status"],
    registry=_REGISTRY,
)
HTTP_DURATION = Histogram(
    "plantid_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name, method and status class (2xx, 4xx, 5xx).",
    ["route", "method", "status_class"],
    buckets=REQUEST_BUCKETS,
    registry=_REGISTRY,
)


# ---------------------------------------------------------------------------- recording (no I/O beyond the mmap)
def _count(counter: Counter, labels: tuple[str, ...], amount: float = 1, what: str = "a count") -> None:
    """``counter`` with ``labels`` up by ``amount``; never raises: metrics must never cost an answer."""
    try:
        counter.labels(*labels).inc(amount)
    except Exception:
        logger.exception("[METRICS] could not record %s", what)


def late_answer_record(provider: str, outcome: str) -> None:
    """Count one provider part left pending by an early answer, or how one ended; never raises."""
    _count(LATE_ANSWERS, (provider, outcome), what="a late answer")


def retry_refused_record(provider: str, reason: str) -> None:
    """Count one retryable failure that was not retried, and why; never raises."""
    _count(RETRIES_REFUSED, (provider, reason), what="a refused retry")


def single_flight_wait_record(provider: str, outcome: str) -> None:
    """Count one wait for an identical call in flight and how it ended; never raises."""
    _count(SINGLE_FLIGHT_WAITS, (provider, outcome), what="a single-flight wait")


def provider_outcomes_record(outcomes: Iterable[ProviderOutcome]) -> None:
    """Count one identify request's provider outcomes; never raises."""
    try:
        for outcome in outcomes:
            provider = outcome.provider.value
            if outcome.cached and not outcome.stale:
                CACHE_HITS.labels(provider).inc()
                continue
            CACHE_MISSES.labels(provider).inc()
            if outcome.stale:
                STALE_ANSWERS.labels(provider).inc()
            PROVIDER_CALLS.labels(provider, outcome.status.value).inc()
            if outcome.latency_ms is not None:
                PROVIDER_LATENCY.labels(provider, outcome.status.value).observe(outcome.latency_ms / 1000)
            if outcome.attempts > 1:
                PROVIDER_RETRIES.labels(provider).inc(outcome.attempts - 1)
    except Exception:  # metrics must never cost an answer
        logger.exception("[METRICS] could not record provider outcomes")


def credits_spent_record(provider: str, credits: int) -> None:
    """Count credits one call spent; never raises."""
    _count(CREDITS_SPENT, (provider,), credits, what="credits spent")


def circuit_transition_record(provider: str, from_state: str, to_state: str, reason: str = "") -> None:
    """Count one circuit transition made by this process; never raises."""
    _count(CIRCUIT_TRANSITIONS, (provider, from_state or "unknown", to_state, reason or ""), what="a transition")


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Counts every answered request and its duration, labelled by route name (bounded), never by raw path."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            elapsed = time.perf_counter() - started
            method = request.method if request.method in METHODS else OTHER_METHOD
            route, status = _route(request), response.status_code
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_DURATION.labels(route, method, f"{status // 100}xx").observe(elapsed)
        except Exception:
            logger.exception("[METRICS] could not record a request")
        return response


# ---------------------------------------------------------------------------- scrape
class CircuitCollector:
    """Each provider's circuit read from the breaker store at scrape time (Redis: the fleet's one truth), so
    every worker reports the same values, closed circuits included."""

    def collect(self) -> Iterator[Metric]:
        from apps.plant_identification.circuits.breaker import circuit_snapshot_list  # the breakers import us
        from apps.plant_identification.providers import provider_registry

        state = GaugeMetricFamily(
            "plantid_circuit_state",
            "1 for the state each provider's circuit is in now (closed, open, half-open), 0 for the others.",
            labels=["provider", "state"],
        )
        failures = GaugeMetricFamily(
            "plantid_circuit_failures", "Counted failures in each provider's circuit now.", labels=["provider"]
        )
        configured = GaugeMetricFamily(
            "plantid_provider_configured",
            "1 when the provider has an API key (is called), else 0.",
            labels=["provider"],
        )
        latency = GaugeMetricFamily(
            "plantid_provider_recent_latency_seconds",
            "p50 and p95 of each provider's latest successful calls, as /health/ reports them (fleet-wide from "
            "Redis; this worker's own while Redis is unreachable); absent without samples.",
            labels=["provider", "quantile"],
        )
        latency_samples = GaugeMetricFamily(
            "plantid_provider_recent_latency_samples",
            "Successful calls the recent latency of each provider is measured over.",
            labels=["provider"],
        )
        try:
            snapshots = circuit_snapshot_list()
        except Exception:  # a scrape reports what it can
            logger.exception("[METRICS] could not read the circuits")
            snapshots = []
        for snapshot in snapshots:
            provider = snapshot.provider.value
            for name in CircuitState:
                state.add_metric([provider, name.value], 1.0 if snapshot.state == name else 0.0)
            failures.add_metric([provider], snapshot.fail_count)
            if snapshot.latency is not None:
                for quantile, ms in (("0.5", snapshot.latency.p50_ms), ("0.95", snapshot.latency.p95_ms)):
                    if ms is not None:
                        latency.add_metric([provider, quantile], ms / 1000)
                latency_samples.add_metric([provider], snapshot.latency.samples)
        for provider, spec in provider_registry().items():
            configured.add_metric([provider.value], 1.0 if spec.configured else 0.0)
        yield from (state, failures, configured, latency, latency_samples)


class QuotaCollector:
    """Each provider's quota as the shared cache has it at scrape time (what the provider last said, and the
    Plant.id credit budget), so every worker reports the same fleet-wide values."""

    def collect(self) -> Iterator[Metric]:
        from apps.plant_identification.quotas.report import quota_reports  # the clients import us

        remaining = GaugeMetricFamily(
            "plantid_provider_quota_remaining",
            "What is left of each provider's quota: source=provider as the provider last said (Pl@ntNet's daily "
            "identifications, Plant.id's usage_info credits), source=budget what PLANT_ID_DAILY_CREDIT_BUDGET leaves "
            "today; absent when unknown.",
            labels=["provider", "source"],
        )
        spent = GaugeMetricFamily(
            "plantid_credits_spent_today",
            "Credits spent (or reserved by calls in flight) today, UTC, fleet-wide.",
            labels=["provider"],
        )
        budget = GaugeMetricFamily(
            "plantid_credit_budget", "PLANT_ID_DAILY_CREDIT_BUDGET; absent when unset.", labels=["provider"]
        )
        try:
            reports = quota_reports()
        except Exception:  # a scrape reports what it can
            logger.exception("[METRICS] could not read the quotas")
            reports = {}
        for provider, report in reports.items():
            if report.remaining is not None:
                remaining.add_metric([provider.value, "provider"], report.remaining)
            if report.budget is not None:
                spent.add_metric([provider.value], report.budget.spent)
                if report.budget.budget is not None:
                    budget.add_metric([provider.value], report.budget.budget)
                    remaining.add_metric([provider.value, "budget"], report.budget.remaining)
        yield from (remaining, spent, budget)


class _Scrape:
    """The collectors one scrape reads, in order."""

    def __init__(self, *collectors) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def metrics_exposition() -> bytes:
    """The Prometheus text of every metric: the whole fleet's (multiprocess) or this process's counters and
    histograms, and the circuits as the breaker store has them now. Calls no provider."""
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    counters = MultiProcessCollector(None, path=directory) if directory else _REGISTRY
    return generate_latest(_Scrape(counters, CircuitCollector(), QuotaCollector()))


def metrics_token_valid(authorization: str) -> bool:
    """True when ``METRICS_TOKEN`` is unset, or ``authorization`` is ``Bearer <METRICS_TOKEN>``."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
