"""Schemathesis against a live server: the OpenAPI schema tells the truth.

gunicorn (DEBUG off) on the provider sandbox, as bench/load.py starts it; schemathesis reads ``/api/schema/``
and runs every check (no 500, no undocumented status code or content type, every body valid against its schema,
auth really enforced, stateful links from identify to the identification read), bounded and seeded.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import schemathesis

from bench.load import Stack, photo

CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parents[2]
STAFF_TOKEN = (
    "from django.contrib.auth import get_user_model; from rest_framework.authtoken.models import Token; "
    "user, _ = get_user_model().objects.get_or_create(username='fuzz', defaults={'is_staff': True}); "
    "print(Token.objects.get_or_create(user=user)[0].key)"
)


@pytest.fixture(scope="module")
def stack():
    stack = Stack(
        workers=1,
        threads=4,
        overrides={
            "DJANGO_SETTINGS_MODULE": "backend.settings",  # not the test settings pytest-django put in os.environ
            "IDENTIFY_ALLOW_ANONYMOUS": "false",
            "DJANGO_LOG_LEVEL": "ERROR",
            "METRICS_TOKEN": "",
        },
    )
    try:
        stack.start()
        stack.faults(
            {"plant_id": {"latency": {"fixed": 0}, "rates": {}}, "plantnet": {"latency": {"fixed": 0}, "rates": {}}}
        )
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(stack.tmp, ignore_errors=True)


IDENTIFY = "/api/v1/plant-identification/identify/"
DETAIL = "/api/v1/plant-identification/identifications/{identification_id}/"


@pytest.mark.slow
def test_schemathesis_finds_no_defect(stack, tmp_path):
    token = stack.django(STAFF_TOKEN)
    base = f"http://127.0.0.1:{stack.port}"
    auth = {"Authorization": f"Token {token}"}
    # Identify once for real and check both answers against the schema; schemathesis_hooks.py makes schemathesis
    # send that same photo (cached from here on) as identify's images, so its stateful phase gets 200s and
    # follows the identify -> read link by itself.
    schema = schemathesis.openapi.from_url(f"{base}/api/schema/")
    identified = requests.post(f"{base}{IDENTIFY}", files={"images": ("p.jpg", photo(1))}, headers=auth, timeout=30)
    assert identified.status_code == 200, identified.text
    schema[IDENTIFY]["POST"].validate_response(identified)
    identification_id = identified.json()["id"]
    read = requests.get(f"{base}{DETAIL.format(identification_id=identification_id)}", headers=auth, timeout=30)
    assert read.status_code == 200
    schema[DETAIL]["GET"].validate_response(read)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.read_text()
        + f'\n[[operations]]\ninclude-path = "{DETAIL}"\nparameters = {{ identification_id = "{identification_id}" }}\n'
    )
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "run",
        f"http://127.0.0.1:{stack.port}/api/schema/",
        "--checks",
        "all",
        "--header",
        f"Authorization: Token {token}",
        "--max-examples",
        "20",
        "--seed",
        "20261123",
        "--generation-deterministic",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.plant_identification.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    # Identify answered 200 with a real photo, and the stateful phase followed its link to the read.
    assert re.search(r"API Links:\s+1 covered / 1 selected", result.stdout), result.stdout[-6000:]
