"""manage.py: help works without a secret key, and a configuration error is one clear line, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PLANT", "DJANGO_"))}
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", [["provider_sandbox", "--help"], ["help", "provider_sandbox"], ["devserver", "-h"]])
def test_help_works_without_debug_or_a_secret_key(command):
    result = manage(*command)
    assert result.returncode == 0, result.stderr
    assert "usage: manage.py" in result.stdout


def test_a_command_without_a_secret_key_says_which_variable_to_set():
    result = manage("provider_sandbox", "--port", "0")
    assert result.returncode == 1
    assert result.stderr.strip() == "manage.py: DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false"


def test_help_with_a_malformed_variable_names_it():
    result = manage("provider_sandbox", "--help", PLANTNET_TIMEOUT="-1")
    assert result.returncode == 1
    assert result.stderr.strip() == "manage.py: PLANTNET_TIMEOUT must be greater than 0.0, got -1.0"
