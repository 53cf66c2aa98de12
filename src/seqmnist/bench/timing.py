"""Clocks that wait for the device, and medians."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], None]) -> float:
    """Seconds ``work`` takes, with the device idle before and after."""
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def process_age() -> float | None:
    """Seconds since this process started (Linux), for time-to-accuracy from process start."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except OSError:
        return None
    start_ticks = int(fields[19])  # field 22 of stat, counted after the command name
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
