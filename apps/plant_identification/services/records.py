"""The stored form of an identification: its fields from the providers' outcomes, with every known secret
redacted on the way into the database."""

import json

from django.db import transaction

from apps.plant_identification.merge import suggestions_merge
from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.providers import Provider, configured_specs, provider_registry
from apps.plant_identification.types import IdentifyRequest, ProviderAnswer, ProviderOutcome, ProviderStatus

REDACTED = "[redacted]"
ANSWERED = (ProviderStatus.OK, ProviderStatus.NO_MATCH)
PENDING = ProviderStatus.PENDING


def secrets_redact(value, secrets: list[str]):
    """``value`` (JSON: dicts, lists, strings, numbers) with every occurrence of each secret replaced, keys too.

    JSON escapes character by character, so a secret inside any string shows as its own encoded form in the
    value's JSON text: one C-speed encode and substring scan clears the common case (no secret anywhere), and
    only a value that holds one is walked.
    """
    if not secrets:
        return value
    text = json.dumps(value, ensure_ascii=False, default=str)
    if not any(json.dumps(secret, ensure_ascii=False)[1:-1] in text for secret in secrets):
        return value
    return _redact_walk(value, secrets)


def _redact_walk(value, secrets: list[str]):
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_redact_walk(key, secrets): _redact_walk(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_walk(item, secrets) for item in value]
    return value


def known_secrets() -> list[str]:
    """Every configured provider API key, longest first (so a key containing another is redacted whole)."""
    return sorted({spec.api_key for spec in configured_specs()}, key=len, reverse=True)


def _age_text(seconds: int) -> str:
    """``40 s``, ``12 min``, ``3 h``, ``2 d``: an answer's age as people read it."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def answer_message(statuses: dict[Provider, ProviderStatus], stale: dict[Provider, int] | None = None) -> str | None:
    """The note for an answer some configured provider is missing from (failed, or still pending) or stood in
    for by its last answer for the same images (``stale``: provider to age in seconds); None if none."""
    stale = stale or {}
    labels = {provider: spec.label for provider, spec in provider_registry().items()}
    answered = " and ".join(labels[p] for p, status in statuses.items() if status in ANSWERED)
    missing = [(p, status) for p, status in statuses.items() if status not in ANSWERED and status != PENDING]
    pending = [p for p, status in statuses.items() if status == PENDING]
    notes = []
    if missing:
        reasons = ", ".join(f"{labels[p]} {status.value.replace('_', ' ')}" for p, status in missing)
        notes.append(
            f"Partial result from {answered} only ({reasons})."
            if answered
            else f"No provider answered now ({reasons})."
        )
    if stale:
        earlier = ", ".join(f"{labels[p]}'s from {_age_text(age)} ago" for p, age in stale.items())
        notes.append(f"Earlier answers for these images were used: {earlier}.")
    if pending:
        waiting = " and ".join(labels[p] for p in pending)
        if not missing:
            notes.append(f"Answered by {answered} so far.")
        notes.append(f"{waiting} is still answering: read this identification again for the complete result.")
    return " ".join(notes) or None


def status_fields(statuses: dict[Provider, ProviderStatus], stale: dict[Provider, int] | None = None) -> dict:
    """The identification's fields that follow from how each configured provider's part ended (or not yet), and
    which failed parts an earlier answer stood in for (``stale``: provider to its age in seconds)."""
    configured = {p: status for p, status in statuses.items() if status != ProviderStatus.NOT_CONFIGURED}
    return {
        "degraded": any(status not in ANSWERED and status != PENDING for status in configured.values()),
        "message": answer_message(configured, stale),
        "complete": PENDING not in configured.values(),
    }


def outcome_stale_ages(outcomes) -> dict[Provider, int]:
    """Provider to the age in seconds of the stale answer that stood in for it, for outcomes or stored results."""
    return {Provider(o.provider): o.age_s or 0 for o in outcomes if o.stale}


def answer_fields(request: IdentifyRequest, answers: dict[Provider, ProviderAnswer], secrets: list[str]) -> dict:
    """The identification's fields that follow from the providers' answers: merged suggestions, plant, health."""
    suggestions = secrets_redact(suggestions_merge(list(answers.values())), secrets)
    plant_id = answers.get(Provider.PLANT_ID)
    return {
        "is_plant": plant_id.is_plant if plant_id else None,
        "suggestions": suggestions,
        "health": secrets_redact(plant_id.health, secrets) if plant_id and request.include_diseases else None,
        "top_scientific_name": suggestions[0]["scientific_name"][:255] if suggestions else "",
        "scientific_names": "\n".join(s["scientific_name"] for s in suggestions),
    }


def result_fields(outcome: ProviderOutcome, secrets: list[str]) -> dict:
    """A provider result's fields from its outcome."""
    return {
        "status": outcome.status.value,
        "latency_ms": outcome.latency_ms,
        "cached": outcome.cached,
        "stale": outcome.stale,
        "age_s": outcome.age_s,
        "attempts": outcome.attempts,
        "http_status": outcome.http_status,
        "error_class": outcome.error_class or "",
        "error_detail": secrets_redact(outcome.error_detail or "", secrets),
        "raw_payload": secrets_redact(outcome.answer.raw, secrets) if outcome.answer else None,
    }


@transaction.atomic
def identification_store(
    *, request: IdentifyRequest, user, outcomes: dict[Provider, ProviderOutcome]
) -> Identification:
    """Store an answered identification with its merged suggestions and each provider's outcome and payload.

    Known secrets are redacted here, on the way into the database, rather than in each client: every answer
    (fresh or cached, from any provider) passes through this one place, and it knows every provider's key,
    where a client knows only its own. What is stored is also what the response and the admin show.
    """
    secrets = known_secrets()
    answers = {p: o.answer for p, o in outcomes.items() if o.answer is not None}
    identification = Identification.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        image_count=len(request.images),
        image_hashes=[image.sha256 for image in request.images],
        organs=[organ.value for organ in request.organs],
        include_diseases=request.include_diseases,
        latitude=request.latitude,
        longitude=request.longitude,
        **answer_fields(request, answers, secrets),
        **status_fields({p: o.status for p, o in outcomes.items()}, outcome_stale_ages(outcomes.values())),
    )
    # One INSERT per provider: bulk_create's UNNEST form makes psycopg escape the JSON payloads into text arrays,
    # which costs more than the extra round trip for two rows.
    identification.results = [
        ProviderResult.objects.create(
            identification=identification, provider=o.provider.value, **result_fields(o, secrets)
        )
        for o in outcomes.values()
    ]
    return identification
