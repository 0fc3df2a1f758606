"""Merging provider answers into one ranked suggestion list, with a documented confidence.

Plant.id probabilities and Pl@ntNet scores are different scales, so they are never sorted together
raw. A species' ``confidence`` is the weighted mean of what each *answering* provider said of it,
where a provider that answered without naming the species contributes 0:

    confidence = sum(w[p] * score[p]) / sum(w[p])   over providers p that answered

with w each provider's ``merge_weight`` in the registry (``providers.py``): 0.6 for Plant.id, whose
probabilities are calibrated across its list, and 0.4 for Pl@ntNet.
A species both providers name outranks one named by a single provider at the same score; with one
provider answering, confidence is that provider's score. Ties break by number of sources, then by
name, so the ranking is deterministic.
"""

from dataclasses import dataclass, field
from typing import Any

from apps.plant_identification.providers import Provider, provider_registry
from apps.plant_identification.types import ProviderAnswer, Suggestion

MAX_SUGGESTIONS = 10


@dataclass
class MergedSuggestion:
    """One species across providers."""

    scientific_name: str
    common_names: list[str] = field(default_factory=list)
    family: str | None = None
    genus: str | None = None
    confidence: float = 0.0
    sources: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of a suggestion in an identification."""
        return {
            "scientific_name": self.scientific_name,
            "common_names": self.common_names,
            "family": self.family,
            "genus": self.genus,
            "confidence": self.confidence,
            "sources": self.sources,
            "scores": self.scores,
            "details": self.details,
        }


def species_key(name: str) -> str:
    """Normalise a scientific name for matching across providers (case, spacing, hybrid sign)."""
    return " ".join(name.replace("\u00d7", "x").split()).casefold()


def _absorb(merged: MergedSuggestion, provider: Provider, suggestion: Suggestion) -> None:
    merged.sources.append(provider.value)
    merged.scores[provider.value] = round(suggestion.score, 4)
    known = {name.casefold() for name in merged.common_names}
    merged.common_names.extend(name for name in suggestion.common_names if name.casefold() not in known)
    merged.family = merged.family or suggestion.family
    merged.genus = merged.genus or suggestion.genus
    for key, value in suggestion.details.items():
        merged.details.setdefault(key, value)


def suggestions_merge(answers: list[ProviderAnswer]) -> list[dict[str, Any]]:
    """Merge the answers of the providers that answered into one ranked list of suggestion dicts."""
    weights = {provider: spec.merge_weight for provider, spec in provider_registry().items()}
    answers = sorted(answers, key=lambda answer: list(Provider).index(answer.provider))
    by_species: dict[str, MergedSuggestion] = {}
    for answer in answers:
        best: dict[str, Suggestion] = {}
        for suggestion in answer.suggestions:  # a provider naming a species twice counts once
            key = species_key(suggestion.scientific_name)
            if key not in best or suggestion.score > best[key].score:
                best[key] = suggestion
        for key, suggestion in best.items():
            merged = by_species.setdefault(key, MergedSuggestion(scientific_name=suggestion.scientific_name))
            _absorb(merged, answer.provider, suggestion)

    total_weight = sum(weights[answer.provider] for answer in answers)
    for merged in by_species.values():
        weighted = sum(weights[Provider(name)] * score for name, score in merged.scores.items())
        merged.confidence = round(weighted / total_weight, 4) if total_weight else 0.0

    ranked = sorted(by_species.values(), key=lambda m: (-m.confidence, -len(m.sources), species_key(m.scientific_name)))
    return [merged.as_dict() for merged in ranked[:MAX_SUGGESTIONS]]
