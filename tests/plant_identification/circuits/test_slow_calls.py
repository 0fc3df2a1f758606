"""The slow-call rule: off unless its duration is set; then slow successes open the circuit at their rate over
the window (reason ``slow``), and a slow half-open trial fails, with Redis and without."""

import itertools
import json

import pytest

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_pending
from apps.plant_identification.clients import PlantIdClient
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, UNREACHABLE_REDIS, fixture_json, make_request, point_circuits_at

SLOW, QUICK = 3.0, 0.5  # seconds a call takes on the test's clock, against a 2 s limit


@pytest.fixture(params=["redis", "in-process"])
def store(request, settings):
    """Each test runs on the shared Redis store and on the in-process one (Redis unreachable)."""
    if request.param == "in-process":
        point_circuits_at(settings, UNREACHABLE_REDIS)
    return request.param


@pytest.fixture
def slow_rule(settings, store, clock):
    """Plant.id's circuit opens when half of its last 10 calls (6 at least) took more than 2 s."""
    settings.PLANT_ID_CIRCUIT_SLOW_CALL_DURATION = 2.0
    settings.PLANT_ID_CIRCUIT_SLOW_CALL_RATE = 50
    settings.PLANT_ID_CIRCUIT_WINDOW = 10
    settings.PLANT_ID_CIRCUIT_MIN_CALLS = 6
    return breaker_for(Provider.PLANT_ID)


def calls_through(breaker, clock, pattern: str) -> list[str]:
    """One call per character: ``s`` succeeds in 3 s, ``.`` in 0.5 s, ``x`` fails like a 5xx; what each got."""
    seen = []
    for outcome in pattern:
        try:
            with breaker.protect():
                clock.advance(SLOW if outcome == "s" else QUICK)
                if outcome == "x":
                    raise ProviderUnavailableError("plant_id", "HTTP 503")
            seen.append("ok")
        except ProviderUnavailableError:
            seen.append("failed")
        except ProviderCircuitOpenError as exc:
            seen.append(f"rejected ({exc.reason})")
    return seen


def test_without_a_slow_call_duration_slow_calls_count_for_nothing(settings, store, clock):
    settings.PLANT_ID_CIRCUIT_SLOW_CALL_RATE = 10  # a rate alone turns nothing on
    breaker = breaker_for(Provider.PLANT_ID)
    assert calls_through(breaker, clock, "s" * 30) == ["ok"] * 30
    assert (breaker.current_state, breaker.fail_counter) == ("closed", 0)
    assert calls_through(breaker, clock, "xsxxx") == ["failed", "ok", "failed", "failed", "failed"]  # fail_max 3
    assert breaker.snapshot().reason == "failures"


def test_slow_calls_open_the_circuit_at_their_rate_once_enough_calls_are_in(slow_rule, clock):
    assert calls_through(slow_rule, clock, "sssss") == ["ok"] * 5  # all slow, but fewer than 6 calls
    assert slow_rule.current_state == "closed"
    assert calls_through(slow_rule, clock, "s") == ["ok"]  # the call that opens it still answers
    assert (slow_rule.current_state, slow_rule.snapshot().reason) == ("open", "slow")
    assert calls_through(slow_rule, clock, ".") == ["rejected (slow)"]
    events = circuit_events_pending()
    assert [(e.from_state, e.to_state, e.reason) for e in events] == [("closed", "open", "slow")]


def test_the_slow_call_rate_is_over_the_last_window_of_calls(slow_rule, clock):
    calls_through(slow_rule, clock, "ssss" + "." * 10)  # the early slow calls have left the window
    calls_through(slow_rule, clock, "ssss")  # 4 of the last 10
    assert slow_rule.current_state == "closed"
    calls_through(slow_rule, clock, "s")  # 5 of the last 10: 50 %
    assert slow_rule.current_state == "open"


def test_a_call_of_exactly_the_duration_is_not_slow(slow_rule, clock):
    for _ in range(10):
        with slow_rule.protect():
            clock.advance(2.0)
    assert slow_rule.current_state == "closed"


def test_with_only_the_slow_rule_failures_are_calls_in_its_window_and_fail_max_still_opens(slow_rule, clock):
    calls_through(slow_rule, clock, "xx.xx.")  # 6 calls, none slow; never 3 failures in a row
    calls_through(slow_rule, clock, "sssss")  # 5 slow of the last 10 calls: the failures count as calls
    assert (slow_rule.current_state, slow_rule.snapshot().reason) == ("open", "slow")

    slow_rule.close()
    assert calls_through(slow_rule, clock, "xxx") == ["failed"] * 3  # the consecutive rule holds alongside
    assert slow_rule.snapshot().reason == "failures"


def test_slow_and_failure_rates_each_open_on_a_call_of_their_kind(slow_rule, clock, settings):
    settings.PLANT_ID_CIRCUIT_FAILURE_RATE = 50
    calls_through(slow_rule, clock, "xxxsss")  # 50 % failed and 50 % slow once 6 are in: a slow call opened it
    assert slow_rule.snapshot().reason == "slow"
    slow_rule.close()
    calls_through(slow_rule, clock, "sssxxx")
    assert slow_rule.snapshot().reason == "failures"


def test_a_slow_half_open_trial_is_a_failed_trial(slow_rule, clock):
    slow_rule.open()
    clock.advance(slow_rule.reset_timeout)
    assert calls_through(slow_rule, clock, "s") == ["ok"]  # the trial answered, slowly
    snapshot = slow_rule.snapshot()
    assert (snapshot.state, snapshot.reason, snapshot.retry_after) == ("open", "slow", slow_rule.reset_timeout)
    assert slow_rule.fail_counter == 1  # as a failed trial adds one

    clock.advance(slow_rule.reset_timeout)
    calls_through(slow_rule, clock, "..")  # success_threshold 2 quick trials close it
    assert (slow_rule.current_state, slow_rule.fail_counter) == ("closed", 0)


def test_a_pinned_close_does_not_count_slow_calls(slow_rule, clock):
    slow_rule.pin_closed(600)
    calls_through(slow_rule, clock, "s" * 10)
    assert slow_rule.current_state == "closed"


def test_a_slow_provider_answer_is_measured_around_the_upstream_call(slow_rule, clock, mocked_responses, settings):
    """Through the real client: the time the HTTP answer takes is the call's duration; cache hits take none."""
    body = fixture_json("plant_id_identification_ok.json")

    def answer_in_three_seconds(request):
        clock.advance(SLOW)
        return 201, {}, json.dumps(body)

    mocked_responses.add_callback("POST", PLANT_ID_URL, callback=answer_in_three_seconds)
    client = PlantIdClient(api_key=settings.PLANT_ID_API_KEY, base_url=settings.PLANT_ID_API_URL, timeout=35)
    photos = itertools.count()
    for _ in range(5):
        client.identify(make_request(color=(16 * next(photos), 120, 40)))
    for _ in range(20):
        assert client.identify(make_request(color=(0, 120, 40))).cached  # no upstream call: not a call at all
    assert slow_rule.current_state == "closed"
    client.identify(make_request(color=(16 * next(photos), 120, 40)))
    assert (slow_rule.current_state, slow_rule.snapshot().reason) == ("open", "slow")
    with pytest.raises(ProviderCircuitOpenError):
        client.identify(make_request(color=(16 * next(photos), 120, 40)))
    assert len(mocked_responses.calls) == 6
