"""Downloads against a server on 127.0.0.1: failover, verification, atomic writes."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from seqmnist import files
from seqmnist.data.download import download_verified
from seqmnist.errors import DataError

if TYPE_CHECKING:
    from conftest import LocalServer

GOOD = gzip.compress(random.Random(0).randbytes(3000), mtime=0)
GOOD_SHA256 = hashlib.sha256(GOOD).hexdigest()
HTML = b"<!DOCTYPE html><html><body>Mirror is down for maintenance</body></html>"


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
    "too slow": (GOOD, {"delay": 1.0}, "timed out"),
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
        used = download_verified(urls, dest, check_sha256, timeout=0.3, max_bytes=len(GOOD) + 100)
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
        download_verified(urls, dest, check_sha256, timeout=2)
    message = str(info.value)
    assert "all 3 mirrors failed" in message
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
