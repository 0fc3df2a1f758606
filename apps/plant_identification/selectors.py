"""Read-only queries: circuits, dependency checks and identifications (never calls a provider)."""

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import QuerySet
from redis.exceptions import RedisError

from apps.plant_identification.breakers import CircuitSnapshot, breaker_for
from apps.plant_identification.clients import configured_providers
from apps.plant_identification.models import Identification
from apps.plant_identification.sandbox import SANDBOX_PATH
from apps.plant_identification.types import Provider


def circuit_snapshot_list() -> list[CircuitSnapshot]:
    """Every provider's circuit as it stands now."""
    return [breaker_for(provider).snapshot() for provider in Provider]


def circuit_as_dict(snapshot: CircuitSnapshot) -> dict:
    """The JSON shape of one circuit (CONTRACT §2)."""
    return {
        "state": snapshot.state,
        "fail_count": snapshot.fail_count,
        "fail_max": snapshot.fail_max,
        "reset_timeout": int(snapshot.reset_timeout)
        if float(snapshot.reset_timeout).is_integer()
        else snapshot.reset_timeout,
        "retry_after": snapshot.retry_after,
        "reason": snapshot.reason or None,
    }


def database_check() -> str:
    """``pass`` when the database answers a trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return "fail"
    return "pass"


def redis_check() -> str:
    """``pass``/``fail`` for the shared Redis, ``not_configured`` without ``REDIS_URL``."""
    if not settings.REDIS_URL:
        return "not_configured"
    from django_redis import get_redis_connection

    try:
        get_redis_connection("circuits").ping()
    except (RedisError, OSError):
        return "fail"
    return "pass"


def sandbox_in_use() -> bool:
    """True when a configured provider points at the local provider sandbox instead of the real service."""
    urls = {Provider.PLANT_ID: settings.PLANT_ID_API_URL, Provider.PLANTNET: settings.PLANTNET_API_URL}
    return any(SANDBOX_PATH in urls[provider] for provider in configured_providers())


def health_report() -> tuple[dict, bool]:
    """The /health/ body and whether identification can be served (some configured provider callable)."""
    snapshots = {snapshot.provider: snapshot for snapshot in circuit_snapshot_list()}
    configured = set(configured_providers())
    available = {provider: provider in configured and snapshots[provider].callable for provider in Provider}
    checks = {"database": {"status": database_check()}, "redis": {"status": redis_check()}}
    serving = any(available.values())
    if not serving:
        status = "unhealthy"
    elif all(available[p] for p in configured) and all(c["status"] != "fail" for c in checks.values()):
        status = "healthy"
    else:
        status = "degraded"
    body = {
        "status": status,
        "sandbox": sandbox_in_use(),
        "plant_id_available": available[Provider.PLANT_ID],
        "plantnet_available": available[Provider.PLANTNET],
        "circuit_breakers": {p.value: circuit_as_dict(s) for p, s in snapshots.items()},
        "checks": checks,
    }
    return body, serving


def identification_for_user(*, identification_id, user) -> Identification | None:
    """The identification if ``user`` may read it: its owner, staff, or anyone for anonymous ones."""
    queryset: QuerySet = Identification.objects.prefetch_related("provider_results")
    identification = queryset.filter(pk=identification_id).first()
    if identification is None:
        return None
    if identification.user_id is None or user.is_staff or identification.user_id == user.pk:
        return identification
    return None
