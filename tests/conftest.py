"""Shared fixtures: HTTP fakes in the providers' wire formats, images, API clients, breaker and clock resets."""

import io
import json
from pathlib import Path

import pytest
import responses
from django.core.cache import cache
from PIL import Image
from rest_framework.test import APIClient

from apps.plant_identification.breakers import breaker_for
from apps.plant_identification.circuit_events import circuit_events_pending
from apps.plant_identification.types import Provider

FIXTURES = Path(__file__).parent / "fixtures"
PLANT_ID_URL = "https://plant-id.test/api/v3/identification"
PLANTNET_URL = "https://plantnet.test/v2/identify/all"


def fixture_text(name: str) -> str:
    """A recorded provider body from tests/fixtures."""
    return (FIXTURES / name).read_text()


def fixture_json(name: str):
    """A recorded provider JSON body from tests/fixtures."""
    return json.loads(fixture_text(name))


def jpeg_bytes(color=(40, 120, 40), size=(320, 240)) -> bytes:
    """A small real JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts with closed circuits, an empty answer cache and no queued circuit events."""
    cache.clear()
    for provider in Provider:
        breaker_for(provider).close()
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


UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def point_circuits_at(settings, url: str) -> None:
    """Make the breaker storage (and the Redis health check) use ``url``, with the production options."""
    settings.REDIS_URL = url
    settings.CACHES = {**settings.CACHES, "circuits": {**settings.CACHES["circuits"], "LOCATION": url}}


@pytest.fixture
def redis_unreachable(settings):
    """Point the breaker storage at a port where nothing listens."""
    point_circuits_at(settings, UNREACHABLE_REDIS)
