"""Retrying a provider call that failed before any answer: which failures, how long to wait, and the budget.

A retry is worth it only when the failure cost nothing and says nothing about the next attempt: a refused or
reset connection before any answer, or a 500/502/503/504 (the provider produced no answer; 500 is included
because a provider's 500 under load is as transient as a proxy's 502, and an error answer is not billed).
Never a timeout (slow, and the provider may be working on it, and billing it), a 4xx, a 429 or a 401/403.

At most ``PROVIDER_MAX_RETRIES`` (0 or 1) per call, after a short jittered backoff, only while the provider
timeout and the request deadline leave room, and not in an outage, which a retry only feeds. More than
``PROVIDER_RETRY_OUTAGE_AFTER`` attempts in a row failed in this worker only suspect one (at 20 % faults a
worker's four calls out all fail about once a run): one retry then goes as the probe while the others wait for
it, and they go if it succeeds; its failure confirms the outage, and then no failure is retried until an attempt
succeeds. The circuit open, or counting that many failed calls in a row in the whole fleet, is an outage too.
Both are checked when an attempt fails (a confirmed outage then refuses at once only with none of the worker's
attempts still out: one still out may yet answer) and again after the backoff, and a backoff ends at once when
the worker sees a confirmed outage with none out, so calls that failed together give up together and their
failures reach the breaker without the backoff's delay. A per-worker, per-provider budget (Finagle's and Envoy's
model) bounds the rest: over the last ``PROVIDER_RETRY_BUDGET_WINDOW`` seconds, retries may be at most
``PROVIDER_RETRY_BUDGET_PERCENT`` of the calls, plus ``PROVIDER_RETRY_BUDGET_FLOOR`` retries always allowed.
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

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None
    ) -> None:
        """``sleep``: how a backoff waits, for tests (it then cannot end early nor wait for a probe); None waits
        until the backoff is over or this worker sees an outage, then for the probe of a suspected one."""
        self.clock = clock
        self.sleep = sleep
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._failed_in_a_row = 0
        self._confirmed = False  # the probe of a suspected outage failed (until an attempt succeeds)
        self._probe: object | None = None  # the token of the retry out to test a suspected outage
        self._thread = threading.local()  # .probe: the token of the probe this thread sends
        self._out = 0  # attempts sent and not ended
        self._lock = threading.Lock()
        self._attempt_ended = threading.Condition(self._lock)

    def reset(self) -> None:
        """Forget every call, attempt, retry and probe seen so far (with no attempt out: for tests)."""
        with self._lock:
            self._calls.clear()
            self._retries.clear()
            self._failed_in_a_row = self._out = 0
            self._confirmed, self._probe = False, None  # a probe still out is no longer one
            self._attempt_ended.notify_all()

    def start_attempt(self) -> None:
        """Note an attempt sent; ``record_attempt`` notes how it ended."""
        with self._lock:
            self._out += 1

    def record_attempt(self, *, failed: bool | None) -> bool:
        """Note how an attempt ended (failed: an outage-like failure; None: it says nothing of the provider);
        True when it shows an outage with no attempt of this worker still out (one still out may yet answer)."""
        with self._lock:
            self._out = max(0, self._out - 1)
            probe = self._end_probe()
            if failed is not None:
                self._failed_in_a_row = self._failed_in_a_row + 1 if failed else 0
                self._confirmed = failed and (probe or self._confirmed)
            self._attempt_ended.notify_all()
            return bool(failed) and self._outage() and self._out == 0

    def withdraw(self) -> None:
        """The retry that ``backoff`` allowed this thread is not sent after all."""
        with self._lock:
            self._end_probe()
            self._attempt_ended.notify_all()

    def _end_probe(self) -> bool:
        """End this thread's probe, True if it had the one out (the lock held)."""
        token, self._thread.probe = getattr(self._thread, "probe", None), None
        if token is None or token is not self._probe:
            return False
        self._probe = None
        return True

    def _suspected(self) -> bool:
        """More than ``PROVIDER_RETRY_OUTAGE_AFTER`` attempts in a row have failed in this worker (the lock held)."""
        return self._failed_in_a_row > settings.PROVIDER_RETRY_OUTAGE_AFTER

    def _outage(self) -> bool:
        """A suspected outage that the failed probe confirmed; it lasts until an attempt succeeds (the lock held)."""
        return self._suspected() and self._confirmed

    def _verdict(self) -> bool | None:
        """True: the retry may go; False: an outage; None: wait for the probe out (the lock held)."""
        if not self._suspected():
            return True
        if self._outage():
            return False
        if self._probe is not None:
            return None
        self._thread.probe = self._probe = object()  # this thread's retry is the probe
        return True

    def backoff(self, seconds: float, until: float | None = None) -> bool:
        """Wait ``seconds`` before a retry; True when the retry may go (then sent, or ``withdraw``-n). It may
        unless this worker suspects an outage by then (more than ``PROVIDER_RETRY_OUTAGE_AFTER`` attempts in a
        row failed): one retry then goes as the probe, and the others wait for it until ``until``
        (``time.monotonic()``; None: no longer than ``seconds``): they go if it succeeds, give up if it fails
        or is still out then. A confirmed outage gives up; the wait ends early, False, once one is confirmed
        with no attempt of this worker still out, so calls that failed together give up together. With an
        injected ``sleep`` nothing waits for a probe: the retry gives up."""
        if self.sleep is not None:
            self.sleep(seconds)
            with self._lock:
                return bool(self._verdict())
        until = time.monotonic() + seconds if until is None else until
        with self._attempt_ended:
            self._attempt_ended.wait_for(lambda: self._outage() and self._out == 0, timeout=seconds)
            while (verdict := self._verdict()) is None:
                remaining = until - time.monotonic()
                if remaining <= 0 or not self._attempt_ended.wait_for(
                    lambda: self._probe is None or not self._suspected() or self._outage(),
                    timeout=min(remaining, threading.TIMEOUT_MAX),
                ):
                    return False
            return verdict

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


RETRY_BUDGETS = {provider: RetryBudget() for provider in Provider}
