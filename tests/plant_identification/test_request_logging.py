"""Logs: a request id on every line of a request (provider threads included) and in X-Request-ID, the bracketed
prefixes, text or JSON lines, and no API key on any line."""

import io
import json
import logging
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.cache import caches
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import path, reverse

from apps.plant_identification.providers import Provider
from apps.plant_identification.request_context import (
    NO_REQUEST,
    RequestContextFilter,
    RequestIdMiddleware,
    current_request_id,
    json_formatter,
    with_request_id,
)
from apps.plant_identification.services.identify import plant_identify
from tests.factories import PLANT_ID_URL, PLANTNET_URL, FakeClient, answering, failing, jpeg_bytes, make_request

ROOT = Path(__file__).resolve().parents[2]
IDENTIFY = reverse("plant_identification:identify")
GENERATED = re.compile(r"[0-9a-f]{32}")
JSON_FIELDS = {"time", "level", "logger", "message", "request_id"}
pytestmark = pytest.mark.django_db


# A URL configuration for the 500 test (pytest.mark.urls): the project's error handlers and a view that fails.
def _boom(request):
    raise ZeroDivisionError("the view failed")


urlpatterns = [path("boom/", _boom)]
handler404 = "backend.error_views.not_found"
handler500 = "backend.error_views.server_error"
BOOM_URLS = pytest.mark.urls(__name__)


class Records(logging.Handler):
    """Keeps every record the project's filter has seen, with the thread that wrote it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def matching(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage()]


@pytest.fixture
def records(caplog):
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    with caplog.at_level(logging.INFO):
        yield handler
    root.removeHandler(handler)


@pytest.fixture
def console(caplog):
    """What the configured console handler writes (its filter and formatter as settings made them), as text."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(stream)
    with caplog.at_level(logging.INFO):
        yield stream
    handler.setStream(previous)
    handler.setFormatter(formatter)


def upload():
    file = io.BytesIO(jpeg_bytes())
    file.name = "leaf.jpg"
    return file


def identify(client, request_id=None):
    headers = {} if request_id is None else {"X-Request-ID": request_id}
    return client.post(IDENTIFY, {"images": [upload()]}, format="multipart", headers=headers)


def test_provider_thread_lines_carry_the_request_id_of_their_request(api_client, plant_id_ok, plantnet_ok, records):
    first = identify(api_client, "req-1.a_b:c")
    second = identify(api_client, "req-2")

    assert first.status_code == second.status_code == 200
    assert first["X-Request-ID"] == "req-1.a_b:c"
    assert second["X-Request-ID"] == "req-2"
    misses, hits = records.matching("[CACHE] provider=plant_id miss"), records.matching("[CACHE] provider=plant_id hit")
    assert [r.request_id for r in misses] == ["req-1.a_b:c"]
    assert [r.request_id for r in hits] == ["req-2"]
    written_by_providers = [r for r in records.records if r.threadName.startswith("provider")]
    assert {r.request_id for r in written_by_providers} == {"req-1.a_b:c", "req-2"}
    assert all(r.request_id in {"req-1.a_b:c", "req-2"} for r in records.records)
    assert current_request_id() == NO_REQUEST  # the id ends with its request


def test_a_task_on_another_thread_runs_under_the_request_id_and_keeps_that_threads_cache_connection():
    """Each task on a pool thread used to run in a copy of its request's context, where Django's per-thread cache
    connections start empty: every provider call built a new django-redis client. Now the thread keeps its own."""
    seen = []

    def task():
        seen.append((current_request_id(), caches["default"]))

    wrapped = []

    def view(request):
        wrapped.append(with_request_id(task))  # as the fan-out does for each provider call
        return HttpResponse()

    middleware = RequestIdMiddleware(view)
    for request_id in ("req-a", "req-b"):
        middleware(RequestFactory().get("/", headers={"X-Request-ID": request_id}))
    first, second = wrapped
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(first).result()
        pool.submit(second).result()
        idle_id = pool.submit(current_request_id).result()

    (first_id, first_cache), (second_id, second_cache) = seen
    assert (first_id, second_id, idle_id) == ("req-a", "req-b", NO_REQUEST)
    assert first_cache is second_cache
    assert first_cache is not caches["default"]  # still one per thread, as Django keeps them


