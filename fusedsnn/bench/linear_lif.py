"""A fully connected spiking layer, forward+backward: the fused Linear + Leaky op (issue 19)
against ``nn.Linear`` + the fused Leaky (two ops, the current ``[T, B, N]`` in memory between
them) and snnTorch 1.0.0 (``nn.Linear`` + ``snn.Leaky`` stepped over ``x.unbind(0)``).

Providers, named like the rest of the benchmarks: ``fused-linear-leaky``
(``fs.functional.linear_leaky``), ``linear+fused-leaky`` (``F.linear`` then
``fs.functional.leaky``), ``snntorch``; each on the ``"auto"`` backend of the device. They run
interleaved (one sample of each per round) and each row gives the median, q20/q80, and the
ratio to snnTorch and to ``linear+fused-leaky`` from the same rounds. The input is spikes (a
hidden layer's input, ``K = N``, rate ``spike_rate``) or dense (``spike_rate=None``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as tF

from .. import functional as Fn
from .timing import interleaved, sample_quantiles

__all__ = ["LinearLIFCase", "PROVIDERS", "TARGET_SHAPES", "make_step", "run_case", "section_linear_lif"]

PROVIDERS = ("fused-linear-leaky", "linear+fused-leaky", "snntorch")
#: The issue's shapes (T, B, N); --quick runs the first only.
TARGET_SHAPES = [(25, 128, 1000), (25, 128, 4096)]


@dataclass(frozen=True)
class LinearLIFCase:
    T: int
    B: int
    N: int
    K: Optional[int] = None  # in_features; None: N (a hidden layer)
    spike_rate: Optional[float] = 0.2  # None: dense Normal input
    device: torch.device = torch.device("cpu")
    beta: float = 0.9

    @property
    def in_features(self) -> int:
        return self.N if self.K is None else self.K


def _operands(case: LinearLIFCase):
    gen = torch.Generator().manual_seed(0)
    K = case.in_features
    if case.spike_rate is None:
        x = torch.randn(case.T, case.B, K, generator=gen)
    else:
        x = (torch.rand(case.T, case.B, K, generator=gen) < case.spike_rate).float()
    lin = torch.nn.Linear(K, case.N)
    with torch.no_grad():  # about a tenth of the neurons cross threshold per step
        lin.weight.normal_(0.0, 2.0 / max(1.0, (K * (case.spike_rate or 1.0)) ** 0.5), generator=gen)
        lin.bias.normal_(0.0, 0.1, generator=gen)  # every provider gets the same layer
    return x.to(case.device), lin.to(case.device)


def make_step(case: LinearLIFCase, provider: str, mode: str = "forward+backward") -> Callable[[], torch.Tensor]:
    """One forward (+ backward of ``spk.sum() + mem.sum()`` into the weights) of ``provider``;
    returns the spikes."""
    x, lin = _operands(case)
    backward = mode == "forward+backward"
    W, b = lin.weight, lin.bias

    def finish(spk, mem):
        if backward:
            (spk.sum() + mem.sum()).backward()
        return spk

    if provider == "fused-linear-leaky":
        def run():
            with torch.set_grad_enabled(backward):
                return finish(*Fn.linear_leaky(x, W, b, case.beta))
    elif provider == "linear+fused-leaky":
        def run():
            with torch.set_grad_enabled(backward):
                return finish(*Fn.leaky(tF.linear(x, W, b), case.beta))
    elif provider == "snntorch":
        import snntorch as snn

        neuron = snn.Leaky(beta=case.beta).to(case.device)

        def run():
            with torch.set_grad_enabled(backward):
                mem = neuron.init_leaky()
                spikes, mems = [], []
                for x_t in x.unbind(0):
                    s, mem = neuron(lin(x_t), mem)
                    spikes.append(s)
                    mems.append(mem)
                return finish(torch.stack(spikes), torch.stack(mems))
    else:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    return run


def run_case(case: LinearLIFCase, providers=PROVIDERS, mode: str = "forward+backward", repeats: int = 5,
             warmup: int = 1) -> list[dict]:
    """Interleaved timing of ``providers`` on ``case``: one row each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {p: make_step(case, p, mode) for p in providers}
        samples, out_rate = interleaved(steps, case.device, warmup, repeats)
    rows = []
    for p in providers:
        median, q20, q80 = sample_quantiles(samples[p])
        rows.append({
            "neuron": "Linear+Leaky", "T": case.T, "B": case.B, "K": case.in_features, "N": case.N,
            "device": str(case.device), "provider": p, "mode": mode, "median_s": median,
            "q20_s": q20, "q80_s": q80, "samples": len(samples[p]), "input_spike_rate": case.spike_rate,
            "output_spike_rate": out_rate, "threads": torch.get_num_threads(),
        })
    for base_name, key in (("snntorch", "speedup_vs_snntorch"), ("linear+fused-leaky", "speedup_vs_unfused")):
        if base_name in providers:
            base = next(r["median_s"] for r in rows if r["provider"] == base_name)
            for r in rows:
                r[key] = base / r["median_s"]
    return rows


def section_linear_lif(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """``fusedsnn bench --sections linear_lif``: :data:`TARGET_SHAPES` (``--quick``: the first),
    spike input at rate 0.2, forward+backward."""
    shapes = TARGET_SHAPES[:1] if args.quick else TARGET_SHAPES
    rows = []
    for T, B, N in shapes:
        progress(f"linear_lif T={T} B={B} N={N}")
        rows += run_case(LinearLIFCase(T, B, N, device=device), repeats=max(3, args.repeats or 5))
    return rows
