"""A real gunicorn worker restarted with a late answer in flight: a graceful stop merges it before the worker
exits; a worker killed outright leaves the part pending until a read after its deadline settles it.

The providers are the sandbox (their wire formats) with Plant.id slow; the database is the test run's own
(PostgreSQL when DATABASE_URL names one, else a migrated SQLite file) and Redis the test run's.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from apps.plant_identification.sandbox import SANDBOX_KEY
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import jpeg_bytes
from tests.gunicorn import ROOT, GunicornProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
IDENTIFY = "/api/v1/plant-identification/identify/"
DEADLINE = 3  # seconds: Plant.id answers in 1.5 s, within its 2.5 s timeout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _database_url(tmp_path: Path) -> str:
    """The test run's PostgreSQL database (already migrated), or a migrated SQLite file for this test."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "true"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    return url


class Service(GunicornProcess):
    """gunicorn (one gthread worker) in front of the sandbox."""

    def __init__(self, tmp_path: Path, sandbox) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "backend.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "late-answers-" + "k" * 40,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECURE_HSTS_SECONDS": "0",
            "DJANGO_SECURE_COOKIES": "false",
            "DATABASE_URL": _database_url(tmp_path),
            "ALLOW_PROVIDER_SANDBOX": "true",
            "PLANT_ID_API_KEY": SANDBOX_KEY,
            "PLANT_ID_API_URL": sandbox.plant_id_url(),
            "PLANTNET_API_KEY": SANDBOX_KEY,
            "PLANTNET_API_URL": sandbox.plantnet_url(),
            "PLANT_ID_TIMEOUT": "2.5",
            "PLANTNET_TIMEOUT": "2.5",
            "IDENTIFY_DEADLINE": str(DEADLINE),
            "IDENTIFY_LATE_GRACE": "0.2",
            "IDENTIFY_LATE_GRACE_FACTOR": "0",
            "IDENTIFY_ALLOW_ANONYMOUS": "true",
            "IDENTIFY_THROTTLE_RATE": "none",
            "PROVIDER_MAX_RETRIES": "0",
        }
        super().__init__(["-k", "gthread", "--threads", "4", "-b", self.url.removeprefix("http://")], env)

    def booted_worker(self) -> int:
        pid = super().booted_worker()
        for _ in range(200):  # the worker is booted; wait until it serves
            try:
                if requests.get(f"{self.url}/health/live/", timeout=5).status_code == 200:
                    return pid
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError("the worker never answered")

    def identify(self, color) -> dict:
        photo = ("leaf.jpg", jpeg_bytes(color), "image/jpeg")
        response = requests.post(f"{self.url}{IDENTIFY}", files={"images": photo}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def read(self, identification_id) -> dict:
        response = requests.get(
            f"{self.url}/api/v1/plant-identification/identifications/{identification_id}/", timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()

    def backdate(self, identification_id, seconds: int) -> None:
        """Move an identification's answer time into the past, in the service's database (another process)."""
        code = (
            "from datetime import timedelta; from apps.plant_identification.models import Identification as I; "
            f"i = I.objects.get(pk='{identification_id}'); "
            f"I.objects.filter(pk=i.pk).update(created_at=i.created_at - timedelta(seconds={seconds}))"
        )
        manage = [sys.executable, "manage.py", "shell", "-c", code]
        subprocess.run(manage, cwd=ROOT, env=self.env, check=True, timeout=60)  # noqa: S603 - our own manage.py


@pytest.fixture
def service(tmp_path):
    sandbox = sandbox_start()
    sandbox.state.faults.update({"plant_id": {"latency": {"fixed": 1500}}})
    server = Service(tmp_path, sandbox)
    yield server
    server.stop()
    sandbox.shutdown()
    assert "Traceback" not in "".join(server.log), "".join(server.log)


def test_a_worker_stopped_gracefully_merges_its_late_answer_before_it_exits(service):
    worker = service.booted_worker()
    early = service.identify((40, 120, 40))
    assert early["complete"] is False
    assert early["pending"] == ["plant_id"]

    os.kill(worker, signal.SIGTERM)  # a restart: gunicorn boots another worker
    service.wait_for(rf"Worker exiting \(pid: {worker}\)")
    assert service.booted_worker() != worker

    merged = service.read(early["id"])  # read from the new worker: the old one stored the late answer
    assert merged["complete"] is True
    assert merged["pending"] == []
    assert merged["providers"]["plant_id"]["status"] == "ok"
    assert merged["suggestions"][0]["sources"] == ["plant_id", "plantnet"]


def test_a_worker_killed_with_a_late_call_in_flight_is_settled_when_read_after_the_deadline(service):
    worker = service.booted_worker()
    early = service.identify((200, 30, 30))
    assert early["complete"] is False

    os.kill(worker, signal.SIGKILL)  # no hook runs: the late answer is lost without a word
    service.booted_worker()
    assert service.read(early["id"])["complete"] is False  # before its deadline: it might still come

    service.backdate(early["id"], DEADLINE + 5)  # as if the deadline and the settle margin had passed
    settled = service.read(early["id"])
    assert settled["complete"] is True
    assert settled["degraded"] is True
    assert settled["providers"]["plant_id"]["status"] == "error"
    assert settled["message"] == "Partial result from Pl@ntNet only (Plant.id error)."
