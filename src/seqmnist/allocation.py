"""Memory that a command frees stays with the process, so the next step reuses it.

glibc's malloc hands every block over its mmap threshold (128 KiB, rising
to at most 32 MiB) to the kernel with mmap and returns it with munmap, so
each training step maps its large activations afresh and pays a page fault
for every 4 KiB of them. On the 2-core Xeon (AVX-512F) a fresh 51 MB tensor
took 16.8 ms to allocate and fill against 2.8 ms to fill one already held,
and in alternating processes nn.LSTM-128's training step at 784 steps took
502-674 ms with glibc's defaults against 273-370 ms with this, LRU's 747-924
against 607-714 ms, by rows LRU's 30-38 against 23-27 ms. (PyTorch's CPU
tuning guide gives the same advice by preloading jemalloc or tcmalloc; this
needs no preload.) The cost: the process keeps its peak heap until it exits,
as a GPU caching allocator does.

The setting is process state, so a library call never changes it; the CLI
wraps each command that computes in ``heap_kept_for_command``. glibc only;
elsewhere it does nothing, as it does with ``SEQMNIST_KEEP_HEAP=0``.
Afterwards the kept memory goes back to the system (malloc_trim) and
glibc's default values are set again, not whatever was set
before (mallopt cannot be read back), and glibc's mmap threshold stays
fixed at its initial 128 KiB rather than adapting: any mallopt call ends
that adaptation for the rest of the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator

# mallopt's parameter numbers (malloc.h) and glibc's defaults, restored afterwards.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
# The value -1: never give the main heap's top back (mallopt(3); the main
# thread's arena, where torch's large tensors come from). The largest int,
# 2**31 - 1, still trimmed a free top of over 2 GiB, which a pixel-by-pixel
# batch of 1,000 frees (LEM's inputs for all 784 steps are 1.6 GB). Other
# threads' arenas still return whole sub-heaps as glibc decides.
_KEEP_TRIM_THRESHOLD = -1


DISABLE_ENV = "SEQMNIST_KEEP_HEAP"  # "0": leave glibc's allocation as it is
_depth = [0]  # commands inside commands (a test calling main twice over): the outer restores


@contextlib.contextmanager
def heap_kept_for_command() -> Iterator[bool]:
    """While one command runs, serve every allocation from the heap and never trim it.

    Yields whether the setting is in force (False off glibc or when turned off).
    """
    mallopt = None if os.environ.get(DISABLE_ENV) == "0" else _mallopt()
    if mallopt is None:
        yield False
        return
    if _depth[0] == 0:
        kept = bool(mallopt(_M_MMAP_MAX, 0))
        kept = bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD)) and kept
    else:
        kept = True  # set by the outer command
    _depth[0] += 1
    try:
        yield kept
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            _libc().malloc_trim(0)  # what the command kept goes back to the system


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = _libc()
        # gnu_get_libc_version exists only in glibc: musl has a mallopt that ignores these
        libc.gnu_get_libc_version  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
