"""The sandbox HTTP server: Plant.id v3 and Pl@ntNet v2 routes, plus a small control API.

Routes (all under ``/sandbox/``):
- ``plant-id/api/v3/``: ``POST identification`` and ``POST health_assessment`` (201, ``?async=true`` answers
  ``CREATED`` without a result), ``GET`` / ``DELETE identification/<access token or custom_id>``,
  ``POST identification/<token>/feedback``, ``GET usage_info``; errors are plain-text sentences;
- ``plantnet/v2/``: ``POST identify/<project>?api-key=...`` (multipart files) and ``GET`` the same with image
  URLs (200); errors are Boom JSON bodies;
- ``_control/``: ``GET/POST faults`` (read / merge the fault plan), ``GET stats``, ``POST reset``.

The fault plan applies to the identification requests (the ones that cost credits or quota).
"""

import json
import logging
import math
import re
import socket
import struct
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from apps.plant_identification.periods import seconds_to_utc_midnight
from apps.plant_identification.sandbox import SANDBOX_PATH
from apps.plant_identification.sandbox.faults import FaultPlan
from apps.plant_identification.sandbox.plant_id_answers import (
    PROCESSING_SECONDS,
    StoredIdentification,
    identification_body,
)
from apps.plant_identification.sandbox.plant_id_request import (
    BadRequest,
    plant_id_request,
    query_details,
    query_language,
)
from apps.plant_identification.sandbox.plantnet import BoomError, boom, plantnet_identification, plantnet_request
from apps.plant_identification.sandbox.store import OUT_OF_CREDITS, PlantIdStore, new_access_token

logger = logging.getLogger(__name__)

PLANT_ID = f"{SANDBOX_PATH}plant-id/api/v3"
PLANTNET = f"{SANDBOX_PATH}plantnet/v2"
CONTROL = f"{SANDBOX_PATH}_control"
PLANTNET_DAILY_QUOTA = 500
PLANT_ID_CREDITS = 100_000
IDENTIFICATION = re.compile(r"/identification/(?P<key>[^/]+)(?P<feedback>/feedback)?")
# Plant.id's plain-text error sentences, as its API sends them.
NO_API_KEY = "No api key provided."
NO_SUCH_IDENTIFICATION = "The requested identification does not exist."
PLANT_ID_ERRORS = {
    401: "The specified api key not found.",
    429: OUT_OF_CREDITS,
}


def _seconds_to_utc_midnight(now: float) -> int:
    return max(1, math.ceil(seconds_to_utc_midnight(now)))


