"""A per-worker bound on the photos decoded at once: what a burst of 12 MP uploads may take in memory and CPU."""

import threading
from contextlib import contextmanager

from django.conf import settings


class DecodeSlots:
    """At most ``IDENTIFY_MAX_CONCURRENT_DECODES`` photos decoded at once in this process; the others wait their
    turn (a decode takes tens of milliseconds, so a burst queues briefly instead of failing)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.in_use = 0
        self.peak = 0  # the most slots held at once since the last reset: for tests and benchmarks

    @property
    def limit(self) -> int:
        """The configured bound, read now."""
        return settings.IDENTIFY_MAX_CONCURRENT_DECODES

    @contextmanager
    def slot(self):
        """Hold one slot for the duration of the block, waiting for one if all are taken."""
        with self._changed:
            self._changed.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= 1
                self._changed.notify()

    def reset_peak(self) -> None:
        """Start counting the peak again from the slots held now."""
        with self._changed:
            self.peak = self.in_use


DECODE_SLOTS = DecodeSlots()
