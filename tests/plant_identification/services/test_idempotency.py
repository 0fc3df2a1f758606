"""The Idempotency-Key service: key checks, the request fingerprint, claim, replay, expiry, failure, takeover."""

import io
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.db import connection
from rest_framework.exceptions import ValidationError

from apps.plant_identification.exceptions import NoProviderAvailableError
from apps.plant_identification.models import IdempotencyKey, Identification
from apps.plant_identification.services.idempotency import (
    ANONYMOUS_SCOPE,
    IdempotencyKeyReusedError,
    claim_lease,
    idempotency_key_read,
    idempotency_keys_purge,
    idempotency_scope,
    identification_once,
    request_fingerprint,
)
from tests.factories import log_counter

SCOPE = "user:1"
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class WallClock:
    """A wall clock (``timezone.now``) the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Identifier:
    """Stands for the identify use case: stores a new identification per call and counts the calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first

    def __call__(self) -> Identification:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise NoProviderAvailableError("No identification provider could answer; try again later.", (), 30)
        return Identification.objects.create(image_count=1)


@pytest.fixture
def waiting():
    with log_counter("apps.plant_identification.services.idempotency", "waiting for the request in flight") as counter:
        yield counter


def once(fingerprint="a" * 64, identify=None, *, key="key-1", scope=SCOPE, **fakes):
    return identification_once(
        scope=scope, key=key, fingerprint=fingerprint, identify=identify or Identifier(), **fakes
    )


def fingerprint(*photos: bytes, organs=("leaf",), include_diseases=True, latitude=None, longitude=None) -> str:
    return request_fingerprint(
        images=[io.BytesIO(photo) for photo in photos],
        organs=organs,
        include_diseases=include_diseases,
        latitude=latitude,
        longitude=longitude,
    )


# ---------------------------------------------------------------------------- the key and its scope


@pytest.mark.parametrize("raw", ["k", "  550e8400-e29b-41d4-a716-446655440000  ", "retry 2 of order:17", "x" * 255])
def test_a_printable_key_up_to_255_characters_is_accepted_without_surrounding_space(raw):
    assert idempotency_key_read({"Idempotency-Key": raw}) == raw.strip()


@pytest.mark.parametrize("raw", ["", "   ", "x" * 256, "bell\x07", "tab\tinside", "del\x7f", "clé"])
def test_an_empty_long_or_unprintable_key_is_a_400_naming_the_header(raw):
    with pytest.raises(ValidationError) as error:
        idempotency_key_read({"Idempotency-Key": raw})
    assert "Idempotency-Key" in error.value.detail


def test_no_header_means_no_key():
    assert idempotency_key_read({}) is None


def test_with_the_feature_off_the_header_is_ignored_even_when_malformed(settings):
    settings.IDENTIFY_IDEMPOTENCY = False
    assert idempotency_key_read({"Idempotency-Key": "k"}) is None
    assert idempotency_key_read({"Idempotency-Key": ""}) is None


@pytest.mark.django_db
def test_keys_are_scoped_per_user_and_anonymous_callers_share_one_scope(django_user_model):
    gardener = django_user_model.objects.create_user(username="gardener")
    botanist = django_user_model.objects.create_user(username="botanist")
    assert idempotency_scope(gardener) == f"user:{gardener.pk}"
    assert idempotency_scope(gardener) != idempotency_scope(botanist)
    assert idempotency_scope(AnonymousUser()) == idempotency_scope(None) == ANONYMOUS_SCOPE


# ---------------------------------------------------------------------------- the fingerprint


def test_the_fingerprint_is_of_the_file_bytes_and_fields_not_of_file_objects_or_their_position():
    read_already = io.BytesIO(b"photo-1")
    read_already.read()
    assert request_fingerprint(
        images=[read_already], organs=["leaf"], include_diseases=True, latitude=None, longitude=None
    ) == fingerprint(b"photo-1")
    assert read_already.tell() == 0  # left ready for decoding


@pytest.mark.parametrize(
    "other",
    [
        {"photos": (b"photo-2",)},
        {"photos": (b"photo-1", b"photo-1")},
        {"organs": ("flower",)},
        {"include_diseases": False},
        {"latitude": 52.37, "longitude": 4.89},
    ],
)
def test_other_images_or_fields_make_another_fingerprint(other):
    photos = other.pop("photos", (b"photo-1",))
    if len(photos) == 2:
        other["organs"] = ("leaf", "leaf")
    assert fingerprint(*photos, **other) != fingerprint(b"photo-1")


