"""Circuit alerts reach a real local SMTP sink and a real local HTTP receiver once per episode, fleet-wide."""

import json
import os
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from django_redis import get_redis_connection

from apps.plant_identification.circuits.alerts import alert_keys, circuit_alerts_idle
from apps.plant_identification.circuits.breaker import ProviderCircuitBreaker, breaker_for
from apps.plant_identification.circuits.events import CircuitEventListener
from apps.plant_identification.exceptions import ProviderCircuitOpenError, ProviderUnavailableError
from apps.plant_identification.providers import Provider
from apps.plant_identification.selectors import health_report

ROOT = Path(__file__).resolve().parents[3]
OPEN, CLOSED = SimpleNamespace(name="open"), SimpleNamespace(name="closed")


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _SMTPSink(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: every command is accepted, each DATA is kept."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink\r\n")
        while line := self.rfile.readline():
            command = line.strip().upper()
            if command == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data)
                self.server.messages.append(b"".join(lines).decode())
                self.wfile.write(b"250 queued\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.posts, server.status = [], 204
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield _serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPSink)
    server.daemon_threads = True
    server.messages = []
    yield _serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def alerting(settings, webhook, smtp):
    """Alerts to the SMTP sink (one admin) and the HTTP receiver; no claim left from an earlier episode."""
    settings.ALERTS_ENABLED = True
    settings.ALERT_WEBHOOK_URL = webhook.url
    settings.ALERT_OPEN_FOR = 300.0
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.server_address[1]
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    assert circuit_alerts_idle()
    get_redis_connection("circuits").delete(*alert_keys(Provider.PLANT_ID.value))
    yield SimpleNamespace(webhook=webhook, smtp=smtp)
    breaker_for(Provider.PLANT_ID).close()
    assert circuit_alerts_idle()


def _fail_until_rejected(breaker) -> None:
    while True:
        try:
            with breaker.protect():
                raise ProviderUnavailableError("plant_id", "HTTP 503")
        except ProviderUnavailableError:
            continue
        except ProviderCircuitOpenError:
            return


