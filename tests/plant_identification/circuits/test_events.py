"""Circuit transitions are kept the moment they happen and stored by whichever worker flushes next."""

import os
import socket

import pytest

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import SWEEP_INTERVAL, circuit_events_flush, circuit_events_pending
from apps.plant_identification.models import CircuitEvent
from apps.plant_identification.providers import Provider

pytestmark = pytest.mark.django_db


def in_forked_worker(action) -> int:
    """Run ``action`` in a forked child that exits at once, never flushing; returns the child's pid.

    A fork stands for a gunicorn worker forked from a preloaded master: the modules were imported before it.
    """
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


@pytest.mark.slow
def test_a_transition_outlives_the_worker_that_made_it_and_names_that_worker():
    child = in_forked_worker(lambda: breaker_for(Provider.PLANTNET).open())

    assert circuit_events_flush() == 1  # this process made no transition: the child's was kept in Redis
    event = CircuitEvent.objects.get()
    assert (event.circuit_id, event.from_state, event.to_state) == ("plantnet", "closed", "open")
    assert event.reason == "forced"
    assert event.worker == f"{socket.gethostname()}:{child}"
    assert child != os.getpid()


def test_each_transition_is_stored_once_whoever_flushes():
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.open()
    breaker.close()

    assert circuit_events_flush() == 2
    assert circuit_events_flush() == 0
    assert list(CircuitEvent.objects.order_by("created_at").values_list("from_state", "to_state")) == [
        ("closed", "open"),
        ("open", "closed"),
    ]


def test_without_redis_a_transition_waits_in_its_own_process(redis_unreachable):
    breaker_for(Provider.PLANT_ID).open()

    events = circuit_events_pending()
    assert [(e.provider, e.to_state, e.worker) for e in events] == [
        ("plant_id", "open", f"{socket.gethostname()}:{os.getpid()}")
    ]


@pytest.mark.slow
def test_identify_stores_its_own_transitions_at_once_and_other_workers_at_each_sweep():
    breaker_for(Provider.PLANT_ID).open()  # made here
    assert circuit_events_flush(when_due=True, now=0.0) == 1

    child = in_forked_worker(lambda: breaker_for(Provider.PLANTNET).open())  # made by another worker
    assert circuit_events_flush(when_due=True, now=1.0) == 0  # not due: an ordinary request pays nothing
    assert circuit_events_flush(when_due=True, now=SWEEP_INTERVAL) == 1
    assert CircuitEvent.objects.filter(worker__endswith=f":{child}").exists()