def test_the_order_of_the_images_counts():
    assert fingerprint(b"a", b"b", organs=("leaf", "flower")) != fingerprint(b"b", b"a", organs=("leaf", "flower"))


# ---------------------------------------------------------------------------- claim, replay, reuse, failure


@pytest.mark.django_db
def test_the_first_request_identifies_and_the_same_one_again_replays_it():
    identify = Identifier()
    first = once(identify=identify)
    again = once(identify=identify)

    assert first.replayed is False
    assert again.replayed is True
    assert again.identification.pk == first.identification.pk
    assert identify.calls == 1
    assert IdempotencyKey.objects.get().identification_id == first.identification.pk


@pytest.mark.django_db
def test_the_same_key_with_other_content_is_refused_and_identifies_nothing():
    identify = Identifier()
    once("a" * 64, identify)
    with pytest.raises(IdempotencyKeyReusedError) as error:
        once("b" * 64, identify)
    assert error.value.status_code == 422
    assert identify.calls == 1


@pytest.mark.django_db
def test_another_scope_or_key_is_another_identification():
    identify = Identifier()
    first = once(identify=identify)
    assert once(identify=identify, scope="user:2").identification.pk != first.identification.pk
    assert once(identify=identify, key="key-2").identification.pk != first.identification.pk
    assert identify.calls == 3


@pytest.mark.django_db
def test_a_failed_request_leaves_no_record_and_a_retry_identifies():
    identify = Identifier(fail_first=1)
    with pytest.raises(NoProviderAvailableError):
        once(identify=identify)
    assert not IdempotencyKey.objects.exists()

    retried = once(identify=identify)
    assert retried.replayed is False
    assert identify.calls == 2


@pytest.mark.django_db
def test_a_key_expires_after_its_ttl_and_then_behaves_as_new(settings):
    settings.IDEMPOTENCY_KEY_TTL = 3600
    clock, identify = WallClock(), Identifier()
    first = once(identify=identify, clock=clock)

    clock.advance(3599)
    assert once(identify=identify, clock=clock).identification.pk == first.identification.pk
    clock.advance(1)
    renewed = once("b" * 64, identify, clock=clock)  # other content: no 422 once the key has expired
    assert renewed.replayed is False
    assert renewed.identification.pk != first.identification.pk
    assert IdempotencyKey.objects.get().identification_id == renewed.identification.pk


@pytest.mark.django_db
def test_the_default_ttl_is_a_day():
    clock, identify = WallClock(), Identifier()
    first = once(identify=identify, clock=clock)
    clock.advance(24 * 3600 - 1)
    assert once(identify=identify, clock=clock).replayed is True
    clock.advance(1)
    assert once(identify=identify, clock=clock).identification.pk != first.identification.pk


@pytest.mark.django_db
def test_purge_deletes_the_expired_keys_only(settings):
    settings.IDEMPOTENCY_KEY_TTL = 60
    clock = WallClock()
    once(key="old", clock=clock)
    clock.advance(60)
    once(key="new", clock=clock)
    assert idempotency_keys_purge(now=clock()) == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Identification.objects.count() == 2  # the identifications stay


@pytest.mark.django_db
def test_the_purge_command_reports_what_it_deleted(settings, capsys):
    settings.IDEMPOTENCY_KEY_TTL = 1
    clock = WallClock()
    clock.now = datetime.now(UTC) - timedelta(seconds=10)
    once(clock=clock)
    call_command("idempotency_keys_purge")
    assert "1 expired idempotency key(s) deleted" in capsys.readouterr().out
    assert not IdempotencyKey.objects.exists()


# ---------------------------------------------------------------------------- waiting for a request in flight


def in_flight(clock: WallClock, *, fingerprint="a" * 64, lease_left: float) -> IdempotencyKey:
    """The claim a request identifying right now holds (in another thread, process or host)."""
    return IdempotencyKey.objects.create(
        scope=SCOPE,
        key="key-1",
        fingerprint=fingerprint,
        created_at=clock(),
        claim=uuid.uuid4(),
        lease_expires_at=clock() + timedelta(seconds=lease_left),
    )


class Sleeps:
    """A ``sleep`` that runs ``during`` on its n-th call (what another request does meanwhile) and moves the
    clocks on."""

    def __init__(self, clock: WallClock, during=None, *, at: int = 1) -> None:
        self.clock, self.during, self.at = clock, during, at
        self.count = 0
        self.monotonic_now = 0.0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.clock.advance(seconds)
        self.monotonic_now += seconds
        if self.count == self.at and self.during is not None:
            self.during()

    def monotonic(self) -> float:
        return self.monotonic_now


