"""Neuron microbenchmark: one fused neuron layer against snnTorch's step loop.

Providers: ``fused-<backend>`` for each backend that can run on the device, and ``snntorch``
(snnTorch 1.0.0 stepped in Python, as its users write it). Modes: ``forward`` and
``forward+backward`` (a sum of all outputs as the loss). Each fused row also reports the bytes
the kernels move (the model of ``bytes_per_neuron_step``) and the achieved fraction of a plain
device copy's bandwidth measured in the same run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .. import functional as F
from ..backends import _BACKENDS
from ..kernels.spec import bytes_per_neuron_step
from .timing import measure

NEURON_KINDS = ("Leaky", "Synaptic", "RLeaky", "RSynaptic")


@dataclass
class NeuronCase:
    kind: str
    T: int
    B: int
    N: int
    dtype: torch.dtype
    device: torch.device


def fused_providers(device: torch.device, dtype: torch.dtype) -> list[str]:
    probe = torch.empty(1, dtype=dtype, device=device)
    return [f"fused-{name}" for name, b in sorted(_BACKENDS.items()) if b.unsupported_reason(probe) is None]


def _fused_call(case: NeuronCase, backend: str) -> Callable[[torch.Tensor], tuple]:
    kw = dict(backend=backend)
    if case.kind == "Leaky":
        return lambda x: F.leaky(x, 0.9, 1.0, **kw)
    if case.kind == "Synaptic":
        return lambda x: F.synaptic(x, 0.8, 0.9, 1.0, **kw)
    if case.kind == "RLeaky":
        return lambda x: F.rleaky(x, 0.9, 0.5, 1.0, **kw)
    return lambda x: F.rsynaptic(x, 0.8, 0.9, 0.5, 1.0, **kw)


def _snntorch_call(case: NeuronCase) -> Callable[[torch.Tensor], tuple]:
    import snntorch as snn

    if case.kind == "Leaky":
        neuron = snn.Leaky(beta=0.9)
    elif case.kind == "Synaptic":
        neuron = snn.Synaptic(alpha=0.8, beta=0.9)
    elif case.kind == "RLeaky":
        neuron = snn.RLeaky(beta=0.9, V=0.5, all_to_all=False)
    else:
        neuron = snn.RSynaptic(alpha=0.8, beta=0.9, V=0.5, all_to_all=False)
    neuron = neuron.to(case.device)

    def run(x):
        neuron.reset_mem()
        outs = [neuron(x[t]) for t in range(x.shape[0])]
        return tuple(torch.stack(p) for p in zip(*outs))

    return run


def make_step(case: NeuronCase, provider: str, mode: str) -> Callable[[], None]:
    x = (torch.randn(case.T, case.B, case.N, device=case.device) * 1.5).to(case.dtype)
    call = _snntorch_call(case) if provider == "snntorch" else _fused_call(case, provider.removeprefix("fused-"))
    if mode == "forward":
        def step():
            with torch.no_grad():
                call(x)
    else:
        x.requires_grad_()

        def step():
            outs = call(x)
            torch.autograd.grad(sum(o.sum() for o in outs), x)
    return step


def kernel_bytes(case: NeuronCase, mode: str) -> int:
    """Bytes the fused kernels move for one call (forward, or forward then backward)."""
    spec = F.make_spec(
        synaptic=case.kind in ("Synaptic", "RSynaptic"), recurrence=1 if case.kind.startswith("R") else 0,
        reset_mechanism="subtract", reset_delay=True, spike_grad=None, surrogate_disable=False,
        graded_spikes_factor=1.0, neuron=case.kind,
    )
    io = torch.empty(0, dtype=case.dtype).element_size()
    per_step = bytes_per_neuron_step(spec, io, backward=False)
    if mode != "forward":
        per_step += bytes_per_neuron_step(spec, io, backward=True)
    return per_step * case.T * case.B * case.N


def run_case(case: NeuronCase, provider: str, mode: str, repeats: int = 10, warmup: int = 2,
             copy_bytes_per_s: float | None = None) -> dict:
    """Time one provider on one case. ``copy_bytes_per_s``: a plain device copy's bandwidth
    measured in the same run, to report the fused kernels' achieved fraction of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = make_step(case, provider, mode)
        timing = measure(step, case.device, warmup=warmup, repeats=repeats)
    row = {
        "neuron": case.kind, "T": case.T, "B": case.B, "N": case.N,
        "dtype": str(case.dtype).removeprefix("torch."), "device": str(case.device),
        "provider": provider, "mode": mode, **timing.as_dict(),
        "neuron_steps_per_s": case.T * case.B * case.N / timing.median_s,
    }
    if provider.startswith("fused"):
        moved = kernel_bytes(case, mode)
        row["bytes_moved"] = moved
        row["achieved_bytes_per_s"] = moved / timing.median_s
        if copy_bytes_per_s:
            row["fraction_of_copy_bandwidth"] = row["achieved_bytes_per_s"] / copy_bytes_per_s
    return row
