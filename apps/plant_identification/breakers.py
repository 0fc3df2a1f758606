"""One module-level circuit breaker per provider: a thin pybreaker subclass whose decisions are atomic.

pybreaker's own call path reads the state, decides in Python and writes back in several commands while
holding a process-wide lock around the protected call; across processes that cannot be made atomic
through its storage interface. This subclass keeps pybreaker's interface and semantics (consecutive
failures up to ``fail_max`` open the circuit, ``reset_timeout`` later one trial is let through,
``success_threshold`` trial successes close it, excluded errors never count, listeners hear every
transition, a rejected call raises ``CircuitBreakerError``) and makes each decision in one atomic
operation of ``CircuitStore`` (a Redis script, or in-process while Redis is unreachable), holding no lock
while the protected call runs.
"""

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pybreaker
from django.conf import settings

from apps.plant_identification.circuit_events import CircuitEventListener
from apps.plant_identification.circuits import rules
from apps.plant_identification.circuits.rules import CircuitConfig
from apps.plant_identification.circuits.store import CircuitStore, Clock
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderError
from apps.plant_identification.types import Provider

TRIAL_LEASE_MARGIN = 5.0  # seconds a trial may outlive its provider timeout before its slot is freed


class CircuitRejectedError(pybreaker.CircuitBreakerError):
    """The circuit did not let the call through; ``retry_after`` is None when only staff can reopen it."""

    def __init__(self, provider: str, retry_after: float | None, reason: str) -> None:
        super().__init__(f"{provider} circuit is open ({reason or 'half-open, trial in flight'})")
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True)
class CircuitSnapshot:
    """A circuit as it stands now, as /health/ and the admin report it."""

    provider: Provider
    state: str
    fail_count: int
    fail_max: int
    reset_timeout: float
    retry_after: int | None
    reason: str

    @property
    def callable(self) -> bool:
        """True when a call could be let through (closed, or a trial is due)."""
        return self.state != rules.OPEN


def _is_not_an_outage(exc: BaseException) -> bool:
    """Provider errors that are not outages (caller faults, quota, credentials) never count."""
    return isinstance(exc, ProviderError) and not exc.counts_as_outage


class ProviderCircuitBreaker(pybreaker.CircuitBreaker):
    """The breaker of one provider; thresholds come from ``<PROVIDER>_CIRCUIT_*`` settings at each call."""

    def __init__(self, provider: Provider, *, clock: Clock | None = None) -> None:
        self.provider = provider
        super().__init__(exclude=[_is_not_an_outage], listeners=[CircuitEventListener()], name=provider.value)
        self.store = CircuitStore(provider.value, clock=clock)

    # ------------------------------------------------------------------ configuration
    def _setting(self, suffix: str):
        return getattr(settings, f"{self.provider.name}_{suffix}")

    @property
    def fail_max(self) -> int:
        return self._setting("CIRCUIT_FAIL_MAX")

    @property
    def reset_timeout(self) -> float:
        return self._setting("CIRCUIT_RESET_TIMEOUT")

    @property
    def success_threshold(self) -> int:
        return self._setting("CIRCUIT_SUCCESS_THRESHOLD")

    def config(self) -> CircuitConfig:
        """This breaker's thresholds as they are configured now."""
        return CircuitConfig(
            fail_max=self.fail_max,
            reset_timeout=self.reset_timeout,
            success_threshold=self.success_threshold,
            half_open_max_calls=settings.HALF_OPEN_MAX_CALLS,
            trial_lease=self._setting("TIMEOUT") + TRIAL_LEASE_MARGIN,
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
            return rules.CLOSED
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
        {rules.OPEN: self.open, rules.CLOSED: self.close, rules.HALF_OPEN: self.half_open}[state_str]()

    def snapshot(self) -> CircuitSnapshot:
        """The circuit now: an open circuit whose reset timeout has elapsed reads ``half-open``."""
        stored = self.store.read()
        config = self.config()
        state, wait = rules.snapshot_state(stored.record, config, stored.now)
        return CircuitSnapshot(
            provider=self.provider,
            state=state,
            fail_count=stored.record.fail,
            fail_max=config.fail_max,
            reset_timeout=config.reset_timeout,
            retry_after=math.ceil(wait) if wait is not None and math.isfinite(wait) else None,
            reason=stored.record.reason,
        )

    # ------------------------------------------------------------------ transitions (pybreaker's write API)
    def open(self) -> bool:
        """Open now for ``reset_timeout`` seconds."""
        self._announce(self.store.hold_open(self.reset_timeout, rules.FORCED))
        return True

    def close(self) -> None:
        """Close now and reset the counters."""
        self._announce(self.store.force_close(None))

    def half_open(self) -> None:
        """Let the next call through as a trial."""
        self._announce(self.store.hold_open(0.0, rules.FORCED))

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
    def calling(self) -> Iterator[None]:
        """Run the block under the breaker; raise ``CircuitRejectedError`` when it may not run."""
        config = self.config()
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
            if trial or decision.fail:  # a success in a closed circuit with no failures writes nothing
                self._announce(self.store.success(config, lease, trial=trial))
            for listener in self.listeners:
                listener.success(self)

    def _record_error(self, exc: Exception, config: CircuitConfig, lease: str, trial: bool) -> None:
        hold = getattr(exc, "hold_open", None)
        if hold is not None:  # quota or credentials: not an outage, but nothing to call until then
            self._announce(self.store.hold_open(*hold))
        elif self.is_system_error(exc):
            self._announce(self.store.failure(config, lease, trial=trial))
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
    def protect(self) -> Iterator[None]:
        """Run the block under this breaker unless ``CIRCUIT_BREAKER_ENABLED`` is false."""
        if not settings.CIRCUIT_BREAKER_ENABLED:
            yield
            return
        try:
            with self.calling():
                yield
        except CircuitRejectedError as exc:  # raised only on entry: the block never ran
            raise ProviderCircuitOpenError(self.provider.value, retry_after=exc.retry_after, reason=exc.reason) from exc


BREAKERS: dict[Provider, ProviderCircuitBreaker] = {provider: ProviderCircuitBreaker(provider) for provider in Provider}


def breaker_for(provider: Provider) -> ProviderCircuitBreaker:
    """The process-wide breaker of ``provider``."""
    return BREAKERS[provider]
