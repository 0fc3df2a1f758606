"""The sandbox commands: ``provider_sandbox`` with its flags, and ``devserver``'s offline first run."""

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from apps.plant_identification.sandbox.options import fault_option, latency_option, merge_options
from tests.factories import jpeg_bytes

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra) -> dict:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PLANT", "DJANGO_", "REDIS", "DATABASE", "IDENTIFY_"))
    }
    return {**env, **extra}


def wait_until_up(url: str, process: subprocess.Popen) -> requests.Response:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(process.stdout.read())
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.05)
    raise TimeoutError(url)


def test_options_parse_into_a_fault_plan():
    plan = merge_options(
        [latency_option("plant_id=600"), latency_option("plantnet=uniform:200:400")],
        [fault_option("plantnet:502=0.1"), fault_option("plantnet:timeout=0.05")],
    )
    assert plan == {
        "plant_id": {"latency": {"fixed": 600.0}},
        "plantnet": {"latency": {"uniform": [200.0, 400.0]}, "rates": {"502": 0.1, "timeout": 0.05}},
    }


@pytest.mark.slow
def test_provider_sandbox_command_serves_with_its_flags():
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "manage.py",
            "provider_sandbox",
            "--port",
            str(port),
            "--latency",
            "plant_id=25",
            "--fault",
            "plantnet:502=0.5",
            "--seed",
            "3",
        ],
        cwd=ROOT,
        env=clean_env(DJANGO_DEBUG="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        plan = wait_until_up(f"http://127.0.0.1:{port}/sandbox/_control/faults", process).json()
        assert plan["plant_id"]["latency"] == {"fixed": 25.0}
        assert plan["plantnet"]["rates"] == {"502": 0.5}
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
@pytest.mark.django_db
def test_devserver_without_keys_identifies_through_the_sandbox(tmp_path):
    """The README's run command on a machine with no keys: a newcomer can identify a photo."""
    port, sandbox_port = free_port(), free_port()
    env = clean_env(DJANGO_DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "manage.py",
            "devserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--sandbox-port",
            str(sandbox_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = wait_until_up(f"http://127.0.0.1:{port}/health/", process)
        assert health.status_code == 200
        assert health.json()["sandbox"] is True
        upload = {"images": ("leaf.jpg", io.BytesIO(jpeg_bytes((40, 160, 40))), "image/jpeg")}
        response = requests.post(
            f"http://127.0.0.1:{port}/api/v1/plant-identification/identify/", files=upload, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.json()["suggestions"][0]["sources"] == ["plant_id", "plantnet"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "PROVIDER SANDBOX" in output.replace("\n  ", " ")  # said loudly at start-up
