"""Downloads against a server on 127.0.0.1: failover, verification, timeouts, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from seqmnist import files
from seqmnist.data import DownloadTimeouts
from seqmnist.data.download import DEFAULT_TIMEOUTS, download_verified
from seqmnist.errors import DataError

if TYPE_CHECKING:
    from conftest import LocalServer

GOOD = gzip.compress(random.Random(0).randbytes(3000), mtime=0)
GOOD_SHA256 = hashlib.sha256(GOOD).hexdigest()
HTML = b"<!DOCTYPE html><html><body>Mirror is down for maintenance</body></html>"
FAST = DownloadTimeouts(connect=0.3, read=0.3, total=5.0)  # so a failing mirror costs little


def check_sha256(body: bytes) -> None:
    actual = hashlib.sha256(body).hexdigest()
    if actual != GOOD_SHA256:
        raise DataError(f"sha256 is {actual}, expected {GOOD_SHA256}")


def assert_only(folder: Path, *names: str) -> None:
    """The folder holds exactly `names`: no temporary or partial files."""
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)


# name: (body, server options, the reason the warning must give)
BAD_FIRST_MIRRORS: dict[str, tuple[bytes, dict[str, object], str]] = {
    "404": (b"missing", {"status": 404}, "HTTP Error 404"),
    "500": (b"oops", {"status": 500}, "HTTP Error 500"),
    "html with status 200": (HTML, {"content_type": "text/html; charset=utf-8"}, "HTML page"),
    "html sent as binary": (HTML, {}, "HTML/XML page"),
    "wrong checksum": (gzip.compress(b"some other file"), {}, "sha256 is"),
    "short body": (GOOD[:50], {"content_length": len(GOOD)}, "closed after 50 of"),
    "too slow to answer": (GOOD, {"delay": 1.0}, "timed out: no answer within 0.3 s"),
    "body stalls": (GOOD, {"body_delay": 1.0}, "timed out"),
    "too big": (GOOD + b"x" * 5000, {}, "limit"),
    "too big, no length given": (GOOD + b"x" * 5000, {"content_length": -1}, "limit"),
}


@pytest.mark.parametrize("name", list(BAD_FIRST_MIRRORS))
def test_falls_over_to_next_mirror(
    server: LocalServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    body, options, reason = BAD_FIRST_MIRRORS[name]
    urls = [server.serve("/one/file.gz", body, **options), server.serve("/two/file.gz", GOOD)]
    dest = tmp_path / "file.gz"
    with caplog.at_level(logging.WARNING, logger="seqmnist.data.download"):
        used = download_verified(urls, dest, check_sha256, FAST, max_bytes=len(GOOD) + 100)
    assert used == urls[1]
    assert dest.read_bytes() == GOOD
    assert_only(tmp_path, "file.gz")
    [warning] = [record.getMessage() for record in caplog.records]
    assert "/one/file.gz" in warning and reason in warning


def test_falls_over_from_refused_connection(
    server: LocalServer, refused_url: str, tmp_path: Path
) -> None:
    urls = [refused_url + "file.gz", server.serve("/file.gz", GOOD)]
    assert download_verified(urls, tmp_path / "file.gz", check_sha256) == urls[1]
    assert (tmp_path / "file.gz").read_bytes() == GOOD


def test_first_good_mirror_wins(server: LocalServer, tmp_path: Path) -> None:
    urls = [server.serve("/one/file.gz", GOOD), server.serve("/two/file.gz", GOOD)]
    assert download_verified(urls, tmp_path / "file.gz", check_sha256) == urls[0]
    assert server.requests == ["/one/file.gz"]


def test_all_mirrors_failing_raises_and_leaves_nothing(
    server: LocalServer, refused_url: str, tmp_path: Path
) -> None:
    html = server.serve("/html/file.gz", HTML, content_type="text/html")
    urls = [refused_url + "file.gz", html, server.url("/missing/file.gz")]
    dest = tmp_path / "data" / "file.gz"
    with pytest.raises(DataError) as info:
        download_verified(urls, dest, check_sha256, FAST)
    message = str(info.value)
    assert message.startswith(f"could not download {dest}: all 3 mirrors failed")
    assert "/missing/file.gz" in message and "404" in message  # the last reason
    assert "check the network" in message and str(dest.parent) in message
    assert not dest.parent.exists() or not any(dest.parent.iterdir())


def test_failed_download_keeps_existing_file(server: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "file.gz"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download_verified([server.url("/missing")], dest, check_sha256)
    assert dest.read_bytes() == b"old"
    assert_only(tmp_path, "file.gz")


def test_writes_through_temp_file_in_same_folder(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/file.gz", GOOD)
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(source: str, target: Path) -> None:
        assert Path(source).read_bytes() == GOOD  # complete before it takes the final name
        replaced.append((Path(source), Path(target)))
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", spy_replace)
    dest = tmp_path / "sub" / "file.gz"
    download_verified([server.url("/file.gz")], dest, check_sha256)
    [(source, target)] = replaced
    assert source.parent == dest.parent and source != dest and target == dest
    assert_only(dest.parent, "file.gz")


def test_write_failure_leaves_no_temp_file(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve("/file.gz", GOOD)

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(DataError, match="disk full while writing .*file.gz.*--data-dir"):
        download_verified([server.url("/file.gz")], tmp_path / "file.gz", check_sha256)
    assert_only(tmp_path)


# --- giving up in bounded time -------------------------------------------------------------


def test_defaults_give_up_within_15_seconds() -> None:
    assert DEFAULT_TIMEOUTS.total <= 15
    assert DEFAULT_TIMEOUTS.connect < DEFAULT_TIMEOUTS.total  # a second mirror gets a turn
    # A body may go quiet for longer than a mirror may take to answer: slow links still work.
    assert DEFAULT_TIMEOUTS.read > DEFAULT_TIMEOUTS.connect


def test_timeouts_validate_themselves() -> None:
    with pytest.raises(ValueError, match="total must be > 0"):
        DownloadTimeouts(total=0)


def test_silent_and_closed_mirrors_share_one_deadline(
    silent_url: str, refused_url: str, tmp_path: Path
) -> None:
    urls = [silent_url + "a.gz", refused_url + "b.gz"] + [silent_url + "c.gz"] * 3
    dest = tmp_path / "file.gz"
    timeouts = DownloadTimeouts(connect=0.4, read=5.0, total=1.0)
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        download_verified(urls, dest, check_sha256, timeouts, advice="try X")
    elapsed = time.monotonic() - start
    # Each try waits min(connect, time left): 0.4 + 0 + 0.4 + 0.2, and the fifth is never made.
    assert 0.9 < elapsed < 1.5
    message = str(info.value)
    assert message.startswith(f"could not download {dest}: gave up after 1 s with 4 of 5 mirrors")
    assert "c.gz: timed out" in message and message.endswith("; try X")
    assert "\n" not in message
    assert_only(tmp_path)


def test_answering_slowly_costs_only_that_mirror(
    server: LocalServer, silent_url: str, tmp_path: Path
) -> None:
    urls = [silent_url + "file.gz", server.serve("/file.gz", GOOD)]
    start = time.monotonic()
    assert download_verified(urls, tmp_path / "file.gz", check_sha256, FAST) == urls[1]
    assert time.monotonic() - start < 1.0


def test_steady_body_outlasts_the_deadline(server: LocalServer, tmp_path: Path) -> None:
    """The deadline bounds the wait for an answer; a body that is arriving is not cut off."""
    url = server.serve("/file.gz", GOOD, body_delay=0.6)
    timeouts = DownloadTimeouts(connect=0.3, read=2.0, total=0.5)
    assert download_verified([url], tmp_path / "file.gz", check_sha256, timeouts) == url
    assert (tmp_path / "file.gz").read_bytes() == GOOD


def test_hanging_name_lookup_is_bounded(
    refused_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Socket timeouts do not cover the name lookup, where a machine without a network hangs."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hanging_getaddrinfo(*args: object, **kwargs: object) -> object:
        release.wait(10)
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    timeouts = DownloadTimeouts(connect=0.3, read=0.3, total=0.6)
    start = time.monotonic()
    with pytest.raises(DataError, match="all 2 mirrors failed .*no answer within 0.3 s"):
        download_verified([refused_url + "a.gz"] * 2, tmp_path / "f.gz", check_sha256, timeouts)
    assert time.monotonic() - start < 1.0
    release.set()  # let the abandoned lookups end


@pytest.mark.slow
def test_default_deadline_against_silent_mirrors(silent_url: str, tmp_path: Path) -> None:
    urls = [silent_url + "file.gz"] * 4
    start = time.monotonic()
    with pytest.raises(DataError, match="gave up after 15 s with 3 of 4 mirrors tried"):
        download_verified(urls, tmp_path / "file.gz", check_sha256)
    assert time.monotonic() - start < 16
