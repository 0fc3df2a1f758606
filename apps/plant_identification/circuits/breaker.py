"""One module-level circuit breaker per provider: a pybreaker subclass whose decisions are atomic.

pybreaker's own call path reads the state, decides in Python and writes back in several commands while
holding a process-wide lock around the protected call; across processes that cannot be made atomic
through its storage interface. This subclass keeps pybreaker's state machine (consecutive failures up
to ``fail_max`` open the circuit, ``reset_timeout`` later one trial is let through, ``success_threshold``
trial successes close it, excluded errors never count, listeners hear transitions, a rejected call raises
a ``CircuitBreakerError``) and its read and write methods, but not every detail of stock pybreaker's
behaviour. It makes each decision in one atomic operation of ``CircuitStore`` (a Redis script, or
in-process while Redis is unreachable), holding no lock while the protected call runs.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pybreaker
from django.conf import settings

from apps.plant_identification.circuits import rules
from apps.plant_identification.circuits.events import CircuitEventListener
from apps.plant_identification.circuits.rules import CircuitConfig
from apps.plant_identification.circuits.snapshots import CircuitSnapshot, circuit_snapshot
from apps.plant_identification.circuits.states import CircuitState, OpenReason
from apps.plant_identification.circuits.store import CircuitStore, Clock
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderError
from apps.plant_identification.providers import Provider, provider_spec


class CircuitRejectedError(pybreaker.CircuitBreakerError):
    """The circuit did not let the call through; ``retry_after`` is None when only staff can reopen it."""

    def __init__(self, provider: str, retry_after: float | None, reason: str) -> None:
        super().__init__(f"{provider} circuit is open ({reason or 'half-open, trial in flight'})")
        self.retry_after = retry_after
        self.reason = reason


def _is_not_an_outage(exc: BaseException) -> bool:
    """Provider errors that are not outages (caller faults, quota, credentials) never count."""
    return isinstance(exc, ProviderError) and not exc.counts_as_outage


class ProviderCircuitBreaker(pybreaker.CircuitBreaker):
    """The breaker of one provider; its thresholds come from the provider registry at each call."""

    def __init__(self, provider: Provider, *, clock: Clock | None = None) -> None:
        self.provider = provider
        super().__init__(exclude=[_is_not_an_outage], listeners=[CircuitEventListener()], name=provider.value)
        self.store = CircuitStore(provider.value, clock=clock)

    # ------------------------------------------------------------------ configuration
    @property
    def fail_max(self) -> int:
        return provider_spec(self.provider).circuit.fail_max

    @property
    def reset_timeout(self) -> float:
        return provider_spec(self.provider).circuit.reset_timeout

    @property
    def success_threshold(self) -> int:
        return provider_spec(self.provider).circuit.success_threshold

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
        )

    @property
    def clock(self) -> Clock | None:
        """The time source: None for the Redis server clock (or time.time() without Redis)."""
        return self.store.clock

    @clock.setter
    def clock(self, clock: Clock | None) -> None:
        self.store.clock = clock

    # ------------------------------------------------------------------ state (pybreaker's read API)
    @property
    def current_state(self) -> str:
        if getattr(self, "store", None) is None:  # pybreaker's __init__ asks before the store exists
            return CircuitState.CLOSED
        return self.store.read().record.state

    @property
    def fail_counter(self) -> int:
        return self.store.read().record.fail

    @property
    def success_counter(self) -> int:
        return self.store.read().record.succ

    @property
    def state(self):
        return self._create_new_state(self.current_state)

    @state.setter
    def state(self, state_str: str) -> None:
        {CircuitState.OPEN: self.open, CircuitState.CLOSED: self.close, CircuitState.HALF_OPEN: self.half_open}[
            state_str
        ]()

    def snapshot(self) -> CircuitSnapshot:
        """The circuit now: an open circuit whose reset timeout has elapsed reads ``half-open``."""
        stored = self.store.read()
        return circuit_snapshot(self.provider, stored.record, self.config(), stored.now)

    # ------------------------------------------------------------------ transitions (pybreaker's write API)
    def open(self) -> bool:
        """Open now for ``reset_timeout`` seconds."""
        self._announce(self.store.hold_open(self.reset_timeout, OpenReason.FORCED))
        return True

    def close(self) -> None:
        """Close now and reset the counters."""
        self._announce(self.store.force_close(None))

    def half_open(self) -> None:
        """Let the next call through as a trial."""
        self._announce(self.store.hold_open(0.0, OpenReason.FORCED))

    def hold_open(self, seconds: float, reason: str) -> None:
        """Open for ``seconds`` (``math.inf``: until staff close it), e.g. for a quota or bad credentials."""
        self._announce(self.store.hold_open(seconds, reason))

    def pin_closed(self, seconds: float | None) -> None:
        """Close now; with ``seconds``, failures are not counted until then (a forced close with an expiry)."""
        self._announce(self.store.force_close(seconds))

    # ------------------------------------------------------------------ calls
    def call(self, func, *args, **kwargs):
        """Call ``func`` under the breaker (no lock is held while it runs)."""
        with self.calling():
            return func(*args, **kwargs)

    @contextmanager
    def calling(self, *, call_timeout: float | None = None) -> Iterator[None]:
        """Run the block under the breaker; raise ``CircuitRejectedError`` when it may not run.

        A ``ProviderError`` raised by the block whose failure opened or held the circuit leaves with
        ``circuit_retry_after`` set: the seconds until the provider may be called again (``inf``: staff).
        """
        config = self.config(call_timeout)
        lease = uuid.uuid4().hex
        decision = self.store.admit(config, lease)
        self._announce(decision.transition)
        if decision.kind == rules.REJECT:
            raise CircuitRejectedError(self.provider.value, decision.retry_after, decision.reason)
        trial = decision.kind == rules.TRIAL
        try:
            yield
        except Exception as exc:
            self._record_error(exc, config, lease, trial)
            raise
        except BaseException:
            if trial:
                self.store.release(lease)
            raise
        else:
            # A success in a closed circuit with no failures writes nothing, unless the failure rate is measured.
            if trial or decision.fail or config.windowed:
                self._announce(self.store.success(config, lease, trial=trial))
            for listener in self.listeners:
                listener.success(self)

    def _record_error(self, exc: Exception, config: CircuitConfig, lease: str, trial: bool) -> None:
        hold = getattr(exc, "hold_open", None)
        if hold is not None:  # quota or credentials: not an outage, but nothing to call until then
            self._announce(self.store.hold_open(*hold))
            _note_retry_after(exc, hold[0])
        elif self.is_system_error(exc):
            transition = self.store.failure(config, lease, trial=trial)
            self._announce(transition)
            if transition is not None and transition[1] == CircuitState.OPEN:
                _note_retry_after(exc, config.reset_timeout)
            for listener in self.listeners:
                listener.failure(self, exc)
        elif trial:
            self.store.release(lease)

    def _announce(self, transition: tuple[str, str] | None) -> None:
        if transition is None or transition[0] == transition[1]:  # e.g. a quota hold on an open circuit
            return
        old, new = (self._create_new_state(name) for name in transition)
        for listener in self.listeners:
            listener.state_change(self, old, new)

    # ------------------------------------------------------------------ the service's entry point
    @contextmanager
    def protect(self, *, call_timeout: float | None = None) -> Iterator[None]:
        """Run the block under this breaker unless ``CIRCUIT_BREAKER_ENABLED`` is false."""
        if not settings.CIRCUIT_BREAKER_ENABLED:
            yield
            return
        try:
            with self.calling(call_timeout=call_timeout):
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
