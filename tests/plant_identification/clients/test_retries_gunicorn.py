"""Retries across a fleet: two gunicorn workers in front of the sandbox, Plant.id failing half of its calls with
fast 502s. Every request is answered, some calls are saved by their retry, and each stored result says how many
requests its call made: those add up to what the sandbox received."""

import threading

import pytest

from tests.gunicorn import IDENTIFY, two_worker_fleet

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
REQUESTS = 12


@pytest.fixture
def service(tmp_path):
    env = {
        "PROVIDER_MAX_RETRIES": "1",
        "PROVIDER_RETRY_OUTAGE_AFTER": "100",  # half the calls failing at once looks like an outage starting,
        "PROVIDER_RETRY_FLEET_OUTAGE_AFTER": "100",  # to a worker and to the fleet
        "PLANT_ID_CIRCUIT_FAIL_MAX": "100",  # this test is about retries: the circuit must not open on its own
        "IDENTIFY_EARLY_ANSWER": "false",  # each answer waits for Plant.id's retry
    }
    with two_worker_fleet(tmp_path, concurrent=REQUESTS, env=env, seed=7) as fleet:
        fleet.sandbox.state.faults.update({"plant_id": {"rates": {"502": 0.5}}})
        yield fleet


def stored_result(service, identification_id, provider: str) -> dict:
    """One provider's stored result of an identification: its attempts and status."""
    return service.manage_json(
        "import json; from apps.plant_identification.models import ProviderResult as R; "
        f"r = R.objects.get(identification_id='{identification_id}', provider='{provider}'); "
        "print(json.dumps({'attempts': r.attempts, 'status': r.status}))"
    )


def test_two_workers_retry_half_failing_calls_and_count_each_logical_call_once(service):
    bodies = []

    def send(index: int) -> None:
        bodies.append(service.identify((index * 20, 120, 40)))

    threads = [threading.Thread(target=send, args=(index,)) for index in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(bodies) == REQUESTS  # every request answered (200), by Pl@ntNet at least
    results = [stored_result(service, body["id"], "plant_id") for body in bodies]
    assert {result["attempts"] for result in results} <= {1, 2}
    assert sum(result["attempts"] for result in results) == service.sandbox.state.stats["plant_id:requests"]
    retried_ok = [r for r in results if r["attempts"] == 2 and r["status"] == "ok"]
    assert retried_ok, results  # with one call in two failing, some calls were saved by their retry
    assert len(service.answered_by(IDENTIFY)) == 2  # both workers took part
