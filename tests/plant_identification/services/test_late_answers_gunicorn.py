"""A real gunicorn worker restarted with a late answer in flight: a graceful stop merges it before the worker
exits; a worker killed outright leaves the part pending until a read after its deadline settles it.

The providers are the sandbox (their wire formats) with Plant.id slow; the database is the test run's own
(PostgreSQL when DATABASE_URL names one, else a migrated SQLite file) and Redis the test run's.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.plant_identification.sandbox.server import sandbox_start
from tests.gunicorn import ROOT, SandboxedService

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DEADLINE = 3  # seconds: Plant.id answers in 1.5 s, within its 2.5 s timeout


class Service(SandboxedService):
    """gunicorn (one gthread worker) in front of the sandbox, with Plant.id answering after the early answer."""

    def __init__(self, tmp_path: Path, sandbox) -> None:
        env = {
            "DJANGO_SECRET_KEY": "late-answers-" + "k" * 40,
            "PLANT_ID_TIMEOUT": "2.5",
            "PLANTNET_TIMEOUT": "2.5",
            "IDENTIFY_DEADLINE": str(DEADLINE),
            "IDENTIFY_LATE_GRACE": "0.2",
            "IDENTIFY_LATE_GRACE_FACTOR": "0",
        }
        super().__init__(tmp_path, sandbox, args=["--threads", "4"], env=env)

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
    worker = service.wait_serving()[0]
    early = service.identify((40, 120, 40))
    assert early["complete"] is False
    assert early["pending"] == ["plant_id"]

    os.kill(worker, signal.SIGTERM)  # a restart: gunicorn boots another worker
    service.wait_for(rf"Worker exiting \(pid: {worker}\)")
    assert service.wait_serving()[0] != worker

    merged = service.read(early["id"])  # read from the new worker: the old one stored the late answer
    assert merged["complete"] is True
    assert merged["pending"] == []
    assert merged["providers"]["plant_id"]["status"] == "ok"
    assert merged["suggestions"][0]["sources"] == ["plant_id", "plantnet"]


def test_a_worker_killed_with_a_late_call_in_flight_is_settled_when_read_after_the_deadline(service):
    worker = service.wait_serving()[0]
    early = service.identify((200, 30, 30))
    assert early["complete"] is False

    os.kill(worker, signal.SIGKILL)  # no hook runs: the late answer is lost without a word
    service.wait_serving()[0]
    assert service.read(early["id"])["complete"] is False  # before its deadline: it might still come

    service.backdate(early["id"], DEADLINE + 5)  # as if the deadline and the settle margin had passed
    settled = service.read(early["id"])
    assert settled["complete"] is True
    assert settled["degraded"] is True
    assert settled["providers"]["plant_id"]["status"] == "error"
    assert settled["message"] == "Partial result from Pl@ntNet only (Plant.id error)."
