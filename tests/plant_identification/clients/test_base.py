"""The base client's mechanics, once, through a minimal provider: cache, sessions, errors, secrets, leases."""

import base64
import contextlib
import itertools
import json
import threading
import time

import pytest
import requests

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.clients.base import DEFAULT_QUOTA_WAIT, BaseProviderClient, OutboundRequest
from apps.plant_identification.clients.outages import Backoff, OutageWatch
from apps.plant_identification.clients.payloads import Base64Data
from apps.plant_identification.clients.retries import RetryBudget
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderCircuitOpenError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from apps.plant_identification.providers import Provider
from apps.plant_identification.types import ProviderAnswer, Suggestion
from tests.factories import FakeClock, make_request
from tests.plant_identification.clients.outage_steps import failed_attempt_then_backoff, probe_fails, wait_until_waiting

BASE_URL = "https://minimal.test/v1"
URL = f"{BASE_URL}/identify"
KEY = "sekrit-minimal-key"


class MinimalClient(BaseProviderClient):
    """The smallest provider: the key in the query, the photos as multipart, ``[name, score]`` pairs back."""

    provider = Provider.PLANT_ID  # borrows Plant.id's breaker and cache TTL
    secret_params = frozenset({"key"})

    def build_request(self, request):
        photos = [("images", ("photo.jpg", image.data_for(self.provider), "image/jpeg")) for image in request.images]
        return OutboundRequest("POST", "/identify", params={"key": self.api_key}, files=photos)

    def parse_response(self, payload):
        names = tuple(Suggestion(scientific_name=name, score=score) for name, score in payload["names"])
        return ProviderAnswer(provider=self.provider, suggestions=names, raw=payload)


@pytest.fixture
def client():
    return MinimalClient(api_key=KEY, base_url=BASE_URL, timeout=5)


OK_BODY = {"names": [["Monstera deliciosa", 0.9]]}


def test_an_answer_is_parsed_and_the_key_travels_only_in_the_query(client, mocked_responses):
    mocked_responses.post(URL, json=OK_BODY)
    answer = client.identify(make_request())

    assert [(s.scientific_name, s.score) for s in answer.suggestions] == [("Monstera deliciosa", 0.9)]
    assert answer.cached is False
    assert f"key={KEY}" in mocked_responses.calls[0].request.url


def test_the_same_request_is_answered_from_the_cache(client, mocked_responses):
    mocked_responses.post(URL, json=OK_BODY)
    first = client.identify(make_request())
    second = client.identify(make_request())
    other_photo = client.identify(make_request(color=(200, 30, 30)))

    assert len(mocked_responses.calls) == 2  # the first photo once, the other photo once
    assert (first.cached, second.cached, other_photo.cached) == (False, True, False)
    assert second.suggestions == first.suggestions


class JsonBodyClient(MinimalClient):
    """A provider that sends its photos as base64 in a JSON body."""

    def build_request(self, request):
        photos = [Base64Data(image.data_for(self.provider)) for image in request.images]
        return OutboundRequest("POST", "/identify", params={"key": self.api_key}, json={"images": photos})


def test_a_json_body_is_sent_as_requests_json_would_send_it(mocked_responses):
    mocked_responses.post(URL, json=OK_BODY)
    request = make_request()
    JsonBodyClient(api_key=KEY, base_url=BASE_URL, timeout=5).identify(request)

    sent = mocked_responses.calls[0].request
    photo = base64.b64encode(request.images[0].data_for(Provider.PLANT_ID)).decode()
    assert sent.body == requests.Request("POST", URL, json={"images": [photo]}).prepare().body
    assert sent.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("body", [{"data": {"organs": "leaf"}}, {"files": [("extra", ("a.txt", b"x", "text/plain"))]}])
def test_a_request_with_a_json_body_and_a_form_is_refused_when_built(body):
    """requests would send the form and drop the JSON without a word: no provider request may ask for both."""
    with pytest.raises(ValueError, match="not both"):
        OutboundRequest("POST", "/identify", json={"images": []}, **body)


def test_the_cache_key_ignores_secrets(mocked_responses):
    """A rotated key keeps the cached answers: the secret is not part of what names the answer."""
    mocked_responses.post(URL, json=OK_BODY)
    MinimalClient(api_key="old-key", base_url=BASE_URL, timeout=5).identify(make_request())
    answer = MinimalClient(api_key="new-key", base_url=BASE_URL, timeout=5).identify(make_request())

    assert answer.cached is True
    assert len(mocked_responses.calls) == 1


def test_failures_are_not_cached(client, mocked_responses):
    mocked_responses.post(URL, status=503, body="busy")
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError):
            client.identify(make_request())
    assert len(mocked_responses.calls) == 2


