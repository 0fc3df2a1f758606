"""The cheaper image path makes the very renditions of the straightforward one: cached colour transforms applied
in place, kept rendition threads, larger upload chunks."""

import io
import random

import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.http.multipartparser import MultiPartParser
from PIL import Image, ImageCms

from apps.plant_identification import images, uploads
from apps.plant_identification.images import (
    UPRIGHT,
    image_normalise,
    provider_long_sides,
    rendition_pool,
    srgb_transform,
)
from tests.images import encode

SRGB_BYTES = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo(size=(2400, 1800), seed=7) -> Image.Image:
    """Large enough for the parallel renditions and a draft decode; noisy, so every pixel matters."""
    small = Image.frombytes(
        "RGB", (size[0] // 8, size[1] // 8), random.Random(seed).randbytes(size[0] * size[1] // 64 * 3)
    )
    return small.resize(size, Image.Resampling.BICUBIC)


def straightforward(data: bytes) -> dict:
    """The renditions as first written: a fresh profile-to-profile conversion (a new image), one thread."""
    with Image.open(io.BytesIO(data)) as image:
        side = max(provider_long_sides().values())
        image.draft("RGB", (side, side))
        orientation = image.getexif().get(0x0112, 1)
        icc = image.info.get("icc_profile")
        image.load()
        pixels = image.convert("RGB")
        if icc:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            pixels = ImageCms.profileToProfile(pixels, source, images.SRGB_PROFILE, outputMode="RGB")
    out = {}
    for provider, side in provider_long_sides().items():
        ratio = min(1, side / max(pixels.size))
        scaled = pixels.resize((round(pixels.width * ratio), round(pixels.height * ratio)), Image.Resampling.BOX)
        scaled = scaled if ratio < 1 else pixels
        upright = scaled.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else scaled
        out[provider] = encode(upright, "JPEG", quality=images.JPEG_QUALITY)
    return out


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("icc", [True, False], ids=["icc", "no-icc"])
def test_renditions_are_those_of_the_straightforward_path(orientation, icc):
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"exif": exif, "quality": 92} | ({"icc_profile": SRGB_BYTES} if icc else {})
    data = encode(photo(), "JPEG", **options)
    assert image_normalise(io.BytesIO(data)).renditions == straightforward(data)


@pytest.mark.parametrize("size", [(1400, 1050), (320, 240)], ids=["one-size-unscaled", "small"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_photo_that_needs_no_scaling_for_a_provider_is_encoded_from_its_decoded_pixels(size, orientation):
    """One provider's size (1400x1050) or both (320x240) need no scaling: the decoded pixels themselves are turned
    upright and encoded, as the straightforward path does."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(photo(size), "JPEG", exif=exif, quality=92)
    assert image_normalise(io.BytesIO(data)).renditions == straightforward(data)


def test_a_heic_with_a_profile_is_converted_without_touching_the_decoders_pixels():
    data = encode(photo((800, 600)), "HEIF", icc_profile=SRGB_BYTES)
    assert image_normalise(io.BytesIO(data)).renditions == straightforward(data)


def test_a_colour_transform_is_built_once_per_profile():
    srgb_transform.cache_clear()
    data = encode(photo((400, 300)), "JPEG", icc_profile=SRGB_BYTES)
    for _ in range(3):
        image_normalise(io.BytesIO(data))
    assert srgb_transform.cache_info().misses == 1
    assert srgb_transform.cache_info().hits == 2


def test_a_broken_profile_keeps_the_pixels():
    data = encode(photo((400, 300)), "JPEG", icc_profile=b"not a profile at all")
    assert image_normalise(io.BytesIO(data)).renditions == straightforward(encode(photo((400, 300)), "JPEG"))


def test_rendition_threads_are_kept_across_photos():
    data = encode(photo(), "JPEG")
    image_normalise(io.BytesIO(data))
    pool = rendition_pool(len(set(provider_long_sides().values())))
    image_normalise(io.BytesIO(data))
    assert rendition_pool(len(set(provider_long_sides().values()))) is pool


def test_a_large_upload_streams_to_a_temporary_file_in_large_chunks(rf, settings, monkeypatch):
    data = encode(photo(), "JPEG", quality=95) + b"\0" * settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = rf.post("/", body, content_type=f"multipart/form-data; boundary={boundary}")
    chunks = []
    receive = uploads.DiskUploadHandler.receive_data_chunk
    monkeypatch.setattr(
        uploads.DiskUploadHandler,
        "receive_data_chunk",
        lambda self, raw, start: chunks.append(len(raw)) or receive(self, raw, start),
    )
    handlers = request.upload_handlers
    _, files = MultiPartParser(request.META, io.BytesIO(body), handlers, "utf-8").parse()
    upload = files["images"]
    assert isinstance(upload, TemporaryUploadedFile)  # on disk, never whole in memory
    assert max(chunks) == uploads.UPLOAD_CHUNK_BYTES
    assert upload.read() == data
