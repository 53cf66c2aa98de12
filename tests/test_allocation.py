"""A command's large tensors come from the heap it keeps, not from fresh mmaps (allocation.py)."""

import ctypes
import ctypes.util

import pytest
import torch

from seqmnist.allocation import heap_kept_for_command


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )  # fmt: skip
    ]


def _mapped_bytes():
    """Bytes malloc holds in blocks it mmapped one by one (glibc's mallinfo2().hblkhd)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read malloc's state")
    mallinfo2.restype = _MallInfo2
    return mallinfo2().hblkhd


# Far above glibc's largest mmap threshold (32 MiB), and above any free block a
# long test session leaves in the heap; torch.empty touches none of its pages.
SIZE = 2 * 2**30


def test_outside_a_command_glibc_maps_a_large_tensor_and_inside_the_heap_serves_it():
    before = _mapped_bytes()
    tensor = torch.empty(SIZE // 4)
    assert _mapped_bytes() - before >= SIZE  # glibc's default: a fresh mapping
    del tensor
    with heap_kept_for_command() as kept:
        assert kept
        before = _mapped_bytes()
        tensor = torch.empty(SIZE // 4)
        assert _mapped_bytes() - before < SIZE  # from the heap
        del tensor
    before = _mapped_bytes()
    tensor = torch.empty(SIZE // 4)
    assert _mapped_bytes() - before >= SIZE  # mapped again after the command
    del tensor


def test_a_command_inside_a_command_leaves_the_heap_kept_until_the_outer_one_ends():
    with heap_kept_for_command(), heap_kept_for_command() as inner:
        assert inner
    with heap_kept_for_command():
        with heap_kept_for_command():
            pass
        before = _mapped_bytes()
        tensor = torch.empty(SIZE // 4)
        assert _mapped_bytes() - before < SIZE  # still from the heap
        del tensor


def test_turned_off_the_heap_is_left_to_glibc(monkeypatch):
    monkeypatch.setenv("SEQMNIST_KEEP_HEAP", "0")
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(
        0
    )  # no free top left by others
    with heap_kept_for_command() as kept:
        assert not kept
        before = _mapped_bytes()
        tensor = torch.empty(SIZE // 4)
        assert _mapped_bytes() - before >= SIZE
        del tensor
