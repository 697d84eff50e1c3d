"""All-to-all recurrent neurons (RLeaky/RSynaptic with ``nn.Linear(N, N)`` recurrence): the fused
whole-sequence op against snnTorch 1.0.0's step loop, forward+backward, side by side.

Contenders run interleaved (one sample of each per round) and the median of each is reported
with the ratio to snnTorch from the same rounds, so a machine shared with other work slows all
of them alike. The input's spike rate is reported: the fused forward's product skips silent
neurons, so its cost scales with it (snnTorch's dense ``nn.Linear`` does not).
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["AllToAllCase", "make_step", "run_case", "TARGET_SHAPES", "section_all_to_all"]

#: The issue's target shapes (T, B, N) and the speed-up over snnTorch each must reach.
TARGET_SHAPES = {(100, 32, 256): 3.0, (25, 128, 1000): 2.0, (10000, 2, 8): 1.0}
PROVIDERS = ("fused", "fused-reference", "snntorch")


@dataclass(frozen=True)
class AllToAllCase:
    kind: str  # "RLeaky" or "RSynaptic"
    T: int
    B: int
    N: int
    device: torch.device = torch.device("cpu")
    #: input x ~ Normal(shift, scale): about a quarter of the neurons spike per step
    scale: float = 1.0
    shift: float = 0.2


def _neurons(case: AllToAllCase):
    import snntorch as snn

    import fusedsnn as fs

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if case.kind == "RLeaky":
        reference = snn.RLeaky(beta=0.9, linear_features=case.N)
    else:
        reference = snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=case.N)
    reference = reference.to(case.device)
    x = (torch.randn(case.T, case.B, case.N, generator=gen) * case.scale + case.shift).to(case.device)
    return reference, fs.from_snntorch(reference), x


def make_step(case: AllToAllCase, provider: str, mode: str = "forward+backward") -> tuple[Callable[[], object], torch.Tensor]:
    """A closure running one forward (+ backward of ``spk.sum() + mem.sum()``) of ``provider``,
    and the input it uses."""
    reference, fused, x = _neurons(case)
    backward = mode == "forward+backward"
    if provider == "fused-reference":
        fused.backend = "reference"

    def run_fused():
        inp = x.requires_grad_(backward) if backward else x
        out = fused(inp)
        if backward:
            (out[0].sum() + out[-1].sum()).backward()
        return out[0]

    def run_snntorch():
        inp = x.requires_grad_(backward) if backward else x
        states = reference.reset_mem()
        spikes, mems = [], []
        with torch.set_grad_enabled(backward):
            for t in range(case.T):
                states = reference(inp[t], *states)
                spikes.append(states[0])
                mems.append(states[-1])
            spk, mem = torch.stack(spikes), torch.stack(mems)
            if backward:
                (spk.sum() + mem.sum()).backward()
        return spk

    if provider.startswith("fused"):
        return run_fused, x
    if provider == "snntorch":
        return run_snntorch, x
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def run_case(case: AllToAllCase, providers=PROVIDERS, mode: str = "forward+backward", repeats: int = 5,
             warmup: int = 1) -> list[dict]:
    """Interleaved timing of ``providers`` on ``case``: one row per provider with the median,
    20/80 % quantiles and ``speedup_vs_snntorch`` (when snnTorch is among them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {p: make_step(case, p, mode) for p in providers}
        samples: dict[str, list[float]] = {p: [] for p in providers}
        spike_rate = None
        for round_ in range(warmup + repeats):
            for p in providers:
                fn, _ = steps[p]
                start = time.perf_counter()
                spk = fn()
                if case.device.type == "cuda":
                    torch.cuda.synchronize(case.device)
                elapsed = time.perf_counter() - start
                if round_ >= warmup:
                    samples[p].append(elapsed)
                if spike_rate is None:
                    spike_rate = float(spk.detach().ne(0).float().mean())
    rows = []
    for p in providers:
        s = sorted(samples[p])
        q = statistics.quantiles(s, n=5) if len(s) >= 2 else [s[0]] * 4
        rows.append({
            "neuron": f"{case.kind}-all-to-all", "T": case.T, "B": case.B, "N": case.N, "device": str(case.device),
            "provider": p, "mode": mode, "median_s": statistics.median(s), "q20_s": q[0], "q80_s": q[3],
            "samples": len(s), "spike_rate": spike_rate, "threads": torch.get_num_threads(),
            "target_speedup": TARGET_SHAPES.get((case.T, case.B, case.N)),
        })
    if "snntorch" in providers:
        base = next(r["median_s"] for r in rows if r["provider"] == "snntorch")
        for r in rows:
            r["speedup_vs_snntorch"] = base / r["median_s"]
    return rows


def section_all_to_all(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """``fusedsnn bench --sections all_to_all``: the issue's target shapes, RLeaky and RSynaptic.
    ``--quick`` shortens the long T=10000 sequence to T=1000 (the row says which T ran) and skips
    the eager reference provider."""
    shapes = list(TARGET_SHAPES)
    kinds = ["RLeaky"] if args.quick else ["RLeaky", "RSynaptic"]
    providers = ("fused", "snntorch") if args.quick else PROVIDERS
    rows = []
    for kind in kinds:
        for T, B, N in shapes:
            if args.quick and T > 1000:
                T = 1000
            progress(f"all_to_all {kind} T={T} B={B} N={N}")
            case = AllToAllCase(kind, T, B, N, device)
            rows += run_case(case, providers, repeats=max(3, args.repeats if T <= 1000 else 3))
    return rows
