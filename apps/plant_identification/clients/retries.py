"""Retrying a provider call that failed before any answer: which failures, how long to wait, and the budget.

A retry is worth it only when the failure cost nothing and says nothing about the next attempt: a refused or
reset connection before any answer, or a 500/502/503/504 (the provider produced no answer; 500 is included
because a provider's 500 under load is as transient as a proxy's 502, and an error answer is not billed).
Never a timeout (slow, and the provider may be working on it, and billing it), a 4xx, a 429 or a 401/403.

At most ``PROVIDER_MAX_RETRIES`` (0 or 1) per call, after a short jittered backoff, only while the provider
timeout and the request deadline leave room, and not in an outage, which a retry only feeds (``outages.py``: this
worker's view; the circuit open, or counting ``PROVIDER_RETRY_OUTAGE_AFTER`` failed calls in a row in the whole
fleet, is one too). A per-worker, per-provider budget (Finagle's and Envoy's model) bounds the rest: over the
last ``PROVIDER_RETRY_BUDGET_WINDOW`` seconds, retries may be at most ``PROVIDER_RETRY_BUDGET_PERCENT`` of the
calls, plus ``PROVIDER_RETRY_BUDGET_FLOOR`` retries always allowed.
"""

import random
import threading
import time
from collections import deque
from collections.abc import Callable

from django.conf import settings

from apps.plant_identification.providers import Provider

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
BACKOFF = 0.05  # seconds before the retry, jittered between half and one and a half of it
MIN_ROOM = 1.0  # seconds the retry must still have before the call's timeout and the request's deadline


def backoff_seconds() -> float:
    """The wait before a retry: jittered, so retries of calls that failed together do not arrive together."""
    return BACKOFF * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security


class RetryBudget:
    """How many retries one provider may have in this worker process now (thread-safe)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every call and retry seen so far."""
        with self._lock:
            self._calls.clear()
            self._retries.clear()

    def record_call(self) -> None:
        """Count one logical call (it earns the budget its share of a retry)."""
        with self._lock:
            self._calls.append(self.clock())

    def try_spend(self) -> bool:
        """Take one retry if the budget allows it now."""
        with self._lock:
            now = self.clock()
            for times in (self._calls, self._retries):
                while times and times[0] <= now - settings.PROVIDER_RETRY_BUDGET_WINDOW:
                    times.popleft()
            allowed = settings.PROVIDER_RETRY_BUDGET_FLOOR + settings.PROVIDER_RETRY_BUDGET_PERCENT / 100 * len(
                self._calls
            )
            if len(self._retries) >= allowed:
                return False
            self._retries.append(now)
            return True

    def refund(self) -> None:
        """Give back a retry taken and then not sent (an outage seen after the backoff)."""
        with self._lock:
            if self._retries:
                self._retries.pop()


RETRY_BUDGETS = {provider: RetryBudget() for provider in Provider}
