"""One module-level circuit breaker per provider: a pybreaker subclass whose decisions are atomic.

pybreaker's own call path reads the state, decides in Python and writes back in several commands while
holding a process-wide lock around the protected call; across processes that cannot be made atomic
through its storage interface. This subclass keeps pybreaker 1.4.1's interface and state machine, making
each decision in one atomic operation of ``CircuitStore`` (a Redis script, or in-process while Redis is
unreachable) and holding no lock while the protected call runs. Where it differs from pybreaker on purpose,
README's "Circuit breakers" section says why; an option it cannot honour is refused, never ignored.
"""

import inspect
import threading
import time
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pybreaker
from django.conf import settings

from apps.plant_identification.circuits import rules
from apps.plant_identification.circuits.events import CircuitEventListener
from apps.plant_identification.circuits.rules import CircuitConfig, CircuitRecord
from apps.plant_identification.circuits.snapshots import CircuitSnapshot, circuit_snapshot
from apps.plant_identification.circuits.states import CircuitState, OpenReason
from apps.plant_identification.circuits.store import CircuitStore, Clock
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderError
from apps.plant_identification.providers import Provider, provider_spec

THRESHOLD_VARIABLES = {
    "fail_max": "FAIL_MAX",
    "reset_timeout": "RESET_TIMEOUT",
    "success_threshold": "SUCCESS_THRESHOLD",
}
TRIPPED = "Failures threshold reached, circuit breaker opened"  # pybreaker's messages
TRIAL_FAILED = "Trial call failed, circuit breaker opened"


class CircuitRejectedError(pybreaker.CircuitBreakerError):
    """The circuit did not let the call through; ``retry_after`` is None when only staff can reopen it."""

    def __init__(self, provider: str, retry_after: float | None, reason: str) -> None:
        super().__init__(f"{provider} circuit is open ({reason or 'half-open, trial in flight'})")
        self.retry_after = retry_after
        self.reason = reason


def _is_not_an_outage(exc: BaseException) -> bool:
    """Provider errors that are not outages (caller faults, quota, credentials) never count."""
    return isinstance(exc, ProviderError) and not exc.counts_as_outage


def _with_block() -> None:
    """What ``before_call`` hears as ``func`` for a ``with breaker.calling():`` block (pybreaker passes a stand-in)."""


class _NoPybreakerStorage:
    """Fills pybreaker's storage slot, so that an inherited code path reaching it fails instead of diverging."""

    def __getattr__(self, name: str):
        raise NotImplementedError(f"ProviderCircuitBreaker keeps its state in CircuitStore, not here ({name})")

    def __setattr__(self, name: str, value) -> None:
        self.__getattr__(name)


@dataclass(frozen=True)
class _Admission:
    """A call let through: its thresholds, its trial lease if it is a trial, the failures counted at admission,
    and when it started (on the breaker's duration clock)."""

    config: CircuitConfig
    lease: str
    trial: bool
    fail: int
    started: float


