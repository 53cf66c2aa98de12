"""Strict reader and writer for IDX files (the MNIST format), gzip or raw.

Every size is checked against the header before anything big is allocated,
so a truncated, padded or hostile file (a lying header, a gzip bomb) ends in
a DataError naming the file, never in a huge allocation or a stray exception.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from seqmnist.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
# Type code (third header byte) -> big-endian element type, as the IDX format defines.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_PAYLOAD_BYTES = 4 * 2**30  # far above any MNIST-like set; stops absurd headers early
_MAX_NDIM = 32  # numpy's limit on older versions; IDX files in practice have 1-4
_CHUNK = 1 << 20


def read_idx(path: Path, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) as a native-endian array.

    With `expected_sha256`, the decompressed content must hash to it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            return _read_stream(file, size, str(path), expected_sha256)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the data directory") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None


def parse_idx_bytes(data: bytes, source: str, expected_sha256: str | None = None) -> np.ndarray:
    """Parse the bytes of an IDX file (gzip or raw); `source` names it in errors."""
    return _read_stream(io.BytesIO(data), len(data), source, expected_sha256)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write `array` as an IDX file, gzip-compressed unless `compress` is False."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(str(dtype) for dtype in codes)
        raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of {names}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(f">2xBB{array.ndim}I", code, array.ndim, *array.shape)
    content = header + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    # mtime=0 keeps the output byte-for-byte reproducible.
    Path(path).write_bytes(gzip.compress(content, mtime=0) if compress else content)


def _read_stream(file: BinaryIO, size: int, source: str, expected_sha256: str | None) -> np.ndarray:
    if size == 0:
        raise DataError(f"{source}: file is empty; delete it and download it again")
    is_gzip = file.read(2) == GZIP_MAGIC
    file.seek(0)
    reader = _GzipReader(file, size, source) if is_gzip else _RawReader(file, size, source)
    try:
        header, dtype, shape = _read_header(reader, source)
        payload_bytes = math.prod(shape) * dtype.itemsize
        reader.expect_content_size(len(header) + payload_bytes)
        payload = reader.read_payload(payload_bytes)
        reader.expect_end()
    except (zlib.error, EOFError) as error:
        raise DataError(
            f"{source}: corrupt gzip data ({error}); delete it and download it again"
        ) from None
    if expected_sha256 is not None:
        _check_sha256(header, payload, expected_sha256, source)
    return payload.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _read_header(
    reader: _GzipReader | _RawReader, source: str
) -> tuple[bytes, np.dtype, tuple[int, ...]]:
    """The raw header bytes, element type and shape, with the promised size capped."""
    head = reader.read_exact(4, "header")
    if head[:2] != b"\0\0":
        raise DataError(f"{source}: not an IDX file (it must start with bytes 00 00)")
    dtype = _DTYPES.get(head[2])
    if dtype is None:
        raise DataError(f"{source}: unknown IDX type code 0x{head[2]:02X}; not an IDX file?")
    ndim = head[3]
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataError(f"{source}: IDX header has {ndim} dimensions; expected 1 to {_MAX_NDIM}")
    dims = reader.read_exact(4 * ndim, "header")
    shape = struct.unpack(f">{ndim}I", dims)
    # Zeros are skipped: numpy rejects a shape like (0, 2**31, 2**31) even though it is empty.
    if math.prod(max(size, 1) for size in shape) * dtype.itemsize > MAX_PAYLOAD_BYTES:
        raise DataError(
            f"{source}: IDX header shape {shape} of {dtype.itemsize}-byte values exceeds the "
            f"{MAX_PAYLOAD_BYTES}-byte limit; the file is corrupt"
        )
    return head + dims, dtype, shape


def _check_sha256(header: bytes, payload: np.ndarray, expected: str, source: str) -> None:
    digest = hashlib.sha256(header)
    digest.update(payload)
    if digest.hexdigest() != expected:
        raise DataError(
            f"{source}: sha256 of the content is {digest.hexdigest()}, expected {expected}; "
            "the file is corrupt or not the one expected: delete it or point the data "
            "directory at the right folder"
        )


class _RawReader:
    """Reads an uncompressed IDX file whose exact size is known up front."""

    def __init__(self, file: BinaryIO, size: int, source: str) -> None:
        self._file, self._size, self._source = file, size, source

    def read_exact(self, count: int, what: str) -> bytes:
        data = self._file.read(count)
        if len(data) != count:
            raise DataError(f"{self._source}: truncated in the IDX {what}; download it again")
        return data

    def expect_content_size(self, expected: int) -> None:
        if self._size != expected:
            shape = "truncated" if self._size < expected else "has trailing bytes"
            raise DataError(
                f"{self._source}: {shape}: {self._size} bytes where the IDX header "
                f"implies {expected}; delete it and download it again"
            )

    def read_into(self, buffer: memoryview, what: str) -> None:
        if self._file.readinto(buffer) != len(buffer):
            raise DataError(f"{self._source}: truncated in the IDX {what}; download it again")

    def read_payload(self, count: int) -> np.ndarray:
        # The file's size was checked against ``count``: the buffer is no bigger than the file.
        payload = np.empty(count, dtype=np.uint8)
        self.read_into(memoryview(payload), "data")
        return payload

    def expect_end(self) -> None:
        if self._file.read(1):
            raise DataError(f"{self._source}: has trailing bytes after the IDX data")


class _GzipReader:
    """Decompresses a single-member gzip stream, never producing more than asked."""

    def __init__(self, file: BinaryIO, size: int, source: str) -> None:
        if size < 18:  # 10-byte gzip header + 8-byte trailer
            raise DataError(f"{source}: truncated gzip file ({size} bytes); download it again")
        file.seek(size - 4)
        # ISIZE: the uncompressed size mod 2**32, from the trailer; checked before allocating.
        (self._isize,) = struct.unpack("<I", file.read(4))
        file.seek(0)
        self._file, self._source = file, source
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed input not yet fed to the inflater

    def read_exact(self, count: int, what: str) -> bytes:
        buffer = bytearray(count)
        self.read_into(memoryview(buffer), what)
        return bytes(buffer)

    def expect_content_size(self, expected: int) -> None:
        if self._isize != expected % 2**32:
            raise DataError(
                f"{self._source}: gzip trailer says {self._isize} bytes uncompressed where the IDX "
                f"header implies {expected}; the file is truncated or corrupt, download it again"
            )

    def read_into(self, buffer: memoryview, what: str) -> None:
        filled = 0
        while filled < len(buffer):
            chunk = self._inflate(len(buffer) - filled)
            if chunk is None:
                raise DataError(f"{self._source}: truncated in the IDX {what}; download it again")
            buffer[filled : filled + len(chunk)] = chunk
            filled += len(chunk)

    def read_payload(self, count: int) -> np.ndarray:
        """``count`` bytes, in a buffer that grows only as decompressed data really arrives.

        The trailer's size can lie along with the header, so a file of a few bytes
        must not get a buffer of the size they claim.
        """
        payload = np.empty(min(count, _CHUNK), dtype=np.uint8)
        filled = 0
        while True:
            self.read_into(memoryview(payload)[filled:], "data")
            filled = len(payload)
            if filled == count:
                return payload
            grown = np.empty(min(count, 2 * filled), dtype=np.uint8)
            grown[:filled] = payload
            payload = grown

    def expect_end(self) -> None:
        while not self._inflater.eof:
            chunk = self._inflate(1)
            if chunk is None:
                raise DataError(f"{self._source}: truncated gzip stream; download it again")
            if chunk:
                raise DataError(f"{self._source}: has more data than its IDX header describes")
        if self._inflater.unused_data or self._pending or self._file.read(1):
            raise DataError(f"{self._source}: has trailing bytes after the gzip stream")

    def _inflate(self, limit: int) -> bytes | None:
        """Up to `limit` decompressed bytes; None when the stream ends first."""
        if self._inflater.eof:
            return None
        if not self._pending:
            # Empty at end of file: zlib may still hold output from input it already took.
            self._pending = self._file.read(_CHUNK)
        before = len(self._pending)
        chunk = self._inflater.decompress(self._pending, limit)
        eof = self._inflater.eof
        self._pending = self._inflater.unused_data if eof else self._inflater.unconsumed_tail
        if chunk or eof:
            return chunk
        if before == 0:
            return None
        if len(self._pending) == before:
            raise DataError(f"{self._source}: corrupt gzip data (no progress); download it again")
        return chunk
