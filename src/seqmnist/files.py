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
    on any failure it is removed and ``path`` is left as it was. A full disk,
    an unwritable folder or a folder where the file should be is a
    StorageError naming ``path`` and ``option``, the command-line option that
    chooses another place.
    """
    path = Path(path)
    if _is_folder(path):
        # Caught before ``write`` runs: the rename at the end would fail after all the work.
        raise StorageError(f"{path} is a folder, not a file; choose another {option}")
    if _is_special(path):
        # The rename would put a regular file in place of a device such as /dev/null.
        raise StorageError(_not_a_regular_file(path, option))
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


def make_folder(directory: Path, option: str = "--out") -> Path:
    """Create ``directory`` and its parents as needed, or raise StorageError naming ``option``."""
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise StorageError(_not_a_folder(directory, blocker, option))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(
            _describe(directory, _nearest_existing(directory), error, option)
        ) from None
    return directory


def check_writable_folder(directory: Path, option: str = "--out") -> Path:
    """Create ``directory`` if need be and prove a file can be written in it.

    For commands to call before slow work, so that a folder which cannot take
    the output is one StorageError up front rather than a failure at the end.
    """
    directory = make_folder(directory, option)
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".seqmnist-probe.", dir=directory)
    except OSError as error:
        message = _describe(directory, directory, error, option, f"files in {directory}")
        raise StorageError(message) from None
    os.close(descriptor)
    os.unlink(probe)
    return directory


def check_creatable_folder(directory: Path, option: str = "--out") -> Path:
    """Check that ``directory`` exists and takes files, or could be created, creating nothing.

    The nearest folder that exists gets a probe file, written and removed: for
    commands that must refuse an unusable output folder before slow work,
    without leaving an empty one behind when they then stop for another reason.
    """
    directory = check_not_blocked(directory, option)
    existing = _nearest_existing(directory)
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".seqmnist-probe.", dir=existing)
    except OSError as error:
        raise StorageError(_describe(directory, existing, error, option)) from None
    os.close(descriptor)
    os.unlink(probe)
    return directory


def check_not_blocked(directory: Path, option: str = "--out") -> Path:
    """Raise StorageError if a file stands where ``directory`` or a folder above it should be.

    Creates nothing: for commands that only read a folder that may not exist yet.
    """
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise StorageError(_not_a_folder(directory, blocker, option))
    return directory


def check_writable_file(path: Path, option: str = "--out") -> Path:
    """Check that ``path`` could be written: not a folder, in a folder that takes files."""
    path = Path(path)
    if _is_folder(path):
        raise StorageError(
            f"{path} is a folder, not a file; give {option} a file name (such as one inside it)"
        )
    if _is_special(path):
        raise StorageError(_not_a_regular_file(path, option))
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise StorageError(_not_a_folder(path, blocker, option))
    check_writable_folder(path.parent, option)
    return path


def describe_write_error(path: Path, error: OSError, option: str = "--out") -> str:
    """One line saying why ``path`` could not be written and what to do."""
    return _describe(path, _nearest_existing(Path(path).parent), error, option)


def _describe(
    target: Path, folder: Path, error: OSError, option: str, label: str | None = None
) -> str:
    # ``folder`` is the existing one that would have to change for ``target`` to be
    # written; ``label`` names what was being written, ``target`` itself by default.
    label = label or str(target)
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full while writing {label}; free space or choose another {option} "
            "(the previous version of the file is unchanged)"
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {label}: {reason}; make {folder} writable or choose another {option}"
    if error.errno == errno.ENOTDIR and (blocker := _file_in_the_way(target)) is not None:
        return _not_a_folder(target, blocker, option)
    return f"could not write {label}: {reason}; choose another {option}"


def _not_a_folder(target: Path, blocker: Path, option: str) -> str:
    if blocker == target:
        return f"{target} is a file, not a folder; choose another {option}"
    return (
        f"could not write {target}: Not a directory ({blocker} is a file, not a folder); "
        f"choose another {option}"
    )


def _not_a_regular_file(path: Path, option: str) -> str:
    return f"{path} is not a regular file (a device, pipe or socket); choose another {option}"


def _nearest_existing(path: Path) -> Path:
    """``path`` or the closest of its parents that exists."""
    for candidate in (path, *path.parents):
        if _exists(candidate):
            return candidate
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The existing non-folder at ``path`` or above it that stops it being a folder, if any."""
    existing = _nearest_existing(Path(path))
    return existing if _exists(existing) and not _is_folder(existing) else None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a parent that cannot be searched
        return False


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_special(path: Path) -> bool:
    """Whether ``path`` exists as something other than a regular file or a folder."""
    try:
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        return False


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
