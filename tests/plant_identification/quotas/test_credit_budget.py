"""PLANT_ID_DAILY_CREDIT_BUDGET: credits reserved before each Plant.id call, fleet-wide per UTC day, given back
when the call was not charged; past the budget only Pl@ntNet is used."""

import io
import json
import threading
from datetime import UTC, datetime

import pytest
import requests
from django.urls import reverse

from apps.plant_identification.clients.plant_id import PlantIdClient
from apps.plant_identification.exceptions import ProviderError
from apps.plant_identification.quotas.credits import (
    CreditBudgetSpentError,
    budget_state,
    credits_refund,
    credits_reserve,
    credits_spent,
)
from tests.factories import PLANT_ID_URL, PLANTNET_URL, FakeClock, fixture_json, fixture_text, jpeg_bytes, make_request

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")
LATE_EVENING = datetime(2026, 12, 2, 23, 0, tzinfo=UTC).timestamp()  # one hour before 00:00 UTC


def identify(client, color=(40, 120, 40), **fields):
    upload = io.BytesIO(jpeg_bytes(color))
    upload.name = "leaf.jpg"
    return client.post(IDENTIFY, {"images": [upload], **fields}, format="multipart")


def plant_id_bodies(mocked):
    return [json.loads(c.request.body) for c in mocked.calls if c.request.url.startswith(PLANT_ID_URL)]


@pytest.fixture
def budget(settings):
    def set_budget(credits):
        settings.PLANT_ID_DAILY_CREDIT_BUDGET = credits

    return set_budget


@pytest.fixture
def client_at(settings):
    """A Plant.id client whose wall clock the test moves."""
    clock = FakeClock(LATE_EVENING)
    client = PlantIdClient(api_key="k", base_url="https://plant-id.test/api/v3", timeout=5, wall_clock=clock)
    return client, clock


def test_health_costs_two_credits_and_the_last_credit_asks_without_health(client_at, plant_id_ok, budget):
    budget(3)
    client, clock = client_at
    assert client.identify(make_request(color=(10, 200, 10))).health is not None
    assert credits_spent(clock()) == 2
    client.identify(make_request(color=(10, 10, 200)))  # 1 left: no health rather than no answer
    assert [("health" in body) for body in plant_id_bodies(plant_id_ok)] == [True, False]
    assert credits_spent(clock()) == 3

    with pytest.raises(CreditBudgetSpentError) as refused:
        client.identify(make_request(color=(200, 10, 10)))
    assert refused.value.retry_after == 3600  # until 00:00 UTC
    assert "3 of 3 credits" in refused.value.message
    assert "PLANT_ID_DAILY_CREDIT_BUDGET" in refused.value.message
    assert len(plant_id_bodies(plant_id_ok)) == 2  # refused without a call

    clock.advance(3600)  # a new UTC day: a new budget
    assert client.identify(make_request(color=(200, 10, 10))).health is not None
    assert credits_spent(clock()) == 2


def test_near_the_budget_a_cached_answer_with_health_is_still_served(client_at, plant_id_ok, budget):
    """The downgrade is for a call that must be made: an answer with health already cached costs nothing."""
    budget(3)
    client, clock = client_at
    client.identify(make_request())  # 2 credits: 1 left
    again = client.identify(make_request())

    assert again.cached is True
    assert again.health is not None
    assert len(plant_id_bodies(plant_id_ok)) == 1
    assert credits_spent(clock()) == 2


def test_a_request_without_health_costs_one(client_at, plant_id_ok, budget):
    budget(1)
    client, clock = client_at
    client.identify(make_request(include_diseases=False))
    assert credits_spent(clock()) == 1


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ({"status": 500, "body": "Internal Server Error"}, 0),
        ({"status": 429, "body": fixture_text("plant_id_insufficient_credits.txt")}, 0),
        ({"status": 400, "body": fixture_text("plant_id_invalid_image.txt")}, 0),
        ({"body": requests.ConnectionError("refused")}, 0),
        ({"body": requests.ReadTimeout("slow")}, 2),  # may have been charged: counted
        ({"status": 201, "body": '{"result": ['}, 2),  # a 2xx we could not read was charged
    ],
)
def test_credits_of_a_call_that_was_not_charged_are_given_back(client_at, mocked_responses, budget, answer, kept):
    budget(10)
    client, clock = client_at
    mocked_responses.post(PLANT_ID_URL, **answer)
    with pytest.raises(ProviderError):  # each of its own kind
        client.identify(make_request())
    assert credits_spent(clock()) == kept


