"""The early answer, side by side: identify latency and completeness with a slow provider, early answer on vs off.

Each variant runs the whole service (gunicorn, real Redis and database, the provider sandbox), one after the other
in one invocation, on the same photos and concurrency (distinct photos: no answer-cache hit). Timeouts: Plant.id
10 s, Pl@ntNet 5 s, deadline 12 s; bulkheads 64 calls per provider per worker, so no call is shed (a late call
holds its slot after the answer went out).

Scenario A, a slow provider: Plant.id fixed 6000 ms, Pl@ntNet fixed 400 ms; early answer on (the defaults:
grace max(3.0 s, 2 x first latency)) vs off (IDENTIFY_EARLY_ANSWER=false).
Scenario B, healthy providers at their published latencies: Plant.id uniform 500-1000 ms, Pl@ntNet uniform
2000-4000 ms (sandbox seed fixed); IDENTIFY_LATE_GRACE 1.5, 3.0 (the default) and early answer off.

Run (PostgreSQL on 127.0.0.1 with trust auth, Redis db 13):
    psql -h 127.0.0.1 -U postgres -c 'create database plantid_early'     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/plantid_early REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/early_answer.py          # --requests 40 --healthy-requests 80 --clients 8
Prints, per variant: identify p50/p95/max (client wall time), the share of answers sent incomplete, the share of
identifications complete when read back 10 s after their request started and at the end (7 s after the last
answer), the provider calls the sandbox counted, and any inconsistent body; then the goal checks.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load import CIRCUITS_CLOSE, Client, Stack, multipart, percentile, photo, run

SERVICE = {
    "PLANT_ID_TIMEOUT": "10",
    "PLANTNET_TIMEOUT": "5",
    "IDENTIFY_DEADLINE": "12",
    "PLANT_ID_MAX_CONCURRENT_CALLS": "64",
    "PLANTNET_MAX_CONCURRENT_CALLS": "64",
}
OFF = {"IDENTIFY_EARLY_ANSWER": "false"}
SLOW = {"plant_id": {"latency": {"fixed": 6000}}, "plantnet": {"latency": {"fixed": 400}}}
HEALTHY = {"plant_id": {"latency": {"uniform": [500, 1000]}}, "plantnet": {"latency": {"uniform": [2000, 4000]}}}
WARM = {p: {"latency": {"fixed": 50}} for p in ("plant_id", "plantnet")}
FAST_MS = 400  # scenario A's fast provider (Pl@ntNet)
READ_AT = 10.0  # seconds after a request started that its identification is read back
END_WAIT = 7.0  # seconds after the last answer before the final read-back (the 6 s provider has answered)
PATH = "/api/v1/plant-identification/identifications/{}/"
ANSWERED = ("ok", "no_match")
SETTINGS = (
    "from django.conf import settings\n"
    f"{CIRCUITS_CLOSE}\n"
    "print(json.dumps([settings.IDENTIFY_EARLY_ANSWER, settings.IDENTIFY_LATE_GRACE, "
    "settings.IDENTIFY_LATE_GRACE_FACTOR, settings.PLANT_ID_DECISIVE_SCORE]))"
)


class ReadingBack:
    """Stands in for ``Client`` in ``run``: remembers each answer and reads its identification back (GET) at
    ``READ_AT`` seconds after the request started, from a timer thread of its own."""

    def __init__(self, client: Client) -> None:
        self.client, self.records, self.timers, self.lock = client, [], [], threading.Lock()

    def identify(self, body: bytes):
        started = time.perf_counter()
        status, headers, elapsed, payload = self.client.identify(body)
        record = {"started": started, "status": status, "elapsed": elapsed}
        if status == 200:
            record["answer"] = json.loads(payload)
            timer = threading.Timer(started + READ_AT - time.perf_counter(), self.read_back, (record,))
            timer.start()
            with self.lock:
                self.timers.append(timer)
        with self.lock:
            self.records.append(record)
        return status, headers, elapsed, payload

    def read_back(self, record: dict) -> None:
        try:
            status, _, _, payload = self.client.get(PATH.format(record["answer"]["id"]))
            record["at_10s"] = json.loads(payload) if status == 200 else {"status": status}
        except OSError as exc:
            record["at_10s"] = {"error": repr(exc)}
        record["read_at"] = time.perf_counter() - record["started"]


def inconsistencies(body: dict) -> list[str]:
    """What is wrong with one identification body: ``complete``, ``pending`` and the providers' statuses agree."""
    pending = sorted(body.get("pending") or [])
    marked = sorted(p for p, entry in body.get("providers", {}).items() if entry["status"] == "pending")
    problems = []
    if pending != marked:
        problems.append(f"pending {pending} but providers marked pending {marked}")
    if body.get("complete") != (not pending):
        problems.append(f"complete={body.get('complete')} with pending {pending}")
    return problems


