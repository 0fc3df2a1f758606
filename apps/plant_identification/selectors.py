"""Read-only queries: dependency checks, the health report and identifications (never calls a provider)."""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from apps.plant_identification.circuits.alerts import circuit_alerts_check
from apps.plant_identification.circuits.breaker import circuit_snapshot_list
from apps.plant_identification.circuits.snapshots import CircuitSnapshot
from apps.plant_identification.models import Identification
from apps.plant_identification.providers import Provider, configured_specs
from apps.plant_identification.quotas.report import QuotaReport, quota_reports
from apps.plant_identification.sandbox import SANDBOX_PATH

PASS, FAIL, NOT_CONFIGURED = "pass", "fail", "not_configured"


def database_check() -> str:
    """``pass`` when the database answers a trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return FAIL
    return PASS


def redis_check() -> str:
    """``pass``/``fail`` for the shared Redis, ``not_configured`` without ``REDIS_URL``."""
    if not settings.REDIS_URL:
        return NOT_CONFIGURED
    from django_redis import get_redis_connection

    try:
        get_redis_connection("circuits").ping()
    except (RedisError, OSError):
        return FAIL
    return PASS


@dataclass(frozen=True)
class Readiness:
    """The status of each dependency (the database and Redis)."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        """True when no dependency fails (Redis may be not configured)."""
        return FAIL not in self.checks.values()


def readiness() -> Readiness:
    """Whether the database and (when configured) Redis answer now."""
    return Readiness({"database": database_check(), "redis": redis_check()})


def sandbox_in_use() -> bool:
    """True when a configured provider points at the local provider sandbox instead of the real service."""
    return any(SANDBOX_PATH in spec.base_url for spec in configured_specs())


@dataclass(frozen=True)
class HealthReport:
    """What /health/ says: whether identification can be served, each circuit, each dependency."""

    status: str  # healthy, degraded or unhealthy
    sandbox: bool
    available: dict[Provider, bool]  # configured and its circuit lets a call through
    circuits: list[CircuitSnapshot]  # each with its recent latency, read in the same round trip
    checks: dict[str, str]
    quotas: dict[Provider, QuotaReport] = field(default_factory=dict)  # what each provider said is left; budget

    @property
    def serving(self) -> bool:
        """True while some configured provider can be called."""
        return any(self.available.values())


def health_report() -> HealthReport:
    """Circuits, quotas and dependencies as they stand now (reads Redis and the database; calls no provider)."""
    circuits = circuit_snapshot_list()
    circuit_alerts_check(circuits)  # the "still open" alert: queued, and only for circuits not closed
    configured = {spec.provider for spec in configured_specs()}
    quotas = quota_reports()
    budget = quotas[Provider.PLANT_ID].budget
    available = {snapshot.provider: snapshot.provider in configured and snapshot.callable for snapshot in circuits}
    if budget is not None and budget.exhausted:  # today's credit budget is spent: Plant.id is not called
        available[Provider.PLANT_ID] = False
    checks = readiness().checks
    if not any(available.values()):
        status = "unhealthy"
    elif all(available[p] for p in configured) and FAIL not in checks.values():
        status = "healthy"
    else:
        status = "degraded"
    return HealthReport(status, sandbox_in_use(), available, circuits, checks, quotas)


def identification_for_user(*, identification_id, user) -> Identification | None:
    """The identification if ``user`` may read it: its owner, staff, or anyone for anonymous ones."""
    identification = Identification.objects.prefetch_related("provider_results").filter(pk=identification_id).first()
    if identification is None:
        return None
    if identification.user_id is None or user.is_staff or identification.user_id == user.pk:
        return identification
    return None