def test_each_thread_has_its_own_session_kept_across_calls(client):
    sessions = []
    thread = threading.Thread(target=lambda: sessions.append(client.session))
    thread.start()
    thread.join()

    assert client.session is client.session
    assert sessions[0] is not client.session


@pytest.mark.parametrize("exc", [requests.ReadTimeout("read timed out"), requests.ConnectTimeout("connect")])
def test_timeouts(client, mocked_responses, exc):
    mocked_responses.post(URL, body=exc)
    with pytest.raises(ProviderTimeoutError, match="no answer within 5s"):
        client.identify(make_request())


def test_a_refused_connection_is_unavailable_and_its_message_never_carries_the_key(client, mocked_responses):
    # requests' own messages carry the URL, and with it a key sent in the query.
    mocked_responses.post(URL, body=requests.ConnectionError(f"Max retries exceeded with url: /v1/identify?key={KEY}"))
    with pytest.raises(ProviderUnavailableError) as caught:
        client.identify(make_request())
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, "bad image", ProviderRejectedRequestError),
        (404, "no such path", ProviderRejectedRequestError),
        (413, "too large", ProviderRejectedRequestError),
        (415, "unsupported", ProviderRejectedRequestError),
        (401, f"key {KEY} not found", ProviderAuthError),
        (403, "forbidden", ProviderAuthError),
        (500, "Internal Server Error", ProviderUnavailableError),
        (502, "<html><body>502 Bad Gateway</body></html>", ProviderUnavailableError),
        (503, "busy", ProviderUnavailableError),
    ],
)
def test_error_statuses_are_classified_without_the_key(client, mocked_responses, status, body, error):
    mocked_responses.post(URL, body=body, status=status)
    with pytest.raises(error) as caught:
        client.identify(make_request())
    assert caught.value.status_code == status
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "120"}, 120),
        ({"RateLimit": '"dailyQuota";r=0;t=3600'}, 3600),
        ({"Retry-After": "120", "RateLimit": '"dailyQuota";r=0;t=3600'}, 120),
        ({}, DEFAULT_QUOTA_WAIT),  # nothing says when: a default wait (providers refine it with a hook)
    ],
)
def test_a_429_says_when_the_quota_returns(client, mocked_responses, headers, wait):
    mocked_responses.post(URL, body="quota", status=429, headers=headers)
    with pytest.raises(ProviderRateLimitedError) as caught:
        client.identify(make_request())
    assert caught.value.retry_after == wait


@pytest.mark.parametrize(
    "body",
    [
        "<html>gateway</html>",
        "[]",
        '{"names": [["Monstera deliciosa", NaN]]}',
        '{"names": [["Monstera deliciosa", 1e400]]}',
        '{"names": [["Mon\\u0000stera", 0.5]]}',
        '{"names": [[null, 0.5]]}',
    ],
)
def test_a_malformed_success_body_is_a_response_error(client, mocked_responses, body):
    mocked_responses.post(URL, body=body, status=200)
    with pytest.raises(ProviderResponseError):
        client.identify(make_request())


def test_a_failure_that_opens_the_circuit_says_when_to_retry(client, mocked_responses):
    mocked_responses.post(URL, status=503, body="busy")
    breaker = breaker_for(client.provider)
    errors = []
    for index in range(breaker.fail_max):
        with pytest.raises(ProviderUnavailableError) as caught:
            client.identify(make_request(color=(10 * index, 120, 40)))
        errors.append(caught.value.circuit_retry_after)

    assert errors == [None] * (breaker.fail_max - 1) + [breaker.reset_timeout]


def test_a_half_open_trial_holds_its_slot_for_the_clients_own_timeout(settings, mocked_responses, clock):
    """The lease is the calling client's timeout plus the margin, not the provider's configured timeout."""
    settings.PLANT_ID_TIMEOUT = 600  # the configured timeout: a lease sized from it would outlast the test
    client = MinimalClient(api_key=KEY, base_url=BASE_URL, timeout=2)
    breaker = breaker_for(client.provider)
    breaker.open()
    clock.advance(breaker.reset_timeout)
    entered, release = threading.Event(), threading.Event()

    def hang(_request):
        entered.set()
        release.wait(5)
        return 503, {}, "busy"

    def trial_call():
        with pytest.raises(ProviderUnavailableError):
            client.identify(make_request())

    mocked_responses.add_callback("POST", URL, callback=hang)
    trial = threading.Thread(target=trial_call)
    trial.start()
    try:
        assert entered.wait(5)
        with pytest.raises(ProviderCircuitOpenError):  # the trial holds the only slot
            client.identify(make_request(color=(1, 2, 3)))
        clock.advance(2 + settings.CIRCUIT_TRIAL_LEASE_MARGIN)
        mocked_responses.replace("POST", URL, json=OK_BODY)
        assert client.identify(make_request(color=(4, 5, 6))).suggestions  # the lease ran out: a new trial
    finally:
        release.set()
        trial.join()


