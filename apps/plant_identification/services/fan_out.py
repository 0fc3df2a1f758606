"""Calling every configured provider in parallel under one deadline, each outcome classified."""

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from apps.plant_identification.circuits.states import OpenReason
from apps.plant_identification.clients import BaseProviderClient
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderCircuitOpenError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
)
from apps.plant_identification.metrics import provider_outcomes_record
from apps.plant_identification.providers import Provider, provider_registry, provider_spec
from apps.plant_identification.request_context import with_request_id
from apps.plant_identification.services.bulkhead import BULKHEADS, total_capacity
from apps.plant_identification.types import IdentifyRequest, ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

DEADLINE_MARGIN = 5.0  # seconds past the slowest provider timeout, when IDENTIFY_DEADLINE is unset

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def provider_executor() -> ThreadPoolExecutor:
    """The process's provider-call thread pool, created on first use (after gunicorn forks).

    Long-lived so each thread keeps its HTTP sessions (and their TLS connections) across requests.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            # One thread per bulkhead slot: a provider that hangs fills its own slots, never the other's.
            _executor = ThreadPoolExecutor(max_workers=total_capacity(), thread_name_prefix="provider")
        return _executor


def identify_deadline(providers) -> float:
    """Seconds the fan-out may take: ``IDENTIFY_DEADLINE``, or the slowest provider's timeout plus a margin."""
    if settings.IDENTIFY_DEADLINE is not None:
        return settings.IDENTIFY_DEADLINE
    registry = provider_registry()
    return max(registry[provider].timeout for provider in providers) + DEADLINE_MARGIN


def _failure_status(exc: ProviderError) -> ProviderStatus:
    if isinstance(exc, ProviderCircuitOpenError):
        return ProviderStatus.QUOTA_EXHAUSTED if exc.reason == OpenReason.QUOTA else ProviderStatus.CIRCUIT_OPEN
    if isinstance(exc, ProviderRateLimitedError):
        return ProviderStatus.QUOTA_EXHAUSTED
    if isinstance(exc, ProviderTimeoutError):
        return ProviderStatus.TIMEOUT
    return ProviderStatus.ERROR


def _retry_after(exc: ProviderError) -> float:
    """Seconds before calling this provider again could help (``inf``: not before staff act)."""
    if isinstance(exc, ProviderCircuitOpenError):
        return math.inf if exc.retry_after is None else exc.retry_after
    if isinstance(exc, ProviderRateLimitedError):
        return exc.retry_after
    if exc.circuit_retry_after is not None:  # this very failure opened (or held) the circuit
        return exc.circuit_retry_after
    return 0.0


def provider_call(client: BaseProviderClient, request: IdentifyRequest, deadline: float) -> ProviderOutcome:
    """Answer from the client (cache or provider) by ``deadline`` (``time.monotonic()`` seconds); every failure
    becomes an outcome, never an exception: a failure's outcome carries the provider's stale answer when the
    client had one (stale-if-error)."""
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    provider = client.provider
    try:
        answer = client.identify(request, deadline=deadline)
        return ProviderOutcome(
            provider,
            answer.status,
            answer=answer,
            latency_ms=elapsed_ms(),
            cached=answer.cached,
            age_s=answer.age_s,
            attempts=answer.attempts,
        )
    except ProviderError as exc:
        if isinstance(exc, ProviderAuthError):
            logger.error(
                "%s rejected our credentials (%s): check %s_API_KEY",
                provider.value,
                exc.message,
                provider_spec(provider).env_prefix,
            )
        else:
            logger.warning("%s failed: %s", provider.value, exc)
        stale = exc.stale_answer  # its last answer for these images stands in: the status still says why
        return ProviderOutcome(
            provider,
            _failure_status(exc),
            answer=stale,
            latency_ms=elapsed_ms(),
            cached=stale is not None,
            stale=stale is not None,
            age_s=stale.age_s if stale is not None else None,
            attempts=exc.attempts,
            error_class=type(exc).__name__,
            error_detail=exc.message,
            http_status=exc.status_code,
            retry_after=_retry_after(exc),
        )
    except Exception as exc:  # a bug must cost one provider's answer, not the request
        logger.exception("[ERROR] %s call raised unexpectedly", provider.value)
        return ProviderOutcome(
            provider,
            ProviderStatus.ERROR,
            latency_ms=elapsed_ms(),
            attempts=1,
            error_class=type(exc).__name__,
            error_detail="internal error",
        )


