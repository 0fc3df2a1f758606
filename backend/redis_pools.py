"""django-redis connection pools per URL and timeouts, so two caches on one Redis keep their own settings."""

from typing import Any

from django_redis.pool import ConnectionFactory


class PerTimeoutConnectionFactory(ConnectionFactory):
    """django-redis's factory, with one pool per URL, socket timeouts and pool options rather than per URL.

    Stock django-redis keys its process-wide pools by URL alone: the answer cache and the circuits, both on
    ``REDIS_URL``, would share whichever pool was made first, and the circuits would wait on the answer cache's
    500 ms timeout and retries instead of their own 50 ms and none.
    """

    def get_or_create_connection_pool(self, params: dict[str, Any]):
        key = "|".join(
            [
                params["url"],
                str(params.get("socket_timeout")),
                str(params.get("socket_connect_timeout")),
                ",".join(sorted(self.pool_cls_kwargs)),
            ]
        )
        if key not in self._pools:
            self._pools[key] = self.get_connection_pool(params)
        return self._pools[key]