# ---------------------------------------------------------------------------- retries


@pytest.fixture
def retrying(settings):
    """A client that retries once, sleeping on a list instead of the clock, with its own retry budget."""
    settings.PROVIDER_MAX_RETRIES = 1
    settings.PROVIDER_RETRY_BUDGET_FLOOR = 3
    settings.PROVIDER_RETRY_BUDGET_PERCENT = 20
    settings.PROVIDER_RETRY_BUDGET_WINDOW = 10
    sleeps: list[float] = []
    clock = FakeClock()
    client = MinimalClient(
        api_key=KEY,
        base_url=BASE_URL,
        timeout=5,
        retry_budget=RetryBudget(clock=clock),
        outage_watch=OutageWatch(sleep=sleeps.append),
    )
    client.sleeps, client.budget_clock = sleeps, clock
    return client


@pytest.mark.parametrize(
    "first",
    [
        {"body": requests.ConnectionError("Connection refused")},
        {"body": requests.ConnectionError("Connection reset by peer")},
        {"status": 500, "body": "Internal Server Error"},
        {"status": 502, "body": "<html>502 Bad Gateway</html>"},
        {"status": 503, "body": "busy"},
        {"status": 504, "body": "gateway timeout"},
    ],
)
def test_a_failure_before_any_answer_is_retried_once_and_the_call_succeeds(retrying, mocked_responses, first):
    mocked_responses.post(URL, **first)
    mocked_responses.post(URL, json=OK_BODY)
    answer = retrying.identify(make_request())

    assert answer.suggestions
    assert answer.attempts == 2
    assert len(mocked_responses.calls) == 2
    assert len(retrying.sleeps) == 1
    assert 0.025 <= retrying.sleeps[0] <= 0.075  # a short jittered backoff
    assert breaker_for(retrying.provider).fail_counter == 0  # the logical call succeeded


@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.ConnectTimeout("connect timed out")},
        {"status": 400, "body": "bad image"},
        {"status": 401, "body": "key not found"},
        {"status": 403, "body": "forbidden"},
        {"status": 429, "body": "quota"},
        {"status": 501, "body": "not implemented"},
        {"status": 200, "body": "<html>not json</html>"},
    ],
)
def test_timeouts_caller_faults_quota_credentials_and_bad_answers_are_never_retried(
    retrying, mocked_responses, failure
):
    mocked_responses.post(URL, **failure)
    with pytest.raises(ProviderError) as caught:
        retrying.identify(make_request())
    assert len(mocked_responses.calls) == 1
    assert caught.value.attempts == 1
    assert retrying.sleeps == []


def test_a_retried_call_that_fails_again_is_one_failure_for_the_breaker(retrying, mocked_responses):
    mocked_responses.post(URL, status=503, body="busy")
    with pytest.raises(ProviderUnavailableError) as caught:
        retrying.identify(make_request())

    assert (len(mocked_responses.calls), caught.value.attempts) == (2, 2)
    assert breaker_for(retrying.provider).fail_counter == 1


def test_no_retry_when_retries_are_off(retrying, mocked_responses, settings):
    settings.PROVIDER_MAX_RETRIES = 0
    mocked_responses.post(URL, status=503, body="busy")
    with pytest.raises(ProviderUnavailableError):
        retrying.identify(make_request())
    assert len(mocked_responses.calls) == 1


def test_no_retry_when_the_deadline_leaves_no_room(retrying, mocked_responses):
    mocked_responses.post(URL, status=503, body="busy")
    with pytest.raises(ProviderUnavailableError):
        retrying.identify(make_request(), deadline=time.monotonic() + 0.5)  # less than the room a retry needs
    assert len(mocked_responses.calls) == 1


def test_no_retry_when_the_timeout_leaves_no_room(settings, mocked_responses):
    settings.PROVIDER_MAX_RETRIES = 1
    client = MinimalClient(api_key=KEY, base_url=BASE_URL, timeout=0.5, outage_watch=OutageWatch(sleep=pytest.fail))
    mocked_responses.post(URL, status=503, body="busy")
    with pytest.raises(ProviderUnavailableError):
        client.identify(make_request())
    assert len(mocked_responses.calls) == 1


def blips(mocked_responses) -> None:
    """Every other request fails with a 503: each call's first attempt fails, and its retry would succeed."""
    answers = itertools.cycle([(503, {}, "busy"), (200, {}, json.dumps(OK_BODY))])
    mocked_responses.add_callback("POST", URL, callback=lambda _request: next(answers))


PHOTOS = itertools.count()


