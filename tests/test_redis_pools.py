"""The answer cache and the circuits share one Redis URL but not one connection pool: each keeps its timeouts."""

from django.core.cache import cache
from django_redis import get_redis_connection

from tests.factories import point_circuits_at


def pool_options(alias: str) -> dict:
    return get_redis_connection(alias).connection_pool.connection_kwargs


def test_the_circuits_keep_their_own_timeouts_and_no_retries_after_the_answer_cache_connected_first(settings):
    point_circuits_at(settings, settings.REDIS_URL)  # the service's own circuit timeouts, on the cache's Redis
    assert settings.CACHES["default"]["LOCATION"] == settings.CACHES["circuits"]["LOCATION"]
    cache.get("plantid:pool-test")  # a request's answer-cache read comes before its first breaker operation

    circuits, answers = pool_options("circuits"), pool_options("default")
    assert (circuits["socket_timeout"], circuits["socket_connect_timeout"]) == (0.05, 0.05)
    assert (answers["socket_timeout"], answers["socket_connect_timeout"]) == (0.5, 0.5)
    assert circuits["retry"].get_retries() == 0
    assert get_redis_connection("circuits").ping()
