"""A worker's view of a provider outage: its failed attempts in a row, its attempts out, and the probe.

More than ``PROVIDER_RETRY_OUTAGE_AFTER`` attempts in a row failed in this worker only suspect an outage (at 20 %
faults such a run is a blip far more often than an outage): one retry then goes as the probe while the
others wait for it, and they go if it succeeds; its failure confirms the outage, which lasts until an attempt
succeeds. A confirmed outage refuses a failure's retry at once when none of the worker's attempts is still out
(one still out may yet answer), and a backoff ends as soon as that is so, so calls that failed together give up
together and their failures reach the breaker without the backoff's delay. A backoff also stops when another call
of the worker reports an outage in the circuit's shared record, so that its caller reads the record at once.
"""

import enum
import threading
import time
from collections.abc import Callable

from django.conf import settings

from apps.plant_identification.providers import Provider


class Backoff(enum.Enum):
    """How a backoff ended."""

    GO = "go"  # the retry may go (then sent, or ``withdraw``-n)
    OUTAGE = "outage"  # this worker sees an outage, or its probe is still out when the time is over: give up
    REPORTED = "reported"  # another call found an outage in the shared record: read it, then back off the rest


class OutageWatch:
    """Whether one provider looks down from this worker process, and the backoff before a retry (thread-safe)."""

    def __init__(self, *, sleep: Callable[[float], None] | None = None) -> None:
        """``sleep``: how a backoff waits, for tests (it then cannot end early nor wait for a probe); None waits
        until the backoff is over or this worker sees an outage, then for the probe of a suspected one."""
        self.sleep = sleep
        self._failed_in_a_row = 0
        self._confirmed = False  # the probe of a suspected outage failed (until an attempt succeeds)
        self._probe: object | None = None  # the token of the retry out to test a suspected outage
        # .probe: this thread's probe token; .reports: the report count when its latest attempt or backoff ended
        self._thread = threading.local()
        self._out = 0  # attempts sent and not ended
        self._reports = 0  # how many times a call of this worker found an outage in the shared record
        self._waiting = 0  # threads in a backoff
        self._lock = threading.Lock()
        self._attempt_ended = threading.Condition(self._lock)

    def reset(self) -> None:
        """Forget every attempt and probe seen so far (with no attempt out: for tests)."""
        with self._lock:
            self._failed_in_a_row = self._out = 0
            self._confirmed, self._probe = False, None  # a probe still out is no longer one
            self._attempt_ended.notify_all()

    def start_attempt(self) -> None:
        """Note an attempt sent; ``record_attempt`` notes how it ended."""
        with self._lock:
            self._out += 1

    def record_attempt(self, *, failed: bool | None) -> bool:
        """Note how an attempt ended (failed: an outage-like failure; None: it says nothing of the provider);
        True when it shows an outage with no attempt of this worker still out (one still out may yet answer).
        The caller reads the shared record after this: an outage reported from now on stops this thread's backoff."""
        with self._lock:
            self._thread.reports = self._reports
            self._out = max(0, self._out - 1)
            probe = self._end_probe()
            if failed is not None:
                self._failed_in_a_row = self._failed_in_a_row + 1 if failed else 0
                self._confirmed = failed and (probe or self._confirmed)
            self._attempt_ended.notify_all()
            return bool(failed) and self._outage() and self._out == 0

    def outage_seen(self) -> None:
        """A call of this worker found an outage in the circuit's shared record (the fleet's failed attempts, or the
        circuit open): every backoff in progress stops now (``Backoff.REPORTED``), so its caller reads the record
        and gives up at once rather than at the end of its wait, and the calls that failed together reach the
        breaker together."""
        with self._lock:
            self._reports += 1
            self._attempt_ended.notify_all()

    @property
    def waiting(self) -> int:
        """How many threads of this worker are in a backoff now (for tests and diagnostics)."""
        with self._lock:
            return self._waiting

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

    def backoff(self, seconds: float, until: float | None = None) -> Backoff:
        """Wait ``seconds`` before a retry, and say whether it may go (``Backoff``). It may unless this worker
        suspects an outage by then (more than ``PROVIDER_RETRY_OUTAGE_AFTER`` attempts in a row failed): one retry
        then goes as the probe, and the others wait for it until ``until`` (``time.monotonic()``; None: no longer
        than ``seconds``): they go if it succeeds, give up if it fails or is still out then. A confirmed outage
        gives up; the wait ends early, ``OUTAGE``, once one is confirmed with no attempt of this worker still out,
        so calls that failed together give up together. Either wait stops early, ``REPORTED``, when another call
        of this worker has reported an outage in the shared record (``outage_seen``) since this thread's latest
        attempt ended or its previous backoff returned: the caller reads the record, and backs off the rest of
        ``seconds`` if it finds none there.
        With an injected ``sleep`` nothing stops a wait nor waits for a probe: the retry gives up."""
        if self.sleep is not None:
            self.sleep(seconds)
            with self._lock:
                return Backoff.GO if self._verdict() else Backoff.OUTAGE
        until = time.monotonic() + seconds if until is None else until
        with self._attempt_ended:
            self._waiting += 1
            try:
                return self._wait(seconds, until)
            finally:
                self._waiting -= 1
                self._thread.reports = self._reports  # a report seen once does not stop the rest of the backoff

    def _wait(self, seconds: float, until: float) -> Backoff:
        """``backoff``'s waits (the lock held)."""
        reports = getattr(self._thread, "reports", self._reports)
        self._attempt_ended.wait_for(
            lambda: (self._outage() and self._out == 0) or self._reports != reports, timeout=max(0.0, seconds)
        )
        while self._reports == reports:
            verdict = self._verdict()
            if verdict is not None:
                return Backoff.GO if verdict else Backoff.OUTAGE
            remaining = until - time.monotonic()
            if remaining <= 0 or not self._attempt_ended.wait_for(
                lambda: self._probe is None or not self._suspected() or self._outage() or self._reports != reports,
                timeout=min(remaining, threading.TIMEOUT_MAX),
            ):
                return Backoff.OUTAGE
        return Backoff.REPORTED


OUTAGE_WATCHES = {provider: OutageWatch() for provider in Provider}
