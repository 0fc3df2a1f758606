"""Single-flight: identical calls in flight at once make one upstream request, across threads and processes
sharing one Redis; waiters get the leader's answer or its failure; a dead leader's lock lapses and a waiter
takes over."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import responses
from django.core.cache import cache, caches
from django.db import connection

from apps.plant_identification.clients import PlantNetClient
from apps.plant_identification.clients.single_flight import single_flight
from apps.plant_identification.exceptions import ProviderUnavailableError
from apps.plant_identification.models import Identification
from apps.plant_identification.sandbox.server import sandbox_start
from apps.plant_identification.services import identify as identify_service
from apps.plant_identification.services.identify import plant_identify
from tests.factories import (
    PLANT_ID_URL,
    PLANTNET_URL,
    LogCounter,
    fixture_json,
    log_counter,
    make_request,
    providers_held,
)

ROOT = Path(__file__).resolve().parents[3]
CALLERS = 10


def client(**options) -> PlantNetClient:
    return PlantNetClient(
        api_key="test-plantnet-key",
        base_url=PLANTNET_URL.rsplit("/identify", 1)[0],
        timeout=5,
        project="all",
        **options,
    )


@pytest.fixture
def waiters():
    with log_counter("apps.plant_identification.clients.single_flight", "waiting for an identical call") as counter:
        yield counter


def held_upstream(mocked_responses, reply):
    """Pl@ntNet holds every request until the returned event is set, then answers ``reply()``."""
    release, entered = threading.Event(), threading.Event()

    def answer(request):
        entered.set()
        release.wait(10)
        return reply()

    mocked_responses.add_callback(responses.POST, PLANTNET_URL, callback=answer, content_type="application/json")
    return release, entered


def call_together(first_entered: threading.Event, release: threading.Event, waiters: LogCounter):
    """One caller goes first and reaches the upstream; the others start while it is held there and wait."""
    shared = client()
    results: list = [None] * CALLERS

    def call(index):
        try:
            results[index] = shared.identify(make_request())
        except Exception as exc:  # noqa: BLE001 - the test inspects what each caller got
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    threads[0].start()
    assert first_entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    waiters.wait_for(CALLERS - 1)
    release.set()
    for thread in threads:
        thread.join(10)
    return results


def test_identical_concurrent_calls_make_one_request_and_share_its_answer(mocked_responses, waiters):
    release, entered = held_upstream(
        mocked_responses, lambda: (200, {}, json.dumps(fixture_json("plantnet_identify_ok.json")))
    )
    results = call_together(entered, release, waiters)

    assert len(mocked_responses.calls) == 1
    assert len({tuple(s.scientific_name for s in answer.suggestions) for answer in results}) == 1
    assert [(answer.cached, answer.attempts) for answer in results].count((True, 0)) == CALLERS - 1


def test_the_waiters_get_the_leaders_failure_without_a_request_of_their_own(mocked_responses, waiters):
    release, entered = held_upstream(mocked_responses, lambda: (502, {}, "bad gateway"))
    results = call_together(entered, release, waiters)

    assert len(mocked_responses.calls) == 1
    assert all(isinstance(result, ProviderUnavailableError) for result in results)
    followers = [result for result in results if result.attempts == 0]
    assert len(followers) == CALLERS - 1
    assert all(f.message.endswith("(an identical call in flight)") for f in followers)


def test_with_single_flight_off_every_caller_makes_its_own_request(settings, mocked_responses, waiters):
    settings.PROVIDER_SINGLE_FLIGHT = False
    upstream = threading.Barrier(4, timeout=10)  # answers only once four requests are in flight at once

    def answer(request):
        upstream.wait()
        return 200, {}, json.dumps(fixture_json("plantnet_identify_ok.json"))

    mocked_responses.add_callback(responses.POST, PLANTNET_URL, callback=answer, content_type="application/json")
    shared = client()
    threads = [threading.Thread(target=shared.identify, args=(make_request(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(mocked_responses.calls) == 4
    assert waiters.count == 0


# ---------------------------------------------------------------------------- several processes, one Redis
@pytest.fixture
def sandbox():
    server = sandbox_start()
    yield server
    server.shutdown()


def worker(sandbox, timeout: float) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own test worker
        [
            sys.executable,
            "-m",
            "tests.plant_identification.clients.single_flight_worker",
            sandbox.plantnet_url(),
            str(timeout),
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_processes_sharing_redis_make_one_request_for_an_identical_photo(sandbox):
    sandbox.state.faults.update({"plantnet": {"latency": {"fixed": 1500}}})  # long enough for all to overlap
    processes = [worker(sandbox, timeout=10) for _ in range(4)]
    answers = [json.loads(process.communicate(timeout=60)[0]) for process in processes]

    assert sandbox.state.stats["plantnet:requests"] == 1
    assert len({tuple(answer["names"]) for answer in answers}) == 1
    assert sorted(answer["cached"] for answer in answers) == [False, True, True, True]


@pytest.mark.slow
def test_a_leader_killed_mid_call_leaves_the_lock_to_lapse_and_a_waiter_takes_over(sandbox):
    sandbox.state.faults.update({"plantnet": {"latency": {"fixed": 30_000}}})  # the leader's call hangs
    leader = worker(sandbox, timeout=1)  # its lock's lease: the 1 s timeout plus the margin
    deadline = time.monotonic() + 30
    while sandbox.state.stats["plantnet:requests"] < 1:
        assert time.monotonic() < deadline, "the leader never called"
        time.sleep(0.02)
    leader.send_signal(signal.SIGKILL)
    leader.wait(10)
    sandbox.state.faults.update({"plantnet": {"latency": {"fixed": 0}}})

    successor = worker(sandbox, timeout=1)
    answer = json.loads(successor.communicate(timeout=60)[0])
    assert answer["cached"] is False  # it called the provider itself, once the dead leader's lock lapsed
    assert answer["names"]
    assert sandbox.state.stats["plantnet:requests"] == 2


@pytest.mark.django_db(transaction=True)
def test_ten_identical_identifications_at_once_call_each_provider_once_and_are_all_stored(
    mocked_responses, waiters, monkeypatch
):
    if connection.vendor == "sqlite":
        # SQLite's shared in-memory test database refuses concurrent writers ("table is locked") instead of
        # making them wait: store one at a time there. PostgreSQL (CI) stores them concurrently.
        store, lock = identify_service.identification_store, threading.Lock()

        def store_one_at_a_time(**kwargs):
            with lock:
                return store(**kwargs)

        monkeypatch.setattr(identify_service, "identification_store", store_one_at_a_time)
    release, entered = providers_held(mocked_responses)
    identifications = []

    def identify():
        try:
            identifications.append(plant_identify(request=make_request()))
        finally:
            connection.close()  # this thread's own connection, as Django closes a request's

    threads = [threading.Thread(target=identify) for _ in range(CALLERS)]
    threads[0].start()
    assert entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    waiters.wait_for(2 * (CALLERS - 1))  # every follower waits for both providers' calls
    release.set()
    for thread in threads:
        thread.join(15)

    assert sorted(call.request.url.split("?")[0] for call in mocked_responses.calls) == sorted(
        [PLANT_ID_URL, PLANTNET_URL]
    )
    assert Identification.objects.count() == CALLERS
    assert len({json.dumps(i.suggestions, sort_keys=True) for i in Identification.objects.all()}) == 1


class Waited(Exception):
    """A caller began to wait for a leader."""


def _wait_raises(_seconds: float) -> None:
    raise Waited


@pytest.fixture(params=["redis", "in-process"], ids=["compare-and-delete script", "get then delete"])
def lock_cache(request, settings):
    """The answer cache the locks live in: Redis (the script), or the in-process cache of a run without Redis."""
    if request.param == "in-process":
        settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    yield request.param
    cache.delete_many(
        [f"plantid:test:{name}{part}" for name in ("lapsed", "release", "unkept") for part in ("", ":flight")]
    )


def flight_options(**changes) -> dict:
    """``single_flight``'s options for a test call: no deadline, a wait raises ``Waited``, the answer kept a minute."""
    return {
        "provider": "plantnet",
        "lease": 5,
        "deadline": None,
        "fresh": lambda entry: None,
        "sleep": _wait_raises,
        "entry": lambda answer: (f"kept {answer}", 60),
        **changes,
    }