@pytest.mark.parametrize("sent", ["a", "x" * 128, "0af3-77.Z_z:9"])
def test_a_sane_incoming_id_is_kept(anonymous_client, sent):
    assert anonymous_client.get("/health/live/", headers={"X-Request-ID": sent})["X-Request-ID"] == sent


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, "semi;colon", "new\\nline", "ünïcode", "<script>"])
def test_an_invalid_incoming_id_is_replaced_by_a_new_one(anonymous_client, sent):
    first = anonymous_client.get("/health/live/", headers={"X-Request-ID": sent})["X-Request-ID"]
    second = anonymous_client.get("/health/live/", headers={"X-Request-ID": sent})["X-Request-ID"]

    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


def test_every_answer_has_an_id_errors_included(anonymous_client):
    for response in (
        anonymous_client.get("/health/live/"),
        anonymous_client.get("/no/such/page/"),  # 404
        identify(anonymous_client),  # 401: anonymous identification is off in the tests
    ):
        assert GENERATED.fullmatch(response["X-Request-ID"]), response.status_code


@BOOM_URLS
def test_a_500_returns_its_id_and_logs_an_error_line_with_it(console):
    response = Client(raise_request_exception=False).get("/boom/", headers={"X-Request-ID": "boom-1"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert response["X-Request-ID"] == "boom-1"
    lines = console.getvalue()
    assert "request_id=boom-1 [ERROR] GET /boom/ answered 500: ZeroDivisionError: the view failed" in lines
    assert "Traceback" in lines  # from django.request, on a line of the same request
    assert "request_id=boom-1 Internal Server Error: /boom/" in lines


def test_text_lines_have_the_request_id_and_the_prefixes(api_client, plant_id_ok, mocked_responses, console):
    mocked_responses.post(PLANTNET_URL, status=503, body="unavailable")

    response = identify(api_client, "degraded-1")

    assert response.status_code == 200
    assert response.json()["degraded"] is True
    lines = console.getvalue().splitlines()
    assert lines
    assert all(" request_id=degraded-1 " in line for line in lines), lines
    text = "\n".join(lines)
    assert "[CACHE] provider=plantnet miss" in text
    assert "[FALLBACK] degraded answer" in text
    assert "Partial result from Plant.id only (Pl@ntNet error)." in text
    perf = [line for line in lines if "[PERF]" in line]
    assert len(perf) == 1
    assert re.search(r"\[PERF\] identify status=200 total_ms=\d+ plant_id=ok:\d+ms plantnet=error:\d+ms$", perf[0])


def test_a_503_is_a_fallback_line(api_client, mocked_responses, console):
    mocked_responses.post(PLANT_ID_URL, status=500, body="down")
    mocked_responses.post(PLANTNET_URL, status=503, body="down")

    response = identify(api_client, "down-1")

    assert response.status_code == 503
    text = console.getvalue()
    assert "request_id=down-1 [FALLBACK] 503 (Retry-After " in text
    assert "request_id=down-1 [PERF] identify status=503 total_ms=" in text


def test_json_lines_parse_with_their_fields(api_client, plant_id_ok, plantnet_ok, console):
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    handler.setFormatter(json_formatter())

    identify(api_client, "json-1")
    identify(api_client, "json-2")  # answered from the cache
    logging.getLogger("tests.outside").warning("between requests")

    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    assert lines
    assert all(line.keys() >= JSON_FIELDS for line in lines), lines
    by_id = {line["request_id"] for line in lines}
    assert by_id == {"json-1", "json-2", NO_REQUEST}
    assert {"level": "INFO", "logger": "apps.plant_identification.clients.base", "request_id": "json-2"}.items() <= (
        next(line for line in lines if line["message"] == "[CACHE] provider=plantnet hit").items()
    )
    assert any(line["message"].startswith("[PERF] identify status=200") for line in lines)
    assert lines[-1]["message"] == "between requests"
    assert lines[-1]["level"] == "WARNING"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", lines[-1]["time"])


@BOOM_URLS
def test_a_json_line_carries_the_exception_text(console):
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    handler.setFormatter(json_formatter())

    Client(raise_request_exception=False).get("/boom/", headers={"X-Request-ID": "boom-json"})

    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    assert all(line["request_id"] == "boom-json" for line in lines)
    failure = next(line for line in lines if line["logger"] == "django.request")
    assert "ZeroDivisionError: the view failed" in failure["exception"]
    assert failure["level"] == "ERROR"


def test_an_unexpected_exception_in_a_provider_thread_is_an_error_line_with_the_request_id(records):
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, failing(RuntimeError("a bug"))),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET)),
    }

    def view(request):
        plant_identify(request=make_request(), clients=clients)
        return HttpResponse()

    response = RequestIdMiddleware(view)(RequestFactory().get("/", headers={"X-Request-ID": "bug-1"}))

    assert response["X-Request-ID"] == "bug-1"
    [error] = records.matching("[ERROR] plant_id call raised unexpectedly")
    assert error.request_id == "bug-1"
    assert error.threadName.startswith("provider")
    assert error.exc_info is not None


