"""What each provider last said of its quota, kept fleet-wide in the shared cache (no database)."""

import logging

from django.core.cache import cache

from apps.plant_identification.providers import Provider

logger = logging.getLogger(__name__)

KEEP_SECONDS = 2 * 86400  # an observation older than a day's quota window says nothing useful
# Everything an observation may say; each is kept under its own key, so that recording one is a single write.
FIELDS = ("remaining", "limit", "reset_at", "window_s", "period", "credits", "observed_at", "source")


def _key(provider: Provider, field: str) -> str:
    return f"plantid:quota:{provider.value}:{field}"


def quota_record(provider: Provider, observation: dict) -> None:
    """Store what ``provider`` just said of its quota over the last observation: one key per field, so a response
    that says less keeps what an earlier one said (each field for two days after it was last said) without a read
    before the write; never raises."""
    try:
        if unknown := observation.keys() - set(FIELDS):
            raise ValueError(f"not a quota field: {sorted(unknown)}")
        cache.set_many({_key(provider, field): value for field, value in observation.items()}, KEEP_SECONDS)
    except Exception:  # a quota note must never cost an answer
        logger.exception("[QUOTA] could not record %s's quota", provider.value)


def quota_observed(provider: Provider) -> dict | None:
    """The last observation of ``provider``'s quota, each field as last said (epoch-second times), None if there
    is none."""
    try:
        found = cache.get_many([_key(provider, field) for field in FIELDS])
    except Exception:
        logger.exception("[QUOTA] could not read %s's quota", provider.value)
        return None
    return {field: found[_key(provider, field)] for field in FIELDS if _key(provider, field) in found} or None
