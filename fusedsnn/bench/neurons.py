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

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .. import functional as Fn
from ..backends.registry import registered
from ..spec import bytes_per_neuron_step
# (COMPILE_MAX_T, EXECUTION_MODES and execution_mode are read from here too: the modes' home is .modes)
from .modes import COMPILE_MAX_T, EXECUTION_MODES, base_provider, compile_budget_reason, execution_mode  # noqa: F401
from .timing import _sync, measure, sample_quantiles
from .training import cuda_graph_step

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
    return [f"fused-{name}" for name, b in sorted(registered().items()) if b.unsupported(probe) is None]


def _fused_call(case: NeuronCase, backend: str) -> Callable[[torch.Tensor], tuple]:
    kw = dict(backend=backend)
    if case.kind == "Leaky":
        return lambda x: Fn.leaky(x, 0.9, 1.0, **kw)
    if case.kind == "Synaptic":
        return lambda x: Fn.synaptic(x, 0.8, 0.9, 1.0, **kw)
    if case.kind == "RLeaky":
        return lambda x: Fn.rleaky(x, 0.9, 0.5, 1.0, **kw)
    return lambda x: Fn.rsynaptic(x, 0.8, 0.9, 0.5, 1.0, **kw)


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


def _spikingjelly_unavailable() -> str | None:
    try:
        from spikingjelly.activation_based import neuron, surrogate  # noqa: F401
    except Exception as err:  # ImportError, or one of its own imports failing
        return f"spikingjelly.activation_based not importable ({type(err).__name__}: {err})"
    return None


def provider_unavailable(provider: str, providers: tuple[str, ...], num_steps: int, compile_max_t: int,
                         spikingjelly_unavailable: Callable[[], str | None] = _spikingjelly_unavailable) -> str | None:
    """For the sections that name their own ``providers`` (net3, open_neuromorphic): None when
    ``provider`` can run ``num_steps`` steps, else the reason written in its row (over the compile
    budget, SpikingJelly not importable). An unknown provider is a ValueError."""
    if provider not in providers:
        raise ValueError(f"provider must be one of {providers}, got {provider!r}")
    if execution_mode(provider) == "compiled" and (reason := compile_budget_reason(num_steps, compile_max_t)):
        return reason
    if provider == "spikingjelly":
        return spikingjelly_unavailable()
    return None


def baseline_providers(device: torch.device, dtype: torch.dtype, compiled: bool = True) -> list[str]:
    """The baselines offered on ``device``: snnTorch eager, compiled (``compiled``) and, on CUDA,
    graph-captured; SpikingJelly where importable (float32 only, as snnTorch)."""
    if dtype != torch.float32:
        return []
    out = ["snntorch"] + (["snntorch-compiled"] if compiled else [])
    if torch.device(device).type == "cuda":
        out.append("snntorch-graph")
    if _spikingjelly_unavailable() is None:
        out.append("spikingjelly")
    return out


def unavailable(case: NeuronCase, provider: str, mode: str, compile_max_t: int = COMPILE_MAX_T) -> str | None:
    """None when ``provider`` can run ``case`` in ``mode``, else the reason (written in the row)."""
    base, how = base_provider(provider), execution_mode(provider)
    if how == "graph" and case.device.type != "cuda":
        return f"CUDA graphs need a CUDA device; this run is on {case.device}"
    if how == "graph" and mode == "forward-grad-mode":
        return "a captured forward in grad mode leaves an autograd graph no replay can use"
    if how == "compiled" and (reason := compile_budget_reason(case.T, compile_max_t)) is not None:
        return reason
    if base == "spikingjelly":
        reason = _spikingjelly_unavailable()
        if reason is not None:
            return reason
        if case.kind != "Leaky":
            return f"SpikingJelly has no {case.kind} neuron of the same dynamics"
    return None


def spikingjelly_lif(beta: float = 0.9, threshold: float = 1.0, store_v_seq: bool = False) -> torch.nn.Module:
    """SpikingJelly 2.0's multi-step LIF as the nearest twin of Leaky(beta, subtract reset):
    ``LIFNode(tau, decay_input=False, v_reset=None, step_mode="m", surrogate ATan())`` with
    tau = 1 / (1 - beta) charges H[t] = beta * V[t-1] + x[t] as Leaky does; ``x: [T, B, ...]``.
    Where it cannot match ours (so its outputs differ; only its speed is compared):

    - ordering of threshold and reset: SpikingJelly fires on H[t] and resets within the step
      (V[t] = H[t] - S[t] * thr), so the subtracted threshold is decayed by beta in the next
      step; snnTorch's (and our) Leaky outputs the unreset membrane and subtracts thr undecayed
      at the next step (reset_delay);
    - it fires at H >= thr, snnTorch at mem > thr;
    - it has no Synaptic/RLeaky/RSynaptic equivalent (those cases are skipped).

    ``store_v_seq=True`` keeps the membrane sequence (``node.v_seq``). SpikingJelly 2.0's
    LIFNode has no ``backend`` argument: it chooses its own multi-step kernel
    (``functional.lif_multi_step``; Triton/CuPy on a GPU where importable, torch on a CPU).
    Reset its state (``node.reset()`` or ``functional.reset_net``) before each sequence.
    """
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(tau=1.0 / (1.0 - beta), decay_input=False, v_threshold=threshold, v_reset=None,
                          step_mode="m", surrogate_function=surrogate.ATan(), store_v_seq=store_v_seq)