class SandboxState:
    """What the running sandbox knows: its fault plan, request counts, Plant.id's identifications and credits,
    and Pl@ntNet's daily counters."""

    def __init__(
        self,
        seed: int = 0,
        plantnet_daily_quota: int = PLANTNET_DAILY_QUOTA,
        plant_id_credits: int = PLANT_ID_CREDITS,
        plant_id_keys: frozenset[str] | None = None,
        clock=time.time,
    ) -> None:
        self.faults = FaultPlan(seed)
        self.plantnet_daily_quota = plantnet_daily_quota
        self.plant_id = PlantIdStore(plant_id_credits, keys=plant_id_keys)
        self.stats: Counter = Counter()
        self.plantnet_used: Counter = Counter()  # identifications per (api key, UTC day): the quota resets at 00:00
        self.lock = threading.Lock()
        self.clock = clock  # epoch seconds: the UTC day of Pl@ntNet's quota (tests move it)

    def plantnet_take(self, key: str) -> tuple[bool, int, int]:
        """Count one identification against the key's quota today, unless it is used up: (taken, remaining
        after it, seconds until 00:00 UTC)."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).date()
        with self.lock:
            used = self.plantnet_used[(key, day)]
            taken = used < self.plantnet_daily_quota
            if taken:
                used = self.plantnet_used[(key, day)] = used + 1
        return taken, max(self.plantnet_daily_quota - used, 0), _seconds_to_utc_midnight(now)

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1

    def reset(self) -> None:
        """Clear the counters: request counts, Pl@ntNet's daily use and Plant.id's used credits."""
        with self.lock:
            self.stats.clear()
            self.plantnet_used.clear()
        self.plant_id.reset_credits()


class SandboxHandler(BaseHTTPRequestHandler):
    """One request to the sandbox."""

    server_version = "PlantSandbox/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def log_message(self, format, *args):
        logger.debug("sandbox %s", format % args)

    # ------------------------------------------------------------------ routing
    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(url.query)
        if url.path.startswith(f"{PLANT_ID}/"):
            return self._plant_id(url.path.removeprefix(PLANT_ID), query, body)
        if url.path.startswith(f"{PLANTNET}/"):
            return self._plantnet_route(url.path.removeprefix(PLANTNET), query, body)
        if url.path.startswith(f"{CONTROL}/"):
            return self._control(url.path.removeprefix(CONTROL), body)
        return self._json(404, {"detail": "Not found."})

    def _control(self, path: str, body: bytes) -> None:
        method = self.command
        if (method, path) == ("GET", "/faults"):
            return self._json(200, self.state.faults.describe())
        if (method, path) == ("POST", "/faults"):
            try:
                return self._json(200, self.state.faults.update(json.loads(body or b"{}")))
            except (ValueError, TypeError) as exc:
                return self._json(400, {"detail": str(exc)})
        if (method, path) == ("GET", "/stats"):
            return self._json(200, dict(self.state.stats))
        if (method, path) == ("POST", "/reset"):
            self.state.reset()
            return self._json(200, {"reset": True})
        return self._json(404, {"detail": "Not found."})

    def send_error(self, code, message=None, explain=None):
        """Errors the HTTP layer raises itself (an unsupported method, a bad request line) in the format of
        the provider whose path was asked, never the standard library's HTML page."""
        path = urlsplit(getattr(self, "path", "") or "").path
        self.close_connection = True
        if path.startswith(f"{PLANT_ID}/"):
            return self._text(405 if code == 501 else code, "Method not allowed." if code == 501 else message or "")
        if path.startswith(f"{PLANTNET}/"):
            status = 404 if code == 501 else code  # Hapi answers a method it has no route for with a 404
            reason = self.responses.get(status, ("Error",))[0]
            return self._json(status, boom(status, reason, reason))
        return self._json(code, {"detail": message or self.responses.get(code, ("Error",))[0]})

    # ------------------------------------------------------------------ faults
    def _with_faults(self, provider: str, answer) -> None:
        """Answer through the fault plan: ``answer(fault)`` runs for a normal call, or a fault that shapes the
        answer itself (Plant.id ``not_plant``)."""
        self.state.count(f"{provider}:requests")
        fault, latency = self.state.faults.draw(provider)
        if fault:
            self.state.count(f"{provider}:fault:{fault}")
        if fault == "timeout":
            time.sleep(self.state.faults.providers[provider].hang_seconds)
            self.close_connection = True
            return None
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        time.sleep(latency)
        if fault and fault != "not_plant":
            return self._fault(provider, fault)
        return answer(fault)

    def _fault(self, provider: str, fault: str) -> None:
        retry_after = self.state.faults.providers[provider].retry_after
        if fault == "500":
            return self._error(provider, 500, "Internal Server Error", "An internal server error occurred")
        if fault == "502":
            return self._text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        if fault == "429":
            headers = (
                {"Retry-After": str(retry_after)}
                if provider == "plant_id"
                else {"RateLimit": f'"dailyQuota";r=0;t={retry_after}'}
            )
            return self._error(provider, 429, "Too Many Requests", "Too Many Requests", headers=headers)
        if fault == "401":
            return self._error(provider, 401, "Unauthorized", "Invalid API key")
        if fault == "malformed":
            return self._text(
                201 if provider == "plant_id" else 200, '{"result": {"classification": [', "application/json"
            )
        return self._json(404, boom(404, "Not Found", "Species not found"))  # not_found

    def _error(self, provider: str, status: int, reason: str, message: str, headers: dict | None = None) -> None:
        """An error as each provider sends it: Plant.id a plain-text sentence, Pl@ntNet a Boom JSON body."""
        if provider == "plant_id":
            return self._text(status, PLANT_ID_ERRORS.get(status, reason), headers=headers)
        return self._json(status, boom(status, reason, message), headers=headers)

    # ------------------------------------------------------------------ Plant.id v3
    def _plant_id(self, path: str, query: dict, body: bytes) -> None:
        creating = {"/identification": False, "/health_assessment": True}
        stored = IDENTIFICATION.fullmatch(path)
        if path not in creating and path != "/usage_info" and not stored:
            return self._text(404, "Not found.")
        if path in creating or (stored and stored["feedback"]):
            allowed = ("POST",)
        else:
            allowed = ("GET", "DELETE") if stored else ("GET",)
        if self.command not in allowed:
            return self._text(405, "Method not allowed.", headers={"Allow": ", ".join(allowed)})
        api_key = self.headers.get("Api-Key")
        if not api_key:
            return self._text(401, NO_API_KEY)
        refusal = self.state.plant_id.key_refusal(api_key)
        if refusal:
            return self._text(401, refusal)
        if path in creating:
            return self._with_faults(
                "plant_id", lambda fault: self._plant_id_create(api_key, body, query, creating[path], fault)
            )
        if path == "/usage_info":
            self.state.count("plant_id:usage_info")
            return self._json(200, self.state.plant_id.usage(api_key))
        if stored["feedback"]:
            return self._plant_id_feedback(stored["key"], body)
        if self.command == "DELETE":
            if not self.state.plant_id.delete(stored["key"]):
                return self._text(404, NO_SUCH_IDENTIFICATION)
            return self._json(200, True)
        return self._plant_id_retrieve(stored["key"], query)

    def _plant_id_create(self, api_key: str, body: bytes, query: dict, assessment: bool, fault: str | None) -> None:
        try:
            request = plant_id_request(body, self.headers.get("Content-Type", ""), query)
        except BadRequest as exc:
            return self._text(400, str(exc))
        now = time.time()
        record = StoredIdentification(
            access_token=new_access_token(),
            request=request,
            health_only=assessment or request.health == "only",
            not_plant=fault == "not_plant",
            created=now,
            completed=None if request.asynchronous else now + PROCESSING_SECONDS,
        )
        if not self.state.plant_id.charge(api_key, 2 if record.has_health else 1):  # health costs one more
            return self._text(429, OUT_OF_CREDITS)
        self.state.plant_id.add(record)
        self.state.count("plant_id:answered")
        return self._json(201, identification_body(record, request.details, request.language))

    def _plant_id_retrieve(self, key: str, query: dict) -> None:
        """The stored identification, with the detail views and language asked now (else those asked at first)."""
        record = self.state.plant_id.retrieve(key, time.time())
        if record is None:
            return self._text(404, NO_SUCH_IDENTIFICATION)
        try:
            language = query_language(query) if "language" in query else record.request.language
        except BadRequest as exc:
            return self._text(400, str(exc))
        details = query_details(query) or record.request.details
        return self._json(200, identification_body(record, details, language))

    def _plant_id_feedback(self, key: str, body: bytes) -> None:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return self._text(400, "Invalid json data")
        if not isinstance(payload, dict):
            return self._text(400, "Invalid json data")
        feedback = {name: payload[name] for name in ("comment", "rating") if payload.get(name) is not None}
        if not feedback:
            return self._text(400, "Empty feedback provided.")
        if not self.state.plant_id.add_feedback(key, feedback):
            return self._text(404, NO_SUCH_IDENTIFICATION)
        return self._json(200, True)

    # ------------------------------------------------------------------ Pl@ntNet v2
    def _plantnet_route(self, path: str, query: dict, body: bytes) -> None:
        project = path.removeprefix("/identify/")
        if project == path or not project or "/" in project or self.command not in ("GET", "POST"):
            return self._json(404, boom(404, "Not Found", "Not Found"))
        return self._with_faults("plantnet", lambda _fault: self._plantnet(project, query, body))

    def _plantnet(self, project: str, query: dict, body: bytes) -> None:
        key = (query.get("api-key") or [""])[0]
        if not key:
            return self._error("plantnet", 401, "Unauthorized", "Invalid API key")
        try:
            request = plantnet_request(self.command, project, query, body, self.headers.get("Content-Type", ""))
        except BoomError as exc:
            return self._json(exc.status, exc.body)
        taken, remaining, reset = self.state.plantnet_take(key)
        headers = {
            "RateLimit-Policy": f'"dailyQuota";q={self.state.plantnet_daily_quota};w=86400',
            "RateLimit": f'"dailyQuota";r={remaining};t={reset}',
        }
        if not taken:
            return self._json(429, boom(429, "Too Many Requests", "Too Many Requests"), headers=headers)
        if request.ranking is None and not request.no_reject:
            return self._json(404, boom(404, "Not Found", "Species not found"), headers=headers)
        self.state.count("plantnet:answered")
        return self._json(200, plantnet_identification(request, remaining), headers=headers)

    # ------------------------------------------------------------------ replies
    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _text(self, status: int, text: str, content_type: str = "text/plain", headers: dict | None = None) -> None:
        self._send(status, text.encode(), content_type, headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class SandboxServer(ThreadingHTTPServer):
    """A threaded sandbox server that carries its state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # a service under load opens many connections at once

    def __init__(self, address: tuple[str, int], state: SandboxState | None = None) -> None:
        super().__init__(address, SandboxHandler)
        self.state = state or SandboxState()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def plant_id_url(self) -> str:
        return f"{self.base_url}{PLANT_ID}"

    def plantnet_url(self) -> str:
        return f"{self.base_url}{PLANTNET}"


def sandbox_start(host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, **state_options) -> SandboxServer:
    """Start a sandbox in a background thread; ``port`` 0 picks a free one; ``state_options`` go to
    ``SandboxState`` (``plantnet_daily_quota``, ``plant_id_credits``)."""
    server = SandboxServer((host, port), SandboxState(seed, **state_options))
    threading.Thread(target=server.serve_forever, name="provider-sandbox", daemon=True).start()
    return server
