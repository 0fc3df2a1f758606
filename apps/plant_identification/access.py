"""Who may identify, and how often (settings are read per request)."""

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle


class CanIdentify(BasePermission):
    """Authenticated callers; anonymous ones too when ``IDENTIFY_ALLOW_ANONYMOUS`` is on."""

    message = "Log in (session or token) to identify plants."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) or settings.IDENTIFY_ALLOW_ANONYMOUS


class IdentifyThrottle(SimpleRateThrottle):
    """``IDENTIFY_THROTTLE_RATE`` per user, or per client IP for anonymous callers; shared via the cache."""

    scope = "identify"

    def get_rate(self):
        return settings.IDENTIFY_THROTTLE_RATE

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str:
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
