"""Operator alerts: a circuit opened, or is still not closed after ALERT_OPEN_FOR seconds, told once per episode."""

# An episode runs from a circuit's transition to open until it closes again (open -> half-open -> open is the
# same episode). Each alert is claimed fleet-wide with SET NX on ``plantid:circuit:<provider>:alert:<kind>``
# (the "opened" claim holds the episode's start); the close transition deletes both claims, and a claim expires
# after EPISODE_TTL in case a close was never seen. While Redis is unreachable, claims are kept in this
# process: each worker then alerts at most once per episode. Claims and sending run in one background thread
# per process, fed by a bounded queue: the breaker only enqueues, never waits and never hears of a failure.
# The "still open" check is made on each /health/ read (``selectors.health_report``) for circuits that are not
# closed, in the background too, so an ordinary request and a closed circuit cost nothing; and by the sender
# thread itself every ALERT_CHECK_INTERVAL seconds while it is idle, so the alert needs nothing polling health
# (one read of the circuits from Redis per interval, in each worker that has heard of a transition).

import json
import logging
import os
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.core.mail import mail_admins
from redis.exceptions import RedisError

from apps.plant_identification.circuits.states import CircuitState

logger = logging.getLogger(__name__)

OPENED, STILL_OPEN = "opened", "still_open"
EPISODE_TTL = 7 * 86400  # seconds a claim lives when the close that ends its episode is never seen
QUEUE_MAX = 256  # jobs waiting for the sender; past it, new ones are dropped with a warning

_lock = threading.Lock()
_jobs: "queue.Queue[Callable[[], None]]" = queue.Queue(maxsize=QUEUE_MAX)
_sender_pid: int | None = None
_local_claims: dict[tuple[str, str], float] = {}  # (provider, kind) -> episode start, while Redis is not at hand


def alert_keys(provider: str) -> list[str]:
    """The Redis keys holding ``provider``'s claims for the current episode."""
    return [f"plantid:circuit:{provider}:alert:{kind}" for kind in (OPENED, STILL_OPEN)]


def circuit_alert_transition(breaker, new_state: str, reason: str) -> None:
    """Called by the event listener for each transition ``breaker`` announces: queue its alert work."""
    if not settings.ALERTS_ENABLED:
        return
    if new_state == CircuitState.OPEN and not _has_recipients():
        return
    if new_state not in (CircuitState.OPEN, CircuitState.CLOSED):
        return
    shared = breaker.store.redis_ok is True
    _enqueue(partial(_on_transition, breaker.name, new_state, reason, _now(breaker), shared))


def circuit_alerts_check(snapshots: Iterable) -> None:
    """Queue the "still open" check for each snapshot whose circuit is not closed (``/health/`` calls it)."""
    for job in _check_jobs(snapshots):
        _enqueue(job)


def circuit_alerts_idle(timeout: float = 5.0) -> bool:
    """Wait until the jobs queued so far are done; False if they were not done within ``timeout`` seconds."""
    done = threading.Event()
    _enqueue(done.set)
    return done.wait(timeout)


# ---------------------------------------------------------------------------- the sender thread
def _has_recipients() -> bool:
    return bool(settings.ADMINS or settings.ALERT_WEBHOOK_URL)


def _now(breaker) -> float:
    return breaker.clock() if breaker.clock else time.time()


def _enqueue(job: Callable[[], None]) -> None:
    global _jobs, _sender_pid
    with _lock:
        if _sender_pid != os.getpid():  # first use, or a forked worker: the parent's thread is not here
            _jobs = queue.Queue(maxsize=QUEUE_MAX)
            threading.Thread(target=_run, args=(_jobs,), name="circuit-alerts", daemon=True).start()
            _sender_pid = os.getpid()
        try:
            _jobs.put_nowait(job)
        except queue.Full:
            logger.warning("[ALERT] alert queue full; dropping a job")


def _run(jobs: "queue.Queue[Callable[[], None]]") -> None:
    while True:
        try:
            job = jobs.get(timeout=settings.ALERT_CHECK_INTERVAL)
        except queue.Empty:
            job = _periodic_check
        try:
            job()
        except Exception:
            logger.exception("[ALERT] alert job failed")


def _periodic_check() -> None:
    """The "still open" check of every circuit, made here when nothing else asked for a while."""
    if not settings.ALERTS_ENABLED or not _has_recipients():
        return
    from apps.plant_identification.circuits.breaker import circuit_snapshot_list  # the breakers import this module

    for job in _check_jobs(circuit_snapshot_list()):
        job()


