"""Photo intake: limits checked from the header, decoding by content, and normalisation per provider.

Every accepted photo leaves here as a metadata-free, upright RGB JPEG scaled to each provider's best
long side. The user's GPS position and camera data never reach a third party.
"""

import hashlib
import io
from typing import BinaryIO

import pillow_heif
from django.conf import settings
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from apps.plant_identification.types import ImageInput, Provider

pillow_heif.register_heif_opener()

# Pillow format names we accept; MPO is how Pillow names many camera JPEGs.
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "HEIF"}
SUPPORTED_LABEL = "JPEG, PNG, WebP or HEIC/HEIF"
JPEG_QUALITY = 85
SRGB_PROFILE = ImageCms.createProfile("sRGB")


class ImageRejectedError(ValueError):
    """An upload that is not a usable photo; ``too_large`` uploads answer 413, others 400."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def provider_long_sides() -> dict[Provider, int]:
    """Each provider's preferred long side in pixels, from settings."""
    return {provider: getattr(settings, f"{provider.name}_IMAGE_MAX_SIDE") for provider in Provider}


def image_load(upload) -> ImageInput:
    """Check and normalise one uploaded file (a Django ``UploadedFile``); raise ``ImageRejectedError``."""
    name = upload.name or "image"
    limit = settings.IDENTIFY_MAX_IMAGE_BYTES
    if upload.size is not None and upload.size > limit:
        raise ImageRejectedError(f"{name}: larger than the {limit} byte limit.", too_large=True)
    if not upload.size:
        raise ImageRejectedError(f"{name}: the file is empty.")
    upload.seek(0)
    return image_normalise(upload, name=name)


def image_normalise(stream: BinaryIO, *, name: str = "image") -> ImageInput:
    """Decode ``stream`` by content and return its per-provider JPEG renditions."""
    try:
        with Image.open(stream) as image:
            _check_header(image, name)
            upright = _decode_upright(image, max(provider_long_sides().values()))
    except ImageRejectedError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejectedError(f"{name}: the image has too many pixels.") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejectedError(f"{name}: not an image we can read; send {SUPPORTED_LABEL}.") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejectedError(f"{name}: the image is corrupt or truncated.") from exc
    renditions = _renditions(upright)
    largest = max(renditions.values(), key=len)
    return ImageInput(renditions=renditions, sha256=hashlib.sha256(largest).hexdigest())


def _check_header(image: Image.Image, name: str) -> None:
    """Format and dimension limits, read from the header before any pixel is decoded."""
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejectedError(
            f"{name}: {image.format or 'unknown'} images are not supported; send {SUPPORTED_LABEL}."
        )
    width, height = image.size
    if width * height > settings.IDENTIFY_MAX_IMAGE_PIXELS:
        raise ImageRejectedError(f"{name}: {width}x{height} is more than {settings.IDENTIFY_MAX_IMAGE_PIXELS} pixels.")
    if min(width, height) < settings.IDENTIFY_MIN_IMAGE_SIDE:
        raise ImageRejectedError(
            f"{name}: {width}x{height} is too small; each side needs {settings.IDENTIFY_MIN_IMAGE_SIDE} pixels."
        )


def _decode_upright(image: Image.Image, long_side: int) -> Image.Image:
    """Decode (JPEGs at reduced scale), turn upright by EXIF, and convert to sRGB RGB on white."""
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (long_side, long_side))  # libjpeg's DCT scaling: decodes 1/2, 1/4 or 1/8 size
    icc_profile = image.info.get("icc_profile")
    upright = ImageOps.exif_transpose(image)  # also loads the pixels; the first frame of an animation
    return _to_rgb(upright, icc_profile)


def _to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale: scale to 8 bits
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if icc_profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(image, source, SRGB_PROFILE, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: keep the pixels as they are
    return image.convert("RGB")


def _renditions(image: Image.Image) -> dict[Provider, bytes]:
    """One JPEG per provider, largest first so smaller ones are scaled from it; equal sizes encoded once."""
    encoded: dict[int, bytes] = {}
    renditions = {}
    for provider, side in sorted(provider_long_sides().items(), key=lambda item: -item[1]):
        if side not in encoded:
            image = image.copy() if max(image.size) <= side else _scaled(image, side)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=JPEG_QUALITY)  # no exif, no icc, no comment: nothing but pixels
            encoded[side] = buffer.getvalue()
        renditions[provider] = encoded[side]
    return renditions


def _scaled(image: Image.Image, side: int) -> Image.Image:
    scaled = image.copy()
    scaled.thumbnail((side, side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return scaled
