"""Django settings, read from environment variables with embedded development defaults.

Every variable is read here, once, by name; the provider registry (``apps/plant_identification/providers.py``)
is the only reader of the per-provider ones.
"""

import os

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend.env import (
    BASE_DIR,
    env_admins,
    env_bool,
    env_db,
    env_email,
    env_float,
    env_http_url,
    env_int,
    env_list,
    env_nonnegative_float,
    env_optional_float,
    env_optional_int,
    env_origins,
    env_percent,
    env_probability,
    env_provider_url,
    env_proxy_ssl_header,
    env_str,
    usable_cores,
)

# ---------------------------------------------------------------------------- CORE
DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.plant_identification",
]

MIDDLEWARE = [
    "apps.plant_identification.request_context.RequestIdMiddleware",  # first: every answer and log line has the id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise (static files are not counted); times everything below it, views included.
    "apps.plant_identification.metrics.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_AUTOREFRESH = DEBUG  # development serves static files without collectstatic
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEST_RUNNER = "backend.test_runner.PytestTestRunner"

# ---------------------------------------------------------------------------- SECURITY AND HTTPS
# HTTPS only when DEBUG is off: redirect, HSTS and secure cookies, each with a variable to turn it off for a
# plain-HTTP deployment on a trusted network (README "Production"). Behind a TLS-terminating proxy, Django learns
# that a request came over HTTPS from DJANGO_SECURE_PROXY_SSL_HEADER; the proxy must set that header itself,
# overwriting whatever the client sent.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and scrapers call the app directly, over plain HTTP, from inside the network: never redirected.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("DJANGO_SECURE_PROXY_SSL_HEADER")
# Origins other than the request's own host allowed to POST with a session (the admin behind a proxy that
# rewrites Host, or served on another name), e.g. https://admin.example.org.
CSRF_TRUSTED_ORIGINS = env_origins("DJANGO_CSRF_TRUSTED_ORIGINS")

# ---------------------------------------------------------------------------- DATABASE
DATABASES = {"default": env_db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters travel apart from the SQL: psycopg does not splice (and regex-scan) the JSON payloads into it.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True

# ---------------------------------------------------------------------------- REDIS AND CACHES
REDIS_URL = env_str("REDIS_URL")
CIRCUITS_REDIS_TIMEOUT = 0.05  # seconds: the circuits' connect and socket timeouts
if REDIS_URL:
    CACHES = {
        # Provider answers. A Redis fault degrades to a cache miss, never to a 500.
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
                "IGNORE_EXCEPTIONS": True,
            },
        },
        # Circuit breaker state: short timeouts and no retries; errors surface so the breaker can carry on
        # from in-process state (a hung or dead Redis costs one 50 ms timeout per second, not per call).
        "circuits": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": CIRCUITS_REDIS_TIMEOUT,
                "SOCKET_TIMEOUT": CIRCUITS_REDIS_TIMEOUT,
                "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
                "REDIS_CLIENT_KWARGS": {"retry": Retry(NoBackoff(), 0)},
            },
        },
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    # One pool per URL and timeouts (stock django-redis shares one per URL: the circuits would get the cache's).
    DJANGO_REDIS_CONNECTION_FACTORY = "backend.redis_pools.PerTimeoutConnectionFactory"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------- API
IDENTIFY_ALLOW_ANONYMOUS = env_bool("IDENTIFY_ALLOW_ANONYMOUS", default=DEBUG)
IDENTIFY_THROTTLE_RATE = env_str("IDENTIFY_THROTTLE_RATE", default="30/min")
if IDENTIFY_THROTTLE_RATE.lower() == "none":
    IDENTIFY_THROTTLE_RATE = None
