"""A request's body -> what the model will read, or an HTTP error saying why not.

Three ways in: the raw bytes of an image file (``Content-Type: image/png``
and the like, or ``application/octet-stream``: the bytes say their format),
a multipart upload with a ``file`` field, or JSON ``{"pixels": [[...], ...]}``
holding an image already prepared, values in [0, 1] with the ink light, as
the IDX files scaled by 1/255.

An image file is made MNIST-like by ``prepare`` (the same preprocessing as
``seqmnist predict``), never on the event loop: a digit's small file on the
model's own thread with the rest of its batch (batcher.py), a photo here on
a worker thread first, so its tens of milliseconds hold up no batch.
"""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from seqmnist.errors import ImageError, UndecodableImage
from seqmnist.use.preprocess import MIN_CONTRAST, decode_image, prepare_image

# Content types a client may give an image file that does not say its kind.
UNTYPED = ("application/octet-stream", "")
# Files larger than this (photos) are prepared on a worker thread before they join a batch.
PHOTO_BYTES = 256 * 1024

Source = bytes | np.ndarray  # an image file's bytes, or an image prepared already
# Photos take tens of milliseconds and up to 50 MP of memory each: as many at once as cores.
_PHOTOS = threading.BoundedSemaphore(os.cpu_count() or 1)


async def read_source(request: Request, image_shape: tuple[int, int]) -> tuple[Source, str]:
    """What a request carries, and a name for it in error messages."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return await _file(await request.body(), image_shape, "the request's image")
    if content_type == "multipart/form-data":
        return await _upload(request, image_shape)
    if content_type == "application/json":
        # Parsed off the loop: a body near the limit takes a tenth of a second.
        return await run_in_threadpool(_pixels, await request.body(), image_shape), "the pixels"
    raise HTTPException(
        415,
        f"Content-Type {content_type or '(none)'} is not accepted; send an image file "
        "(image/png, image/jpeg, image/bmp, image/gif, image/webp), a multipart/form-data "
        'upload with a "file" field, or application/json {"pixels": [[...], ...]}',
    )


def prepare(source: Source, image_shape: tuple[int, int], name: str) -> np.ndarray:
    """The (H, W) float32 image in [0, 1]; raises ImageError saying why there is none."""
    if isinstance(source, np.ndarray):
        return source
    return prepare_image(decode_image(source, name), image_shape, name=name)


def _prepare_photo(data: bytes, image_shape: tuple[int, int], name: str) -> np.ndarray:
    with _PHOTOS:
        return prepare(data, image_shape, name)


def image_error(error: ImageError) -> HTTPException:
    """400 for bytes that are no image file, 422 for a picture that cannot hold a digit."""
    return HTTPException(400 if isinstance(error, UndecodableImage) else 422, str(error))


async def _upload(request: Request, image_shape: tuple[int, int]) -> tuple[Source, str]:
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, 'the multipart upload has no file in a field named "file"')
        kind = (upload.content_type or "").split(";")[0].strip().lower()
        name = f"the upload {upload.filename!r}" if upload.filename else "the upload"
        if not kind.startswith("image/") and kind not in UNTYPED:
            raise HTTPException(
                415, f"{name} is {kind}, not an image; upload a PNG, JPEG, BMP, GIF or WebP file"
            )
        return await _file(await upload.read(), image_shape, name)


async def _file(data: bytes, image_shape: tuple[int, int], name: str) -> tuple[Source, str]:
    if len(data) <= PHOTO_BYTES:
        return data, name
    try:
        return await run_in_threadpool(_prepare_photo, data, image_shape, name), name
    except ImageError as error:
        raise image_error(error) from None


def _pixels(body: bytes, image_shape: tuple[int, int]) -> np.ndarray:
    height, width = image_shape
    expected = f'{{"pixels": [...]}} with {height} rows of {width} numbers in [0, 1]'
    try:
        pixels = json.loads(body)["pixels"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise HTTPException(422, f"the JSON body must be {expected}") from None
    if (
        not isinstance(pixels, list)
        or len(pixels) != height
        or not all(isinstance(row, list) and len(row) == width for row in pixels)
        or not all(_is_number(value) for row in pixels for value in row)
    ):
        raise HTTPException(422, f"the JSON body must be {expected}")
    image = np.asarray(pixels, dtype=np.float32)  # (H, W)
    if image.min() < 0 or image.max() > 1:
        raise HTTPException(
            422,
            f"pixel values must lie in [0, 1] (got {image.min():g} to {image.max():g}); "
            "divide 8-bit values by 255",
        )
    if image.max() < MIN_CONTRAST:
        raise HTTPException(422, "the pixels have no visible ink: they are all (nearly) 0")
    return image


def _is_number(value: object) -> bool:
    # bool is an int to Python, and NaN or infinity pass a range check unnoticed.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
