"""The answer cache: each provider's last answer for a request, fresh for its TTL, then stale until its max age.

One entry per request (one read, one write per call): it is served as a hit while fresh (``<P>_CACHE_TTL``)
and, past that, only when the provider cannot answer (``<P>_STALE_MAX_AGE``, stale-if-error). Ages are wall
clock seconds, since the entry is shared by every worker on every host.
"""

import dataclasses
from collections.abc import Callable

from django.core.cache import cache

from apps.plant_identification.providers import ProviderSpec
from apps.plant_identification.types import ProviderAnswer


@dataclasses.dataclass(frozen=True)
class CachedAnswer:
    """An answer as the cache holds it, with when it was received."""

    answer: ProviderAnswer
    stored_at: float  # time.time() seconds

    def age(self, now: float) -> float:
        """Seconds since the answer was received (never negative, whatever the hosts' clocks say)."""
        return max(0.0, now - self.stored_at)

    def served(self, now: float, *, stale: bool) -> ProviderAnswer:
        """The answer as a cached one: no request made for it, its age, stale or not."""
        return dataclasses.replace(self.answer, cached=True, attempts=0, stale=stale, age_s=int(self.age(now)))


def answer_read(key: str) -> CachedAnswer | None:
    """The cached entry under ``key``, fresh or not (None when there is none, or in an older format)."""
    entry = cache.get(key)
    return entry if isinstance(entry, CachedAnswer) else None


def fresh_answer(entry, spec: ProviderSpec, now: float) -> ProviderAnswer | None:
    """``entry`` as a cache hit when it is a ``CachedAnswer`` younger than the provider's TTL; None otherwise."""
    if not isinstance(entry, CachedAnswer) or entry.age(now) >= spec.cache_ttl:
        return None
    return entry.served(now, stale=False)


def stale_answer(entry: CachedAnswer | None, spec: ProviderSpec, now: float) -> ProviderAnswer | None:
    """``entry`` for a provider that cannot answer: served while younger than its stale max age; None otherwise."""
    if entry is None or entry.age(now) > spec.stale_max_age:
        return None
    return entry.served(now, stale=entry.age(now) >= spec.cache_ttl)


def answer_entry(answer: ProviderAnswer, spec: ProviderSpec, now: float) -> tuple[CachedAnswer, float] | None:
    """What the cache keeps of ``answer`` and for how many seconds: fresh for the TTL, then a fallback for the stale
    max age (whichever is longer); None when the provider's answers are not kept."""
    keep = max(spec.cache_ttl, spec.stale_max_age)
    return (CachedAnswer(dataclasses.replace(answer, attempts=1), now), keep) if keep > 0 else None


def answer_store(key: str, answer: ProviderAnswer, spec: ProviderSpec, now: float) -> None:
    """Keep ``answer`` under ``key`` as ``answer_entry`` says."""
    if (entry := answer_entry(answer, spec, now)) is not None:
        cache.set(key, *entry)


def fresh_reader(spec: ProviderSpec, clock: Callable[[], float]) -> Callable[[object], ProviderAnswer | None]:
    """A function turning a raw cache value into a fresh hit or None (for single-flight waiters)."""
    return lambda entry: fresh_answer(entry, spec, clock())