else:
    try:
        _count, _period = IDENTIFY_THROTTLE_RATE.split("/")
        if int(_count) < 1 or _period[:1] not in {"s", "m", "h", "d"}:
            raise ValueError
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"IDENTIFY_THROTTLE_RATE must look like 30/min or be none, got {IDENTIFY_THROTTLE_RATE!r}"
        ) from exc

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_RATES": {"identify": IDENTIFY_THROTTLE_RATE},
    "EXCEPTION_HANDLER": "apps.plant_identification.exception_handlers.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Proxies in front of the app whose X-Forwarded-For may be trusted for per-IP throttling.
    "NUM_PROXIES": env_int("DJANGO_NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Plant identification API",
    "DESCRIPTION": "Identify a plant from photos with Plant.id and Pl@ntNet behind circuit breakers.",
    "VERSION": "1.0.0",
    # Separate request components: uploads are binary files and required strings have minLength 1.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ProviderEnum": "apps.plant_identification.serializers.PROVIDER_CHOICES",
        "CircuitStateEnum": "apps.plant_identification.serializers.CIRCUIT_STATE_CHOICES",
    },
    # Stateful links (identify, then read the identification back) for clients and schemathesis.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.plant_identification.openapi.identification_links",
    ],
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Uploads above this size spool to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [  # Django's two, with a larger chunk (apps/plant_identification/uploads.py says why)
    "apps.plant_identification.uploads.MemoryUploadHandler",
    "apps.plant_identification.uploads.DiskUploadHandler",
]
IDENTIFY_MAX_IMAGES = 5
IDENTIFY_MAX_IMAGE_BYTES = env_int("IDENTIFY_MAX_IMAGE_BYTES", default=20 * 1024 * 1024, minimum=1)
IDENTIFY_MAX_REQUEST_BYTES = env_int("IDENTIFY_MAX_REQUEST_BYTES", default=50 * 1024 * 1024, minimum=1)
IDENTIFY_MAX_IMAGE_PIXELS = env_int("IDENTIFY_MAX_IMAGE_PIXELS", default=50_000_000, minimum=1)
IDENTIFY_MIN_IMAGE_SIDE = env_int("IDENTIFY_MIN_IMAGE_SIDE", default=100, minimum=1)
# Photos decoded at once per worker process (the others wait their turn): bounds the memory a burst of large
# uploads takes; decoding more at once than there are cores adds memory, not speed. Default: those cores.
IDENTIFY_MAX_CONCURRENT_DECODES = env_int("IDENTIFY_MAX_CONCURRENT_DECODES", default=usable_cores(), minimum=1)
# Long side of the JPEG each provider receives (Plant.id advises 1500 px, Pl@ntNet 1280 px).
PLANT_ID_IMAGE_MAX_SIDE = env_int("PLANT_ID_IMAGE_MAX_SIDE", default=1500, minimum=100)
PLANTNET_IMAGE_MAX_SIDE = env_int("PLANTNET_IMAGE_MAX_SIDE", default=1280, minimum=100)
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # non-file fields only

# ---------------------------------------------------------------------------- PLANT IDENTIFICATION PROVIDERS
# The provider sandbox (manage.py provider_sandbox / devserver) is for development and tests: provider URLs that
# point at it are refused unless DJANGO_DEBUG is on or ALLOW_PROVIDER_SANDBOX says so (benchmarks).
ALLOW_PROVIDER_SANDBOX = env_bool("ALLOW_PROVIDER_SANDBOX", default=DEBUG)

