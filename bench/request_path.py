"""The request path's own cost, in process: a cache hit, a both-circuits-open 503 and the CPU of a cache miss, for
this checkout and, side by side in the same run, another one (e.g. the commit before a change).

Run (PostgreSQL and Redis given; each checkout needs its own .venv and gets its own database):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/plantid_path REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/request_path.py [--against /path/to/other/checkout]
The providers are faked at the HTTP layer (``responses``, the recorded bodies in tests/fixtures/) for the one
call that fills the answer cache; every timed request is answered from the cache, or turned away by both
circuits, so the figures are the service's own work: parsing, the image, Redis, the database, serializing. The
cache misses (300 distinct photos, both providers faked) give the CPU time of the whole process per request,
provider threads included, rather than a median of wall times.
Prints the median of 300 requests per path and round, three rounds, checkouts interleaved (each round starting
with the other checkout), and the ratios.
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 300


def measure() -> dict[str, float]:
    """Run inside the checkout being measured (its own interpreter and settings)."""
    sys.path.insert(0, os.getcwd())
    os.environ.update(
        DJANGO_SETTINGS_MODULE="backend.settings",
        DJANGO_SECRET_KEY="bench",  # noqa: S106 - a throwaway process
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="false",  # the test client speaks plain HTTP
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_COOKIES="false",
        IDENTIFY_ALLOW_ANONYMOUS="true",
        IDENTIFY_THROTTLE_RATE="none",
        DJANGO_LOG_LEVEL="ERROR",
        PLANT_ID_API_KEY="bench-key",
        PLANTNET_API_KEY="bench-key",
        PLANT_ID_API_URL="https://plant-id.test/api/v3",
        PLANTNET_API_URL="https://plantnet.test/v2",
    )
    import django

    django.setup()
    import responses
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from PIL import Image

    call_command("migrate", verbosity=0)
    fixtures = Path(os.getcwd()) / "tests" / "fixtures"
    client = Client()

    def jpeg(colour: tuple[int, int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (320, 240), colour).save(buffer, "JPEG")
        return buffer.getvalue()

    photo = jpeg((40, 120, 40))

    def identify(data: bytes = photo):
        upload = io.BytesIO(data)
        upload.name = "leaf.jpg"
        return client.post("/api/v1/plant-identification/identify/", {"images": [upload]})

    def median_ms(expected: int) -> float:
        times = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            assert identify().status_code == expected
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    cache.clear()
    with responses.RequestsMock() as fake:
        for url, name, status in (
            ("https://plant-id.test/api/v3/identification", "plant_id_identification_ok.json", 201),
            ("https://plantnet.test/v2/identify/all", "plantnet_identify_ok.json", 200),
        ):
            fake.post(url, json=json.loads((fixtures / name).read_text()), status=status)
        assert identify().status_code == 200
        misses = [jpeg((index % 200, index // 200, 90)) for index in range(REQUESTS)]
        started = time.process_time()
        for data in misses:
            assert identify(data).status_code == 200
        miss_cpu_ms = (time.process_time() - started) * 1000 / REQUESTS
    figures = {"cache hit": median_ms(200), "cache miss, CPU per request": miss_cpu_ms}
    try:
        from apps.plant_identification.circuits.breaker import BREAKERS
    except ImportError:  # a checkout from before the circuits package
        from apps.plant_identification.breakers import BREAKERS
    for breaker in BREAKERS.values():
        breaker.hold_open(600, "forced")
    cache.clear()  # a new photo: only the circuits stand between it and the providers
    figures["both circuits open (503)"] = median_ms(503)
    for breaker in BREAKERS.values():
        breaker.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to measure side by side")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return
    checkouts = [ROOT] + ([args.against.resolve()] if args.against else [])
    results: dict[Path, list[dict]] = {checkout: [] for checkout in checkouts}
    for round_number in range(3):
        for checkout in checkouts if round_number % 2 == 0 else checkouts[::-1]:
            env = {**os.environ}
            if len(checkouts) > 1 and env.get("DATABASE_URL", "").startswith("postgres"):
                env["DATABASE_URL"] += "_other" if checkout != ROOT else ""
            out = subprocess.run(
                [str(checkout / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "--measure"],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[checkout].append(json.loads(out.strip().splitlines()[-1]))
    for checkout, rounds in results.items():
        print(f"{checkout}:")
        for path in rounds[0]:
            kind = "mean" if "CPU" in path else "median"
            print(f"  {path}: " + ", ".join(f"{r[path]:.1f}" for r in rounds) + f" ms ({kind} of 300, per round)")
    if args.against:
        for path in results[ROOT][0]:
            ours = statistics.median(r[path] for r in results[ROOT])
            theirs = statistics.median(r[path] for r in results[args.against.resolve()])
            print(f"{path}: this checkout / other = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
