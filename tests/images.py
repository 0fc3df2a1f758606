"""Builders for the upload corpus: real photos and deliberately odd or hostile files."""

import io
import struct
import zlib

from PIL import Image

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def two_tone(size=(400, 300)) -> Image.Image:
    """Left half green, right half red: lets a test see which way up an image arrived."""
    image = Image.new("RGB", size, (0, 160, 0))
    image.paste((200, 0, 0), (size[0] // 2, 0, size[0], size[1]))
    return image


def jpeg_with_exif(image: Image.Image, *, orientation: int | None = None, gps: bool = False) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    if orientation:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (52.0, 22.0, 12.0), 3: "E", 4: (4.0, 53.0, 24.0)}
    return encode(image, "JPEG", exif=exif, quality=90)


def png_bomb(side=30000) -> bytes:
    """A tiny PNG whose header claims side x side 1-bit pixels (the data is a few KB of zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * ((side // 8 + 1) * 64), 9)  # a few rows only: decoding would fail late
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (200, 200), color) for color in ((0, 200, 0), (0, 0, 200))]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)


def heic(image: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(image, "HEIF")
