"""A real gunicorn run by a test (this repository's gunicorn.conf.py): its log is read by a thread, so waiting
for a worker to boot, or to exit, is waiting for its log line."""

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
