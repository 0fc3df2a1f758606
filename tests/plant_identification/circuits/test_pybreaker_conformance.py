"""pybreaker 1.4.1's interface, held against its README and source: a test per public method and listener hook,
each run on the shared store (Redis) and on the in-process store a worker uses while Redis is unreachable.

A test named "unlike pybreaker" pins a deliberate difference; README's "Circuit breakers" section says why.
"""

import contextlib

import pybreaker
import pytest

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker
from apps.plant_identification.circuits.events import circuit_events_pending
from apps.plant_identification.exceptions import (
    ProviderCircuitOpenError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderUnavailableError,
)
from apps.plant_identification.providers import Provider

RESET_TIMEOUT = 60.0


class ProviderDown(Exception):
    """Any exception counts as a failure unless excluded."""


class Heard(pybreaker.CircuitBreakerListener):
    """Writes down every hook call, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.before = None  # the latest before_call's (func, args, kwargs)
        self.states = None  # the latest state_change's (old, new)

    def before_call(self, cb, func, *args, **kwargs):
        self.calls.append("before_call")
        self.before = (func, args, kwargs)

    def success(self, cb):
        self.calls.append("success")

    def failure(self, cb, exc):
        self.calls.append(f"failure {type(exc).__name__}")

    def state_change(self, cb, old_state, new_state):
        self.calls.append(f"{old_state.name} -> {new_state.name}")
        self.states = (old_state, new_state)

    def take(self) -> list[str]:
        """What was heard since the last take."""
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture(params=["redis", "in-process"])
def store(request):
    """The store under test: the shared one (the test settings' Redis), or the in-process one."""
    if request.param == "in-process":
        request.getfixturevalue("redis_unreachable")
    return request.param


@pytest.fixture
def heard():
    return Heard()


@pytest.fixture
def build(store, settings, clock, heard):
    """Builds Pl@ntNet breakers on the store under test, with pybreaker's default thresholds but fail_max 2."""
    settings.PLANTNET_CIRCUIT_FAIL_MAX = 2
    settings.PLANTNET_CIRCUIT_RESET_TIMEOUT = RESET_TIMEOUT
    settings.PLANTNET_CIRCUIT_SUCCESS_THRESHOLD = 1

    def build(**options) -> ProviderCircuitBreaker:
        breaker = ProviderCircuitBreaker(Provider.PLANTNET, listeners=[heard], clock=clock, **options)
        breaker.close()  # reaches the store; a closed circuit announces nothing
        assert breaker.store.redis_ok is (store == "redis")
        return breaker

    return build


@pytest.fixture
def breaker(build):
    return build()


def ok():
    return "answer"


def boom():
    raise ProviderDown("provider down")


def raising(exc: Exception):
    def call():
        raise exc

    return call


def fail_through(breaker, times: int = 1) -> list[str]:
    """Make ``times`` failing calls through ``call()``; returns what each raised."""
    raised = []
    for _ in range(times):
        try:
            breaker.call(boom)
        except pybreaker.CircuitBreakerError:
            raised.append("CircuitBreakerError")
        except ProviderDown:
            raised.append("ProviderDown")
    return raised


def pages(fail: bool):
    yield 1
    if fail:
        raise ProviderDown("page 2 lost")
    yield 2


# ---------------------------------------------------------------------- calls
def test_call_passes_the_arguments_and_returns_the_result(breaker):
    assert breaker.call(lambda a, *, b: a + b, 1, b=2) == 3
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_the_call_that_trips_raises_circuit_breaker_error_from_the_original_error(breaker):
    assert fail_through(breaker) == ["ProviderDown"]
    with pytest.raises(pybreaker.CircuitBreakerError, match="Failures threshold reached") as tripped:
        breaker.call(boom)
    assert isinstance(tripped.value.__cause__, ProviderDown)
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(ran.append, "rejected")
    assert ran == []


def test_with_throw_new_error_on_trip_false_the_trip_raises_the_original_error(build):
    breaker = build(throw_new_error_on_trip=False)
    assert fail_through(breaker, 3) == ["ProviderDown", "ProviderDown", "CircuitBreakerError"]
    assert breaker.open() is False  # open() returns throw_new_error_on_trip


def test_calling_guards_a_block_like_call(breaker):
    with breaker.calling():
        pass
    with pytest.raises(ProviderDown), breaker.calling():
        boom()
    with pytest.raises(pybreaker.CircuitBreakerError, match="Failures threshold reached"), breaker.calling():
        boom()
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        ran.append(True)
    assert ran == []


def test_decorating_a_function_guards_each_of_its_calls(breaker):
    @breaker
    def identify(photo):
        raise ProviderDown(photo)

    assert identify.__name__ == "identify"
    with pytest.raises(ProviderDown):
        identify("leaf.jpg")
    assert breaker.fail_counter == 1


def test_a_generator_function_counts_when_its_generator_ends(breaker, heard):
    generator = breaker.call(pages, False)
    assert heard.take() == ["before_call"]  # admitted, not counted yet
    assert list(generator) == [1, 2]
    assert heard.take() == ["success"]

    generator = breaker.call(pages, True)
    assert next(generator) == 1
    assert breaker.fail_counter == 0
    with pytest.raises(ProviderDown):
        next(generator)
    assert breaker.fail_counter == 1
    with pytest.raises(pybreaker.CircuitBreakerError, match="Failures threshold reached"):
        list(breaker.call(pages, True))


def test_unlike_pybreaker_an_interrupted_or_abandoned_call_counts_neither_way(breaker):
    breaker.half_open()
    with pytest.raises(KeyboardInterrupt), breaker.calling():
        raise KeyboardInterrupt
    generator = breaker.call(pages, False)  # the trial slot was freed: this is the next trial
    next(generator)
    generator.close()  # abandoned: pybreaker counts the GeneratorExit as a failure
    assert (breaker.current_state, breaker.fail_counter, breaker.success_counter) == ("half-open", 0, 0)
    assert breaker.call(ok) == "answer"  # and the slot is free again
    assert breaker.current_state == "closed"


def test_unlike_pybreaker_call_refuses_a_coroutine_function(breaker):
    async def identify():
        raise ProviderDown("never awaited")

    with pytest.raises(TypeError, match="calling"):
        breaker.call(identify)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_unlike_pybreaker_call_async_is_refused(breaker, heard):
    ran = []
    with pytest.raises(NotImplementedError, match="call_async"):
        breaker.call_async(ran.append, "called")
    assert ran == []
    assert heard.take() == []


def test_protect_hands_the_service_the_providers_own_error_even_on_the_trip(breaker):
    errors = []
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError) as raised, breaker.protect():
            raise ProviderUnavailableError("plantnet", "HTTP 503", status_code=503)
        errors.append(raised.value)
    assert [(error.status_code, error.circuit_retry_after) for error in errors] == [(503, None), (503, RESET_TIMEOUT)]
    with pytest.raises(ProviderCircuitOpenError) as rejected, breaker.protect():
        pass
    assert (rejected.value.retry_after, rejected.value.reason) == (RESET_TIMEOUT, "failures")


