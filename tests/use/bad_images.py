"""Images that cannot be used, each with the reason predict and serve give: shared by their tests."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid grayscale PNG of the given size whose pixels all compress away: a bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((28, 28), 40 * index, dtype=np.uint8)) for index in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


DIGIT = np.zeros((28, 28), dtype=np.uint8)
DIGIT[6:22, 12:16] = 255
NOISE = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)  # compresses badly


def png_with_garbled_exif() -> bytes:
    """A digit's PNG whose eXIf chunk is no TIFF: Pillow raises SyntaxError turning it upright."""
    plain = png_bytes(255 - DIGIT)
    kind, data = b"eXIf", b"garbage"
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return plain[:33] + chunk + plain[33:]  # after the 8-byte signature and the IHDR chunk


BAD_IMAGES = {
    "empty": (lambda: b"", "is empty"),
    "text": (lambda: b"this is a note, not a picture\n", "is not a PNG, JPEG, BMP, GIF or WebP"),
    "truncated": (lambda: png_bytes(NOISE)[:300], "damaged or truncated"),
    "bomb": (lambda: png_of_zeros(9000, 9000), "over the 50 MP limit"),
    "huge_bomb": (lambda: png_of_zeros(20000, 20000), "claims 400 MP, over the 50 MP limit"),
    "strip": (lambda: png_bytes(np.zeros((1, 10000), dtype=np.uint8)), "too small or too thin"),
    "animated": (animated_gif, "is animated (3 frames)"),
    "blank": (lambda: png_bytes(np.full((28, 28), 255, dtype=np.uint8)), "no visible ink"),
    "tiff": (lambda: _tiff(), "is not a PNG, JPEG, BMP, GIF or WebP"),
    "garbled_exif": (png_with_garbled_exif, "damaged or truncated"),
}


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(DIGIT).save(buffer, format="TIFF")
    return buffer.getvalue()
