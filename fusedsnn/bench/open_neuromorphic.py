"""``open_neuromorphic`` section: the workload of the Open Neuromorphic SNN-library benchmark
(Lenz et al., open-neuromorphic.org, "Spiking Neural Network (SNN) Library Benchmarks"):
one ``Linear(n, n)`` and one LIF layer over ``T=500`` steps of a batch of 16, forward and
backward timed; n=512 on a CPU, n in {4096, 8192, 16384} on CUDA, where the peak memory of a
step is reported too.

Input: ``x: [T, B, n]`` dense standard-normal values, as that benchmark feeds (no gradient is
asked of it). Loss: **a random upstream gradient on the output spikes** (``spk.backward(g)``,
``g: [T, B, n]`` drawn once per case), as a next layer would send it. The published benchmark
ends in ``output.sum()``, whose constant, stride-0 gradient a fused kernel reads from cache, so
its backward moves fewer bytes; ours is the dearer of the two for the fused providers and the
same work for the others. Its forward and backward were timed apart (and the backward repeated
on one retained graph); here one call is forward and backward together.

Providers (eager unless named "-compiled"; each has its own copy of one seeded Linear; neurons:
beta 0.9, threshold 1, subtract reset, arctan surrogate):

- ``fused``: ``nn.Linear`` over the whole ``[T, B, n]``, then :func:`fusedsnn.functional.leaky`;
- ``fused-linear-leaky``: :func:`fusedsnn.functional.linear_leaky`, the Linear and the neuron as
  one op (the current ``[T, B, n]`` never held whole);
- ``spikingjelly``: the same ``nn.Linear``, then SpikingJelly 2.0's multi-step ``LIFNode``
  (:func:`fusedsnn.bench.neurons.spikingjelly_lif`); skipped, with the reason, where it does not
  import;
- ``snntorch``: the same ``nn.Linear`` (once, over the sequence), then ``snntorch.Leaky`` stepped
  over ``unbind(0)``;
- ``linear-only``: just the ``nn.Linear``'s forward and backward over the sequence (the upstream
  gradient on its output): not a contender, the measure of what the neuron adds
  (``neuron_overhead_vs_linear`` = time / linear-only time - 1; target <= 10 %);
- ``fused-compiled``, ``snntorch-compiled``: the forward under ``torch.compile``; at T=500 above
  the compile budget (``--compile-max-t``, default 25), so skipped with that reason.

Speed-ups are against the fastest baseline of the same execution mode; fused rows also carry
``speedup_vs_spikingjelly`` (target >= 2x). The published GPU figures (:data:`published.OPEN_NEUROMORPHIC`,
n=16,384 on an RTX 4090) are printed beside CUDA rows only, labelled published.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .. import functional as Fn
from ..backends.registry import resolve_backend
from .modes import COMPILE_MAX_T, add_speedups, execution_mode
from .neurons import _spikingjelly_unavailable, provider_unavailable, spikingjelly_lif
from .published import OPEN_NEUROMORPHIC, OPEN_NEUROMORPHIC_SOURCE
from .timing import _sync, interleaved, sample_quantiles

Tensor = torch.Tensor

__all__ = ["OnCase", "PROVIDERS", "make_step", "run_case", "section_open_neuromorphic", "published_table"]

PROVIDERS = ("fused", "fused-linear-leaky", "spikingjelly", "snntorch", "linear-only", "fused-compiled",
             "snntorch-compiled")
#: what the neuron may add to the Linear's own time (fused), and the fused speed-up over SpikingJelly
TARGET_NEURON_OVERHEAD = 0.10
TARGET_SPEEDUP_VS_SPIKINGJELLY = 2.0
#: (n, T, B) per device and run: the benchmark's sizes; --quick on a CPU shortens T, on CUDA it
#: keeps the published point (n=16,384) only.
CPU_SIZES = [(512, 500, 16)]
CPU_QUICK_SIZES = [(512, 50, 16)]
CUDA_SIZES = [(4096, 500, 16), (8192, 500, 16), (16384, 500, 16)]
CUDA_QUICK_SIZES = [(16384, 500, 16)]
#: at most this many timed rounds in --quick (a round at n=16,384 takes seconds on a GPU)
QUICK_MAX_REPEATS = 5


@dataclass(frozen=True)
class OnCase:
    """One Linear(n, n) + LIF layer over ``x: [T, B, n]``."""

    n: int
    T: int = 500
    B: int = 16
    device: torch.device = torch.device("cpu")
    beta: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "T", "B"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta!r}")


def operands(case: OnCase) -> tuple[Tensor, Tensor, dict]:
    """``(x, g, weights)``: input ``x: [T, B, n]`` (standard normal), upstream gradient of the
    spikes ``g: [T, B, n]`` and the Linear's initial state_dict, the same for the same case."""
    gen = torch.Generator().manual_seed(case.seed)
    x = torch.randn(case.T, case.B, case.n, generator=gen)
    g = torch.randn(case.T, case.B, case.n, generator=gen)
    torch.manual_seed(case.seed)
    weights = nn.Linear(case.n, case.n).state_dict()
    return x.to(case.device), g.to(case.device), weights


