"""Production settings: HTTPS on by default with DEBUG off (each part can be turned off), the proxy header and
trusted origins from variables, gunicorn timeouts coherent with the identify deadline, the reverse proxy's limits
in step with the app's, and a chunked identify upload answered 411."""

import json
import os
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from apps.plant_identification.providers import Provider
from apps.plant_identification.services.fan_out import identify_deadline
from backend.env import env_origins, env_proxy_ssl_header

ROOT = Path(__file__).resolve().parents[1]
IDENTIFY = reverse("plant_identification:identify")
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "production-like-secret-" + "k3y-" * 12,
    "DJANGO_ALLOWED_HOSTS": "plants.example.org",
}
# A plain-HTTP deployment on a trusted network: the three HTTPS-only parts off.
PLAIN_HTTP = {
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_SECURE_HSTS_SECONDS": "0",
    "DJANGO_SECURE_COOKIES": "false",
}
SECURITY_SETTINGS = [
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
]


def clean_env(**env: str) -> dict:
    """This process's environment without the project's variables, plus ``env``."""
    prefixes = ("PLANT", "DJANGO_", "REDIS", "DATABASE", "IDENTIFY_", "GUNICORN_", "PROMETHEUS_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(prefixes)}, **env}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def security_settings(**env: str) -> dict:
    """The security settings backend.settings makes of ``env``, read in a fresh process."""
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SECURITY_SETTINGS!r}}}))"
    )
    result = subprocess.run(  # noqa: S603 - our own settings
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_env(DJANGO_SETTINGS_MODULE="backend.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- check --deploy and the variables


@pytest.mark.slow
def test_check_deploy_is_clean_at_warning_level_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_https_is_on_by_default_with_debug_off_and_off_with_debug_on():
    production = security_settings(**PRODUCTION)
    assert production["SECURE_SSL_REDIRECT"] is True
    assert production["SECURE_HSTS_SECONDS"] == 31_536_000
    assert production["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is production["SECURE_HSTS_PRELOAD"] is True
    assert production["SESSION_COOKIE_SECURE"] is production["CSRF_COOKIE_SECURE"] is True
    assert production["SECURE_PROXY_SSL_HEADER"] is None  # no proxy is trusted unless one is named
    assert production["CSRF_TRUSTED_ORIGINS"] == []
    development = security_settings(DJANGO_DEBUG="true")
    assert development["SECURE_SSL_REDIRECT"] is False
    assert development["SECURE_HSTS_SECONDS"] == 0
    assert development["SESSION_COOKIE_SECURE"] is development["CSRF_COOKIE_SECURE"] is False


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "warnings"),
    [
        ("DJANGO_SECURE_SSL_REDIRECT", "false", {"W008"}),
        ("DJANGO_SECURE_HSTS_SECONDS", "0", {"W004"}),
        ("DJANGO_SECURE_COOKIES", "false", {"W012", "W016"}),
    ],
)
def test_each_variable_turns_its_https_setting_off(variable, value, warnings):
    result = manage("check", "--deploy", "--tag", "security", **PRODUCTION, **{variable: value})
    assert set(re.findall(r"\(security\.(W\d+)\)", result.stderr + result.stdout)) == warnings


@pytest.mark.slow
def test_proxy_header_and_trusted_origins_come_from_variables():
    behind_proxy = security_settings(
        **PRODUCTION,
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://plants.example.org, https://admin.example.org",
    )
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert behind_proxy["CSRF_TRUSTED_ORIGINS"] == ["https://plants.example.org", "https://admin.example.org"]
    plain = security_settings(**PRODUCTION, **PLAIN_HTTP)
    assert (plain["SECURE_SSL_REDIRECT"], plain["SECURE_HSTS_SECONDS"], plain["SESSION_COOKIE_SECURE"]) == (
        False,
        0,
        False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "plants.example.org"),
        ("DJANGO_SECURE_HSTS_SECONDS", "a year"),
        ("DJANGO_SECURE_COOKIES", "sometimes"),
    ],
)
def test_malformed_security_variable_stops_start_up_naming_it(variable, value):
    result = manage("check", **PRODUCTION, **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


@pytest.mark.django_db
def test_https_redirect_spares_probes_and_the_proxy_header_marks_requests_secure(settings):
    """Production's HTTPS settings on the test client: HTTP is redirected except the probes and /metrics, and a
    request the proxy marks as HTTPS is served with HSTS."""
    settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS = True, 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()
    assert client.get("/admin/login/").status_code == 301
    assert client.get("/admin/login/")["Location"] == "https://testserver/admin/login/"
    for probe in ("/health/live/", "/metrics"):
        assert client.get(probe).status_code == 200
    behind_proxy = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert behind_proxy.status_code == 200
    assert behind_proxy["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_proxy_ssl_header_is_read_as_a_header_line(monkeypatch):
    monkeypatch.setenv("PROXY_HEADER", "X-Forwarded-Proto: https")
    assert env_proxy_ssl_header("PROXY_HEADER") == ("HTTP_X_FORWARDED_PROTO", "https")
    monkeypatch.setenv("PROXY_HEADER", "HTTP_X_FORWARDED_SSL:on")
    assert env_proxy_ssl_header("PROXY_HEADER") == ("HTTP_X_FORWARDED_SSL", "on")
    monkeypatch.delenv("PROXY_HEADER")
    assert env_proxy_ssl_header("PROXY_HEADER") is None
    for malformed in ("X-Forwarded-Proto", "X-Forwarded-Proto:", ": https", "X Forwarded: https"):
        monkeypatch.setenv("PROXY_HEADER", malformed)
        with pytest.raises(ImproperlyConfigured, match="PROXY_HEADER"):
            env_proxy_ssl_header("PROXY_HEADER")


def test_trusted_origins_need_a_scheme_and_no_path(monkeypatch):
    monkeypatch.setenv("ORIGINS", "https://a.example.org,http://b.example.org:8080, https://*.example.org")
    assert env_origins("ORIGINS") == ["https://a.example.org", "http://b.example.org:8080", "https://*.example.org"]
    for malformed in ("a.example.org", "ftp://a.example.org", "https://a.example.org/admin/", "https://"):
        monkeypatch.setenv("ORIGINS", malformed)
        with pytest.raises(ImproperlyConfigured, match="ORIGINS"):
            env_origins("ORIGINS")


# ---------------------------------------------------------------------------- chunked uploads


@pytest.mark.django_db
def test_chunked_identify_upload_is_411_and_calls_no_provider(api_client, mocked_responses):
    response = api_client.generic(
        "POST",
        IDENTIFY,
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_TYPE="multipart/form-data; boundary=b",
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]
    assert len(mocked_responses.calls) == 0


@pytest.mark.slow
def test_chunked_identify_upload_to_gunicorn_is_411(tmp_path):
    """gunicorn hands the app a chunked body with no CONTENT_LENGTH: the answer is 411, not an empty-form 400."""
    sock = tmp_path / "gunicorn.sock"
    env = clean_env(
        **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "localhost"},
        **PLAIN_HTTP,
        IDENTIFY_ALLOW_ANONYMOUS="true",
        IDENTIFY_THROTTLE_RATE="none",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PLANT_ID_API_KEY="unused-plant-id-key",
        PLANT_ID_API_URL="https://plant-id.test/api/v3",
        PLANTNET_API_KEY="unused-plantnet-key",
        PLANTNET_API_URL="https://plantnet.test/v2",
    )
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-k", "gthread", "--threads", "2"]
    server = subprocess.Popen(  # noqa: S603 - our own server
        [*command, "-b", f"unix:{sock}", "backend.wsgi:application"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = []
        while "Booting worker" not in (line := server.stderr.readline()):  # the socket is bound before that
            assert line, "gunicorn exited:\n" + "".join(log)
            log.append(line)
        body = b"--b--\r\n"
        request = (
            f"POST {IDENTIFY} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(str(sock))
            client.sendall(request)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    finally:
        server.terminate()
        server.wait(timeout=30)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 411 Length Required", answer
    assert b"Content-Length" in payload


# ---------------------------------------------------------------------------- gunicorn timeouts


def gunicorn_config(monkeypatch, **env: str) -> dict:
    """gunicorn.conf.py's module namespace, evaluated with ``env`` as the only project variables."""
    for name in list(os.environ):
        if name.startswith(("PLANT_ID_", "PLANTNET_", "IDENTIFY_", "GUNICORN_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_timeouts_default_to_the_deadline_plus_a_margin(monkeypatch):
    config = gunicorn_config(monkeypatch)
    assert config["identify_deadline"]() == 40  # Plant.id's 35 s timeout + 5
    assert (config["timeout"], config["graceful_timeout"], config["keepalive"]) == (60, 60, 5)


@pytest.mark.parametrize(
    ("env", "deadline"),
    [
        ({"IDENTIFY_DEADLINE": "3"}, 3),
        ({"PLANT_ID_TIMEOUT": "10", "PLANTNET_TIMEOUT": "50"}, 55),
        ({"IDENTIFY_DEADLINE": "90.5"}, 90.5),
    ],
)
def test_gunicorn_timeouts_follow_the_identify_deadline(monkeypatch, env, deadline):
    config = gunicorn_config(monkeypatch, **env)
    assert config["identify_deadline"]() == deadline
    assert config["timeout"] > deadline
    assert config["graceful_timeout"] > deadline


def test_gunicorn_deadline_is_the_apps(monkeypatch, settings):
    """The same variables give the worker and the app the same deadline (the app's, over both providers)."""
    settings.PLANT_ID_TIMEOUT, settings.PLANTNET_TIMEOUT, settings.IDENTIFY_DEADLINE = 12.0, 30.0, None
    config = gunicorn_config(monkeypatch, PLANT_ID_TIMEOUT="12", PLANTNET_TIMEOUT="30")
    assert config["identify_deadline"]() == identify_deadline(list(Provider)) == 35


@pytest.mark.parametrize("variable", ["GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT"])
def test_a_gunicorn_timeout_at_or_below_the_deadline_stops_start_up(monkeypatch, variable):
    with pytest.raises(ImproperlyConfigured, match=variable):
        gunicorn_config(monkeypatch, **{variable: "40"})
    assert gunicorn_config(monkeypatch, **{variable: "41"})["timeout"] > 40


@pytest.mark.slow
def test_gunicorn_reads_its_timeouts_from_the_config_file():
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config", "backend.wsgi:application"],
        cwd=ROOT,
        env=clean_env(**PRODUCTION, IDENTIFY_DEADLINE="50", GUNICORN_KEEPALIVE="7"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))
    assert (printed["timeout"], printed["graceful_timeout"], printed["keepalive"]) == ("70", "70", "7")


# ---------------------------------------------------------------------------- the reverse proxy


def nginx_directive(text: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)


def seconds(value: str) -> int:
    return int(value.removesuffix("s"))


def test_proxy_limits_match_the_app(monkeypatch):
    from backend.settings import IDENTIFY_MAX_REQUEST_BYTES  # the default: tests do not set it

    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    gunicorn = gunicorn_config(monkeypatch)
    (body_limit,) = nginx_directive(nginx, "client_max_body_size")
    assert int(body_limit.removesuffix("m")) * 1024 * 1024 == IDENTIFY_MAX_REQUEST_BYTES
    assert str(IDENTIFY_MAX_REQUEST_BYTES) in " ".join(nginx_directive(nginx, "return"))  # its JSON 413
    assert nginx_directive(nginx, "proxy_request_buffering") == ["on"]
    assert seconds(*nginx_directive(nginx, "proxy_read_timeout")) > gunicorn["timeout"]
    # nginx's idle upstream connections close before gunicorn's do
    upstream = re.search(r"upstream app \{(.*?)\}", nginx, re.DOTALL).group(1)
    assert seconds(*nginx_directive(upstream, "keepalive_timeout")) < gunicorn["keepalive"]
    assert "X-Forwarded-Proto $scheme" in nginx_directive(nginx, "proxy_set_header")
    assert "Host $http_host" in nginx_directive(nginx, "proxy_set_header")  # port kept: CSRF compares it to Origin


def test_compose_puts_the_proxy_in_front_of_the_app(monkeypatch):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web, proxy = compose["services"]["web"], compose["services"]["proxy"]
    assert "ports" not in web  # reached only through the proxy
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    # docker stops the container only after gunicorn's graceful timeout
    assert seconds(web["stop_grace_period"]) > gunicorn_config(monkeypatch)["graceful_timeout"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"server web:8000;", nginx)
    # the header the app trusts by default is the one nginx sets
    trusted = web["environment"]["DJANGO_SECURE_PROXY_SSL_HEADER"]
    header = re.fullmatch(r"\$\{DJANGO_SECURE_PROXY_SSL_HEADER:-(.+)\}", trusted)
    name, value = (part.strip() for part in header.group(1).split(":"))
    assert f"{name} $scheme" in nginx_directive(nginx, "proxy_set_header")
    assert value == "https"