def _in_threads(target, items) -> None:
    threads = [threading.Thread(target=target, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


def test_one_mail_and_one_webhook_per_episode_across_breakers_and_threads(alerting, clock, caplog):
    breakers = [ProviderCircuitBreaker(Provider.PLANT_ID, clock=clock) for _ in range(4)]
    _in_threads(_fail_until_rejected, breakers)
    # The same transition heard by every breaker object at once still makes one alert.
    _in_threads(lambda b: CircuitEventListener().state_change(b, CLOSED, OPEN), breakers)
    assert circuit_alerts_idle()

    assert len(alerting.webhook.posts) == 1
    assert len(alerting.smtp.messages) == 1
    post = alerting.webhook.posts[0]
    assert post["event"] == "circuit_opened"
    assert post["provider"] == "plant_id"
    assert post["reason"] == "failures"
    assert "plant_id circuit opened" in alerting.smtp.messages[0]
    assert "ops@example.org" in alerting.smtp.messages[0]
    for text in (json.dumps(post), alerting.smtp.messages[0]):
        assert "test-plant-id-key" not in text
        assert "test-plantnet-key" not in text
    assert any("[ALERT] plant_id circuit opened" in line and "mail, webhook" in line for line in caplog.messages)


def test_a_reopening_is_the_same_episode_and_a_second_episode_alerts_again(alerting):
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.open()
    breaker.half_open()
    breaker.open()  # half-open -> open: still the first episode
    assert circuit_alerts_idle()
    assert len(alerting.webhook.posts) == 1

    breaker.close()
    breaker.open()
    assert circuit_alerts_idle()
    assert [post["event"] for post in alerting.webhook.posts] == ["circuit_opened", "circuit_opened"]
    assert len(alerting.smtp.messages) == 2


@pytest.mark.django_db
def test_the_still_open_alert_fires_once_after_alert_open_for(alerting, clock):
    breaker_for(Provider.PLANT_ID).open()
    clock.advance(299)
    health_report()
    assert circuit_alerts_idle()
    assert [post["event"] for post in alerting.webhook.posts] == ["circuit_opened"]

    clock.advance(1)  # reset_timeout has passed too: a half-open circuit is still in its episode
    health_report()
    clock.advance(100)
    health_report()
    assert circuit_alerts_idle()
    assert [post["event"] for post in alerting.webhook.posts] == ["circuit_opened", "circuit_still_open"]
    assert alerting.webhook.posts[1]["open_for_seconds"] == 300
    assert "still not closed after 300 s" in alerting.smtp.messages[1]


@pytest.mark.django_db
def test_the_still_open_alert_needs_nothing_polling_health(alerting, settings, clock):
    """The alert thread checks by itself every ALERT_CHECK_INTERVAL: no /health/ read is made here."""
    settings.ALERT_CHECK_INTERVAL = 0.05
    breaker_for(Provider.PLANT_ID).open()
    assert circuit_alerts_idle()
    clock.advance(300)

    give_up = time.monotonic() + 10
    while len(alerting.webhook.posts) < 2 and time.monotonic() < give_up:
        time.sleep(0.02)  # waiting for the background thread's next check, not for time to pass
    assert circuit_alerts_idle()

    assert [post["event"] for post in alerting.webhook.posts] == ["circuit_opened", "circuit_still_open"]
    assert len(alerting.smtp.messages) == 2


@pytest.mark.django_db
def test_a_closed_circuit_never_alerts(alerting, clock):
    clock.advance(10_000)
    health_report()
    assert circuit_alerts_idle()
    assert alerting.webhook.posts == []
    assert alerting.smtp.messages == []


def test_a_failing_webhook_never_breaks_the_breaker(alerting, settings, caplog):
    alerting.webhook.status = 500
    breaker = breaker_for(Provider.PLANT_ID)
    for _ in range(3):
        with pytest.raises(ProviderUnavailableError), breaker.protect():
            raise ProviderUnavailableError("plant_id", "HTTP 503")
    with pytest.raises(ProviderCircuitOpenError), breaker.protect():
        pass
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:1/unreachable"
    breaker.close()
    breaker.open()
    assert circuit_alerts_idle()
    assert breaker.snapshot().state == "open"
    assert len(alerting.smtp.messages) == 2  # mail still goes out
    assert sum("webhook failed" in line for line in caplog.messages) == 2


def test_without_redis_each_process_alerts_once_per_episode(alerting, redis_unreachable):
    breaker = breaker_for(Provider.PLANT_ID)
    breaker.open()
    CircuitEventListener().state_change(breaker, CLOSED, OPEN)
    assert circuit_alerts_idle()
    assert len(alerting.webhook.posts) == 1
    breaker.close()  # ends the episode in this process too
    breaker.open()
    assert circuit_alerts_idle()
    assert len(alerting.webhook.posts) == 2
    breaker.close()


WORKER = """
import os, sys, time
import django
django.setup()
from types import SimpleNamespace
from django_redis import get_redis_connection
from apps.plant_identification.circuits.alerts import circuit_alerts_idle
from apps.plant_identification.circuits.breaker import breaker_for
from apps.plant_identification.circuits.events import CircuitEventListener
from apps.plant_identification.providers import Provider
redis = get_redis_connection("circuits")
deadline = time.monotonic() + 30
while not redis.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.001)
CircuitEventListener().state_change(
    breaker_for(Provider.PLANT_ID), SimpleNamespace(name="closed"), SimpleNamespace(name="open")
)
assert circuit_alerts_idle(20)
"""


@pytest.mark.slow
def test_several_processes_alert_once_per_episode(alerting):
    go = f"alerts-go-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ALERT_WEBHOOK_URL": alerting.webhook.url,
        "DJANGO_ADMINS": "Ops:ops@example.org",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(alerting.smtp.server_address[1]),
    }
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, go], cwd=ROOT, env=env)  # noqa: S603 - our own code
        for _ in range(4)
    ]
    redis = get_redis_connection("circuits")
    redis.set(go, 1, ex=60)
    assert [process.wait(60) for process in processes] == [0, 0, 0, 0]
    redis.delete(go)
    assert len(alerting.webhook.posts) == 1
    assert len(alerting.smtp.messages) == 1
