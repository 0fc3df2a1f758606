"""Reading uploaded photos: size limits, decoding to prove it is a JPEG or PNG, hashing."""

import hashlib
import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, UnidentifiedImageError

from apps.plant_identification.types import ImageInput

SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


class ImageRejectedError(ValueError):
    """An upload that is not a usable photo; ``too_large`` uploads answer 413, others 400."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def image_load(upload: UploadedFile) -> ImageInput:
    """Read and check one upload; raise ``ImageRejectedError`` if it is not a usable photo."""
    limit = settings.IDENTIFY_MAX_IMAGE_BYTES
    if upload.size is not None and upload.size > limit:
        raise ImageRejectedError(f"{upload.name}: larger than the {limit} byte limit.", too_large=True)
    upload.seek(0)
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise ImageRejectedError(f"{upload.name}: larger than the {limit} byte limit.", too_large=True)
    if not data:
        raise ImageRejectedError(f"{upload.name}: the file is empty.")
    image_format = _decoded_format(data)
    if image_format not in SUPPORTED_FORMATS:
        raise ImageRejectedError(f"{upload.name}: unsupported image format {image_format}; send JPEG or PNG.")
    return ImageInput(data=data, content_type=SUPPORTED_FORMATS[image_format], sha256=hashlib.sha256(data).hexdigest())


def _decoded_format(data: bytes) -> str:
    """Decode ``data`` (cheaply) and return Pillow's format name; the file name is never trusted."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (256, 256))  # JPEG decodes at reduced scale: proves the data is whole
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageRejectedError("the file is not an image we can read.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejectedError("the image is corrupt or truncated.") from exc
    return image_format or "unknown"
