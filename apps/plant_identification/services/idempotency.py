"""Idempotency-Key on identify: one identification per caller and key, replayed to every request repeating it."""

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError

from apps.plant_identification.models import IdempotencyKey, Identification
from apps.plant_identification.providers import Provider
from apps.plant_identification.services.fan_out import identify_deadline
from apps.plant_identification.services.late_answers import identification_settle

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
ANONYMOUS_SCOPE = "anonymous"
POLL_SECONDS = 0.1  # how often a request waiting for the first one with its key looks for its identification
LEASE_MARGIN = 10.0  # seconds past the identify deadline for decoding and storing, before a claim may be taken over
READ_CHUNK = 1024 * 1024


class IdempotencyKeyReusedError(APIException):
    """The key was used (within its TTL) with other images or fields."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with other images or fields; send a new key for a new request."
    default_code = "idempotency_key_reused"


@dataclass(frozen=True)
class KeyedIdentification:
    """The identification for a key, and whether it was made by an earlier request (a replay)."""

    identification: Identification
    replayed: bool


def idempotency_key_read(headers) -> str | None:
    """The request's key; None without the header or with ``IDENTIFY_IDEMPOTENCY`` off. A key that is empty, longer
    than 255 characters or not printable ASCII is a 400 (checked before the body is read)."""
    if not settings.IDENTIFY_IDEMPOTENCY:
        return None
    raw = headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ValidationError({HEADER: [f"Send 1 to {MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID."]})
    return key


def idempotency_scope(user) -> str:
    """Whose key it is: ``user:<id>``; every anonymous caller shares one scope."""
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return ANONYMOUS_SCOPE


def _file_sha256(upload) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    while chunk := upload.read(READ_CHUNK):
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def request_fingerprint(
    *, images: Iterable, organs: Iterable[str], include_diseases: bool, latitude=None, longitude=None
) -> str:
    """sha256 of the parsed request: the sha256 of each uploaded file in ``images``, in order (its bytes as sent,
    undecoded: the multipart boundary, file name and declared type do not count), and the validated fields."""
    parsed = {
        "images": [_file_sha256(upload) for upload in images],
        "organs": [str(organ) for organ in organs],
        "include_diseases": bool(include_diseases),
        "latitude": latitude,
        "longitude": longitude,
    }
    return hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest()


def claim_lease() -> timedelta:
    """How long a claim holds its key without an identification: the identify deadline plus a margin."""
    return timedelta(seconds=identify_deadline(list(Provider)) + LEASE_MARGIN)


def identification_once(
    *,
    scope: str,
    key: str,
    fingerprint: str,
    identify: Callable[[], Identification],
    clock: Callable[[], datetime] = timezone.now,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> KeyedIdentification:
    """The identification for ``scope``'s ``key``: ``identify()``'s when this request claims the key first, else the
    stored one (a replay). Requests with the key in flight wait for it; a failed ``identify()`` leaves no record
    (its exception propagates); a claim whose request died is taken over once its lease lapses. Raises
    ``IdempotencyKeyReusedError`` (422) for other content under a live key."""
    lease = claim_lease()
    holder, lapses = None, 0.0  # the claim waited for, and when it lapses by this request's own clock
    while True:
        record = _live_record(scope, key, clock())
        if record is None:
            claimed = _claim(scope, key, fingerprint, clock(), lease)
            if claimed is not None:
                return KeyedIdentification(_lead(claimed, identify), replayed=False)
            continue  # another request claimed it first: read its claim
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError()
        if record.identification_id is not None:
            identification = _replay(record.identification_id)
            if identification is not None:
                return KeyedIdentification(identification, replayed=True)
            continue  # deleted meanwhile, and its key with it
        if record.claim != holder:  # a new holder (first sight, or a takeover): wait for it afresh
            if holder is None:
                logger.info("[IDEMPOTENCY] %s: waiting for the request in flight with this key", scope)
            holder, lapses = record.claim, monotonic() + lease.total_seconds()
        # Lapsed by the holder's clock, or by ours (another host's clock may run ahead): the holder died.
        if record.lease_expires_at <= clock() or monotonic() >= lapses:
            taken = _take_over(record, clock(), lease)
            if taken is not None:
                logger.warning("[IDEMPOTENCY] %s: the claim's lease lapsed without an answer: taking over", scope)
                return KeyedIdentification(_lead(taken, identify), replayed=False)
            continue
        sleep(POLL_SECONDS)


def _live_record(scope: str, key: str, now: datetime) -> IdempotencyKey | None:
    """The key's record, or None when there is none or it has expired (an expired one is deleted)."""
    record = IdempotencyKey.objects.filter(scope=scope, key=key).first()
    if record is not None and record.created_at <= now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL):
        IdempotencyKey.objects.filter(pk=record.pk, claim=record.claim).delete()
        return None
    return record


def _claim(scope: str, key: str, fingerprint: str, now: datetime, lease: timedelta) -> IdempotencyKey | None:
    """Insert the claim; None when another request holds the key (the unique constraint says so)."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(
                scope=scope,
                key=key,
                fingerprint=fingerprint,
                created_at=now,
                claim=uuid.uuid4(),
                lease_expires_at=now + lease,
            )
    except IntegrityError:
        return None


def _take_over(record: IdempotencyKey, now: datetime, lease: timedelta) -> IdempotencyKey | None:
    """Hold a lapsed claim in the dead holder's place; None when another waiter was quicker."""
    claim = uuid.uuid4()
    taken = IdempotencyKey.objects.filter(pk=record.pk, claim=record.claim, identification__isnull=True).update(
        claim=claim, lease_expires_at=now + lease
    )
    if not taken:
        return None
    record.claim, record.lease_expires_at = claim, now + lease
    return record


def _lead(record: IdempotencyKey, identify: Callable[[], Identification]) -> Identification:
    """Identify under the claim: record the identification, or delete the claim when it fails."""
    try:
        identification = identify()
    except BaseException:
        try:
            IdempotencyKey.objects.filter(pk=record.pk, claim=record.claim).delete()
        except Exception:  # the claim then lapses with its lease
            logger.exception("[IDEMPOTENCY] could not release the claim of a failed request")
        raise
    # Only our own claim: one taken over after its lease lapsed is the taker's, and records the taker's answer.
    IdempotencyKey.objects.filter(pk=record.pk, claim=record.claim).update(identification=identification)
    return identification


def _replay(identification_id) -> Identification | None:
    """The stored identification as a read would show it (late answers merged, an overdue part settled)."""
    identifications = Identification.objects.prefetch_related("provider_results")
    identification = identifications.filter(pk=identification_id).first()
    if identification is not None and identification_settle(identification):
        identification = identifications.filter(pk=identification_id).first()
    return identification


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete the keys past ``IDEMPOTENCY_KEY_TTL`` (they behave as new anyway); returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=cutoff).delete()
    return deleted
