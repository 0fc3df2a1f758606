"""The identify use case: fan out to the providers, then store the merged identification (or raise the 503)."""

import logging
import math
import time

from apps.plant_identification.circuits.events import circuit_events_flush
from apps.plant_identification.clients import BaseProviderClient, build_clients
from apps.plant_identification.exceptions import NoProviderAvailableError
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.fan_out import identify_deadline, providers_fan_out
from apps.plant_identification.services.late_answers import late_answer_receive, late_answers_track
from apps.plant_identification.services.records import identification_store
from apps.plant_identification.types import IdentifyRequest, ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

NOT_CONFIGURED_RETRY_AFTER = 60
UNKNOWN_RETRY_AFTER = 3600  # every provider waits for staff (credentials, credits): ask clients to come back later


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

    Answers once every provider has, or early (``IDENTIFY_EARLY_ANSWER``) with providers still pending, whose late
    answers ``late_answers`` merges into the stored identification. Raises ``NoProviderAvailableError`` (with
    every outcome and a retry time) when no provider answered.
    """
    started = time.monotonic()
    clients = build_clients() if clients is None else clients
    fan_out = None
    if clients:
        fan_out = providers_fan_out(clients, request, deadline=identify_deadline(clients), on_late=late_answer_receive)
    try:
        identification = _answer_store(request, user, fan_out, bool(clients), started)
    except BaseException:
        if fan_out is not None:
            fan_out.abandon()  # a late answer has nothing to be merged into
        raise
    if fan_out is not None:
        late_answers_track(fan_out, identification.pk)
    return identification


def _answer_store(request: IdentifyRequest, user, fan_out, any_configured: bool, started: float) -> Identification:
    outcomes = fan_out.outcomes if fan_out is not None else {}
    _flush_circuit_events()
    for provider in Provider:
        outcomes.setdefault(provider, ProviderOutcome(provider, ProviderStatus.NOT_CONFIGURED))
    if not any(o.answer is not None for o in outcomes.values()):
        error = _unavailable(outcomes, any_configured=any_configured)
        logger.warning("[FALLBACK] 503 (Retry-After %d): %s %s", error.retry_after, error, _outcomes_text(outcomes))
        _perf_log(started, 503, outcomes)
        raise error
    identification = identification_store(request=request, user=user, outcomes=outcomes)
    if identification.degraded:
        logger.warning("[FALLBACK] degraded answer %s: %s", identification.id, identification.message)
    elif not identification.complete:
        logger.info("[EARLY] answer %s sent without %s", identification.id, ",".join(fan_out.pending))
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
