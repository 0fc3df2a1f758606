"""Domain errors to JSON responses: 503 with Retry-After when no provider answered, never an HTML page."""

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from apps.plant_identification.exceptions import NoProviderAvailableError


def provider_statuses(outcomes) -> dict[str, dict]:
    """The ``providers`` block of a response from provider outcomes."""
    return {
        o.provider.value: {"status": o.status.value, "latency_ms": o.latency_ms, "cached": o.cached}
        for o in outcomes
    }


def api_exception_handler(exc, context):
    """DRF's handler, plus ``NoProviderAvailableError`` as a 503 with ``Retry-After``."""
    if isinstance(exc, NoProviderAvailableError):
        return Response(
            {"detail": exc.message, "providers": provider_statuses(exc.outcomes)},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return exception_handler(exc, context)
