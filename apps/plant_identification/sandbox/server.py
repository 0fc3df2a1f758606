"""The sandbox HTTP server: Plant.id v3 and Pl@ntNet v2 routes, plus a small control API.

Routes (all under ``/sandbox/``):
- ``POST plant-id/api/v3/identification`` (201), ``GET plant-id/api/v3/usage_info``;
- ``POST plantnet/v2/identify/<project>?api-key=...`` (200);
- ``GET/POST _control/faults`` (read / merge the fault plan), ``GET _control/stats``, ``POST _control/reset``.
"""

import base64
import binascii
import email.parser
import hashlib
import json
import logging
import socket
import struct
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from apps.plant_identification.sandbox import SANDBOX_PATH
from apps.plant_identification.sandbox.catalogue import CATALOGUE, species_for
from apps.plant_identification.sandbox.faults import FaultPlan
from apps.plant_identification.sandbox.responses import boom, plant_id_identification, plantnet_identification

logger = logging.getLogger(__name__)

PLANT_ID = f"{SANDBOX_PATH}plant-id/api/v3"
PLANTNET = f"{SANDBOX_PATH}plantnet/v2"
CONTROL = f"{SANDBOX_PATH}_control"
ORGANS = {"leaf", "flower", "fruit", "bark", "auto", "habit", "other"}
PLANTNET_MAX_BYTES = 50 * 1024 * 1024
PLANTNET_DAILY_QUOTA = 500
# Plant.id's plain-text error sentences, as its API sends them.
PLANT_ID_ERRORS = {
    401: "The specified api key not found.",
    429: "The specified api key does not have sufficient number of available credits.",
}


def _seconds_to_utc_midnight() -> int:
    now = datetime.now(UTC)
    return int((now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) - now).total_seconds())


