"""Steps that put an ``OutageWatch`` in a given state, as a worker's calls would."""

import threading
import time

from apps.plant_identification.clients.outages import Backoff, OutageWatch


def suspect(watch: OutageWatch, settings) -> None:
    """Fail more first attempts in a row than ``PROVIDER_RETRY_OUTAGE_AFTER``, none still out."""
    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER + 1):
        watch.start_attempt()
        watch.record_attempt(failed=True)


def probe_fails(watch: OutageWatch) -> None:
    """Send the probe of a suspected outage from another thread, and fail it."""

    def probe() -> None:
        assert watch.backoff(0) is Backoff.GO
        watch.start_attempt()
        watch.record_attempt(failed=True)

    sending = threading.Thread(target=probe)
    sending.start()
    sending.join(timeout=10)


def backoff_in_thread(watch: OutageWatch, seconds: float, until: float | None = None):
    """Start a backoff in another thread: the thread, and the list its outcome goes to."""
    outcome = []
    waiting = threading.Thread(target=lambda: outcome.append(watch.backoff(seconds, until=until)))
    waiting.start()
    return waiting, outcome


def wait_until_waiting(watch: OutageWatch, threads: int = 1) -> None:
    """Return once ``threads`` threads are in a backoff of ``watch``."""
    deadline = time.monotonic() + 10
    while watch.waiting < threads:
        assert time.monotonic() < deadline, "no backoff started"
        time.sleep(0.001)


def failed_attempt_then_backoff(watch: OutageWatch, seconds: float, until: float | None = None):
    """In another thread, an attempt that fails and then its backoff: the thread, and its outcomes."""
    outcome = []

    def attempt_then_back_off() -> None:
        watch.start_attempt()
        watch.record_attempt(failed=True)
        outcome.append(watch.backoff(seconds, until=until))

    waiting = threading.Thread(target=attempt_then_back_off)
    waiting.start()
    wait_until_waiting(watch)
    return waiting, outcome
