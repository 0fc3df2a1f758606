"""The base provider client: the answer cache, per-thread HTTP sessions, timeouts, the breaker, outcome mapping."""

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings

from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.rules import CircuitRecord
from apps.plant_identification.circuits.states import CircuitState
from apps.plant_identification.clients.answer_cache import (
    answer_entry,
    answer_read,
    answer_store,
    fresh_answer,
    fresh_reader,
    stale_answer,
)
from apps.plant_identification.clients.outages import OUTAGE_WATCHES, Backoff, OutageWatch
from apps.plant_identification.clients.payloads import json_body, key_text
from apps.plant_identification.clients.retries import (
    MIN_ROOM,
    RETRY_BUDGETS,
    RETRYABLE_STATUSES,
    RetryBudget,
    backoff_seconds,
)
from apps.plant_identification.clients.sessions import thread_session
from apps.plant_identification.clients.single_flight import single_flight
from apps.plant_identification.exceptions import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedRequestError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from apps.plant_identification.metrics import retry_refused_record
from apps.plant_identification.providers import Provider, provider_spec
from apps.plant_identification.types import IdentifyRequest, ProviderAnswer

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
DEFAULT_QUOTA_WAIT = 60.0  # a 429 that says nothing about when the quota returns
CACHE_VERSION = "v2"  # bump when parsing changes what a cached answer holds
ERROR_EXCERPT = 200
# why a retryable failure was not retried (the ``reason`` label of plantid_provider_retries_refused_total)
REFUSED_NO_TIME = "no_time"
REFUSED_BUDGET = "budget"
REFUSED_WORKER_OUTAGE = "worker_outage"
REFUSED_CIRCUIT_OUTAGE = "circuit_outage"
REFUSED_FLEET_OUTAGE = "fleet_outage"


@dataclasses.dataclass(frozen=True)
class OutboundRequest:
    """A provider request, before the HTTP layer sends it."""

    method: str
    path: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    json: Any = None
    data: Any = None
    files: Any = None

    def __post_init__(self) -> None:
        if self.json is not None and (self.data or self.files):  # requests would drop the JSON without a word
            raise ValueError("a provider request has a JSON body or form data and files, not both")


