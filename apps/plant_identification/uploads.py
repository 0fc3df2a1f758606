"""An identify upload must declare its length before its body is read: 411 without one.

Django reads a request body only up to its ``Content-Length``; a chunked upload (``Transfer-Encoding: chunked``,
no length) would reach the parser as an empty body. Behind the reverse proxy (deploy/nginx.conf) a chunked upload
works: the proxy buffers the whole body and forwards it with a length.
"""

from rest_framework.exceptions import APIException


class LengthRequiredError(APIException):
    """An upload without a ``Content-Length`` (411); refused before any body is read or any provider called."""

    status_code = 411
    default_detail = "A Content-Length is required: send the upload in one piece, not chunked."
    default_code = "length_required"


def require_declared_length(request) -> None:
    """Raise 411 for a body sent without a ``Content-Length`` (chunked); a request with neither has no body."""
    if not request.META.get("CONTENT_LENGTH") and request.META.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequiredError()