def variant(label: str, plan: dict, overrides: dict[str, str], args, requests: int, first_photo: int) -> dict:
    stack = Stack(args.workers, args.threads, {**SERVICE, **overrides})
    stack.start()
    try:
        early, grace, factor, decisive = json.loads(stack.django("import json\n" + SETTINGS))
        client = Client(stack.port)
        photos = iter(range(first_photo, first_photo + 10**6))
        stack.faults(WARM)
        run(client, [multipart(photo(next(photos))) for _ in range(2 * args.clients)], args.clients)  # warm up
        stack.faults({"seed": args.seed, **plan})
        before = stack.stats()
        load = os.getloadavg()[0]
        reader = ReadingBack(client)
        run(reader, [multipart(photo(next(photos))) for _ in range(requests)], args.clients)
        last_answer = time.perf_counter()
        for timer in reader.timers:
            timer.join()
        time.sleep(max(0.0, last_answer + END_WAIT - time.perf_counter()))
        answered = [r for r in reader.records if r["status"] == 200]
        with ThreadPoolExecutor(args.clients) as pool:
            ends = list(pool.map(lambda r: client.get(PATH.format(r["answer"]["id"])), answered))
        after = stack.stats()
    finally:
        stack.stop()
    calls = {p: after.get(f"{p}:requests", 0) - before.get(f"{p}:requests", 0) for p in ("plant_id", "plantnet")}
    end_bodies = [json.loads(payload) for status, _, _, payload in ends if status == 200]
    problems = []
    for stage, bodies in (
        ("answer", [r["answer"] for r in answered]),
        ("at 10 s", [r["at_10s"] for r in answered]),
        ("end", end_bodies),
    ):
        for body in bodies:
            problems += [f"{stage} {body.get('id')}: {problem}" for problem in inconsistencies(body)]
    by_id = {body.get("id"): body for body in end_bodies}
    for r in answered:  # a late answer that arrived must be in the merged suggestions, not only in its status
        end = by_id.get(r["answer"]["id"], {})
        for provider in r["answer"]["pending"]:
            sources = {source for suggestion in end.get("suggestions", []) for source in suggestion["sources"]}
            if end.get("providers", {}).get(provider, {}).get("status") == "ok" and provider not in sources:
                problems.append(f"end {end.get('id')}: late {provider} ok but in no suggestion's sources")
    elapsed = [r["elapsed"] for r in answered]
    incomplete = [r["answer"] for r in answered if not r["answer"]["complete"]]
    first_latencies = [  # the faster provider's own latency, as the service measured it
        min(e["latency_ms"] for e in r["answer"]["providers"].values() if e["status"] in ANSWERED) for r in answered
    ]
    return {
        "label": label,
        "requests": requests,
        "answered": len(answered),
        "p50": statistics.median(elapsed),
        "p95": percentile(elapsed, 0.95),
        "max": max(elapsed),
        "incomplete": len(incomplete) / requests,
        "pending": sorted({tuple(body["pending"]) for body in incomplete}),
        "complete_10s": sum(1 for r in answered if r["at_10s"].get("complete") is True) / requests,
        "read_at_max": max(r["read_at"] for r in answered),
        "complete_end": sum(1 for body in end_bodies if body.get("complete") is True) / requests,
        "both_end": sum(1 for body in end_bodies if all(e["status"] in ANSWERED for e in body["providers"].values()))
        / requests,
        "failed": sum(  # a provider part that is neither answered nor pending (shed, timed out, lost): any stage
            1
            for body in end_bodies
            for entry in body["providers"].values()
            if entry["status"] not in (*ANSWERED, "pending")
        ),
        "cached": sum(1 for r in answered for e in r["answer"]["providers"].values() if e["cached"]),
        "calls": calls,
        "first_ms": statistics.median(first_latencies),
        "early": early,
        "grace": grace,
        "factor": factor,
        "decisive": decisive,
        "load": load,
        "problems": problems,
    }


