"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqmnist.errors import StorageError


def atomic_write(path: Path, write: Callable[[Path], None], option: str = "--out") -> None:
    """Call ``write(temp_path)``, fsync the result, then rename it over ``path``.

    The temporary file lives in the same directory so the rename is atomic;
    on any failure it is removed and ``path`` is left as it was. A full disk
    or an unwritable folder is a StorageError naming ``path`` and ``option``,
    the command-line option that chooses another place.
    """
    path = Path(path)
    try:
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise StorageError(describe_write_error(path, error, option)) from None
    os.close(descriptor)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(temp_path, _new_file_mode())
        with open(temp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException as error:
        temp_path.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, StorageError):
            raise StorageError(describe_write_error(path, error, option)) from None
        raise
    _fsync_directory(path.parent)


def describe_write_error(path: Path, error: OSError, option: str = "--out") -> str:
    """One line saying why ``path`` could not be written and what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full while writing {path}; free space or choose another {option} "
            "(the previous version of the file is unchanged)"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write {path}: {error.strerror or error}; make {path.parent} writable "
            f"or choose another {option}"
        )
    return f"could not write {path}: {error.strerror or error}"


def atomic_write_bytes(path: Path, data: bytes, option: str = "--out") -> None:
    atomic_write(path, lambda temp: temp.write_bytes(data), option)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _new_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask
