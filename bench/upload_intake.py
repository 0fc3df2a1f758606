"""12 MP uploads through gunicorn without the providers: what reading one costs, and what intake and image work allow.

Run (no database or Redis needed; the photos are bench/photos.py's, made once under /tmp):
    .venv/bin/python bench/upload_intake.py [--rounds 3] [--chunks 65536,262144,1048576] [--ladder-only]
        [--against /path/to/another/checkout]

A gunicorn of 1 worker x 16 gthread threads serves this file as its WSGI app, one server per measurement, each
round interleaved.
1. The upload intake, per chunk size (8 clients post 32 photos of 4.5-5.5 MB three times over), the worker's CPU
   per upload (utime + stime from /proc):
   - ``parse``: Django's multipart parser with Django's two upload handlers at that chunk size (as
     apps/plant_identification/uploads.py configures them: in memory up to 2 MiB, else streamed to a temporary
     file), then the file read back once, as the decoder reads it;
   - ``raw``: the body only read from ``wsgi.input`` in reads of that size and dropped (gunicorn's share).
2. The ladder from the image-work bound to the service (bench/photos.py measures the last step): 96 photos from 16
   clients, each to a fresh worker after a warm-up of 16, through this checkout's upload handlers and
   ``image_load`` (decode slots, renditions), with no provider call, database or DRF, answered at once
   (``image``, at each chunk size) or after a 500 ms wait that costs no CPU (``image+wait``, the shape of the
   providers' answer, at the checkout's chunk size); photos/s as a share of the image-work bound (bench/photos.py's,
   in the same round), the worker's CPU per photo and its peak RSS growth (VmHWM, reset first, minus VmRSS).
   ``--against`` runs the ``image`` and ``image+wait`` steps of another checkout too (its ``image_load`` and
   upload handlers, this file's driver), interleaved with this checkout's in each round.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = int(os.environ.get("UPLOAD_INTAKE_CHUNK", str(1024 * 1024)))
MODE = os.environ.get("UPLOAD_INTAKE_MODE", "parse")  # parse, raw, image or image+wait
CHECKOUT = Path(os.environ.get("UPLOAD_INTAKE_CHECKOUT", str(ROOT)))  # whose image_load the image steps run
READ_BACK = 64 * 1024  # Pillow's decoder reads its file in blocks of this size
PROVIDER_WAIT = 0.5  # seconds, as bench/photos.py's providers answer


# ---------------------------------------------------------------------------- the app gunicorn serves
def _django():
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        FILE_UPLOAD_MAX_MEMORY_SIZE=2 * 1024 * 1024,  # as backend/settings.py
        DATA_UPLOAD_MAX_MEMORY_SIZE=1024 * 1024,
    )
    django.setup()
    from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

    class MemoryHandler(MemoryFileUploadHandler):
        chunk_size = CHUNK

    class DiskHandler(TemporaryFileUploadHandler):
        chunk_size = CHUNK

    return MemoryHandler, DiskHandler


def _checkout():
    """The checkout's settings and ``image_load`` (its upload handlers come with the settings)."""
    sys.path.insert(0, str(CHECKOUT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    import django

    django.setup()
    from apps.plant_identification import uploads
    from apps.plant_identification.images import image_load

    if "UPLOAD_INTAKE_CHUNK" in os.environ:  # this bench's chunk size instead of the checkout's
        uploads.MemoryUploadHandler.chunk_size = uploads.DiskUploadHandler.chunk_size = CHUNK
    return image_load


def application(environ, start_response):
    """Read the upload as the service does (``parse``), only drain the body (``raw``) or take the photo in as the
    service does (``image``, ``image+wait``); answer its length or hash."""
    if MODE.startswith("image"):
        from django.core.handlers.wsgi import WSGIRequest

        upload = WSGIRequest(environ).FILES["images"]
        answer = IMAGE_LOAD(upload).sha256
        upload.close()
        if MODE == "image+wait":
            time.sleep(PROVIDER_WAIT)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer.encode()]
    if MODE == "raw":
        stream, left, size = environ["wsgi.input"], int(environ["CONTENT_LENGTH"]), 0
        while left > 0 and (data := stream.read(min(CHUNK, left))):
            left -= len(data)
            size += len(data)
    else:
        from django.core.handlers.wsgi import WSGIRequest

        request = WSGIRequest(environ)
        request.upload_handlers = [handler(request) for handler in HANDLERS]
        upload, size = request.FILES["images"], 0
        upload.seek(0)
        while data := upload.read(READ_BACK):
            size += len(data)
        upload.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(size).encode()]


if __name__ != "__main__" and MODE == "parse":
    HANDLERS = _django()
if __name__ != "__main__" and MODE.startswith("image"):
    IMAGE_LOAD = _checkout()


# ---------------------------------------------------------------------------- the driver
sys.path.insert(0, str(Path(__file__).parent))
CHECKOUT_ENV = {  # what backend.settings needs to start with no provider ever called
    "DJANGO_SECRET_KEY": "bench",
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "*",
    "DJANGO_LOG_LEVEL": "WARNING",
    "PLANT_ID_API_KEY": "bench-key",
    "PLANTNET_API_KEY": "bench-key",
}


def _bodies(count: int) -> list[bytes]:
    from load import multipart
    from photos import corpus

    return [multipart(path.read_bytes()) for path in corpus(count)]


