"""Photo intake: limits checked from the header, decoding by content, and normalisation per provider.

Every accepted photo leaves here as a metadata-free, upright RGB JPEG scaled to each provider's best
long side. The user's GPS position and camera data never reach a third party.
"""

import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import BinaryIO

import pillow_heif
from django.conf import settings
from PIL import Image, ImageCms, UnidentifiedImageError

from apps.plant_identification.decode_slots import DECODE_SLOTS
from apps.plant_identification.providers import Provider, provider_registry
from apps.plant_identification.types import ImageInput

pillow_heif.register_heif_opener()

# Pillow format names we accept; MPO is how Pillow names many camera JPEGs.
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "HEIF"}
SUPPORTED_LABEL = "JPEG, PNG, WebP or HEIC/HEIF"
JPEG_QUALITY = 85
ORIENTATION_TAG = 0x0112
PARALLEL_FROM_PIXELS = 1_000_000  # decoded size from which the renditions are encoded in parallel
SRGB_PROFILE = ImageCms.createProfile("sRGB")
# Rendition encodes of the photos being decoded at once: one thread per distinct provider size per decode slot
# (created on first use, kept, so no photo pays for starting threads).
_RENDITION_POOL: ThreadPoolExecutor | None = None
_RENDITION_WORKERS = 0
_RENDITION_POOL_LOCK = threading.Lock()


class ImageRejectedError(ValueError):
    """An upload that is not a usable photo; ``too_large`` uploads answer 413, others 400."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def provider_long_sides() -> dict[Provider, int]:
    """Each provider's preferred long side in pixels, from the registry."""
    return {provider: spec.image_max_side for provider, spec in provider_registry().items()}


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
            with DECODE_SLOTS.slot():  # the header is cheap; the pixels are what a burst must not multiply
                pixels, orientation = _decode(image, max(provider_long_sides().values()))
                renditions = _renditions(pixels, orientation)
                del pixels
                image.close()  # its pixels go with the slot: leaving the ``with`` only drops the file (Pillow 13)
    except ImageRejectedError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejectedError(f"{name}: the image has too many pixels.") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejectedError(f"{name}: not an image we can read; send {SUPPORTED_LABEL}.") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejectedError(f"{name}: the image is corrupt or truncated.") from exc
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


# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose does).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _decode(image: Image.Image, long_side: int) -> tuple[Image.Image, int]:
    """Decode the pixels (JPEGs at reduced scale) as sRGB RGB on white; return them and the EXIF orientation."""
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (long_side, long_side))  # libjpeg's DCT scaling: decodes 1/2, 1/4 or 1/8 size
    orientation = image.getexif().get(ORIENTATION_TAG, 1)
    icc_profile = image.info.get("icc_profile")
    image.seek(0)  # the first frame of an animation
    image.load()
    return _to_rgb(image, icc_profile), orientation


def _to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale: scale to 8 bits
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if icc_profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            transform = srgb_transform(icc_profile, image.mode)
            if image.mode != "RGB" or image.readonly:  # readonly: pixels borrowed from a decoder (HEIF)
                return transform.apply(image)
            transform.apply_in_place(image)  # RGB to RGB: no second full-size copy of the pixels
            return image
        except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
            pass  # a broken profile: keep the pixels as they are
    return image if image.mode == "RGB" else image.convert("RGB")


@lru_cache(maxsize=16)
def srgb_transform(icc_profile: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    """The transform from an embedded profile to sRGB, built once per distinct profile (a phone model embeds the
    same few): building one parses the profile and optimises the pipeline, several milliseconds each time.
    The same intent as ``ImageCms.profileToProfile``, so the same pixels; shared by threads, so without lcms's
    one-pixel memo (a memo of the previous pixel, it changes no result)."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    return ImageCms.buildTransform(source, SRGB_PROFILE, mode, "RGB", flags=ImageCms.Flags.NOCACHE)


def _renditions(image: Image.Image, orientation: int) -> dict[Provider, bytes]:
    """One upright JPEG per distinct provider size, encoded in parallel (Pillow releases the GIL)."""
    sides = provider_long_sides()
    distinct = sorted(set(sides.values()), reverse=True)

    def encode(side: int) -> bytes:
        # Scale before turning upright (rotation keeps the long side), so the rotation works on fewer pixels.
        upright = _scaled(image, side)
        if orientation in UPRIGHT:
            upright = upright.transpose(UPRIGHT[orientation])  # the scaled copy is dropped before encoding
        buffer = io.BytesIO()
        upright.save(buffer, "JPEG", quality=JPEG_QUALITY)  # no exif, no icc, no comment: only pixels
        return buffer.getvalue()

    if image.width * image.height < PARALLEL_FROM_PIXELS:  # small: threads would cost more than they save
        encoded = {side: encode(side) for side in distinct}
    else:
        encoded = dict(zip(distinct, rendition_pool(len(distinct)).map(encode, distinct), strict=True))
    return {provider: encoded[side] for provider, side in sides.items()}


def rendition_pool(sizes: int) -> ThreadPoolExecutor:
    """The process's rendition threads: enough for every decode slot's sizes at once, so none waits on another."""
    global _RENDITION_POOL, _RENDITION_WORKERS
    with _RENDITION_POOL_LOCK:
        workers = sizes * DECODE_SLOTS.limit
        if _RENDITION_POOL is None or workers > _RENDITION_WORKERS:  # the bound was raised: a larger pool
            _RENDITION_POOL, _RENDITION_WORKERS = (
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image"),
                workers,
            )
        return _RENDITION_POOL


def _scaled(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its long side at most ``side``; BOX (area averaging) is the fast, alias-free downscale."""
    width, height = image.size
    if max(width, height) <= side:
        return image
    ratio = side / max(width, height)
    return image.resize((max(1, round(width * ratio)), max(1, round(height * ratio))), Image.Resampling.BOX)
