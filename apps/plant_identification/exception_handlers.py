"""Domain errors to JSON responses: 503 with Retry-After when no provider answered or the shared circuit
store is unreachable for an override; never an HTML page."""

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from apps.plant_identification.circuits.overrides import CircuitStoreUnreachableError
from apps.plant_identification.circuits.store import REDIS_RETRY_SECONDS
from apps.plant_identification.exceptions import NoProviderAvailableError
from apps.plant_identification.serializers import UnavailableOutputSerializer


def api_exception_handler(exc, context):
    """DRF's handler; validation errors gain a ``detail``; ``NoProviderAvailableError`` is a 503 + Retry-After."""
    if isinstance(exc, NoProviderAvailableError):
        return Response(
            UnavailableOutputSerializer(exc).data,
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, CircuitStoreUnreachableError):  # nothing was changed: the override may simply be sent again
        return Response(
            {"detail": f"{exc} Nothing was changed."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(max(1, round(REDIS_RETRY_SECONDS)))},
        )
    response = exception_handler(exc, context)
    if isinstance(exc, ValidationError) and response is not None:
        response.data = {"detail": _first_message(response.data), "errors": response.data}
    return response


def _first_message(errors) -> str:
    """A human-readable summary of field errors: the first message found, prefixed by its field."""
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors) if errors else "Invalid input."
