"""Staff control of circuits: force open or closed on every worker, with an audit record."""

import math
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.circuits.states import OpenReason
from apps.plant_identification.models import Circuit, CircuitOverride
from apps.plant_identification.providers import Provider


def circuit_override(
    *, provider: Provider, action: str, reason: str, user, expires_in: float | None = None
) -> CircuitOverride:
    """Force ``provider``'s circuit open or closed for every worker, now.

    ``open`` rejects every call until ``expires_in`` seconds have passed (then the circuit probes and
    closes as usual) or, without an expiry, until staff close it. ``close`` resets the circuit to closed;
    with ``expires_in`` it also stops counting failures until then. The state lives in Redis, which every
    worker reads on each call, so the override takes effect fleet-wide at once.
    """
    if not reason.strip():
        raise ValueError("a reason is required")
    breaker = breaker_for(provider)
    before = breaker.snapshot().state
    if action == CircuitOverride.Action.OPEN:
        breaker.hold_open(math.inf if expires_in is None else expires_in, OpenReason.FORCED)
    elif action == CircuitOverride.Action.CLOSE:
        breaker.pin_closed(expires_in)
    else:
        raise ValueError(f"unknown action {action!r}")
    with transaction.atomic():
        circuit, _ = Circuit.objects.get_or_create(provider=provider.value)
        override = CircuitOverride.objects.create(
            circuit=circuit,
            user=user if user is not None and user.is_authenticated else None,
            action=action,
            reason=reason.strip(),
            state_before=before,
            state_after=breaker.snapshot().state,
            expires_at=timezone.now() + timedelta(seconds=expires_in) if expires_in else None,
        )
    circuit_events_flush()
    return override
