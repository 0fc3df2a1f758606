"""The identify use case: fan out to providers, merge their answers, store and return the result."""

import logging
import math

from django.conf import settings
from django.db import transaction

from apps.plant_identification.breakers import breaker_for
from apps.plant_identification.circuit_events import circuit_events_flush
from apps.plant_identification.clients import BaseProviderClient, build_clients
from apps.plant_identification.exceptions import NoProviderAvailableError
from apps.plant_identification.merge import suggestions_merge
from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.services.fan_out import providers_fan_out
from apps.plant_identification.types import IdentifyRequest, Provider, ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

PROVIDER_LABELS = {Provider.PLANT_ID: "Plant.id", Provider.PLANTNET: "Pl@ntNet"}
NOT_CONFIGURED_RETRY_AFTER = 60
UNKNOWN_RETRY_AFTER = 3600  # every provider waits for staff (credentials, credits): ask clients to come back later


def _retry_after(outcome: ProviderOutcome) -> float:
    """Seconds before calling this provider again could help (``inf``: not before staff act)."""
    if outcome.status in (ProviderStatus.CIRCUIT_OPEN, ProviderStatus.QUOTA_EXHAUSTED):
        return math.inf if outcome.retry_after is None else outcome.retry_after
    if settings.CIRCUIT_BREAKER_ENABLED:  # this very failure may have opened (or held) the circuit
        snapshot = breaker_for(outcome.provider).snapshot()
        if snapshot.state == "open":
            return math.inf if snapshot.retry_after is None else snapshot.retry_after
    return 0.0


def _degraded_message(outcomes: dict[Provider, ProviderOutcome]) -> str | None:
    missing = [o for o in outcomes.values() if not o.answered]
    if not missing:
        return None
    answered = " and ".join(PROVIDER_LABELS[o.provider] for o in outcomes.values() if o.answered)
    reasons = ", ".join(f"{PROVIDER_LABELS[o.provider]} {o.status.value.replace('_', ' ')}" for o in missing)
    return f"Partial result from {answered} only ({reasons})."


def plant_identify(
    *, request: IdentifyRequest, user=None, clients: dict[Provider, BaseProviderClient] | None = None
) -> Identification:
    """Identify the plant in ``request``; store and return the identification.

    Raises ``NoProviderAvailableError`` (with every outcome and a retry time) when no provider answered.
    """
    clients = build_clients() if clients is None else clients
    outcomes = providers_fan_out(clients, request, deadline=settings.IDENTIFY_DEADLINE) if clients else {}
    _flush_circuit_events()
    for provider in Provider:
        if provider not in outcomes:
            outcomes[provider] = ProviderOutcome(provider, ProviderStatus.NOT_CONFIGURED)

    answered = [o for o in outcomes.values() if o.answered]
    if not answered:
        if not clients:
            raise NoProviderAvailableError(
                "No identification provider is configured.", tuple(outcomes.values()), NOT_CONFIGURED_RETRY_AFTER
            )
        wait = min(_retry_after(o) for o in outcomes.values() if o.status != ProviderStatus.NOT_CONFIGURED)
        raise NoProviderAvailableError(
            "No identification provider could answer; try again later.",
            tuple(outcomes.values()),
            max(1, math.ceil(wait)) if math.isfinite(wait) else UNKNOWN_RETRY_AFTER,
        )
    configured = {o.provider: o for o in outcomes.values() if o.status != ProviderStatus.NOT_CONFIGURED}
    return identification_store(request=request, user=user, outcomes=outcomes, message=_degraded_message(configured))


def _flush_circuit_events() -> None:
    try:
        circuit_events_flush()
    except Exception:  # the history is best effort; the transition is already logged
        logger.exception("[CIRCUIT] could not store circuit events")


@transaction.atomic
def identification_store(
    *, request: IdentifyRequest, user, outcomes: dict[Provider, ProviderOutcome], message: str | None
) -> Identification:
    """Store an answered identification with each provider's outcome and raw payload."""
    answers = [o.answer for o in outcomes.values() if o.answer is not None]
    suggestions = suggestions_merge(answers)
    plant_id = outcomes[Provider.PLANT_ID].answer
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
        health=plant_id.health if plant_id and request.include_diseases else None,
        top_scientific_name=suggestions[0]["scientific_name"][:255] if suggestions else "",
        scientific_names="\n".join(s["scientific_name"] for s in suggestions),
    )
    # One INSERT per provider: bulk_create's UNNEST form makes psycopg escape the JSON payloads into text arrays,
    # which costs more than the extra round trip for two rows.
    identification.stored_results = [
        ProviderResult.objects.create(
            identification=identification,
            provider=o.provider.value,
            status=o.status.value,
            latency_ms=o.latency_ms,
            cached=o.cached,
            http_status=o.http_status,
            error_class=o.error_class or "",
            error_detail=o.error_detail or "",
            raw_payload=o.answer.raw if o.answer else None,
        )
        for o in outcomes.values()
    ]
    return identification
