"""The early answer: once one provider has answered, the others get a grace period; a late answer is merged into
the stored identification, a lost one is recorded, and nothing stays incomplete past its deadline.

The database is really shared with the background threads that merge late answers (``transaction=True``).
"""

import dataclasses
import io
import logging
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command

from apps.plant_identification.exceptions import ProviderUnavailableError
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.fan_out import late_grace
from apps.plant_identification.services.identify import plant_identify
from apps.plant_identification.services.late_answers import (
    identification_settle,
    late_answers_drain,
    settle_after,
)
from apps.plant_identification.types import ProviderStatus
from tests.factories import FakeClient, answering, failing, hanging, make_request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_grace(settings):
    settings.IDENTIFY_LATE_GRACE = 0.05
    settings.IDENTIFY_LATE_GRACE_FACTOR = 0


@pytest.fixture
def release():
    """Lets the hanging fakes of a test answer; set at the end in any case, then the late answers are drained."""
    event = threading.Event()
    yield event
    event.set()
    late_answers_drain(timeout=10)


def held_back(release: threading.Event, outcome):
    """A behaviour that waits for ``release``, then does what ``outcome`` does (answers or raises)."""

    def behaviour():
        release.wait(10)
        return outcome()

    return behaviour


def stored(identification) -> tuple[Identification, dict[str, object]]:
    fresh = Identification.objects.get(pk=identification.pk)
    return fresh, {r.provider: r for r in fresh.provider_results.all()}


def test_a_hanging_provider_does_not_hold_the_answer_and_its_late_answer_is_merged(short_grace, release):
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, hanging(Provider.PLANT_ID, release)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET, "Monstera deliciosa", 0.6)),
    }
    identification = plant_identify(request=make_request(), clients=clients)

    assert identification.complete is False
    assert identification.degraded is False
    assert identification.message == (
        "Answered by Pl@ntNet so far. Plant.id is still answering: read this identification again for the "
        "complete result."
    )
    assert [s["sources"] for s in identification.suggestions] == [["plantnet"]]
    early, results = stored(identification)
    assert early.complete is False
    assert results["plant_id"].status == ProviderStatus.PENDING
    assert results["plant_id"].latency_ms is None

    release.set()
    assert late_answers_drain(timeout=10) == 0

    merged, results = stored(identification)
    assert merged.complete is True
    assert merged.degraded is False
    assert merged.message is None
    assert merged.suggestions[0]["sources"] == ["plant_id", "plantnet"]
    assert merged.top_scientific_name == "Monstera deliciosa"
    assert results["plant_id"].status == ProviderStatus.OK
    assert results["plant_id"].latency_ms is not None
    assert results["plant_id"].raw_payload == {"name": "Monstera deliciosa"}
    assert results["plantnet"].status == ProviderStatus.OK


def test_a_late_failure_completes_the_identification_as_degraded(short_grace, release):
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(
            Provider.PLANTNET,
            held_back(release, failing(ProviderUnavailableError("plantnet", "HTTP 502"))),
        ),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.complete is False

    release.set()
    late_answers_drain(timeout=10)

    merged, results = stored(identification)
    assert merged.complete is True
    assert merged.degraded is True
    assert merged.message == "Partial result from Plant.id only (Pl@ntNet error)."
    assert merged.suggestions[0]["sources"] == ["plant_id"]
    assert results["plantnet"].status == ProviderStatus.ERROR
    assert results["plantnet"].error_detail == "HTTP 502"


def test_a_decisive_first_answer_skips_the_grace(settings, release):
    settings.IDENTIFY_LATE_GRACE = 30  # were the grace waited for, the deadline would end it: a timeout
    settings.IDENTIFY_DEADLINE = 2
    settings.PLANT_ID_DECISIVE_SCORE = 0.95
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID, score=0.97)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release)),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert [r.status for r in identification.results] == [ProviderStatus.OK, ProviderStatus.PENDING]


def test_a_first_answer_below_the_decisive_score_waits_out_the_grace(settings, release):
    settings.IDENTIFY_LATE_GRACE = 30
    settings.IDENTIFY_DEADLINE = 0.3
    settings.PLANT_ID_DECISIVE_SCORE = 0.95
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID, score=0.9)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release)),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    _, results = stored(identification)
    assert results["plantnet"].status == ProviderStatus.TIMEOUT
    assert results["plantnet"].error_class == "DeadlineExceeded"
    assert identification.complete is True


def test_pl_at_ntnet_is_never_decisive_by_default(settings, release):
    settings.IDENTIFY_LATE_GRACE = 30
    settings.IDENTIFY_DEADLINE = 0.3
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, hanging(Provider.PLANT_ID, release)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET, score=0.99)),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.results[0].status == ProviderStatus.TIMEOUT