def test_a_leader_releases_its_lock_so_the_next_identical_call_leads_at_once(lock_cache):
    options = flight_options()

    assert single_flight("plantid:test:release", lambda: "first", **options) == "first"
    assert single_flight("plantid:test:release", lambda: "second", **options) == "second"  # it never waited
    assert cache.get("plantid:test:release") == "kept second"  # stored with the release, for the next callers
    if lock_cache == "redis":  # kept for the entry's seconds, as cache.set would keep it
        assert 58 <= cache.ttl("plantid:test:release") <= 60


def test_a_leader_that_keeps_nothing_stores_nothing(lock_cache):
    options = flight_options(entry=lambda answer: None)

    assert single_flight("plantid:test:unkept", lambda: "answer", **options) == "answer"
    assert cache.get("plantid:test:unkept") is None
    assert single_flight("plantid:test:unkept", lambda: "again", **options) == "again"


def test_a_leader_whose_answer_cannot_be_kept_still_releases_its_lock(lock_cache, caplog):
    options = flight_options(entry=lambda answer: (lambda: answer, 60))  # a function: it cannot be pickled

    assert single_flight("plantid:test:unkept", lambda: "answer", **options) == "answer"
    assert cache.get("plantid:test:unkept") is None
    assert single_flight("plantid:test:unkept", lambda: "again", **options) == "again"  # it never waited
    assert "could not" in caplog.text


