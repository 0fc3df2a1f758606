"""A worker's view of a provider outage: failures in a row, the probe, and how a backoff ends."""

import threading
import time

from apps.plant_identification.clients.outages import Backoff, OutageWatch
from tests.plant_identification.clients.outage_steps import (
    backoff_in_thread,
    failed_attempt_then_backoff,
    probe_fails,
    suspect,
    wait_until_waiting,
)


def test_while_the_probe_is_out_the_other_retries_wait_and_go_when_it_succeeds(settings):
    watch = OutageWatch()
    suspect(watch, settings)
    assert watch.backoff(0.01) is Backoff.GO  # the probe
    watch.start_attempt()
    waiting, outcome = backoff_in_thread(watch, 0.01, until=time.monotonic() + 30)
    waiting.join(timeout=0.3)
    assert waiting.is_alive()  # waits for the probe beyond its own backoff

    watch.record_attempt(failed=False)  # the probe answers
    waiting.join(timeout=10)

    assert outcome == [Backoff.GO]


def test_a_failed_probe_confirms_the_outage_and_the_waiting_retries_give_up(settings):
    watch = OutageWatch()
    suspect(watch, settings)
    assert watch.backoff(0.01) is Backoff.GO
    watch.start_attempt()
    waiting, outcome = backoff_in_thread(watch, 0.01, until=time.monotonic() + 30)

    assert watch.record_attempt(failed=True) is True  # the probe failed: an outage, none out
    waiting.join(timeout=10)

    assert outcome == [Backoff.OUTAGE]
    assert watch.backoff(0.01) is Backoff.OUTAGE  # later retries too, until an attempt succeeds
    watch.record_attempt(failed=False)
    assert watch.backoff(0.01) is Backoff.GO


def test_a_retry_waiting_for_the_probe_gives_up_when_its_time_is_over(settings):
    watch = OutageWatch()
    suspect(watch, settings)
    assert watch.backoff(0.01) is Backoff.GO
    waiting, outcome = backoff_in_thread(watch, 0.01, until=time.monotonic() + 0.2)
    waiting.join(timeout=10)
    assert outcome == [Backoff.OUTAGE]


def test_a_backoff_ends_as_soon_as_the_worker_sees_an_outage(settings):
    """A call waiting to retry gives up the moment other attempts' failures make an outage (confirmed by a
    failed retry), not when its wait is over, so its failure reaches the breaker without the backoff's delay."""
    watch = OutageWatch()
    waiting, outcome = backoff_in_thread(watch, 60)
    suspect(watch, settings)
    probe_fails(watch)
    waiting.join(timeout=10)

    assert not waiting.is_alive()
    assert outcome == [Backoff.OUTAGE]


def test_an_outage_found_in_the_shared_record_stops_the_backoffs_in_progress():
    """Another call of this worker reports an outage in the circuit's shared record: a backoff in progress stops
    at once, so its caller reads the record now (and gives up on what it finds there)."""
    watch = OutageWatch()
    waiting, outcome = failed_attempt_then_backoff(watch, 60)

    watch.outage_seen()
    waiting.join(timeout=10)

    assert not waiting.is_alive()
    assert outcome == [Backoff.REPORTED]


def test_a_report_stops_a_retry_waiting_for_the_probe(settings):
    watch = OutageWatch()
    suspect(watch, settings)
    assert watch.backoff(0) is Backoff.GO  # the probe, still out
    watch.start_attempt()
    waiting, outcome = failed_attempt_then_backoff(watch, 0, until=time.monotonic() + 60)
    waiting.join(timeout=0.1)
    assert waiting.is_alive()  # past its own backoff (0 s): waiting for the probe

    watch.outage_seen()
    waiting.join(timeout=10)

    assert outcome == [Backoff.REPORTED]


def test_a_report_is_news_once_and_the_rest_of_the_backoff_runs_its_course():
    """Its caller found the record clear again: the thread's next backoff, the rest of the first, is not stopped by
    the report already seen."""
    watch = OutageWatch()
    outcome, rest = [], []

    def attempt_then_back_off_twice() -> None:
        watch.start_attempt()
        watch.record_attempt(failed=True)
        outcome.append(watch.backoff(60))
        started = time.monotonic()
        outcome.append(watch.backoff(0.05))
        rest.append(time.monotonic() - started)

    waiting = threading.Thread(target=attempt_then_back_off_twice)
    waiting.start()
    wait_until_waiting(watch)
    watch.outage_seen()
    waiting.join(timeout=10)

    assert outcome == [Backoff.REPORTED, Backoff.GO]
    assert rest[0] >= 0.05


def test_an_outage_reported_before_the_attempt_ended_does_not_stop_its_backoff():
    """A report made while the attempt was out is in the shared record that its caller reads after it ends (the
    retry gate): only later reports are news for its backoff."""
    watch = OutageWatch()
    watch.start_attempt()
    watch.outage_seen()
    watch.record_attempt(failed=True)
    started = time.monotonic()

    assert watch.backoff(0.05) is Backoff.GO
    assert time.monotonic() - started >= 0.05


def test_the_backoffs_in_progress_are_counted():
    watch = OutageWatch()
    assert watch.waiting == 0
    waiting, outcome = failed_attempt_then_backoff(watch, 60)
    assert watch.waiting == 1

    watch.outage_seen()
    waiting.join(timeout=10)

    assert (outcome, watch.waiting) == ([Backoff.REPORTED], 0)


def test_a_backoff_outlives_failures_in_a_row_while_an_attempt_is_still_out(settings):
    """Failures in a row with another attempt still out may be a blip: the backoff runs its course, and when that
    attempt succeeds meanwhile the retry goes."""
    watch = OutageWatch()
    watch.start_attempt()  # still out
    outcome = []
    waiting = threading.Thread(target=lambda: outcome.append(watch.backoff(0.5)))
    suspect(watch, settings)
    probe_fails(watch)
    waiting.start()
    watch.record_attempt(failed=False)  # the attempt that was out answers
    waiting.join(timeout=10)

    assert outcome == [Backoff.GO]


def test_failures_in_a_row_are_an_outage_only_when_no_attempt_is_still_out(settings):
    watch = OutageWatch()
    suspect(watch, settings)
    assert watch.backoff(0) is Backoff.GO  # the probe
    watch.start_attempt()
    watch.start_attempt()  # and another attempt, still out
    assert watch.record_attempt(failed=True) is False  # the probe failed, but the other may answer
    assert watch.record_attempt(failed=True) is True  # it failed too: every attempt out failed


def test_failed_first_attempts_alone_only_suspect_an_outage(settings):
    watch = OutageWatch()
    outcomes = [watch.record_attempt(failed=True) for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER + 2)]
    assert outcomes == [False] * len(outcomes)  # no retry has failed: not yet an outage
    assert watch.backoff(0.01) is Backoff.GO  # the probe


def test_a_backoff_among_successes_lets_the_retry_go():
    watch = OutageWatch()
    watch.record_attempt(failed=False)
    watch.record_attempt(failed=True)
    assert watch.backoff(0.01) is Backoff.GO
