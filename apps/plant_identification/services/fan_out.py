"""Calling every configured provider in parallel under one deadline, each outcome classified."""

import contextvars
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

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
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.services.bulkhead import BULKHEADS, total_capacity
from apps.plant_identification.types import IdentifyRequest, ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

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
    becomes an outcome, never an exception."""
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
        return ProviderOutcome(
            provider,
            _failure_status(exc),
            latency_ms=elapsed_ms(),
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


def _bulkheaded_call(bulkhead, client: BaseProviderClient, request: IdentifyRequest, deadline: float):
    try:
        return provider_call(client, request, deadline)
    finally:
        bulkhead.release()


def providers_fan_out(
    clients: dict[Provider, BaseProviderClient], request: IdentifyRequest, *, deadline: float
) -> dict[Provider, ProviderOutcome]:
    """Call every client at once; a provider still running at ``deadline`` seconds is a timeout."""
    outcomes: dict[Provider, ProviderOutcome] = {}
    futures: dict[Provider, Future] = {}
    deadline_at = time.monotonic() + deadline
    for provider, client in clients.items():
        bulkhead = BULKHEADS[provider]
        if bulkhead.try_acquire():
            try:
                # In a copy of this request's context: the provider thread's log lines carry its request id.
                futures[provider] = provider_executor().submit(
                    contextvars.copy_context().run, _bulkheaded_call, bulkhead, client, request, deadline_at
                )
            except RuntimeError:  # the pool is shutting down with the process
                bulkhead.release()
                raise
        else:
            outcomes[provider] = ProviderOutcome(
                provider,
                ProviderStatus.ERROR,
                latency_ms=0,
                error_class="BulkheadFullError",
                error_detail=f"{bulkhead.limit} calls to {provider.value} already in flight in this worker",
            )
    wait(futures.values(), timeout=deadline)
    for provider, future in futures.items():
        if future.done():
            outcomes[provider] = future.result()
        else:
            if future.cancel():  # it never started: give its bulkhead slot back (a running call ends on its own)
                BULKHEADS[provider].release()
            outcomes[provider] = ProviderOutcome(
                provider,
                ProviderStatus.TIMEOUT,
                latency_ms=round(deadline * 1000),
                attempts=1,
                error_class="DeadlineExceeded",
                error_detail=f"no answer within the {deadline:g}s deadline",
            )
    provider_outcomes_record(outcomes.values())
    return outcomes
