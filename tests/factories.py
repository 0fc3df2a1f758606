"""Test builders shared across modules: recorded provider bodies, images, requests, fake clients, a clock."""

import contextlib
import io
import json
import logging
import threading
from pathlib import Path

import responses
from PIL import Image

from apps.plant_identification.images import image_normalise
from apps.plant_identification.providers import Provider
from apps.plant_identification.types import IdentifyRequest, Organ, ProviderAnswer, Suggestion
from backend.settings import CIRCUITS_REDIS_TIMEOUT

FIXTURES = Path(__file__).parent / "fixtures"
PLANT_ID_URL = "https://plant-id.test/api/v3/identification"
PLANTNET_URL = "https://plantnet.test/v2/identify/all"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


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


def make_request(*, color=(40, 120, 40), **overrides) -> IdentifyRequest:
    """A validated one-photo identify request (a leaf, with the health assessment); photos differ by colour."""
    image = image_normalise(io.BytesIO(jpeg_bytes(color)))
    fields = {"images": (image,), "organs": (Organ.LEAF,), "include_diseases": True}
    fields.update(overrides)
    return IdentifyRequest(**fields)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeClient:
    """A provider client for the service: ``identify`` returns what ``behaviour`` returns, or raises."""

    def __init__(self, provider: Provider, behaviour) -> None:
        self.provider = provider
        self.behaviour = behaviour
        self.calls = 0

    def identify(self, request: IdentifyRequest, *, deadline: float | None = None) -> ProviderAnswer:
        self.calls += 1
        return self.behaviour()


def answering(provider: Provider, name="Monstera deliciosa", score=0.8, *, cached=False):
    """A behaviour that answers with one suggestion."""
    return lambda: ProviderAnswer(
        provider=provider,
        raw={"name": name},
        suggestions=(Suggestion(scientific_name=name, score=score),),
        cached=cached,
    )


def hanging(provider: Provider, release: threading.Event):
    """A behaviour that blocks until ``release`` is set, then answers."""

    def hang():
        release.wait(10)
        return answering(provider)()

    return hang


def failing(exc: Exception):
    """A behaviour that raises ``exc``."""

    def raise_it():
        raise exc

    return raise_it


def point_circuits_at(settings, url: str) -> None:
    """Make the breaker storage (and the Redis health check) use ``url``, with the production options."""
    circuits = settings.CACHES["circuits"]
    timeouts = {"SOCKET_TIMEOUT": CIRCUITS_REDIS_TIMEOUT, "SOCKET_CONNECT_TIMEOUT": CIRCUITS_REDIS_TIMEOUT}
    settings.REDIS_URL = url
    settings.CACHES = {
        **settings.CACHES,
        "circuits": {**circuits, "LOCATION": url, "OPTIONS": {**circuits["OPTIONS"], **timeouts}},
    }


class LogCounter(logging.Handler):
    """Counts the records of one logger whose message contains ``phrase`` (e.g. the callers that started to wait
    for a call in flight); ``wait_for(n)`` blocks until n have been seen."""

    def __init__(self, phrase: str) -> None:
        super().__init__()
        self.phrase = phrase
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if self.phrase in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, timeout=10), self.count


@contextlib.contextmanager
def log_counter(logger_name: str, phrase: str):
    """A ``LogCounter`` attached to ``logger_name`` (at INFO) for the block."""
    counter = LogCounter(phrase)
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)


def providers_held(mocked_responses) -> tuple[threading.Event, threading.Event]:
    """Both providers answer their recorded identifications, holding every request until ``release`` (the first
    returned event) is set; ``entered`` (the second) is set once a request has arrived."""
    release, entered = threading.Event(), threading.Event()

    def held(name: str, status: int):
        def answer(request):
            entered.set()
            release.wait(10)
            return status, {}, json.dumps(fixture_json(name))

        return answer

    for url, name, status in (
        (PLANT_ID_URL, "plant_id_identification_ok.json", 201),
        (PLANTNET_URL, "plantnet_identify_ok.json", 200),
    ):
        mocked_responses.add_callback(responses.POST, url, callback=held(name, status), content_type="application/json")
    return release, entered
