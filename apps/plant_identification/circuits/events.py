"""Circuit transitions: logged with the [CIRCUIT] prefix, kept durably the moment they happen, then stored.

A transition happens in whichever thread made the call, often a provider thread that never touches the ORM.
It is pushed at once onto its circuit's list in Redis (through the circuit's store, so a Redis outage costs
no more than the store's back-off allows), where it survives the worker that made it (killed, or idle from
then on). ``circuit_events_flush()`` moves what is waiting into ``CircuitEvent`` rows: staff overrides and
the admin's circuit pages call it each time; the identify service calls it when due (this process recorded
a transition, or ``SWEEP_INTERVAL`` has passed: other workers' transitions), so an ordinary request pays
nothing. Without Redis, or while it is unreachable, a transition waits in this process's memory instead,
and is lost if the process exits before its next flush (the log line remains): the admin says so.
"""

import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pybreaker

from apps.plant_identification.circuits.alerts import circuit_alert_transition
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.metrics import circuit_transition_record

logger = logging.getLogger(__name__)

FLUSH_BATCH = 500
SWEEP_INTERVAL = 30.0  # seconds between a worker's looks for transitions other workers left in Redis


def worker_id() -> str:
    """``host:pid`` of the process running now (read each time: gunicorn forks workers after import)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PendingCircuitEvent:
    """A transition not yet written to the database."""

    provider: str
    from_state: str
    to_state: str
    fail_count: int
    at: datetime
    reason: str = ""
    worker: str = ""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "at": self.at.isoformat()})

    @classmethod
    def from_json(cls, text: str | bytes) -> "PendingCircuitEvent":
        fields = json.loads(text)
        return cls(**{**fields, "at": datetime.fromisoformat(fields["at"])})


_local: "queue.SimpleQueue[PendingCircuitEvent]" = queue.SimpleQueue()
_recorded = threading.Event()  # this process recorded a transition since its last flush
_next_sweep = 0.0  # time.monotonic() of this process's next look at the other workers' transitions


class CircuitEventListener(pybreaker.CircuitBreakerListener):
    """Logs and records every transition; never raises (a raising listener would stop the breaker)."""

    def state_change(self, cb, old_state, new_state) -> None:
        try:
            old = old_state.name if old_state is not None else ""
            snapshot = cb.snapshot()
            opened = new_state.name == CircuitState.OPEN
            reason = snapshot.reason if opened else ""
            (logger.warning if opened else logger.info)(
                "[CIRCUIT] %s: %s -> %s (failures %d/%d)%s",
                cb.name,
                old or "?",
                new_state.name,
                snapshot.fail_count,
                snapshot.fail_max,
                f" reason={reason}" if reason else "",
            )
            event = PendingCircuitEvent(
                cb.name, old, new_state.name, snapshot.fail_count, datetime.now(UTC), reason, worker_id()
            )
            circuit_transition_record(cb.name, old, new_state.name, reason)
            if not cb.store.push_event(event.to_json()):
                _local.put(event)
            _recorded.set()
            circuit_alert_transition(cb, new_state.name, reason)  # queued: never waits for mail or a webhook
        except Exception:  # a listener must never break the breaker
            logger.exception("[CIRCUIT] could not record a transition")


def circuit_events_pending() -> list[PendingCircuitEvent]:
    """Take every transition waiting to be stored (this process's and the shared ones), oldest first."""
    from apps.plant_identification.circuits.breaker import BREAKERS  # the breakers import this module

    events = []
    while True:
        try:
            events.append(_local.get_nowait())
        except queue.Empty:
            break
    for breaker in BREAKERS.values():
        while batch := breaker.store.take_events(FLUSH_BATCH):
            events.extend(PendingCircuitEvent.from_json(item) for item in batch)
    return sorted(events, key=lambda event: event.at)


def circuit_events_flush(*, when_due: bool = False, now: float | None = None) -> int:
    """Write every waiting transition to the database; returns how many were written.

    With ``when_due``, only if this process recorded a transition since its last flush or its next sweep is
    due at ``now`` (``time.monotonic()`` seconds; tests pass their own).
    """
    from apps.plant_identification.models import Circuit, CircuitEvent

    global _next_sweep
    now = time.monotonic() if now is None else now
    if when_due and not _recorded.is_set() and now < _next_sweep:
        return 0
    _recorded.clear()
    _next_sweep = now + SWEEP_INTERVAL
    events = circuit_events_pending()
    try:
        for provider in {event.provider for event in events}:
            Circuit.objects.get_or_create(provider=provider)
        CircuitEvent.objects.bulk_create(
            CircuitEvent(
                circuit_id=event.provider,
                created_at=event.at,
                from_state=event.from_state,
                to_state=event.to_state,
                fail_count=event.fail_count,
                reason=event.reason,
                worker=event.worker,
            )
            for event in events
        )
    except Exception:
        for event in events:  # keep them in this process for its next flush
            _local.put(event)
        raise
    return len(events)