# ---------------------------------------------------------------------- state and counters
def test_fail_counter_counts_consecutive_failures_and_failed_trials(breaker, settings, clock):
    settings.PLANTNET_CIRCUIT_FAIL_MAX = 3
    counts = []
    for call in (boom, boom, ok, boom):
        with contextlib.suppress(ProviderDown):
            breaker.call(call)
        counts.append(breaker.fail_counter)
    assert counts == [1, 2, 0, 1]

    fail_through(breaker, 2)
    assert (breaker.current_state, breaker.fail_counter) == ("open", 3)
    clock.advance(RESET_TIMEOUT)
    assert fail_through(breaker) == ["CircuitBreakerError"]  # the trial failed
    assert (breaker.current_state, breaker.fail_counter) == ("open", 4)

    settings.PLANTNET_CIRCUIT_SUCCESS_THRESHOLD = 2
    clock.advance(RESET_TIMEOUT)
    breaker.call(ok)
    assert (breaker.current_state, breaker.fail_counter) == ("half-open", 0)  # a success resets it


def test_success_counter_counts_trial_successes_up_to_success_threshold(breaker, settings):
    settings.PLANTNET_CIRCUIT_SUCCESS_THRESHOLD = 3
    breaker.half_open()
    seen = []
    for _ in range(3):
        breaker.call(ok)
        seen.append((breaker.current_state, breaker.success_counter))
    assert seen == [("half-open", 1), ("half-open", 2), ("closed", 0)]


def test_current_state_reads_the_stored_state_and_never_moves_by_itself(breaker, settings, clock):
    settings.PLANTNET_CIRCUIT_SUCCESS_THRESHOLD = 2
    assert breaker.current_state == "closed"
    breaker.open()
    clock.advance(RESET_TIMEOUT * 2)
    assert breaker.current_state == "open"  # it moves to half-open inside a call only
    breaker.call(ok)
    assert breaker.current_state == "half-open"


def test_state_is_a_pybreaker_state_object_and_reading_it_notifies_no_one(breaker, heard):
    assert isinstance(breaker.state, pybreaker.CircuitClosedState)
    breaker.state = "open"  # moves the circuit (pybreaker's setter swaps its cached object only)
    assert heard.take() == ["closed -> open"]
    assert isinstance(breaker.state, pybreaker.CircuitOpenState)
    assert breaker.state.name == breaker.current_state == "open"
    assert heard.take() == []


