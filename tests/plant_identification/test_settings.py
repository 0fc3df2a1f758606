"""Configuration fails fast, naming the variable, and the service starts on embedded defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def django_check(**env) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("PLANT", "DJANGO_", "REDIS", "DATABASE", "IDENTIFY_"))
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DJANGO_DEBUG": "true", "PLANT_ID_CIRCUIT_FAIL_MAX": "three"}, "PLANT_ID_CIRCUIT_FAIL_MAX"),
        ({"DJANGO_DEBUG": "true", "PLANTNET_TIMEOUT": "-1"}, "PLANTNET_TIMEOUT"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG"),
        ({"DJANGO_DEBUG": "false"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "true", "IDENTIFY_THROTTLE_RATE": "lots"}, "IDENTIFY_THROTTLE_RATE"),
        ({"DJANGO_DEBUG": "true", "DATABASE_URL": "mongo://x/y"}, "DATABASE_URL"),
        (
            {"DJANGO_SECRET_KEY": "x", "PLANT_ID_API_URL": "http://127.0.0.1:8001/sandbox/plant-id/api/v3"},
            "PLANT_ID_API_URL",
        ),
    ],
)
def test_malformed_variable_stops_start_up_naming_it(env, named):
    result = django_check(**env)
    assert result.returncode != 0
    assert named in result.stderr


def test_starts_with_redis_unreachable_and_embedded_defaults():
    result = django_check(DJANGO_DEBUG="true", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 0, result.stderr