class _Connections(threading.local):
    """One keep-alive connection per client thread, to the server of the moment."""

    port: int | None = None
    connection: http.client.HTTPConnection | None = None

    def post(self, port: int, body: bytes) -> None:
        from load import BOUNDARY

        if self.port != port:
            self.port, self.connection = port, http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("POST", "/", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = self.connection.getresponse()
        answered = response.read()
        assert response.status == 200, (response.status, answered[:200])


def _measure(
    mode: str, chunk: int | None, bodies: list, clients: int, repeat: int, checkout: Path = ROOT
) -> tuple[float, float, float]:
    """Serve ``mode`` (``chunk``: None for the checkout's own) with ``checkout``'s image work; post ``bodies``
    ``repeat`` times from ``clients`` after a warm-up: (uploads/s, the worker's CPU milliseconds per upload, its
    peak RSS growth in MiB)."""
    from load import free_port
    from photos import PeakRss, cpu_seconds

    port = free_port()
    env = {
        **os.environ,
        **CHECKOUT_ENV,
        "UPLOAD_INTAKE_MODE": mode,
        "UPLOAD_INTAKE_CHECKOUT": str(checkout),
        "MALLOC_ARENA_MAX": "2",  # as the production image sets it (Dockerfile)
        **({} if chunk is None else {"UPLOAD_INTAKE_CHUNK": str(chunk)}),
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "16"]
    server = subprocess.Popen(
        [*command, "-b", f"127.0.0.1:{port}", "--chdir", str(Path(__file__).parent), "upload_intake:application"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connections = _Connections()
    try:
        for _ in range(300):
            workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            try:
                if workers:
                    _Connections().post(port, bodies[0])
                    break
            except OSError:
                pass
            time.sleep(0.1)
        worker = int(workers[0])
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda item: connections.post(port, item), bodies[:clients]))
            before, started = cpu_seconds(worker), time.perf_counter()
            with PeakRss(worker) as peak:
                list(pool.map(lambda item: connections.post(port, item), bodies * repeat))
            wall = time.perf_counter() - started
        done = len(bodies) * repeat
        return done / wall, (cpu_seconds(worker) - before) * 1000 / done, peak.growth_mib
    finally:
        server.terminate()
        server.wait(30)


def _bound(count: int) -> float:
    """bench/photos.py's image-work bound (``image_normalise`` from memory, one thread per core), photos/s."""
    from photos import image_bound

    return image_bound({**os.environ, **CHECKOUT_ENV}, ROOT, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", default="65536,262144,1048576", help="chunk sizes in bytes, comma-separated")
    parser.add_argument("--ladder-only", action="store_true", help="skip the chunk sizes")
    parser.add_argument("--against", type=Path, help="another checkout whose image steps run beside this one's")
    args = parser.parse_args()
    chunks = [] if args.ladder_only else [int(chunk) for chunk in args.chunks.split(",")]
    intake, ladder = _bodies(32), _bodies(96)
    print(f"uploads of {statistics.mean(len(body) for body in ladder) / 1e6:.1f} MB on average; rounds interleaved")
    cpu: dict[tuple[str, int], list[float]] = {}
    bounds: list[float] = []
    ladder_runs: dict[tuple[str, int | None, Path], list[tuple[float, float, float]]] = {}
    checkouts = [ROOT] + ([args.against.resolve()] if args.against else [])
    for _ in range(args.rounds):
        for mode in ("parse", "raw"):
            for chunk in chunks:
                cpu.setdefault((mode, chunk), []).append(_measure(mode, chunk, intake, 8, 3)[1])
        bounds.append(_bound(len(ladder)))
        for mode, chunk in [("image", size) for size in chunks or [None]] + [("image+wait", None)]:
            for checkout in checkouts:
                run = _measure(mode, chunk, ladder, 16, 1, checkout)
                ladder_runs.setdefault((mode, chunk, checkout), []).append(run)
    for (mode, chunk), figures in cpu.items():
        print(
            f"{mode:5} {chunk // 1024:5} KiB chunks: worker CPU per upload {statistics.median(figures):5.1f} ms "
            f"(rounds {', '.join(f'{figure:.1f}' for figure in figures)})"
        )
    bound, cores = statistics.median(bounds), len(os.sched_getaffinity(0))
    print(f"image-work bound: {bound:.1f} photos/s ({cores * 1000 / bound:.0f} ms of the {cores} cores per photo)")
    for (mode, chunk, checkout), runs in ladder_runs.items():
        shares = [rate / limit for (rate, _, _), limit in zip(runs, bounds, strict=True)]
        size = "the checkout's chunks" if chunk is None else f"{chunk // 1024} KiB chunks"
        whose = "" if checkout == ROOT else f" [{checkout}]"
        print(
            f"{mode:10} ({size}){whose}: {statistics.median(rate for rate, _, _ in runs):.1f} photos/s, "
            f"{statistics.median(shares):.2f} of the bound (rounds {', '.join(f'{share:.2f}' for share in shares)}); "
            f"worker CPU {statistics.median(ms for _, ms, _ in runs):.0f} ms/photo; peak RSS growth "
            f"{statistics.median(mib for _, _, mib in runs):.0f} MiB (rounds {', '.join(f'{m:.0f}' for *_, m in runs)})"
        )


if __name__ == "__main__":
    main()
