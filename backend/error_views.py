"""JSON bodies for errors Django answers itself (unknown URL, unhandled exception): never an HTML page."""

import logging
import sys

from django.http import JsonResponse

logger = logging.getLogger(__name__)


def not_found(request, exception=None):
    """404 for any URL no view matches."""
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error(request):
    """500 for an unhandled exception; the traceback goes to the log, never to the client."""
    # Django calls this while handling the exception, then logs its traceback on django.request: name it here.
    exc_type, exc, _ = sys.exc_info()
    cause = f"{exc_type.__name__}: {exc}" if exc_type is not None else "unknown exception"
    logger.error("[ERROR] %s %s answered 500: %s", request.method, request.path, cause)
    return JsonResponse({"detail": "Internal server error."}, status=500)
