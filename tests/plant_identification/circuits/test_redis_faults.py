"""Redis refused, hung, stopped mid-run and back: the breaker keeps protecting from in-process state,
costs at most one short timeout per retry interval, warns once, and adopts the shared state again."""

import logging

import pytest

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker
from apps.plant_identification.circuits.store import REDIS_RETRY_SECONDS
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.providers import Provider
from tests.factories import FakeClock, point_circuits_at
from tests.redis_servers import HungRedis, PrivateRedis


def fail_once(breaker) -> type:
    try:
        with breaker.protect():
            raise ProviderUnavailableError(breaker.provider.value, "HTTP 500")
    except (ProviderUnavailableError, ProviderCircuitOpenError) as exc:
        return type(exc)


@pytest.fixture
def hung_redis(settings):
    server = HungRedis()
    point_circuits_at(settings, server.url)
    yield server
    server.close()


@pytest.fixture
def private_redis(settings):
    server = PrivateRedis()
    server.start()
    point_circuits_at(settings, server.url)
    yield server
    server.stop()


@pytest.mark.slow
def test_hung_redis_costs_one_short_timeout_then_nothing_until_the_retry_interval(hung_redis, caplog):
    clock = FakeClock()
    breaker = ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock)
    with caplog.at_level(logging.WARNING):
        results = [fail_once(breaker) for _ in range(breaker.fail_max + 2)]

    assert results == [ProviderUnavailableError] * breaker.fail_max + [ProviderCircuitOpenError] * 2
    # One connection attempt (so one 50 ms socket timeout) for the whole retry interval; bench/breaker.py times it.
    assert hung_redis.accepted == 1
    assert caplog.text.count("Redis unreachable") == 1
    assert breaker.store.redis_ok is False

    clock.advance(REDIS_RETRY_SECONDS)
    fail_once(breaker)
    assert hung_redis.accepted == 2
    assert caplog.text.count("Redis unreachable") == 1  # one warning per outage, not per attempt


def test_redis_refused_still_trips_after_fail_max(redis_unreachable):
    breaker = ProviderCircuitBreaker(Provider.PLANTNET, clock=FakeClock())
    results = [fail_once(breaker) for _ in range(breaker.fail_max + 1)]
    assert results[-1] is ProviderCircuitOpenError
    assert breaker.snapshot().state == "open"


def test_failed_attempts_are_counted_in_the_worker_while_redis_is_refused(redis_unreachable):
    """The retry gate's count of failed attempts in a row carries on from in-process state, and a success ends it."""
    breaker = ProviderCircuitBreaker(Provider.PLANTNET, clock=FakeClock())
    counted = [breaker.attempt_failed().afail for _ in range(3)]
    breaker.call(lambda: "answered")

    assert counted == [1, 2, 3]
    assert breaker.attempt_failed().afail == 1
    assert breaker.store.redis_ok is False


@pytest.mark.slow
def test_redis_stopped_mid_run_and_back_adopts_the_shared_open_circuit(private_redis, caplog):
    clock = FakeClock()
    breaker = ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock)
    fail_once(breaker)
    assert breaker.store.redis_ok is True

    private_redis.stop()
    with caplog.at_level(logging.WARNING):
        assert fail_once(breaker) is ProviderUnavailableError  # counted locally: 2 of 3
        assert breaker.fail_counter == 2

        private_redis.start()  # back, empty; meanwhile another worker opened the shared circuit
        ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock).open()
        clock.advance(REDIS_RETRY_SECONDS)
        assert fail_once(breaker) is ProviderCircuitOpenError  # the shared open circuit wins
    assert "Redis reachable again" in caplog.text
    assert breaker.store.redis_ok is True


@pytest.mark.slow
def test_an_outage_alone_opens_locally_and_recovery_adopts_the_shared_state(private_redis):
    clock = FakeClock()
    breaker = ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock)
    private_redis.stop()
    for _ in range(breaker.fail_max):
        fail_once(breaker)
    assert breaker.snapshot().state == "open"  # protection went on without Redis

    private_redis.start()
    clock.advance(REDIS_RETRY_SECONDS)
    assert breaker.snapshot().state == "closed"  # the fleet's view (nobody else saw failures) is adopted
