"""``net3`` section: one training step of a 3-layer spiking network, 256-512-512-10, each
Linear followed by a Leaky neuron (beta 0.9, threshold 1, subtract reset, arctan surrogate:
snnTorch's defaults), on input spikes ``x: [T, B, 256]`` drawn once per case (Bernoulli, rate
0.2), labels ``y: [B]``. One step = forward, :func:`fusedsnn.population.ce_rate_loss` on the
output spikes (snnTorch's rate-coded cross entropy), backward, AdamW step. T=50, B=32
(``--quick`` on a CPU: T=8).

Providers, all starting from the same initial weights (one seeded draw, copied into each; scaled
so that every layer spikes, see :func:`operands`; each row gives the layers' spike rates):

- ``fused``: :class:`fusedsnn.bench.memory.MLP3`, the memory section's network (``nn.Linear``
  over the whole ``[T, B, F]``, then a fused :class:`fusedsnn.Leaky`), eager;
- ``fused-spike-products``: the same network with every Linear (each is fed spikes, the input
  too) allowed the host's spike products where :mod:`fusedsnn.memory.product_rule` finds them
  faster than BLAS (``MLP3(spike_products=True)``); the sums run in another order, so spikes
  can differ from ``fused`` where a membrane lies within rounding of the threshold; eager;
- ``snntorch``: the same Linear layers with ``snntorch.Leaky`` stepped over ``unbind(0)``, eager.
  The input is known up front, so the first Linear runs once over all ``T * B`` rows (what a
  careful user writes; every later layer needs the previous layer's spikes of the same step);
- ``spikingjelly``: SpikingJelly 2.0's multi-step ``LIFNode`` (``decay_input=False``, soft reset,
  ``ATan``; see :func:`fusedsnn.bench.neurons.spikingjelly_lif`) after each Linear over the
  sequence, eager; skipped with the reason where SpikingJelly is not importable. Its reset
  order differs from snnTorch's, so its spikes differ: only its speed is compared;
- ``fused-compiled``, ``snntorch-compiled``: the same forward and loss under ``torch.compile``
  (:func:`fusedsnn.bench.training.forward_loss_fn`, the one function for every provider; the
  backward runs what AOTAutograd compiled, the optimizer step stays eager), with the compile
  time in ``compile_s``. snnTorch's compiled graph unrolls the T-step loop (83 s of compile at
  T=50 on the 2-core development CPU), so the compiled providers are skipped, with the reason,
  above a compile budget: :data:`COMPILE_MAX_T` unless ``--compile-max-t`` says otherwise.
  ``--quick`` times eager only.

The providers run interleaved (one step of each per round); rows give the median step time with
its q20/q80, ``ms_per_step``, and the speed-up over the fastest baseline of the same execution mode.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .memory import MLP3
from .modes import add_speedups, base_provider, execution_mode
from .neurons import _spikingjelly_unavailable, provider_unavailable, spikingjelly_lif
from .timing import _sync, interleaved, sample_quantiles
from .training import forward_loss_fn, make_optimizer

Tensor = torch.Tensor

__all__ = ["Net3Case", "PROVIDERS", "COMPILE_MAX_T", "build_forward", "make_step", "run_case", "section_net3"]

PROVIDERS = ("fused", "fused-spike-products", "snntorch", "spikingjelly", "fused-compiled", "snntorch-compiled")
#: The section's own compile budget, generous on purpose: the full run's T=50 compiles
#: (snnTorch's stepped network took 83 s there); above it the compiled providers are skipped.
COMPILE_MAX_T = 50
#: (T, B) of the full run, and of --quick on a CPU (a GPU's quick run keeps the full size).
FULL_SIZE = (50, 32)
QUICK_CPU_SIZE = (8, 32)
NUM_CLASSES = 10
#: initial weights: normal, std WEIGHT_GAIN / sqrt(in_features) (see :func:`operands`)
WEIGHT_GAIN = 1.7


@dataclass(frozen=True)
class Net3Case:
    """``T`` steps of a batch of ``B``: input spikes ``[T, B, 256]`` at ``spike_rate``."""

    T: int
    B: int
    device: torch.device = torch.device("cpu")
    beta: float = 0.9
    spike_rate: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("T", "B"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.spike_rate <= 1.0:
            raise ValueError(f"spike_rate must be in [0, 1], got {self.spike_rate!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta!r}")


def operands(case: Net3Case) -> tuple[Tensor, Tensor, dict]:
    """``(x, y, weights)``: input spikes ``x: [T, B, 256]``, labels ``y: [B]`` and the initial
    weights (an :class:`MLP3` state_dict) every provider starts from; the same for the same case.

    Weights are normal with std ``WEIGHT_GAIN / sqrt(in_features)``, biases zero: with the default
    input about 12-19 % of each layer's neurons spike per step. (PyTorch's default Linear
    initialisation leaves the output layer silent on this input: its loss would still
    back-propagate through the surrogate, but no spike would carry anything forward.)"""
    gen = torch.Generator().manual_seed(case.seed)
    x = (torch.rand(case.T, case.B, MLP3.sizes[0], generator=gen) < case.spike_rate).float()
    y = torch.randint(0, NUM_CLASSES, (case.B,), generator=gen)
    model = MLP3(case.beta)
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * (WEIGHT_GAIN / fc.in_features ** 0.5))
            fc.bias.zero_()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return x.to(case.device), y.to(case.device), weights


def spike_rates(case: Net3Case, data: Optional[tuple[Tensor, Tensor, dict]] = None) -> list[float]:
    """Each layer's fraction of neurons spiking per step, fused forward from the initial weights."""
    x, _, weights = data if data is not None else operands(case)
    model, _ = build_forward(case, "fused", weights)
    rates, out = [], x
    with torch.no_grad():
        for fc, lif in zip(model.fcs, model.neurons):
            out = lif(fc(out))[0]
            rates.append(float(out.mean()))
    return rates


