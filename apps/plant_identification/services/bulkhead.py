"""Per-provider bulkheads: a bound on the calls in flight to one provider in this process."""

import threading

from django.conf import settings

from apps.plant_identification.types import Provider


class Bulkhead:
    """Counts calls in flight; ``try_acquire`` fails at once past the limit instead of queueing."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.in_flight = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """The configured bound (``<PROVIDER>_MAX_CONCURRENT_CALLS``), read now."""
        return getattr(settings, f"{self.provider.name}_MAX_CONCURRENT_CALLS")

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.in_flight -= 1


BULKHEADS = {provider: Bulkhead(provider) for provider in Provider}


def total_capacity() -> int:
    """Calls all providers may have in flight together: the size the provider thread pool needs."""
    return sum(bulkhead.limit for bulkhead in BULKHEADS.values())
