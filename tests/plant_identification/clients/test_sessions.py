"""Per-thread sessions: one per thread and base URL, with the environment's proxy and CA settings read once."""

import threading

from apps.plant_identification.clients.sessions import thread_session


def in_new_thread(function):
    """``function()``'s result, called in a thread of its own (a fresh set of sessions)."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=function()))
    thread.start()
    thread.join(10)
    return result["value"]


def test_a_thread_keeps_one_session_per_base_url():
    first, again, other = in_new_thread(
        lambda: (
            thread_session("https://a.test/v2"),
            thread_session("https://a.test/v2"),
            thread_session("https://b.test"),
        )
    )
    assert first is again
    assert first is not other


def test_threads_never_share_a_session():
    assert in_new_thread(lambda: thread_session("https://a.test")) is not in_new_thread(
        lambda: thread_session("https://a.test")
    )


def test_the_environment_proxy_and_ca_bundle_are_read_when_the_session_is_made(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    proxied = in_new_thread(lambda: thread_session("https://plant.id/api/v3"))
    direct = in_new_thread(lambda: thread_session("https://internal.test/api"))

    assert proxied.proxies["https"] == "http://proxy.test:3128"
    assert proxied.verify == str(bundle)
    assert proxied.trust_env is False  # not read again on every request
    assert "https" not in direct.proxies  # NO_PROXY honoured


def test_without_proxy_variables_a_session_goes_direct(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    session = in_new_thread(lambda: thread_session("https://my-api.plantnet.org/v2"))

    assert session.proxies == {}
    assert session.verify is True
