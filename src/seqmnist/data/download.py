"""Fetch a file from the first mirror that serves it intact, and write it atomically."""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqmnist.errors import DataError, StorageError
from seqmnist.files import atomic_write_bytes, describe_write_error

logger = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 100 * 2**20  # MNIST's largest file is under 10 MB


@dataclass(frozen=True)
class DownloadTimeouts:
    """How long to wait for mirrors, in seconds.

    `connect` bounds one mirror's answer (name lookup, connection, TLS, response
    headers), and `total` all mirrors' together, so without a network a missing
    file fails in seconds. `read` is how long a body may go silent: a slow but
    steady download is never cut off.
    """

    connect: float = 5.0
    read: float = 30.0
    total: float = 15.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DownloadTimeouts.{name} must be > 0, got {getattr(self, name)}")


DEFAULT_TIMEOUTS = DownloadTimeouts()


def download_verified(
    urls: Sequence[str],
    dest: Path,
    check: Callable[[bytes], None],
    timeouts: DownloadTimeouts = DEFAULT_TIMEOUTS,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    advice: str | None = None,
) -> str:
    """Write to `dest` the body of the first URL that `check` accepts; return that URL.

    `check` raises DataError to reject a body (wrong checksum, not gzip...). A
    failing mirror is logged and the next one tried while `timeouts.total` lasts;
    no partial file is ever left. `advice` ends the error when every mirror fails.
    """
    if not urls:
        raise ValueError("download_verified needs at least one URL")
    deadline = time.monotonic() + timeouts.total
    reason, tried = "", 0
    for url in urls:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        tried += 1
        try:
            body = _fetch(url, min(timeouts.connect, left), timeouts.read, max_bytes)
            check(body)
        except (OSError, http.client.HTTPException, ValueError, DataError) as error:
            reason = f"{url}: {error}"
            logger.warning("download of %s failed, trying the next mirror: %s", dest.name, reason)
            continue
        _write_atomically(dest, body)
        logger.info("downloaded %s from %s", dest, url)
        return url
    if tried == len(urls):
        failed = f"all {len(urls)} mirrors failed"
    else:
        failed = f"gave up after {timeouts.total:g} s with {tried} of {len(urls)} mirrors tried"
    advice = advice or f"check the network, or download the file by hand into {dest.parent}"
    raise DataError(f"could not download {dest}: {failed} (last: {reason}); {advice}")


def _fetch(url: str, connect_timeout: float, read_timeout: float, max_bytes: int) -> bytes:
    """The body of `url`, or the error that stopped it, waiting `connect_timeout` for an answer.

    The request runs in a daemon thread so that the wait for an answer has a hard
    bound: socket timeouts do not cover the name lookup, which can hang for many
    seconds on a machine without a network. A thread that misses the bound is left
    to end on its own socket timeout.
    """
    answered, done = threading.Event(), threading.Event()
    outcome: list[bytes | Exception] = []

    def get() -> None:
        try:
            outcome.append(_get(url, read_timeout, max_bytes, answered))
        except TimeoutError as error:
            # The socket's own timeout can end the wait for an answer before this
            # thread's waiter does (on a loaded machine): the same failure, said the same way.
            late = answered.is_set()
            outcome.append(
                error if late else TimeoutError(f"timed out: no answer within {read_timeout:.1f} s")
            )
        except Exception as error:  # handed over to the waiting thread
            outcome.append(error)
        finally:
            answered.set()
            done.set()

    threading.Thread(target=get, name=f"seqmnist download {url}", daemon=True).start()
    if not answered.wait(connect_timeout):
        raise TimeoutError(f"timed out: no answer within {connect_timeout:.1f} s")
    done.wait()  # the body's reads are bounded by the socket timeout
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _get(url: str, read_timeout: float, max_bytes: int, answered: threading.Event) -> bytes:
    """The body of a successful response, refusing HTML pages and oversized bodies."""
    request = urllib.request.Request(url, headers={"User-Agent": "seqmnist"})
    # urlopen raises HTTPError (an OSError) on 4xx/5xx statuses.
    with urllib.request.urlopen(request, timeout=read_timeout) as response:
        answered.set()
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
