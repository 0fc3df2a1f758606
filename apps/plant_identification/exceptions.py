"""Domain errors: every way a provider call can fail, classified (imports neither DRF nor pybreaker)."""

import math

from apps.plant_identification.circuits.states import OpenReason


class PlantIdentificationError(Exception):
    """Root of every plant identification error."""


class ProviderError(PlantIdentificationError):
    """A provider call failed; ``counts_as_outage`` tells the breaker whether to count it.

    ``retryable`` says the failure cost nothing and may not recur (clients/retries.py); ``attempts`` is how
    many requests the call made. ``circuit_retry_after`` is set by the breaker when this very failure opened
    or held the circuit: the seconds until the provider may be called again (``math.inf``: not before staff
    act). ``stale_answer`` is set by the client when an earlier answer for the same request may stand in.
    """

    counts_as_outage = False
    circuit_retry_after: float | None = None
    stale_answer = None  # the provider's last answer for the same request, young enough to stand in

    def __init__(self, provider: str, message: str, *, status_code: int | None = None, retryable: bool = False) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status_code = status_code
        self.message = message
        self.retryable = retryable
        self.attempts = 1


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within its timeout."""

    counts_as_outage = True


class ProviderUnavailableError(ProviderError):
    """The provider could not be reached or answered with a 5xx."""

    counts_as_outage = True


class ProviderResponseError(ProviderError):
    """The provider answered 2xx with a body we cannot parse."""

    counts_as_outage = True


class ProviderRateLimitedError(ProviderError):
    """The provider refused for quota or credits (429).

    ``retry_after`` is when the quota comes back, in seconds (``math.inf``: only a top-up and staff can
    reopen it). The breaker holds the circuit open that long: it is not an outage and is not probed.
    """

    def __init__(self, provider: str, message: str, *, status_code: int | None = 429, retry_after: float) -> None:
        super().__init__(provider, message, status_code=status_code)
        self.retry_after = retry_after
        self.hold_open = (retry_after, OpenReason.QUOTA)


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (401/403): a configuration fault; the circuit stays open until
    staff close it."""

    hold_open = (math.inf, OpenReason.CREDENTIALS)


class ProviderRejectedRequestError(ProviderError):
    """The provider refused the request as invalid (400/413/415): the caller's input."""


class ProviderCircuitOpenError(ProviderError):
    """The provider's circuit is open; ``retry_after`` is the seconds until a trial is allowed (None: until
    staff close it) and ``reason`` why it opened (failures, quota, credentials, forced)."""

    def __init__(self, provider: str, *, retry_after: float | None = None, reason: str = "") -> None:
        super().__init__(provider, f"circuit open ({reason})" if reason else "circuit open")
        self.retry_after = retry_after
        self.reason = reason
        self.attempts = 0  # turned away before any request


class NoProviderAvailableError(PlantIdentificationError):
    """No provider could answer; carries every provider's outcome and the earliest retry time."""

    def __init__(self, message: str, outcomes: tuple, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.outcomes = outcomes
        self.retry_after = retry_after
