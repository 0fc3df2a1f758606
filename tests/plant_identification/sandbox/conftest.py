"""Sandbox fixtures: one sandbox server per test module."""

import pytest

from apps.plant_identification.sandbox.server import sandbox_start


@pytest.fixture(scope="module")
def sandbox():
    """A sandbox on a free port for this module's tests (they share its state)."""
    server = sandbox_start()
    yield server
    server.shutdown()
    server.server_close()