@pytest.mark.parametrize("option", ["fail_max", "reset_timeout", "success_threshold"])
def test_unlike_pybreaker_a_threshold_comes_from_the_registry_and_its_setter_names_the_variable(
    breaker, settings, option
):
    variable = f"PLANTNET_CIRCUIT_{option.upper()}"
    setattr(settings, variable, 7)
    assert getattr(breaker, option) == 7
    with pytest.raises(AttributeError, match=variable):
        setattr(breaker, option, 8)
    assert getattr(breaker, option) == 7


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("fail_max", 10, "set PLANTNET_CIRCUIT_FAIL_MAX"),
        ("reset_timeout", 30, "set PLANTNET_CIRCUIT_RESET_TIMEOUT"),
        ("success_threshold", 3, "set PLANTNET_CIRCUIT_SUCCESS_THRESHOLD"),
        ("state_storage", pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED), "CircuitStore"),
        ("name", "plants", "plantnet"),
    ],
)
def test_unlike_pybreaker_an_option_it_cannot_honour_is_refused(build, option, value, says):
    with pytest.raises(TypeError, match=says):
        build(**{option: value})
    assert build().current_state == "closed"


def test_name_is_the_providers_and_cannot_be_changed(breaker):
    assert breaker.name == "plantnet"
    with pytest.raises(AttributeError, match="recorded under it"):
        breaker.name = "plants"
    breaker.open()
    assert [event.provider for event in circuit_events_pending()] == ["plantnet"]


# ---------------------------------------------------------------------- transitions
def test_open_rejects_calls_until_the_reset_timeout_then_lets_a_trial_through(breaker, heard, clock):
    assert breaker.open() is True  # throw_new_error_on_trip
    assert heard.take() == ["closed -> open"]
    clock.advance(RESET_TIMEOUT - 1)
    ran = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(ran.append, "rejected")
    assert heard.take() == []  # a rejected call is not heard, not even by before_call
    clock.advance(1)
    breaker.call(ran.append, "trial")
    assert ran == ["trial"]
    assert heard.take() == ["open -> half-open", "before_call", "half-open -> closed", "success"]


def test_half_open_makes_the_next_call_a_trial(breaker, heard):
    breaker.open()
    breaker.half_open()
    assert breaker.current_state == "half-open"
    assert heard.take() == ["closed -> open", "open -> half-open"]
    breaker.call(ok)
    assert heard.take() == ["before_call", "half-open -> closed", "success"]

    breaker.half_open()
    with pytest.raises(pybreaker.CircuitBreakerError, match="Trial call failed") as failed:
        breaker.call(boom)
    assert isinstance(failed.value.__cause__, ProviderDown)
    assert heard.take() == ["closed -> half-open", "before_call", "failure ProviderDown", "half-open -> open"]
    assert (breaker.current_state, breaker.fail_counter) == ("open", 1)


def test_close_closes_and_resets_the_counters(breaker, heard):
    fail_through(breaker, 2)
    heard.take()
    breaker.close()
    assert heard.take() == ["open -> closed"]
    assert (breaker.current_state, breaker.fail_counter, breaker.success_counter) == ("closed", 0, 0)
    assert breaker.call(ok) == "answer"


def test_unlike_pybreaker_a_move_to_the_same_state_is_not_announced(breaker, heard):
    breaker.close()
    breaker.open()
    breaker.open()
    breaker.half_open()
    breaker.half_open()
    assert heard.take() == ["closed -> open", "open -> half-open"]


def test_unlike_pybreaker_half_open_lets_at_most_half_open_max_calls_trials_run_at_once(breaker):
    breaker.half_open()

    def trial():
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(ok)  # a second call while the trial runs
        return "trial answered"

    assert breaker.call(trial) == "trial answered"
    assert breaker.current_state == "closed"


def test_unlike_pybreaker_a_call_ending_after_the_circuit_opened_counts_nothing(breaker, heard):
    def opened_meanwhile():
        breaker.open()  # staff, or another worker's trip, while this call runs
        raise ProviderDown("provider down")

    with pytest.raises(ProviderDown):
        breaker.call(opened_meanwhile)
    assert (breaker.current_state, breaker.fail_counter) == ("open", 0)
    assert heard.take() == ["before_call", "closed -> open", "failure ProviderDown"]


# ---------------------------------------------------------------------- what counts
def test_excluded_exceptions_can_be_added_and_removed(breaker):
    breaker.add_excluded_exception(LookupError)
    breaker.add_excluded_exceptions(KeyError, ValueError)
    assert {LookupError, KeyError, ValueError} <= set(breaker.excluded_exceptions)
    assert not breaker.is_system_error(KeyError("sku"))
    assert breaker.is_system_error(ProviderDown("down"))

    breaker.remove_excluded_exception(ValueError)
    fail_through(breaker)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(raising(ValueError("counted again")))


