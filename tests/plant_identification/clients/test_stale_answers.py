"""Stale-if-error: past its TTL a provider's last answer for the same request stands in when the provider cannot
answer (error, timeout, quota, open circuit), up to its stale max age; a provider that answers replaces it."""

import threading

import pytest
import requests
import responses

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.exceptions import (
    ProviderCircuitOpenError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from apps.plant_identification.providers import Provider
from tests.factories import PLANTNET_URL, FakeClock, fixture_json, make_request

TTL = 3600
MAX_AGE = 7 * 86400


@pytest.fixture(autouse=True)
def _ages(settings):
    settings.PLANTNET_CACHE_TTL = TTL
    settings.PLANTNET_STALE_MAX_AGE = MAX_AGE
    settings.PROVIDER_MAX_RETRIES = 0  # one request per call: the counts below are calls


@pytest.fixture
def wall():
    return FakeClock(start=1_800_000_000.0)


def client(wall) -> PlantNetClient:
    return PlantNetClient(
        api_key="test-plantnet-key",
        base_url=PLANTNET_URL.rsplit("/identify", 1)[0],
        timeout=5,
        project="all",
        wall_clock=wall,
    )


def answered_once(mocked_responses, wall) -> None:
    """Pl@ntNet answered the request once, at the wall clock's start; the test registers what comes next."""
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)
    answer = client(wall).identify(make_request())
    assert (answer.cached, answer.stale) == (False, False)
    mocked_responses.reset()


def names(answer) -> list[str]:
    return [s.scientific_name for s in answer.suggestions]


def test_within_the_ttl_the_answer_is_a_fresh_hit_with_its_age(mocked_responses, wall):
    answered_once(mocked_responses, wall)
    wall.advance(600)

    answer = client(wall).identify(make_request())

    assert (answer.cached, answer.stale, answer.age_s, answer.attempts) == (True, False, 600, 0)
    assert len(mocked_responses.calls) == 0


def test_past_the_ttl_the_provider_is_asked_again_and_its_new_answer_replaces_the_old(mocked_responses, wall):
    answered_once(mocked_responses, wall)
    wall.advance(TTL + 1)
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)

    answer = client(wall).identify(make_request())
    wall.advance(10)
    again = client(wall).identify(make_request())

    assert (answer.cached, answer.stale) == (False, False)
    assert (again.cached, again.stale, again.age_s) == (True, False, 10)
    assert len(mocked_responses.calls) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            {"status": 500, "json": {"statusCode": 500, "error": "Internal Server Error", "message": "x"}},
            ProviderUnavailableError,
        ),
        ({"body": requests.ConnectionError("refused")}, ProviderUnavailableError),
        ({"body": requests.ReadTimeout("slow")}, ProviderTimeoutError),
        (
            {"status": 429, "json": {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}},
            ProviderRateLimitedError,
        ),
        ({"status": 200, "body": '{"results": [{"score": '}, ProviderError),
    ],
    ids=["500", "refused", "timeout", "429", "malformed"],
)
def test_past_the_ttl_a_failure_carries_the_last_answer_with_its_age(mocked_responses, wall, reply, error):
    answered_once(mocked_responses, wall)
    first = names(client(wall).identify(make_request()))
    wall.advance(TTL + 120)
    mocked_responses.post(PLANTNET_URL, **reply)

    with pytest.raises(error) as raised:
        client(wall).identify(make_request())

    stale = raised.value.stale_answer
    assert stale is not None
    assert (stale.cached, stale.stale, stale.age_s, stale.attempts) == (True, True, TTL + 120, 0)
    assert names(stale) == first
    assert len(mocked_responses.calls) == 1  # the provider was asked: a stale answer is only a fallback


def test_an_open_circuit_serves_the_last_answer_without_a_call(mocked_responses, wall):
    answered_once(mocked_responses, wall)
    wall.advance(2 * 86400)
    breaker_for(Provider.PLANTNET).open()

    with pytest.raises(ProviderCircuitOpenError) as raised:
        client(wall).identify(make_request())

    assert raised.value.stale_answer.stale is True
    assert raised.value.stale_answer.age_s == 2 * 86400
    assert len(mocked_responses.calls) == 0


def test_past_the_stale_max_age_a_failure_carries_nothing(mocked_responses, wall):
    answered_once(mocked_responses, wall)
    wall.advance(MAX_AGE + 1)
    breaker_for(Provider.PLANTNET).open()

    with pytest.raises(ProviderCircuitOpenError) as raised:
        client(wall).identify(make_request())

    assert raised.value.stale_answer is None


def test_other_images_never_get_another_requests_answer(mocked_responses, wall):
    answered_once(mocked_responses, wall)
    breaker_for(Provider.PLANTNET).open()

    with pytest.raises(ProviderCircuitOpenError) as raised:
        client(wall).identify(make_request(color=(200, 30, 30)))

    assert raised.value.stale_answer is None


def test_a_stale_max_age_of_zero_keeps_nothing_past_the_ttl(settings, mocked_responses, wall):
    settings.PLANTNET_STALE_MAX_AGE = 0
    answered_once(mocked_responses, wall)
    wall.advance(TTL)
    breaker_for(Provider.PLANTNET).open()

    with pytest.raises(ProviderCircuitOpenError) as raised:
        client(wall).identify(make_request())

    assert raised.value.stale_answer is None


def test_a_cache_ttl_of_zero_still_keeps_the_fallback(settings, mocked_responses, wall):
    settings.PLANTNET_CACHE_TTL = 0
    answered_once(mocked_responses, wall)
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)

    assert client(wall).identify(make_request()).cached is False  # never a hit: every request is asked
    breaker_for(Provider.PLANTNET).open()
    with pytest.raises(ProviderCircuitOpenError) as raised:
        client(wall).identify(make_request())

    assert raised.value.stale_answer.stale is True
    assert raised.value.stale_answer.age_s == 0


def test_a_waiter_takes_the_leaders_new_answer_not_the_stale_entry(settings, mocked_responses, wall):
    """With single-flight, a caller waiting for an identical call in flight must not mistake the stale entry
    already in the cache for the leader's answer."""
    settings.PROVIDER_SINGLE_FLIGHT = True
    answered_once(mocked_responses, wall)
    wall.advance(TTL + 5)
    release, entered = threading.Event(), threading.Event()
    fresh = fixture_json("plantnet_identify_ok.json")
    fresh["results"] = fresh["results"][:1]

    def held(request):
        entered.set()
        release.wait(10)
        return 200, {}, responses.json_module.dumps(fresh)

    mocked_responses.add_callback(responses.POST, PLANTNET_URL, callback=held, content_type="application/json")
    results = {}
    leader = threading.Thread(target=lambda: results.update(leader=client(wall).identify(make_request())))
    leader.start()
    assert entered.wait(10)
    waiter = threading.Thread(target=lambda: results.update(waiter=client(wall).identify(make_request())))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # it waits for the leader rather than taking the stale entry
    release.set()
    leader.join(10)
    waiter.join(10)

    assert len(mocked_responses.calls) == 1
    assert (
        names(results["waiter"])
        == names(results["leader"])
        == [fresh["results"][0]["species"]["scientificNameWithoutAuthor"]]
    )
    assert results["waiter"].stale is False
