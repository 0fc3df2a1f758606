"""Per-thread HTTP sessions, each with the environment's proxy and CA bundle settings read once.

requests does not document ``Session`` as thread-safe, so each provider thread keeps its own, for the
connection pool's sake. With ``trust_env`` on, requests re-reads the proxy variables (and scans ``NO_PROXY``)
on every request, a measurable share of a request's CPU under load; they are read here once per session
instead (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and the like keep working; ``.netrc`` is not
read: every provider authenticates with its API key).
"""

import threading

import requests

_local = threading.local()


def thread_session(base_url: str) -> requests.Session:
    """This thread's session for calls to ``base_url``: made on first use, kept across requests."""
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    session = sessions.get(base_url)
    if session is None:
        session = sessions[base_url] = _session_for(base_url)
    return session


def _session_for(base_url: str) -> requests.Session:
    session = requests.Session()
    environment = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(environment["proxies"])
    session.verify = environment["verify"]
    session.trust_env = False
    return session
