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


def sample_quantiles(samples) -> tuple[float, float, float]:
    """(median, q20, q80) of timed samples, each a value within the samples' range.

    The "inclusive" method interpolates between samples. statistics.quantiles' default,
    "exclusive", extrapolates beyond the samples: with 2 or 3 samples and one slow outlier (a
    loaded machine) it put q20 below the fastest sample, even below zero, and speed-up ranges
    computed from it went negative. Clamped as well, so no rounding leaves the range."""
    v = sorted(samples)
    if not v:
        raise ValueError("no samples")
    q = statistics.quantiles(v, n=5, method="inclusive") if len(v) >= 2 else [v[0]] * 4
    lo, hi = v[0], v[-1]
    return statistics.median(v), min(max(q[0], lo), hi), min(max(q[3], lo), hi)


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
    median, q20, q80 = sample_quantiles(samples)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Timing(median, q20, q80, len(samples), peak)


def copy_bandwidth(num_bytes: int, device: torch.device | str = "cpu", repeats: int = 10) -> float:
    """Bytes/s of a plain device-to-device copy of ``num_bytes`` (read + write counted)."""
    device = torch.device(device)
    src = torch.empty(num_bytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), device, warmup=3, repeats=repeats)
    return 2 * src.numel() * 4 / timing.median_s


def interleaved(steps: dict[str, Callable[[], torch.Tensor]], device: torch.device, warmup: int,
                repeats: int) -> tuple[dict[str, list[float]], float]:
    """Time each step of ``steps`` (provider -> call returning its spikes), one sample of each in
    turn per round, so that a slow spell of a shared machine hits every provider alike. Returns
    the ``repeats`` samples per provider (after ``warmup`` rounds) and the first call's spike rate."""
    samples: dict[str, list[float]] = {p: [] for p in steps}
    spike_rate = None
    for round_ in range(warmup + repeats):
        for p, step in steps.items():
            start = time.perf_counter()
            spk = step()
            _sync(device)
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                samples[p].append(elapsed)
            if spike_rate is None:
                spike_rate = float(spk.detach().ne(0).float().mean())
    return samples, spike_rate
