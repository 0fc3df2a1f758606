"""JSON bodies for errors Django answers itself (unknown URL, unhandled exception): never an HTML page."""

from django.http import JsonResponse


def not_found(request, exception=None):
    """404 for any URL no view matches."""
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error(request):
    """500 for an unhandled exception; the traceback goes to the log, never to the client."""
    return JsonResponse({"detail": "Internal server error."}, status=500)
