"""Wall-clock timing that is honest on GPUs: warm-up, synchronisation, median and quantiles."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Timing:
    median_s: float
    q20_s: float
    q80_s: float
    repeats: int
    peak_memory_bytes: int | None = None

    def as_dict(self) -> dict:
        return {"median_s": self.median_s, "q20_s": self.q20_s, "q80_s": self.q80_s,
                "repeats": self.repeats, "peak_memory_bytes": self.peak_memory_bytes}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 2,
            repeats: int = 10, min_time_s: float = 0.0) -> Timing:
    """Time ``fn`` after ``warmup`` calls; each sample is synchronised, so asynchronous GPU work
    is inside the sample. Repeats until ``repeats`` samples and at least ``min_time_s`` in total."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or total < min_time_s:
        start = time.perf_counter()
        fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        total += elapsed
        if len(samples) >= 10 * repeats:
            break
    samples.sort()
    # "inclusive": quantiles within the samples (the default "exclusive" method extrapolates,
    # putting q20 below the fastest of 3 samples).
    q = statistics.quantiles(samples, n=5, method="inclusive") if len(samples) >= 2 else [samples[0]] * 4
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Timing(statistics.median(samples), q[0], q[3], len(samples), peak)


def copy_bandwidth(num_bytes: int, device: torch.device | str = "cpu", repeats: int = 10) -> float:
    """Bytes/s of a plain device-to-device copy of ``num_bytes`` (read + write counted)."""
    device = torch.device(device)
    src = torch.empty(num_bytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), device, warmup=3, repeats=repeats)
    return 2 * src.numel() * 4 / timing.median_s
