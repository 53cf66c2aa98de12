"""Fetch a file from the first mirror that serves it intact, and write it atomically."""

from __future__ import annotations

import http.client
import logging
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from seqmnist.errors import DataError, StorageError
from seqmnist.files import atomic_write_bytes, describe_write_error

logger = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 100 * 2**20  # MNIST's largest file is under 10 MB


def download_verified(
    urls: Sequence[str],
    dest: Path,
    check: Callable[[bytes], None],
    timeout: float = 30.0,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> str:
    """Write to `dest` the body of the first URL that `check` accepts; return that URL.

    `check` raises DataError to reject a body (wrong checksum, not gzip...). A
    failing mirror is logged and the next one tried; no partial file is ever left.
    """
    if not urls:
        raise ValueError("download_verified needs at least one URL")
    reason = ""
    for url in urls:
        try:
            body = _fetch(url, timeout, max_bytes)
            check(body)
        except (OSError, http.client.HTTPException, ValueError, DataError) as error:
            reason = f"{url}: {error}"
            logger.warning("download of %s failed, trying the next mirror: %s", dest.name, reason)
            continue
        _write_atomically(dest, body)
        logger.info("downloaded %s from %s", dest, url)
        return url
    raise DataError(
        f"could not download {dest.name}: all {len(urls)} mirrors failed (last: {reason}); "
        f"check the network, or download the file by hand into {dest.parent}"
    )


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body of a successful response, refusing HTML pages and oversized bodies."""
    request = urllib.request.Request(url, headers={"User-Agent": "seqmnist"})
    # urlopen raises HTTPError (an OSError) on 4xx/5xx statuses.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        content_type = response.headers.get("Content-Type", "")
        if content_type.lower().startswith("text/html"):
            raise DataError(f"served an HTML page ({content_type}), not the file")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise DataError(f"file is {length} bytes, over the {max_bytes}-byte limit")
        body = response.read(max_bytes + 1)  # one extra byte shows the limit was passed
    if len(body) > max_bytes:
        raise DataError(f"file is over the {max_bytes}-byte limit")
    # http.client does not notice a connection closed early when reading a sized amount.
    if length is not None and length.isdigit() and len(body) != int(length):
        raise DataError(f"connection closed after {len(body)} of {length} bytes")
    if body.lstrip()[:1] == b"<":
        raise DataError("served an HTML/XML page (an error or login page?), not the file")
    return body


def _write_atomically(dest: Path, body: bytes) -> None:
    """Write via a temporary file in the same folder, so `dest` is whole or absent."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(describe_write_error(dest, error, "--data-dir")) from None
    try:
        atomic_write_bytes(dest, body, "--data-dir")
    except StorageError as error:
        raise DataError(str(error)) from None