def unavailable(case: OnCase, provider: str, compile_max_t: int = COMPILE_MAX_T) -> Optional[str]:
    """None when ``provider`` can run ``case``, else the reason (written in the row)."""
    return provider_unavailable(provider, PROVIDERS, case.T, compile_max_t, _spikingjelly_unavailable)


def _snntorch_forward(lin: nn.Linear, beta: float) -> Callable[[Tensor], Tensor]:
    import snntorch as snn

    neuron = snn.Leaky(beta=beta).to(lin.weight.device)

    def forward(x: Tensor) -> Tensor:
        currents = lin(x).unbind(0)  # the Linear once over the sequence: its input is known up front
        mem = torch.zeros_like(currents[0])
        spikes = []
        for cur in currents:
            spk, mem = neuron(cur, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return forward


def build_forward(case: OnCase, provider: str, lin: nn.Linear) -> Callable[[Tensor], Tensor]:
    """``forward(x: [T, B, n]) -> [T, B, n]`` of ``provider`` through ``lin``: the output spikes
    (the Linear's output for ``linear-only``)."""
    base = provider.removesuffix("-compiled")
    if base == "fused":
        return lambda x: Fn.leaky(lin(x), case.beta)[0]
    if base == "fused-linear-leaky":
        return lambda x: Fn.linear_leaky(x, lin.weight, lin.bias, case.beta)[0]
    if base == "spikingjelly":
        from spikingjelly.activation_based import functional

        node = spikingjelly_lif(case.beta).to(case.device)

        def forward(x: Tensor) -> Tensor:
            functional.reset_net(node)
            return node(lin(x))

        return forward
    if base == "snntorch":
        return _snntorch_forward(lin, case.beta)
    if base == "linear-only":
        return lin
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def make_step(case: OnCase, provider: str, data: Optional[tuple[Tensor, Tensor, dict]] = None,
              compile_backend: str = "inductor") -> tuple[Callable[[], Tensor], nn.Linear]:
    """``(step, lin)``: ``step()`` runs ``provider``'s forward and backward (``g`` into the
    spikes) and returns the spikes; ``lin`` is the provider's own Linear (its gradients are set
    to None at the start of each step, so a step allocates them as the benchmark's does)."""
    x, g, weights = data if data is not None else operands(case)
    # built on the device without an initialisation of its own (n=16,384: 268M weights), then
    # given the case's weights
    lin = torch.nn.utils.skip_init(nn.Linear, case.n, case.n, device=case.device)
    lin.load_state_dict(weights)
    forward = build_forward(case, provider, lin)
    if execution_mode(provider) == "compiled":
        forward = torch.compile(forward, backend=compile_backend)

    def step() -> Tensor:
        lin.weight.grad = lin.bias.grad = None
        out = forward(x)
        out.backward(g)
        return out.detach()

    return step, lin


def _peak_bytes(step: Callable[[], Tensor], resident: int, device: torch.device) -> Optional[int]:
    """CUDA: the most memory one step holds as if run alone, ``max_memory_allocated`` during it
    above what was allocated before it, plus ``resident`` (its input, upstream gradient and
    parameters). None elsewhere."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before + resident


def _nbytes(*tensors: Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _backend_name(case: OnCase, provider: str, x: Tensor) -> Optional[str]:
    if not provider.startswith("fused"):
        return None
    chosen = resolve_backend("auto", x)
    if provider.startswith("fused-linear-leaky") and chosen.linear_lif_reason(x) is not None:
        return "reference"  # what linear_leaky falls back to where the device's backend lacks the op
    return chosen.name


def run_case(case: OnCase, providers=PROVIDERS, repeats: int = 5, warmup: int = 1,
             compile_max_t: int = COMPILE_MAX_T, compile_backend: str = "inductor") -> list[dict]:
    """Interleaved timing of ``providers`` on ``case``: one row each, with a skipped provider's
    reason (the compile budget, SpikingJelly missing, or CUDA running out of memory at its first
    step). ``compile_s``: what a compiled provider's first call took beyond a steady step."""
    skipped = {p: r for p in providers if (r := unavailable(case, p, compile_max_t)) is not None}
    if any(execution_mode(p) == "compiled" and p not in skipped for p in providers):
        torch._dynamo.reset()  # once per case: see fusedsnn.bench.training.compile_fresh
    data = operands(case)
    x, g, _ = data
    steps, lins, compile_s = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in providers:
            if p in skipped:
                continue
            try:
                step, lin = make_step(case, p, data, compile_backend)
                start = _now(case.device)
                step()  # the first call: compiles a compiled provider
                compile_s[p] = _now(case.device) - start if execution_mode(p) == "compiled" else None
            except torch.OutOfMemoryError as err:
                skipped[p] = f"out of memory at the first step: {str(err).splitlines()[0]}"
                _free(case.device)
                continue
            steps[p], lins[p] = step, lin
        samples, spike_rate = interleaved(steps, case.device, warmup, repeats) if steps else ({}, None)
        peaks = {p: _peak_bytes(step, _nbytes(x, g, lins[p].weight, lins[p].bias), case.device)
                 for p, step in steps.items()}
    rows = []
    for p in providers:
        row = {"network": "Linear+LIF", "n": case.n, "T": case.T, "B": case.B, "device": str(case.device),
               "provider": p, "execution_mode": execution_mode(p), "backend": _backend_name(case, p, x)}
        if p in skipped:
            row.update(median_s=None, q20_s=None, q80_s=None, repeats=0, compile_s=None, peak_memory_bytes=None,
                       skipped=skipped[p])
        else:
            median, q20, q80 = sample_quantiles(samples[p])
            # a compiled provider's compile time: its first call beyond a steady step
            first = compile_s[p]
            row.update(median_s=median, q20_s=q20, q80_s=q80, repeats=len(samples[p]),
                       compile_s=None if first is None else max(0.0, first - median),
                       peak_memory_bytes=peaks[p], output_spike_rate=spike_rate if p != "linear-only" else None)
        rows.append(row)
    _add_comparisons(rows)
    return rows


def _now(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _add_comparisons(rows: list[dict]) -> None:
    """Speed-ups within each mode (linear-only is neither a baseline nor compared); what the
    neuron adds to the Linear's time and the speed-up over SpikingJelly (eager rows: the Linear
    and SpikingJelly run eagerly); the targets on the fused rows."""
    key = lambda r: (r["n"], r["T"], r["B"])  # noqa: E731
    contender = lambda r: r["provider"] != "linear-only"  # noqa: E731
    add_speedups(rows, key, baseline=lambda r: contender(r) and not r["provider"].startswith("fused"),
                 compared=contender)
    timed = {(key(r), r["provider"]): r["median_s"] for r in rows if r.get("median_s")}
    for r in rows:
        linear, sj = timed.get((key(r), "linear-only")), timed.get((key(r), "spikingjelly"))
        eager = r["execution_mode"] == "eager" and r.get("median_s") and contender(r)
        r["neuron_overhead_vs_linear"] = r["median_s"] / linear - 1 if eager and linear else None
        r["speedup_vs_spikingjelly"] = sj / r["median_s"] if eager and sj else None
        if r["provider"] in ("fused", "fused-linear-leaky"):
            r["target_neuron_overhead"] = TARGET_NEURON_OVERHEAD
            r["target_speedup_vs_spikingjelly"] = TARGET_SPEEDUP_VS_SPIKINGJELLY


def sizes(quick: bool, device: torch.device) -> list[tuple[int, int, int]]:
    """(n, T, B) of each case the section runs."""
    if device.type == "cuda":
        return CUDA_QUICK_SIZES if quick else CUDA_SIZES
    return CPU_QUICK_SIZES if quick else CPU_SIZES


def section_open_neuromorphic(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """``fusedsnn bench --sections open_neuromorphic``: :func:`sizes`; compiled providers skipped
    above ``--compile-max-t`` (default 25) steps, so at T=500 unless it is raised."""
    repeats = min(args.repeats, QUICK_MAX_REPEATS) if args.quick else args.repeats
    compile_max_t = getattr(args, "compile_max_t", None) or COMPILE_MAX_T
    rows = []
    for n, T, B in sizes(args.quick, device):
        progress(f"open_neuromorphic n={n} T={T} B={B}")
        rows += run_case(OnCase(n, T, B, device), repeats=repeats, warmup=1 if args.quick else 2,
                         compile_max_t=compile_max_t)
    return rows


def published_table(rows: list[dict]) -> str:
    """The published figures (n=16,384 on an RTX 4090) beside our CUDA rows of the same n; empty
    without CUDA rows (a CPU or another size is no context for them)."""
    ours = [r for r in rows if str(r.get("device", "")).startswith("cuda") and r.get("median_s")]
    if not ours:
        return ""
    n = OPEN_NEUROMORPHIC["n"]
    lines = [f"published figures ({OPEN_NEUROMORPHIC_SOURCE}; {OPEN_NEUROMORPHIC['device']}, n={n:,}, "
             f"T={OPEN_NEUROMORPHIC['T']}, B={OPEN_NEUROMORPHIC['B']}, forward+backward, loss: output.sum()):"]
    for entry in OPEN_NEUROMORPHIC["results"]:
        memory = f", {entry['peak_memory_gb']} GB" if entry.get("peak_memory_gb") is not None else ""
        lines.append(f"  published: {entry['library']} {entry['seconds']} s{memory}")
    same_n = [r for r in ours if r["n"] == n]
    for r in same_n:
        memory = f", {r['peak_memory_bytes'] / 1e9:.2f} GB" if r.get("peak_memory_bytes") else ""
        lines.append(f"  measured here ({r['device']}): {r['provider']} {r['median_s']:.3g} s{memory}")
    if not same_n:
        lines.append(f"  (no row measured here at n={n:,})")
    return "\n".join(lines)
