"""Provider calls and Plant.id credits per 100 identify requests for a realistic mix, features off vs on.

Each configuration runs the whole service (gunicorn 2 workers x 8 gthread threads, a real Redis, the database, the
provider sandbox with Plant.id fixed 600 ms and Pl@ntNet fixed 400 ms), one after the other in one invocation,
each on a fresh Redis db (10 off, 11 on: flushed first), a fresh sandbox and an emptied database; the answer cache
is on in both. *off*: PROVIDER_SINGLE_FLIGHT=false, IDENTIFY_IDEMPOTENCY=false, no credit budget. *on*:
single-flight, idempotency and PLANT_ID_DAILY_CREDIT_BUDGET at 60 % of what the mix would spend (distinct photos x
2 credits: every request asks for the health assessment).

The mix (seeded; the same requests in both): ~60 % new distinct photos, ~30 % repeats of earlier photos (about half
of them in bursts of 3-5 byte-identical uploads of a new photo sent at the same moment, the rest re-sends of a
photo sent earlier, which may still be in flight), ~10 % client retries: the same request re-sent with the same
Idempotency-Key (and a new multipart boundary), half while the first is in flight (100-400 ms after it), half after
it answered. Every upload carries a key of its own, as a mobile client would send. 8 clients: at most 8 requests
in flight, a burst taking its slots at once.

Run (PostgreSQL on 127.0.0.1 with trust auth, Redis on 127.0.0.1:6379, dbs 10 and 11):
    createdb -h 127.0.0.1 -U postgres plantid_credits     # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/plantid_credits \\
        .venv/bin/python bench/credits.py          # --requests 200 --seed 1 --only on|off
Without DATABASE_URL each configuration gets a new SQLite file.
Prints, per configuration: requests, distinct photos, the share answered (200), Plant.id and Pl@ntNet calls (the
sandbox's counts), Plant.id credits charged (its usage_info), identifications stored, each also per 100 requests;
where the Plant.id calls came from (the requests whose answer was not cached or replayed, by kind of request);
then the goal checks: Plant.id calls <= distinct photos, credits <= budget (on).
"""

import argparse
import http.client
import json
import os
import random
import shlex
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load import PLANT_ID_MS, PLANTNET_MS, ROOT, Client, Stack, photo

IDENTIFY = "/api/v1/plant-identification/identify/"
REDIS = "redis://127.0.0.1:6379"
REDIS_DBS = {"off": 10, "on": 11}
OFF = {"PROVIDER_SINGLE_FLIGHT": "false", "IDENTIFY_IDEMPOTENCY": "false"}
ON = {"PROVIDER_SINGLE_FLIGHT": "true", "IDENTIFY_IDEMPOTENCY": "true"}
FEATURES = ("PROVIDER_SINGLE_FLIGHT", "IDENTIFY_IDEMPOTENCY", "PLANT_ID_DAILY_CREDIT_BUDGET")
CREDITS_PER_CALL = 2  # an identification with the health assessment (include_diseases defaults to true)
NOT_CALLED = ("circuit_open", "quota_exhausted", "not_configured")  # a provider status that made no upstream call
SETTINGS = (
    "import json\nfrom django.conf import settings\n"
    f"print(json.dumps({{name: getattr(settings, name, 'absent') for name in {FEATURES!r}}}))"
)
COUNTS = (  # identifications stored, and the credits the service counted today fleet-wide (None: no such counter)
    "import json\nfrom apps.plant_identification.models import Identification\n"
    "try:\n    from apps.plant_identification.quotas.credits import credits_spent\n    spent = credits_spent()\n"
    "except ImportError:\n    spent = None\n"
    "print(json.dumps([Identification.objects.count(), spent]))"
)
FLUSH = (
    "from django.core.management import call_command\ncall_command('flush', interactive=False, verbosity=0)\nprint(1)"
)
ROLES = ("new photo", "burst", "repeat", "retry: original", "retry: in flight", "retry: after answer")


@dataclass
class Upload:
    """One request of the mix: which photo, with which key and boundary, and in what role."""

    role: str
    photo: int
    key: str
    boundary: str


@dataclass
class Job:
    """A unit the dispatcher starts: one upload, a burst (all at once), or an original and its retry."""

    kind: str  # single, burst, retry_in_flight, retry_after
    uploads: list[Upload]
    delay: float = 0.0  # a retry's wait: after the original was sent (in flight) or after it answered
    results: list[dict] = field(default_factory=list)


