"""The IDX reader: round trips, and a DataError naming the file for every corruption."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmnist.data.idx import parse_idx_bytes, read_idx, write_idx
from seqmnist.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(0,), (5,), (3, 4, 5), (2, 1, 3, 2)]


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    """A raw IDX file built by hand, independently of write_idx."""
    return struct.pack(f">2xBB{len(shape)}I", code, len(shape), *shape) + payload


VALID = idx_bytes(0x08, (2, 3), bytes(range(6)))


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path: Path, dtype: type, shape: tuple[int, ...], compress: bool) -> None:
    array = (np.arange(int(np.prod(shape))) - 3).astype(dtype).reshape(shape)
    path = tmp_path / "array.idx"
    write_idx(path, array, compress=compress)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype)  # native byte order
    assert result.shape == shape
    np.testing.assert_array_equal(result, array)


def test_reads_big_endian_file_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "hand.idx"
    path.write_bytes(idx_bytes(0x0B, (3,), struct.pack(">3h", 1, -2, 300)))
    np.testing.assert_array_equal(read_idx(path), np.array([1, -2, 300], dtype=np.int16))


def test_writes_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "out.idx"
    write_idx(path, np.array([1, 256], dtype=np.int32), compress=False)
    assert path.read_bytes() == idx_bytes(0x0C, (2,), struct.pack(">2i", 1, 256))


def test_detects_gzip_by_magic_not_name(tmp_path: Path) -> None:
    (tmp_path / "looks-raw").write_bytes(gzip.compress(VALID))
    (tmp_path / "looks.gz").write_bytes(VALID)
    expected = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks-raw"), expected)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks.gz"), expected)


def test_checks_content_sha256_of_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "file.gz"
    path.write_bytes(gzip.compress(VALID))
    read_idx(path, expected_sha256=hashlib.sha256(VALID).hexdigest())
    with pytest.raises(DataError, match="file.gz: sha256"):
        read_idx(path, expected_sha256="0" * 64)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _gzip_with_bad_crc() -> bytes:
    data = bytearray(gzip.compress(VALID))
    data[-8] ^= 0xFF  # the CRC32 field of the trailer
    return bytes(data)


def _gzip_with_corrupt_deflate() -> bytes:
    data = bytearray(gzip.compress(VALID * 50))
    for offset in range(12, 30):
        data[offset] ^= 0x5A
    return bytes(data)


def _gzip_longer_than_header_with_matching_isize() -> bytes:
    # The header promises 6 bytes; the stream holds 7 and its ISIZE is patched to agree.
    data = bytearray(gzip.compress(VALID + b"\x07"))
    data[-4:] = struct.pack("<I", len(VALID))
    return bytes(data)


CORRUPT: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "bad magic": (b"\x01\x00" + VALID[2:], "not an IDX file"),
    "unknown dtype code": (VALID[:2] + b"\x07" + VALID[3:], "type code 0x07"),
    "ndim 0": (b"\0\0\x08\0" + bytes(8), "0 dimensions"),
    "ndim too large": (b"\0\0\x08\x40" + bytes(256), "64 dimensions"),
    "raw truncated in magic": (VALID[:3], "truncated"),
    "raw truncated in dims": (VALID[:9], "truncated"),
    "raw truncated in data": (VALID[:13], "truncated"),
    "raw trailing bytes": (VALID + b"\0", "trailing bytes"),
    "gz trailing data": (gzip.compress(VALID + b"\0"), "gzip"),
    "gz extra member": (gzip.compress(VALID) + gzip.compress(b""), "gzip"),
    # zlib's own length check or ours, whichever notices first.
    "gz longer than header": (_gzip_longer_than_header_with_matching_isize(), "length|more data"),
    "gz bad crc": (_gzip_with_bad_crc(), "corrupt gzip"),
    "gz corrupt deflate": (_gzip_with_corrupt_deflate(), "gzip"),
    "gz garbage": (b"\x1f\x8b" + bytes(range(200)), "gzip"),
    "gz magic only": (b"\x1f\x8b", "truncated gzip"),
}
GZ_VALID = gzip.compress(VALID)
CORRUPT.update(
    {
        f"gz truncated at {n}": (GZ_VALID[:n], "gzip|truncated")
        for n in (5, 12, 20, len(GZ_VALID) - 4)
    }
)
CORRUPT.update({f"gz truncated {n} from end": (GZ_VALID[:-n], "gzip|truncated") for n in (1, 5, 9)})


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_file_raises_data_error_naming_it(tmp_path: Path, name: str) -> None:
    data, fragment = CORRUPT[name]
    path = tmp_path / "corrupt-file.idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=fragment) as info:
        read_idx(path)
    assert "corrupt-file.idx" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing-here.gz: file not found"):
        read_idx(tmp_path / "nothing-here.gz")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


HUGE_HEADERS = {
    # (compress, bytes): claims beyond the cap, and claims under it that the file cannot back.
    "over cap raw": (False, idx_bytes(0x08, (60000, 1000, 1000))),
    "over cap float64": (False, idx_bytes(0x0E, (2**31, 4))),
    "1 GiB raw": (False, idx_bytes(0x08, (2**30,), b"\0" * 100)),
    "1 GiB gz": (True, idx_bytes(0x08, (2**30,), b"\0" * 100)),
}


@pytest.mark.parametrize("name", list(HUGE_HEADERS))
def test_huge_header_errors_without_allocating(tmp_path: Path, name: str) -> None:
    compress, data = HUGE_HEADERS[name]
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="huge.idx"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def _check_parse(data: bytes) -> None:
    """Any bytes give an array that the bytes can back, or a DataError; nothing else."""
    try:
        array = parse_idx_bytes(data, "fuzz")
    except DataError as error:
        assert "fuzz" in str(error)
        return
    assert isinstance(array, np.ndarray)
    if data[:2] != b"\x1f\x8b":
        assert array.nbytes == len(data) - 4 - 4 * array.ndim


ITEM_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@st.composite
def plausible_headers(draw: st.DrawFn) -> bytes:
    """A header with arbitrary or nearly right data: often valid, often off by a few bytes."""
    code = draw(st.sampled_from([*ITEM_SIZES, 0x00, 0x0A, 0xFF]))
    dims = draw(st.lists(st.integers(0, 6) | st.integers(0, 2**32 - 1), max_size=4))
    if draw(st.booleans()):
        tail = draw(st.binary(max_size=300))
    else:
        size = min(int(np.prod(dims, dtype=object)) * ITEM_SIZES.get(code, 1), 2000)
        length = max(size + draw(st.integers(-3, 3)), 0)
        tail = draw(st.binary(min_size=length, max_size=length))
    return idx_bytes(code, tuple(dims), tail)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    _check_parse(data)


@settings(max_examples=200, deadline=None)
@given(plausible_headers())
def test_plausible_header(data: bytes) -> None:
    _check_parse(data)


@settings(max_examples=200, deadline=None)
@given(plausible_headers())
def test_gzip_of_plausible_header(data: bytes) -> None:
    _check_parse(gzip.compress(data, mtime=0))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GZ_VALID) - 1), st.integers(1, 255), st.integers(0, len(GZ_VALID)))
def test_damaged_gzip(position: int, flip: int, length: int) -> None:
    data = bytearray(GZ_VALID)
    data[position] ^= flip
    _check_parse(bytes(data[:length]))


@st.composite
def lying_gzip(draw: st.DrawFn) -> bytes:
    """A gzip file whose IDX header and gzip trailer agree on a size its stream does not hold."""
    code = draw(st.sampled_from(list(ITEM_SIZES)))
    dims = draw(st.lists(st.integers(1, 2**15), min_size=1, max_size=2))
    claimed = 4 + 4 * len(dims) + int(np.prod(dims)) * ITEM_SIZES[code]
    data = bytearray(gzip.compress(idx_bytes(code, tuple(dims), draw(st.binary(max_size=300)))))
    data[-4:] = struct.pack("<I", claimed % 2**32)  # ISIZE, which the reader checks first
    return bytes(data)


@settings(max_examples=100, deadline=None)
@given(lying_gzip())
def test_lying_gzip_allocates_only_what_the_file_holds(data: bytes) -> None:
    # Claims of up to 8 GiB from files of a few hundred bytes: a DataError, with at most a
    # chunk-sized buffer on the way (np.empty of the claimed size would show here).
    tracemalloc.start()
    try:
        _check_parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
