"""Upload intake: a declared length before the body is read (411 without one), and the handlers that read it.

Django reads a request body only up to its ``Content-Length``; a chunked upload (``Transfer-Encoding: chunked``,
no length) would reach the parser as an empty body. Behind the reverse proxy (deploy/nginx.conf) a chunked upload
works: the proxy buffers the whole body and forwards it with a length.
"""

from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from rest_framework.exceptions import APIException

# Django reads a multipart body in chunks of its handlers' smallest chunk size (64 KiB by default). Every chunk
# costs a turn of its pure-Python parser and a write, and under gunicorn a read smaller than the 1 MiB that
# gunicorn receives at once makes it copy the rest of what it received again on every read. Parsing a 5 MB photo
# cost the worker 21 ms of CPU in 64 KiB chunks, 12 ms in 256 KiB and 8-10 ms in 1 MiB (bench/upload_intake.py;
# BENCHMARKS.md, "12 MP photos"), for about 1 MiB more per upload in flight.
UPLOAD_CHUNK_BYTES = 1024 * 1024


class MemoryUploadHandler(MemoryFileUploadHandler):
    """Uploads up to ``FILE_UPLOAD_MAX_MEMORY_SIZE`` kept in memory, read in 1 MiB chunks."""

    chunk_size = UPLOAD_CHUNK_BYTES


class DiskUploadHandler(TemporaryFileUploadHandler):
    """Larger uploads streamed to a temporary file as they arrive (never whole in memory), in 1 MiB chunks."""

    chunk_size = UPLOAD_CHUNK_BYTES


class LengthRequiredError(APIException):
    """An upload without a ``Content-Length`` (411); refused before any body is read or any provider called."""

    status_code = 411
    default_detail = "A Content-Length is required: send the upload in one piece, not chunked."
    default_code = "length_required"


def require_declared_length(request) -> None:
    """Raise 411 for a body sent without a ``Content-Length`` (chunked); a request with neither has no body."""
    if not request.META.get("CONTENT_LENGTH") and request.META.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequiredError()