def test_unlike_pybreaker_an_excluded_error_or_caller_fault_counts_neither_way(breaker, heard):
    breaker.add_excluded_exception(LookupError)
    fail_through(breaker)
    heard.take()
    with pytest.raises(KeyError):
        breaker.call(raising(KeyError("sku")))
    assert breaker.fail_counter == 1  # pybreaker counts a success: 0
    assert heard.take() == ["before_call"]  # neither success nor failure

    breaker.half_open()
    with pytest.raises(ProviderRejectedRequestError):
        breaker.call(raising(ProviderRejectedRequestError("plantnet", "HTTP 400", status_code=400)))
    assert breaker.current_state == "half-open"  # pybreaker would close it
    assert breaker.call(ok) == "answer"  # the trial slot was freed
    assert breaker.current_state == "closed"


def test_unlike_pybreaker_a_quota_error_holds_the_circuit_open_and_is_raised_as_itself(breaker, heard, clock):
    quota = ProviderRateLimitedError("plantnet", "HTTP 429", retry_after=3600)
    with pytest.raises(ProviderRateLimitedError) as raised:
        breaker.call(raising(quota))
    assert raised.value.circuit_retry_after == 3600
    assert (breaker.current_state, breaker.fail_counter) == ("open", 0)
    assert heard.take() == ["before_call", "closed -> open"]
    clock.advance(RESET_TIMEOUT)  # the quota's time reopens it, not the reset timeout
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(ok)


# ---------------------------------------------------------------------- listeners
def test_listeners_can_be_added_and_removed(breaker, heard):
    late, later = Heard(), Heard()
    breaker.add_listener(late)
    breaker.add_listeners(later)
    assert breaker.listeners[-3:] == (heard, late, later)
    breaker.remove_listener(late)
    breaker.open()
    assert (heard.calls, late.calls, later.calls) == (["closed -> open"], [], ["closed -> open"])


def test_before_call_hears_each_call_let_through_with_its_arguments(breaker, heard):
    def identify(photo, *, organ):
        return photo, organ

    breaker.call(identify, "leaf.jpg", organ="leaf")
    assert heard.before == (identify, ("leaf.jpg",), {"organ": "leaf"})
    with breaker.calling():
        pass
    func, args, kwargs = heard.before
    assert callable(func)  # a stand-in for the block, as in pybreaker
    assert (args, kwargs) == ((), {})
    breaker.open()
    heard.take()
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(identify, "rejected.jpg", organ="leaf")
    assert heard.take() == []


def test_a_raising_before_call_keeps_the_call_from_running_and_frees_its_trial_slot(breaker, heard):
    class Refusing(pybreaker.CircuitBreakerListener):
        def before_call(self, cb, func, *args, **kwargs):
            raise RuntimeError("not now")

    refusing = Refusing()
    breaker.add_listener(refusing)
    breaker.half_open()
    ran = []
    with pytest.raises(RuntimeError):
        breaker.call(ran.append, "trial")
    breaker.remove_listener(refusing)
    breaker.call(ran.append, "next trial")
    assert ran == ["next trial"]
    assert breaker.current_state == "closed"


def test_success_is_heard_after_the_transition_it_caused(breaker, heard):
    breaker.half_open()
    heard.take()
    breaker.call(ok)
    assert heard.take() == ["before_call", "half-open -> closed", "success"]
    breaker.call(ok)
    assert heard.take() == ["before_call", "success"]


def test_failure_is_heard_before_the_transition_it_caused(breaker, heard):
    fail_through(breaker, 2)
    assert heard.take() == [
        "before_call",
        "failure ProviderDown",
        "before_call",
        "failure ProviderDown",
        "closed -> open",
    ]


def test_state_change_hears_pybreaker_state_objects_and_the_event_is_recorded(breaker, heard):
    breaker.open()
    old, new = heard.states
    assert isinstance(old, pybreaker.CircuitClosedState)
    assert isinstance(new, pybreaker.CircuitOpenState)
    events = circuit_events_pending()
    assert [(e.provider, e.from_state, e.to_state, e.reason) for e in events] == [
        ("plantnet", "closed", "open", "forced")
    ]


def test_unlike_pybreaker_a_raising_listener_cannot_stop_the_trip(breaker, heard):
    class Broken(pybreaker.CircuitBreakerListener):
        def failure(self, cb, exc):
            raise RuntimeError("listener bug")

    breaker.add_listener(Broken())
    for _ in range(2):
        with pytest.raises(RuntimeError):
            breaker.call(boom)
    assert breaker.current_state == "open"  # pybreaker never reaches its open()
    assert heard.take()[-1] == "closed -> open"
