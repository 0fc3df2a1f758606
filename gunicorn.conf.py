"""Gunicorn settings and hooks. Gunicorn reads this file from the directory it starts in (or pass ``-c``);
command-line flags win over it.

The timeouts are derived from the variables the app reads, so they stay coherent with it (README "Production"):

- the identify deadline: ``IDENTIFY_DEADLINE``, unset = the longest provider timeout (``PLANT_ID_TIMEOUT`` 35,
  ``PLANTNET_TIMEOUT`` 20) + 5 s, i.e. 40 s;
- ``timeout`` (``GUNICORN_TIMEOUT``, default the deadline + 20 s, 60): a worker silent that long is killed. A
  sync worker is silent while it serves one request, so this must exceed the deadline plus reading, decoding
  and storing the upload; a gthread worker's main loop keeps beating while its threads work;
- ``graceful_timeout`` (``GUNICORN_GRACEFUL_TIMEOUT``, default = ``timeout``): a worker told to stop (deploy,
  ``max_requests``) has that long to finish the requests it holds, identifies waiting on providers included;
- ``keepalive`` (``GUNICORN_KEEPALIVE``, default 5 s): how long an idle connection is kept. deploy/nginx.conf
  keeps idle upstream connections 4 s, less, so the proxy never reuses a connection gunicorn is closing.

A value set below the deadline stops start-up naming its variable.

Hooks: ``worker_exit`` lets a stopping worker finish its late provider answers (README "Early answer");
``on_starting`` and ``child_exit`` are for prometheus-client's multiprocess mode (README "Metrics") and do nothing
without PROMETHEUS_MULTIPROC_DIR.
"""

import glob
import math
import os

from backend.env import env_float, env_int, env_optional_float  # also reads .env into the master's environment

DEADLINE_MARGIN = 5.0  # as apps/plant_identification/services/fan_out.py, when IDENTIFY_DEADLINE is unset
REQUEST_MARGIN = 20  # seconds past the deadline for reading, decoding and storing an upload


def identify_deadline() -> float:
    """The longest an identify waits for its providers, from the same variables and defaults as the app."""
    deadline = env_optional_float("IDENTIFY_DEADLINE")
    if deadline is not None:
        return deadline
    return max(env_float("PLANT_ID_TIMEOUT", default=35.0), env_float("PLANTNET_TIMEOUT", default=20.0)) + (
        DEADLINE_MARGIN
    )


def _past_deadline(name: str, default: int, deadline: float) -> int:
    value = env_int(name, default=default, minimum=1)
    if value <= deadline:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} ({value} s) must exceed the identify deadline ({deadline:g} s)")
    return value


_deadline = identify_deadline()
timeout = _past_deadline("GUNICORN_TIMEOUT", math.ceil(_deadline) + REQUEST_MARGIN, _deadline)
graceful_timeout = _past_deadline("GUNICORN_GRACEFUL_TIMEOUT", timeout, _deadline)
keepalive = env_int("GUNICORN_KEEPALIVE", default=5)


def _metrics_dir() -> str:
    from backend.env import env_str  # also reads .env into this (the master's) environment, as workers do

    return env_str("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server) -> None:
    """Start every run with an empty metrics directory: files left by an earlier run would be added in."""
    directory = _metrics_dir()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def child_exit(server, worker) -> None:
    """A worker exited: prometheus-client drops its live gauges (its counters and histograms still count)."""
    directory = _metrics_dir()
    if directory:
        from prometheus_client import multiprocess  # imported after the workers are forked, never before

        multiprocess.mark_process_dead(worker.pid, directory)


def worker_exit(server, worker) -> None:
    """A worker stops (deploy, ``max_requests``, shutdown): wait for the late provider answers it still has out,
    each bounded by its request's identify deadline, and merge them; the ones it cannot wait for are recorded as
    lost. Runs in the worker, after its last request."""
    from django.apps import apps

    if not apps.ready:  # the worker never loaded the app
        return
    from apps.plant_identification.services.late_answers import late_answers_drain

    lost = late_answers_drain()
    if lost:
        server.log.warning("worker %s stopped with %d late answers lost", worker.pid, lost)
