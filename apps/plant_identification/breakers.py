"""One module-level pybreaker circuit breaker per provider, thresholds read from settings at call time."""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pybreaker
from django.conf import settings

from apps.plant_identification.circuit_events import CircuitEventListener
from apps.plant_identification.circuit_storage import Clock, SharedCircuitStorage
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderError
from apps.plant_identification.types import Provider


@dataclass(frozen=True)
class CircuitSnapshot:
    """A circuit as it stands now, as /health/ and the admin report it."""

    provider: Provider
    state: str
    fail_count: int
    fail_max: int
    reset_timeout: float
    retry_after: int | None

    @property
    def callable(self) -> bool:
        """True when a call would be let through (closed, or a trial is due)."""
        return self.state != pybreaker.STATE_OPEN


def _is_not_an_outage(exc: BaseException) -> bool:
    """Provider errors that are not outages (caller faults, quota, credentials) never count."""
    return isinstance(exc, ProviderError) and not exc.counts_as_outage


class ProviderCircuitBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker for one provider.

    Differences from stock pybreaker, all at its extension points:
    - thresholds come from ``<PREFIX>_CIRCUIT_*`` settings each time they are read;
    - construction does no storage I/O (the state is synced on first use);
    - noticing a state another worker wrote is not a transition here: it resets no shared
      counter and fires no event (only the worker that makes a transition reports it);
    - ``protect()`` runs the guarded block outside the breaker's lock (``calling()``), so calls
      in one process are not serialized, and raises ``ProviderCircuitOpenError`` when rejected.
    """

    def __init__(self, provider: Provider, *, clock: Clock | None = None) -> None:
        self.provider = provider
        storage = SharedCircuitStorage(provider.value, **({"clock": clock} if clock else {}))
        # Build against an idle in-memory storage so no Redis I/O happens at import time.
        super().__init__(
            exclude=[_is_not_an_outage],
            listeners=[CircuitEventListener()],
            name=provider.value,
            throw_new_error_on_trip=False,
        )
        self._state_storage = storage

    # ------------------------------------------------------------------ configuration
    def _setting(self, suffix: str):
        return getattr(settings, f"{self.provider.name}_CIRCUIT_{suffix}")

    @property
    def fail_max(self) -> int:
        return self._setting("FAIL_MAX")

    @property
    def reset_timeout(self) -> float:
        return self._setting("RESET_TIMEOUT")

    @property
    def success_threshold(self) -> int:
        return self._setting("SUCCESS_THRESHOLD")

    @property
    def storage(self) -> SharedCircuitStorage:
        """The shared state storage (Redis or memory)."""
        return self._state_storage

    @property
    def clock(self) -> Clock:
        """The time source for opening and reset timeouts."""
        return self._state_storage.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._state_storage.clock = clock

    # ------------------------------------------------------------------ state
    @property
    def state(self):
        stored = self.current_state
        if stored != self._state.name:
            self._state = self._create_new_state(stored, prev_state=self._state, notify=False)
        return self._state

    @state.setter
    def state(self, state_str: str) -> None:
        with self._lock:
            self._state = self._create_new_state(state_str, prev_state=self._state, notify=True)

    def retry_after(self) -> float | None:
        """Seconds until an open circuit lets a trial call through; None unless it is open."""
        if self.current_state != pybreaker.STATE_OPEN:
            return None
        opened = self._state_storage.opened_at_seconds
        if opened is None:
            return 0.0
        return max(0.0, opened + self.reset_timeout - self.clock())

    def snapshot(self) -> CircuitSnapshot:
        """The circuit now: an open circuit whose reset timeout has elapsed reads ``half-open``."""
        state = self.current_state
        wait = self.retry_after()
        if state == pybreaker.STATE_OPEN and wait == 0:
            state = pybreaker.STATE_HALF_OPEN
        return CircuitSnapshot(
            provider=self.provider,
            state=state,
            fail_count=self.fail_counter,
            fail_max=self.fail_max,
            reset_timeout=self.reset_timeout,
            retry_after=math.ceil(wait) if wait else None,
        )

    # ------------------------------------------------------------------ calls
    @contextmanager
    def protect(self) -> Iterator[None]:
        """Run the block under this breaker unless ``CIRCUIT_BREAKER_ENABLED`` is false."""
        if not settings.CIRCUIT_BREAKER_ENABLED:
            yield
            return
        try:
            guard = self.calling()
            guard.__enter__()
        except pybreaker.CircuitBreakerError as exc:
            raise ProviderCircuitOpenError(self.provider.value, retry_after=self.retry_after()) from exc
        try:
            yield
        except BaseException as exc:
            if not guard.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            guard.__exit__(None, None, None)


BREAKERS: dict[Provider, ProviderCircuitBreaker] = {provider: ProviderCircuitBreaker(provider) for provider in Provider}


def breaker_for(provider: Provider) -> ProviderCircuitBreaker:
    """The process-wide breaker of ``provider``."""
    return BREAKERS[provider]