class BaseProviderClient:
    """Shared mechanics of every provider client; ``identify()`` is its one entry point.

    Subclasses set ``provider`` (and ``secret_params``, the query parameters that carry a secret) and
    implement the provider-specific hooks: ``build_request(request)``, ``parse_response(payload)`` and,
    optionally, ``answer_for_error(response)`` (an HTTP error that is really an answer, e.g. "no species")
    and ``quota_reset_seconds(response)``. They never catch ``requests`` exceptions or map status codes;
    this class does, once.
    """

    provider: Provider
    secret_params: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        breaker: ProviderCircuitBreaker | None = None,
        retry_budget: RetryBudget | None = None,
        outage_watch: OutageWatch | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.breaker = breaker or breaker_for(self.provider)
        self.retry_budget = retry_budget or RETRY_BUDGETS[self.provider]
        self.outage_watch = outage_watch or OUTAGE_WATCHES[self.provider]
        self.wall_clock = wall_clock  # ages of cached answers, shared across hosts

    # ------------------------------------------------------------------ hooks
    def build_request(self, request: IdentifyRequest) -> OutboundRequest:
        """Return the HTTP request that asks this provider to identify ``request``."""
        raise NotImplementedError

    def parse_response(self, payload: Any) -> ProviderAnswer:
        """Turn a 2xx JSON payload into an answer; raise KeyError/TypeError/ValueError if malformed."""
        raise NotImplementedError

    def answer_for_error(self, response: requests.Response) -> ProviderAnswer | None:
        """Return an answer for an error status that means "answered, nothing found"; None otherwise."""
        return None

    def quota_reset_seconds(self, response: requests.Response) -> float | None:
        """Seconds until a 429's quota comes back when no header says (``math.inf``: never by itself)."""
        return None

    def request_for(self, request: IdentifyRequest) -> IdentifyRequest:
        """``request`` as this provider is asked it now (e.g. without a paid option when its budget is short),
        ``request`` itself when unchanged; consulted when the answer cache has nothing fresh for ``request``."""
        return request

    def admit(self, outbound: OutboundRequest) -> Any:
        """Run before a call is sent, by the one caller of a single flight: raise a ``ProviderError`` to refuse it
        (a quota known to be spent, a budget reached). What it returns (e.g. credits reserved) goes to ``settle``."""
        return None

    def settle(self, outbound: OutboundRequest, admitted: Any, error: BaseException | None) -> None:
        """Run once after an admitted call, answered (``error`` None) or not: e.g. give back credits the call did
        not cost. Must not raise."""

    def observe(self, response: requests.Response) -> None:
        """Run on every HTTP response the provider sends, before it is interpreted (what it says of its quota)."""

    # ------------------------------------------------------------------ public
    def identify(self, request: IdentifyRequest, *, deadline: float | None = None) -> ProviderAnswer:
        """The provider's answer for ``request``, from the answer cache (``cached=True``) or from a call
        through the breaker; raise a ``ProviderError`` subclass on any failure, carrying as ``stale_answer``
        the provider's last answer for the same request when it is young enough to stand in (stale-if-error).

        ``deadline`` (``time.monotonic()`` seconds) is when the caller stops waiting: no retry starts that
        could not finish before it.
        """
        spec = provider_spec(self.provider)
        outbound = self.build_request(request)
        key = self.cache_key(outbound)
        entry = answer_read(key)
        answer = fresh_answer(entry, spec, self.wall_clock())
        if answer is None and (planned := self.request_for(request)) is not request:
            # Asked differently now (e.g. without health near the budget): that request's own entry, its
            # answer or its fallback; an answer to the request as sent stays the better fallback.
            outbound = self.build_request(planned)
            key = self.cache_key(outbound)
            entry = answer_read(key) or entry
            answer = fresh_answer(entry, spec, self.wall_clock())
        if answer is not None:
            logger.info("[CACHE] provider=%s hit", self.provider.value)
            return answer
        logger.info("[CACHE] provider=%s miss", self.provider.value)
        try:
            if not settings.PROVIDER_SINGLE_FLIGHT:
                answer = self._call(outbound, deadline)
                answer_store(key, answer, spec, self.wall_clock())
                return answer
            return single_flight(
                key,
                lambda: self._call(outbound, deadline),
                provider=self.provider.value,
                lease=self.timeout,  # retries included: none starts that could not end within the timeout
                deadline=deadline,
                fresh=fresh_reader(spec, self.wall_clock),
                entry=lambda answer: answer_entry(answer, spec, self.wall_clock()),
            )
        except ProviderError as exc:
            exc.stale_answer = stale_answer(entry, spec, self.wall_clock())
            if exc.stale_answer is not None:
                logger.info(
                    "[CACHE] provider=%s stale answer (%ds old) stands in: %s",
                    self.provider.value,
                    exc.stale_answer.age_s,
                    exc.message,
                )
            raise

    def _call(self, outbound: OutboundRequest, deadline: float | None) -> ProviderAnswer:
        admitted = self.admit(outbound)
        try:
            answer = self._send_protected(outbound, deadline)
        except BaseException as exc:
            self.settle(outbound, admitted, exc)
            raise
        self.settle(outbound, admitted, None)
        return answer

    def cache_key(self, outbound: OutboundRequest) -> str:
        """A key naming everything sent that can change the answer (never a secret)."""
        digest = hashlib.sha256()
        for part in (CACHE_VERSION, self.provider.value, self.base_url, outbound.method, outbound.path):
            digest.update(part.encode() + b"\0")
        params = {name: value for name, value in outbound.params.items() if name not in self.secret_params}
        fields = {"params": params, "json": outbound.json, "data": outbound.data}
        digest.update(json.dumps(fields, sort_keys=True, default=key_text).encode())  # photos by their digest
        for name, (filename, content, content_type) in outbound.files or ():
            digest.update(f"\0{name}:{filename}:{content_type}:".encode())
            digest.update(hashlib.sha256(content).digest())
        return f"plantid:answer:{self.provider.value}:{digest.hexdigest()}"

    # ------------------------------------------------------------------ mechanics
    def _send_protected(self, outbound: OutboundRequest, deadline: float | None) -> ProviderAnswer:
        """Send a built request through the breaker (which counts the call, retried or not) and map every
        outcome to an answer or an error."""
        with self.breaker.protect(call_timeout=self.timeout):
            return self._send_with_retry(outbound, deadline)

    def _send_with_retry(self, outbound: OutboundRequest, deadline: float | None) -> ProviderAnswer:
        started = time.monotonic()
        self.retry_budget.record_call()
        attempt = 1
        while True:
            try:
                self.outage_watch.start_attempt()
                response = self._send(outbound)
                self.observe(response)
                answer = self._interpret(response)
            except ProviderError as exc:
                exc.attempts = attempt
                local_outage = self.outage_watch.record_attempt(failed=exc.counts_as_outage)
                fleet = self._attempt_failed() if exc.counts_as_outage and settings.PROVIDER_MAX_RETRIES else None
                wait = backoff_seconds()
                if not self._may_retry(exc, attempt, started, wait, deadline, local_outage, fleet):
                    raise
                self._back_off(exc, wait, started, deadline)
            except BaseException:
                self.outage_watch.record_attempt(failed=None)
                raise
            else:
                self.outage_watch.record_attempt(failed=False)
                return dataclasses.replace(answer, attempts=attempt) if attempt > 1 else answer
            attempt += 1

    def _back_off(self, exc: ProviderError, wait: float, started: float, deadline: float | None) -> None:
        """Wait ``wait`` before the retry of ``exc``, which is raised if an outage is seen by then (the shared record
        is read again whenever another call reports one there) or the time left is gone; a retry not sent after all
        gives its budget back and is withdrawn (a probe it would have been)."""
        until, latest = time.monotonic() + wait, self._latest_retry(started, deadline)
        try:
            while (ended := self.outage_watch.backoff(max(0.0, until - time.monotonic()), latest)) is Backoff.REPORTED:
                if outage := self._outage(local=False):
                    # Not reported again: every backoff in progress was stopped by the report that stopped this one.
                    self._refuse(outage, exc, "during the backoff", report=False)
                    raise exc
            if outage := self._outage(local=ended is Backoff.OUTAGE):
                self._refuse(outage, exc, "after the backoff")
                raise exc
            if time.monotonic() > latest:  # the record's reads after a report took the time the retry needed
                self._refuse(REFUSED_NO_TIME, exc, "after the backoff")
                raise exc
        except BaseException:
            self.retry_budget.refund()
            self.outage_watch.withdraw()
            raise

    def _latest_retry(self, started: float, deadline: float | None) -> float:
        """The last moment a retry may start and still finish within the call's timeout and the deadline."""
        return min(started + self.timeout, math.inf if deadline is None else deadline) - MIN_ROOM

    def _attempt_failed(self) -> CircuitRecord | None:
        """Count a failed attempt fleet-wide (only the retry gate reads the count: not with retries off); the
        circuit's record after it (None with no breaker)."""
        return self.breaker.attempt_failed() if settings.CIRCUIT_BREAKER_ENABLED else None

    def _may_retry(
        self,
        exc: ProviderError,
        attempt: int,
        started: float,
        wait: float,
        deadline: float | None,
        local_outage: bool,
        fleet: CircuitRecord | None,
    ) -> bool:
        """A retry is due: the failure is retryable, retries are left, time is left, no outage is seen (``fleet``:
        the circuit's record as the failed attempt left it), and the budget allows it."""
        if not exc.retryable or attempt > settings.PROVIDER_MAX_RETRIES:
            return False
        if time.monotonic() + wait > self._latest_retry(started, deadline):
            self._refuse(REFUSED_NO_TIME, exc)
            return False
        if outage := self._outage(local=local_outage, record=fleet):
            self._refuse(outage, exc)
            return False
        if not self.retry_budget.try_spend():
            self._refuse(REFUSED_BUDGET, exc)
            return False
        logger.info("provider=%s retry attempt=%d after %s", self.provider.value, attempt + 1, exc.message)
        return True

    def _outage(self, *, local: bool, record: CircuitRecord | None = None) -> str | None:
        """Which outage a retry would feed, None when none: this worker sees one (``local``); the circuit
        (``record``, read now when None) is open (another call tripped it) or has counted
        ``PROVIDER_RETRY_OUTAGE_AFTER`` failed calls in a row; or the fleet has counted
        ``PROVIDER_RETRY_FLEET_OUTAGE_AFTER`` failed attempts in a row (calls still in backoff count there first)."""
        if local:
            return REFUSED_WORKER_OUTAGE
        if not settings.CIRCUIT_BREAKER_ENABLED:
            return None
        record = record or self.breaker.record()
        if record.state == CircuitState.OPEN or record.fail >= settings.PROVIDER_RETRY_OUTAGE_AFTER:
            return REFUSED_CIRCUIT_OUTAGE
        if record.afail >= settings.PROVIDER_RETRY_FLEET_OUTAGE_AFTER:
            return REFUSED_FLEET_OUTAGE
        return None

    def _refuse(self, reason: str, exc: ProviderError, when: str = "", *, report: bool = True) -> None:
        """Log and count a retryable failure that is not retried; an outage found in the shared record is reported
        (``report``) to this worker's other backoffs, which stop and read it too."""
        when = f" {when}" if when else ""
        logger.info("provider=%s no retry%s: %s (%s)", self.provider.value, when, reason, exc.message)
        retry_refused_record(self.provider.value, reason)
        if report and reason in (REFUSED_CIRCUIT_OUTAGE, REFUSED_FLEET_OUTAGE):
            self.outage_watch.outage_seen()

    @property
    def session(self) -> requests.Session:
        """This thread's session for this provider: kept across requests, never shared between threads."""
        return thread_session(self.base_url)

    def _send(self, outbound: OutboundRequest) -> requests.Response:
        started = time.monotonic()
        headers, data = outbound.headers, outbound.data
        try:
            if outbound.json is not None:  # as requests' json= would send it, the photos' base64 spliced in
                data = json_body(outbound.json)
                if not any(name.lower() == "content-type" for name in headers):
                    headers = {**headers, "Content-Type": "application/json"}
            response = self.session.request(
                outbound.method,
                f"{self.base_url}{outbound.path}",
                params=outbound.params,
                headers=headers,
                data=data,
                files=outbound.files,
                timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout),
            )
        except requests.Timeout as exc:
            raise self._error(ProviderTimeoutError, f"no answer within {self.timeout:g}s") from exc
        except requests.ConnectionError as exc:  # refused, or reset before any answer: worth one retry
            raise self._error(
                ProviderUnavailableError, f"request failed ({type(exc).__name__})", retryable=True
            ) from exc
        except requests.RequestException as exc:
            raise self._error(ProviderUnavailableError, f"request failed ({type(exc).__name__})") from exc
        logger.info(
            "provider=%s status=%s latency_ms=%d",
            self.provider.value,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _interpret(self, response: requests.Response) -> ProviderAnswer:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return self.parse_response(strict_json(response.text))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise self._error(
                    ProviderResponseError, f"malformed {status} body ({type(exc).__name__})", status
                ) from exc
        answer = self.answer_for_error(response)
        if answer is not None:
            return answer
        detail = f"HTTP {status}: {self._excerpt(response)}"
        if status == 429:
            wait = retry_after_seconds(response)
            if wait is None:
                wait = self.quota_reset_seconds(response)
            raise ProviderRateLimitedError(
                self.provider.value, self.redact(detail), retry_after=DEFAULT_QUOTA_WAIT if wait is None else wait
            )
        if status in (401, 403):
            raise self._error(ProviderAuthError, detail, status)
        if 400 <= status < 500:
            raise self._error(ProviderRejectedRequestError, detail, status)
        raise self._error(ProviderUnavailableError, detail, status, retryable=status in RETRYABLE_STATUSES)

    def _error(
        self, cls: type[ProviderError], message: str, status: int | None = None, *, retryable: bool = False
    ) -> ProviderError:
        return cls(self.provider.value, self.redact(message), status_code=status, retryable=retryable)

    @staticmethod
    def _excerpt(response: requests.Response) -> str:
        return " ".join(response.text[:ERROR_EXCERPT].split())

    def redact(self, text: str) -> str:
        """Remove this client's API key from ``text``."""
        return text.replace(self.api_key, "[redacted]") if self.api_key else text


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str):
    """Parse a provider body as standard JSON: NaN, Infinity, overflowing numbers and NUL characters are
    refused (PostgreSQL's jsonb would refuse them when the payload is stored)."""
    if "\\u0000" in text or "\x00" in text:
        raise ValueError("NUL character in JSON")
    return json.loads(text, parse_float=_finite, parse_constant=_no_constants)


_RATELIMIT_RESET = re.compile(r"(?:^|[;,\s])t=(\d+)")


def retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta form) or an IETF ``RateLimit`` header's ``t``."""
    header = response.headers.get("Retry-After", "").strip()
    if header.isdigit():
        return float(header)
    match = _RATELIMIT_RESET.search(response.headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None