def test_with_the_early_answer_off_every_provider_is_waited_for_up_to_the_deadline(settings, short_grace, release):
    settings.IDENTIFY_EARLY_ANSWER = False
    settings.IDENTIFY_DEADLINE = 0.3
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, hanging(Provider.PLANT_ID, release)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, answering(Provider.PLANTNET)),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.complete is True
    assert identification.results[0].status == ProviderStatus.TIMEOUT
    assert identification.message == "Partial result from Pl@ntNet only (Plant.id timeout)."


def test_a_failed_first_call_does_not_start_the_grace(short_grace):
    """Only an answer starts the grace: after a fast failure the other provider is waited for."""
    answered = threading.Event()

    def slow_answer():
        answered.wait(0.3)  # well past the 50 ms grace
        return answering(Provider.PLANTNET)()

    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, failing(ProviderUnavailableError("plant_id", "HTTP 500"))),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, slow_answer),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.complete is True
    assert [r.status for r in identification.results] == [ProviderStatus.ERROR, ProviderStatus.OK]


def test_a_stale_answer_does_not_start_the_grace(short_grace):
    """A failure that an earlier answer stands in for is not an answer worth going out early with: the provider
    answering now is waited for."""
    answered = threading.Event()
    failure = ProviderUnavailableError("plant_id", "HTTP 500")
    failure.stale_answer = dataclasses.replace(answering(Provider.PLANT_ID)(), cached=True, stale=True, age_s=7200)

    def slow_answer():
        answered.wait(0.3)  # well past the 50 ms grace
        return answering(Provider.PLANTNET)()

    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, failing(failure)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, slow_answer),
    }
    identification = plant_identify(request=make_request(), clients=clients)
    assert identification.complete is True
    results = {r.provider: r for r in identification.results}
    assert (results["plant_id"].status, results["plant_id"].stale, results["plant_id"].age_s) == ("error", True, 7200)
    assert results["plantnet"].status == ProviderStatus.OK
    assert "Plant.id's from 2 h ago" in identification.message


def test_the_grace_is_the_floor_or_a_multiple_of_the_first_latency(settings):
    settings.IDENTIFY_LATE_GRACE = 1.5
    settings.IDENTIFY_LATE_GRACE_FACTOR = 2
    assert late_grace(400) == 1.5
    assert late_grace(2000) == 4.0


def test_a_worker_stopping_with_a_late_call_in_flight_records_it_as_lost(short_grace, release, caplog):
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release)),
    }
    identification = plant_identify(request=make_request(), clients=clients)

    assert late_answers_drain(timeout=0.05) == 1  # the shutdown hook gave up waiting

    lost, results = stored(identification)
    assert lost.complete is True
    assert lost.degraded is True
    assert results["plantnet"].status == ProviderStatus.ERROR
    assert results["plantnet"].error_class == "LateAnswerLost"
    assert results["plantnet"].error_detail == "the worker stopped before the answer arrived"

    # The answer that turns up afterwards does not overwrite the record.
    not_merged = threading.Event()
    handler = logging.Handler()
    handler.emit = lambda record: "settled" in record.getMessage() and not_merged.set()
    logging.getLogger("apps.plant_identification").addHandler(handler)
    try:
        release.set()
        assert not_merged.wait(10)
    finally:
        logging.getLogger("apps.plant_identification").removeHandler(handler)
    _, results = stored(identification)
    assert results["plantnet"].status == ProviderStatus.ERROR


def test_a_part_pending_past_its_deadline_is_settled_on_read_and_by_the_sweeper(short_grace, release):
    clients = {
        Provider.PLANT_ID: FakeClient(Provider.PLANT_ID, answering(Provider.PLANT_ID)),
        Provider.PLANTNET: FakeClient(Provider.PLANTNET, hanging(Provider.PLANTNET, release)),
    }
    first = plant_identify(request=make_request(), clients=clients)
    second = plant_identify(request=make_request(color=(200, 30, 30)), clients=clients)
    first, _ = stored(first)

    assert identification_settle(first, now=settle_after(first) - timedelta(seconds=1)) is False
    assert identification_settle(first, now=settle_after(first)) is True

    settled, results = stored(first)
    assert settled.complete is True
    assert settled.degraded is True
    assert results["plantnet"].error_class == "LateAnswerLost"
    assert (
        results["plantnet"].error_detail == "no answer was recorded by the deadline (the worker that called it stopped)"
    )
    assert stored(second)[0].complete is False

    # As if its worker had died an hour ago: the sweeper settles it.
    Identification.objects.filter(pk=second.pk).update(created_at=second.created_at - timedelta(hours=1))
    out = io.StringIO()
    call_command("identifications_settle", stdout=out)
    assert out.getvalue().strip() == "1 identification(s) settled"
    assert stored(second)[0].complete is True
