"""What each provider last said of its quota, kept fleet-wide in the shared cache (no database)."""

import logging

from django.core.cache import cache

from apps.plant_identification.providers import Provider

logger = logging.getLogger(__name__)

KEEP_SECONDS = 2 * 86400  # an observation older than a day's quota window says nothing useful
COMPLETE = {"remaining", "limit", "reset_at", "observed_at", "source"}


def _key(provider: Provider) -> str:
    return f"plantid:quota:{provider.value}"


def quota_record(provider: Provider, observation: dict) -> None:
    """Store what ``provider`` just said of its quota (merged over the last observation: a response that says
    less keeps what an earlier one said); never raises."""
    try:
        complete = observation.keys() >= COMPLETE  # says all an earlier one could: no read to merge it over
        merged = observation if complete else {**(cache.get(_key(provider)) or {}), **observation}
        cache.set(_key(provider), merged, KEEP_SECONDS)
    except Exception:  # a quota note must never cost an answer
        logger.exception("[QUOTA] could not record %s's quota", provider.value)


def quota_observed(provider: Provider) -> dict | None:
    """The last observation of ``provider``'s quota (epoch-second times), None if there is none."""
    try:
        return cache.get(_key(provider))
    except Exception:
        logger.exception("[QUOTA] could not read %s's quota", provider.value)
        return None
