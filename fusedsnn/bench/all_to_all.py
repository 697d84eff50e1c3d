"""All-to-all recurrent neurons (RLeaky/RSynaptic with ``nn.Linear(N, N)`` recurrence): the fused
whole-sequence op against snnTorch 1.0.0's step loop, forward+backward, side by side.

Contenders run interleaved (one sample of each per round) and the median of each is reported
with the ratio to snnTorch from the same rounds, so a machine shared with other work slows all
of them alike. The input's spike rate is reported: the fused forward's product skips silent
neurons, so its cost scales with it (snnTorch's dense ``nn.Linear`` does not).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..interop import from_snntorch
from .timing import interleaved, sample_quantiles

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

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if case.kind == "RLeaky":
        reference = snn.RLeaky(beta=0.9, linear_features=case.N)
    else:
        reference = snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=case.N)
    reference = reference.to(case.device)
    x = (torch.randn(case.T, case.B, case.N, generator=gen) * case.scale + case.shift).to(case.device)
    return reference, from_snntorch(reference), x


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
            # unbind, not inp[t]: each select of an input that requires grad allocates a full-size
            # zero gradient in the backward (O(T^2); at T=10000 that was most of snnTorch's time)
            for inp_t in inp.unbind(0):
                states = reference(inp_t, *states)
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
        samples, spike_rate = interleaved({p: steps[p][0] for p in providers}, case.device, warmup, repeats)
    rows = []
    for p in providers:
        s = samples[p]
        median, q20, q80 = sample_quantiles(s)
        rows.append({
            "neuron": f"{case.kind}-all-to-all", "T": case.T, "B": case.B, "N": case.N, "device": str(case.device),
            "provider": p, "mode": mode, "median_s": median, "q20_s": q20, "q80_s": q80,
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


def bytes_per_step(B: int, N: int, spike_rate: float, synaptic: bool = False) -> dict:
    """Bytes one forward step moves for the all-to-all neuron under each mapping (float32).

    ``neuron_io``: x in; spk, mem, trace out (+ syn): the elementwise part, the same everywhere.
    ``mimd_exchange``: every tile receives all B * N spikes of the previous step (4 bytes each
    as float, or 1 bit packed); W stays in tile memory for the whole sequence.
    ``simt_weight_reread``: a GPU kernel that cannot hold W on chip re-reads all of it each step.
    ``host_weight_rows``: the host forward reads one row of W^T per spiking input, per batch row.
    """
    per_neuron = 4 * (4 + (1 if synaptic else 0))
    return {
        "neuron_io": per_neuron * B * N,
        "mimd_exchange_per_tile_float": 4 * B * N,
        "mimd_exchange_per_tile_bits": (B * N + 7) // 8,
        "simt_weight_reread": 4 * N * N,
        "host_weight_rows": int(4 * B * spike_rate * N * N),
    }


def host_tile_sweep(T: int = 100, B: int = 32, N: int = 256, repeats: int = 5) -> list[dict]:
    """The host op with 1 and 2 threads (forward: neuron tiles with a barrier per step when
    B < threads, else whole batch rows per thread), forward+backward, fused against snnTorch,
    interleaved."""
    rows = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for r in run_case(AllToAllCase("RLeaky", T, B, N), ("fused", "snntorch"), repeats=repeats):
                partition = f"{threads} x {'neuron tiles' if B < threads else 'batch rows'}"
                rows.append({**r, "tiles": partition if r["provider"] == "fused" else None})
    finally:
        torch.set_num_threads(previous)
    return rows
