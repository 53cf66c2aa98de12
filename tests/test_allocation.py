"""A command's large tensors come from the heap it keeps, not from fresh mmaps (allocation.py).

Each check runs in a fresh interpreter: malloc's state in the test process
depends on every test before it (and on commands other tests leave running).
"""

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    '''
    import ctypes, ctypes.util, sys
    import torch
    from seqmnist.allocation import heap_kept_for_command

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        print("no-mallinfo2"); sys.exit()
    libc.mallinfo2.restype = MallInfo2
    SIZE = 2 * 2**30  # above glibc's largest mmap threshold; torch.empty touches no page

    def mapped():
        """Does a large tensor get its own mapping (glibc's mallinfo2().hblkhd grows)?"""
        before = libc.mallinfo2().hblkhd
        tensor = torch.empty(SIZE // 4)
        grew = libc.mallinfo2().hblkhd - before >= SIZE
        del tensor
        return "mapped" if grew else "heap"
    '''
)


def _run(body: str, **env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE + textwrap.dedent(body)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    if words == ["no-mallinfo2"]:
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read malloc's state")
    return words


def test_outside_a_command_glibc_maps_a_large_tensor_and_inside_the_heap_serves_it():
    words = _run(
        """
        print(mapped())
        with heap_kept_for_command() as kept:
            print(kept, mapped())
        print(mapped())
        """
    )
    assert words == ["mapped", "True", "heap", "mapped"]


def test_a_command_inside_a_command_leaves_the_heap_kept_until_the_outer_one_ends():
    words = _run(
        """
        with heap_kept_for_command():
            with heap_kept_for_command() as inner:
                print(inner)
            print(mapped())
        print(mapped())
        """
    )
    assert words == ["True", "heap", "mapped"]


def test_turned_off_the_heap_is_left_to_glibc():
    words = _run(
        """
        with heap_kept_for_command() as kept:
            print(kept, mapped())
        """,
        SEQMNIST_KEEP_HEAP="0",
    )
    assert words == ["False", "mapped"]


def test_inside_a_command_freeing_more_than_2_gib_gives_none_of_the_heap_back():
    # a pixel-by-pixel batch of 1,000 frees blocks this large (LEM's inputs for all
    # 784 steps are 1.6 GB); a trim threshold of 2**31 - 1 gave them back
    words = _run(
        """
        with heap_kept_for_command():
            tensor = torch.empty(3 * 2**30 // 4)
            held = libc.mallinfo2().arena
            del tensor
            print("kept" if libc.mallinfo2().arena >= held else "trimmed")
        """
    )
    assert words == ["kept"]
