"""Value types shared by clients, breakers and services: inputs, answers and outcomes."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from apps.plant_identification.providers import Provider


class Organ(StrEnum):
    """Plant organ shown in a photo, as Pl@ntNet names them."""

    LEAF = "leaf"
    FLOWER = "flower"
    FRUIT = "fruit"
    BARK = "bark"
    HABIT = "habit"
    OTHER = "other"
    AUTO = "auto"


class ProviderStatus(StrEnum):
    """What one provider contributed to an identification (the ``status`` of its ``providers`` entry)."""

    OK = "ok"
    NO_MATCH = "no_match"
    CIRCUIT_OPEN = "circuit_open"
    QUOTA_EXHAUSTED = "quota_exhausted"
    TIMEOUT = "timeout"
    ERROR = "error"
    NOT_CONFIGURED = "not_configured"
    PENDING = "pending"  # still running when the answer went out early; its answer is merged when it arrives


@dataclass(frozen=True)
class ImageInput:
    """One validated photo, normalised to a metadata-free JPEG for each provider."""

    renditions: Mapping[Provider, bytes]
    sha256: str  # of the largest rendition: the photo's identity, whatever metadata it was uploaded with
    content_type: str = "image/jpeg"

    def data_for(self, provider: Provider) -> bytes:
        """The bytes to send to ``provider``."""
        return self.renditions[provider]


@dataclass(frozen=True)
class IdentifyRequest:
    """Everything a provider needs to identify one plant."""

    images: tuple[ImageInput, ...]
    organs: tuple[Organ, ...]
    include_diseases: bool = True
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Suggestion:
    """One candidate species as a single provider named it; a malformed one raises ValueError/TypeError."""

    scientific_name: str
    score: float
    common_names: tuple[str, ...] = ()
    family: str | None = None
    genus: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.scientific_name, str) or not self.scientific_name.strip():
            raise TypeError(f"scientific name {self.scientific_name!r} is not a name")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float) or not 0 <= self.score <= 1:
            raise ValueError(f"score {self.score!r} is not between 0 and 1")
        if not all(isinstance(name, str) for name in self.common_names):
            raise TypeError("common names must be strings")


@dataclass(frozen=True)
class ProviderAnswer:
    """A provider's parsed answer: suggestions (maybe none), plant and health signals, the raw payload."""

    provider: Provider
    suggestions: tuple[Suggestion, ...]
    raw: Any
    is_plant: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    cached: bool = False  # served from the answer cache, not from a call
    attempts: int = 1  # requests the call made (0 from the cache; 2 when a retry answered)
    stale: bool = False  # from the cache past its TTL, because the provider could not answer
    age_s: int | None = None  # seconds since a cached answer was received

    @property
    def status(self) -> ProviderStatus:
        """OK when the provider named a species, NO_MATCH when it answered without one."""
        return ProviderStatus.OK if self.suggestions else ProviderStatus.NO_MATCH


@dataclass(frozen=True)
class ProviderOutcome:
    """How one provider's part of an identification ended."""

    provider: Provider
    status: ProviderStatus
    answer: ProviderAnswer | None = None
    latency_ms: int | None = None
    cached: bool = False
    stale: bool = False  # the answer is the provider's last one for these images, served as it failed
    age_s: int | None = None  # of a cached answer, in seconds
    attempts: int = 0  # requests sent to the provider for this identification
    error_class: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    retry_after: float = 0.0  # seconds before calling this provider again could help (inf: not before staff act)

    @property
    def answered(self) -> bool:
        """True when the provider contributed an answer (with or without a species)."""
        return self.answer is not None
