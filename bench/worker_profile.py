"""Gunicorn config for ``bench/photos.py --profile``: yappi's CPU clock on every thread of the worker, saved at exit.

Loads the project's gunicorn.conf.py first, so the worker is configured as in production, then adds two hooks:
the worker starts yappi once it is up, and writes each function's calls and inclusive and own CPU seconds to
``$WORKER_PROFILE_OUT`` (JSON) when it stops.
"""

import json
import os
from pathlib import Path

exec((Path(__file__).resolve().parents[1] / "gunicorn.conf.py").read_text())  # noqa: S102 - the project's own config

_project_worker_exit = worker_exit  # noqa: F821 - defined by the exec above


def post_worker_init(worker) -> None:
    import yappi

    yappi.set_clock_type("cpu")  # thread CPU time: a thread waiting on a socket or a lock costs nothing
    yappi.start(builtins=True, profile_threads=True)


def worker_exit(server, worker) -> None:
    import yappi

    yappi.stop()
    stats = {
        f"{stat.module}:{stat.name}": [stat.ncall, stat.ttot, stat.tsub]
        for stat in yappi.get_func_stats()
        if stat.ncall
    }
    Path(os.environ["WORKER_PROFILE_OUT"]).write_text(json.dumps(stats))
    _project_worker_exit(server, worker)
