"""Breaker transitions: logged with the [CIRCUIT] prefix and queued for the database.

Transitions happen in provider worker threads, which never touch the ORM; they are queued here
and written by ``circuit_events_flush()`` from a request thread (the identify service calls it).
"""

import logging
import os
import queue
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import pybreaker

logger = logging.getLogger(__name__)

_WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PendingCircuitEvent:
    """A transition not yet written to the database."""

    provider: str
    from_state: str
    to_state: str
    fail_count: int
    at: datetime
    reason: str = ""


_pending: "queue.SimpleQueue[PendingCircuitEvent]" = queue.SimpleQueue()


class CircuitEventListener(pybreaker.CircuitBreakerListener):
    """Logs and queues every transition; never raises (a raising listener would stop the breaker)."""

    def state_change(self, cb, old_state, new_state) -> None:
        try:
            old = old_state.name if old_state is not None else ""
            snapshot = cb.snapshot()
            reason = snapshot.reason if new_state.name == pybreaker.STATE_OPEN else ""
            log = logger.warning if new_state.name == pybreaker.STATE_OPEN else logger.info
            log(
                "[CIRCUIT] %s: %s -> %s (failures %d/%d)%s",
                cb.name,
                old or "?",
                new_state.name,
                snapshot.fail_count,
                snapshot.fail_max,
                f" reason={reason}" if reason else "",
            )
            _pending.put(
                PendingCircuitEvent(cb.name, old, new_state.name, snapshot.fail_count, datetime.now(UTC), reason)
            )
        except Exception:  # a listener must never break the breaker
            logger.exception("[CIRCUIT] could not record a transition")


def circuit_events_pending() -> list[PendingCircuitEvent]:
    """Take every transition queued so far (oldest first), removing them from the queue."""
    events = []
    while True:
        try:
            events.append(_pending.get_nowait())
        except queue.Empty:
            return events


def circuit_events_flush() -> int:
    """Write queued transitions to the database; returns how many were written."""
    from apps.plant_identification.models import Circuit, CircuitEvent

    events = circuit_events_pending()
    for event in events:
        circuit, _ = Circuit.objects.get_or_create(provider=event.provider)
        CircuitEvent.objects.create(
            circuit=circuit,
            created_at=event.at,
            from_state=event.from_state,
            to_state=event.to_state,
            fail_count=event.fail_count,
            reason=event.reason,
            worker=_WORKER,
        )
    return len(events)