class ProviderCircuitBreaker(pybreaker.CircuitBreaker):
    """The breaker of one provider; its thresholds come from the provider registry at each call."""

    def __init__(
        self,
        provider: Provider,
        *,
        exclude=(),
        listeners=(),
        throw_new_error_on_trip: bool = True,
        clock: Clock | None = None,
        **pybreaker_options,
    ) -> None:
        """``exclude``, ``listeners`` and ``throw_new_error_on_trip`` as in pybreaker; its other options are refused."""
        self.provider = provider
        for option in pybreaker_options:
            raise TypeError(self._refusal(option))
        super().__init__(
            exclude=[_is_not_an_outage, *exclude],
            listeners=[CircuitEventListener(), *listeners],
            state_storage=_NoPybreakerStorage(),
            name=provider.value,
            throw_new_error_on_trip=throw_new_error_on_trip,
        )
        self.store = CircuitStore(provider.value, clock=clock)
        self._this_call = threading.local()  # .failed_attempt: the thread's call under way had a failed attempt

    def _refusal(self, option: str) -> str:
        if option in THRESHOLD_VARIABLES:
            variable = f"{provider_spec(self.provider).env_prefix}_CIRCUIT_{THRESHOLD_VARIABLES[option]}"
            return f"{option} comes from the provider registry at each call: set {variable} instead"
        if option == "state_storage":
            return "state_storage is not used: the state lives in CircuitStore (Redis, in-process while unreachable)"
        if option == "name":
            return f"name is the provider's ({self.provider.value}): its transitions are recorded under it"
        return f"unexpected keyword argument {option!r}"

    # ------------------------------------------------------------------ configuration
    @property
    def fail_max(self) -> int:
        return provider_spec(self.provider).circuit.fail_max

    @fail_max.setter
    def fail_max(self, number: int) -> None:
        raise AttributeError(self._refusal("fail_max"))

    @property
    def reset_timeout(self) -> float:
        return provider_spec(self.provider).circuit.reset_timeout

    @reset_timeout.setter
    def reset_timeout(self, timeout: float) -> None:
        raise AttributeError(self._refusal("reset_timeout"))

    @property
    def success_threshold(self) -> int:
        return provider_spec(self.provider).circuit.success_threshold

    @success_threshold.setter
    def success_threshold(self, threshold: int) -> None:
        raise AttributeError(self._refusal("success_threshold"))

    @property
    def name(self) -> str:
        return self.provider.value

    @name.setter
    def name(self, name: str) -> None:
        raise AttributeError(self._refusal("name"))

    def config(self, call_timeout: float | None = None) -> CircuitConfig:
        """This breaker's thresholds as configured now; a trial's lease covers ``call_timeout`` (default: the
        provider's configured timeout) plus ``CIRCUIT_TRIAL_LEASE_MARGIN``."""
        spec = provider_spec(self.provider)
        return CircuitConfig(
            fail_max=spec.circuit.fail_max,
            reset_timeout=spec.circuit.reset_timeout,
            success_threshold=spec.circuit.success_threshold,
            half_open_max_calls=settings.HALF_OPEN_MAX_CALLS,
            trial_lease=(spec.timeout if call_timeout is None else call_timeout) + settings.CIRCUIT_TRIAL_LEASE_MARGIN,
            failure_rate=spec.circuit.failure_rate,
            window=spec.circuit.window,
            min_calls=spec.circuit.min_calls,
            slow_call_duration=spec.circuit.slow_call_duration,
            slow_call_rate=spec.circuit.slow_call_rate,
        )

    @property
    def clock(self) -> Clock | None:
        """The time source: None for the Redis server clock (or time.time() without Redis)."""
        return self.store.clock

    @clock.setter
    def clock(self, clock: Clock | None) -> None:
        self.store.clock = clock

    def _elapsed_since(self, started: float | None = None) -> float:
        """Seconds on the duration clock: the injected clock if any (tests move it), else ``time.monotonic()``;
        with ``started``, the seconds since then."""
        now = self.store.clock() if self.store.clock else time.monotonic()
        return now if started is None else now - started

    # ------------------------------------------------------------------ state (pybreaker's read API)
    @property
    def current_state(self) -> str:
        if getattr(self, "store", None) is None:  # pybreaker's __init__ asks before the store exists
            return CircuitState.CLOSED
        return self.record().state

    @property
    def fail_counter(self) -> int:
        return self.record().fail

    @property
    def success_counter(self) -> int:
        return self.record().succ

    def record(self) -> CircuitRecord:
        """The circuit's record as stored now (its state and counters, in one read; shared by the fleet)."""
        return self.store.read().record

    def attempt_failed(self) -> CircuitRecord:
        """Count, fleet-wide, a failed attempt of a call still under the breaker (it may be retried: the call's own
        outcome is counted when it ends); return the record's state, ``fail`` and ``afail`` (failed attempts in a
        row, which a success resets) as they stand after it. The call's own success, if it comes, then resets the
        run whatever this worker has heard since. Opens nothing: not part of pybreaker."""
        self._this_call.failed_attempt = True
        return self.store.attempt_failed()

    @property
    def state(self) -> pybreaker.CircuitBreakerState:
        """The state as a pybreaker state object; reading it never notifies listeners, even of another worker's
        transition (only the worker that makes a transition announces it)."""
        return self._create_new_state(self.current_state)

    @state.setter
    def state(self, state_str: str) -> None:
        {CircuitState.OPEN: self.open, CircuitState.CLOSED: self.close, CircuitState.HALF_OPEN: self.half_open}[
            state_str
        ]()

    def snapshot(self) -> CircuitSnapshot:
        """The circuit now, with its recent latency: an open circuit whose reset timeout has elapsed reads
        ``half-open``."""
        stored = self.store.read(latency=True)
        return circuit_snapshot(self.provider, stored.record, self.config(), stored.now, stored.latency)

    # ------------------------------------------------------------------ transitions (pybreaker's write API)
    def open(self) -> bool:
        """Open now for ``reset_timeout`` seconds; returns ``throw_new_error_on_trip``, as pybreaker does."""
        self._announce(self.store.hold_open(self.reset_timeout, OpenReason.FORCED))
        return self._throw_new_error_on_trip

    def close(self) -> None:
        """Close now and reset the counters."""
        self._announce(self.store.force_close(None))

    def half_open(self) -> None:
        """Half-open now: the next calls (up to ``HALF_OPEN_MAX_CALLS`` at once) are trials."""
        self._announce(self.store.half_open(OpenReason.FORCED))

    def hold_open(self, seconds: float, reason: str) -> None:
        """Open for ``seconds`` (``math.inf``: until staff close it), e.g. for a quota or bad credentials."""
        self._announce(self.store.hold_open(seconds, reason))

    def pin_closed(self, seconds: float | None) -> None:
        """Close now; with ``seconds``, failures are not counted until then (a forced close with an expiry)."""
        self._announce(self.store.force_close(seconds))

    # ------------------------------------------------------------------ calls
    def call(self, func, *args, **kwargs):
        """Call ``func`` under the breaker (no lock is held while it runs); a generator counts when it ends."""
        admission = self._admit(func, args, kwargs, None)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._record_error(admission, exc, self._throw_new_error_on_trip)
            raise
        if isinstance(result, types.GeneratorType):
            return self._generator_call(admission, result)
        if inspect.iscoroutine(result):  # pybreaker would count a success before it ran
            result.close()
            self._release(admission)
            raise TypeError(f"call() cannot see how {func!r} ends: await it inside `with breaker.calling():`")
        self._record_success(admission)
        return result

    def calling(self, *, call_timeout: float | None = None):
        """Run the block under the breaker; raise ``CircuitRejectedError`` when it may not run.

        A ``ProviderError`` raised by the block whose failure opened or held the circuit leaves with
        ``circuit_retry_after`` set: the seconds until the provider may be called again (``inf``: staff).
        """
        return self._guarded(call_timeout, self._throw_new_error_on_trip)

    def call_async(self, func, *args, **kwargs):
        """Refused: pybreaker's Tornado path would bypass the shared circuit store."""
        raise NotImplementedError(
            "ProviderCircuitBreaker does not support call_async (Tornado): await inside `with breaker.calling():`"
        )

    @contextmanager
    def _guarded(self, call_timeout: float | None, throw_new_error: bool) -> Iterator[None]:
        admission = self._admit(_with_block, (), {}, call_timeout)
        try:
            yield
        except BaseException as exc:
            self._record_error(admission, exc, throw_new_error)
            raise
        self._record_success(admission)

    def _generator_call(self, admission: _Admission, generator):
        try:
            result = yield from generator
        except BaseException as exc:
            self._record_error(admission, exc, self._throw_new_error_on_trip)
            raise
        self._record_success(admission)
        return result

    def _admit(self, func, args, kwargs, call_timeout: float | None) -> _Admission:
        """Let the call through (``before_call`` listeners hear of it) or raise ``CircuitRejectedError``."""
        config = self.config(call_timeout)
        lease = uuid.uuid4().hex
        decision = self.store.admit(config, lease)
        self._announce(decision.transition)
        if decision.kind == rules.REJECT:
            raise CircuitRejectedError(self.provider.value, decision.retry_after, decision.reason)
        admission = _Admission(config, lease, decision.kind == rules.TRIAL, decision.fail, self._elapsed_since())
        self._this_call.failed_attempt = False
        try:
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
        except BaseException:
            self._release(admission)  # the call will not run
            raise
        return admission

    def _record_success(self, admission: _Admission) -> None:
        duration = self._elapsed_since(admission.started)
        # A success in a closed circuit with no failures needs no script of its own unless a rate rule measures
        # it; its duration then waits for this worker's next script call. "No failures" is as this worker knows
        # now, not only as it was when the call was let through: a failure counted while the call was out (by a
        # concurrent call, or one another worker reported to this one's latest script) is reset by its success,
        # as pybreaker's success resets fail_counter. A call that had a failed attempt (retried) always runs it:
        # its own failure is in the fleet's run of failed attempts, whatever a concurrent success left in the
        # worker's copy.
        own_failure, self._this_call.failed_attempt = getattr(self._this_call, "failed_attempt", False), False
        counted = admission.fail or own_failure or self.store.failures_seen()
        if admission.trial or admission.config.windowed or counted:
            self._announce(
                self.store.success(admission.config, admission.lease, trial=admission.trial, duration=duration)
            )
        else:
            self.store.note_latency(duration)
        for listener in self.listeners:
            listener.success(self)

    def _record_error(self, admission: _Admission, exc: BaseException, throw_new_error: bool) -> None:
        """Count ``exc`` if it is an outage; when it opened the circuit and ``throw_new_error`` is set, raise
        pybreaker's ``CircuitBreakerError`` from it."""
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit, GeneratorExit: not the provider's doing
            self._release(admission)
            return
        hold = getattr(exc, "hold_open", None)
        if hold is not None:  # quota or credentials: not an outage, but nothing to call until then
            self._announce(self.store.hold_open(*hold))
            _note_retry_after(exc, hold[0])
            return
        if not self.is_system_error(exc):  # caller faults and other excluded errors count neither way
            self._release(admission)
            return
        transition = self.store.failure(admission.config, admission.lease, trial=admission.trial)
        tripped = transition is not None and transition[1] == CircuitState.OPEN
        if tripped:
            _note_retry_after(exc, admission.config.reset_timeout)
        try:
            for listener in self.listeners:
                listener.failure(self, exc)
        finally:  # the failure is stored whatever a listener does: its transition is announced too
            self._announce(transition)
        if tripped and throw_new_error:
            raise pybreaker.CircuitBreakerError(TRIAL_FAILED if admission.trial else TRIPPED) from exc

    def _release(self, admission: _Admission) -> None:
        """Free a trial slot without counting the call either way."""
        if admission.trial:
            self.store.release(admission.lease)

    def _announce(self, transition: tuple[str, str] | None) -> None:
        if transition is None or transition[0] == transition[1]:  # e.g. a quota hold on an open circuit
            return
        old, new = (self._create_new_state(name) for name in transition)
        for listener in self.listeners:
            listener.state_change(self, old, new)

    # ------------------------------------------------------------------ the service's entry point
    @contextmanager
    def protect(self, *, call_timeout: float | None = None) -> Iterator[None]:
        """Run the block under this breaker unless ``CIRCUIT_BREAKER_ENABLED`` is false.

        Unlike ``calling()``, a failure reaches the service as the provider's own error even when it opened
        the circuit (``throw_new_error_on_trip=False``), and a rejection as ``ProviderCircuitOpenError``.
        """
        if not settings.CIRCUIT_BREAKER_ENABLED:
            yield
            return
        try:
            with self._guarded(call_timeout, throw_new_error=False):
                yield
        except CircuitRejectedError as exc:  # raised only on entry: the block never ran
            raise ProviderCircuitOpenError(self.provider.value, retry_after=exc.retry_after, reason=exc.reason) from exc


def _note_retry_after(exc: Exception, seconds: float) -> None:
    if isinstance(exc, ProviderError):
        exc.circuit_retry_after = seconds


BREAKERS: dict[Provider, ProviderCircuitBreaker] = {provider: ProviderCircuitBreaker(provider) for provider in Provider}


def breaker_for(provider: Provider) -> ProviderCircuitBreaker:
    """The process-wide breaker of ``provider``."""
    return BREAKERS[provider]


def circuit_snapshot_list() -> list[CircuitSnapshot]:
    """Every provider's circuit as it stands now."""
    return [breaker.snapshot() for breaker in BREAKERS.values()]
