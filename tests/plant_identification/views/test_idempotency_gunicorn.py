"""Real gunicorn workers in front of the provider sandbox: ten concurrent identify requests with one
Idempotency-Key, spread over two workers, make one identification and one call per provider; a worker killed
while it holds a key leaves a claim that the next request with that key takes over once its lease lapses.

The database is the test run's own (PostgreSQL when DATABASE_URL names one, else a migrated SQLite file), and
Redis the test run's.
"""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from apps.plant_identification.sandbox.server import sandbox_start
from apps.plant_identification.services.idempotency import LEASE_MARGIN
from tests.factories import jpeg_bytes
from tests.gunicorn import ACCESS_LOG_ARGS, SandboxedService

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
IDENTIFY = "/api/v1/plant-identification/identify/"
REQUESTS = 10
THREADS = REQUESTS // 2  # per worker, and as many connections: each worker holds half of the requests at most


class Service(SandboxedService):
    """gunicorn with two gthread workers, each taking at most THREADS connections at once, logging each request's
    worker pid."""

    def __init__(self, tmp_path: Path, sandbox, *, workers: int = 2, **overrides: str) -> None:
        env = {
            "DJANGO_SECRET_KEY": "idempotency-" + "k" * 40,
            "DJANGO_LOG_LEVEL": "WARNING",
            "PLANT_ID_TIMEOUT": "10",
            "PLANTNET_TIMEOUT": "10",
            **overrides,
        }
        args = ["-w", str(workers), "--threads", str(THREADS), "--worker-connections", str(THREADS), *ACCESS_LOG_ARGS]
        super().__init__(tmp_path, sandbox, args=args, env=env)

    def stored(self) -> dict:
        """Every identification and Idempotency-Key the service's database holds."""
        return self.manage_json(
            "import json; from apps.plant_identification.models import IdempotencyKey as K, Identification as I; "
            "print(json.dumps({'identifications': [str(pk) for pk in I.objects.values_list('pk', flat=True)], "
            "'keys': [str(pk) for pk in K.objects.values_list('identification_id', flat=True)]}))"
        )


@pytest.fixture
def sandbox():
    server = sandbox_start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(tmp_path, sandbox):
    # Both providers take a second: every request arrives while the first one is still identifying.
    sandbox.state.faults.update({"plant_id": {"latency": {"fixed": 1000}}, "plantnet": {"latency": {"fixed": 1000}}})
    server = Service(tmp_path, sandbox)
    server.wait_serving(workers=2)
    yield server
    server.stop()
    assert "Traceback" not in "".join(server.log), "".join(server.log)


def identify(url: str, photo: bytes, name: str = "leaf.jpg", timeout: float = 60) -> requests.Response:
    return requests.post(
        f"{url}{IDENTIFY}",
        files={"images": (name, photo, "image/jpeg")},  # each request has its own multipart boundary
        headers={"Idempotency-Key": "order-17-photo-1"},
        timeout=timeout,
    )


def test_ten_concurrent_requests_with_one_key_on_two_workers_make_one_identification(service, sandbox):
    photo = jpeg_bytes((60, 140, 50))

    def send(index: int) -> tuple[int, dict]:
        response = identify(service.url, photo, f"retry-{index}.jpg")
        return response.status_code, response.json()

    with ThreadPoolExecutor(REQUESTS) as pool:
        answers = list(pool.map(send, range(REQUESTS)))

    assert [status for status, _ in answers] == [200] * REQUESTS, answers
    (identification_id,) = {body["id"] for _, body in answers}
    assert service.stored() == {"identifications": [identification_id], "keys": [identification_id]}
    assert sandbox.state.stats["plant_id:requests"] == 1
    assert sandbox.state.stats["plantnet:requests"] == 1
    service.stop()  # every access line is in the log once it has exited
    assert len(service.answered_by()) == 2, "both workers answered some of the requests"


def test_a_worker_killed_holding_a_key_is_taken_over_by_the_next_request_once_the_lease_lapses(tmp_path, sandbox):
    sandbox.state.faults.update({"plant_id": {"latency": {"fixed": 30_000}}})  # the first call hangs
    service = Service(tmp_path, sandbox, workers=1, IDENTIFY_DEADLINE="2", PLANT_ID_TIMEOUT="1.5")
    try:
        (worker,) = service.wait_serving(workers=1)
        photo = jpeg_bytes((70, 150, 60))
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(identify, service.url, photo)
            deadline = time.monotonic() + 30
            while sandbox.state.stats["plant_id:requests"] < 1:  # it holds the key and waits on Plant.id
                assert time.monotonic() < deadline, "the first request never reached Plant.id"
                time.sleep(0.02)
            os.kill(worker, signal.SIGKILL)  # no hook runs: its claim stays, without an identification
            with pytest.raises(requests.ConnectionError):
                first.result()
        service.booted_worker()
        sandbox.state.faults.update({"plant_id": {"latency": {"fixed": 0}}})

        started = time.monotonic()
        retried = identify(service.url, photo, "retry.jpg")
        waited = time.monotonic() - started

        assert retried.status_code == 200, retried.text
        assert retried.json()["providers"]["plant_id"]["status"] == "ok"
        assert 2 < waited < 2 + LEASE_MARGIN + 5  # it waited for the dead claim's lease (deadline + margin)
        assert service.stored() == {"identifications": [retried.json()["id"]], "keys": [retried.json()["id"]]}
        assert sandbox.state.stats["plant_id:requests"] == 2
    finally:
        service.stop()
