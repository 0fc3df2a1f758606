"""Gunicorn hooks for prometheus-client's multiprocess mode (README "Metrics"); nothing happens without
PROMETHEUS_MULTIPROC_DIR. Gunicorn reads this file from the directory it starts in (or pass ``-c``)."""

import glob
import os


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