def test_a_leader_whose_entry_fails_raises_its_error_and_releases_its_lock(lock_cache):
    def entry_fails(answer):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        single_flight("plantid:test:unkept", lambda: "answer", **flight_options(entry=entry_fails))
    assert single_flight("plantid:test:unkept", lambda: "again", **flight_options()) == "again"  # it never waited


def test_a_leader_leaves_alone_a_lock_that_another_leader_took_after_its_own_lapsed(lock_cache):
    options = flight_options()

    def call_outliving_its_lease() -> str:
        cache.delete("plantid:test:lapsed:flight")  # its lock lapsed ...
        assert cache.add("plantid:test:lapsed:flight", "another leader's token", timeout=60)  # ... and was taken
        return "late"

    assert single_flight("plantid:test:lapsed", call_outliving_its_lease, **options) == "late"
    assert cache.get("plantid:test:lapsed") == "kept late"  # its answer is kept all the same
    with pytest.raises(Waited):  # the other leader's lock is still there: an identical call waits for it
        single_flight("plantid:test:lapsed", lambda: "never", **options)


def test_a_lock_that_cannot_be_released_never_costs_the_answer(caplog, monkeypatch):
    """Redis gone between the call and the release: the answer is returned, and the lock lapses with its lease."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    options = flight_options()
    backend = caches["default"]

    def unreachable(*args, **kwargs):
        raise RedisConnectionError("Redis went away")

    def call_then_lose_redis() -> str:
        monkeypatch.setattr(backend.client, "get_client", unreachable)
        return "answer"

    answer = single_flight("plantid:test:unreleased", call_then_lose_redis, **options)
    monkeypatch.undo()  # Redis back, for the test's own clean-up

    assert answer == "answer"
    assert "could not store the answer or release a lock (ConnectionError)" in caplog.text
