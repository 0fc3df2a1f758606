"""The provider registry: one typed description per identification service, built from settings when asked.

Everything that differs between providers lives here: its label, credentials and URL, its timeout, circuit
thresholds, cache TTL and stale max age, bulkhead size, image size, merge weight, decisive score and client
class. The clients, breakers, bulkheads, image renditions, merge and health report all read ``provider_spec()``
or ``provider_registry()``, and nothing else reads a per-provider setting. Adding a provider means one
``Provider`` member, one entry in ``provider_registry()``, its variables in ``backend/settings.py`` and one
client module.
"""

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from apps.plant_identification.clients.base import BaseProviderClient


class Provider(StrEnum):
    """The third-party identification services we call."""

    PLANT_ID = "plant_id"
    PLANTNET = "plantnet"


@dataclass(frozen=True)
class CircuitThresholds:
    """When a provider's circuit opens and closes: consecutive failures (or a failure rate over a window of
    calls, when ``failure_rate`` is set), a slow-call rate over the same window (when ``slow_call_duration`` is
    set), seconds open, trial successes."""

    fail_max: int
    reset_timeout: float
    success_threshold: int
    failure_rate: float | None = None  # percent
    window: int = 100
    min_calls: int = 10
    slow_call_duration: float | None = None  # seconds; a success slower than this is a slow call (None: off)
    slow_call_rate: float = 100.0  # percent of slow calls in the window that opens the circuit


@dataclass(frozen=True)
class ProviderSpec:
    """One provider as configured now."""

    provider: Provider
    label: str  # how people name it, in messages
    env_prefix: str  # of its environment variables, so a message can name the one to fix
    api_key: str
    base_url: str
    timeout: float  # seconds, per read of the upstream call
    circuit: CircuitThresholds
    cache_ttl: int  # seconds an answer is reused for the same images
    stale_max_age: int  # seconds its last answer for the same images may stand in when it cannot answer
    max_concurrent_calls: int  # the bulkhead: calls in flight per worker process
    image_max_side: int  # long side of the JPEG it receives, in pixels
    merge_weight: float  # its share of a merged confidence (merge.py)
    decisive_score: float | None  # a first answer scoring this much goes out without waiting (None: never)
    client_class: str  # dotted path of its BaseProviderClient subclass
    client_options: dict[str, Any] = field(default_factory=dict)  # provider-specific constructor arguments

    @property
    def configured(self) -> bool:
        """A provider with an empty key is never called."""
        return bool(self.api_key)

    @property
    def secret_params(self) -> frozenset[str]:
        """Query parameters that carry a secret (never logged, never part of a cache key)."""
        return import_string(self.client_class).secret_params

    def client(self) -> "BaseProviderClient":
        """A client for this provider, configured as it is now."""
        return import_string(self.client_class)(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout, **self.client_options
        )


@functools.cache
def provider_registry() -> dict[Provider, ProviderSpec]:
    """Every provider, in ``Provider`` order, from the settings as they are now.

    Built once and rebuilt whenever a setting changes (``override_settings``, pytest-django's ``settings``),
    since the request path reads it many times per call. Treat the result as read-only.
    """
    return {
        Provider.PLANT_ID: ProviderSpec(
            provider=Provider.PLANT_ID,
            label="Plant.id",
            env_prefix="PLANT_ID",
            api_key=settings.PLANT_ID_API_KEY,
            base_url=settings.PLANT_ID_API_URL,
            timeout=settings.PLANT_ID_TIMEOUT,
            circuit=CircuitThresholds(
                fail_max=settings.PLANT_ID_CIRCUIT_FAIL_MAX,
                reset_timeout=settings.PLANT_ID_CIRCUIT_RESET_TIMEOUT,
                success_threshold=settings.PLANT_ID_CIRCUIT_SUCCESS_THRESHOLD,
                failure_rate=settings.PLANT_ID_CIRCUIT_FAILURE_RATE,
                window=settings.PLANT_ID_CIRCUIT_WINDOW,
                min_calls=settings.PLANT_ID_CIRCUIT_MIN_CALLS,
                slow_call_duration=settings.PLANT_ID_CIRCUIT_SLOW_CALL_DURATION,
                slow_call_rate=settings.PLANT_ID_CIRCUIT_SLOW_CALL_RATE,
            ),
            cache_ttl=settings.PLANT_ID_CACHE_TTL,
            stale_max_age=settings.PLANT_ID_STALE_MAX_AGE,
            max_concurrent_calls=settings.PLANT_ID_MAX_CONCURRENT_CALLS,
            image_max_side=settings.PLANT_ID_IMAGE_MAX_SIDE,
            merge_weight=0.6,  # its probabilities are calibrated across its list
            decisive_score=settings.PLANT_ID_DECISIVE_SCORE,
            client_class="apps.plant_identification.clients.plant_id.PlantIdClient",
        ),
        Provider.PLANTNET: ProviderSpec(
            provider=Provider.PLANTNET,
            label="Pl@ntNet",
            env_prefix="PLANTNET",
            api_key=settings.PLANTNET_API_KEY,
            base_url=settings.PLANTNET_API_URL,
            timeout=settings.PLANTNET_TIMEOUT,
            circuit=CircuitThresholds(
                fail_max=settings.PLANTNET_CIRCUIT_FAIL_MAX,
                reset_timeout=settings.PLANTNET_CIRCUIT_RESET_TIMEOUT,
                success_threshold=settings.PLANTNET_CIRCUIT_SUCCESS_THRESHOLD,
                failure_rate=settings.PLANTNET_CIRCUIT_FAILURE_RATE,
                window=settings.PLANTNET_CIRCUIT_WINDOW,
                min_calls=settings.PLANTNET_CIRCUIT_MIN_CALLS,
                slow_call_duration=settings.PLANTNET_CIRCUIT_SLOW_CALL_DURATION,
                slow_call_rate=settings.PLANTNET_CIRCUIT_SLOW_CALL_RATE,
            ),
            cache_ttl=settings.PLANTNET_CACHE_TTL,
            stale_max_age=settings.PLANTNET_STALE_MAX_AGE,
            max_concurrent_calls=settings.PLANTNET_MAX_CONCURRENT_CALLS,
            image_max_side=settings.PLANTNET_IMAGE_MAX_SIDE,
            merge_weight=0.4,
            decisive_score=settings.PLANTNET_DECISIVE_SCORE,
            client_class="apps.plant_identification.clients.plantnet.PlantNetClient",
            client_options={"project": settings.PLANTNET_PROJECT},
        ),
    }


@receiver(setting_changed)
def _settings_changed(**_kwargs) -> None:
    provider_registry.cache_clear()


def provider_spec(provider: Provider) -> ProviderSpec:
    """One provider's description, from the settings as they are now."""
    return provider_registry()[provider]


def configured_specs() -> list[ProviderSpec]:
    """The providers that have an API key, in ``Provider`` order."""
    return [spec for spec in provider_registry().values() if spec.configured]
