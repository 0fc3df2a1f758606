"""Breakers: what counts as a failure, when a circuit opens and closes, transitions, shared state."""

import itertools
import logging

import pybreaker
import pytest

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.events import circuit_events_pending
from apps.plant_identification.clients import PlantIdClient, PlantNetClient
from apps.plant_identification.exceptions import (
    ProviderCircuitOpenError,
    ProviderError,
    ProviderUnavailableError,
)
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json, fixture_text, make_request


@pytest.fixture
def plant_id(settings):
    return PlantIdClient(api_key=settings.PLANT_ID_API_KEY, base_url=settings.PLANT_ID_API_URL, timeout=5)


@pytest.fixture
def plantnet(settings):
    return PlantNetClient(
        api_key=settings.PLANTNET_API_KEY, base_url=settings.PLANTNET_API_URL, timeout=5, project="all"
    )


PHOTOS = itertools.count()


def call_ignoring_errors(client, times: int) -> list[type]:
    raised = []
    for _ in range(times):
        index = next(PHOTOS)
        photo = (16 * (index // 16 % 16), 120, 16 * (index % 16))  # a new photo each call: no cached answer
        try:
            client.identify(make_request(color=photo))
            raised.append(None)
        except ProviderError as exc:
            raised.append(type(exc))
    return raised


def test_opens_at_exactly_fail_max_transient_failures(plant_id, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=503, body="busy")
    breaker = breaker_for(Provider.PLANT_ID)

    raised = call_ignoring_errors(plant_id, breaker.fail_max - 1)
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == breaker.fail_max - 1

    raised += call_ignoring_errors(plant_id, 2)
    assert raised == [ProviderUnavailableError] * breaker.fail_max + [ProviderCircuitOpenError]
    assert breaker.current_state == "open"
    assert len(mocked_responses.calls) == breaker.fail_max  # the rejected call never left the process


def test_thresholds_follow_settings(plant_id, mocked_responses, settings):
    settings.PLANT_ID_CIRCUIT_FAIL_MAX = 1
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, 1)
    assert breaker_for(Provider.PLANT_ID).current_state == "open"


def test_species_not_found_never_opens(plantnet, mocked_responses):
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_species_not_found.json"), status=404)
    breaker = breaker_for(Provider.PLANTNET)
    assert call_ignoring_errors(plantnet, breaker.fail_max * 3) == [None] * breaker.fail_max * 3
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_caller_faults_never_open(plant_id, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=400, body=fixture_text("plant_id_invalid_image.txt"))
    breaker = breaker_for(Provider.PLANT_ID)
    call_ignoring_errors(plant_id, breaker.fail_max * 2)
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)


def test_success_resets_the_failure_count(plant_id, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, 2)
    mocked_responses.replace("POST", PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    call_ignoring_errors(plant_id, 1)
    assert breaker_for(Provider.PLANT_ID).fail_counter == 0


def test_half_open_after_reset_timeout_then_closes_after_success_threshold(plant_id, mocked_responses, clock):
    breaker = breaker_for(Provider.PLANT_ID)
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, breaker.fail_max)
    assert breaker.snapshot().state == "open"
    assert breaker.snapshot().retry_after == breaker.reset_timeout

    clock.advance(breaker.reset_timeout - 1)
    assert call_ignoring_errors(plant_id, 1) == [ProviderCircuitOpenError]
    assert breaker.snapshot().retry_after == 1

    clock.advance(1)
    assert breaker.snapshot().state == "half-open"  # the truth now, before any call
    mocked_responses.replace("POST", PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    call_ignoring_errors(plant_id, 1)
    assert breaker.current_state == "half-open"  # success_threshold is 2
    call_ignoring_errors(plant_id, 1)
    assert breaker.current_state == "closed"


def test_failed_trial_reopens_for_another_reset_timeout(plant_id, mocked_responses, clock):
    breaker = breaker_for(Provider.PLANT_ID)
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, breaker.fail_max)
    clock.advance(breaker.reset_timeout)

    assert call_ignoring_errors(plant_id, 2) == [ProviderUnavailableError, ProviderCircuitOpenError]
    assert breaker.snapshot().state == "open"
    assert breaker.snapshot().retry_after == breaker.reset_timeout


def test_transitions_are_logged_and_queued(plant_id, mocked_responses, clock, caplog):
    breaker = breaker_for(Provider.PLANT_ID)
    mocked_responses.post(PLANT_ID_URL, status=500)
    with caplog.at_level(logging.INFO):
        call_ignoring_errors(plant_id, breaker.fail_max)
    events = circuit_events_pending()
    assert [(e.provider, e.from_state, e.to_state, e.fail_count) for e in events] == [
        ("plant_id", "closed", "open", breaker.fail_max)
    ]
    assert f"[CIRCUIT] plant_id: closed -> open (failures {breaker.fail_max}/{breaker.fail_max})" in caplog.text


