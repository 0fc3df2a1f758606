"""Threads: calls through one breaker run at once, rejections never wait, half-open trials are limited
fleet-wide, and a hanging provider fills only its own bulkhead."""

import threading

import pytest

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.bulkhead import BULKHEADS
from apps.plant_identification.services.fan_out import providers_fan_out
from apps.plant_identification.types import ProviderStatus
from tests.factories import FakeClient, answering, hanging, make_request


def test_calls_through_one_breaker_are_not_serialized():
    """Eight calls meet at a barrier inside the breaker: serialized calls would never all arrive."""
    breaker = breaker_for(Provider.PLANTNET)
    barrier = threading.Barrier(8, timeout=5)
    errors = []

    def call():
        try:
            with breaker.protect():
                barrier.wait()
        except threading.BrokenBarrierError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.fixture
def half_open(clock):
    breaker = breaker_for(Provider.PLANTNET)
    breaker.open()
    clock.advance(breaker.reset_timeout)
    return breaker


def run_trial(breaker, entered: threading.Event, release: threading.Event) -> threading.Thread:
    def trial():
        with breaker.protect():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=trial)
    thread.start()
    assert entered.wait(5)
    return thread


def test_rejected_callers_do_not_wait_behind_a_running_trial(half_open, clock):
    entered, release = threading.Event(), threading.Event()
    trial = run_trial(half_open, entered, release)
    try:
        other_worker = ProviderCircuitBreaker(Provider.PLANTNET, clock=clock)
        for breaker in (half_open, other_worker):  # this worker and another one: one trial fleet-wide
            with pytest.raises(ProviderCircuitOpenError), breaker.protect():
                pytest.fail("a second trial ran")
        assert trial.is_alive()  # the rejections came while the trial was still running
    finally:
        release.set()
        trial.join()
    assert half_open.current_state == "half-open"  # one success of the two needed


def test_half_open_admits_up_to_the_configured_trials(half_open, settings):
    settings.HALF_OPEN_MAX_CALLS = 2
    release = threading.Event()
    trials = [run_trial(half_open, threading.Event(), release) for _ in range(2)]
    try:
        with pytest.raises(ProviderCircuitOpenError), half_open.protect():
            pass
    finally:
        release.set()
        for trial in trials:
            trial.join()
    assert half_open.current_state == "closed"  # two trial successes reach the threshold


def test_a_hung_trial_frees_its_slot_after_its_lease(half_open, clock):
    entered, release = threading.Event(), threading.Event()
    hung = run_trial(half_open, entered, release)
    try:
        clock.advance(half_open.config().trial_lease)
        with half_open.protect():  # admitted as the new trial
            pass
    finally:
        release.set()
        hung.join()  # the stale trial's late success does not count twice
    assert half_open.success_counter == 1


def test_a_hanging_provider_fills_only_its_own_bulkhead(settings):
    settings.PLANTNET_MAX_CONCURRENT_CALLS = 2
    release = threading.Event()
    plantnet = FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release))
    try:
        for _ in range(2):  # two requests leave their Pl@ntNet calls hanging past the deadline
            outcomes = providers_fan_out({Provider.PLANTNET: plantnet}, make_request(), deadline=0.05).outcomes
            assert outcomes[Provider.PLANTNET].status == ProviderStatus.TIMEOUT
        clients = {
            Provider.PLANTNET: plantnet,
            Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        }
        outcomes = providers_fan_out(clients, make_request(), deadline=5).outcomes
        assert outcomes[Provider.PLANTNET].error_class == "BulkheadFullError"
        assert outcomes[Provider.PLANT_ID].status == ProviderStatus.OK
        assert plantnet.calls == 2
    finally:
        release.set()
    for _ in range(100):
        if BULKHEADS[Provider.PLANTNET].in_flight == 0:
            break
        threading.Event().wait(0.05)
    assert BULKHEADS[Provider.PLANTNET].in_flight == 0


def _fail(breaker) -> None:
    with pytest.raises(ProviderUnavailableError), breaker.protect():
        raise ProviderUnavailableError("plantnet", "HTTP 502")


def test_a_success_resets_a_failure_counted_while_it_was_out():
    """Concurrent calls: one let through before another failed must still reset the count when it succeeds, as
    pybreaker's success resets fail_counter (else successes in flight let failures add up past them)."""
    breaker = breaker_for(Provider.PLANTNET)
    with breaker.protect():  # let through with no failure counted
        _fail(breaker)  # a concurrent call fails meanwhile
        assert breaker.fail_counter == 1
    assert breaker.fail_counter == 0


def test_a_success_resets_a_failure_another_worker_counted_once_this_one_has_heard_of_it():
    """Another worker (a breaker with its own store on the same Redis) counts a failure; once this worker has
    heard of it (a call let through since), a success let through before it still resets it fleet-wide."""
    here, elsewhere = breaker_for(Provider.PLANTNET), ProviderCircuitBreaker(Provider.PLANTNET)
    first, second = here.protect(), here.protect()
    first.__enter__()  # let through with no failure counted
    _fail(elsewhere)
    second.__enter__()  # this worker's next call: the shared count comes back with its admission
    first.__exit__(None, None, None)  # the first call succeeds while the second is still out

    assert elsewhere.fail_counter == 0
    second.__exit__(None, None, None)