def retries_made(client, calls: int) -> int:
    made = 0
    for _ in range(calls):
        index = next(PHOTOS)  # a new photo each call: never a cached answer
        with contextlib.suppress(ProviderUnavailableError):  # no retry was allowed: the call failed
            made += client.identify(make_request(color=(8 * (index % 32), 8 * (index // 32 % 32), 60))).attempts - 1
        breaker_for(client.provider).close()  # keep the circuit out of it: this is about the budget
    return made


def test_the_retry_budget_caps_retries(retrying, mocked_responses):
    """20 calls in the window earn 3 retries (the floor) + 20 % of 20 = 7, whatever else would be retryable."""
    blips(mocked_responses)
    assert retries_made(retrying, 20) == 3 + 4


def test_the_retry_budget_refills_as_its_window_slides(retrying, mocked_responses, settings):
    settings.PROVIDER_RETRY_BUDGET_PERCENT = 0  # the floor alone
    blips(mocked_responses)
    assert retries_made(retrying, 5) == 3
    retrying.budget_clock.advance(settings.PROVIDER_RETRY_BUDGET_WINDOW)
    assert retries_made(retrying, 5) == 3


def test_no_retry_into_a_circuit_that_opened_while_the_call_was_out(retrying, mocked_responses):
    def fail_after_another_call_tripped_it(_request):
        breaker_for(retrying.provider).open()  # another worker's failure opened it meanwhile
        return 503, {}, "busy"

    mocked_responses.add_callback("POST", URL, callback=fail_after_another_call_tripped_it)
    with pytest.raises(ProviderUnavailableError):
        retrying.identify(make_request())
    assert len(mocked_responses.calls) == 1


def test_no_retry_into_a_circuit_that_opened_during_the_backoff(mocked_responses, settings):
    settings.PROVIDER_MAX_RETRIES = 1
    breaker = breaker_for(MinimalClient.provider)
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=5, outage_watch=OutageWatch(sleep=lambda _: breaker.open())
    )
    mocked_responses.post(URL, status=503, body="busy")

    with pytest.raises(ProviderUnavailableError):
        client.identify(make_request())

    assert len(mocked_responses.calls) == 1


def test_a_retry_refused_after_the_backoff_gives_its_budget_back(mocked_responses, settings):
    """The budget counts retries sent: one refused after its backoff (the circuit opened meanwhile) leaves the
    budget's only retry to the next call."""
    settings.PROVIDER_MAX_RETRIES = 1
    settings.PROVIDER_RETRY_BUDGET_FLOOR = 1
    settings.PROVIDER_RETRY_BUDGET_PERCENT = 0
    breaker = breaker_for(MinimalClient.provider)
    opened = []

    def open_the_first_time(seconds: float) -> None:
        if not opened:
            opened.append(True)
            breaker.open()  # another worker's failure opened it during the first backoff

    client = MinimalClient(
        api_key=KEY,
        base_url=BASE_URL,
        timeout=5,
        retry_budget=RetryBudget(clock=FakeClock()),
        outage_watch=OutageWatch(sleep=open_the_first_time),
    )
    for status in (503, 503, 200):
        mocked_responses.post(URL, status=status, json=OK_BODY) if status == 200 else mocked_responses.post(
            URL, status=status, body="busy"
        )
    with pytest.raises(ProviderUnavailableError) as refused:
        client.identify(make_request(color=(10, 20, 30)))
    breaker.close()

    assert refused.value.attempts == 1
    assert client.identify(make_request(color=(30, 20, 10))).attempts == 2


def test_no_retry_once_the_fleet_counted_failed_calls_in_a_row(retrying, mocked_responses, settings):
    """Other workers' failed calls, counted by the shared circuit, say outage before this worker has seen one."""
    settings.PLANT_ID_CIRCUIT_FAIL_MAX = 10  # the circuit stays closed: the count alone refuses the retry
    breaker = breaker_for(retrying.provider)

    def fail():
        raise ConnectionError("another worker's call failed")

    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    mocked_responses.post(URL, status=502, body="bad gateway")

    with pytest.raises(ProviderUnavailableError) as failed:
        retrying.identify(make_request())

    assert failed.value.attempts == 1
    assert retrying.sleeps == []
    assert breaker.current_state == "closed"


def test_no_retry_once_the_fleet_counted_failed_attempts_in_a_row(retrying, mocked_responses, settings):
    """Other workers' failed attempts (their calls still in backoff, not yet counted as failed calls) say
    outage too, from ``PROVIDER_RETRY_FLEET_OUTAGE_AFTER`` of them in a row: this worker's failure is not
    retried, and the circuit stays closed."""
    assert settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER == 6  # the default
    breaker = breaker_for(retrying.provider)
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER - 1):
        breaker.attempt_failed()  # another worker's attempt: 5 in a row, and this worker's failure is the 6th
    mocked_responses.post(URL, status=502, body="bad gateway")

    with pytest.raises(ProviderUnavailableError) as failed:
        retrying.identify(make_request())

    assert failed.value.attempts == 1
    assert retrying.sleeps == []
    assert (breaker.current_state, breaker.fail_counter, breaker.record().afail) == ("closed", 1, 6)


def test_a_call_in_its_backoff_gives_up_as_soon_as_another_call_of_its_worker_finds_a_fleet_outage(
    mocked_responses, settings, monkeypatch, caplog
):
    """A provider going down: this worker's first failure backs off to retry; other workers' failures and then this
    worker's next one make a fleet outage. The call in its backoff gives up at once, its retry never sent, so the
    failures that came together reach the breaker together (not one backoff later, while clients come back)."""
    settings.PROVIDER_MAX_RETRIES = 1
    monkeypatch.setattr("apps.plant_identification.clients.retries.BACKOFF", 20.0)  # 10-30 s unless ended early
    mocked_responses.post(URL, status=502, body="bad gateway")
    breaker, another = breaker_for(MinimalClient.provider), ProviderCircuitBreaker(MinimalClient.provider)
    client = MinimalClient(
        api_key=KEY,
        base_url=BASE_URL,
        timeout=120,
        retry_budget=RetryBudget(clock=FakeClock()),
        outage_watch=OutageWatch(),
    )
    outcome = []

    def first_call() -> None:
        with pytest.raises(ProviderUnavailableError) as failed:
            client.identify(make_request(color=(10, 20, 30)))
        outcome.append(failed.value.attempts)

    backing_off = threading.Thread(target=first_call)
    backing_off.start()
    wait_until_waiting(client.outage_watch)  # its attempt failed: it is in its backoff
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER - 2):
        another.attempt_failed()
    with pytest.raises(ProviderUnavailableError) as failed:
        client.identify(make_request(color=(40, 50, 60)))  # the run's 6th failed attempt: no retry
    backing_off.join(timeout=10)

    assert not backing_off.is_alive()  # ended long before its 10-30 s backoff
    assert (failed.value.attempts, outcome) == (1, [1])
    assert len(mocked_responses.calls) == 2
    assert breaker.fail_counter == 2
    assert "no retry during the backoff: fleet_outage" in caplog.text


class ObservedWatch(OutageWatch):
    """An outage watch that keeps how each of its backoffs ended and how many reports it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.backoffs: list[Backoff] = []
        self.reports = 0

    def backoff(self, seconds: float, until: float | None = None) -> Backoff:
        ended = super().backoff(seconds, until)
        self.backoffs.append(ended)
        return ended

    def outage_seen(self) -> None:
        self.reports += 1
        super().outage_seen()


def test_a_backoff_stopped_by_a_report_runs_its_course_when_the_record_is_clear_again(
    mocked_responses, settings, monkeypatch
):
    """Another call's report (say of a circuit that staff closed again since) stops the backoff; the shared record
    read then shows no outage, so the retry goes, but only once the rest of the backoff is over."""
    settings.PROVIDER_MAX_RETRIES = 1
    monkeypatch.setattr("apps.plant_identification.clients.base.backoff_seconds", lambda: 0.3)
    mocked_responses.post(URL, status=502, body="bad gateway")
    mocked_responses.post(URL, json=OK_BODY)
    watch = ObservedWatch()
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=120, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )
    answers = []

    def call() -> None:
        started = time.monotonic()
        answers.append(client.identify(make_request()))
        answers.append(time.monotonic() - started)

    calling = threading.Thread(target=call)
    calling.start()
    wait_until_waiting(watch)
    watch.outage_seen()
    calling.join(timeout=10)

    answer, took = answers
    assert answer.attempts == 2
    assert watch.backoffs == [Backoff.REPORTED, Backoff.GO]  # stopped, the record read, then the rest waited
    assert took >= 0.3


def _refused_for_budget(settings, breaker) -> dict:
    """No retry left in the worker's budget."""
    settings.PROVIDER_RETRY_BUDGET_FLOOR = settings.PROVIDER_RETRY_BUDGET_PERCENT = 0
    return {}


def _refused_for_time(settings, breaker) -> dict:
    """A request deadline already past."""
    return {"deadline": time.monotonic()}


def _refused_for_the_circuit(settings, breaker) -> dict:
    """The circuit, still closed, counting failed calls in a row (other workers')."""
    settings.PLANT_ID_CIRCUIT_FAIL_MAX = 10  # closed, but counting failed calls in a row

    def fail():
        raise ConnectionError("another worker's call failed")

    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    return {}


def _refused_for_the_fleet(settings, breaker) -> dict:
    """The fleet one failed attempt short of an outage: this call's failure makes it."""
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER - 2):  # the observer's attempt and this call's count
        breaker.attempt_failed()
    return {}


