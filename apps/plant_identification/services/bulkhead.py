"""Per-provider bulkheads: a bound on the calls in flight to one provider in this process."""

import threading

from apps.plant_identification.providers import Provider, provider_registry, provider_spec


class Bulkhead:
    """Counts calls in flight; ``try_acquire`` fails at once past the limit instead of queueing."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.in_flight = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """The configured bound (the registry's ``max_concurrent_calls``), read now."""
        return provider_spec(self.provider).max_concurrent_calls

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        limit = self.limit
        with self._lock:
            if self.in_flight >= limit:
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
    return sum(spec.max_concurrent_calls for spec in provider_registry().values())
