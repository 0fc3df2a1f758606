"""Both providers at a fixed latency for almost no CPU: the wire fixtures replayed, each request read and dropped.

The provider sandbox decodes every photo it is sent (it ranks species from the pixels), which on a 2-core
machine takes the CPU the service is being measured for. This stand-in answers ``POST .../identification``
(Plant.id v3: 201) and ``POST .../identify/<project>`` (Pl@ntNet v2: 200) with the bodies of
``tests/fixtures/`` after ``--latency`` milliseconds, whatever was sent; anything else is a 404.

Run: ``python bench/fixed_upstream.py --port 8765 --latency 500``; point ``PLANT_ID_API_URL`` at
``http://127.0.0.1:8765/plant-id/api/v3`` and ``PLANTNET_API_URL`` at ``http://127.0.0.1:8765/plantnet/v2``.
"""

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
ANSWERS = {  # path test -> (status, body)
    "/identification": (201, (FIXTURES / "plant_id_identification_ok.json").read_bytes()),
    "/identify/": (200, (FIXTURES / "plantnet_identify_ok.json").read_bytes()),
}


class Handler(BaseHTTPRequestHandler):
    """Reads the request whole, waits the latency, replays the provider's answer."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the providers and the service's sessions use it
    latency = 0.5

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
        time.sleep(self.latency)
        path = urlsplit(self.path).path
        status, body = next(
            (answer for test, answer in ANSWERS.items() if test in path), (404, b'{"error": "not found"}')
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        """Silent: a log line per request would be CPU too."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=500, help="milliseconds before each answer")
    args = parser.parse_args()
    Handler.latency = args.latency / 1000
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
