"""Property-based: the Redis scripts and the in-process rules behave like a simple reference model, with and
without the failure-rate and slow-call rules, and count failed attempts in a row alike."""

import uuid

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from apps.plant_identification.circuits import rules
from apps.plant_identification.circuits.rules import CircuitConfig, CircuitRecord
from apps.plant_identification.circuits.states import OpenReason
from apps.plant_identification.circuits.store import CircuitStore
from tests.factories import FakeClock

CONSECUTIVE = CircuitConfig(fail_max=2, reset_timeout=10.0, success_threshold=2, half_open_max_calls=2, trial_lease=4.0)
WINDOWED = CircuitConfig(
    fail_max=2,  # not what opens it: the rate does
    reset_timeout=10.0,
    success_threshold=2,
    half_open_max_calls=2,
    trial_lease=4.0,
    failure_rate=50.0,
    window=4,
    min_calls=3,
)
SLOW_LIMIT = 2.0  # seconds: a success that took longer is a slow call
SLOW_CALLS = CircuitConfig(  # consecutive failures open it; so does a slow-call rate over the window
    fail_max=2,
    reset_timeout=10.0,
    success_threshold=2,
    half_open_max_calls=2,
    trial_lease=4.0,
    window=4,
    min_calls=3,
    slow_call_duration=SLOW_LIMIT,
    slow_call_rate=50.0,
)
BOTH_RATES = CircuitConfig(
    fail_max=2,
    reset_timeout=10.0,
    success_threshold=2,
    half_open_max_calls=2,
    trial_lease=4.0,
    failure_rate=50.0,
    window=5,
    min_calls=3,
    slow_call_duration=SLOW_LIMIT,
    slow_call_rate=60.0,
)
# How long a call took: quick, exactly the limit (not slow: slower than it is), slow.
DURATIONS = st.sampled_from([0.1, SLOW_LIMIT, SLOW_LIMIT + 0.5])


class ReferenceCircuit:
    """The breaker as a person would state it, written plainly and independently of ``rules.py``."""

    def __init__(self, config: CircuitConfig) -> None:
        self.config = config
        self.state, self.failures, self.successes, self.reason = "closed", 0, 0, ""
        self.reopen_at = None
        self.trials: dict[str, float] = {}
        self.pinned_until = None
        self.recent: list[str] = []  # "ok" / "slow" / "failed" of the latest calls while closed, when a rate is set
        self.failed_attempts = 0  # in a row, whatever the state: only a success or a close ends the run

    def admit(self, now: float, lease: str) -> str:
        if self.state == "open":
            if now < self.reopen_at:
                return "reject"
            self.state, self.successes, self.trials = "half-open", 0, {}
        if self.state == "half-open":
            self.trials = {k: v for k, v in self.trials.items() if v > now}
            if len(self.trials) >= self.config.half_open_max_calls:
                return "reject"
            self.trials[lease] = now + self.config.trial_lease
            return "trial"
        return "admit"

    def attempt_fails(self) -> None:
        self.failed_attempts += 1

    def succeed(self, now: float, lease: str, trial: bool, duration: float) -> None:
        self.failed_attempts = 0  # any success, even a stale trial's: the provider answered
        limit = self.config.slow_call_duration
        slow = limit is not None and duration > limit
        if not trial:
            if self.state == "closed":
                self.failures = 0
                if self.keeps_outcomes() and not self.is_pinned(now):
                    self.remember("slow" if slow else "ok")
                    if slow and self.share_reached("slow", self.config.slow_call_rate):
                        self.open(now + self.config.reset_timeout, "slow")
            return
        if self.trials.pop(lease, None) is not None and self.state == "half-open":
            if slow:  # a slow trial fails like any failed trial, for its own reason
                self.failures += 1
                self.open(now + self.config.reset_timeout, "slow")
                return
            self.failures, self.successes = 0, self.successes + 1  # pybreaker resets its fail_counter on success
            if self.successes >= self.config.success_threshold:
                self.close()

    def fail(self, now: float, lease: str, trial: bool) -> None:
        if trial:
            if self.trials.pop(lease, None) is not None and self.state == "half-open":
                self.failures += 1  # pybreaker counts a failed trial too
                self.open(now + self.config.reset_timeout, "failures")
            return
        if self.state != "closed" or self.is_pinned(now):
            return
        self.failures += 1
        if self.keeps_outcomes():  # with only the slow-call rule, failures still count as calls in its window
            self.remember("failed")
        if self.config.failure_rate is None:
            if self.failures >= self.config.fail_max:
                self.open(now + self.config.reset_timeout, "failures")
            return
        if self.share_reached("failed", self.config.failure_rate):
            self.open(now + self.config.reset_timeout, "failures")

    def keeps_outcomes(self) -> bool:
        return self.config.failure_rate is not None or self.config.slow_call_duration is not None

    def share_reached(self, outcome: str, percent: float) -> bool:
        share = 100 * self.recent.count(outcome) / len(self.recent)
        return len(self.recent) >= self.config.min_calls and share >= percent

    def is_pinned(self, now: float) -> bool:
        return self.pinned_until is not None and now < self.pinned_until

    def remember(self, outcome: str) -> None:
        self.recent = [*self.recent, outcome][-self.config.window :]

    def open(self, reopen_at: float, reason: str) -> None:
        self.state, self.reopen_at, self.successes, self.trials, self.pinned_until = "open", reopen_at, 0, {}, None
        self.recent, self.reason = [], reason

    def half_open(self) -> None:
        self.state, self.successes, self.trials, self.pinned_until, self.recent = "half-open", 0, {}, None, []
        self.reason = "forced"

    def close(self, pinned_until=None) -> None:
        self.state, self.failures, self.successes, self.trials = "closed", 0, 0, {}
        self.failed_attempts = 0
        self.reopen_at, self.pinned_until, self.recent, self.reason = None, pinned_until, [], ""


class RulesAdapter:
    """The in-process implementation (what a worker uses while Redis is down)."""

    def __init__(self, clock: FakeClock, config: CircuitConfig) -> None:
        self.record, self.clock, self.config = CircuitRecord(), clock, config

    def admit(self, lease):
        return rules.admit(self.record, self.config, self.clock(), lease).kind

    def succeed(self, lease, trial, duration):
        rules.success(self.record, self.config, self.clock(), lease, trial, duration)

    def fail(self, lease, trial):
        rules.failure(self.record, self.config, self.clock(), lease, trial)

    def attempt_fails(self):
        rules.attempt_failed(self.record)
        return self.record.state, self.record.fail, self.record.afail

    def hold_open(self, seconds):
        rules.hold_open(self.record, self.clock(), seconds, OpenReason.QUOTA)

    def half_open(self):
        rules.half_open(self.record, OpenReason.FORCED)

    def force_close(self, pin):
        rules.force_close(self.record, self.clock(), pin)

    def state(self):
        return self.record.state, self.record.fail, self.record.reason, self.record.afail


class RedisAdapter:
    """The shared implementation: the Lua scripts on a real Redis."""

    def __init__(self, clock: FakeClock, config: CircuitConfig) -> None:
        self.store, self.config = CircuitStore(f"model-{uuid.uuid4().hex}", clock=clock), config

    def admit(self, lease):
        return self.store.admit(self.config, lease).kind

    def succeed(self, lease, trial, duration):
        self.store.success(self.config, lease, trial=trial, duration=duration)

    def fail(self, lease, trial):
        self.store.failure(self.config, lease, trial=trial)

    def attempt_fails(self):
        record = self.store.attempt_failed()
        return record.state, record.fail, record.afail

    def hold_open(self, seconds):
        self.store.hold_open(seconds, OpenReason.QUOTA)

    def half_open(self):
        self.store.half_open(OpenReason.FORCED)

    def force_close(self, pin):
        self.store.force_close(pin)

    def state(self):
        stored = self.store.read()
        assert stored.shared, "the model test must run against Redis"
        return stored.record.state, stored.record.fail, stored.record.reason, stored.record.afail

    def cleanup(self):
        from django_redis import get_redis_connection

        get_redis_connection("circuits").delete(*self.store.keys)


