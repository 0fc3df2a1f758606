"""A bare forwarder (WSGI): the least a service can do per identify, to set the concurrency ceiling it could reach.

It reads the upload, takes the first file part's bytes as they are, sends them to both providers at once (Plant.id
base64 JSON, Pl@ntNet multipart, the same query parameters as the real clients), parses both answers and replies
with a short JSON body: no validation, no image work, no cache, breaker or database. Served by gunicorn exactly as
the service is (``bench/photos.py`` starts it), so the two ratios differ only by the service's own work.
"""

import base64
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import django
import requests

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
django.setup()  # only to read the provider URLs, keys and query constants the real clients use

from django.conf import settings  # noqa: E402

from apps.plant_identification.clients import plant_id, plantnet  # noqa: E402

POOL = ThreadPoolExecutor(64, thread_name_prefix="forward")
_sessions = threading.local()


def _session() -> requests.Session:
    if not hasattr(_sessions, "session"):
        _sessions.session = requests.Session()
    return _sessions.session


def _first_file(body: bytes) -> bytes:
    """The content of the first part of a multipart body (the bench sends one photo per request)."""
    boundary = body[: body.index(b"\r\n")]
    start = body.index(b"\r\n\r\n") + 4
    return body[start : body.index(b"\r\n" + boundary, start)]


def _plant_id(photo: bytes) -> dict:
    response = _session().post(
        f"{settings.PLANT_ID_API_URL}/identification",
        params={"details": plant_id.DETAILS, "language": plant_id.LANGUAGE},
        headers={"Api-Key": settings.PLANT_ID_API_KEY},
        json={"images": [base64.b64encode(photo).decode("ascii")], "similar_images": True, "health": "all"},
        timeout=10,
    )
    return response.json()


def _plantnet(photo: bytes) -> dict:
    response = _session().post(
        f"{settings.PLANTNET_API_URL}/identify/all",
        params={
            plantnet.API_KEY_PARAM: settings.PLANTNET_API_KEY,
            "lang": plantnet.LANGUAGE,
            "nb-results": plantnet.NB_RESULTS,
            "include-related-images": "true",
        },
        files=[("images", ("image_0.jpg", photo, "image/jpeg"))],
        data={"organs": ["auto"]},
        timeout=10,
    )
    return response.json()


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    photo = _first_file(environ["wsgi.input"].read(length))
    answers = [future.result() for future in [POOL.submit(_plant_id, photo), POOL.submit(_plantnet, photo)]]
    body = json.dumps({"answered": sum(1 for answer in answers if answer)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
