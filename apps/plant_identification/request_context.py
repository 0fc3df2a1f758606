"""The request id: its context variable, the middleware that sets and returns it, the log filter and formatter."""

import contextlib
import functools
import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from pythonjsonlogger.json import JsonFormatter

HEADER = "X-Request-ID"
NO_REQUEST = "-"  # the request id of a line written outside any request
REDACTED = "[redacted]"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)
P = ParamSpec("P")
T = TypeVar("T")


def current_request_id() -> str:
    """The id of the request this code serves (provider threads included), ``-`` outside any request."""
    return _request_id.get()


def with_request_id(function: Callable[P, T]) -> Callable[P, T]:
    """``function``, to run on another thread under this request's id. It runs in that thread's own context, not in
    a copy of this one: what Django keeps per thread there (its cache connections: a django-redis client and its
    response-callback table each) is built once per thread and kept, not rebuilt for every task. So a context
    variable that a task sets and does not reset passes to that thread's next task: only the request id is set
    here, and it is reset."""
    request_id = _request_id.get()

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _request_id.set(request_id)
        try:
            return function(*args, **kwargs)
        finally:
            _request_id.reset(token)  # the thread's next task, or its idle lines, must not inherit it

    return run


def request_id_from(value: str | None) -> str:
    """``value`` when it is a sane token (1 to 128 of ``A-Z a-z 0-9 . _ : -``), else a new random id."""
    if value and _SANE.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets the request id for everything below it and returns it in ``X-Request-ID`` on every answer."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(HEADER))
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)  # a gthread worker's next request, or its idle lines, must not inherit it
        response[HEADER] = request_id
        return response


def _known_secrets() -> list[str]:
    from apps.plant_identification.providers import configured_specs  # settings are loaded by now

    return sorted({spec.api_key for spec in configured_specs()}, key=len, reverse=True)


class RequestContextFilter(logging.Filter):
    """Puts ``request_id`` on every record and removes every configured provider API key from its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        # A filter that raised would raise into the code that logs; a malformed record is reported by its handler.
        with contextlib.suppress(Exception):
            _redact(record, _known_secrets())
        return True


def _redact(record: logging.LogRecord, secrets: list[str]) -> None:
    message = record.getMessage()
    if any(secret in message for secret in secrets):
        for secret in secrets:
            message = message.replace(secret, REDACTED)
        record.msg, record.args = message, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text and any(secret in record.exc_text for secret in secrets):
        for secret in secrets:
            record.exc_text = record.exc_text.replace(secret, REDACTED)
        record.exc_info = None  # else a formatter would format the traceback again, secrets included


def json_formatter() -> JsonFormatter:
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id, exc_info if any."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        timestamp="time",
    )
