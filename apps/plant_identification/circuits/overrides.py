"""Staff control of circuits: force open or closed on every worker, with an audit record.

An override and its audit row happen together or not at all. The request is validated before anything
changes; the circuit is then changed and the row written in one transaction, and if the change did not reach
the shared store, or the row cannot be written or committed, the circuit is put back as it was.
"""

import logging
import math
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush, worker_id
from apps.plant_identification.circuits.snapshots import circuit_snapshot
from apps.plant_identification.circuits.states import CircuitState, OpenReason
from apps.plant_identification.circuits.store import StoredCircuit
from apps.plant_identification.exceptions import PlantIdentificationError
from apps.plant_identification.models import Circuit, CircuitEvent, CircuitOverride
from apps.plant_identification.providers import Provider

logger = logging.getLogger(__name__)

# The longest expiry staff may give: a month covers any incident or maintenance window, and a bound keeps
# the expiry computable (an unbounded one overflowed after the circuit had changed).
OVERRIDE_MAX_SECONDS = 30 * 24 * 3600


class CircuitStoreUnreachableError(PlantIdentificationError):
    """Redis is unreachable, so an override would reach this worker only: nothing was changed."""


def circuit_override(
    *, provider: Provider, action: str, reason: str, user, expires_in: float | None = None
) -> CircuitOverride:
    """Force ``provider``'s circuit open or closed for every worker, now, and record who did it and why.

    ``open`` rejects every call until ``expires_in`` seconds have passed (then the circuit probes and
    closes as usual) or, without an expiry, until staff close it. ``close`` resets the circuit to closed;
    with ``expires_in`` it also stops counting failures until then. The state lives in Redis, which every
    worker reads on each call, so the override takes effect fleet-wide at once. Raises ``ValueError`` for an
    invalid request and ``CircuitStoreUnreachableError`` while Redis is unreachable, both with nothing changed.
    """
    reason = _validated(action, reason, expires_in)
    expires_at = timezone.now() + timedelta(seconds=expires_in) if expires_in is not None else None
    breaker = breaker_for(provider)
    before = breaker.store.read()
    if breaker.store.redis_ok is False:
        raise CircuitStoreUnreachableError("Redis is unreachable: the override would reach this worker only.")
    started, changed = datetime.now(UTC), False
    try:
        # durable: this commit is the real one, so no outer rollback can drop the row after the circuit changed.
        with transaction.atomic(durable=True):
            changed = True  # before the call: a change that fails halfway is undone too
            _force(breaker, action, expires_in)
            if breaker.store.redis_ok is False:  # Redis failed during the change: only this worker saw it
                raise CircuitStoreUnreachableError("Redis became unreachable during the override.")
            circuit, _ = Circuit.objects.get_or_create(provider=provider.value)
            override = CircuitOverride.objects.create(
                circuit=circuit,
                user=user if user is not None and user.is_authenticated else None,
                action=action,
                reason=reason,
                state_before=circuit_snapshot(provider, before.record, breaker.config(), before.now).state,
                state_after=CircuitState.OPEN if action == CircuitOverride.Action.OPEN else CircuitState.CLOSED,
                expires_at=expires_at,
            )
    except BaseException:
        if changed:
            _restore(breaker, before)
        raise
    _events_store(override, started)
    return override


def _validated(action: str, reason: str, expires_in: float | None) -> str:
    """The stripped reason; raises ``ValueError`` (before anything changes) for a request that cannot be done."""
    if action not in CircuitOverride.Action.values:
        raise ValueError(f"unknown action {action!r}")
    if not reason.strip():
        raise ValueError("a reason is required")
    if expires_in is not None and not (math.isfinite(expires_in) and 0 < expires_in <= OVERRIDE_MAX_SECONDS):
        raise ValueError(f"expires_in must be more than 0 and at most {OVERRIDE_MAX_SECONDS} seconds")
    return reason.strip()


def _force(breaker: ProviderCircuitBreaker, action: str, expires_in: float | None) -> None:
    if action == CircuitOverride.Action.OPEN:
        breaker.hold_open(math.inf if expires_in is None else expires_in, OpenReason.FORCED)
    else:
        breaker.pin_closed(expires_in)


def _restore(breaker: ProviderCircuitBreaker, before: StoredCircuit) -> None:
    """Put the circuit back as ``before`` read it (a closed circuit's failure count restarts at 0)."""
    record = before.record
    try:
        if record.state == CircuitState.OPEN:
            breaker.hold_open(max(0.0, record.reopens_at(breaker.config()) - before.now), record.reason)
        elif record.state == CircuitState.HALF_OPEN:
            breaker.half_open()
        else:
            pinned = (record.pinned_until or 0.0) - before.now
            breaker.pin_closed(pinned if pinned > 0 else None)
    except Exception:  # the caller's error says why the override failed; this one is logged
        logger.exception("[CIRCUIT] %s: could not undo a failed override", breaker.name)


def _events_store(override: CircuitOverride, started: datetime) -> None:
    """Store the override's transition; best effort, since the override itself is done and recorded."""
    try:
        circuit_events_flush()
        if override.action == CircuitOverride.Action.CLOSE:
            # The breaker's listener gives a reason only to an opening; this process's close since ``started``
            # is the one just forced.
            CircuitEvent.objects.filter(
                circuit=override.circuit,
                to_state=CircuitState.CLOSED,
                reason="",
                worker=worker_id(),
                created_at__gte=started,
            ).update(reason=OpenReason.FORCED)
    except Exception:  # the transitions wait in Redis or memory for the next flush
        logger.exception("[CIRCUIT] %s: could not store the override's transition", override.circuit_id)
