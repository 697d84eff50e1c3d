"""Neuron microbenchmark: one fused neuron layer against snnTorch's step loop.

The sweep (:data:`SWEEP_SHAPES`) spans the issue-8 grid T in {1, 5, 25, 100} x B in {1, 32,
128} x N in {100, 1000}, the study's shape and a tiny call (T=1, B=1, N=8) whose time is the
per-call fixed cost (reported on every row as ``fixed_cost_s``). In the sections,
:func:`run_interleaved` times the providers of one case in rounds: each round takes one sample
of every provider in turn (a sample is one call, or several calls of a cheap case averaged),
so a load that comes and goes on a shared machine falls on all of them. :func:`run_case`
times one provider alone (the GPU targets).

Providers: ``fused-<backend>`` for each backend that can run on the device, and ``snntorch``
(snnTorch 1.0.0 stepped in Python over ``x.unbind(0)``, as its users write it). Modes:
``forward`` (under no_grad), ``forward-grad-mode`` (the training forward alone) and
``forward+backward``: ``torch.autograd.grad`` of every output with respect to the input, fed
one materialised random upstream gradient per output (drawn once), as a next layer would send
it, not the stride-0 gradient of a sum loss. Each fused row also reports the bytes the kernels
move (the model of ``bytes_per_neuron_step``) and the achieved fraction of a plain device
copy's bandwidth measured in the same run.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .. import functional as F
from ..backends.registry import _BACKENDS
from ..spec import bytes_per_neuron_step
from .timing import _sync, measure

NEURON_KINDS = ("Leaky", "Synaptic", "RLeaky", "RSynaptic")

#: The per-call fixed cost is measured on this case: nothing to compute, all overhead.
TINY_SHAPE = (1, 1, 8)
SWEEP_SHAPES = [TINY_SHAPE] + [(T, B, N) for T in (1, 5, 25, 100) for B in (1, 32, 128) for N in (100, 1000)]
QUICK_SHAPES = [TINY_SHAPE, (1, 128, 1000), (25, 128, 1000)]
#: A copy at least this large runs out of cache on the CPUs and GPUs we measure.
MIN_COPY_BYTES = 64 << 20


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
        # unbind, not x[t]: on an x that requires grad, each x[t]'s SelectBackward allocates a
        # zero tensor of x's full size in the backward, T of them: O(T^2) work snnTorch's users
        # need not pay (they step an unbound or per-step input).
        outs = [neuron(x_t) for x_t in x.unbind(0)]
        return tuple(torch.stack(p) for p in zip(*outs))

    return run


def make_step(case: NeuronCase, provider: str, mode: str) -> Callable[[], None]:
    x = (torch.randn(case.T, case.B, case.N, device=case.device) * 1.5).to(case.dtype)
    call = _snntorch_call(case) if provider == "snntorch" else _fused_call(case, provider.removeprefix("fused-"))
    if mode == "forward":
        def step():
            with torch.no_grad():
                call(x)
    elif mode == "forward-grad-mode":  # the training forward alone: saves what the backward needs
        x.requires_grad_()

        def step():
            call(x)
    else:
        x.requires_grad_()
        # Upstream gradients as a next layer would send them: one materialised random tensor per
        # output, drawn once. (A loss like `spk.sum()` sends stride-0 scalars that a kernel reads
        # from cache, so the backward would move far fewer bytes than kernel_bytes counts.)
        upstream: list[torch.Tensor] = []

        def step():
            outs = call(x)
            if not upstream:
                upstream.extend(torch.randn_like(o) for o in outs)
            torch.autograd.grad(outs, x, upstream)
    return step


def kernel_bytes(case: NeuronCase, mode: str) -> int:
    """Bytes the fused kernels move for one call (forward, or forward then backward)."""
    spec = F.make_spec(
        synaptic=case.kind in ("Synaptic", "RSynaptic"), recurrence=1 if case.kind.startswith("R") else 0,
        reset_mechanism="subtract", reset_delay=True, spike_grad=None, surrogate_disable=False,
        graded_spikes_factor=1.0, neuron=case.kind,
    )
    io = torch.empty(0, dtype=case.dtype).element_size()
    # "forward" runs under no_grad: the kernels write only the outputs (no trace).
    per_step = bytes_per_neuron_step(spec, io, backward=False, for_backward=mode != "forward")
    if mode == "forward+backward":
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


def copy_bytes_for(shapes, modes=("forward", "forward+backward"), kind: str = "Leaky",
                   dtype: torch.dtype = torch.float32) -> int:
    """Size of the reference copy: the largest working set the fused kernels touch in
    ``shapes`` (bytes moved by one call), and never less than :data:`MIN_COPY_BYTES`, so the
    copy is timed out of cache as the kernels' large cases are."""
    largest = max(kernel_bytes(NeuronCase(kind, T, B, N, dtype, torch.device("cpu")), m)
                  for T, B, N in shapes for m in modes)
    return max(largest, MIN_COPY_BYTES)


def run_interleaved(case: NeuronCase, providers: list[str], mode: str, repeats: int = 10, warmup: int = 2,
                    copy_bytes_per_s: float | None = None) -> list[dict]:
    """Time ``providers`` on one case, interleaved sample by sample (medians, q20/q80).
    Small cases batch several calls per sample so each sample is at least ~1 ms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {p: make_step(case, p, mode) for p in providers}
        for step in steps.values():
            for _ in range(warmup):
                step()
        _sync(case.device)
        calls = {}
        for p, step in steps.items():  # calls per sample from one probe
            start = time.perf_counter()
            step()
            _sync(case.device)
            calls[p] = max(1, min(200, int(1e-3 / max(time.perf_counter() - start, 1e-7))))
        samples = {p: [] for p in providers}
        for _ in range(repeats):
            for p, step in steps.items():
                start = time.perf_counter()
                for _ in range(calls[p]):
                    step()
                _sync(case.device)
                samples[p].append((time.perf_counter() - start) / calls[p])
    rows = []
    for p in providers:
        v = sorted(samples[p])
        q = statistics.quantiles(v, n=5) if len(v) >= 2 else [v[0]] * 4
        median = statistics.median(v)
        row = {
            "neuron": case.kind, "T": case.T, "B": case.B, "N": case.N,
            "dtype": str(case.dtype).removeprefix("torch."), "device": str(case.device),
            "provider": p, "mode": mode, "median_s": median, "q20_s": q[0], "q80_s": q[3],
            "repeats": len(v), "calls_per_sample": calls[p], "peak_memory_bytes": None,
            "neuron_steps_per_s": case.T * case.B * case.N / median,
        }
        if p.startswith("fused"):
            moved = kernel_bytes(case, mode)
            row["bytes_moved"] = moved
            row["achieved_bytes_per_s"] = moved / median
            if copy_bytes_per_s:
                row["fraction_of_copy_bandwidth"] = row["achieved_bytes_per_s"] / copy_bytes_per_s
        rows.append(row)
    return rows


def add_fixed_costs(rows: list[dict]) -> None:
    """``fixed_cost_s`` on every row: the same provider's time on the tiny case (same neuron,
    dtype and mode), the part of each call that does not scale with T * B * N."""
    tiny = {(r["neuron"], r["dtype"], r["mode"], r["provider"]): r["median_s"] for r in rows
            if (r["T"], r["B"], r["N"]) == TINY_SHAPE}
    for r in rows:
        r["fixed_cost_s"] = tiny.get((r["neuron"], r["dtype"], r["mode"], r["provider"]))
