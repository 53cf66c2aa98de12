"""Any picture of one digit -> an MNIST-like image, made the way MNIST itself was made.

The one preprocessing path for predict, explain and every other entry point:

1. decode (PNG, JPEG, BMP, GIF, WebP; refusing what cannot be a digit picture),
2. grayscale, with transparency composited onto the background,
3. inverted when the ink is darker than the paper (MNIST is light on dark), and
   stretched so the paper is 0 and the ink 1, the paper's brightness being a
   plane fitted to the border (a photographed sheet is often lit from one side),
4. cropped to the ink, scaled to fit a 20x20 box keeping the aspect ratio
   (for other image sizes, the same share of the model's image),
5. placed in the 28x28 field so the centre of mass is at the centre.

The result is float32 (height, width) in [0, 1], as IDX images scaled by 1/255.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seqmnist.errors import ImageError, UndecodableImage

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
# Larger than any phone photo a person is likely to send, far below what
# would exhaust memory; Pillow's own bomb check only starts at 89 MP.
MAX_PIXELS = 50_000_000
MIN_SIDE = 8
MAX_ASPECT = 10.0
# Work on at most this many pixels per side: the digit ends up 20 pixels tall,
# so more only costs time and memory.
WORKING_SIDE = 1024
# MNIST fits each digit in 20x20 inside 28x28.
BOX_FRACTION = 20 / 28
# Pixels within this share of the paper-to-ink contrast are paper, not ink.
INK_THRESHOLD = 0.2
MIN_CONTRAST = 0.05


def load_image(path: Path | str, image_shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read one image file and prepare it for a model reading ``image_shape`` images."""
    return prepare_image(open_image(path), image_shape, name=str(path))


def open_image(path: Path | str) -> Image.Image:
    """Decode an image file fully, or raise ImageError saying why it cannot be used."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ImageError(f"{name} does not exist")
    if path.is_dir():
        raise ImageError(f"{name} is a folder; give image files")
    if path.stat().st_size == 0:
        raise ImageError(f"{name} is empty (0 bytes)")
    with path.open("rb") as file:
        return decode_image(file, name)


def decode_image(source: BinaryIO | bytes, name: str = "the image") -> Image.Image:
    """Decode an image from an open binary file or bytes, with the checks of ``open_image``.

    Raises UndecodableImage when the bytes are no usable image file, and
    ImageError when the picture decodes but cannot hold a digit.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UndecodableImage(f"{name} is empty (0 bytes)")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Sizes are checked below, against a tighter limit than Pillow's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{name} claims {_claimed_size(error)}, over the {MAX_PIXELS / 1e6:.0f} MP limit and "
            "far more than any photo (a decompression bomb?); refusing to decode it"
        ) from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"{name} is not a PNG, JPEG, BMP, GIF or WebP image") from None
    except OSError as error:
        raise UndecodableImage(f"{name} cannot be read: {error}") from None
    _check_geometry(image, name)
    if image.format == "JPEG":
        image.draft("RGB" if image.mode != "L" else "L", (WORKING_SIDE, WORKING_SIDE))
    try:
        image.load()
        # Turned upright by its EXIF orientation; a garbled EXIF block raises here too.
        return ImageOps.exif_transpose(image)
    except Exception as error:  # Pillow's decoders raise many kinds for damaged bytes
        raise UndecodableImage(
            f"{name} is damaged or truncated ({error}); copy or export it again"
        ) from None


def _claimed_size(error: Image.DecompressionBombError) -> str:
    """The size the image claims, as Pillow reports it when refusing to open it."""
    # Pillow says "Image size (400000000 pixels) exceeds limit of ...".
    match = re.search(r"\((\d+) pixels\)", str(error))
    if match is None:
        return f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP"  # Pillow's own bomb limit
    return f"{int(match.group(1)) / 1e6:.0f} MP"


def _check_geometry(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit; scale it down first"
        )
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(
            f"{name} is {width}x{height} pixels, too small or too thin to hold a digit; "
            f"crop it to one digit (sides at least {MIN_SIDE} pixels, at most {MAX_ASPECT:g}:1)"
        )
    # A multi-picture JPEG (MPO, from phone cameras) holds the photo in frame 0.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise ImageError(
            f"{name} is animated ({image.n_frames} frames); save the frame you mean as a PNG"
        )


def prepare_image(
    image: Image.Image | np.ndarray, image_shape: tuple[int, int] = (28, 28), name: str = "image"
) -> np.ndarray:
    """An MNIST-like float32 (height, width) array in [0, 1] from a decoded image.

    ``image`` is a Pillow image or an array: (H, W) grayscale, (H, W, 3) RGB or
    (H, W, 4) RGBA, uint8 in 0..255 or float in [0, 1].
    """
    gray, alpha = _gray_and_alpha(image)
    if alpha is not None:
        gray = _composite(gray, alpha)
    ink = _ink(gray, name)
    return _center(_fit(_crop(ink), image_shape), image_shape)


