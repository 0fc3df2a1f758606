"""Single-flight: identical provider calls in flight at once, on any worker or host, make one upstream request.

The first caller for an answer-cache key takes a lock in the shared cache (``add``: Redis ``SET NX`` with a
TTL, or the in-process cache without Redis) and calls the provider; it stores the answer and releases the lock
in one round trip, and the others wait for the answer to appear in the answer cache, bounded by their deadline.
A leader that fails leaves a short failure note, so waiters fail alike instead of queueing behind one another
on a failing provider; a leader that dies holds the lock only until its lease runs out, and the next waiter
takes over.
"""

import logging
import time
import uuid
from collections.abc import Callable

from django.core.cache import cache, caches
from django_redis.cache import RedisCache

from apps.plant_identification.exceptions import (
    ProviderCircuitOpenError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from apps.plant_identification.metrics import single_flight_wait_record
from apps.plant_identification.types import ProviderAnswer

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a waiter looks for the leader's answer
FAILURE_TTL = 5  # seconds a leader's failure is told to the callers that waited for it
LEASE_MARGIN = 2.0  # seconds past the provider timeout before a silent leader's lock lapses
WAIT_WITHOUT_DEADLINE = 60.0
# KEYS: the lock, then the answer's key; ARGV: the leader's token, then (when there is an answer to keep) the
# answer and its milliseconds to live. The lock is deleted only while it is still the leader's.
FINISH_SCRIPT = """
if #ARGV == 3 then redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_finish_script = None  # registered on first use; it knows its SHA and reloads itself after a Redis restart
Entry = tuple[object, float] | None  # what the answer cache keeps of an answer, and for how many seconds


def _lock_key(key: str) -> str:
    return f"{key}:flight"


def _failure_key(key: str) -> str:
    return f"{key}:flight-failed"


def single_flight(
    key: str,
    call: Callable[[], ProviderAnswer],
    *,
    provider: str,
    lease: float,
    deadline: float | None,
    fresh: Callable[[object], ProviderAnswer | None],
    entry: Callable[[ProviderAnswer], Entry],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProviderAnswer:
    """``call()``'s answer, made once for every caller with this answer-cache ``key``: a waiter gets the
    leader's answer from the cache (``cached=True``, no request of its own). The leader keeps under ``key`` what
    ``entry`` makes of its answer (a value and its seconds to live, or None to keep nothing); ``fresh`` turns what
    the cache holds there into the answer as served from it (``cached=True``, no attempts), or None while it
    holds none (or only a stale one); ``lease`` is the longest ``call`` can take."""
    token = uuid.uuid4().hex
    give_up = deadline if deadline is not None else clock() + WAIT_WITHOUT_DEADLINE
    while True:
        taken = cache.add(_lock_key(key), token, timeout=lease + LEASE_MARGIN)
        if taken or taken is None:  # None: the shared cache is unreachable; call rather than wait on nothing
            return _lead(key, token, call, entry, locked=bool(taken))
        answer = _wait_for_leader(key, provider, fresh, give_up, clock, sleep)
        if answer is not None:
            return answer
        logger.info("[FLIGHT] provider=%s the leader left no answer: taking over", provider)


def _lead(
    key: str, token: str, call: Callable[[], ProviderAnswer], entry: Callable[[ProviderAnswer], Entry], *, locked: bool
) -> ProviderAnswer:
    kept: Entry = None
    try:
        answer = call()
        kept = entry(answer)
        return answer
    except ProviderCircuitOpenError:
        raise  # cost nothing: each waiter asks the breaker itself
    except ProviderError as exc:
        cache.set(_failure_key(key), _failure_note(exc), FAILURE_TTL)
        raise
    finally:
        _finish(key, token, kept, locked=locked)


def _finish(key: str, token: str, kept: Entry, *, locked: bool) -> None:
    """Store the leader's answer (``kept``: a value and its seconds to live, or None) and delete its lock if it is
    still the leader's (one that lapsed and was taken by another leader is theirs). On Redis: one script, one round
    trip. Else a set and a get-then-delete, which can race only with a lock that lapsed, i.e. a call longer than its
    lease, which the timeout rules out. A failure (Redis gone) keeps nothing and leaves the lock to lapse with its
    lease: it never costs the answer in hand."""
    global _finish_script
    lock, backend = _lock_key(key), caches["default"]
    try:
        if not locked or not isinstance(backend, RedisCache):
            try:
                if kept is not None:
                    cache.set(key, *kept)
            finally:
                if locked and cache.get(lock) == token:
                    cache.delete(lock)
            return
        args = [backend.client.encode(token), *_encoded(backend, kept)]
        client = backend.client.get_client(write=True)
        if _finish_script is None:
            _finish_script = client.register_script(FINISH_SCRIPT)
        _finish_script(keys=[backend.make_key(lock), backend.make_key(key)], args=args, client=client)
    except Exception as exc:  # noqa: BLE001 - it runs after the call: it must not replace the answer or its error
        logger.warning(
            "[FLIGHT] could not store the answer or release a lock (%s): the lock lapses with its lease",
            type(exc).__name__,
        )


def _encoded(backend: RedisCache, kept: Entry) -> list:
    """The script's arguments for the answer to keep: its value as django-redis stores it and its milliseconds to
    live; none when there is nothing to keep, or it cannot be encoded (logged: the lock is released all the same)."""
    if kept is None:
        return []
    try:
        return [backend.client.encode(kept[0]), max(1, int(kept[1] * 1000))]
    except Exception as exc:  # noqa: BLE001 - an answer that cannot be cached is still the answer
        logger.warning("[FLIGHT] could not encode the answer to keep (%s): not cached", type(exc).__name__)
        return []


def _wait_for_leader(
    key: str,
    provider: str,
    fresh: Callable[[object], ProviderAnswer | None],
    give_up: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ProviderAnswer | None:
    """The leader's answer (from the cache), its failure raised as this caller's, or None when the lock is
    gone without either (the leader died or its lease lapsed): then this caller may lead."""
    logger.info("[FLIGHT] provider=%s waiting for an identical call in flight", provider)
    while True:
        found = cache.get_many([key, _failure_key(key), _lock_key(key)])
        answer = fresh(found.get(key))
        if answer is not None:
            single_flight_wait_record(provider, "answer")
            return answer
        if _failure_key(key) in found:
            single_flight_wait_record(provider, "failure")
            raise _failure_error(provider, found[_failure_key(key)])
        if _lock_key(key) not in found:
            single_flight_wait_record(provider, "takeover")
            return None
        if clock() + POLL_SECONDS > give_up:
            single_flight_wait_record(provider, "deadline")
            raise ProviderTimeoutError(provider, "no answer from the identical call in flight within the deadline")
        sleep(POLL_SECONDS)


def _failure_note(exc: ProviderError) -> dict:
    kind = "error"
    if isinstance(exc, ProviderRateLimitedError):
        kind = "quota"
    elif isinstance(exc, ProviderTimeoutError):
        kind = "timeout"
    return {
        "kind": kind,
        "message": exc.message,
        "status": exc.status_code,
        "retry_after": getattr(exc, "retry_after", None),
    }


def _failure_error(provider: str, note: dict) -> ProviderError:
    """The leader's failure, as this waiter's (it made no request: ``attempts`` 0)."""
    message = f"{note['message']} (an identical call in flight)"
    if note["kind"] == "quota":
        error = ProviderRateLimitedError(provider, message, status_code=note["status"], retry_after=note["retry_after"])
    elif note["kind"] == "timeout":
        error = ProviderTimeoutError(provider, message)
    else:
        error = ProviderUnavailableError(provider, message, status_code=note["status"])
    error.attempts = 0
    return error