@pytest.mark.parametrize(
    ("arrange", "stops_the_others"),
    [
        (_refused_for_budget, False),
        (_refused_for_time, False),
        (_refused_for_the_circuit, True),
        (_refused_for_the_fleet, True),
    ],
)
def test_only_an_outage_in_the_shared_record_stops_the_other_backoffs(
    mocked_responses, settings, arrange, stops_the_others
):
    """A retry refused for the budget or for time says nothing of the provider: the worker's other backoffs run on.
    One refused for an outage found in the shared record stops them, so they read it too."""
    settings.PROVIDER_MAX_RETRIES = 1
    watch = OutageWatch()
    waiting, outcome = failed_attempt_then_backoff(watch, 60)  # another call of this worker, in its backoff
    breaker = breaker_for(MinimalClient.provider)
    if stops_the_others:
        breaker.attempt_failed()  # the observer's failed attempt, counted at its retry gate
    options = arrange(settings, breaker)
    mocked_responses.post(URL, status=502, body="bad gateway")
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=5, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )

    with pytest.raises(ProviderUnavailableError) as failed:
        client.identify(make_request(), **options)
    waiting.join(timeout=10 if stops_the_others else 0.2)

    assert failed.value.attempts == 1
    assert waiting.is_alive() is not stops_the_others
    watch.outage_seen()  # ends the observer's backoff either way
    waiting.join(timeout=10)
    assert outcome == [Backoff.REPORTED]