class SnnTorchNet3(nn.Module):
    """``model``'s Linear layers (shared) with snnTorch ``Leaky`` neurons stepped over time."""

    def __init__(self, model: MLP3) -> None:
        super().__init__()
        import snntorch as snn

        self.fcs = model.fcs
        self.neurons = nn.ModuleList(
            snn.Leaky(beta=n.beta.detach().clone(), threshold=n.threshold.detach().clone()) for n in model.neurons)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [T, B, 256]`` -> output ``(spk, mem)``, each ``[T, B, 10]``."""
        # The first layer's input is known up front: one product over all T * B rows.
        currents = self.fcs[0](x).unbind(0)
        # Each neuron's state is passed in and out, starting from fresh zeros (not from a
        # previous call's buffer), as snnTorch's tutorials step a Leaky with init_hidden=False.
        mems: list[Optional[Tensor]] = [None] * len(self.neurons)
        spikes, out_mems = [], []
        for cur in currents:
            for i, lif in enumerate(self.neurons):
                if i > 0:
                    cur = self.fcs[i](cur)
                if mems[i] is None:
                    mems[i] = torch.zeros_like(cur)
                cur, mems[i] = lif(cur, mems[i])
            spikes.append(cur)
            out_mems.append(mems[-1])
        return torch.stack(spikes), torch.stack(out_mems)


class SpikingJellyNet3(nn.Module):
    """``model``'s Linear layers (shared), each followed by SpikingJelly's multi-step LIFNode."""

    def __init__(self, model: MLP3, beta: float) -> None:
        super().__init__()
        self.fcs = model.fcs
        self.neurons = nn.ModuleList(spikingjelly_lif(beta) for _ in model.neurons)

    def forward(self, x: Tensor) -> tuple[Tensor]:
        """``x: [T, B, 256]`` -> ``(spk,)``, ``[T, B, 10]`` (the membrane is not kept)."""
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        cur = x
        for fc, lif in zip(self.fcs, self.neurons):
            cur = lif(fc(cur))
        return (cur,)


def unavailable(case: Net3Case, provider: str, compile_max_t: int = COMPILE_MAX_T) -> Optional[str]:
    """None when ``provider`` can run ``case``, else the reason (written in the row)."""
    return provider_unavailable(provider, PROVIDERS, case.T, compile_max_t, _spikingjelly_unavailable)


def build_forward(case: Net3Case, provider: str, weights: dict) -> tuple[nn.Module, nn.Module]:
    """``(model, forward)``: a fresh :class:`MLP3` holding ``weights`` (its parameters are what
    the provider trains) and the module ``provider`` runs it through (``forward(x)`` -> a tuple
    whose first element is the output spikes ``[T, B, 10]``)."""
    base = base_provider(provider)
    model = MLP3(case.beta, spike_products=base == "fused-spike-products")
    model.load_state_dict(weights)
    model = model.to(case.device)
    if base in ("fused", "fused-spike-products"):
        return model, model
    if base == "snntorch":
        return model, SnnTorchNet3(model).to(case.device)
    if base == "spikingjelly":
        return model, SpikingJellyNet3(model, case.beta).to(case.device)
    raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")


def make_step(case: Net3Case, provider: str, compile_backend: str = "inductor",
              data: Optional[tuple[Tensor, Tensor, dict]] = None) -> Callable[[], Tensor]:
    """One training step of ``provider`` on ``case`` (returns the loss, detached). A compiled
    provider is compiled at its first call; the caller resets Dynamo once per case (a reset
    between two providers of a case would make the first compile again)."""
    x, y, weights = data if data is not None else operands(case)
    model, forward = build_forward(case, provider, weights)
    forward_loss = forward_loss_fn(forward, NUM_CLASSES)
    if execution_mode(provider) == "compiled":
        forward_loss = torch.compile(forward_loss, backend=compile_backend)
    optimizer = make_optimizer(model.parameters(), case.device)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(x, y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _row(case: Net3Case, provider: str, rates: list[float]) -> dict:
    return {"network": "256-512-512-10", "T": case.T, "B": case.B, "device": str(case.device),
            "provider": provider, "execution_mode": execution_mode(provider), "input_spike_rate": case.spike_rate,
            "layer_spike_rates": rates}


def run_case(case: Net3Case, providers=PROVIDERS, repeats: int = 5, warmup: int = 1,
             compile_max_t: int = COMPILE_MAX_T, compile_backend: str = "inductor") -> list[dict]:
    """Interleaved timing of ``providers`` on ``case``: one row each, skipped providers with the
    reason. ``compile_s`` of a compiled provider: what its first calls (the warm-up, at least
    three) took beyond as many steady steps (the median)."""
    skipped = {p: r for p in providers if (r := unavailable(case, p, compile_max_t)) is not None}
    timed = [p for p in providers if p not in skipped]
    if any(execution_mode(p) == "compiled" for p in timed):
        torch._dynamo.reset()  # once per case: see fusedsnn.bench.training.compile_fresh
    data = operands(case)
    rates = spike_rates(case, data)
    first_calls: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {p: make_step(case, p, compile_backend, data) for p in timed}
        for p, step in steps.items():
            # a compiled provider's first calls compile (the second may compile again); timed apart
            first_calls[p] = []
            for _ in range(max(warmup, 3) if execution_mode(p) == "compiled" else warmup):
                start = time.perf_counter()
                step()
                _sync(case.device)
                first_calls[p].append(time.perf_counter() - start)
        samples, _ = interleaved(steps, case.device, 0, repeats) if steps else ({}, None)
    rows = []
    for p in providers:
        row = _row(case, p, rates)
        if p in skipped:
            row.update(median_s=None, q20_s=None, q80_s=None, ms_per_step=None, repeats=0, compile_s=None,
                       skipped=skipped[p])
        else:
            median, q20, q80 = sample_quantiles(samples[p])
            compiled = execution_mode(p) == "compiled"
            row.update(median_s=median, q20_s=q20, q80_s=q80, ms_per_step=1e3 * median, repeats=len(samples[p]),
                       compile_s=max(0.0, sum(first_calls[p]) - len(first_calls[p]) * median) if compiled else None)
        rows.append(row)
    add_speedups(rows, key=lambda r: (r["network"], r["T"], r["B"]))
    return rows


def section_net3(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """``fusedsnn bench --sections net3``: :data:`FULL_SIZE`, or :data:`QUICK_CPU_SIZE` in
    ``--quick`` on a CPU; eager providers in ``--quick``, all in a full run."""
    T, B = QUICK_CPU_SIZE if args.quick and device.type == "cpu" else FULL_SIZE
    providers = [p for p in PROVIDERS if not (args.quick and execution_mode(p) == "compiled")]
    progress(f"net3 T={T} B={B}")
    return run_case(Net3Case(T, B, device), providers, repeats=args.repeats, warmup=1 if args.quick else 2,
                    compile_max_t=getattr(args, "compile_max_t", None) or COMPILE_MAX_T)
