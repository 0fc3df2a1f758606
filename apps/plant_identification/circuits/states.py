"""The names a circuit's state and its reason for being open travel under, in Python, Redis and the database."""

from enum import StrEnum


class CircuitState(StrEnum):
    """Where a circuit stands; the values are pybreaker's state names."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class OpenReason(StrEnum):
    """Why a circuit is open."""

    FAILURES = "failures"  # counted outages reached fail_max, or a half-open trial failed
    QUOTA = "quota"  # the provider said its quota or credits are spent (held until they return)
    CREDENTIALS = "credentials"  # the provider refused our key (held until staff close it)
    FORCED = "forced"  # staff, or pybreaker's open()/half_open()
    SLOW = "slow"  # the share of slow successes reached the slow-call rate, or a half-open trial was slow
