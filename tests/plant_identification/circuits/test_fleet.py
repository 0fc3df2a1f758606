"""Several real worker processes sharing one real Redis: the circuit opens once for the fleet, fail_max
and success_threshold hold across processes, half-open admits one trial fleet-wide, and the failure-rate and
slow-call rules and the recent latency are measured over every process's calls."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django_redis import get_redis_connection

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.latency import RecentLatency
from apps.plant_identification.providers import Provider

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow
PROCESSES, THREADS = 8, 4


class Fleet:
    """Starts worker processes for a scenario and collects what each saw."""

    def __init__(self) -> None:
        self.prefix = f"fleet-{uuid.uuid4().hex}"
        self.redis = get_redis_connection("circuits")
        self.now = 1_000_000.0
        self.redis.set(f"{self.prefix}:now", self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.redis.set(f"{self.prefix}:now", self.now)

    def count(self, name: str) -> int:
        return int(self.redis.get(f"{self.prefix}:{name}") or 0)

    def run(self, scenario: str, *, release_after_ready: bool = False, env: dict | None = None) -> list[dict]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PLANT_ID_CIRCUIT_FAIL_MAX": "10",
            "PLANT_ID_CIRCUIT_RESET_TIMEOUT": "60",
            "PLANT_ID_CIRCUIT_SUCCESS_THRESHOLD": "2",
            **(env or {}),
        }
        for key in ("go", "ready", "release", "running", "peak", "rejected"):
            self.redis.delete(f"{self.prefix}:{key}")
        processes = [
            subprocess.Popen(  # noqa: S603 - our own worker module
                [
                    sys.executable,
                    "-m",
                    "tests.plant_identification.circuits.fleet_worker",
                    scenario,
                    self.prefix,
                    str(THREADS),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        self._wait(lambda: self.count("ready") == PROCESSES, processes)
        self.redis.set(f"{self.prefix}:go", 1)
        if release_after_ready:  # the trial completes only once every other thread has been turned away
            self._wait(lambda: self.count("rejected") == PROCESSES * THREADS - 1, processes)
            self.redis.set(f"{self.prefix}:release", 1)
        reports = []
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            assert "Traceback" not in err, err  # a thread that died (its calls are missing from the report)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports

    @staticmethod
    def _wait(condition, processes) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            for process in processes:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read())
            if time.monotonic() > deadline:
                raise TimeoutError("fleet did not get ready")
            time.sleep(0.01)

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.redis.delete(*keys)


@pytest.fixture
def fleet():
    breaker_for(Provider.PLANT_ID).close()
    fleet = Fleet()
    yield fleet
    fleet.cleanup()
    breaker_for(Provider.PLANT_ID).close()


def test_fleet_trips_once_and_half_open_admits_one_trial(fleet):
    assert settings.REDIS_URL
    reports = fleet.run("trip")
    events = Counter(event for report in reports for event in report["events"])
    assert events == {"closed>open": 1}  # one transition for the whole fleet, not one per process
    assert fleet.count("upstream") <= 10 + PROCESSES * THREADS - 1  # fail_max plus the calls already in flight
    assert all(report["results"][-1] == "rejected" for report in reports)

    fleet.advance(60)
    reports = fleet.run("trial", release_after_ready=True)
    results = Counter(result for report in reports for result in report["results"])
    assert results == {"trial": 1, "rejected": PROCESSES * THREADS - 1}
    assert fleet.count("peak") == 1  # never two trials at once, fleet-wide
    events = Counter(event for report in reports for event in report["events"])
    assert events == {"open>half-open": 1}
    assert breaker_for(Provider.PLANT_ID).success_counter == 1  # success_threshold is 2: still half-open

    reports = fleet.run("trial", release_after_ready=True)  # another process's trial is the second success
    events = Counter(event for report in reports for event in report["events"])
    assert events == {"half-open>closed": 1}
    assert breaker_for(Provider.PLANT_ID).current_state == "closed"


def test_the_failure_rate_is_measured_fleet_wide(fleet):
    """16 calls from 32 threads in 8 processes, in a fixed order: 30 % then 40 % of the last 10 fail (closed),
    then 50 % (the 12th call opens it for every process)."""
    pattern = "..x..x..x.xx...."
    fleet.redis.set(f"{fleet.prefix}:pattern", pattern)
    rate = {"PLANT_ID_CIRCUIT_FAILURE_RATE": "50", "PLANT_ID_CIRCUIT_WINDOW": "10", "PLANT_ID_CIRCUIT_MIN_CALLS": "6"}
    reports = fleet.run("sequence", env=rate)

    seen = dict(result for report in reports for result in report["results"])
    expected = ["failed" if call == "x" else "ok" for call in pattern[:12]] + ["rejected"] * 4
    assert [seen[index] for index in range(len(pattern))] == expected
    assert Counter(event for report in reports for event in report["events"]) == {"closed>open": 1}
    assert len({index for report in reports for index, _ in report["results"]}) == len(pattern)


def test_failed_attempts_in_a_row_are_counted_fleet_wide_and_any_success_ends_the_run(fleet):
    """Failed attempts (``a``) and calls from 32 threads in 8 processes, in a fixed order: each attempt reads the
    fleet's run of failed attempts; a success in any process ends it, a failed call does not."""
    pattern = "aaa.aaxa..a"
    fleet.redis.set(f"{fleet.prefix}:pattern", pattern)
    reports = fleet.run("sequence")

    seen = dict(result for report in reports for result in report["results"])
    assert [seen[index] for index in range(len(pattern))] == [
        *("afail 1", "afail 2", "afail 3", "ok"),
        *("afail 1", "afail 2", "failed", "afail 3", "ok", "ok", "afail 1"),
    ]
    assert breaker_for(Provider.PLANT_ID).record().afail == 1
    assert breaker_for(Provider.PLANT_ID).current_state == "closed"  # failed attempts open nothing by themselves


def test_slow_calls_open_the_circuit_fleet_wide_and_their_latency_is_the_fleets(fleet):
    """The same order of 16 calls, with ``s`` a success taking 3 s (on the shared clock) where 2 s is the limit:
    30 % then 40 % of the last 10 are slow (closed), then 50 % (the 12th call, a success, opens it)."""
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.store.clear_latency()
    pattern = "..s..s..s.ss...."
    fleet.redis.set(f"{fleet.prefix}:pattern", pattern)
    slow_rule = {
        "PLANT_ID_CIRCUIT_SLOW_CALL_DURATION": "2",
        "PLANT_ID_CIRCUIT_SLOW_CALL_RATE": "50",
        "PLANT_ID_CIRCUIT_WINDOW": "10",
        "PLANT_ID_CIRCUIT_MIN_CALLS": "6",
    }
    reports = fleet.run("sequence", env=slow_rule)

    seen = dict(result for report in reports for result in report["results"])
    assert [seen[index] for index in range(len(pattern))] == ["ok"] * 12 + ["rejected"] * 4
    assert Counter(event for report in reports for event in report["events"]) == {"closed>open": 1}
    snapshot = breaker.snapshot()
    assert (breaker.current_state, snapshot.reason) == ("open", "slow")
    # Every process's 12 successes, 5 of them 3 s long: the fleet's latency, read in this (other) process.
    assert snapshot.latency == RecentLatency(p50_ms=0, p95_ms=3000, samples=12, scope="fleet")
    breaker.store.clear_latency()
