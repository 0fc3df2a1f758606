"""Breaker state shared through Redis, with an in-process copy that takes over while Redis is unreachable."""

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pybreaker
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class SharedCircuitStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage keeping one Redis hash per provider when ``REDIS_URL`` is set, memory otherwise.

    Nothing touches Redis until the first breaker operation, so Django starts while Redis is down.
    Every value read from or written to Redis is mirrored locally; when Redis fails, the breaker
    goes on from that local copy (it still counts failures and opens) and one warning is logged
    per outage. ``opened_at`` is kept as seconds on ``clock`` so tests can move time forward.
    """

    def __init__(self, namespace: str, *, clock: Clock = time.time) -> None:
        super().__init__("shared")
        self.key = f"plantid:circuit:{namespace}"
        self.clock = clock
        self._local = {"state": pybreaker.STATE_CLOSED, "fail_counter": 0, "success_counter": 0, "opened_at": None}
        self._lock = threading.Lock()
        self._redis_failing = False

    # ------------------------------------------------------------------ Redis access
    def _redis(self):
        if not settings.REDIS_URL:
            return None
        from django_redis import get_redis_connection

        return get_redis_connection("circuits")

    def _run(self, operation: Callable, fallback: Callable):
        """Run ``operation(redis)``; on a Redis fault (or without Redis) run ``fallback()`` locally."""
        client = self._redis()
        if client is None:
            return fallback()
        try:
            result = operation(client)
        except RedisError as exc:
            with self._lock:
                first = not self._redis_failing
                self._redis_failing = True
            if first:
                logger.warning(
                    "[CIRCUIT] %s: Redis unreachable (%s); using in-process state", self.key, type(exc).__name__
                )
            return fallback()
        if self._redis_failing:
            with self._lock:
                self._redis_failing = False
            logger.warning("[CIRCUIT] %s: Redis reachable again; using shared state", self.key)
        return result

    @property
    def redis_ok(self) -> bool | None:
        """True/False for the last Redis operation's outcome; None when no Redis is configured."""
        return None if not settings.REDIS_URL else not self._redis_failing

    def _get(self, field: str, default=None):
        def read(client):
            raw = client.hget(self.key, field)
            value = default if raw is None else raw.decode()
            self._local[field] = value
            return value

        return self._run(read, lambda: self._local.get(field, default))

    def _set(self, field: str, value) -> None:
        self._local[field] = value
        self._run(lambda client: client.hset(self.key, field, value), lambda: None)

    def _incr(self, field: str) -> None:
        def incr(client):
            self._local[field] = client.hincrby(self.key, field, 1)

        def incr_local():
            with self._lock:
                self._local[field] = int(self._local[field] or 0) + 1

        self._run(incr, incr_local)

    # ------------------------------------------------------------------ pybreaker storage interface
    @property
    def state(self) -> str:
        return self._get("state", pybreaker.STATE_CLOSED)

    @state.setter
    def state(self, state: str) -> None:
        self._set("state", state)

    def increment_counter(self) -> None:
        self._incr("fail_counter")

    def reset_counter(self) -> None:
        self._set("fail_counter", 0)

    def increment_success_counter(self) -> None:
        self._incr("success_counter")

    def reset_success_counter(self) -> None:
        self._set("success_counter", 0)

    @property
    def counter(self) -> int:
        return int(self._get("fail_counter", 0))

    @property
    def success_counter(self) -> int:
        return int(self._get("success_counter", 0))

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit opened, as pybreaker expects it: a UTC datetime, derived from ``clock``."""
        opened = self.opened_at_seconds
        if opened is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self.clock() - opened)

    @opened_at.setter
    def opened_at(self, _when: datetime) -> None:
        self._set("opened_at", repr(self.clock()))

    @property
    def opened_at_seconds(self) -> float | None:
        """When the circuit opened, in seconds on ``clock``; None if it never opened."""
        raw = self._get("opened_at")
        return None if raw in (None, "", "None") else float(raw)
