"""The identify use case: fan out to the providers, merge their answers, then store the identification."""

import logging
import math
import time

from django.conf import settings
from django.db import transaction

from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.clients import BaseProviderClient, build_clients
from apps.plant_identification.exceptions import NoProviderAvailableError
from apps.plant_identification.merge import suggestions_merge
from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.providers import Provider, configured_specs, provider_registry
from apps.plant_identification.services.fan_out import providers_fan_out
from apps.plant_identification.types import IdentifyRequest, ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

DEADLINE_MARGIN = 5.0  # seconds past the slowest provider timeout, when IDENTIFY_DEADLINE is unset
NOT_CONFIGURED_RETRY_AFTER = 60
UNKNOWN_RETRY_AFTER = 3600  # every provider waits for staff (credentials, credits): ask clients to come back later
REDACTED = "[redacted]"


def identify_deadline(providers) -> float:
    """Seconds the fan-out may take: ``IDENTIFY_DEADLINE``, or the slowest provider's timeout plus a margin."""
    if settings.IDENTIFY_DEADLINE is not None:
        return settings.IDENTIFY_DEADLINE
    registry = provider_registry()
    return max(registry[provider].timeout for provider in providers) + DEADLINE_MARGIN


def _degraded_message(outcomes: dict[Provider, ProviderOutcome]) -> str | None:
    missing = [o for o in outcomes.values() if not o.answered]
    if not missing:
        return None
    labels = {provider: spec.label for provider, spec in provider_registry().items()}
    answered = " and ".join(labels[o.provider] for o in outcomes.values() if o.answered)
    reasons = ", ".join(f"{labels[o.provider]} {o.status.value.replace('_', ' ')}" for o in missing)
    return f"Partial result from {answered} only ({reasons})."


def _unavailable(outcomes: dict[Provider, ProviderOutcome], *, any_configured: bool) -> NoProviderAvailableError:
    """The error for an identification no provider answered, with the earliest time a retry could help."""
    if not any_configured:
        return NoProviderAvailableError(
            "No identification provider is configured.", tuple(outcomes.values()), NOT_CONFIGURED_RETRY_AFTER
        )
    wait = min(o.retry_after for o in outcomes.values() if o.status != ProviderStatus.NOT_CONFIGURED)
    return NoProviderAvailableError(
        "No identification provider could answer; try again later.",
        tuple(outcomes.values()),
        max(1, math.ceil(wait)) if math.isfinite(wait) else UNKNOWN_RETRY_AFTER,
    )


def plant_identify(
    *, request: IdentifyRequest, user=None, clients: dict[Provider, BaseProviderClient] | None = None
) -> Identification:
    """Identify the plant in ``request``; store and return the identification.

    Raises ``NoProviderAvailableError`` (with every outcome and a retry time) when no provider answered.
    """
    started = time.monotonic()
    clients = build_clients() if clients is None else clients
    outcomes = providers_fan_out(clients, request, deadline=identify_deadline(clients)) if clients else {}
    _flush_circuit_events()
    for provider in Provider:
        outcomes.setdefault(provider, ProviderOutcome(provider, ProviderStatus.NOT_CONFIGURED))

    answers = [o.answer for o in outcomes.values() if o.answer is not None]
    if not answers:
        error = _unavailable(outcomes, any_configured=bool(clients))
        logger.warning("[FALLBACK] 503 (Retry-After %d): %s %s", error.retry_after, error, _outcomes_text(outcomes))
        _perf_log(started, 503, outcomes)
        raise error
    configured = {o.provider: o for o in outcomes.values() if o.status != ProviderStatus.NOT_CONFIGURED}
    message = _degraded_message(configured)
    identification = identification_store(
        request=request,
        user=user,
        outcomes=outcomes,
        suggestions=suggestions_merge(answers),
        message=message,
    )
    if message is not None:
        logger.warning("[FALLBACK] degraded answer %s: %s", identification.id, message)
    _perf_log(started, 200, outcomes)
    return identification


def _outcomes_text(outcomes: dict[Provider, ProviderOutcome]) -> str:
    """``plant_id=ok:412ms plantnet=ok:0ms:cached``: each provider's status, latency and whether it was cached."""
    parts = []
    for o in outcomes.values():
        latency = "" if o.latency_ms is None else f":{o.latency_ms}ms"
        parts.append(f"{o.provider.value}={o.status.value}{latency}{':cached' if o.cached else ''}")
    return " ".join(parts)


def _perf_log(started: float, status: int, outcomes: dict[Provider, ProviderOutcome]) -> None:
    total_ms = round((time.monotonic() - started) * 1000)
    logger.info("[PERF] identify status=%d total_ms=%d %s", status, total_ms, _outcomes_text(outcomes))


def _flush_circuit_events() -> None:
    try:
        circuit_events_flush(when_due=True)
    except Exception:  # the history is best effort here; the transitions wait for the next flush
        logger.exception("[CIRCUIT] could not store circuit events")


def secrets_redact(value, secrets: list[str]):
    """``value`` (JSON: dicts, lists, strings, numbers) with every occurrence of each secret replaced, keys too."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {secrets_redact(key, secrets): secrets_redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [secrets_redact(item, secrets) for item in value]
    return value


def _known_secrets() -> list[str]:
    """Every configured provider API key, longest first (so a key containing another is redacted whole)."""
    return sorted({spec.api_key for spec in configured_specs()}, key=len, reverse=True)


@transaction.atomic
def identification_store(
    *,
    request: IdentifyRequest,
    user,
    outcomes: dict[Provider, ProviderOutcome],
    suggestions: list[dict],
    message: str | None,
) -> Identification:
    """Store an answered identification with its merged suggestions and each provider's outcome and payload.

    Known secrets are redacted here, on the way into the database, rather than in each client: every answer
    (fresh or cached, from any provider) passes through this one place, and it knows every provider's key,
    where a client knows only its own. What is stored is also what the response and the admin show.
    """
    secrets = _known_secrets()
    plant_id = outcomes[Provider.PLANT_ID].answer
    suggestions = secrets_redact(suggestions, secrets)
    identification = Identification.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        image_count=len(request.images),
        image_hashes=[image.sha256 for image in request.images],
        organs=[organ.value for organ in request.organs],
        include_diseases=request.include_diseases,
        latitude=request.latitude,
        longitude=request.longitude,
        degraded=message is not None,
        message=message,
        is_plant=plant_id.is_plant if plant_id else None,
        suggestions=suggestions,
        health=secrets_redact(plant_id.health, secrets) if plant_id and request.include_diseases else None,
        top_scientific_name=suggestions[0]["scientific_name"][:255] if suggestions else "",
        scientific_names="\n".join(s["scientific_name"] for s in suggestions),
    )
    # One INSERT per provider: bulk_create's UNNEST form makes psycopg escape the JSON payloads into text arrays,
    # which costs more than the extra round trip for two rows.
    identification.results = [
        ProviderResult.objects.create(
            identification=identification,
            provider=o.provider.value,
            status=o.status.value,
            latency_ms=o.latency_ms,
            cached=o.cached,
            attempts=o.attempts,
            http_status=o.http_status,
            error_class=o.error_class or "",
            error_detail=secrets_redact(o.error_detail or "", secrets),
            raw_payload=secrets_redact(o.answer.raw, secrets) if o.answer else None,
        )
        for o in outcomes.values()
    ]
    return identification
