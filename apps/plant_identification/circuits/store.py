"""Where a circuit's record and its unstored transitions live: Redis (shared by every worker) or memory.

Each operation is one atomic Redis script (``lua.py``). When Redis fails, the store answers from an
in-process record (``rules.py``) that mirrors the last shared state it saw, logs one warning for the
outage, and leaves Redis alone for ``REDIS_RETRY_SECONDS`` so a dead or hung Redis costs at most one
short timeout per interval, not one per call. The first operation that reaches Redis again adopts the
shared state (an open shared circuit wins) without a restart.

The duration of each successful call goes to the recent latency in Redis with the script that records the
success; when no script records it (a closed circuit with nothing to count), it waits in the worker and goes
with the worker's next script call for that circuit (its next admission or health read), so latency costs no
round trip of its own. Each worker also keeps its own latest durations, reported while Redis is unreachable.
"""

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from apps.plant_identification.circuits import lua, rules
from apps.plant_identification.circuits.latency import (
    FLEET,
    LATENCY_SAMPLES,
    WORKER,
    RecentLatency,
    milliseconds,
    recent_latency,
)
from apps.plant_identification.circuits.rules import CircuitConfig, CircuitRecord, Decision
from apps.plant_identification.circuits.states import CircuitState

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0
EVENTS_KEPT = 10_000  # transitions kept in Redis per circuit until stored; a fleet that never stores keeps the newest
Clock = Callable[[], float]


@dataclass(frozen=True)
class StoredCircuit:
    """A read of the record, with the time it was read at (Redis server time when shared)."""

    record: CircuitRecord
    now: float
    shared: bool
    latency: RecentLatency | None = None  # when asked for: the fleet's (shared) or this worker's


