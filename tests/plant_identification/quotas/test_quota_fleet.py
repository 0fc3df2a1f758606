"""Quotas and the credit budget across two gunicorn workers on one Redis, end to end against the sandbox."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from apps.plant_identification.sandbox import SANDBOX_KEY
from apps.plant_identification.sandbox.server import sandbox_start
from tests.factories import jpeg_bytes
from tests.gunicorn import IDENTIFY, SandboxedService

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
COLORS = [(20 + 23 * i, 200 - 17 * i, (60 * i) % 250) for i in range(12)]  # distinct photos


@pytest.fixture
def fleet(tmp_path):
    started = []

    def start(env, **sandbox_options):
        sandbox = sandbox_start(**sandbox_options)
        service = SandboxedService(tmp_path, sandbox, args=["-w", "2", "--threads", "8"], env=env)
        started.append((service, sandbox))
        service.wait_serving(workers=2)
        return service, sandbox

    yield start
    for service, sandbox in started:
        service.stop()
        sandbox.shutdown()
        sandbox.server_close()
        assert "Traceback" not in "".join(service.log), "".join(service.log)


def photo(color):
    return ("leaf.jpg", jpeg_bytes(color), "image/jpeg")


def sandbox_stats(sandbox) -> dict:
    return requests.get(f"{sandbox.base_url}/sandbox/_control/stats", timeout=5).json()


def credits_charged(sandbox) -> int:
    """What the sandbox charged our key, as Plant.id's usage_info says."""
    usage = requests.get(f"{sandbox.plant_id_url()}/usage_info", headers={"Api-Key": SANDBOX_KEY}, timeout=5)
    return usage.json()["used"]["total"]


def test_two_workers_never_pass_the_daily_budget(fleet):
    service, sandbox = fleet({"PLANT_ID_DAILY_CREDIT_BUDGET": "5", "PLANT_ID_USAGE_POLL_INTERVAL": "300"})
    with ThreadPoolExecutor(10) as pool:  # 10 new photos with health at once, across both workers
        burst = list(pool.map(service.identify, COLORS[:10]))
    later = [service.identify(color) for color in COLORS[10:]]
    assert sandbox_stats(sandbox).get("plant_id:usage_info") == 1  # one poll for the whole fleet, 12 requests

    assert credits_charged(sandbox) <= 5
    statuses = [body["providers"]["plant_id"]["status"] for body in burst + later]
    assert set(statuses) <= {"ok", "quota_exhausted"}
    assert all(body["providers"]["plantnet"]["status"] == "ok" for body in burst + later)
    assert later[-1]["providers"]["plant_id"]["status"] == "quota_exhausted"
    assert sandbox_stats(sandbox)["plant_id:answered"] == statuses.count("ok")

    health = requests.get(f"{service.url}/health/", timeout=10).json()
    budget = health["quota"]["plant_id"]["budget"]
    assert budget["spent_today"] == credits_charged(sandbox)  # our count is what the sandbox charged
    assert budget["budget"] == 5
    assert health["plant_id_available"] is (budget["remaining"] > 0)


def test_the_last_credit_asks_without_health(fleet):
    service, sandbox = fleet({"PLANT_ID_DAILY_CREDIT_BUDGET": "3", "PLANT_ID_USAGE_POLL_INTERVAL": "0"})
    first, second, third = (service.identify(color) for color in COLORS[:3])
    assert first["health"] is not None  # 2 credits
    assert second["providers"]["plant_id"]["status"] == "ok"
    assert second["health"] is None
    assert third["providers"]["plant_id"]["status"] == "quota_exhausted"
    assert credits_charged(sandbox) == 3


def test_plantnet_is_not_called_once_it_says_none_are_left(fleet):
    service, sandbox = fleet({"PLANT_ID_USAGE_POLL_INTERVAL": "0"}, plantnet_daily_quota=3)
    bodies = [service.identify(color) for color in COLORS[:5]]
    assert [b["providers"]["plantnet"]["status"] for b in bodies] == ["ok"] * 3 + ["quota_exhausted"] * 2
    assert sandbox_stats(sandbox)["plantnet:requests"] == 3  # the third said 0 left: no fourth call

    health = requests.get(f"{service.url}/health/", timeout=10).json()
    assert health["quota"]["plantnet"]["remaining"] == 0
    assert health["quota"]["plantnet"]["limit"] == 3
    assert health["circuit_breakers"]["plantnet"]["reason"] == "quota"

    # With Plant.id out too (its key refused: held for staff), the 503 says when Pl@ntNet's quota is back.
    sandbox.state.faults.update({"plant_id": {"rates": {"401": 1.0}}})
    response = requests.post(f"{service.url}{IDENTIFY}", files={"images": photo(COLORS[6])}, timeout=60)
    assert response.status_code == 503, response.text
    retry_after = health["circuit_breakers"]["plantnet"]["retry_after"]
    assert abs(int(response.headers["Retry-After"]) - retry_after) <= 5