class FanOut:
    """One identification's provider calls: their outcomes as they arrive, until the answer goes out (sealed).

    A call that finishes after that is a late answer: handed to ``on_late`` when the seal left it pending (the
    early answer), dropped when it was written off as a timeout at the deadline. The identify service attaches
    the stored identification's id, or abandons the fan-out when nothing was stored; ``on_late`` waits for that.
    """

    def __init__(self, request: IdentifyRequest, *, started: float, deadline: float, on_late=None) -> None:
        self.request = request
        self.started = started  # time.monotonic() seconds
        self.deadline_at = started + deadline  # no call of this fan-out runs past it
        self._on_late = on_late
        self._changed = threading.Condition()
        self._outcomes: dict[Provider, ProviderOutcome] = {}
        self._first_answer: tuple[float, ProviderOutcome] | None = None  # when it arrived, and what
        self._sealed = False
        self._stored = threading.Event()
        self.identification_id = None

    @property
    def outcomes(self) -> dict[Provider, ProviderOutcome]:
        """Every provider's outcome as it stands (in ``Provider`` order): pending ones while their late answers
        are out."""
        with self._changed:
            return self._ordered()

    def _ordered(self) -> dict[Provider, ProviderOutcome]:
        return {p: self._outcomes[p] for p in Provider if p in self._outcomes}

    @property
    def pending(self) -> list[Provider]:
        """The providers the answer went out without, whose calls are still running."""
        with self._changed:
            return [p for p, o in self._outcomes.items() if o.status == ProviderStatus.PENDING]

    def arrive(self, outcome: ProviderOutcome) -> None:
        """Record a finished call (from its provider thread)."""
        with self._changed:
            if not self._sealed:
                self._outcomes[outcome.provider] = outcome
                if outcome.answered and not outcome.stale and self._first_answer is None:  # a stale one waits
                    self._first_answer = (time.monotonic(), outcome)
                self._changed.notify_all()
                return
            late = self._outcomes[outcome.provider].status == ProviderStatus.PENDING
        if not late:  # written off already: a timeout at the deadline, or lost when the worker stopped
            logger.info("%s ended after its part was settled (%s): dropped", outcome.provider.value, outcome.status)
            return
        provider_outcomes_record([outcome])
        if self._on_late is not None:
            self._on_late(self, outcome)

    def resolve(self, outcome: ProviderOutcome) -> dict[Provider, ProviderOutcome]:
        """Put a late outcome in place of its pending one; every outcome as it now stands."""
        with self._changed:
            self._outcomes[outcome.provider] = outcome
            return self._ordered()

    def attach(self, identification_id) -> None:
        """The answer was stored under this id: late answers may be merged into it."""
        self.identification_id = identification_id
        self._stored.set()

    def abandon(self) -> None:
        """Nothing was stored: late answers have nowhere to go."""
        self._stored.set()

    def wait_stored(self, timeout: float):
        """The stored identification's id once the identify service has stored it; None if it never will."""
        self._stored.wait(timeout)
        return self.identification_id

    def seal(self, submitted: set[Provider]) -> dict[Provider, ProviderOutcome]:
        """Wait until every call has finished, the early-answer rule says go, or the deadline; then seal.

        A call still running is pending when the early answer went out, a timeout when the deadline passed.
        """
        with self._changed:
            while True:
                now = time.monotonic()
                running = submitted - self._outcomes.keys()
                if not running:
                    break
                if now >= self.deadline_at:
                    for provider in running:
                        self._outcomes[provider] = _deadline_outcome(provider, self.deadline_at - self.started)
                    break
                wake = self.deadline_at
                cutoff = self._early_cutoff()
                if cutoff is not None:
                    if now >= cutoff:
                        for provider in running:
                            self._outcomes[provider] = ProviderOutcome(provider, ProviderStatus.PENDING)
                        break
                    wake = min(wake, cutoff)
                self._changed.wait(wake - now)
            self._sealed = True
            return self._ordered()

    def _early_cutoff(self) -> float | None:
        """When the answer may go out without the calls still running (None: not before they end)."""
        if self._first_answer is None or not settings.IDENTIFY_EARLY_ANSWER:
            return None
        arrived, outcome = self._first_answer
        if _decisive(outcome):
            return arrived
        return arrived + late_grace(outcome.latency_ms or 0)


def late_grace(first_latency_ms: float) -> float:
    """Seconds the other providers get once one has answered in ``first_latency_ms``."""
    return max(settings.IDENTIFY_LATE_GRACE, settings.IDENTIFY_LATE_GRACE_FACTOR * first_latency_ms / 1000)


def _decisive(outcome: ProviderOutcome) -> bool:
    """A first answer sure enough that waiting for the others would not change what the user is told."""
    threshold = provider_spec(outcome.provider).decisive_score
    suggestions = outcome.answer.suggestions if outcome.answer else ()
    return threshold is not None and bool(suggestions) and max(s.score for s in suggestions) >= threshold


def _deadline_outcome(provider: Provider, deadline: float) -> ProviderOutcome:
    return ProviderOutcome(
        provider,
        ProviderStatus.TIMEOUT,
        latency_ms=round(deadline * 1000),
        attempts=1,
        error_class="DeadlineExceeded",
        error_detail=f"no answer within the {deadline:g}s deadline",
    )


def _bulkheaded_call(bulkhead, fan_out: FanOut, client: BaseProviderClient) -> None:
    try:
        outcome = provider_call(client, fan_out.request, fan_out.deadline_at)
    finally:
        bulkhead.release()
    fan_out.arrive(outcome)


def providers_fan_out(
    clients: dict[Provider, BaseProviderClient], request: IdentifyRequest, *, deadline: float, on_late=None
) -> FanOut:
    """Call every client at once and wait for them as ``FanOut.seal`` says: until every call has ended, the
    early answer (``IDENTIFY_EARLY_ANSWER``), or ``deadline`` seconds, past which a running call is a timeout."""
    fan_out = FanOut(request, started=time.monotonic(), deadline=deadline, on_late=on_late)
    submitted: set[Provider] = set()
    for provider, client in clients.items():
        bulkhead = BULKHEADS[provider]
        if bulkhead.try_acquire():
            try:
                # The provider thread's log lines carry this request's id.
                provider_executor().submit(with_request_id(_bulkheaded_call), bulkhead, fan_out, client)
            except RuntimeError:  # the pool is shutting down with the process
                bulkhead.release()
                raise
            submitted.add(provider)
        else:
            fan_out.arrive(
                ProviderOutcome(
                    provider,
                    ProviderStatus.ERROR,
                    latency_ms=0,
                    error_class="BulkheadFullError",
                    error_detail=f"{bulkhead.limit} calls to {provider.value} already in flight in this worker",
                )
            )
    outcomes = fan_out.seal(submitted)
    provider_outcomes_record(o for o in outcomes.values() if o.status != ProviderStatus.PENDING)
    return fan_out