def mix(requests: int, seed: int) -> tuple[list[Job], int]:
    """The seeded mix of ``requests`` uploads and its number of distinct photos."""
    rng = random.Random(seed)
    retries = round(requests * 0.10)
    repeats = round(requests * 0.30)
    new = requests - retries - repeats
    photos = iter(range(10**6))

    def upload(role: str, index: int, key: str | None = None) -> Upload:
        return Upload(
            role, index, key or str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"b{rng.getrandbits(64):x}"
        )

    jobs: list[Job] = []
    burst_repeats = 0
    while new - retries - len([j for j in jobs if j.kind == "burst"]) > 1:
        size = rng.randint(3, 5)
        if burst_repeats + size - 1 > repeats // 2:
            break
        index = next(photos)
        jobs.append(Job("burst", [upload("burst", index) for _ in range(size)]))
        burst_repeats += size - 1
    for number in range(retries):
        original = upload("retry: original", next(photos))
        in_flight = number % 2 == 0
        retry = upload("retry: in flight" if in_flight else "retry: after answer", original.photo, original.key)
        delay = rng.uniform(0.1, 0.4) if in_flight else rng.uniform(0.0, 0.5)
        jobs.append(Job("retry_in_flight" if in_flight else "retry_after", [original, retry], delay))
    while len(jobs) < new:  # every job so far brings one new photo
        jobs.append(Job("single", [upload("new photo", next(photos))]))
    rng.shuffle(jobs)
    for _ in range(repeats - burst_repeats):  # each after at least one photo, of a photo sent before it
        position = rng.randint(1, len(jobs))
        earlier = rng.choice([u.photo for job in jobs[:position] for u in job.uploads])
        jobs.insert(position, Job("single", [upload("repeat", earlier)]))
    distinct = len({u.photo for job in jobs for u in job.uploads})
    assert sum(len(job.uploads) for job in jobs) == requests, requests
    assert distinct == new, (distinct, new)
    return jobs, distinct


def form(image: bytes, boundary: str) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )


class Slots:
    """At most ``capacity`` requests in flight; a job takes all its slots at once, first come first served."""

    def __init__(self, capacity: int) -> None:
        self.free, self.ticket, self.serving = capacity, 0, 0
        self.condition = threading.Condition()

    def take(self, count: int) -> None:
        with self.condition:
            ticket, self.ticket = self.ticket, self.ticket + 1
            self.condition.wait_for(lambda: self.serving == ticket and self.free >= count)
            self.free -= count
            self.serving += 1
            self.condition.notify_all()

    def give(self, count: int) -> None:
        with self.condition:
            self.free += count
            self.condition.notify_all()


def send(client: Client, upload: Upload, images: dict[int, bytes], barrier: threading.Barrier | None = None) -> dict:
    body = form(images[upload.photo], upload.boundary)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={upload.boundary}",
        "Content-Length": str(len(body)),
        "Idempotency-Key": upload.key,
    }
    if barrier is not None:
        barrier.wait(30)
    started = time.perf_counter()
    status, response_headers, elapsed, payload = client.request("POST", IDENTIFY, body, headers)
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = {"raw": payload[:200].decode(errors="replace")}
    return {
        "upload": upload,
        "status": status,
        "replayed": response_headers.get("Idempotent-Replayed") == "true",
        "started": started,
        "ended": started + elapsed,
        "answer": answer,
    }


def drive(client: Client, jobs: list[Job], images: dict[int, bytes], clients: int) -> float:
    """Run the jobs in order from ``clients`` sender threads (keep-alive connections); returns the wall time."""
    slots = Slots(clients)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as senders, ThreadPoolExecutor(clients) as runners:

        def run_job(job: Job) -> None:
            try:
                if job.kind == "single":
                    job.results = [senders.submit(send, client, job.uploads[0], images).result()]
                elif job.kind == "burst":
                    barrier = threading.Barrier(len(job.uploads))
                    futures = [senders.submit(send, client, u, images, barrier) for u in job.uploads]
                    job.results = [future.result() for future in futures]
                elif job.kind == "retry_in_flight":
                    first = senders.submit(send, client, job.uploads[0], images)
                    time.sleep(job.delay)
                    second = senders.submit(send, client, job.uploads[1], images)
                    job.results = [first.result(), second.result()]
                else:  # retry_after: the answer was lost on the way back; the client sends it again
                    first = senders.submit(send, client, job.uploads[0], images).result()
                    time.sleep(job.delay)
                    job.results = [first, senders.submit(send, client, job.uploads[1], images).result()]
            finally:
                slots.give(len(job.uploads) if job.kind != "retry_after" else 1)

        futures = []
        for job in jobs:
            slots.take(len(job.uploads) if job.kind != "retry_after" else 1)
            futures.append(runners.submit(run_job, job))
        for future in futures:
            future.result()
    return time.perf_counter() - started


