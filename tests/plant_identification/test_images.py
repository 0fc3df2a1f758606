"""Normalisation: what a provider receives for each kind of photo people upload."""

import io

import pytest
from PIL import Image

from apps.plant_identification.images import ImageRejectedError, image_normalise
from apps.plant_identification.providers import Provider
from tests.images import animated_webp, encode, heic, jpeg_with_exif, png_bomb, two_tone


def received(data: bytes, provider=Provider.PLANT_ID) -> Image.Image:
    return Image.open(io.BytesIO(image_normalise(io.BytesIO(data)).data_for(provider)))


def test_output_is_a_bare_rgb_jpeg():
    image = received(jpeg_with_exif(two_tone(), gps=True))
    assert (image.format, image.mode) == ("JPEG", "RGB")
    assert not image.getexif()
    assert "icc_profile" not in image.info
    assert "exif" not in image.info


def test_gps_never_reaches_a_provider():
    data = jpeg_with_exif(two_tone(), gps=True)
    for provider in Provider:
        sent = image_normalise(io.BytesIO(data)).data_for(provider)
        assert b"PhoneMaker" not in sent
        assert Image.open(io.BytesIO(sent)).getexif().get_ifd(0x8825) == {}


def test_exif_rotation_is_applied():
    """Stored sideways (portrait pixels) with orientation 6 (rotate 90 CW): arrives landscape and upright."""
    stored = two_tone((400, 300)).transpose(Image.Transpose.ROTATE_90)  # what a phone sensor writes
    image = received(jpeg_with_exif(stored, orientation=6))
    assert image.size == (400, 300)
    left, right = image.getpixel((50, 150)), image.getpixel((350, 150))
    assert left[1] > 100 > left[0]  # green on the left
    assert right[0] > 100 > right[1]  # red on the right


@pytest.mark.parametrize(("provider", "side"), [(Provider.PLANT_ID, 1500), (Provider.PLANTNET, 1280)])
def test_large_photos_are_downscaled_per_provider(provider, side):
    image = received(encode(two_tone((4032, 3024)), "JPEG", quality=90), provider)
    assert max(image.size) == side
    assert image.size[0] / image.size[1] == pytest.approx(4 / 3, rel=0.01)


def test_sizes_follow_settings(settings):
    settings.PLANTNET_IMAGE_MAX_SIDE = 640
    assert max(received(encode(two_tone((2000, 1500)), "PNG"), Provider.PLANTNET).size) == 640


def test_small_photos_are_not_upscaled():
    assert received(encode(two_tone((400, 300)), "JPEG")).size == (400, 300)


def test_same_photo_with_other_metadata_normalises_to_the_same_bytes():
    photo = two_tone()
    plain = image_normalise(io.BytesIO(encode(photo, "JPEG", quality=90)))
    tagged = image_normalise(io.BytesIO(jpeg_with_exif(photo, gps=True)))
    assert plain.sha256 == tagged.sha256
    assert plain.renditions == tagged.renditions


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cmyk.jpg", encode(Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "JPEG")),
        ("16bit.png", encode(Image.new("I;16", (300, 300), 40000), "PNG")),
        ("alpha.png", encode(Image.new("RGBA", (300, 300), (0, 200, 0, 0)), "PNG")),
        ("palette.png", encode(Image.new("P", (300, 300), 3), "PNG")),
        ("photo.webp", encode(two_tone(), "WEBP")),
        ("animated.webp", animated_webp()),
        ("iphone.heic", heic(two_tone())),
    ],
)
def test_odd_but_valid_photos_become_rgb_jpeg(name, data):
    image = received(data)
    assert (image.format, image.mode) == ("JPEG", "RGB")


def test_transparent_pixels_become_white():
    image = received(encode(Image.new("RGBA", (300, 300), (0, 200, 0, 0)), "PNG"))
    assert image.getpixel((10, 10)) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_brightness():
    value = received(encode(Image.new("I;16", (300, 300), 40000), "PNG")).getpixel((10, 10))
    assert value[0] == pytest.approx(40000 / 256, abs=2)


def test_animated_webp_uses_its_first_frame():
    assert received(animated_webp()).getpixel((10, 10))[1] > 150  # the green frame


def test_decompression_bomb_is_rejected_from_its_header():
    with pytest.raises(ImageRejectedError, match="pixels"):
        image_normalise(io.BytesIO(png_bomb()))


def test_pixel_and_side_limits_follow_settings(settings):
    settings.IDENTIFY_MAX_IMAGE_PIXELS = 100_000
    with pytest.raises(ImageRejectedError, match="pixels"):
        image_normalise(io.BytesIO(encode(two_tone((400, 300)), "PNG")))
    settings.IDENTIFY_MIN_IMAGE_SIDE = 350
    with pytest.raises(ImageRejectedError, match="too small"):
        image_normalise(io.BytesIO(encode(two_tone((200, 300)), "PNG")))