class CircuitStore:
    """One provider's circuit record, in Redis when ``REDIS_URL`` is set, with an in-process fallback."""

    def __init__(self, namespace: str, *, clock: Clock | None = None) -> None:
        self.keys = [
            f"plantid:circuit:{namespace}",
            f"plantid:circuit:{namespace}:trials",
            f"plantid:circuit:{namespace}:events",
            f"plantid:circuit:{namespace}:window",
            f"plantid:circuit:{namespace}:latency",
        ]
        self.clock = clock  # None: Redis server time when shared, time.time() locally
        self.local = CircuitRecord()
        self.local_latency: deque[int] = deque(maxlen=LATENCY_SAMPLES)  # this worker's latest durations (ms)
        self._unshared: list[int] = []  # durations (ms) not in Redis yet: they go with the next script call
        self._lock = threading.Lock()
        self._down_client = None  # the Redis connection that failed, while the store rests from it
        self._redis_down_until = 0.0
        self._scripts: dict[str, object] = {}

    # ------------------------------------------------------------------ operations
    def admit(self, config: CircuitConfig, lease_id: str) -> Decision:
        """May a call go through now? (closed: yes; open: no; half-open: if a trial slot is free)."""
        raw = self._with_latency(
            "ADMIT", config.reset_timeout, config.half_open_max_calls, config.trial_lease, lease_id
        )
        if raw is None:
            return self._local_op(rules.admit, config, lease_id=lease_id)
        kind, state, fail, wait, reason, transition, afail = (_text(value) for value in raw)
        decision = Decision(
            kind, state, int(fail), float(wait) if wait else None, reason, _transition(transition), int(afail)
        )
        self._mirror(decision)
        return decision

    def success(
        self, config: CircuitConfig, lease_id: str, *, trial: bool, duration: float | None = None
    ) -> tuple[str, str] | None:
        """Record a success that took ``duration`` seconds (None: not measured), and its latency; returns the
        transition it made, if any (a slow call may open the circuit)."""
        self.note_latency(duration)
        raw = self._with_latency(
            "SUCCESS",
            config.success_threshold,
            lease_id,
            int(trial),
            config.window if config.windowed else "",
            config.min_calls,
            "" if duration is None else duration,
            "" if config.slow_call_duration is None else config.slow_call_duration,
            config.slow_call_rate,
        )
        if raw is None:
            return self._local_op(rules.success, config, lease_id=lease_id, trial=trial, duration=duration)
        transition, fail = _text(raw[0]), int(raw[1])
        with self._lock:
            self.local.fail, self.local.afail = fail, 0
        return _transition(transition)

    def failures_seen(self) -> int:
        """The consecutive failures, or failed attempts, this worker last heard of (from its latest script call,
        or its own count): a success with none to reset needs no script."""
        with self._lock:
            return self.local.fail or self.local.afail

    def attempt_failed(self) -> CircuitRecord:
        """Count a failed attempt of a call, retried or not; return the record's state, ``fail`` and ``afail``
        as they stand after it."""
        raw = self._shared("ATTEMPT_FAILED")
        with self._lock:
            if raw is None:
                rules.attempt_failed(self.local)
                return _copy(self.local)
            state, fail, afail = (_text(value) for value in raw)
            self.local.fail, self.local.afail = int(fail), int(afail)
            return CircuitRecord(state=state, fail=int(fail), afail=int(afail))

    def note_latency(self, duration: float | None) -> None:
        """Keep the duration of a successful call for the recent latency (Redis gets it with the next script)."""
        if duration is None:
            return
        sample = milliseconds(duration)
        with self._lock:
            self.local_latency.append(sample)
            if settings.REDIS_URL:
                self._unshared = [*self._unshared[-(LATENCY_SAMPLES - 1) :], sample]

    def clear_latency(self) -> None:
        """Forget the recent latency, shared and this worker's."""
        with self._lock:
            self.local_latency.clear()
            self._unshared = []
        self._shared("CLEAR_LATENCY")

    def failure(self, config: CircuitConfig, lease_id: str, *, trial: bool) -> tuple[str, str] | None:
        """Record a counted failure; returns the transition it made, if any."""
        rate = "" if config.failure_rate is None else config.failure_rate
        window = config.window if config.windowed else ""
        raw = self._shared("FAILURE", config.fail_max, lease_id, int(trial), rate, window, config.min_calls)
        if raw is None:
            return self._local_op(rules.failure, config, lease_id=lease_id, trial=trial)
        transition, fail = _text(raw[0]), int(raw[1])
        with self._lock:
            self.local.fail = fail
        return _transition(transition)

    def release(self, lease_id: str) -> None:
        """Free a trial slot without counting the call."""
        if self._shared("RELEASE", lease_id) is None:
            with self._lock:
                rules.release(self.local, lease_id)

    def hold_open(self, seconds: float, reason: str) -> tuple[str, str]:
        """Open for ``seconds`` (``math.inf``: until staff close it)."""
        raw = self._shared("HOLD_OPEN", "inf" if math.isinf(seconds) else seconds, reason)
        with self._lock:
            transition = rules.hold_open(self.local, self._now(), seconds, reason)
        return _transition(_text(raw)) if raw is not None else transition

    def half_open(self, reason: str) -> tuple[str, str]:
        """Half-open now: the next calls are trials."""
        raw = self._shared("HALF_OPEN", reason)
        with self._lock:
            transition = rules.half_open(self.local, reason)
        return _transition(_text(raw)) if raw is not None else transition

    def force_close(self, pin_seconds: float | None) -> tuple[str, str]:
        """Close and reset; with ``pin_seconds``, failures are not counted until then."""
        raw = self._shared("FORCE_CLOSE", "" if pin_seconds is None else pin_seconds)
        with self._lock:
            transition = rules.force_close(self.local, self._now(), pin_seconds)
        return _transition(_text(raw)) if raw is not None else transition

    def read(self, *, latency: bool = False) -> StoredCircuit:
        """The record as it stands and, with ``latency``, the recent latency (one round trip when shared)."""
        raw = self._with_latency("SNAPSHOT", "1" if latency else "")
        if raw is None:
            with self._lock:
                local = recent_latency(self.local_latency, WORKER) if latency else None
                return StoredCircuit(_copy(self.local), self._now(), shared=False, latency=local)
        state, fail, succ, opened_at, open_until, reason, pinned, now = (_text(v) for v in raw[:8])
        afail = int(_text(raw[9]))
        record = CircuitRecord(
            state=state,
            fail=int(fail),
            succ=int(succ),
            opened_at=_float(opened_at),
            open_until=_float(open_until),
            reason=reason,
            pinned_until=_float(pinned),
            afail=afail,
        )
        shared = recent_latency((int(sample) for sample in raw[8]), FLEET) if latency else None
        return StoredCircuit(record, float(now), shared=True, latency=shared)

    def push_event(self, event: str) -> bool:
        """Keep a transition (JSON) in Redis until it is stored; False when Redis is not at hand."""
        return self._shared("PUSH_EVENT", event, EVENTS_KEPT) is not None

    def take_events(self, limit: int) -> list[str]:
        """Remove and return up to ``limit`` transitions kept in Redis, oldest first (none without Redis)."""
        return [_text(event) for event in self._shared("TAKE_EVENTS", limit) or ()]

    @property
    def redis_ok(self) -> bool | None:
        """None without Redis; False during an outage; True otherwise."""
        if not settings.REDIS_URL:
            return None
        return self._down_client is None

    # ------------------------------------------------------------------ machinery
    def _now(self) -> float:
        return self.clock() if self.clock else time.time()

    def _local_op(self, operation, config: CircuitConfig, **kwargs):
        with self._lock:
            return operation(self.local, config, self._now(), **kwargs)

    def _mirror(self, decision: Decision) -> None:
        """Keep the local record close to the shared one, to carry on from it if Redis goes away."""
        with self._lock:
            local = self.local
            local.afail = decision.afail
            if decision.state != local.state or decision.fail != local.fail:
                local.state, local.fail, local.reason = decision.state, decision.fail, decision.reason
                if decision.state == CircuitState.OPEN and decision.retry_after is not None:
                    local.opened_at, local.open_until = self._now(), self._now() + decision.retry_after
                elif decision.state != CircuitState.OPEN:
                    local.open_until = None

    def _with_latency(self, name: str, *args):
        """Run script ``name`` with the durations not shared yet as its last arguments; if it cannot run, they
        wait for the next one (the newest ``LATENCY_SAMPLES`` of them)."""
        with self._lock:
            samples, self._unshared = self._unshared, []
        raw = self._shared(name, *args, " ".join(map(str, samples)), LATENCY_SAMPLES)
        if raw is None and samples:
            with self._lock:
                self._unshared = [*samples, *self._unshared][-LATENCY_SAMPLES:]
        return raw

    def _shared(self, name: str, *args):
        """Run script ``name``; None when Redis is not configured, failing, or resting after a failure.

        The rest applies to the connection that failed: once the settings point the ``circuits`` alias
        elsewhere (a new connection), the next operation tries it at once.
        """
        if not settings.REDIS_URL:
            return None
        from django_redis import get_redis_connection

        client = get_redis_connection("circuits")
        if client is self._down_client and self._now() < self._redis_down_until:
            return None
        try:
            result = self._script(client, name)(
                keys=self.keys, args=["" if self.clock is None else repr(self.clock()), *args]
            )
        except RedisError as exc:
            if self._down_client is None:
                logger.warning(
                    "[CIRCUIT] %s: Redis unreachable (%s); carrying on from in-process state",
                    self.keys[0],
                    type(exc).__name__,
                )
            self._down_client, self._redis_down_until = client, self._now() + REDIS_RETRY_SECONDS
            return None
        if self._down_client is not None:
            self._down_client, self._redis_down_until = None, 0.0
            logger.warning("[CIRCUIT] %s: Redis reachable again; using the shared state", self.keys[0])
        return result

    def _script(self, client, name: str):
        script = self._scripts.get(name)
        if script is None or script.registered_client is not client:
            script = client.register_script(getattr(lua, name))
            self._scripts[name] = script
        return script


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str) -> float | None:
    return float(value) if value not in ("", None) else None


def _transition(value: str) -> tuple[str, str] | None:
    if not value:
        return None
    before, after = value.split(">")
    return before, after


def _copy(record: CircuitRecord) -> CircuitRecord:
    return CircuitRecord(**{**record.__dict__, "trials": dict(record.trials)})
