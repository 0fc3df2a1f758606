"""The upload corpus through the endpoint: each odd or hostile upload has a defined outcome, never a 500,
and no rejected upload costs a provider call."""

import io
import random

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from apps.plant_identification.models import Identification
from tests.factories import PLANT_ID_URL, PLANTNET_URL, fixture_json
from tests.images import animated_webp, encode, heic, jpeg_with_exif, png_bomb, two_tone

pytestmark = pytest.mark.django_db
IDENTIFY = reverse("plant_identification:identify")

JPEG = encode(two_tone(), "JPEG")


def post(client, files, **fields):
    uploads = []
    for name, data in files:
        upload = io.BytesIO(data)
        upload.name = name
        uploads.append(upload)
    return client.post(IDENTIFY, {"images": uploads, **fields}, format="multipart")


REJECTED = [
    ("zero-byte file", [("empty.jpg", b"")], {}, 400),
    ("truncated JPEG", [("cut.jpg", JPEG[: len(JPEG) // 2])], {}, 400),
    ("text named .jpg", [("notes.jpg", b"these are my garden notes\n" * 20)], {}, 400),
    ("PDF named .jpg", [("scan.jpg", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF")], {}, 400),
    ("SVG", [("leaf.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="500" height="500"/>')], {}, 400),
    ("GIF", [("leaf.gif", encode(two_tone(), "GIF"))], {}, 400),
    ("BMP", [("leaf.bmp", encode(two_tone(), "BMP"))], {}, 400),
    ("1x1 image", [("dot.png", encode(Image.new("RGB", (1, 1)), "PNG"))], {}, 400),
    ("30000x30000 bomb", [("bomb.png", png_bomb())], {}, 400),
    ("random bytes", [("noise.jpg", random.Random(7).randbytes(4096))], {}, 400),
    ("six images", [(f"{i}.jpg", JPEG) for i in range(6)], {}, 400),
    ("organ count mismatch", [("a.jpg", JPEG)], {"organs": ["leaf", "flower"]}, 400),
    ("unknown organ", [("a.jpg", JPEG)], {"organs": ["root"]}, 400),
    ("secondary organ only", [("a.jpg", JPEG)], {"organs": ["habit"]}, 400),
]


@pytest.mark.parametrize(("case", "files", "fields", "status"), REJECTED, ids=[case[0] for case in REJECTED])
def test_rejected_uploads_cost_nothing(api_client, mocked_responses, case, files, fields, status):
    response = post(api_client, files, **fields)
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert len(mocked_responses.calls) == 0
    assert Identification.objects.count() == 0


def test_unsupported_format_names_the_supported_ones(api_client, mocked_responses):
    detail = post(api_client, [("leaf.gif", encode(two_tone(), "GIF"))]).json()["detail"]
    assert "JPEG, PNG, WebP or HEIC/HEIF" in detail


def test_no_images_at_all(api_client, mocked_responses):
    assert api_client.post(IDENTIFY, {"organs": ["leaf"]}, format="multipart").status_code == 400
    assert len(mocked_responses.calls) == 0


@pytest.fixture
def providers_ok(mocked_responses):
    mocked_responses.post(PLANT_ID_URL, json=fixture_json("plant_id_identification_ok.json"), status=201)
    mocked_responses.post(PLANTNET_URL, json=fixture_json("plantnet_identify_ok.json"))
    return mocked_responses


ACCEPTED = [
    ("CMYK JPEG", "cmyk.jpg", encode(Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "JPEG")),
    ("16-bit PNG", "grey16.png", encode(Image.new("I;16", (300, 300), 40000), "PNG")),
    ("PNG with alpha", "alpha.png", encode(Image.new("RGBA", (300, 300), (0, 200, 0, 128)), "PNG")),
    ("animated WebP", "moving.webp", animated_webp()),
    ("HEIC", "IMG_0001.HEIC", heic(two_tone())),
    ("JPEG rotated by EXIF", "rotated.jpg", jpeg_with_exif(two_tone(), orientation=6)),
    ("JPEG with GPS", "gps.jpg", jpeg_with_exif(two_tone(), gps=True)),
    ("non-ASCII name", "blätter_葉っぱ_🌿.jpg", JPEG),
    ("wrong extension", "photo.png", JPEG),
]


@pytest.mark.parametrize(("case", "name", "data"), ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_accepted_uploads_reach_providers_as_clean_jpeg(api_client, providers_ok, case, name, data):
    response = post(api_client, [(name, data)])
    assert response.status_code == 200, response.content
    plantnet_call = next(c for c in providers_ok.calls if c.request.url.startswith(PLANTNET_URL))
    body = plantnet_call.request.body
    assert b'filename="image_0.jpg"' in body
    assert b"Content-Type: image/jpeg" in body
    assert b"PhoneMaker" not in body  # EXIF (and the GPS in it) was stripped
    assert name.encode() not in body  # the user's file name is not forwarded either


def test_same_photo_reuploaded_with_other_metadata_hits_the_cache(api_client, providers_ok):
    post(api_client, [("a.jpg", encode(two_tone(), "JPEG", quality=90))])
    calls = len(providers_ok.calls)
    body = post(api_client, [("b.jpg", jpeg_with_exif(two_tone(), gps=True))]).json()
    assert len(providers_ok.calls) == calls
    assert body["providers"]["plant_id"]["cached"] is True


def test_large_uploads_spool_to_disk_and_are_read_from_there(api_client, providers_ok, settings):
    noisy = Image.frombytes("RGB", (1600, 1200), random.Random(3).randbytes(1600 * 1200 * 3))
    data = encode(noisy, "JPEG", quality=95)
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE  # so Django writes it to a temporary file
    response = post(api_client, [("big.jpg", data)])
    assert response.status_code == 200
    sent = next(c for c in providers_ok.calls if c.request.url.startswith(PLANTNET_URL)).request.body
    assert len(sent) < len(data) // 2  # downscaled to 1280 px and re-encoded


def test_coordinates_reach_plant_id_only_from_form_fields(api_client, providers_ok):
    import json

    post(api_client, [("gps.jpg", jpeg_with_exif(two_tone(), gps=True))])
    plant_id_body = json.loads(next(c for c in providers_ok.calls if "plant-id" in c.request.url).request.body)
    assert "latitude" not in plant_id_body
    post(api_client, [("gps.jpg", jpeg_with_exif(two_tone((410, 300)), gps=True))], latitude="1.5", longitude="2.5")
    plant_id_body = json.loads([c for c in providers_ok.calls if "plant-id" in c.request.url][-1].request.body)
    assert (plant_id_body["latitude"], plant_id_body["longitude"]) == (1.5, 2.5)


FUZZ = hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes_never_500(api_client, mocked_responses, data):
    response = post(api_client, [("fuzz.jpg", data)])
    assert response.status_code == 400
    assert len(mocked_responses.calls) == 0


@st.composite
def images(draw):
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]))
    fmt = draw(st.sampled_from(["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]))
    size = (draw(st.integers(1, 400)), draw(st.integers(1, 400)))
    image = Image.new(mode, size)
    try:
        return encode(image, fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot store
        return encode(image.convert("RGB"), fmt)


@FUZZ
@given(data=images(), truncate=st.booleans())
def test_fuzz_random_images_never_500(api_client, providers_ok, data, truncate):
    response = post(api_client, [("fuzz", data[: len(data) // 2] if truncate else data)])
    assert response.status_code in (200, 400), response.content
