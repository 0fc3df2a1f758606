"""Late answers: a provider's answer that arrived after the early answer went out, merged into what was stored.

Nothing stays pending for ever: a stopping worker drains its late calls and records the ones it cannot wait for
as lost (gunicorn's ``worker_exit`` hook), and an identification whose worker died without either is settled
when it is read after its deadline (or by ``manage.py identifications_settle``).
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone

from apps.plant_identification.metrics import late_answer_record
from apps.plant_identification.models import Identification, ProviderResult
from apps.plant_identification.providers import Provider
from apps.plant_identification.request_context import with_request_id
from apps.plant_identification.services.fan_out import FanOut, identify_deadline
from apps.plant_identification.services.records import (
    ANSWERED,
    PENDING,
    answer_fields,
    known_secrets,
    outcome_stale_ages,
    result_fields,
    status_fields,
)
from apps.plant_identification.types import ProviderOutcome, ProviderStatus

logger = logging.getLogger(__name__)

STORE_WAIT = 30.0  # seconds a late answer waits for the identify service to store the early one
SETTLE_MARGIN = 5.0  # seconds past the deadline before a pending part is written off as lost
LOST = "LateAnswerLost"
WORKER_STOPPED = "the worker stopped before the answer arrived"
NEVER_RECORDED = "no answer was recorded by the deadline (the worker that called it stopped)"

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_tracked: dict[FanOut, object] = {}  # fan-outs with late calls out -> the id of their identification
_tracked_changed = threading.Condition()


def _merge_executor() -> ThreadPoolExecutor:
    """A small pool of its own for the database writes, so the provider threads (one per bulkhead slot) only
    ever call providers; created on first use, after gunicorn forks."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="late-answer")
        return _executor


def late_answers_track(fan_out: FanOut, identification_id) -> None:
    """The early answer was stored under ``identification_id``: let its late answers in (and wait for them when
    the worker stops)."""
    if pending := fan_out.pending:
        for provider in pending:
            late_answer_record(provider.value, "pending")
        with _tracked_changed:
            _tracked[fan_out] = identification_id
    fan_out.attach(identification_id)


def late_answer_receive(fan_out: FanOut, outcome: ProviderOutcome) -> None:
    """``FanOut``'s late-answer hook (a provider thread): merge the outcome in the background."""
    _merge_executor().submit(with_request_id(_late_answer_merge), fan_out, outcome)


def _late_answer_merge(fan_out: FanOut, outcome: ProviderOutcome) -> None:
    try:
        identification_id = fan_out.wait_stored(STORE_WAIT)
        fan_out.resolve(outcome)
        if identification_id is None:
            logger.warning("[EARLY] late %s answer dropped: the early answer was not stored", outcome.provider)
            return
        if late_outcome_store(identification_id, fan_out, outcome):
            late_answer_record(outcome.provider.value, "merged")
            logger.info("[EARLY] late %s (%s) merged into %s", outcome.provider, outcome.status, identification_id)
        else:
            logger.info(
                "[EARLY] late %s not merged into %s: that part was settled", outcome.provider, identification_id
            )
    except Exception:  # the identification stays pending; reading it after its deadline settles it
        logger.exception("[EARLY] could not merge the late %s answer", outcome.provider)
    finally:
        connections.close_all()  # this thread's connection: the pool's threads outlive requests
        _untrack_when_done(fan_out)


def _untrack_when_done(fan_out: FanOut) -> None:
    if not fan_out.pending:
        with _tracked_changed:
            _tracked.pop(fan_out, None)
            _tracked_changed.notify_all()


@transaction.atomic
def late_outcome_store(identification_id, fan_out: FanOut, outcome: ProviderOutcome) -> bool:
    """Write a late outcome over its pending result and merge its answer in; False when that part was already
    settled (lost, written off) and nothing changed."""
    identification = Identification.objects.select_for_update().filter(pk=identification_id).first()
    if identification is None:
        return False
    results = {r.provider: r for r in identification.provider_results.all()}
    result = results.get(outcome.provider.value)
    if result is None or result.status != PENDING:
        return False
    secrets = known_secrets()
    for name, value in result_fields(outcome, secrets).items():
        setattr(result, name, value)
    result.save()
    statuses = {Provider(r.provider): ProviderStatus(r.status) for r in results.values()}
    # Answers from memory, for the parts the database holds as answered: what is stored stays consistent.
    stale = outcome_stale_ages(results.values())
    answers = {
        provider: o.answer
        for provider, o in fan_out.outcomes.items()
        if o.answer is not None and (statuses.get(provider) in ANSWERED or provider in stale)
    }
    fields = {**answer_fields(fan_out.request, answers, secrets), **status_fields(statuses, stale)}
    Identification.objects.filter(pk=identification_id).update(**fields)
    return True


def late_answers_drain(timeout: float | None = None) -> int:
    """Wait for the late answers this process has out (until the last one's deadline, or ``timeout`` seconds);
    record the parts still pending then as lost. Returns how many were lost. For a stopping worker, and tests."""
    with _tracked_changed:
        if not _tracked:
            return 0
        until = max(fan_out.deadline_at for fan_out in _tracked) if timeout is None else time.monotonic() + timeout
        while _tracked and (left := until - time.monotonic()) > 0:
            _tracked_changed.wait(left)
        stranded = list(_tracked.items())
        _tracked.clear()
    lost = 0
    for fan_out, identification_id in stranded:
        for provider in fan_out.pending:
            outcome = _lost(provider, WORKER_STOPPED)
            fan_out.resolve(outcome)
            if late_outcome_store(identification_id, fan_out, outcome):
                late_answer_record(provider.value, "lost")
                logger.warning("[EARLY] late %s answer lost for %s: %s", provider, identification_id, WORKER_STOPPED)
                lost += 1
    return lost


def _lost(provider: Provider, why: str) -> ProviderOutcome:
    return ProviderOutcome(provider, ProviderStatus.ERROR, error_class=LOST, error_detail=why)


def settle_after(identification: Identification) -> datetime:
    """When a part still pending can no longer arrive: the identify deadline after the answer, plus a margin."""
    return identification.created_at + timedelta(seconds=identify_deadline(list(Provider)) + SETTLE_MARGIN)


@transaction.atomic
def identification_settle(identification: Identification, *, now: datetime | None = None) -> bool:
    """Write off the parts of an identification still pending past their deadline (their worker died); True when
    something changed. The merged suggestions stand: a lost part contributed nothing to them."""
    now = now or timezone.now()
    if identification.complete or now < settle_after(identification):
        return False
    results = list(ProviderResult.objects.select_for_update().filter(identification=identification))
    secrets = known_secrets()
    for result in results:
        if result.status == PENDING:
            late_answer_record(result.provider, "settled")
            for name, value in result_fields(_lost(Provider(result.provider), NEVER_RECORDED), secrets).items():
                setattr(result, name, value)
            result.save()
    fields = status_fields(
        {Provider(r.provider): ProviderStatus(r.status) for r in results}, outcome_stale_ages(results)
    )
    Identification.objects.filter(pk=identification.pk).update(**fields)
    logger.warning("[EARLY] settled %s: a pending part never arrived", identification.pk)
    return True


def identifications_settle_overdue(*, now: datetime | None = None) -> int:
    """Settle every incomplete identification past its deadline (the sweeper); returns how many."""
    now = now or timezone.now()
    oldest_pending = now - timedelta(seconds=identify_deadline(list(Provider)) + SETTLE_MARGIN)
    settled = 0
    for identification in Identification.objects.filter(complete=False, created_at__lte=oldest_pending):
        settled += identification_settle(identification, now=now)
    return settled
