"""What the benchmark scripts share: interleaved timing and the machine header they print first."""

from __future__ import annotations

import math
import os
import platform
import time

import torch

SAMPLE_SECONDS = 0.05  # a sample repeats a call until it lasts about this long (a slow call runs once)


def interleaved(calls: dict, samples: int, device: torch.device | None = None) -> dict:
    """``{name: [seconds per call, one per sample]}``: one untimed warm-up call each, then round robin,
    rotating who goes first each round, so a burst of load from elsewhere hits every function alike."""
    def run(fn, number):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)  # CUDA calls return before the work is done
        return (time.perf_counter() - start) / number

    number = {name: max(1, math.ceil(SAMPLE_SECONDS / run(fn, 1))) for name, fn in calls.items()}  # warm-up
    names, times = list(calls), {name: [] for name in calls}
    for i in range(samples):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(run(calls[name], number[name]))
    return times


def machine_info(threads: int, versions: dict[str, str], device: torch.device | None = None) -> str:
    """Two lines: the CPU, threads, load average (and GPU); then python, torch and the given versions."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    where = ""
    if device is not None:
        where = f"; device {device}" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    libs = "".join(f", {name} {version}" for name, version in versions.items())
    return (f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
            f"torch threads {threads}, load average {load}{where}\n"
            f"python {platform.python_version()}, torch {torch.__version__}{libs}")
