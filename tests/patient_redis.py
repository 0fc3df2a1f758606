"""A Redis connection for the coordination of multi-process tests, as patient as a loaded two-core machine needs.

Eight Python processes starting at once can stall a Redis reply well past the service's 50 ms: a coordination
poll would raise and end its thread. (The test settings make the circuits themselves patient too.)
"""

import redis
from django.conf import settings

SOCKET_TIMEOUT = 10.0


def coordination_redis() -> redis.Redis:
    """A connection of the test's own, for its clocks, turns and counters."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )
