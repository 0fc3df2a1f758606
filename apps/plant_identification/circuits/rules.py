"""The circuit's rules as plain data and functions, used while Redis is unreachable.

``lua.py`` implements the same rules as Redis scripts (the shared path); the two are written separately and
held together by tests that run both against one reference model (``tests/.../circuits/test_state_machine.py``).

A circuit record holds: ``state`` (closed, open, half-open), ``fail`` (consecutive counted failures, as
pybreaker's ``fail_counter``: a success resets it, a failed half-open trial adds one), ``succ`` (trial
successes while half-open), ``opened_at``, ``open_until`` (an explicit reopen time: a quota reset, ``inf``
until staff close it, or None for ``opened_at + reset_timeout``), ``reason`` (failures, slow, quota,
credentials, forced), ``pinned_until`` (failures are not counted before then: a forced close with an
expiry), ``trials`` (lease id -> expiry of the half-open trial calls in flight) and ``window`` (the outcomes
of the latest calls while closed, oldest first: ``ok``, ``failed`` or ``slow``; kept while a rate rule is on) and
``afail`` (failed attempts in a row, a call's retries included: any success or a close resets it; the retry
gate reads it, the rules that open the circuit do not).

Two rules open a closed circuit on a failure: ``fail_max`` consecutive counted failures (the default), or, when
``failure_rate`` is set, that share of failures (percent) among the last ``window`` calls once at least
``min_calls`` of them are in (resilience4j's count-based sliding window). With ``slow_call_duration`` set, a
success that took longer is a slow call, and a slow call opens the circuit (reason ``slow``) once slow calls are
``slow_call_rate`` percent of the same window, at least ``min_calls`` in; a slow half-open trial is a failed
trial. Each rate is checked when a call of its own kind is recorded, so the call that opens the circuit is
evidence for the reason it gives. Opening and closing empty the window.
"""

import math
from dataclasses import dataclass, field

from apps.plant_identification.circuits.states import CircuitState, OpenReason

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
ADMIT, TRIAL, REJECT = "admit", "trial", "reject"  # what admit() decides
OK, FAILED, SLOW = "ok", "failed", "slow"  # a closed call's outcome, as the window keeps it


@dataclass(frozen=True)
class CircuitConfig:
    """Thresholds of one breaker, read from settings for each operation."""

    fail_max: int
    reset_timeout: float
    success_threshold: int
    half_open_max_calls: int
    # Seconds a half-open trial holds its slot before another call may take it: the calling client's timeout
    # plus CIRCUIT_TRIAL_LEASE_MARGIN (breaker.py). The Redis scripts receive the same number.
    trial_lease: float
    failure_rate: float | None = None  # percent; None: the consecutive rule (fail_max)
    window: int = 100  # calls the failure rate is measured over
    min_calls: int = 10  # calls in the window before a rate may open the circuit
    slow_call_duration: float | None = None  # seconds; None: no call counts as slow (the slow-call rule is off)
    slow_call_rate: float = 100.0  # percent of slow calls in the window that opens the circuit

    @property
    def windowed(self) -> bool:
        """True when a rate rule (failures or slow calls) is on: every closed call's outcome is recorded."""
        return self.failure_rate is not None or self.slow_call_duration is not None

    def is_slow(self, duration: float | None) -> bool:
        """True when the slow-call rule is on and a success that took ``duration`` seconds is slower than allowed."""
        return self.slow_call_duration is not None and duration is not None and duration > self.slow_call_duration


@dataclass
class CircuitRecord:
    """A circuit's state, shared by every worker (or local while Redis is unreachable)."""

    state: str = CLOSED
    fail: int = 0
    succ: int = 0
    opened_at: float | None = None
    open_until: float | None = None
    reason: str = ""
    pinned_until: float | None = None
    trials: dict[str, float] = field(default_factory=dict)
    window: list[str] = field(default_factory=list)
    afail: int = 0

    def reopens_at(self, config: CircuitConfig) -> float:
        """When an open circuit lets a trial through (``inf``: only staff can close it)."""
        if self.open_until is not None:
            return self.open_until
        return (self.opened_at or 0.0) + config.reset_timeout


@dataclass(frozen=True)
class Decision:
    """The answer to "may this call go through?", and the transition it caused, if any."""

    kind: str  # ADMIT (closed), TRIAL (half-open, holds a lease) or REJECT
    state: str
    fail: int = 0
    retry_after: float | None = None
    reason: str = ""
    transition: tuple[str, str] | None = None
    afail: int = 0


def admit(record: CircuitRecord, config: CircuitConfig, now: float, lease_id: str) -> Decision:
    """Decide one call; may move open -> half-open and take a trial lease."""
    transition = None
    if record.state == OPEN:
        reopens = record.reopens_at(config)
        if now < reopens:
            return Decision(REJECT, OPEN, record.fail, reopens - now, record.reason, afail=record.afail)
        record.state, record.succ, record.trials = HALF_OPEN, 0, {}
        transition = (OPEN, HALF_OPEN)
    if record.state == HALF_OPEN:
        record.trials = {lease: expiry for lease, expiry in record.trials.items() if expiry > now}
        if len(record.trials) < config.half_open_max_calls:
            record.trials[lease_id] = now + config.trial_lease
            return Decision(TRIAL, HALF_OPEN, record.fail, transition=transition, afail=record.afail)
        wait = max(0.0, min(record.trials.values()) - now)
        return Decision(REJECT, HALF_OPEN, record.fail, wait, record.reason, transition, record.afail)
    return Decision(ADMIT, CLOSED, record.fail, afail=record.afail)


def success(
    record: CircuitRecord, config: CircuitConfig, now: float, lease_id: str, trial: bool, duration: float | None = None
):
    """Record a successful call that took ``duration`` seconds (None: not measured); returns the transition it
    caused, if any."""
    record.afail = 0
    slow = config.is_slow(duration)
    if not trial:
        if record.state == CLOSED:
            record.fail = 0
            if config.windowed and not _pinned(record, now):
                _record_outcome(record, config, SLOW if slow else OK)
                if slow and _rate_reached(record, config, SLOW, config.slow_call_rate):
                    _open(record, now, None, OpenReason.SLOW)
                    return (CLOSED, OPEN)
        return None
    if record.trials.pop(lease_id, None) is None or record.state != HALF_OPEN:
        return None  # a stale trial: its lease expired or the circuit moved on
    if slow:  # a slow trial is a failed trial
        record.fail += 1
        _open(record, now, None, OpenReason.SLOW)
        return (HALF_OPEN, OPEN)
    record.fail, record.succ = 0, record.succ + 1
    if record.succ >= config.success_threshold:
        _close(record)
        return (HALF_OPEN, CLOSED)
    return None


def failure(record: CircuitRecord, config: CircuitConfig, now: float, lease_id: str, trial: bool):
    """Record a counted (transient) failure; returns the transition it caused, if any."""
    if trial:
        if record.trials.pop(lease_id, None) is None or record.state != HALF_OPEN:
            return None
        record.fail += 1
        _open(record, now, None, OpenReason.FAILURES)
        return (HALF_OPEN, OPEN)
    if record.state != CLOSED or _pinned(record, now):
        return None
    record.fail += 1
    if config.windowed:  # a failure is a call in the window whichever rate rule keeps it
        _record_outcome(record, config, FAILED)
    if config.failure_rate is not None:
        trips = _rate_reached(record, config, FAILED, config.failure_rate)
    else:
        trips = record.fail >= config.fail_max
    if trips:
        _open(record, now, None, OpenReason.FAILURES)
        return (CLOSED, OPEN)
    return None


def _pinned(record: CircuitRecord, now: float) -> bool:
    return record.pinned_until is not None and now < record.pinned_until


def _record_outcome(record: CircuitRecord, config: CircuitConfig, outcome: str) -> None:
    record.window.append(outcome)
    del record.window[: max(0, len(record.window) - config.window)]


def _rate_reached(record: CircuitRecord, config: CircuitConfig, outcome: str, percent: float) -> bool:
    calls = len(record.window)
    return calls >= config.min_calls and record.window.count(outcome) * 100 >= percent * calls


def attempt_failed(record: CircuitRecord) -> None:
    """Count one failed attempt of a call, retried or not (``afail``); it opens nothing by itself."""
    record.afail += 1


def release(record: CircuitRecord, lease_id: str) -> None:
    """Free a trial slot without counting the call either way (an ignored outcome)."""
    record.trials.pop(lease_id, None)


def hold_open(record: CircuitRecord, now: float, seconds: float, reason: str):
    """Open for ``seconds`` (``inf``: until staff close it) whatever the state; returns the transition."""
    before = record.state
    _open(record, now, now + seconds if math.isfinite(seconds) else math.inf, reason)
    return (before, OPEN)


def half_open(record: CircuitRecord, reason: str):
    """Half-open now whatever the state: the next calls are trials. Returns the transition."""
    before = record.state
    record.state, record.succ, record.trials, record.reason = HALF_OPEN, 0, {}, reason
    record.pinned_until, record.window = None, []
    return (before, HALF_OPEN)


def force_close(record: CircuitRecord, now: float, pin_seconds: float | None):
    """Close and reset; with ``pin_seconds``, failures are not counted until then. Returns the transition."""
    before = record.state
    _close(record)
    record.pinned_until = now + pin_seconds if pin_seconds else None
    return (before, CLOSED)


def _open(record: CircuitRecord, now: float, until: float | None, reason: str) -> None:
    record.state, record.opened_at, record.open_until, record.reason = OPEN, now, until, reason
    record.succ, record.trials, record.pinned_until, record.window = 0, {}, None, []


def _close(record: CircuitRecord) -> None:
    record.state, record.fail, record.succ, record.trials, record.window = CLOSED, 0, 0, {}, []
    record.afail = 0
    record.opened_at = record.open_until = None
    record.reason = ""


def snapshot_state(record: CircuitRecord, config: CircuitConfig, now: float) -> tuple[str, float | None]:
    """The state as a reader should see it now, and seconds until a trial is allowed (open only)."""
    if record.state == OPEN:
        wait = record.reopens_at(config) - now
        return (HALF_OPEN, None) if wait <= 0 else (OPEN, wait)
    return record.state, None