def test_another_workers_success_ends_the_fleets_run_of_failed_attempts(retrying, mocked_responses, settings):
    """A success in another worker (another breaker on the same Redis record) whose call was let through after the
    run began: its admission tells that worker of the run, so its success ends it, and failures retry again."""
    breaker, another = breaker_for(retrying.provider), ProviderCircuitBreaker(retrying.provider)
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER):
        breaker.attempt_failed()
    another.call(lambda: "another worker's call answered")
    mocked_responses.post(URL, status=502, body="bad gateway")
    mocked_responses.post(URL, json=OK_BODY)

    assert breaker.record().afail == 0
    assert retrying.identify(make_request()).attempts == 2


def test_a_success_whose_worker_heard_of_no_failure_leaves_the_run_to_its_next_one(settings):
    """The documented approximation: a call let through before the run began, in a worker that has heard of no
    failure since, skips its script (no round trip); that worker's next success, which hears of it, ends it."""
    breaker, another = breaker_for(MinimalClient.provider), ProviderCircuitBreaker(MinimalClient.provider)
    with another.calling():
        for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER):
            breaker.attempt_failed()
    assert breaker.record().afail == settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER

    another.call(lambda: "its next call answered")
    assert breaker.record().afail == 0


def test_a_retried_call_that_succeeds_ends_the_run_whatever_its_worker_heard_meanwhile(mocked_responses, settings):
    """The call's own failed attempt is in the fleet's run: its success runs its script even when a concurrent
    success has just told the worker that nothing is counted (and another worker's failure came after it)."""
    settings.PROVIDER_MAX_RETRIES = 1
    breaker, another = ProviderCircuitBreaker(MinimalClient.provider), ProviderCircuitBreaker(MinimalClient.provider)

    def meanwhile(_seconds: float) -> None:
        concurrent = threading.Thread(target=breaker.call, args=(lambda: "a concurrent call answered",))
        concurrent.start()
        concurrent.join()
        another.attempt_failed()  # another worker's attempt fails: a run of 1 that this worker has not heard of

    client = MinimalClient(
        api_key=KEY,
        base_url=BASE_URL,
        timeout=5,
        breaker=breaker,
        retry_budget=RetryBudget(clock=FakeClock()),
        outage_watch=OutageWatch(sleep=meanwhile),
    )
    mocked_responses.post(URL, status=502, body="bad gateway")
    mocked_responses.post(URL, json=OK_BODY)

    assert client.identify(make_request()).attempts == 2
    assert breaker.record().afail == 0


def test_no_failed_attempt_is_counted_with_retries_off(client, mocked_responses, settings):
    """Only the retry gate reads the fleet's run: with retries off, a failure costs no round trip for it."""
    assert settings.PROVIDER_MAX_RETRIES == 0  # the test settings
    mocked_responses.post(URL, status=502, body="bad gateway")
    with pytest.raises(ProviderUnavailableError):
        client.identify(make_request())

    record = breaker_for(client.provider).record()
    assert (record.fail, record.afail) == (1, 0)


