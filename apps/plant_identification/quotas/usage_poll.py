"""Plant.id's free ``GET /usage_info``, polled now and then by one worker fleet-wide, never once per request."""

import logging
import math
import threading
import time
from datetime import UTC, datetime

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.dispatch import receiver

from apps.plant_identification.periods import seconds_until_period_end
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.quotas.observed import quota_record

logger = logging.getLogger(__name__)

POLL_TIMEOUT = 10.0  # seconds; the poll runs in the background and only feeds /health/ and the admin
PERIODS = ("day", "week", "month", "total")
_tried_slot: int | None = None  # the latest interval this process tried to claim (a loser waits for the next)


def _slot_key(slot: int) -> str:
    return f"plantid:quota:plant_id:usage-poll:{slot}"


def usage_poll_due(now: float | None = None) -> bool:
    """Claim this interval's poll: True for exactly one caller fleet-wide per ``PLANT_ID_USAGE_POLL_INTERVAL``
    (an ``add`` in the shared cache, keyed by the interval ``now`` falls in, tried once per process and
    interval); False when polling is off."""
    interval = settings.PLANT_ID_USAGE_POLL_INTERVAL
    spec = provider_spec(Provider.PLANT_ID)
    if not interval or not spec.configured:
        return False
    now = time.time() if now is None else now
    slot = math.floor(now / interval)
    global _tried_slot
    if slot == _tried_slot:  # this process has tried for this interval: no round trip to Redis per request
        return False
    _tried_slot = slot
    try:
        return bool(cache.add(_slot_key(slot), 1, timeout=math.ceil(interval) + 1))
    except Exception:
        logger.exception("[QUOTA] could not claim the usage_info poll")
        return False


@receiver(setting_changed)
def _settings_changed(**_kwargs) -> None:
    global _tried_slot
    _tried_slot = None  # another configuration (tests): this process has not tried for it yet


def usage_summary(payload: dict) -> dict:
    """The quota observation a ``usage_info`` body gives: the tightest period's remaining credits and limit."""
    limits, used, left = payload["credit_limits"], payload["used"], payload["remaining"]
    tightest = None
    for period in PERIODS:
        if left.get(period) is not None and (tightest is None or left[period] < left[tightest]):
            tightest = period
    can_use = payload.get("can_use_credits") or {}
    return {
        "remaining": left.get(tightest) if tightest else None,
        "limit": limits.get(tightest) if tightest else None,
        "period": tightest,
        "credits": {
            "active": payload.get("active"),
            "can_use": can_use.get("value"),
            "reason": can_use.get("reason"),
            "limits": {p: limits.get(p) for p in PERIODS},
            "used": {p: used.get(p) for p in PERIODS},
            "remaining": {p: left.get(p) for p in PERIODS},
        },
    }


def usage_poll(now_clock=time.time) -> dict | None:
    """Ask Plant.id for its usage now and record it; the observation, or None when the poll failed."""
    spec = provider_spec(Provider.PLANT_ID)
    try:
        response = requests.get(
            f"{spec.base_url}/usage_info", headers={"Api-Key": spec.api_key}, timeout=(5.0, POLL_TIMEOUT)
        )
        if response.status_code != 200:
            detail = " ".join(response.text[:200].split()).replace(spec.api_key, "[redacted]")
            logger.warning("[QUOTA] plant_id usage_info answered %s: %s", response.status_code, detail)
            return None
        now = now_clock()
        observation = {**usage_summary(response.json()), "source": "usage_info", "observed_at": now}
        period = observation["period"]
        reset = seconds_until_period_end(period, datetime.fromtimestamp(now, UTC)) if period != "total" else None
        observation["reset_at"] = None if period is None or reset is None else now + reset
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("[QUOTA] plant_id usage_info poll failed (%s)", type(exc).__name__)
        return None
    quota_record(Provider.PLANT_ID, observation)
    logger.info("[QUOTA] plant_id usage_info: %s credits left (%s)", observation["remaining"], observation["period"])
    return observation


def usage_poll_maybe(now: float | None = None) -> threading.Thread | None:
    """Start the poll in a background thread when this caller won this interval's claim; the thread, else None.
    Cheap enough for the request path: one cache ``add`` per call."""
    if not usage_poll_due(now):
        return None
    thread = threading.Thread(target=usage_poll, name="plant-id-usage-poll", daemon=True)
    thread.start()
    return thread