def _spikingjelly_call(case: NeuronCase, beta: float = 0.9) -> Callable[[torch.Tensor], tuple]:
    """:func:`spikingjelly_lif` on ``case``, returning ``(spk, v_seq)``: the membrane sequence
    too, so its backward takes two upstream gradients (spikes and membrane) like every other
    provider's."""
    node = spikingjelly_lif(beta, store_v_seq=True).to(case.device)

    def run(x):
        node.reset()
        spk = node(x)
        return spk, node.v_seq

    return run


def _base_call(case: NeuronCase, provider: str) -> Callable[[torch.Tensor], tuple]:
    base = base_provider(provider)
    if base == "snntorch":
        return _snntorch_call(case)
    if base == "spikingjelly":
        return _spikingjelly_call(case)
    return _fused_call(case, base.removeprefix("fused-"))


def make_step(case: NeuronCase, provider: str, mode: str) -> Callable[[], None]:
    """The timed call of ``provider`` (``<base>[-compiled|-graph]``) on ``case`` in ``mode``.
    A compiled provider is compiled here, by its first call, and the step carries that
    call's time as ``step.compile_s``; a graph provider is captured here (CUDA)."""
    x = (torch.randn(case.T, case.B, case.N, device=case.device) * 1.5).to(case.dtype)
    call = _base_call(case, provider)
    how = execution_mode(provider)
    if how == "compiled":
        # Dynamo keys its cache on the code object, which every case's call shares: without a
        # reset, the cases' sizes, grad modes and backends pile up to its recompile limit, after
        # which the "compiled" provider silently runs eagerly. Each case compiles afresh.
        torch._dynamo.reset()
        call = torch.compile(call)
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
    compile_s = None
    if how == "compiled":
        start = time.perf_counter()
        step()  # compiles (forward, and the backward graph in forward+backward)
        _sync(case.device)
        compile_s = time.perf_counter() - start
    if how == "graph":
        step = cuda_graph_step(step, case.device)
    step.compile_s = compile_s
    return step


def kernel_bytes(case: NeuronCase, mode: str) -> int:
    """Bytes the fused kernels move for one call (forward, or forward then backward)."""
    spec = Fn.make_spec(
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
    reason = unavailable(case, provider, mode)
    if reason is not None:
        return _skipped_row(case, provider, mode, reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = make_step(case, provider, mode)
        timing = measure(step, case.device, warmup=warmup, repeats=repeats)
    row = {
        "neuron": case.kind, "T": case.T, "B": case.B, "N": case.N,
        "dtype": str(case.dtype).removeprefix("torch."), "device": str(case.device),
        "provider": provider, "mode": mode, "execution_mode": execution_mode(provider),
        "compile_s": step.compile_s, **timing.as_dict(),
        "neuron_steps_per_s": case.T * case.B * case.N / timing.median_s,
    }
    if provider.startswith("fused") and execution_mode(provider) == "eager":
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


def _skipped_row(case: NeuronCase, provider: str, mode: str, reason: str) -> dict:
    return {"neuron": case.kind, "T": case.T, "B": case.B, "N": case.N,
            "dtype": str(case.dtype).removeprefix("torch."), "device": str(case.device),
            "provider": provider, "mode": mode, "execution_mode": execution_mode(provider),
            "median_s": None, "q20_s": None, "q80_s": None, "repeats": 0, "skipped": reason}


def run_interleaved(case: NeuronCase, providers: list[str], mode: str, repeats: int = 10, warmup: int = 2,
                    copy_bytes_per_s: float | None = None, compile_max_t: int = COMPILE_MAX_T) -> list[dict]:
    """Time ``providers`` on one case, interleaved sample by sample (medians, q20/q80).
    Small cases batch several calls per sample so each sample is at least ~1 ms. A provider
    that cannot run the case (see :func:`unavailable`) gets a row with ``skipped``: the reason."""
    skipped = {p: r for p in providers if (r := unavailable(case, p, mode, compile_max_t)) is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {p: make_step(case, p, mode) for p in providers if p not in skipped}
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
        samples = {p: [] for p in steps}
        for _ in range(repeats):
            for p, step in steps.items():
                start = time.perf_counter()
                for _ in range(calls[p]):
                    step()
                _sync(case.device)
                samples[p].append((time.perf_counter() - start) / calls[p])
    rows = []
    for p in providers:
        if p in skipped:
            rows.append(_skipped_row(case, p, mode, skipped[p]))
            continue
        median, q20, q80 = sample_quantiles(samples[p])
        row = {
            "neuron": case.kind, "T": case.T, "B": case.B, "N": case.N,
            "dtype": str(case.dtype).removeprefix("torch."), "device": str(case.device),
            "provider": p, "mode": mode, "execution_mode": execution_mode(p), "compile_s": steps[p].compile_s,
            "median_s": median, "q20_s": q20, "q80_s": q80,
            "repeats": len(samples[p]), "calls_per_sample": calls[p], "peak_memory_bytes": None,
            "neuron_steps_per_s": case.T * case.B * case.N / median,
        }
        if p.startswith("fused") and execution_mode(p) == "eager":
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
