"""What a circuit looks like to a reader (/health/, the admin, the circuits API) at one moment."""

import math
from dataclasses import dataclass

from apps.plant_identification.circuits import rules
from apps.plant_identification.circuits.latency import RecentLatency
from apps.plant_identification.circuits.rules import CircuitConfig, CircuitRecord
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.providers import Provider


@dataclass(frozen=True)
class CircuitSnapshot:
    """A circuit as it stands now, as /health/ and the admin report it."""

    provider: Provider
    state: CircuitState
    fail_count: int
    fail_max: int
    reset_timeout: float
    retry_after: int | None  # whole seconds until a trial is allowed (open only; None: until staff close it)
    reason: str
    latency: RecentLatency | None = None  # the latest successful calls' p50/p95 (None: not read)

    @property
    def callable(self) -> bool:
        """True when a call could be let through (closed, or a trial is due)."""
        return self.state != CircuitState.OPEN


def circuit_snapshot(
    provider: Provider,
    record: CircuitRecord,
    config: CircuitConfig,
    now: float,
    latency: RecentLatency | None = None,
) -> CircuitSnapshot:
    """The snapshot of ``record`` at ``now``: an open circuit whose reset timeout has elapsed reads half-open."""
    state, wait = rules.snapshot_state(record, config, now)
    return CircuitSnapshot(
        provider=provider,
        state=CircuitState(state),
        fail_count=record.fail,
        fail_max=config.fail_max,
        reset_timeout=config.reset_timeout,
        retry_after=math.ceil(wait) if wait is not None and math.isfinite(wait) else None,
        reason=record.reason,
        latency=latency,
    )