@pytest.mark.django_db
def test_a_request_waits_for_the_one_in_flight_and_replays_its_identification():
    clock = WallClock()
    holder = in_flight(clock, lease_left=30)
    made = Identification.objects.create(image_count=1)
    sleeps = Sleeps(clock, lambda: IdempotencyKey.objects.filter(pk=holder.pk).update(identification=made), at=3)
    identify = Identifier()

    keyed = once(identify=identify, clock=clock, sleep=sleeps, monotonic=sleeps.monotonic)

    assert keyed.replayed is True
    assert keyed.identification.pk == made.pk
    assert identify.calls == 0
    assert sleeps.count == 3


@pytest.mark.django_db
def test_other_content_under_a_key_in_flight_is_refused_at_once():
    clock = WallClock()
    in_flight(clock, fingerprint="b" * 64, lease_left=30)
    with pytest.raises(IdempotencyKeyReusedError):
        once(clock=clock, sleep=pytest.fail)


@pytest.mark.django_db
def test_when_the_request_in_flight_fails_a_waiter_identifies_in_its_place():
    clock = WallClock()
    holder = in_flight(clock, lease_left=30)
    sleeps = Sleeps(clock, lambda: IdempotencyKey.objects.filter(pk=holder.pk).delete(), at=2)
    identify = Identifier()

    keyed = once(identify=identify, clock=clock, sleep=sleeps, monotonic=sleeps.monotonic)

    assert keyed.replayed is False
    assert identify.calls == 1
    assert IdempotencyKey.objects.get().identification_id == keyed.identification.pk


@pytest.mark.django_db
def test_a_claim_whose_request_died_is_taken_over_once_its_lease_lapses(settings):
    settings.IDENTIFY_DEADLINE = 5.0
    clock = WallClock()
    lease = claim_lease().total_seconds()
    assert lease > 5.0  # the deadline plus a margin
    holder = in_flight(clock, lease_left=lease)
    sleeps = Sleeps(clock)
    identify = Identifier()

    keyed = once(identify=identify, clock=clock, sleep=sleeps, monotonic=sleeps.monotonic)

    assert keyed.replayed is False
    assert identify.calls == 1
    assert lease - 0.01 <= sleeps.monotonic_now <= lease + 0.5  # it waited the lease out, no longer
    record = IdempotencyKey.objects.get()
    assert record.identification_id == keyed.identification.pk
    assert record.claim != holder.claim


@pytest.mark.django_db
def test_a_waiter_takes_over_after_the_lease_by_its_own_clock_when_the_holders_runs_ahead(settings):
    settings.IDENTIFY_DEADLINE = 5.0
    clock = WallClock()
    in_flight(clock, lease_left=3600)  # written by a host whose clock is an hour fast
    sleeps = Sleeps(clock)
    keyed = once(clock=clock, sleep=sleeps, monotonic=sleeps.monotonic)
    assert keyed.replayed is False
    assert sleeps.monotonic_now <= claim_lease().total_seconds() + 0.5


# ---------------------------------------------------------------------------- real concurrency (PostgreSQL)


@pytest.mark.django_db(transaction=True)
def test_threads_with_one_key_make_one_identification_and_all_get_its_id(waiting):
    if connection.vendor != "postgresql":
        pytest.skip(
            "threads writing at once need PostgreSQL (CI runs this): SQLite's shared in-memory test database "
            "answers 'table is locked' instead of waiting; test_idempotency_gunicorn.py covers one key under "
            "concurrency on a SQLite file"
        )
    callers = 8
    release, started = threading.Event(), threading.Event()
    identify_calls = []

    def identify():
        identify_calls.append(1)
        started.set()
        release.wait(10)
        return Identification.objects.create(image_count=1)

    ids, errors = [], []

    def call():
        try:
            ids.append(once(identify=identify).identification.pk)
        except Exception as exc:  # noqa: BLE001 - the test reports what each caller got
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    threads[0].start()
    assert started.wait(10)
    for thread in threads[1:]:
        thread.start()
    waiting.wait_for(callers - 1)  # every other caller found the key in flight
    release.set()
    for thread in threads:
        thread.join(20)

    assert errors == []
    assert len(ids) == callers
    assert len(set(ids)) == 1
    assert len(identify_calls) == 1
    assert Identification.objects.count() == 1
