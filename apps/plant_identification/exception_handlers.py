"""Domain errors to JSON responses: 503 with Retry-After when no provider answered, never an HTML page."""

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

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