PLANT_ID_API_KEY = env_str("PLANT_ID_API_KEY")
PLANT_ID_API_URL = env_provider_url(
    "PLANT_ID_API_URL", default="https://plant.id/api/v3", allow_sandbox=ALLOW_PROVIDER_SANDBOX
)
PLANT_ID_TIMEOUT = env_float("PLANT_ID_TIMEOUT", default=35.0)
PLANT_ID_CIRCUIT_FAIL_MAX = env_int("PLANT_ID_CIRCUIT_FAIL_MAX", default=3, minimum=1)
PLANT_ID_CIRCUIT_RESET_TIMEOUT = env_float("PLANT_ID_CIRCUIT_RESET_TIMEOUT", default=60.0)
PLANT_ID_CIRCUIT_SUCCESS_THRESHOLD = env_int("PLANT_ID_CIRCUIT_SUCCESS_THRESHOLD", default=2, minimum=1)
# Set (percent) to open on a failure rate over the last WINDOW calls (at least MIN_CALLS) instead of FAIL_MAX.
PLANT_ID_CIRCUIT_FAILURE_RATE = env_percent("PLANT_ID_CIRCUIT_FAILURE_RATE")
PLANT_ID_CIRCUIT_WINDOW = env_int("PLANT_ID_CIRCUIT_WINDOW", default=20, minimum=1)
PLANT_ID_CIRCUIT_MIN_CALLS = env_int("PLANT_ID_CIRCUIT_MIN_CALLS", default=10, minimum=1)
# Set (seconds) to count successes slower than this as slow calls: the circuit opens (reason slow) once
# SLOW_CALL_RATE percent of the last WINDOW calls (at least MIN_CALLS) were slow. Unset = off.
PLANT_ID_CIRCUIT_SLOW_CALL_DURATION = env_optional_float("PLANT_ID_CIRCUIT_SLOW_CALL_DURATION")
PLANT_ID_CIRCUIT_SLOW_CALL_RATE = env_percent("PLANT_ID_CIRCUIT_SLOW_CALL_RATE") or 100.0
PLANT_ID_CACHE_TTL = env_int("PLANT_ID_CACHE_TTL", default=86400)
PLANT_ID_STALE_MAX_AGE = env_int("PLANT_ID_STALE_MAX_AGE", default=604800)  # stale-if-error; 0 turns it off
# Plant.id credits per UTC day, counted fleet-wide (quotas/credits.py); unset: no cap (still counted and shown).
PLANT_ID_DAILY_CREDIT_BUDGET = env_optional_int("PLANT_ID_DAILY_CREDIT_BUDGET", minimum=1)
# Seconds between polls of Plant.id's free usage_info, made by one worker fleet-wide (quotas/usage_poll.py); 0: off.
PLANT_ID_USAGE_POLL_INTERVAL = env_nonnegative_float("PLANT_ID_USAGE_POLL_INTERVAL", default=300.0)

PLANTNET_API_KEY = env_str("PLANTNET_API_KEY")
PLANTNET_API_URL = env_provider_url(
    "PLANTNET_API_URL", default="https://my-api.plantnet.org/v2", allow_sandbox=ALLOW_PROVIDER_SANDBOX
)
PLANTNET_PROJECT = env_str("PLANTNET_PROJECT", default="all")
PLANTNET_TIMEOUT = env_float("PLANTNET_TIMEOUT", default=20.0)
PLANTNET_CIRCUIT_FAIL_MAX = env_int("PLANTNET_CIRCUIT_FAIL_MAX", default=5, minimum=1)
PLANTNET_CIRCUIT_RESET_TIMEOUT = env_float("PLANTNET_CIRCUIT_RESET_TIMEOUT", default=30.0)
PLANTNET_CIRCUIT_SUCCESS_THRESHOLD = env_int("PLANTNET_CIRCUIT_SUCCESS_THRESHOLD", default=2, minimum=1)
PLANTNET_CIRCUIT_FAILURE_RATE = env_percent("PLANTNET_CIRCUIT_FAILURE_RATE")
PLANTNET_CIRCUIT_WINDOW = env_int("PLANTNET_CIRCUIT_WINDOW", default=20, minimum=1)
PLANTNET_CIRCUIT_MIN_CALLS = env_int("PLANTNET_CIRCUIT_MIN_CALLS", default=10, minimum=1)
PLANTNET_CIRCUIT_SLOW_CALL_DURATION = env_optional_float("PLANTNET_CIRCUIT_SLOW_CALL_DURATION")
PLANTNET_CIRCUIT_SLOW_CALL_RATE = env_percent("PLANTNET_CIRCUIT_SLOW_CALL_RATE") or 100.0
PLANTNET_CACHE_TTL = env_int("PLANTNET_CACHE_TTL", default=86400)
PLANTNET_STALE_MAX_AGE = env_int("PLANTNET_STALE_MAX_AGE", default=604800)  # stale-if-error; 0 turns it off

HALF_OPEN_MAX_CALLS = env_int("HALF_OPEN_MAX_CALLS", default=1, minimum=1)
# A half-open trial holds its fleet-wide slot for the provider's timeout plus this margin; a worker that dies
# mid-trial frees the slot when the lease runs out (the Python rules and the Redis scripts use the same lease).
CIRCUIT_TRIAL_LEASE_MARGIN = env_float("CIRCUIT_TRIAL_LEASE_MARGIN", default=5.0)
# Calls in flight to one provider per worker process (a bulkhead): past it, calls fail at once, so a hanging
# provider cannot take the threads the other one needs.
PLANT_ID_MAX_CONCURRENT_CALLS = env_int("PLANT_ID_MAX_CONCURRENT_CALLS", default=16, minimum=1)
PLANTNET_MAX_CONCURRENT_CALLS = env_int("PLANTNET_MAX_CONCURRENT_CALLS", default=16, minimum=1)
CIRCUIT_BREAKER_ENABLED = env_bool("CIRCUIT_BREAKER_ENABLED", default=True)
# One retry of a call that failed before any answer (refused, reset, 500/502/503/504), within a per-worker
# budget: over the last WINDOW seconds, retries may be PERCENT of the calls plus FLOOR (clients/retries.py).
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", default=1)
if PROVIDER_MAX_RETRIES > 1:
    raise ImproperlyConfigured(f"PROVIDER_MAX_RETRIES must be 0 or 1, got {PROVIDER_MAX_RETRIES}")
PROVIDER_RETRY_BUDGET_PERCENT = env_float("PROVIDER_RETRY_BUDGET_PERCENT", default=30.0)
PROVIDER_RETRY_BUDGET_FLOOR = env_int("PROVIDER_RETRY_BUDGET_FLOOR", default=3)
PROVIDER_RETRY_BUDGET_WINDOW = env_float("PROVIDER_RETRY_BUDGET_WINDOW", default=10.0)
# More than this many failed attempts in a row in one worker suspect an outage (one retry probes it; once that
# fails too, failures are not retried); this many failed calls in a row counted by the circuit refuse retries outright.
# 5, not 3: at 20 % faults a worker sees 4 in a row and a failed probe in about one run in three (BENCHMARKS.md,
# "Backoffs end on a fleet outage"); the fleet's count of failed attempts catches an outage starting.
PROVIDER_RETRY_OUTAGE_AFTER = env_int("PROVIDER_RETRY_OUTAGE_AFTER", default=5, minimum=1)
# This many failed attempts in a row in the whole fleet (retries included; a success ends the run once its worker
# has heard of it) are an outage too: no failure is retried until a call succeeds.
PROVIDER_RETRY_FLEET_OUTAGE_AFTER = env_int("PROVIDER_RETRY_FLEET_OUTAGE_AFTER", default=6, minimum=1)
# Identical provider calls in flight at once (the same normalised images and parameters), on any worker or host
# sharing REDIS_URL, make one upstream request; the other callers wait for its answer (clients/single_flight.py).
PROVIDER_SINGLE_FLIGHT = env_bool("PROVIDER_SINGLE_FLIGHT", default=True)
# Whole-request budget for the provider fan-out; a provider still running then is reported as a timeout.
# Unset: the longest configured provider timeout plus 5 s.
IDENTIFY_DEADLINE = env_optional_float("IDENTIFY_DEADLINE")
# The early answer (services/fan_out.py): once one provider has answered, the others get a grace period, the
# larger of IDENTIFY_LATE_GRACE seconds and IDENTIFY_LATE_GRACE_FACTOR times the first answer's latency; then the
# answer goes out marked incomplete, and a provider still running finishes in the background, its answer merged
# into the stored identification. false: wait for every provider, up to the deadline.
IDENTIFY_EARLY_ANSWER = env_bool("IDENTIFY_EARLY_ANSWER", default=True)
IDENTIFY_LATE_GRACE = env_nonnegative_float("IDENTIFY_LATE_GRACE", default=3.0)
IDENTIFY_LATE_GRACE_FACTOR = env_nonnegative_float("IDENTIFY_LATE_GRACE_FACTOR", default=2.0)
# A first answer whose best suggestion scores at least this (0..1) goes out at once, without the grace.
# none: never. Pl@ntNet's is off by default: its scores are not calibrated like Plant.id's, and it gives no health
# assessment.
PLANT_ID_DECISIVE_SCORE = env_probability("PLANT_ID_DECISIVE_SCORE", default=0.95)
PLANTNET_DECISIVE_SCORE = env_probability("PLANTNET_DECISIVE_SCORE")

# Idempotency-Key on identify (services/idempotency.py): the same key, caller and content within the TTL replays the
# stored identification; other content is a 422. false: the header is ignored (rollback, benchmarks).
IDENTIFY_IDEMPOTENCY = env_bool("IDENTIFY_IDEMPOTENCY", default=True)
IDEMPOTENCY_KEY_TTL = env_int("IDEMPOTENCY_KEY_TTL", default=86400, minimum=1)

# ---------------------------------------------------------------------------- METRICS
# When set, /metrics answers only requests with "Authorization: Bearer <METRICS_TOKEN>"; empty: open to scrapers.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# prometheus-client's multiprocess mode, for several gunicorn workers: every worker writes its counters and
# histograms to files in this directory and a scrape adds them all up (gunicorn.conf.py empties it at start and
# tells prometheus-client when a worker exits). prometheus-client reads the variable itself, from the
# environment, when it is imported. Empty: each process keeps its own metrics (development, one process).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR and not os.path.isdir(PROMETHEUS_MULTIPROC_DIR):
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR must be an existing directory, got {PROMETHEUS_MULTIPROC_DIR!r}"
    )

# ---------------------------------------------------------------------------- LOGGING
LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"DJANGO_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
# text: "<time> <level> <logger> request_id=<id> <message>"; json: one object per line (request_context.py).
LOG_FORMAT = env_str("LOG_FORMAT").strip().lower() or "text"
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        # request_id on every record ("-" outside a request) and provider API keys out of every line.
        "request_context": {"()": "apps.plant_identification.request_context.RequestContextFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"},
        "json": {"()": "apps.plant_identification.request_context.json_formatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # Circuit transitions are always logged, whatever the root level.
        "apps.plant_identification.circuits.events": {"level": "INFO"},
        "apps.plant_identification.circuits.store": {"level": "INFO"},
        # urllib3 logs request URLs at DEBUG, and Pl@ntNet's key travels in the URL: never below INFO.
        "urllib3": {"level": "INFO"},
    },
}

# ---------------------------------------------------------------------------- ALERTS / EMAIL
# Operators are told once per circuit episode, fleet-wide, when a circuit opens and when it is still not closed
# ALERT_OPEN_FOR seconds later (circuits/alerts.py): by mail_admins (to DJANGO_ADMINS) and, when set, a JSON POST
# to ALERT_WEBHOOK_URL. Nothing is sent without a recipient.
ALERTS_ENABLED = env_bool("ALERTS_ENABLED", default=True)
ALERT_WEBHOOK_URL = env_http_url("ALERT_WEBHOOK_URL")
ALERT_WEBHOOK_TIMEOUT = env_float("ALERT_WEBHOOK_TIMEOUT", default=5.0)
ALERT_OPEN_FOR = env_float("ALERT_OPEN_FOR", default=300.0)
# Seconds between the alert thread's own "still open" checks (besides the one on each /health/ read).
ALERT_CHECK_INTERVAL = env_float("ALERT_CHECK_INTERVAL", default=30.0, minimum=0.01)
ADMINS = env_admins("DJANGO_ADMINS")  # "Ops:ops@example.org,Jane Doe:jane@example.org"
SERVER_EMAIL = env_str("DJANGO_SERVER_EMAIL", default="root@localhost")
EMAIL_SUBJECT_PREFIX = env_str("DJANGO_EMAIL_SUBJECT_PREFIX", default="[plantid] ")
# EMAIL_URL (smtp://, smtp+tls://, smtp+ssl://, consolemail://) wins; else EMAIL_HOST for plain SMTP settings;
# else mail goes to the console.
_email = env_email("EMAIL_URL")
if _email:
    globals().update(_email)
elif env_str("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", default=25, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", default=10.0)