def test_another_worker_sees_the_open_circuit(plant_id, mocked_responses):
    """A second breaker object on the same provider stands for another worker sharing Redis."""
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, breaker_for(Provider.PLANT_ID).fail_max)

    other_worker = ProviderCircuitBreaker(Provider.PLANT_ID)
    assert other_worker.current_state == "open"
    ran = []
    with pytest.raises(ProviderCircuitOpenError), other_worker.protect():
        ran.append(True)
    assert ran == []


def test_noticing_shared_state_fires_no_event(plant_id, mocked_responses):
    mocked_responses.post(PLANT_ID_URL, status=500)
    call_ignoring_errors(plant_id, breaker_for(Provider.PLANT_ID).fail_max)
    circuit_events_pending()

    other_worker = ProviderCircuitBreaker(Provider.PLANT_ID)
    with pytest.raises(ProviderCircuitOpenError), other_worker.protect():
        pass
    assert circuit_events_pending() == []


def test_disabled_breakers_call_through(plant_id, mocked_responses, settings):
    settings.CIRCUIT_BREAKER_ENABLED = False
    breaker_for(Provider.PLANT_ID).open()
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    assert call_ignoring_errors(plant_id, 1) == [None]


def test_construction_touches_no_redis(redis_unreachable):
    """Django imports the module-level breakers at start-up: with Redis unreachable that must work."""
    breaker = ProviderCircuitBreaker(Provider.PLANTNET)
    assert breaker.store.redis_ok is True  # nothing tried yet

    # On first use the breaker falls back to its in-process state instead of failing the call.
    with breaker.protect():
        pass
    assert breaker.store.redis_ok is False
    assert breaker.current_state == pybreaker.STATE_CLOSED


def test_open_circuit_survives_redis_outage_locally(redis_unreachable):
    breaker = ProviderCircuitBreaker(Provider.PLANTNET)
    for _ in range(breaker.fail_max):
        with pytest.raises(ProviderUnavailableError), breaker.protect():
            raise ProviderUnavailableError("plantnet", "down")
    assert breaker.current_state == "open"


@pytest.fixture
def failure_rate_rule(settings):
    """Plant.id's circuit opens at 50 % failures over the last 10 calls, once 6 are in."""
    settings.PLANT_ID_CIRCUIT_FAILURE_RATE = 50
    settings.PLANT_ID_CIRCUIT_WINDOW = 10
    settings.PLANT_ID_CIRCUIT_MIN_CALLS = 6
    return breaker_for(Provider.PLANT_ID)


def outcomes_through(breaker, pattern: str) -> None:
    """Run one call per character: ``x`` fails like a 5xx, ``.`` succeeds."""
    for outcome in pattern:
        try:
            with breaker.protect():
                if outcome == "x":
                    raise ProviderUnavailableError("plant_id", "HTTP 503")
        except (ProviderUnavailableError, ProviderCircuitOpenError):
            pass


def test_with_a_failure_rate_bursts_of_failures_do_not_open_a_mostly_healthy_circuit(failure_rate_rule):
    outcomes_through(failure_rate_rule, "....xxx.......xxx......")  # 3 in a row (fail_max) twice, 26 % overall
    assert failure_rate_rule.current_state == "closed"


def test_with_a_failure_rate_the_circuit_opens_at_the_rate_once_enough_calls_are_in(failure_rate_rule):
    outcomes_through(failure_rate_rule, "xxxxx")  # 5 failures, but fewer than 6 calls
    assert failure_rate_rule.current_state == "closed"
    outcomes_through(failure_rate_rule, "x")
    assert failure_rate_rule.current_state == "open"
    assert failure_rate_rule.snapshot().reason == "failures"


def test_the_failure_rate_is_over_the_last_window_of_calls(failure_rate_rule):
    outcomes_through(failure_rate_rule, "xxxx" + "." * 10)  # the early failures have left the window
    outcomes_through(failure_rate_rule, "xxxx")  # 4 of the last 10
    assert failure_rate_rule.current_state == "closed"
    outcomes_through(failure_rate_rule, "x")  # 5 of the last 10: 50 %
    assert failure_rate_rule.current_state == "open"


def test_the_failure_rate_also_holds_without_redis(failure_rate_rule, redis_unreachable):
    outcomes_through(failure_rate_rule, "..xxxx")
    assert failure_rate_rule.current_state == "open"
