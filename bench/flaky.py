"""Flaky providers, side by side: no retries, retries, retries with a failure-rate window, and the window alone.

Each variant runs the whole service (gunicorn, real Redis and database, the provider sandbox) with the documented
default breaker thresholds and their production reset timeouts (Plant.id 3 failures / 60 s / 2 successes,
Pl@ntNet 5 / 30 s / 2), both providers answering in 60-80 ms. Phase 1: each provider fails 20 % of calls at
random with fast errors (500, 502, connection reset), 600 distinct photos from 8 clients. Phase 2: Pl@ntNet
fully down (every call a 502) for 150 more, Plant.id still at 20 %.

Run (PostgreSQL and Redis given, as on the CI machine):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/plantid_bench REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/flaky.py
Prints, per variant and phase: the share of requests answered, answered with both providers, that used each
provider, upstream attempts per request, and the requests that reached Pl@ntNet once it was down; then the
attempts with retries against without, per request and per provider call, against today's behaviour (no
retries, whose circuits open and stop calling) and like for like (the window alone, whose circuits stay closed).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load import Client, Stack, multipart, photo, run

TRANSIENT = {"500": 0.2 / 3, "502": 0.2 / 3, "reset": 0.2 / 3}
LATENCY = {"uniform": [60, 80]}
PRODUCTION = {  # the documented defaults, with their real reset timeouts (load.py shortens them)
    "PLANT_ID_CIRCUIT_RESET_TIMEOUT": "60",
    "PLANTNET_CIRCUIT_RESET_TIMEOUT": "30",
    "PLANT_ID_TIMEOUT": "5",
    "PLANTNET_TIMEOUT": "5",
    "IDENTIFY_DEADLINE": "8",
}
VARIANTS = {
    "no retries": {"PROVIDER_MAX_RETRIES": "0"},
    "retries": {"PROVIDER_MAX_RETRIES": "1"},
    "retries + failure-rate window": {
        "PROVIDER_MAX_RETRIES": "1",
        "PLANT_ID_CIRCUIT_FAILURE_RATE": "50",
        "PLANTNET_CIRCUIT_FAILURE_RATE": "50",
    },
    # like for like: the window keeps both circuits closed at 20 % faults with or without retries, so the two runs
    # make the same provider calls and their attempts per request differ by the retries alone
    "no retries + failure-rate window": {
        "PROVIDER_MAX_RETRIES": "0",
        "PLANT_ID_CIRCUIT_FAILURE_RATE": "50",
        "PLANTNET_CIRCUIT_FAILURE_RATE": "50",
    },
}
RATIOS = (  # (with retries, without): upstream attempts per request and per provider call, phase 1
    ("retries", "no retries"),
    ("retries + failure-rate window", "no retries"),
    ("retries + failure-rate window", "no retries + failure-rate window"),
)
ANSWERED = ("ok", "no_match")
CALLED = (*ANSWERED, "error", "timeout")  # the provider was called (not turned away by its circuit)


def grown(before: dict, after: dict, name: str, *labels: str) -> dict[str, int]:
    """How much counter ``name`` grew between two scrapes, by its ``labels`` (joined with ':')."""
    growth = {}
    for (sample, items), value in after.items():
        if sample == name and (delta := value - before.get((sample, items), 0)):
            values = dict(items)
            growth[":".join(values[label] for label in labels)] = int(delta)
    return dict(sorted(growth.items()))


def phase_figures(results: list, upstream: dict[str, int]) -> dict[str, float]:
    """The figures of one phase from its responses and the upstream requests the sandbox counted."""
    every = [json.loads(payload) for status, _, _, payload in results if status in (200, 503)]
    calls = sum(1 for body in every for entry in body["providers"].values() if entry["status"] in CALLED)
    bodies = [json.loads(payload) if status == 200 else None for status, _, _, payload in results]
    used = {
        provider: sum(1 for body in bodies if body and body["providers"][provider]["status"] in ANSWERED)
        for provider in ("plant_id", "plantnet")
    }
    called = {
        provider: [
            body["providers"][provider]["status"] for body in every if body["providers"][provider]["status"] in CALLED
        ]
        for provider in ("plant_id", "plantnet")
    }
    count = len(results)
    return {
        "answered": sum(1 for body in bodies if body) / count,
        "both": sum(1 for body in bodies if body and all(p["status"] in ANSWERED for p in body["providers"].values()))
        / count,
        "used Plant.id": used["plant_id"] / count,
        "used Pl@ntNet": used["plantnet"] / count,
        "attempts/request": sum(upstream.values()) / count,
        "attempts/call": sum(upstream.values()) / max(1, calls),
        "Plant.id failed": called["plant_id"].count("error") / max(1, len(called["plant_id"])),
        "Pl@ntNet requests": upstream["plantnet"],
    }


def variant(name: str, overrides: dict[str, str], args, first_photo: int) -> list[tuple[str, dict]]:
    stack = Stack(args.workers, args.threads, {**PRODUCTION, **overrides})
    stack.start()
    try:
        stack.circuits_close()
        stack.faults(
            {"seed": args.seed, **{p: {"latency": LATENCY, "rates": TRANSIENT} for p in ("plant_id", "plantnet")}}
        )
        client, figures = Client(stack.port), []
        photos = iter(range(first_photo, first_photo + 10**6))
        for label, requests, plan in (
            ("20 % transient faults", args.requests, None),
            ("Pl@ntNet fully down", args.down_requests, {"plantnet": {"latency": LATENCY, "rates": {"502": 1.0}}}),
        ):
            if plan:
                stack.faults(plan)
            before, scraped = stack.stats(), stack.metrics()
            results, _ = run(client, [multipart(photo(next(photos))) for _ in range(requests)], args.clients)
            after = stack.stats()
            upstream = {
                p: after.get(f"{p}:requests", 0) - before.get(f"{p}:requests", 0) for p in ("plant_id", "plantnet")
            }
            figures.append((label, phase_figures(results, upstream)))
            now = stack.metrics()
            sent = grown(scraped, now, "plantid_provider_retries_total", "provider")
            refused = grown(scraped, now, "plantid_provider_retries_refused_total", "provider", "reason")
            print(f"  {name}, {label}: retries sent {sent or 'none'}, refused {refused or 'none'}")
        return figures
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--down-requests", type=int, default=150)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", choices=list(VARIANTS), help="run only these variants (repeat)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for every variant")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    print(f"gunicorn {args.workers} workers x {args.threads} threads; {args.clients} clients; providers 60-80 ms")
    print("Pl@ntNet requests in the down phase: 2 x fail_max = 10 is the goal for the variants with retries")
    table = {}
    for index, (name, overrides) in enumerate(VARIANTS.items()):
        if not args.only or name in args.only:
            table[name] = variant(name, {**overrides, **extra}, args, first_photo=index * 10**6)
    first = next(iter(table.values()))
    for phase in range(2):
        label = first[phase][0]
        print(f"\n{label}:")
        keys = list(first[phase][1])
        print(f"  {'':32}" + "".join(f"{key:>19}" for key in keys))
        for name, figures in table.items():
            values = figures[phase][1]
            print(
                f"  {name:32}"
                + "".join(
                    f"{values[key]:>19.2f}" if isinstance(values[key], float) else f"{values[key]:>19}" for key in keys
                )
            )
    for name, base in RATIOS:
        if name in table and base in table:
            with_retries, without = table[name][0][1], table[base][0][1]
            print(
                f"\n{name} / {base} (phase 1): upstream attempts per request "
                f"{with_retries['attempts/request'] / without['attempts/request']:.2f} (goal <= 1.25), "
                f"per provider call {with_retries['attempts/call'] / without['attempts/call']:.2f}"
            )


if __name__ == "__main__":
    main()