@pytest.mark.parametrize("use_json", [False, True])
def test_api_keys_are_kept_out_of_every_line(settings, console, use_json):
    if use_json:
        next(h for h in logging.getLogger().handlers if h.name == "console").setFormatter(json_formatter())
    key = settings.PLANTNET_API_KEY
    log = logging.getLogger("tests.secrets")

    log.warning("calling https://plantnet.test/v2/identify/all?api-key=%s", key)
    try:
        raise ValueError(f"failed with url ...?api-key={key}")
    except ValueError:
        log.exception("[ERROR] and its traceback")

    text = console.getvalue()
    assert key not in text
    assert text.count("[redacted]") == 2
    assert "ValueError: failed with url ...?api-key=[redacted]" in (
        json.loads(text.splitlines()[-1])["exception"] if use_json else text
    )


def test_outside_any_request_the_id_is_a_dash(console):
    logging.getLogger("tests.outside").warning("no request here")

    assert f"request_id={NO_REQUEST} no request here" in console.getvalue()


# ---------------------------------------------------------------------------- LOG_FORMAT, read at start-up
def manage(*args, **env) -> subprocess.CompletedProcess:
    prefixes = ("PLANT", "DJANGO_", "LOG_", "DATABASE", "REDIS", "IDENTIFY_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    clean.update({"DJANGO_DEBUG": "true", **env})
    return subprocess.run(  # noqa: S603 - the arguments are this file's own
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


SHELL_LOGS = "import logging; logging.getLogger('tests.start').warning('started %s', 'up')"


@pytest.mark.slow
def test_log_format_json_writes_one_json_object_per_line():
    result = manage("shell", "-c", SHELL_LOGS, LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines() if "tests.start" in line]
    assert {"level": "WARNING", "logger": "tests.start", "message": "started up", "request_id": "-"}.items() <= (
        line.items()
    )


@pytest.mark.slow
def test_log_format_defaults_to_text():
    result = manage("shell", "-c", SHELL_LOGS)

    assert result.returncode == 0, result.stderr
    assert re.search(r"^\S+ \S+ WARNING tests\.start request_id=- started up$", result.stderr, re.MULTILINE)


@pytest.mark.slow
def test_an_unknown_log_format_stops_start_up_naming_it():
    result = manage("check", LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json, got 'xml'" in result.stderr