def _gray_and_alpha(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Luminance and opacity as float32 (H, W) arrays in [0, 1], at most WORKING_SIDE a side.

    Each image is shrunk while still 8 or 16 bits a channel, so a 50-megapixel
    photo never becomes gigabytes of floats.
    """
    if isinstance(image, np.ndarray):
        image = _from_array(image)
    if image.mode.startswith("I") or image.mode == "F":
        # 16- and 32-bit grayscale: Pillow's own conversion to 8 bits clips.
        sixteen_bit = image.mode.startswith("I;16")
        values = np.asarray(_shrink(image.convert("F")), dtype=np.float32)
        top = 65535.0 if sixteen_bit or values.max(initial=0) > 255 else 255.0
        return np.clip(values / top, 0.0, 1.0), None
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        # Pillow resizes RGBA with premultiplied alpha: no colour bleeds from
        # transparent pixels into the edges.
        rgba = np.asarray(_shrink(image.convert("RGBA")), dtype=np.float32) / 255.0  # (H, W, 4)
        luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
        return np.clip(luma, 0.0, 1.0), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(_shrink(image.convert("L")), dtype=np.float32) / 255.0, None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {array.shape}"
        )
    if array.dtype != np.uint8:
        array = (np.clip(np.asarray(array, dtype=np.float64), 0, 1) * 255).round().astype(np.uint8)
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    return Image.fromarray(array, mode)


def _shrink(image: Image.Image) -> Image.Image:
    width, height = image.size
    scale = WORKING_SIDE / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BOX)  # area average: no aliasing


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten onto the background: the tone the visible pixels are drawn on."""
    opaque = alpha > 0.5
    if not opaque.any():
        return np.zeros_like(gray)  # fully transparent: nothing drawn
    if opaque.mean() < 0.5:
        # Strokes on a transparent sheet: put them on the contrasting tone.
        ink_tone = float((gray * alpha).sum() / alpha.sum())
        background = 1.0 if ink_tone < 0.5 else 0.0
    else:
        # A picture with transparent margins: extend its own background.
        background = float(np.median(gray[opaque]))
    return gray * alpha + background * (1.0 - alpha)


def _ink(gray: np.ndarray, name: str) -> np.ndarray:
    """Light ink on a 0 background, scaled so the ink is 1 (MNIST's polarity and range)."""
    paper = _paper(gray)
    deviation = gray - paper
    # The ink is whichever way the image departs further from its paper: dark
    # ink on light paper is inverted, as is mid-grey paper with darker ink.
    if -deviation.min() > deviation.max():
        # Paper and ink both reflect the light that falls on them: measured
        # against the paper, dark ink is equally dark in a photo's shadows.
        deviation = -deviation / np.maximum(paper, MIN_CONTRAST)
    peak = float(deviation.max())
    if peak < MIN_CONTRAST:
        raise ImageError(f"{name} has no visible ink: it is blank or has almost no contrast")
    ink = float(np.percentile(deviation[deviation >= peak / 2], 90))
    floor = INK_THRESHOLD * ink
    return np.clip((deviation - floor) / (ink - floor), 0.0, 1.0)


def _paper(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness everywhere: a plane fitted to the image's border.

    A plane follows the light falling across a photographed sheet; ink that
    touches the border is left out of the fit as an outlier. A drawing's
    uniform background gives a constant.
    """
    height, width = gray.shape
    ring = max(1, round(0.02 * min(height, width)))
    border = np.zeros(gray.shape, dtype=bool)
    border[:ring], border[-ring:], border[:, :ring], border[:, -ring:] = True, True, True, True
    rows, columns = np.nonzero(border)
    design = np.column_stack((np.ones(len(rows)), rows / height, columns / width))  # (P, 3)
    values = gray[border].astype(np.float64)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(3):
        plane, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = values - design @ plane
        spread = 1.4826 * np.median(np.abs(residual[keep])) + 1e-3  # robust sigma
        keep = np.abs(residual) <= 3 * spread
    row_grid, column_grid = np.mgrid[0:height, 0:width]
    paper = plane[0] + plane[1] * row_grid / height + plane[2] * column_grid / width  # (H, W)
    return paper.astype(np.float32)


def _crop(ink: np.ndarray) -> np.ndarray:
    # The box of the clear ink: a speck of noise in a photo barely above the
    # paper must not stretch it (only faint edge pixels fall outside).
    clear = ink >= 0.25
    rows = np.flatnonzero(clear.any(axis=1))
    columns = np.flatnonzero(clear.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _fit(digit: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Scale to fit the box (20x20 of 28x28) keeping the aspect ratio, anti-aliased."""
    box_height, box_width = (max(1, round(side * BOX_FRACTION)) for side in image_shape)
    height, width = digit.shape
    scale = min(box_height / height, box_width / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow: (w, h)
    resized = Image.fromarray(digit.astype(np.float32), "F").resize(size, Image.Resampling.LANCZOS)
    fitted = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    peak = fitted.max()
    # Thin strokes shrunk from a large picture come out faint; MNIST ink is full strength.
    return fitted / peak if peak > 0 else fitted


def _center(digit: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Place ``digit`` in the field with its centre of mass at the field's centre."""
    field = np.zeros(image_shape, dtype=np.float32)
    height, width = digit.shape
    total = digit.sum()
    # Pixel indices as coordinates, as MNIST did: its digits' mass sits at index 14 of 28.
    rows, columns = np.arange(height), np.arange(width)
    mass_row = (digit.sum(axis=1) @ rows) / total if total > 0 else height / 2
    mass_column = (digit.sum(axis=0) @ columns) / total if total > 0 else width / 2
    # Keep the whole digit in the field when its mass sits far off its box centre.
    top = int(np.clip(round(image_shape[0] / 2 - mass_row), 0, image_shape[0] - height))
    left = int(np.clip(round(image_shape[1] / 2 - mass_column), 0, image_shape[1] - width))
    field[top : top + height, left : left + width] = digit
    return field
