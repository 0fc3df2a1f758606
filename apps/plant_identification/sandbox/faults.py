"""Fault injection for the sandbox: per-provider latency and fault rates, changed at run time."""

import random
import threading
from dataclasses import asdict, dataclass, field

FAULTS = {
    "plant_id": ("timeout", "reset", "500", "502", "429", "401", "malformed", "not_plant"),
    "plantnet": ("timeout", "reset", "500", "502", "429", "401", "malformed", "not_found"),
}


@dataclass
class ProviderFaults:
    """How one fake provider misbehaves: latency (ms) and the share of calls that get each fault."""

    # {"fixed": ms}, {"uniform": [low, high]} or {"normal": [mean, sd]}
    latency: dict = field(default_factory=lambda: {"fixed": 0})
    rates: dict = field(default_factory=dict)
    hang_seconds: float = 60.0  # how long a "timeout" fault holds the connection before dropping it
    retry_after: int = 60  # the Retry-After / RateLimit t of a 429 fault

    def validate(self, provider: str) -> None:
        unknown = set(self.rates) - set(FAULTS[provider])
        if unknown:
            raise ValueError(f"unknown {provider} faults {sorted(unknown)}; known: {list(FAULTS[provider])}")
        if any(not 0 <= rate <= 1 for rate in self.rates.values()) or sum(self.rates.values()) > 1:
            raise ValueError("fault rates are shares between 0 and 1 that add up to at most 1")
        (kind,) = self.latency
        if kind not in ("fixed", "uniform", "normal"):
            raise ValueError("latency is {'fixed': ms}, {'uniform': [lo, hi]} or {'normal': [mean, sd]}")


class FaultPlan:
    """The sandbox's current faults and a seeded random source; safe to use from many threads."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self.providers = {provider: ProviderFaults() for provider in FAULTS}

    def update(self, changes: dict) -> dict:
        """Merge ``{"plant_id": {"latency": ..., "rates": ..., ...}, "seed": n}`` into the plan."""
        with self._lock:
            if "seed" in changes:
                self._random.seed(changes["seed"])
            updated = {}
            for provider, fields in changes.items():
                if provider == "seed":
                    continue
                if provider not in FAULTS:
                    raise ValueError(f"unknown provider {provider!r}")
                candidate = ProviderFaults(**{**asdict(self.providers[provider]), **fields})
                candidate.validate(provider)
                updated[provider] = candidate
            self.providers.update(updated)
            return self.describe()

    def describe(self) -> dict:
        return {provider: asdict(faults) for provider, faults in self.providers.items()}

    def draw(self, provider: str) -> tuple[str | None, float]:
        """The fault for one call (None for a normal answer) and its latency in seconds."""
        with self._lock:
            faults = self.providers[provider]
            roll, fault = self._random.random(), None
            for kind, rate in faults.rates.items():
                if roll < rate:
                    fault = kind
                    break
                roll -= rate
            ((kind, values),) = faults.latency.items()
            if kind == "fixed":
                milliseconds = values
            elif kind == "uniform":
                milliseconds = self._random.uniform(*values)
            else:
                milliseconds = max(0.0, self._random.gauss(*values))
            return fault, milliseconds / 1000