class SandboxState:
    """What the running sandbox knows: its fault plan, request counts and Pl@ntNet's daily counters."""

    def __init__(self, seed: int = 0, plantnet_daily_quota: int = PLANTNET_DAILY_QUOTA) -> None:
        self.faults = FaultPlan(seed)
        self.plantnet_daily_quota = plantnet_daily_quota
        self.stats: Counter = Counter()
        self.plantnet_used: Counter = Counter()
        self.lock = threading.Lock()

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1


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
        path = urlsplit(self.path).path
        if path == f"{CONTROL}/faults":
            return self._json(200, self.state.faults.describe())
        if path == f"{CONTROL}/stats":
            return self._json(200, dict(self.state.stats))
        if path == f"{PLANT_ID}/usage_info":
            return self._usage_info()
        return self._json(404, boom(404, "Not Found", "Not Found"))

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == f"{CONTROL}/faults":
            try:
                return self._json(200, self.state.faults.update(json.loads(body or b"{}")))
            except (ValueError, TypeError) as exc:
                return self._json(400, {"detail": str(exc)})
        if url.path == f"{CONTROL}/reset":
            with self.state.lock:
                self.state.stats.clear()
                self.state.plantnet_used.clear()
            return self._json(200, {"reset": True})
        if url.path == f"{PLANT_ID}/identification":
            return self._provider("plant_id", self._plant_id, body, parse_qs(url.query))
        if url.path.startswith(f"{PLANTNET}/identify/"):
            return self._provider(
                "plantnet", self._plantnet, body, parse_qs(url.query), project=url.path.rsplit("/", 1)[-1]
            )
        return self._json(404, boom(404, "Not Found", "Not Found"))

    # ------------------------------------------------------------------ faults
    def _provider(self, provider: str, answer, body: bytes, query: dict, **kwargs) -> None:
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
        if fault:
            return self._fault(provider, fault)
        return answer(body, query, **kwargs)

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
        if fault == "not_found":
            return self._json(404, boom(404, "Not Found", "Species not found"))
        return self._json(201, plant_id_identification(None, images=1, details=set(), health=False))  # not_plant

    def _error(self, provider: str, status: int, reason: str, message: str, headers: dict | None = None) -> None:
        """An error as each provider sends it: Plant.id a plain-text sentence, Pl@ntNet a Boom JSON body."""
        if provider == "plant_id":
            return self._text(status, PLANT_ID_ERRORS.get(status, reason), headers=headers)
        return self._json(status, boom(status, reason, message), headers=headers)

    # ------------------------------------------------------------------ Plant.id v3
    def _plant_id(self, body: bytes, query: dict) -> None:
        if not self.headers.get("Api-Key"):
            return self._text(401, "No api key provided.")
        try:
            payload = json.loads(body)
            images = [base64.b64decode(image.split(",", 1)[-1], validate=True) for image in payload["images"]]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return self._text(400, "Invalid image data")
        if not images or not all(images):
            return self._text(400, "Missing image data")
        details = set((query.get("details") or [""])[0].split(","))
        answer = plant_id_identification(
            species_for(images[0]),
            images=len(images),
            details=details,
            health=payload.get("health") == "all",
            latitude=payload.get("latitude"),
            longitude=payload.get("longitude"),
        )
        self.state.count("plant_id:answered")
        return self._json(201, answer)

    def _usage_info(self) -> None:
        used = self.state.stats["plant_id:answered"]
        return self._json(
            200,
            {
                "active": True,
                "credit_limits": {"day": None, "week": None, "month": None, "total": 100000},
                "used": {"day": used, "week": used, "month": used, "total": used},
                "can_use_credits": {"value": True, "reason": None},
                "remaining": {"day": None, "week": None, "month": None, "total": 100000 - used},
            },
        )

    # ------------------------------------------------------------------ Pl@ntNet v2
    def _plantnet(self, body: bytes, query: dict, project: str) -> None:
        key = (query.get("api-key") or [""])[0]
        if not key:
            return self._error("plantnet", 401, "Unauthorized", "Invalid API key")
        if len(body) > PLANTNET_MAX_BYTES:
            return self._json(
                413,
                boom(
                    413,
                    "Payload Too Large",
                    f"Payload content length greater than maximum allowed: {PLANTNET_MAX_BYTES}",
                ),
            )
        images, organs = self._multipart(body)
        if not 1 <= len(images) <= 5:
            return self._json(400, boom(400, "Bad Request", '"images" must contain between 1 and 5 items'))
        if len(organs) != len(images) or not set(organs) <= ORGANS:
            return self._json(400, boom(400, "Bad Request", '"organs" must match "images", one valid organ each'))
        if any(not image.startswith((b"\xff\xd8", b"\x89PNG")) for image in images):
            return self._json(415, boom(415, "Unsupported Media Type", "only JPEG and PNG images are accepted"))
        with self.state.lock:
            self.state.plantnet_used[key] += 1
            remaining = self.state.plantnet_daily_quota - self.state.plantnet_used[key]
        headers = {
            "RateLimit-Policy": f'"dailyQuota";q={self.state.plantnet_daily_quota};w=86400',
            "RateLimit": f'"dailyQuota";r={max(remaining, 0)};t={_seconds_to_utc_midnight()}',
        }
        if remaining < 0:
            return self._json(429, boom(429, "Too Many Requests", "Too Many Requests"), headers=headers)
        ranked = species_for(images[0])
        if ranked is None and (query.get("no-reject") or ["false"])[0] != "true":
            return self._json(404, boom(404, "Not Found", "Species not found"), headers=headers)
        answer = plantnet_identification(
            ranked or list(CATALOGUE),
            project=project,
            organs=organs,
            image_ids=[hashlib.md5(image).hexdigest() for image in images],  # noqa: S324 - an id, not security
            nb_results=int((query.get("nb-results") or ["5"])[0]),
            related_images=(query.get("include-related-images") or ["false"])[0] == "true",
            remaining=remaining,
        )
        self.state.count("plantnet:answered")
        return self._json(200, answer, headers=headers)

    def _multipart(self, body: bytes) -> tuple[list[bytes], list[str]]:
        content_type = self.headers.get("Content-Type", "")
        message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        images, organs = [], []
        for part in message.get_payload() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if name == "images":
                images.append(part.get_payload(decode=True) or b"")
            elif name == "organs":
                organs.append((part.get_payload(decode=True) or b"").decode())
        return images, organs

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


def sandbox_start(host: str = "127.0.0.1", port: int = 0, *, seed: int = 0) -> SandboxServer:
    """Start a sandbox in a background thread; ``port`` 0 picks a free one."""
    server = SandboxServer((host, port), SandboxState(seed))
    threading.Thread(target=server.serve_forever, name="provider-sandbox", daemon=True).start()
    return server