def test_an_open_circuit_costs_nothing(client_at, mocked_responses, budget):
    budget(10)
    client, clock = client_at
    client.breaker.hold_open(60, "forced")
    with pytest.raises(ProviderError):
        client.identify(make_request())
    assert credits_spent(clock()) == 0


def test_reservations_are_atomic_under_concurrency(budget):
    now = LATE_EVENING
    taken = []
    start = threading.Barrier(24)

    def take():
        start.wait()
        reservation, _ = credits_reserve(1, now, 10)
        taken.append(reservation)

    threads = [threading.Thread(target=take) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in taken if r is not None) == 10
    assert credits_spent(now) == 10
    credits_refund(next(r for r in taken if r is not None))
    assert credits_spent(now) == 9
    assert credits_reserve(2, now, 10)[0] is None  # 9 + 2 passes 10: refused, nothing taken
    assert credits_spent(now) == 9


def test_without_a_budget_credits_are_counted_never_refused(client_at, plant_id_ok):
    client, clock = client_at
    for color in ((10, 100, 10), (100, 10, 10), (10, 10, 100)):
        client.identify(make_request(color=color))
    assert credits_spent(clock()) == 6
    state = budget_state(clock())
    assert (state.budget, state.spent, state.remaining, state.exhausted) == (None, 6, None, False)


def test_past_the_budget_only_plantnet_is_used_and_plant_id_says_why(api_client, plant_id_ok, plantnet_ok, budget):
    budget(2)
    assert identify(api_client).json()["providers"]["plant_id"]["status"] == "ok"  # 2 credits
    body = identify(api_client, (200, 40, 40)).json()
    assert body["providers"]["plant_id"]["status"] == "quota_exhausted"
    assert body["providers"]["plantnet"]["status"] == "ok"
    assert body["degraded"] is True
    assert "Plant.id" in body["message"]
    assert len(plant_id_bodies(plant_id_ok)) == 1

    from apps.plant_identification.models import Identification

    result = Identification.objects.get(pk=body["id"]).provider_results.get(provider="plant_id")
    assert "daily credit budget" in result.error_detail
    assert identify(api_client).json()["providers"]["plant_id"]["cached"] is True  # a cached answer still serves


def test_past_the_budget_with_plantnet_out_the_503_says_until_utc_midnight(api_client, mocked_responses, budget):
    budget(1)
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_no_health.json"), status=201)
    mocked_responses.post(PLANTNET_URL, status=401, json=fixture_json("plantnet_unauthorized.json"))
    identify(api_client, include_diseases="false")  # Pl@ntNet: held open until staff act
    response = identify(api_client, (5, 5, 250), include_diseases="false")
    assert response.status_code == 503
    assert response.json()["providers"]["plant_id"]["status"] == "quota_exhausted"
    now = datetime.now(UTC)
    midnight = (24 - now.hour) * 3600 - now.minute * 60 - now.second
    assert abs(int(response["Retry-After"]) - midnight) <= 5


def test_health_shows_the_budget(anonymous_client, api_client, plant_id_ok, plantnet_ok, budget):
    budget(2)
    identify(api_client)
    status = anonymous_client.get(reverse("health"))
    body = status.json()
    spent = body["quota"]["plant_id"]["budget"]
    assert {k: spent[k] for k in ("budget", "spent_today", "remaining", "exhausted")} == {
        "budget": 2,
        "spent_today": 2,
        "remaining": 0,
        "exhausted": True,
    }
    assert spent["resets_at"].endswith("T00:00:00Z")
    assert body["quota"]["plant_id"]["exhausted"] is True
    assert (status.status_code, body["status"], body["plant_id_available"]) == (200, "degraded", False)


def test_metrics_show_credits_and_quota(anonymous_client, api_client, plant_id_ok, plantnet_ok, budget):
    budget(5)
    identify(api_client)
    text = anonymous_client.get("/metrics").content.decode()
    assert 'plantid_credits_spent_today{provider="plant_id"} 2.0' in text
    assert 'plantid_credit_budget{provider="plant_id"} 5.0' in text
    assert 'plantid_provider_quota_remaining{provider="plant_id",source="budget"} 3.0' in text
    assert 'plantid_credits_spent_total{provider="plant_id"}' in text
