"""Redis for the worker processes of multi-process tests: as patient as a loaded two-core machine needs.

Eight Python processes starting at once can stall a Redis reply past the service's 50 ms circuit timeout. A
breaker would then carry on from in-process state (another test than the one meant), and a coordination poll
would raise and end its thread.
"""

import redis
from django.conf import settings

SOCKET_TIMEOUT = 10.0


def patient_circuits() -> None:
    """Let this process's circuits wait up to ``SOCKET_TIMEOUT`` for Redis (before its first Redis operation)."""
    settings.CACHES["circuits"]["OPTIONS"].update(SOCKET_TIMEOUT=SOCKET_TIMEOUT, SOCKET_CONNECT_TIMEOUT=SOCKET_TIMEOUT)


def coordination_redis() -> redis.Redis:
    """A connection of the test's own, for its clocks, turns and counters."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )
