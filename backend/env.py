"""The one place that reads the environment: typed reads that fail fast naming the variable."""

import math
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from apps.plant_identification.sandbox import SANDBOX_PATH

BASE_DIR = Path(__file__).resolve().parent.parent

_env = environ.Env()
if (BASE_DIR / ".env").is_file():
    # The OS environment wins: read_env never overrides variables that are already set.
    environ.Env.read_env(BASE_DIR / ".env")


def _read(cast: str, name: str, default):
    try:
        return getattr(_env, cast)(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} is malformed ({cast} expected): {exc}") from exc


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def env_str(name: str, default: str = "") -> str:
    """Return a string variable."""
    return _read("str", name, default)


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean variable; anything but a recognised true/false word is an error."""
    raw = _env.str(name, default="").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """Return an integer variable no smaller than ``minimum``."""
    value = _read("int", name, default)
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def _read_finite(name: str, default: float) -> float:
    """A number as Python writes one (django-environ's float cast drops every other character: 1e3 reads 13.0)."""
    raw = _env.str(name, default="").strip()
    if raw == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is malformed (float expected): {exc}") from exc
    if not math.isfinite(value):  # nan passes every comparison, and inf is a timeout that never ends
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Return a finite number variable greater than ``minimum``."""
    value = _read_finite(name, default)
    if value <= minimum:
        raise ImproperlyConfigured(f"{name} must be greater than {minimum}, got {value}")
    return value


def env_nonnegative_float(name: str, default: float) -> float:
    """Return a finite number variable that is zero or more."""
    value = _read_finite(name, default)
    if value < 0:
        raise ImproperlyConfigured(f"{name} must be zero or more, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list variable."""
    return [item.strip() for item in _read("list", name, default) if item.strip()]


def env_db(name: str, default: str) -> dict:
    """Return a Django DATABASES entry from a database URL."""
    try:
        config = _env.db_url(name, default=default)
    except (ValueError, KeyError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL we understand: {exc}") from exc
    if not str(config.get("ENGINE", "")).startswith("django.db.backends."):
        raise ImproperlyConfigured(f"{name} has an unsupported scheme (use postgres:// or sqlite:///)")
    return config


def env_optional_float(name: str, *, minimum: float = 0.0) -> float | None:
    """Return a number variable greater than ``minimum``, or None when it is unset."""
    if not _env.str(name, default="").strip():
        return None
    return env_float(name, default=0.0, minimum=minimum)


def env_provider_url(name: str, default: str, *, allow_sandbox: bool) -> str:
    """Return a provider base URL without its trailing slash; the local provider sandbox only if allowed."""
    url = env_str(name, default=default).rstrip("/")
    if SANDBOX_PATH in url and not allow_sandbox:
        raise ImproperlyConfigured(
            f"{name} points at the provider sandbox, which is for development only "
            "(set DJANGO_DEBUG=true, or ALLOW_PROVIDER_SANDBOX=true for a benchmark)"
        )
    return url


def env_percent(name: str) -> float | None:
    """Return a percentage in (0, 100], or None when the variable is unset."""
    value = env_optional_float(name)
    if value is not None and value > 100:
        raise ImproperlyConfigured(f"{name} must be a percentage between 0 and 100, got {value}")
    return value


def env_probability(name: str, default: float | None = None) -> float | None:
    """Return a probability in [0, 1]; ``default`` when the variable is unset, None when it says ``none``."""
    text = env_str(name).strip().lower()
    if text == "none":
        return None
    value = env_optional_float(name) if text else default
    if value is not None and value > 1:
        raise ImproperlyConfigured(f"{name} must be a probability between 0 and 1 (or none), got {value}")
    return value


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """Return Django's SECURE_PROXY_SSL_HEADER from ``Header-Name: value`` (e.g. ``X-Forwarded-Proto: https``),
    or None when the variable is unset."""
    raw = env_str(name).strip()
    if not raw:
        return None
    header, _, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not header or not value or not all(c.isalnum() or c in "-_" for c in header):
        raise ImproperlyConfigured(f"{name} must look like 'X-Forwarded-Proto: https', got {raw!r}")
    meta = header.upper().replace("-", "_")
    return (meta if meta.startswith("HTTP_") else f"HTTP_{meta}", value)


def env_origins(name: str) -> list[str]:
    """Return a comma-separated list of origins, each with its scheme (``https://admin.example.org``)."""
    origins = env_list(name, default=[])
    for origin in origins:
        scheme, _, host = origin.partition("://")
        if scheme not in {"http", "https"} or not host or "/" in host:
            raise ImproperlyConfigured(f"{name} takes origins like https://example.org, got {origin!r}")
    return origins


def env_admins(name: str) -> list[tuple[str, str]]:
    """Return Django's ADMINS from ``Name:email`` items, comma-separated (``Ops:ops@example.org``)."""
    admins = []
    for item in env_list(name, default=[]):
        person, _, email = item.rpartition(":")
        if not person.strip() or "@" not in email:
            raise ImproperlyConfigured(f"{name} takes items like 'Ops:ops@example.org', got {item!r}")
        admins.append((person.strip(), email.strip()))
    return admins


def env_email(name: str) -> dict:
    """Return Django's EMAIL_* settings from an email URL (``smtp+tls://user:password@host:587``), or {} when unset."""
    if not env_str(name).strip():
        return {}
    try:
        return dict(_env.email_url(name))
    except (ValueError, KeyError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name} is not an email URL we understand: {exc}") from exc


def env_http_url(name: str) -> str:
    """Return an http(s) URL, or "" when the variable is unset."""
    url = env_str(name).strip()
    scheme, _, rest = url.partition("://")
    if url and (scheme not in {"http", "https"} or not rest):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {url!r}")
    return url


def env_optional_int(name: str, *, minimum: int = 1) -> int | None:
    """Return an integer variable no smaller than ``minimum``, or None when it is unset."""
    if not _env.str(name, default="").strip():
        return None
    return env_int(name, default=0, minimum=minimum)