def table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"  {'variant':28}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'incomplete':>12}{'complete':>10}"
        f"{'at 10 s':>9}{'at end':>8}{'both end':>10}{'failed':>8}{'calls pid/pn':>14}{'load':>6}"
    )
    for row in rows:
        calls = f"{row['calls']['plant_id']}/{row['calls']['plantnet']}"
        print(
            f"  {row['label']:28}{row['p50']:>8.2f}{row['p95']:>8.2f}{row['max']:>8.2f}{row['incomplete']:>12.2f}"
            f"{1 - row['incomplete']:>10.2f}{row['complete_10s']:>9.2f}{row['complete_end']:>8.2f}"
            f"{row['both_end']:>10.2f}{row['failed']:>8}{calls:>14}{row['load']:>6.1f}"
        )
    for row in rows:
        print(
            f"  {row['label']}: {row['answered']}/{row['requests']} answered; early answer "
            f"{'on' if row['early'] else 'off'}, grace {row['grace']:g} s, factor {row['factor']:g}; first answer "
            f"median {row['first_ms']:.0f} ms; pending in incomplete answers {row['pending'] or '-'}; "
            f"read back at up to t0+{row['read_at_max']:.2f} s; cached parts {row['cached']}"
        )
        for problem in row["problems"][:10]:
            print(f"    INCONSISTENT {problem}")
        if len(row["problems"]) > 10:
            print(f"    ... {len(row['problems']) - 10} more")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="scenario A, per variant")
    parser.add_argument("--healthy-requests", type=int, default=80, help="scenario B, per variant")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("A", "B"), help="run one scenario")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs; gunicorn {args.workers} workers x {args.threads} threads; "
        f"{args.clients} clients; timeouts Plant.id {SERVICE['PLANT_ID_TIMEOUT']} s, Pl@ntNet "
        f"{SERVICE['PLANTNET_TIMEOUT']} s, deadline {SERVICE['IDENTIFY_DEADLINE']} s; bulkheads "
        f"{SERVICE['PLANT_ID_MAX_CONCURRENT_CALLS']}; database {os.environ.get('DATABASE_URL', 'sqlite')}"
    )
    started = time.perf_counter()
    photos = iter(range(0, 76800, 15000))  # photo() repeats after 76,800: disjoint ranges per variant
    if args.only != "B":
        slow = [
            variant(label, SLOW, overrides, args, args.requests, next(photos))
            for label, overrides in (("early answer on (defaults)", {}), ("early answer off", OFF))
        ]
        table("A: Plant.id fixed 6000 ms, Pl@ntNet fixed 400 ms", slow)
        on, off = slow
        grace = max(on["grace"], on["factor"] * FAST_MS / 1000)
        goal = FAST_MS / 1000 + grace + 0.2
        print(
            f"  goal p95 <= fast {FAST_MS / 1000:g} + grace max({on['grace']:g}, {on['factor']:g} x "
            f"{FAST_MS / 1000:g}) = {grace:g} + 0.2 = {goal:.2f} s: on {on['p95']:.2f} s "
            f"{'MET' if on['p95'] <= goal else 'MISSED'} (margin {goal - on['p95']:+.2f} s); off {off['p95']:.2f} s"
        )
        print(
            f"  on / off p95: {on['p95'] / off['p95']:.2f}; p50 {on['p50'] / off['p50']:.2f}. Complete at t0+10 s "
            f"(goal 1.00): on {on['complete_10s']:.2f}, off {off['complete_10s']:.2f}; at the end: on "
            f"{on['complete_end']:.2f}, off {off['complete_end']:.2f} "
            f"{'MET' if min(on['complete_10s'], on['complete_end']) >= 1 else 'MISSED'}"
        )
    if args.only != "A":
        healthy = [
            variant(label, HEALTHY, overrides, args, args.healthy_requests, next(photos))
            for label, overrides in (
                ("grace 1.5 s", {"IDENTIFY_LATE_GRACE": "1.5"}),
                ("grace 3.0 s (default)", {}),
                ("early answer off", OFF),
            )
        ]
        table("B: Plant.id uniform 500-1000 ms, Pl@ntNet uniform 2000-4000 ms", healthy)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