def test_every_failed_attempt_counts_in_the_fleets_run(retrying, mocked_responses):
    """A retried call that fails twice is two failed attempts in a row (and one failed call)."""
    mocked_responses.post(URL, status=503, body="busy")
    with pytest.raises(ProviderUnavailableError):
        retrying.identify(make_request())

    record = breaker_for(retrying.provider).record()
    assert (record.fail, record.afail) == (1, 2)


def test_no_retry_after_failed_attempts_in_a_row(retrying, mocked_responses, settings):
    """A failure among successes is retried; after more than PROVIDER_RETRY_OUTAGE_AFTER failed attempts in a row
    (a suspected outage) one retry goes as the probe, and once it fails too (an outage) failures are not
    retried, until an attempt succeeds."""
    settings.PROVIDER_RETRY_OUTAGE_AFTER = 3  # the sequence below is written for 3 (the default is 5)
    for status in (503, 503, 503, 503, 503, 503, 503, 200, 503, 200):
        mocked_responses.post(URL, status=status, body="busy") if status != 200 else mocked_responses.post(
            URL, json=OK_BODY
        )
    outcomes = []
    for index in range(6):
        try:
            outcomes.append(retrying.identify(make_request(color=(60, 60, 10 * index))).attempts)
        except ProviderUnavailableError as exc:
            outcomes.append(f"failed after {exc.attempts}")
        breaker_for(retrying.provider).close()
    # 503, 503 (2 in a row); 503, 503 (4); 503 (5: suspected), the probe 503 (confirmed); 503 (no retry); 200;
    # 503 retried into 200
    assert outcomes == ["failed after 2", "failed after 2", "failed after 2", "failed after 1", 1, 2]


def _calls_failing_together(mocked_responses, settings, *, probe_status: int) -> list:
    """Four calls of one worker (threads), whose first attempts are out at once and all fail (a 502): what each
    ended with (its attempts, or the attempts after which it failed). Every later attempt answers ``probe_status``.
    """
    settings.PROVIDER_MAX_RETRIES = 1
    settings.PROVIDER_RETRY_OUTAGE_AFTER = 3  # four failures in a row are more: a suspected outage (the default is 5)
    settings.PLANT_ID_CIRCUIT_FAIL_MAX = 100  # the breaker stays out of it: the worker's own rules decide
    together = threading.Barrier(4)
    sent = itertools.count()

    def answer(request):
        if next(sent) < 4:
            together.wait(timeout=10)
            return 502, {}, "bad gateway"
        return (200, {}, json.dumps(OK_BODY)) if probe_status == 200 else (probe_status, {}, "bad gateway")

    mocked_responses.add_callback("POST", URL, callback=answer)
    client = MinimalClient(api_key=KEY, base_url=BASE_URL, timeout=5, outage_watch=OutageWatch())
    outcomes = []

    def call(index: int) -> None:
        try:
            outcomes.append(client.identify(make_request(color=(20, 40, 10 * index))).attempts)
        except ProviderUnavailableError as exc:
            outcomes.append(f"failed after {exc.attempts}")

    threads = [threading.Thread(target=call, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes, key=str)


def test_calls_that_failed_together_all_retry_once_their_probe_succeeds(mocked_responses, settings):
    """At 20 % faults a worker's four calls out now and then all fail together: one retry probes, succeeds,
    and the other three retry too, so no call fails (refusing them opened Plant.id's circuit, fail_max 3)."""
    assert _calls_failing_together(mocked_responses, settings, probe_status=200) == [2, 2, 2, 2]
    assert len(mocked_responses.calls) == 8


def test_calls_that_failed_together_give_up_when_their_probe_fails(mocked_responses, settings):
    """A provider gone down: the four calls out fail together, the one probe fails too, and the three others
    give up without a request of their own."""
    outcomes = _calls_failing_together(mocked_responses, settings, probe_status=502)
    assert outcomes == ["failed after 1"] * 3 + ["failed after 2"]
    assert len(mocked_responses.calls) == 5


def test_a_probe_refused_by_a_circuit_that_opened_during_the_backoff_is_withdrawn(mocked_responses, settings):
    """The probe the backoff allowed is not sent into a circuit that opened meanwhile, and does not stay out: the
    next suspected failure's retry may probe."""
    settings.PROVIDER_MAX_RETRIES = 1
    breaker = breaker_for(MinimalClient.provider)
    watch = OutageWatch(sleep=lambda _: breaker.open())
    for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
        watch.record_attempt(failed=True)
    client = MinimalClient(api_key=KEY, base_url=BASE_URL, timeout=5, outage_watch=watch)
    mocked_responses.post(URL, status=503, body="busy")

    with pytest.raises(ProviderUnavailableError) as failed:
        client.identify(make_request())

    assert failed.value.attempts == len(mocked_responses.calls) == 1
    outcome = []
    probing = threading.Thread(target=lambda: outcome.append(watch.backoff(0)))
    probing.start()
    probing.join(timeout=10)
    assert outcome == [Backoff.GO]  # no probe left out: another thread's retry becomes the probe


def test_no_retry_when_other_calls_confirmed_an_outage_during_the_backoff(mocked_responses, settings):
    """Calls failing together (an outage starting) do not all retry: the check is made again after the backoff,
    and other calls' failures in a row, their probe's too, are an outage."""
    settings.PROVIDER_MAX_RETRIES = 1

    def others_fail_meanwhile(seconds: float) -> None:
        if probed:  # the probe's own backoff
            return
        probed.append(True)
        for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
            watch.record_attempt(failed=True)
        probe_fails(watch)

    probed = []

    watch = OutageWatch(sleep=others_fail_meanwhile)
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=5, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )
    mocked_responses.post(URL, status=503, body="busy")

    with pytest.raises(ProviderUnavailableError) as failed:
        client.identify(make_request())

    assert failed.value.attempts == 1
    assert len(mocked_responses.calls) == 1


