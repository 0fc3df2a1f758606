"""JSON bodies with photos as base64: the bytes requests' ``json=`` would send, the photos named by digest in keys."""

import base64
import hashlib
import json
import math

import pytest
import requests

from apps.plant_identification.clients.payloads import Base64Data, json_body, key_text

PHOTO, OTHER = b"\xff\xd8 a photo \x00\xff", b"\xff\xd8 another photo"


def sent_by_requests(payload) -> bytes:
    """The body requests itself builds for ``json=payload``."""
    return requests.Request("POST", "https://example.test/", json=payload).prepare().body


def as_text(payload):
    """``payload`` with each ``Base64Data`` as the base64 string it stands for."""
    if isinstance(payload, Base64Data):
        return base64.b64encode(payload.data).decode()
    if isinstance(payload, dict):
        return {key: as_text(value) for key, value in payload.items()}
    if isinstance(payload, list):
        return [as_text(value) for value in payload]
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        {"images": [Base64Data(PHOTO)], "similar_images": True},
        {"images": [Base64Data(PHOTO), Base64Data(OTHER), Base64Data(PHOTO)], "health": "all", "latitude": 52.37},
        {"nested": {"deep": [Base64Data(b"")]}, "text": 'quotes " and \\ and é and \u2603', "none": None},
        {"no photo": [1, 2.5, False]},
        [Base64Data(OTHER), "after"],
    ],
    ids=["one photo", "three photos", "nested, empty, escaped text", "no photo", "a list"],
)
def test_the_body_is_byte_for_byte_what_requests_sends_for_the_base64_strings(payload):
    assert json_body(payload) == sent_by_requests(as_text(payload))


def test_a_marker_lookalike_in_the_text_is_left_as_it_is():
    """The stand-in for each photo is unique to the call: text resembling one cannot be taken for a photo."""
    payload = {"text": '"0"', "images": [Base64Data(PHOTO)]}

    assert json.loads(json_body(payload)) == as_text(payload)


def test_what_json_cannot_carry_is_refused_as_requests_refuses_it():
    with pytest.raises(requests.exceptions.InvalidJSONError, match="not JSON compliant"):
        json_body({"latitude": math.nan})
    with pytest.raises(requests.exceptions.InvalidJSONError, match="not JSON compliant"):
        sent_by_requests({"latitude": math.nan})
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_body({"when": object()})


def test_a_photo_is_named_in_keys_by_the_digest_of_its_bytes():
    assert key_text(Base64Data(PHOTO)) == f"base64:sha256:{hashlib.sha256(PHOTO).hexdigest()}"
    assert key_text(Base64Data(PHOTO)) == key_text(Base64Data(bytes(PHOTO)))
    assert key_text(Base64Data(PHOTO)) != key_text(Base64Data(OTHER))
    assert key_text(12.5) == "12.5"  # anything else JSON cannot carry: its text, as before


def test_equal_bytes_are_equal_values():
    assert Base64Data(PHOTO) == Base64Data(bytes(PHOTO))
    assert len({Base64Data(PHOTO), Base64Data(bytes(PHOTO)), Base64Data(OTHER)}) == 2
    assert str(len(PHOTO)) in repr(Base64Data(PHOTO))
