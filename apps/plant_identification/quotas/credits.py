"""The Plant.id daily credit budget: credits reserved before a call, fleet-wide per UTC day, given back when
the call was not charged."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from apps.plant_identification.exceptions import ProviderRateLimitedError
from apps.plant_identification.periods import seconds_to_utc_midnight

logger = logging.getLogger(__name__)

KEEP_SECONDS = 2 * 86400  # a day's counter outlives its day, so the admin can still read yesterday's
UNLIMITED = -1  # the budget the scripts are given when there is none: count, never refuse

# Take ``cost`` unless it would pass the budget: {1, spent} when taken, {0, spent} when refused.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
if budget >= 0 and spent + cost > budget then return {0, spent} end
spent = redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, spent}
"""
# Give ``cost`` back, never below zero; returns what is spent now.
_REFUND = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(spent, tonumber(ARGV[1]))
if back > 0 then spent = redis.call('DECRBY', KEYS[1], back) end
return spent
"""

_local_lock = threading.Lock()
_local_spent: dict[str, int] = {}  # while Redis is unreachable: this worker's own count
_scripts: dict[str, object] = {}


class CreditBudgetSpentError(ProviderRateLimitedError):
    """Plant.id was not called: today's ``PLANT_ID_DAILY_CREDIT_BUDGET`` would be passed; back at 00:00 UTC."""

    def __init__(self, provider: str, message: str, *, retry_after: float) -> None:
        super().__init__(provider, message, status_code=None, retry_after=retry_after)
        self.attempts = 0  # no request was made


@dataclass(frozen=True)
class Reservation:
    """Credits taken from one UTC day's budget for one call."""

    day: str
    cost: int


def utc_day(now: float) -> str:
    """The UTC date of ``now`` (epoch seconds), e.g. ``2026-12-02``."""
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def _key(day: str) -> str:
    return f"plantid:credits:plant_id:{day}"


def _redis():
    if not settings.REDIS_URL:
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _script(client, name: str, source: str):
    script = _scripts.get(name)
    if script is None:
        script = _scripts[name] = client.register_script(source)
    return script


def _run(name: str, source: str, day: str, *args):
    """Run a ledger script on Redis; None when there is no Redis or it is unreachable (the caller falls back)."""
    client = _redis()
    if client is None:
        return None
    try:
        return _script(client, name, source)(keys=[_key(day)], args=list(args), client=client)
    except (RedisError, OSError) as exc:
        logger.warning("[QUOTA] credit ledger unreachable (%s): counting in this worker only", type(exc).__name__)
        return None


def _local(day: str, change: Callable[[int], int]) -> int:
    """Apply ``change`` to the day's count in this process (the in-process cache without Redis, else memory)."""
    with _local_lock:
        if settings.REDIS_URL:
            spent = _local_spent[day] = max(0, change(_local_spent.get(day, 0)))
            return spent
        spent = max(0, change(cache.get(_key(day)) or 0))
        cache.set(_key(day), spent, KEEP_SECONDS)
        return spent


def credits_reserve(cost: int, now: float, budget: int | None) -> tuple[Reservation | None, int]:
    """Take ``cost`` credits from the UTC day of ``now`` unless that passes ``budget`` (None: no cap, only counted).
    Returns the reservation (None: refused) and what is spent today after it. Atomic fleet-wide on Redis."""
    day = utc_day(now)
    limit = UNLIMITED if budget is None else budget
    result = _run("reserve", _RESERVE, day, cost, limit, KEEP_SECONDS)
    if result is not None:
        taken, spent = int(result[0]), int(result[1])
        return (Reservation(day, cost) if taken else None), spent
    taken = False

    def take(spent: int) -> int:
        nonlocal taken
        taken = limit < 0 or spent + cost <= limit
        return spent + cost if taken else spent

    spent = _local(day, take)
    return (Reservation(day, cost) if taken else None), spent


def credits_refund(reservation: Reservation) -> None:
    """Give a reservation's credits back (the call was not charged)."""
    if _run("refund", _REFUND, reservation.day, reservation.cost) is None:
        _local(reservation.day, lambda spent: spent - reservation.cost)


def credits_spent(now: float | None = None) -> int:
    """Credits spent (or reserved by calls in flight) on the UTC day of ``now``, fleet-wide."""
    day = utc_day(time.time() if now is None else now)
    client = _redis()
    if client is not None:
        try:
            value = client.get(_key(day))
            return int(value or 0)
        except (RedisError, OSError):
            pass
        with _local_lock:
            return _local_spent.get(day, 0)
    return int(cache.get(_key(day)) or 0)


@dataclass(frozen=True)
class BudgetState:
    """Today's budget as it stands: the cap (None: none), what is spent, what is left, when it resets."""

    budget: int | None
    spent: int
    reset_at: float  # the next 00:00 UTC, epoch seconds

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.spent, 0)

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0


def budget_state(now: float | None = None) -> BudgetState:
    """``PLANT_ID_DAILY_CREDIT_BUDGET`` against what is spent today."""
    now = time.time() if now is None else now
    return BudgetState(settings.PLANT_ID_DAILY_CREDIT_BUDGET, credits_spent(now), now + seconds_to_utc_midnight(now))


def budget_refusal(provider: str, cost: int, spent: int, now: float) -> CreditBudgetSpentError:
    """The error for a call the budget does not allow."""
    budget = settings.PLANT_ID_DAILY_CREDIT_BUDGET
    return CreditBudgetSpentError(
        provider,
        f"daily credit budget reached: {spent} of {budget} credits spent today, this call needs {cost} "
        "(PLANT_ID_DAILY_CREDIT_BUDGET; back at 00:00 UTC)",
        retry_after=seconds_to_utc_midnight(now),
    )