def test_a_suspected_outage_sends_one_retry_as_its_probe(mocked_responses, settings):
    """First attempts failing in a row only suspect an outage (at 20 % faults a handful of calls sent together
    all fail now and then): the retry goes, as the probe, and succeeds."""
    settings.PROVIDER_MAX_RETRIES = 1

    def others_fail_meanwhile(seconds: float) -> None:
        for _ in range(settings.PROVIDER_RETRY_OUTAGE_AFTER):
            watch.record_attempt(failed=True)

    watch = OutageWatch(sleep=others_fail_meanwhile)
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=5, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )
    mocked_responses.post(URL, status=503, body="busy")
    mocked_responses.post(URL, json=OK_BODY)

    assert client.identify(make_request()).attempts == 2


def _failing_call_in_its_backoff(client: MinimalClient) -> tuple[threading.Thread, list[int]]:
    """Start a call that fails, on another thread; return once it is in its backoff, with the list that gets its
    attempts when it gives up."""
    failed = []

    def call() -> None:
        with pytest.raises(ProviderUnavailableError) as refused:
            client.identify(make_request())
        failed.append(refused.value.attempts)

    calling = threading.Thread(target=call)
    calling.start()
    wait_until_waiting(client.outage_watch)
    return calling, failed


def test_a_call_stopped_by_a_report_that_finds_the_outage_gives_up_without_reporting_it_again(
    mocked_responses, settings, monkeypatch
):
    """Every backoff in progress was stopped by the report that stopped this one: reporting again would only stop
    the calls that found the record clear and went back to waiting, for another read each."""
    settings.PROVIDER_MAX_RETRIES = 1
    monkeypatch.setattr("apps.plant_identification.clients.base.backoff_seconds", lambda: 30.0)
    mocked_responses.post(URL, status=502, body="bad gateway")
    watch = ObservedWatch()
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=120, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )
    calling, failed = _failing_call_in_its_backoff(client)
    for _ in range(settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER):
        client.breaker.attempt_failed()  # other workers' failed attempts: a fleet outage in the record
    watch.outage_seen()  # another call of this worker found it
    calling.join(timeout=10)

    assert (failed, watch.backoffs, watch.reports) == ([1], [Backoff.REPORTED], 1)
    assert len(mocked_responses.calls) == 1


def test_no_retry_when_reading_the_record_after_a_report_took_the_time_left(
    mocked_responses, settings, monkeypatch, caplog
):
    """The retry must still fit in the call's timeout: a slow read of the shared record after a report can use up
    the room the gate saw before the backoff."""
    settings.PROVIDER_MAX_RETRIES = 1
    monkeypatch.setattr(
        "apps.plant_identification.clients.base.backoff_seconds", lambda: 0.3
    )  # within the gate's room (0.5 s), long enough to report in
    mocked_responses.post(URL, status=502, body="bad gateway")
    mocked_responses.post(URL, json=OK_BODY)
    watch = ObservedWatch()
    client = MinimalClient(
        api_key=KEY, base_url=BASE_URL, timeout=1.5, retry_budget=RetryBudget(clock=FakeClock()), outage_watch=watch
    )
    record = client.breaker.record

    def slow_record():
        time.sleep(0.6)  # past the latest start: 1.5 s of timeout less 1 s of room
        return record()

    calling, failed = _failing_call_in_its_backoff(client)
    monkeypatch.setattr(client.breaker, "record", slow_record)
    watch.outage_seen()
    calling.join(timeout=10)

    assert failed == [1]
    assert len(mocked_responses.calls) == 1
    assert "no retry after the backoff: no_time" in caplog.text