def _check_jobs(snapshots: Iterable) -> list[Callable[[], None]]:
    """One "still open" check for each snapshot whose circuit is not closed, timed now."""
    if not settings.ALERTS_ENABLED or not _has_recipients():
        return []
    from apps.plant_identification.circuits.breaker import breaker_for

    jobs = []
    for snapshot in snapshots:
        if snapshot.state != CircuitState.CLOSED:
            breaker = breaker_for(snapshot.provider)
            shared = breaker.store.redis_ok is True
            jobs.append(partial(_on_check, breaker.name, snapshot.state, snapshot.reason, _now(breaker), shared))
    return jobs


def _on_transition(provider: str, state: str, reason: str, now: float, shared: bool) -> None:
    if state == CircuitState.CLOSED:
        _end_episode(provider, shared)
    elif _claim(provider, OPENED, now, shared):
        _send(OPENED, provider, state, reason, started=now, now=now)


def _on_check(provider: str, state: str, reason: str, now: float, shared: bool) -> None:
    started = _episode_start(provider, now, shared)
    if now - started >= settings.ALERT_OPEN_FOR and _claim(provider, STILL_OPEN, now, shared):
        _send(STILL_OPEN, provider, state, reason, started=started, now=now)


# ---------------------------------------------------------------------------- claims
def _redis(shared: bool):
    if not (shared and settings.REDIS_URL):
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("circuits")


def _claim(provider: str, kind: str, now: float, shared: bool) -> bool:
    """True for the first claimer of this episode's ``kind`` alert (fleet-wide; this process without Redis)."""
    client = _redis(shared)
    if client is not None:
        try:
            key = f"plantid:circuit:{provider}:alert:{kind}"
            return bool(client.set(key, repr(now), nx=True, ex=EPISODE_TTL))
        except RedisError as exc:
            logger.warning("[ALERT] Redis unreachable (%s); claiming in this process", type(exc).__name__)
    with _lock:
        if (provider, kind) in _local_claims:
            return False
        _local_claims[(provider, kind)] = now
        return True


def _episode_start(provider: str, now: float, shared: bool) -> float:
    """When the episode began: its "opened" claim, made now if missing (e.g. opened while alerts were off)."""
    client = _redis(shared)
    if client is not None:
        try:
            key = alert_keys(provider)[0]
            client.set(key, repr(now), nx=True, ex=EPISODE_TTL)
            value = client.get(key)
            if value is not None:
                return float(value)
        except RedisError as exc:
            logger.warning("[ALERT] Redis unreachable (%s); using this process's episode start", type(exc).__name__)
    with _lock:
        return _local_claims.setdefault((provider, OPENED), now)


def _end_episode(provider: str, shared: bool) -> None:
    with _lock:
        _local_claims.pop((provider, OPENED), None)
        _local_claims.pop((provider, STILL_OPEN), None)
    client = _redis(shared)
    if client is not None:
        try:
            client.delete(*alert_keys(provider))
        except RedisError as exc:
            logger.warning("[ALERT] Redis unreachable (%s); episode claims expire on their own", type(exc).__name__)


# ---------------------------------------------------------------------------- sending
def _send(kind: str, provider: str, state: str, reason: str, *, started: float, now: float) -> None:
    """Tell operators by mail_admins and the webhook; a failing channel is logged, never raised."""
    from apps.plant_identification.circuits.events import worker_id  # events imports this module

    open_for = max(0, round(now - started))
    payload = {  # names and times only: never a key, a URL or an upstream body
        "event": f"circuit_{kind}",
        "provider": provider,
        "state": str(state),
        "reason": str(reason),
        "episode_started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "open_for_seconds": open_for,
        "worker": worker_id(),
    }
    what = "opened" if kind == OPENED else f"still not closed after {open_for} s"
    subject = f"{provider} circuit {what}"
    channels = []
    if settings.ADMINS:
        try:
            mail_admins(subject, json.dumps(payload, indent=2), fail_silently=False)
            channels.append("mail")
        except Exception as exc:  # noqa: BLE001 - one failing channel must not stop the other
            logger.warning("[ALERT] %s: mail_admins failed (%s)", provider, type(exc).__name__)
    if settings.ALERT_WEBHOOK_URL:
        try:
            request = urllib.request.Request(  # noqa: S310 - an http(s) URL, checked by the settings
                settings.ALERT_WEBHOOK_URL,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT):  # noqa: S310
                pass
            channels.append("webhook")
        except Exception as exc:  # noqa: BLE001 - one failing channel must not stop the other
            logger.warning("[ALERT] %s: webhook failed (%s)", provider, type(exc).__name__)
    logger.warning(
        "[ALERT] %s circuit %s (state=%s reason=%s) sent to %s",
        provider,
        what,
        state,
        reason or "-",
        ", ".join(channels) or "nobody (every channel failed)",
    )
