"""Recent latency: the durations of a provider's latest successful calls, summarised as p50 and p95."""

import math
from collections.abc import Iterable
from dataclasses import dataclass

# Successful calls the recent latency is measured over, per provider: in Redis for the fleet, and in each
# worker's memory for the time Redis is unreachable.
LATENCY_SAMPLES = 100
FLEET, WORKER = "fleet", "worker"  # whose calls a summary covers: every worker's (Redis) or this process's own


@dataclass(frozen=True)
class RecentLatency:
    """p50 and p95 in whole milliseconds (None without samples) of the latest successful calls."""

    p50_ms: int | None
    p95_ms: int | None
    samples: int
    scope: str  # FLEET or WORKER


def recent_latency(samples_ms: Iterable[int], scope: str) -> RecentLatency:
    """The summary of ``samples_ms`` (nearest-rank percentiles: always a duration that was measured)."""
    ordered = sorted(samples_ms)
    return RecentLatency(_nearest_rank(ordered, 50), _nearest_rank(ordered, 95), len(ordered), scope)


def milliseconds(seconds: float) -> int:
    """A duration as the whole milliseconds it is sampled in."""
    return max(0, round(seconds * 1000))


def _nearest_rank(ordered: list[int], percent: int) -> int | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(percent * len(ordered) / 100) - 1)]
