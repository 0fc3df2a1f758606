"""Test settings: the real settings with dummy provider keys, no throttling and no anonymous access."""

from backend.settings import *  # noqa: F403
from backend.settings import REST_FRAMEWORK

PLANT_ID_API_KEY = "test-plant-id-key"
PLANT_ID_API_URL = "https://plant-id.test/api/v3"
PLANTNET_API_KEY = "test-plantnet-key"
PLANTNET_API_URL = "https://plantnet.test/v2"
IDENTIFY_THROTTLE_RATE = None
IDENTIFY_ALLOW_ANONYMOUS = False
# The circuits wait for Redis as long as a loaded two-core CI machine may need (eight processes starting at once
# stall replies well past the service's 50 ms): a breaker would carry on from in-process state, another test than
# the one meant, and a multi-process test's coordination poll would raise. The Redis fault tests put the service's
# own timeouts back (tests.factories.point_circuits_at).
if REDIS_URL:  # noqa: F405
    CACHES["circuits"]["OPTIONS"].update(SOCKET_TIMEOUT=5.0, SOCKET_CONNECT_TIMEOUT=5.0)  # noqa: F405
# Retries are off unless a test turns them on: most tests count the requests each failure makes.
PROVIDER_MAX_RETRIES = 0
# backend.settings copied its own rate into REST_FRAMEWORK; keep the two in step.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"identify": IDENTIFY_THROTTLE_RATE}}

# The test client and the test servers speak plain HTTP with DEBUG off: no HTTPS redirect, HSTS or secure cookies
# (tests/test_deploy.py checks the production defaults in their own processes).
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_AUTOREFRESH = True  # serve from finders; no collectstatic needed in tests
# No background usage_info polls unless a test turns them on (tests/plant_identification/quotas/).
PLANT_ID_USAGE_POLL_INTERVAL = 0
