"""A real gunicorn run by a test (this repository's gunicorn.conf.py): its log is read by a thread, so waiting
for a worker to boot, or to exit, is waiting for its log line; ``SandboxedService`` is the service in front of
the provider sandbox."""

import contextlib
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from django.db import connection

from apps.plant_identification.sandbox import SANDBOX_KEY
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]
IDENTIFY = "/api/v1/plant-identification/identify/"
IDENTIFICATIONS = "/api/v1/plant-identification/identifications/"
# gunicorn options that log each request as "<pid> METHOD PATH STATUS", for ``SandboxedService.answered_by``.
ACCESS_LOG_ARGS = ["--access-logfile", "/dev/stderr", "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"]
ACCESS = re.compile(r"^<(\d+)> (\S+) (\S+) (\d{3})$")


class GunicornProcess:
    """``gunicorn -c gunicorn.conf.py <args> backend.wsgi:application`` with ``env``, stopped by ``stop()``."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.env = env
        self.process = subprocess.Popen(  # noqa: S603 - our own server
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "backend.wsgi:application"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put("")  # the server exited

    def wait_for(self, pattern: str) -> re.Match:
        """The next log line matching ``pattern``."""
        while line := self.lines.get(timeout=60):
            if match := re.search(pattern, line):
                return match
        raise AssertionError("gunicorn exited:\n" + "".join(self.log))

    def booted_worker(self) -> int:
        """The pid of the next worker gunicorn boots."""
        return int(self.wait_for(r"Booting worker with pid: (\d+)").group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def free_port() -> int:
    """A TCP port nobody listens on now, for a server the test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_database_url(tmp_path: Path) -> str:
    """The test run's PostgreSQL database (already migrated), or a migrated SQLite file for this test."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "true"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    return url


class SandboxedService(GunicornProcess):
    """The production settings under gunicorn (gthread), both providers on ``sandbox``, the test run's Redis and
    database, anonymous identify without throttling; ``env`` overrides any of it, ``args`` adds gunicorn options."""

    def __init__(self, tmp_path: Path, sandbox, *, args: list[str] = (), env: dict[str, str] | None = None) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.database_url = service_database_url(tmp_path)
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "backend.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "sandboxed-service-" + "k" * 40,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECURE_HSTS_SECONDS": "0",
            "DJANGO_SECURE_COOKIES": "false",
            "DATABASE_URL": self.database_url,
            "ALLOW_PROVIDER_SANDBOX": "true",
            "PLANT_ID_API_KEY": SANDBOX_KEY,
            "PLANT_ID_API_URL": sandbox.plant_id_url(),
            "PLANTNET_API_KEY": SANDBOX_KEY,
            "PLANTNET_API_URL": sandbox.plantnet_url(),
            "IDENTIFY_ALLOW_ANONYMOUS": "true",
            "IDENTIFY_THROTTLE_RATE": "none",
            "PROVIDER_MAX_RETRIES": "0",
            **(env or {}),
        }
        super().__init__(["-k", "gthread", *args, "-b", self.url.removeprefix("http://")], environment)

    def wait_serving(self, workers: int = 1) -> list[int]:
        """The pids of the next ``workers`` booted workers, once the service answers."""
        pids = [self.booted_worker() for _ in range(workers)]
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            try:
                if requests.get(f"{self.url}/health/live/", timeout=5).status_code == 200:
                    return pids
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError("gunicorn never answered:\n" + "".join(self.log))

    def identify(self, color, *, status: int = 200, headers: dict | None = None) -> dict:
        """POST one photo of ``color``; its JSON body, once its status is ``status``."""
        photo = ("leaf.jpg", jpeg_bytes(color), "image/jpeg")
        response = requests.post(f"{self.url}{IDENTIFY}", files={"images": photo}, headers=headers, timeout=60)
        assert response.status_code == status, response.text
        return response.json()

    def read(self, identification_id) -> dict:
        """GET a stored identification's body."""
        response = requests.get(f"{self.url}{IDENTIFICATIONS}{identification_id}/", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def answered_by(self, path: str = IDENTIFY, status: int = 200) -> set[int]:
        """The pids of the workers that answered ``path`` with ``status`` (with ``ACCESS_LOG_ARGS``)."""
        lines = (ACCESS.match(line.strip()) for line in self.log)
        return {int(m.group(1)) for m in lines if m and m.group(3) == path and m.group(4) == str(status)}

    def manage_json(self, code: str):
        """What ``code`` prints last, as JSON, run by ``manage.py shell`` with the service's settings (its database
        and Redis are another process's: a SQLite file is not the test run's)."""
        command = [sys.executable, "manage.py", "shell", "-c", code]
        done = subprocess.run(command, cwd=ROOT, env=self.env, check=True, timeout=60, capture_output=True, text=True)  # noqa: S603
        return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def two_worker_fleet(tmp_path: Path, *, concurrent: int, env: dict[str, str] | None = None, seed: int = 0):
    """Two gunicorn workers in front of a fresh sandbox (``service.sandbox``), each taking at most half of
    ``concurrent`` requests at once (so both serve some) and logging each one (``answered_by``); stopped after
    the block, whose log must hold no traceback."""
    sandbox = sandbox_start(seed=seed)
    threads = str(max(1, concurrent // 2))
    args = ["-w", "2", "--threads", threads, "--worker-connections", threads, *ACCESS_LOG_ARGS]
    service = SandboxedService(tmp_path, sandbox, args=args, env=env)
    service.sandbox = sandbox
    try:
        service.wait_serving(workers=2)
        yield service
    finally:
        service.stop()
        sandbox.shutdown()
        sandbox.server_close()
    assert "Traceback" not in "".join(service.log), "".join(service.log)
