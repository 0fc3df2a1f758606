"""Merging provider answers: one suggestion per species, documented confidence, deterministic order."""

import pytest

from apps.plant_identification.merge import suggestions_merge
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.types import ProviderAnswer, Suggestion


def answer(provider: Provider, *pairs) -> ProviderAnswer:
    return ProviderAnswer(
        provider=provider,
        raw={},
        suggestions=tuple(
            Suggestion(scientific_name=name, score=score, common_names=(f"{name} common",)) for name, score in pairs
        ),
    )


def test_species_named_by_both_is_one_suggestion_with_both_sources():
    merged = suggestions_merge(
        [
            answer(Provider.PLANT_ID, ("Monstera deliciosa", 0.9)),
            answer(Provider.PLANTNET, ("monstera  deliciosa", 0.5)),
        ]
    )
    assert len(merged) == 1
    assert merged[0]["sources"] == ["plant_id", "plantnet"]
    assert merged[0]["scores"] == {"plant_id": 0.9, "plantnet": 0.5}
    assert merged[0]["confidence"] == pytest.approx(0.6 * 0.9 + 0.4 * 0.5)


def test_confidence_is_the_weighted_mean_over_answering_providers():
    merged = suggestions_merge(
        [
            answer(Provider.PLANT_ID, ("A a", 0.5)),
            answer(Provider.PLANTNET, ("B b", 0.5)),
        ]
    )
    by_name = {s["scientific_name"]: s["confidence"] for s in merged}
    assert by_name == {
        "A a": pytest.approx(0.5 * provider_spec(Provider.PLANT_ID).merge_weight),
        "B b": pytest.approx(0.5 * provider_spec(Provider.PLANTNET).merge_weight),
    }


def test_raw_scores_are_not_sorted_together():
    """A high Pl@ntNet-only score does not outrank a species both providers agree on."""
    merged = suggestions_merge(
        [
            answer(Provider.PLANT_ID, ("Agreed one", 0.6)),
            answer(Provider.PLANTNET, ("Plantnet only", 0.9), ("Agreed one", 0.4)),
        ]
    )
    assert [s["scientific_name"] for s in merged] == ["Agreed one", "Plantnet only"]


def test_one_provider_alone_keeps_its_scores():
    merged = suggestions_merge([answer(Provider.PLANTNET, ("X x", 0.7), ("Y y", 0.2))])
    assert [(s["scientific_name"], s["confidence"]) for s in merged] == [("X x", 0.7), ("Y y", 0.2)]


def test_a_no_match_answer_still_weighs():
    merged = suggestions_merge([answer(Provider.PLANT_ID), answer(Provider.PLANTNET, ("X x", 0.5))])
    assert merged[0]["confidence"] == pytest.approx(0.5 * 0.4)


def test_ranking_is_deterministic_on_ties():
    answers = [answer(Provider.PLANTNET, ("Zeta z", 0.5), ("Alpha a", 0.5))]
    assert [s["scientific_name"] for s in suggestions_merge(answers)] == ["Alpha a", "Zeta z"]
    assert suggestions_merge(list(reversed(answers))) == suggestions_merge(answers)


def test_common_names_are_united_without_duplicates():
    merged = suggestions_merge(
        [
            ProviderAnswer(Provider.PLANT_ID, (Suggestion("M d", 0.9, ("Swiss cheese plant", "Ceriman")),), raw={}),
            ProviderAnswer(Provider.PLANTNET, (Suggestion("M d", 0.5, ("ceriman", "Split-leaf")),), raw={}),
        ]
    )
    assert merged[0]["common_names"] == ["Swiss cheese plant", "Ceriman", "Split-leaf"]


def test_no_answers_no_suggestions():
    assert suggestions_merge([]) == []