def usage(stack: Stack) -> dict:
    """The sandbox's Plant.id usage_info for the service's key."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.sandbox_port, timeout=5)
    connection.request("GET", "/sandbox/plant-id/api/v3/usage_info", headers={"Api-Key": stack.env["PLANT_ID_API_KEY"]})
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200, payload
    return json.loads(payload)


def redis_flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def configuration(name: str, overrides: dict[str, str], jobs: list[Job], images: dict[int, bytes], args) -> dict:
    redis_url = f"{args.redis}/{REDIS_DBS[name]}"
    redis_flush(redis_url)
    stack = Stack(args.workers, args.threads, {"REDIS_URL": redis_url, **overrides})
    stack.start()
    try:
        if stack.env["DATABASE_URL"] == os.environ.get("DATABASE_URL"):  # the shared database: emptied first
            stack.django(FLUSH)
        features = json.loads(stack.django(SETTINGS))
        stack.control("POST", "reset")
        load = os.getloadavg()[0]
        for job in jobs:
            job.results = []
        wall = drive(Client(stack.port), jobs, images, args.clients)
        time.sleep(1.0)  # any late answer lands before the counts are read
        stats = stack.stats()  # before our own usage_info read, so its usage_info count is the service's polls
        credits = usage(stack)["used"]["total"]
        stored, counted = json.loads(stack.django(COUNTS))
        log = stack.log.read_text() if stack.log.exists() else ""
    finally:
        stack.stop()
    results = [result for job in jobs for result in job.results]
    answered = [r for r in results if r["status"] == 200]
    called = {provider: Counter() for provider in ("plant_id", "plantnet")}
    for r in answered:
        if r["replayed"]:
            continue
        for provider, entry in r["answer"]["providers"].items():
            if not entry["cached"] and entry["status"] not in NOT_CALLED:
                called[provider][r["upload"].role] += 1
    plant_id_status = Counter(
        entry["status"] + (" cached" if entry["cached"] else "")
        for entry in (r["answer"]["providers"]["plant_id"] for r in answered if not r["replayed"])
    )
    retries = [job for job in jobs if job.kind.startswith("retry")]
    same_id = sum(
        1
        for job in retries
        if all(r["status"] == 200 for r in job.results)
        and job.results[0]["answer"]["id"] == job.results[1]["answer"]["id"]
    )
    in_flight = sum(  # the retry was sent before the original's answer came back
        1 for job in retries if job.kind == "retry_in_flight" and job.results[1]["started"] < job.results[0]["ended"]
    )
    return {
        "name": name,
        "features": features,
        "budget": overrides.get("PLANT_ID_DAILY_CREDIT_BUDGET"),
        "requests": len(results),
        "answered": len(answered),
        "statuses": Counter(r["status"] for r in results),
        "plant_id": stats.get("plant_id:requests", 0),
        "plantnet": stats.get("plantnet:requests", 0),
        "credits": credits,
        "stored": stored,
        "counted": counted,
        "polls": stats.get("plant_id:usage_info", 0),
        "no_health": sum(  # Plant.id asked without the health assessment (the budget near its end)
            1
            for r in answered
            if not r["replayed"]
            and r["answer"]["providers"]["plant_id"]["status"] == "ok"
            and not r["answer"]["providers"]["plant_id"]["cached"]
            and r["answer"].get("health") is None
        ),
        "replayed": sum(1 for r in results if r["replayed"]),
        "same_id": same_id,
        "retries": len(retries),
        "in_flight": in_flight,
        "in_flight_jobs": sum(1 for job in retries if job.kind == "retry_in_flight"),
        "degraded": sum(1 for r in answered if r["answer"].get("degraded")),
        "plant_id_status": plant_id_status,
        "called": called,
        "wall": wall,
        "load": load,
        "log_errors": [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line],
        "errors": [(r["status"], r["answer"]) for r in results if r["status"] != 200][:5],
    }


def unknown(row: dict) -> bool:
    return row["features"].get("PLANT_ID_DAILY_CREDIT_BUDGET") == "absent"


def report(rows: list[dict], distinct: int, roles: Counter) -> None:
    print(f"\n  {'':34}" + "".join(f"{row['name']:>10}{'/100 req':>10}" for row in rows))
    figures = (
        ("requests", "requests"),
        ("distinct photos", None),
        ("answered (200)", "answered"),
        ("Plant.id calls", "plant_id"),
        ("Pl@ntNet calls", "plantnet"),
        ("Plant.id credits charged", "credits"),
        ("identifications stored", "stored"),
        ("answers replayed (Idempotency-Key)", "replayed"),
        ("answers degraded", "degraded"),
    )
    for label, key in figures:
        cells = ""
        for row in rows:
            value = distinct if key is None else row[key]
            cells += f"{value:>10}{100 * value / row['requests']:>10.1f}"
        print(f"  {label:34}{cells}")
    print("\n  Plant.id / Pl@ntNet calls by kind of request (answers neither cached nor replayed):")
    for role in ROLES:
        cells = "".join(f"{row['called']['plant_id'][role]:>10}{row['called']['plantnet'][role]:>10}" for row in rows)
        print(f"    {role:20} {roles[role]:>4} req  {cells}")
    for row in rows:
        features = ", ".join(f"{name}={value}" for name, value in row["features"].items())
        print(
            f"\n  {row['name']}: server settings {features}; {row['wall']:.1f} s, load {row['load']:.1f}; statuses "
            f"{dict(sorted(row['statuses'].items()))}; Plant.id parts {dict(row['plant_id_status'].most_common())}; "
            f"retries answered with the original's id {row['same_id']}/{row['retries']}; in-flight retries sent "
            f"before the original answered {row['in_flight']}/{row['in_flight_jobs']}; Plant.id calls without "
            f"health {row['no_health']}; credits the service counted {row['counted']}; usage_info polls by the "
            f"service {row['polls']}"
        )
        for status, answer in row["errors"]:
            print(f"    non-200: {status} {json.dumps(answer)[:300]}")
        for line in row["log_errors"][:5]:
            print(f"    log: {line[:300]}")
        if len(row["log_errors"]) > 5:
            print(f"    log: ... {len(row['log_errors']) - 5} more ERROR lines")
    print("\ngoals:")
    for row in rows:
        print(
            f"  {row['name']}: Plant.id calls {row['plant_id']} <= distinct photos {distinct}: "
            f"{'MET' if row['plant_id'] <= distinct else 'MISSED'}"
            + (
                f"; credits {row['credits']} <= budget {row['budget']}: "
                f"{'MET' if row['credits'] <= int(row['budget']) else 'MISSED'}"
                + (" (the server has no PLANT_ID_DAILY_CREDIT_BUDGET setting)" if unknown(row) else "")
                if row["budget"]
                else f" (credits {row['credits']}, no budget)"
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("on", "off"), help="run one configuration")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--budget-share", type=float, default=0.6, help="of distinct photos x 2 credits (on)")
    parser.add_argument("--redis", default=REDIS, help="Redis without a db: dbs 10 (off) and 11 (on) are flushed")
    args = parser.parse_args()
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    database = os.environ.get("DATABASE_URL")
    print("command: " + (f"DATABASE_URL={database} " if database else "") + shlex.join([python, *sys.argv]))
    jobs, distinct = mix(args.requests, args.seed)
    roles = Counter(u.role for job in jobs for u in job.uploads)
    budget = int(args.budget_share * distinct * CREDITS_PER_CALL)
    images = {u.photo: photo(u.photo) for job in jobs for u in job.uploads}
    print(
        f"machine: {os.cpu_count()} CPUs; gunicorn {args.workers} workers x {args.threads} threads; {args.clients} "
        f"clients; sandbox Plant.id {PLANT_ID_MS} ms, Pl@ntNet {PLANTNET_MS} ms; database "
        f"{(database or 'sqlite').split('@')[-1]}; Redis {args.redis} dbs {REDIS_DBS['off']}/{REDIS_DBS['on']}"
    )
    print(
        f"mix (seed {args.seed}): {args.requests} requests, {distinct} distinct photos; "
        + ", ".join(f"{role} {roles[role]}" for role in ROLES)
        + f"; {sum(1 for job in jobs if job.kind == 'burst')} bursts; budget (on) {budget} credits "
        f"= {args.budget_share:g} x {distinct} x {CREDITS_PER_CALL}"
    )
    started = time.perf_counter()
    rows = []
    for name, overrides in (("off", OFF), ("on", {**ON, "PLANT_ID_DAILY_CREDIT_BUDGET": str(budget)})):
        if args.only in (None, name):
            rows.append(configuration(name, overrides, jobs, images, args))
    report(rows, distinct, roles)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