class CircuitMachine(RuleBasedStateMachine):
    """Drives the reference model and both implementations with the same calls and the same clock."""

    config = CONSECUTIVE

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.model = ReferenceCircuit(self.config)
        self.implementations = [RulesAdapter(self.clock, self.config), RedisAdapter(self.clock, self.config)]
        self.in_flight: list[tuple[str, bool]] = []

    def _start(self) -> tuple[str, bool] | None:
        lease = uuid.uuid4().hex
        expected = self.model.admit(self.clock(), lease)
        for implementation in self.implementations:
            assert implementation.admit(lease) == expected
        return None if expected == "reject" else (lease, expected == "trial")

    def _end(self, lease: str, trial: bool, succeeded: bool, duration: float) -> None:
        if succeeded:
            self.model.succeed(self.clock(), lease, trial, duration)
        else:
            self.model.fail(self.clock(), lease, trial)
        for implementation in self.implementations:
            if succeeded:
                implementation.succeed(lease, trial, duration)
            else:
                implementation.fail(lease, trial)

    @rule(succeeded=st.booleans(), duration=DURATIONS)
    def call(self, succeeded, duration):
        """A whole call: admitted or rejected, then (if it ran) its outcome and how long it took."""
        started = self._start()
        if started:
            self._end(*started, succeeded, duration)

    @rule()
    def call_starts(self):
        """A call that is admitted (or not) and keeps running while others come and go."""
        started = self._start()
        if started:
            self.in_flight.append(started)

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(0, 20), succeeded=st.booleans(), duration=DURATIONS)
    def call_ends(self, index, succeeded, duration):
        self._end(*self.in_flight.pop(index % len(self.in_flight)), succeeded, duration)

    @rule()
    def attempt_fails(self):
        """An attempt fails (a call's first, to be retried, or its last): only the run of them counts it."""
        self.model.attempt_fails()
        for implementation in self.implementations:
            assert implementation.attempt_fails() == (self.model.state, self.model.failures, self.model.failed_attempts)

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 10.0, 30.0]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    @rule(
        action=st.sampled_from(["hold 5", "hold 60", "hold inf", "half-open", "close", "close pinned"]),
        now=st.integers(0, 4),
    )
    def quota_or_staff(self, action, now):
        """Now and then (one draw in five): a quota holds it open, or staff half-open or close it."""
        if now:
            return
        if action == "half-open":
            self.model.half_open()
            for implementation in self.implementations:
                implementation.half_open()
        elif action.startswith("hold"):
            seconds = float(action.split()[1])
            self.model.open(self.clock() + seconds, "quota")
            for implementation in self.implementations:
                implementation.hold_open(seconds)
        else:
            pin = 20.0 if action == "close pinned" else None
            self.model.close(self.clock() + pin if pin else None)
            for implementation in self.implementations:
                implementation.force_close(pin)

    @invariant()
    def same_state(self):
        expected = (self.model.state, self.model.failures, self.model.reason, self.model.failed_attempts)
        for implementation in self.implementations:
            assert implementation.state() == expected

    @invariant()
    def trials_never_exceed_the_limit(self):
        running = [lease for lease, trial in self.in_flight if trial and lease in self.model.trials]
        assert len(running) <= self.config.half_open_max_calls

    def teardown(self):
        self.implementations[1].cleanup()


class WindowedCircuitMachine(CircuitMachine):
    """The same, with the failure-rate rule opening the circuit."""

    config = WINDOWED


class SlowCallCircuitMachine(CircuitMachine):
    """The consecutive rule, with slow calls opening the circuit too."""

    config = SLOW_CALLS


class BothRatesCircuitMachine(CircuitMachine):
    """The failure-rate and the slow-call rules over one window."""

    config = BOTH_RATES


@pytest.mark.parametrize(
    "machine",
    [
        pytest.param(CircuitMachine, id="consecutive"),
        pytest.param(WindowedCircuitMachine, id="failure-rate"),
        pytest.param(SlowCallCircuitMachine, id="slow-call", marks=pytest.mark.slow),  # about 5 s each
        pytest.param(BothRatesCircuitMachine, id="failure-rate-and-slow-call", marks=pytest.mark.slow),
    ],
)
def test_implementations_follow_the_reference_model(machine):
    machine.TestCase.settings = hypothesis_settings(
        max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine.TestCase().runTest()
