"""One worker process of a simulated fleet (run by test_fleet.py): threads calling through the breaker.

Time comes from a Redis key that the test moves, so every process shares one fake clock (a slow call moves
it too, by the time the call takes, while no other call runs). The upstream is simulated: each call that gets
through increments a Redis counter (and, in the trial scenario, waits until the test releases it). Prints one
JSON line: what this process saw. Its Redis waits as long as a loaded machine needs (the test settings).
"""

import json
import os
import sys
import threading
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django_redis import get_redis_connection  # noqa: E402

from apps.plant_identification.circuits.breaker import breaker_for  # noqa: E402
from apps.plant_identification.circuits.events import circuit_events_pending  # noqa: E402
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError  # noqa: E402
from apps.plant_identification.providers import Provider  # noqa: E402

PREFIX = sys.argv[2]
SLOW_CALL_SECONDS = 3.0  # how long an ``s`` call of a sequence takes on the shared clock
redis = get_redis_connection("circuits")


def shared_clock() -> float:
    return float(redis.get(f"{PREFIX}:now"))


def wait_for(key: str) -> None:
    deadline = time.monotonic() + 30
    while not redis.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(key)
        time.sleep(0.002)


def failing_call(breaker, results: list) -> None:
    """Call until rejected; every call that gets through fails like a 5xx."""
    while True:
        try:
            with breaker.protect():
                redis.incr(f"{PREFIX}:upstream")
                time.sleep(0.005)
                raise ProviderUnavailableError("plant_id", "HTTP 503")
        except ProviderUnavailableError:
            results.append("failed")
        except ProviderCircuitOpenError:
            results.append("rejected")
            return


def trial_call(breaker, results: list) -> None:
    """One call while the circuit is half-open: a trial that succeeds once the test releases it."""
    try:
        with breaker.protect():
            running = redis.incr(f"{PREFIX}:running")
            redis.eval(
                "if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then "
                "redis.call('SET', KEYS[1], ARGV[1]) end",
                1,
                f"{PREFIX}:peak",
                running,
            )
            redis.incr(f"{PREFIX}:upstream")
            wait_for(f"{PREFIX}:release")
            redis.decr(f"{PREFIX}:running")
        results.append("trial")
    except ProviderCircuitOpenError:
        redis.incr(f"{PREFIX}:rejected")
        results.append("rejected")


def sequenced_call(breaker, results: list) -> None:
    """Take the next call of a fleet-wide sequence (``x`` fails, ``.`` succeeds at once, ``s`` succeeds slowly,
    ``a`` is a failed attempt of a call to be retried: the failed attempts in a row it reads back) and make it in
    its turn, so the calls of every process reach the breaker in one known order."""
    pattern = redis.get(f"{PREFIX}:pattern").decode()
    while (index := redis.incr(f"{PREFIX}:ticket") - 1) < len(pattern):
        while int(redis.get(f"{PREFIX}:turn") or 0) != index:
            time.sleep(0.001)
        if pattern[index] == "a":
            results.append([index, f"afail {breaker.attempt_failed().afail}"])
            redis.incr(f"{PREFIX}:turn")
            continue
        try:
            with breaker.protect():
                if pattern[index] == "x":
                    raise ProviderUnavailableError("plant_id", "HTTP 503")
                if pattern[index] == "s":
                    redis.incrbyfloat(f"{PREFIX}:now", SLOW_CALL_SECONDS)
            results.append([index, "ok"])
        except ProviderUnavailableError:
            results.append([index, "failed"])
        except ProviderCircuitOpenError:
            results.append([index, "rejected"])
        redis.incr(f"{PREFIX}:turn")


def main() -> None:
    scenario, threads = sys.argv[1], int(sys.argv[3])
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.clock = shared_clock
    target = {"trip": failing_call, "trial": trial_call, "sequence": sequenced_call}[scenario]
    results: list = []
    redis.incr(f"{PREFIX}:ready")
    wait_for(f"{PREFIX}:go")
    workers = [threading.Thread(target=target, args=(breaker, results)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    events = [f"{e.from_state}>{e.to_state}" for e in circuit_events_pending()]
    print(json.dumps({"results": results, "events": events}))


if __name__ == "__main__":
    main()
