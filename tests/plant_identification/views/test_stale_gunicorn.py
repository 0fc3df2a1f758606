"""Stale-if-error across a fleet: an answer one gunicorn worker received stands in, on every worker, once both
providers fail (the sandbox answers 500 to every call): 200 degraded with the entries marked stale, no 503."""

import threading

import pytest

from tests.gunicorn import two_worker_fleet

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
REQUESTS = 4
PHOTO = (90, 140, 60)


@pytest.fixture
def service(tmp_path):
    env = {"PLANT_ID_CACHE_TTL": "0", "PLANTNET_CACHE_TTL": "0", "PLANT_ID_CIRCUIT_FAIL_MAX": "100"}
    env["PLANTNET_CIRCUIT_FAIL_MAX"] = "100"  # the providers fail, their circuits stay closed: each is asked
    with two_worker_fleet(tmp_path, concurrent=REQUESTS, env=env) as fleet:
        yield fleet


def test_every_worker_serves_the_last_answer_when_both_providers_fail(service):
    first = service.identify(PHOTO)
    assert first["degraded"] is False
    failing = {"rates": {"500": 1.0}, "latency": {"fixed": 300}}  # slow enough that one worker cannot take all
    service.sandbox.state.faults.update({"plant_id": failing, "plantnet": failing})
    service.sandbox.state.reset()

    bodies = []
    threads = [threading.Thread(target=lambda: bodies.append(service.identify(PHOTO))) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(bodies) == REQUESTS
    for body in bodies:
        assert body["degraded"] is True
        assert body["suggestions"] == first["suggestions"]
        for provider in ("plant_id", "plantnet"):
            assert body["providers"][provider]["status"] == "error"
            assert body["providers"][provider]["stale"] is True
    stats = service.sandbox.state.stats
    for provider in ("plant_id", "plantnet"):  # asked (single-flight shares a failure among identical calls)
        assert 1 <= stats[f"{provider}:requests"] <= REQUESTS
    assert len(service.answered_by()) == 2  # both workers answered from the shared cache
    assert len({body["id"] for body in bodies}) == REQUESTS  # each answer stored as its own identification
    assert service.read(bodies[0]["id"]) == bodies[0]
