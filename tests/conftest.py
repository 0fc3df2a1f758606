"""Shared fixtures: HTTP fakes in the providers' wire formats, images, API clients, breaker and clock resets."""

import pytest
import responses
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import circuit_events_pending
from apps.plant_identification.clients.outages import OUTAGE_WATCHES
from apps.plant_identification.clients.retries import RETRY_BUDGETS
from apps.plant_identification.providers import Provider
from tests.factories import PLANT_ID_URL, PLANTNET_URL, UNREACHABLE_REDIS, FakeClock, fixture_json, point_circuits_at


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts with closed circuits, an empty answer cache, no queued circuit events, full retry
    budgets and no outage seen."""
    cache.clear()
    for provider in Provider:
        breaker_for(provider).close()
        RETRY_BUDGETS[provider].reset()
        OUTAGE_WATCHES[provider].reset()
    circuit_events_pending()
    yield
    cache.clear()


@pytest.fixture
def clock():
    """A FakeClock driving both breakers for the test."""
    fake = FakeClock()
    originals = {provider: breaker_for(provider).clock for provider in Provider}
    for provider in Provider:
        breaker_for(provider).clock = fake
    yield fake
    for provider, original in originals.items():
        breaker_for(provider).clock = original


@pytest.fixture
def mocked_responses():
    """Fake HTTP: an unregistered URL raises ConnectionError, so nothing reaches the network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def plant_id_ok(mocked_responses):
    """Plant.id answers its recorded 201 identification."""
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    return mocked_responses


@pytest.fixture
def plantnet_ok(mocked_responses):
    """Pl@ntNet answers its recorded 200 identification."""
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"), status=200)
    return mocked_responses


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="gardener", password="pw")


@pytest.fixture
def api_client(user):
    """An API client authenticated as ``user``."""
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def anonymous_client():
    return APIClient()


@pytest.fixture
def redis_unreachable(settings):
    """Point the breaker storage at a port where nothing listens."""
    point_circuits_at(settings, UNREACHABLE_REDIS)
