"""NIR interop: export fused models to the Neuromorphic Intermediate Representation and import
NIR graphs as fused models (``pip install "fusedsnn[nir]"``).

:func:`export_to_nir` and :func:`import_from_nir` carry snnTorch 1.0.0's names and conventions:
a NIR graph describes continuous-time neurons, and snnTorch reads it with a fixed time step
``dt = 1e-4`` (:data:`DT`):

* ``LIF``: ``beta = 1 - dt / tau``; the input gain ``r * dt / tau`` should be 1 (``r = tau / dt``);
  where it is not, the importer divides the threshold by it instead of scaling the input.
* ``CubaLIF``: ``alpha = 1 - dt / tau_syn``, ``beta = 1 - dt / tau_mem``, ``r = tau_mem / dt``;
  the synaptic input gain ``w_in * dt / tau_syn`` divides the threshold the same way.
* ``v_leak`` must be 0. A spike is ``v > v_threshold``, and NIR resets the membrane to
  ``v_reset`` in the same step; we always write ``v_reset = 0`` and refuse other values on import
  (snnTorch's importer ignores ``v_reset``).

What each fused reset exports to (NIR has no subtract reset and resets in the spiking step):

=====================================================  ===========================================
fused neuron                                           NIR
=====================================================  ===========================================
any neuron, ``reset_mechanism="zero"``,                exact (``v_reset = 0``)
``reset_delay=False`` (not ``RSynaptic``)
``Leaky``, ``reset_mechanism="zero"``,                 same spikes; the membrane output differs
``reset_delay=True``                                   only in spiking steps (NIR reports 0 there)
``Synaptic``/``RLeaky``, zero reset, ``reset_delay``   refused: the delayed reset also drops the
``=True``; every ``RSynaptic`` (snnTorch 1.0.0         next step's input, NIR does not
ignores its ``reset_delay=False``)
``reset_mechanism="subtract"`` or ``"none"``           refused: NIR would reset to 0
=====================================================  ===========================================

``allow_dynamics_change=True`` exports the refused cases anyway as the zero reset NIR runs,
with a warning naming each layer. Graded spikes (``graded_spikes_factor != 1``), ``beta`` or
``alpha`` of 1 (an infinite time constant) and Conv2d-shaped recurrence are refused.

Import builds a :class:`fusedsnn.FusedSequential` (``x: [T, B, *input]``) of fused layers
configured as snnTorch's ``import_from_nir`` configures its neurons (``reset_mechanism="zero"``,
``reset_delay=False``), so both give the same spikes. A recurrent neuron (a ``LIF``/``CubaLIF``
with an ``Affine``/``Linear`` feedback edge, nested as snnTorch exports it or flat) receives
the sum of its incoming edges, ``x[t] + W @ spk[t-1]``, as nirtorch executes it; a diagonal
``Linear`` feedback on a ``LIF`` becomes a fused ``RLeaky(all_to_all=False)`` (the same numbers,
because a neuron that spiked restarts from 0), anything else a :class:`SummedFeedbackNeuron`.

Round trips and other tools, as measured in tests/interop/test_nir.py:

* fused -> NIR -> fused gives identical spikes and states for the exact resets above, except
  all-to-all recurrence (and RSynaptic): NIR sums the feedback into the input before the leak, the
  fused layer adds it after, so states can differ in the last bit. An all-to-all recurrent bias
  is moved onto the Affine feeding the neuron, since nirtorch starts a feedback edge at 0.
* NIR has no max pooling, so ``nn.MaxPool2d`` (the study's CSNN) is refused; ``nn.AvgPool2d``
  exports.
* snnTorch 1.0.0's importer reads a per-sample ``Flatten(start_dim=0)`` as ``nn.Flatten(0)``,
  which also flattens the batch: its networks with a Flatten run one sample at a time. It
  rewires a flat recurrent cycle so that the input also passes the feedback weight; we export
  the nested sub-graph (which it runs as NIR means) and import flat cycles as NIR means them.
* Node names are ``L<position>.<module path>``: ``nir.read`` returns nodes in name order, and
  nirtorch 2.6 fails on a recurrent sub-graph listed before its input.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from .fuse import FusedSequential
from ..layers import Leaky, RLeaky, RSynaptic, Synaptic

Tensor = torch.Tensor

__all__ = ["export_to_nir", "import_from_nir", "SummedFeedbackNeuron", "DT"]

#: The time step snnTorch 1.0.0 assumes when it maps NIR time constants to decay rates.
DT = 1e-4

_NEURONS = (Leaky, Synaptic, RLeaky, RSynaptic)
_SKIPPED = (nn.Identity, nn.Dropout)  # no NIR node: identity at inference


def _require_nir():
    try:
        import nir  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise ImportError(
            "NIR interop needs the 'nir' package: install the extra with pip install \"fusedsnn[nir]\""
        ) from err
    return nir


class SummedFeedbackNeuron(nn.Module):
    """A fused neuron fed ``x[t] + recurrent(spk[t-1])``: NIR's recurrent sub-graph as nirtorch
    (and so snnTorch's importer) runs it, the feedback starting from 0 at the first step.

    ``forward(x: [T, B, F])`` -> the neuron's states, each ``[T, B, F]`` (``(spk, mem)`` or
    ``(spk, syn, mem)``). Each step is one fused one-step call, as for all-to-all recurrence.
    """

    def __init__(self, neuron: Union[Leaky, Synaptic], recurrent: nn.Linear) -> None:
        super().__init__()
        if type(neuron) not in (Leaky, Synaptic):
            raise TypeError(f"neuron must be a fused Leaky or Synaptic, got {type(neuron).__name__}")
        self.neuron = neuron
        self.recurrent = recurrent

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"x must be [T, B, features], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        synaptic = isinstance(self.neuron, Synaptic)
        mem = syn = spk = None
        steps = []
        for t in range(x.shape[0]):
            inp = x[t] if spk is None else x[t] + self.recurrent(spk)
            if synaptic:
                spk_t, syn_t, mem_t = self.neuron(inp.unsqueeze(0), syn=syn, mem=mem)
                syn = syn_t[0]
            else:
                spk_t, mem_t = self.neuron(inp.unsqueeze(0), mem=mem)
            spk, mem = spk_t[0], mem_t[0]
            steps.append((spk_t[0], syn_t[0], mem_t[0]) if synaptic else (spk_t[0], mem_t[0]))
        if not steps:
            empty = x.new_empty(x.shape)
            return (empty,) * (3 if synaptic else 2)
        return tuple(torch.stack(parts) for parts in zip(*steps))


# ----------------------------------------------------------------------------------------------
# export


class _Call:
    """One call of a leaf module during the traced forward."""

    def __init__(self, name: str, module: nn.Module, inp: Tensor, out: Any) -> None:
        self.name = name
        self.module = module
        self.inp = inp
        self.out = out[0] if isinstance(out, tuple) else out  # spikes for neurons


def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, (*_NEURONS, SummedFeedbackNeuron)) or not any(True for _ in module.children())


def _trace(model: nn.Module, sample_data: Tensor) -> tuple[list[_Call], Any]:
    names = {id(m): (name or type(m).__name__.lower()) for name, m in model.named_modules()}
    calls: list[_Call] = []
    depth = [0]
    handles = []

    def pre(module, args):
        depth[0] += 1

    def post(module, args, out):
        depth[0] -= 1
        if depth[0] == 0:
            inp = args[0] if args else None
            calls.append(_Call(names[id(module)], module, inp, out))

    for module in model.modules():
        if _is_leaf(module):
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample_data)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return calls, out


def _same_data(upstream: Tensor, downstream: Tensor) -> bool:
    """Whether ``downstream`` is ``upstream`` reshaped, or expanded over time (static input)."""
    if not isinstance(upstream, torch.Tensor) or not isinstance(downstream, torch.Tensor):
        return False
    a, b = upstream.detach(), downstream.detach()
    if a.numel() == b.numel():
        return torch.equal(a.reshape(-1), b.reshape(-1))
    if a.numel() > 0 and b.numel() % a.numel() == 0:  # repeated over time steps, time first
        repeats = b.numel() // a.numel()
        return torch.equal(b.reshape(repeats, -1), a.reshape(1, -1).expand(repeats, -1))
    return False


def _features_in(call: _Call) -> tuple[int, ...]:
    m, x = call.module, call.inp
    if isinstance(m, (*_NEURONS, SummedFeedbackNeuron)):
        return tuple(x.shape[2:])
    if isinstance(m, nn.Linear):
        return (m.in_features,)
    if isinstance(m, nn.Flatten):
        return tuple(x.shape[m.start_dim:])
    return tuple(x.shape[-3:])  # Conv2d, pooling


def _features_out(call: _Call) -> tuple[int, ...]:
    m, y = call.module, call.out
    if isinstance(m, (*_NEURONS, SummedFeedbackNeuron)):
        return tuple(y.shape[2:])
    if isinstance(m, nn.Linear):
        return (m.out_features,)
    if isinstance(m, nn.Flatten):
        return (int(np.prod(_features_in(call))),)
    return tuple(y.shape[-3:])


def _np(t: Tensor, dtype=None) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return a.astype(dtype) if dtype is not None else a.copy()


def _decay_time_constant(rate: Tensor, name: str, layer: str, shape: tuple[int, ...]) -> np.ndarray:
    """``tau = dt / (1 - rate)`` in float64, so that ``1 - dt / tau`` rounds back to the float32 rate."""
    clamped = rate.detach().float().clamp(0, 1).expand(shape)  # the dynamics use the clamped value
    if bool((clamped >= 1).any()):
        raise ValueError(
            f"layer {layer!r}: {name} = 1 has no NIR time constant (tau = dt / (1 - {name}) is infinite); "
            f"use {name} < 1 to export"
        )
    value = _np(clamped, np.float64)
    tau = DT / (1.0 - value)
    back = torch.as_tensor(1 - (DT / tau)).to(torch.float32)
    if not torch.equal(back, clamped.cpu()):
        worst = float((back - clamped.cpu()).abs().max())
        warnings.warn(
            f"layer {layer!r}: {name} does not survive the NIR time-constant round trip exactly "
            f"(largest change {worst:.3g}); the exported dynamics use the rounded value", UserWarning,
            stacklevel=4,
        )
    return tau


def _reset_check(module: nn.Module, layer: str, allow: bool) -> None:
    kind = type(module).__name__
    mech, delay = module.reset_mechanism, module.reset_delay
    if mech != "zero":
        why = (f"NIR has no {mech!r} reset: its neurons reset to v_reset (0) in the spiking step, which "
               "changes the dynamics")
    elif isinstance(module, RSynaptic):
        why = ("snnTorch 1.0.0's RSynaptic (and so its fused twin) always resets with a delay that also "
               "drops the next step's input; NIR resets in the spiking step")
    elif delay and not isinstance(module, Leaky):
        why = (f"{kind}(reset_delay=True) zeroes the membrane one step late and drops that step's input; "
               "NIR resets in the spiking step (export reset_delay=False for the same dynamics)")
    else:
        return
    _dynamics_change(
        f"layer {layer!r} ({kind}, reset_mechanism={mech!r}, reset_delay={delay})", why,
        "use reset_mechanism='zero', reset_delay=False", "exported with NIR's immediate zero reset", allow,
    )


def _dynamics_change(what: str, why: str, exact_alternative: str, instead: str, allow: bool) -> None:
    """Refuse an export that changes the dynamics, or (``allow_dynamics_change``) warn about it."""
    if not allow:
        raise ValueError(
            f"{what} cannot be exported exactly: {why}. To export exactly, {exact_alternative}; or pass "
            "allow_dynamics_change=True to export it anyway"
        )
    warnings.warn(f"{what} is {instead}: {why}", UserWarning, stacklevel=5)


def _neuron_node(nir, module: nn.Module, layer: str, shape: tuple[int, ...], allow: bool):
    """The LIF / CubaLIF node of a fused neuron with per-neuron arrays of ``shape``."""
    _reset_check(module, layer, allow)
    gsf = float(module.graded_spikes_factor)
    if gsf != 1.0:
        raise ValueError(f"layer {layer!r}: graded_spikes_factor={gsf} cannot be exported (NIR spikes are 1)")
    thr = _np(module.threshold.detach().float().expand(shape), np.float64)
    tau_mem = _decay_time_constant(module.beta, "beta", layer, shape)
    zeros = np.zeros(shape, dtype=np.float64)
    if isinstance(module, (Synaptic, RSynaptic)):
        tau_syn = _decay_time_constant(module.alpha, "alpha", layer, shape)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=zeros,
                           v_threshold=thr, v_reset=zeros.copy(), w_in=tau_syn / DT)
    return nir.LIF(tau=tau_mem, r=tau_mem / DT, v_leak=zeros, v_threshold=thr, v_reset=zeros.copy())


def _recurrent_node(nir, module: nn.Module, layer: str, shape: tuple[int, ...], allow: bool,
                    bias_folded: bool = False):
    """The nested sub-graph ``input -> neuron <-> w_rec, neuron -> output`` snnTorch exports.

    ``bias_folded``: the all-to-all recurrent bias was added to the preceding Affine node, so
    the feedback is written as a bias-free Linear (see :func:`export_to_nir`).
    """
    if len(shape) != 1:
        raise ValueError(
            f"layer {layer!r}: recurrent neurons with features {shape} cannot be exported; NIR's "
            "Linear feedback acts on vectors (flatten before the recurrent neuron)"
        )
    n = shape[0]
    if isinstance(module, SummedFeedbackNeuron):
        neuron_node = _neuron_node(nir, module.neuron, layer, shape, allow)
        rec = module.recurrent
    else:
        neuron_node = _neuron_node(nir, module, layer, shape, allow)
        rec = module.recurrent if module.all_to_all else None
    if rec is None:
        w_rec = nir.Linear(weight=np.diag(_np(module.V.detach().float().expand(shape))))
    else:
        if not bias_folded and _has_bias(rec) and not isinstance(module, SummedFeedbackNeuron):
            _dynamics_change(
                f"layer {layer!r} (recurrent bias)",
                "NIR executors (nirtorch, so snnTorch's importer) start the feedback edge at 0, so the bias "
                "is missing at the first step, where the fused layer adds it; it can move onto the input "
                "only when an nn.Linear feeds the neuron",
                "feed the neuron from an nn.Linear or zero the recurrent bias", "exported with its bias", allow,
            )
        weight = _np(rec.weight)
        if rec.bias is None or bias_folded:
            w_rec = nir.Linear(weight=weight)
        else:
            w_rec = nir.Affine(weight=weight, bias=_np(rec.bias))
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])), "lif": neuron_node, "w_rec": w_rec,
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )


def _has_bias(layer: nn.Module) -> bool:
    return getattr(layer, "bias", None) is not None and bool(layer.bias.detach().ne(0).any())


def _fold_recurrent_bias(nir, nodes: dict, previous_name: str, module: nn.Module) -> bool:
    """Move an all-to-all recurrent bias onto the Affine/Linear node feeding the neuron.

    The fused layer adds ``recurrent(spk)`` from the first step on, bias included, but nirtorch
    starts a feedback edge at 0; the bias on the feed-forward edge is there at every step.
    """
    if not (isinstance(module, (RLeaky, RSynaptic)) and module.all_to_all and _has_bias(module.recurrent)):
        return False
    feeding = nodes.get(previous_name)
    if not isinstance(feeding, (nir.Affine, nir.Linear)):
        return False
    extra = _np(module.recurrent.bias)
    bias = extra if isinstance(feeding, nir.Linear) else (np.asarray(feeding.bias) + extra).astype(extra.dtype)
    nodes[previous_name] = nir.Affine(weight=feeding.weight, bias=bias)
    return True


def _layer_node(nir, call: _Call):
    m, name = call.module, call.name
    if isinstance(m, nn.Linear):
        weight = _np(m.weight)
        return nir.Linear(weight=weight) if m.bias is None else nir.Affine(weight=weight, bias=_np(m.bias))
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise ValueError(f"layer {name!r}: Conv2d padding_mode={m.padding_mode!r} has no NIR equivalent")
        bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=_np(m.weight).dtype)
        return nir.Conv2d(input_shape=tuple(call.inp.shape[-2:]), weight=_np(m.weight), stride=m.stride,
                          padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias)
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and m.padding != 0):
            raise ValueError(f"layer {name!r}: AvgPool2d with ceil_mode, divisor_override or "
                             "count_include_pad=False has no NIR equivalent")
        pair = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))  # noqa: E731
        stride = m.stride if m.stride is not None else m.kernel_size
        return nir.AvgPool2d(kernel_size=pair(m.kernel_size), stride=pair(stride), padding=pair(m.padding))
    if isinstance(m, nn.Flatten):
        if m.end_dim not in (-1, call.inp.dim() - 1):
            raise ValueError(f"layer {name!r}: only Flatten over all trailing dims (end_dim=-1) is exported")
        return nir.Flatten(input_type={"input": np.array(_features_in(call))}, start_dim=0, end_dim=-1)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)):
        raise ValueError(
            f"layer {name!r}: {type(m).__name__} cannot be exported: NIR 1.0 has no max pooling (its pooling "
            "nodes are AvgPool2d and SumPool2d); use nn.AvgPool2d (e.g. CSNN: model.pool = nn.AvgPool2d(2)) "
            "and retrain"
        )
    raise ValueError(
        f"layer {name!r}: {type(m).__name__} is not supported by export_to_nir (supported: fused Leaky, "
        "Synaptic, RLeaky, RSynaptic; nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten; Identity/Dropout "
        "are skipped)"
    )


def _node_name(position: int, path: str, layers: int) -> str:
    """``L<position>.<module path>``, so that name order is data-flow order (see the module notes)."""
    width = len(str(2 * layers + 1))
    return f"L{position:0{width}d}.{path}"


def export_to_nir(
    model: nn.Module,
    sample_data: Tensor,
    *,
    allow_dynamics_change: bool = False,
) -> "nir.NIRGraph":  # noqa: F821
    """The NIR graph of a fused model (``fs.fuse`` results, ``fs.DSNN`` / ``fs.CSNN``, ``nn.Sequential``
    and other modules whose layers run one after the other).

    ``sample_data``: an input the model itself takes (``[T, B, ...]``, or the static ``[B, ...]``
    batch of the study's models); the model runs once on it (eval mode, no grad) to record its
    layers and shapes. Data must flow as a chain through supported layers; flattening between
    layers (``spk.flatten(2)``) becomes a ``Flatten`` node. Neurons export as ``LIF`` / ``CubaLIF``
    (per-neuron arrays in float64 so that snnTorch's ``1 - dt / tau`` gives back the float32
    ``beta``/``alpha``; ``v_reset = 0``), recurrent ones as snnTorch's nested sub-graph with a
    ``Linear`` (diagonal for one-to-one ``V``) or ``Affine`` feedback. See the module docstring for
    the resets that cannot be exported exactly (``allow_dynamics_change``).

    Raises ``ValueError`` naming the first unsupported layer, or where the data flow is not a chain.
    """
    nir = _require_nir()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(sample_data, torch.Tensor):
        raise TypeError(f"sample_data must be a tensor the model takes, got {type(sample_data).__name__}")
    snn_neuron = next(((n, m) for n, m in model.named_modules()
                       if type(m).__module__.startswith("snntorch") and hasattr(m, "reset_mechanism")), None)
    if snn_neuron is not None:
        raise ValueError(
            f"layer {snn_neuron[0]!r}: {type(snn_neuron[1]).__name__} is an snnTorch neuron; convert the model "
            "with fs.fuse / fs.from_snntorch first, or use snnTorch's own exporter"
        )
    calls, out = _trace(model, sample_data)
    calls = [c for c in calls if not isinstance(c.module, _SKIPPED)]
    if not calls:
        raise ValueError("the model ran no layer on sample_data; nothing to export")
    for c in calls:  # name an unsupported layer before anything else can go wrong
        if not isinstance(c.module, (*_NEURONS, SummedFeedbackNeuron, nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten)):
            _layer_node(nir, c)

    nodes: dict[str, Any] = {}
    order: list[str] = []
    counts: dict[str, int] = {}
    previous: Optional[_Call] = None
    previous_shape: tuple[int, ...] = ()
    if not _same_data(sample_data, calls[0].inp):
        raise ValueError(f"the first layer {calls[0].name!r} does not receive sample_data itself")
    input_shape = _features_in(calls[0])
    nodes["input"] = nir.Input(input_type=np.array(input_shape))
    order.append("input")
    for call in calls:
        if previous is not None:
            if not _same_data(previous.out, call.inp):
                raise ValueError(
                    f"layer {call.name!r} does not receive the output of {previous.name!r}: export_to_nir "
                    "needs the layers to run as a chain (an operation outside the supported layers, a skip "
                    "connection or a branch cannot be exported)"
                )
        shape_in = _features_in(call)
        if previous is not None and shape_in != previous_shape:
            if len(shape_in) == 1 and int(np.prod(previous_shape)) == shape_in[0]:
                name = _node_name(len(order), f"{call.name}.flatten_input", len(calls))
                nodes[name] = nir.Flatten(input_type={"input": np.array(previous_shape)}, start_dim=0, end_dim=-1)
                order.append(name)
            else:
                raise ValueError(
                    f"layer {call.name!r} takes features {shape_in} but {previous.name!r} gives {previous_shape}; "
                    "only flattening between layers is exported"
                )
        k = counts.get(call.name, 0)
        counts[call.name] = k + 1
        name = _node_name(len(order), call.name if k == 0 else f"{call.name}.call{k}", len(calls))
        m = call.module
        if isinstance(m, (RLeaky, RSynaptic, SummedFeedbackNeuron)):
            folded = _fold_recurrent_bias(nir, nodes, order[-1], m)
            nodes[name] = _recurrent_node(nir, m, call.name, shape_in, allow_dynamics_change, folded)
        elif isinstance(m, (Leaky, Synaptic)):
            nodes[name] = _neuron_node(nir, m, call.name, shape_in, allow_dynamics_change)
        else:
            nodes[name] = _layer_node(nir, call)
        order.append(name)
        previous, previous_shape = call, _features_out(call)
    final = out[0] if isinstance(out, tuple) else out
    if not _same_data(previous.out, final):
        raise ValueError(
            f"the model's output is not what its last layer {previous.name!r} computes; export_to_nir "
            "exports chains whose output is the last layer's output (spikes for a neuron)"
        )
    nodes["output"] = nir.Output(output_type=np.array(previous_shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    graph = nir.NIRGraph(nodes=nodes, edges=edges)  # infers and checks every node's types
    return graph


# ----------------------------------------------------------------------------------------------
# import


def _check_zero(values: np.ndarray, what: str, name: str, why: str) -> None:
    if not np.allclose(values, 0.0):
        raise ValueError(f"node {name!r}: {what} must be 0 to import ({why})")


def _as_param(values: np.ndarray) -> Tensor:
    """float32 tensor of a NIR array, a scalar where all neurons agree (the values are the same)."""
    tensor = torch.as_tensor(np.asarray(values)).to(torch.float32)
    flat = tensor.reshape(-1)
    if flat.numel() > 0 and bool((flat == flat[0]).all()):
        return flat[0].clone()
    return tensor


def _neuron_params(node, name: str) -> dict:
    """beta / alpha / threshold of a LIF or CubaLIF node, computed as snnTorch 1.0.0's importer does."""
    nir = _require_nir()
    _check_zero(node.v_leak, "v_leak", name, "a leak voltage has no fused equivalent")
    _check_zero(node.v_reset, "v_reset", name,
                "fused neurons reset to 0; snnTorch's importer ignores v_reset, which changes the dynamics")
    if isinstance(node, nir.LIF):
        beta = 1 - (DT / node.tau)
        vthr = node.v_threshold
        w_scale = node.r * DT / node.tau
        if not np.allclose(w_scale, 1.0):
            # The input gain moves onto the threshold (exact with v_reset = 0). snnTorch divides by
            # one value, np.unique(w_scale)[0]; we do too where the gain is uniform, and divide
            # neuron by neuron where it is not (snnTorch would then misplace the other neurons).
            if np.allclose(w_scale, np.min(w_scale)):
                vthr = vthr / np.unique(w_scale)[0]
            else:
                warnings.warn(
                    f"node {name!r}: the LIF input gain r * dt / tau differs between neurons; fusedsnn "
                    "scales each neuron's threshold by its own gain, snnTorch's importer by the smallest",
                    UserWarning, stacklevel=3,
                )
                vthr = vthr / w_scale
        return {"beta": _as_param(beta), "threshold": _as_param(vthr)}
    if not np.allclose(node.r, node.tau_mem / DT):
        raise ValueError(f"node {name!r}: CubaLIF needs r = tau_mem / dt (dt = {DT}) to import, as in snnTorch")
    alpha = 1 - (DT / node.tau_syn)
    beta = 1 - (DT / node.tau_mem)
    vthr = node.v_threshold
    w_scale = node.w_in * (DT / node.tau_syn)
    if not np.allclose(w_scale, 1.0):
        vthr = vthr / w_scale
    return {"alpha": _as_param(alpha), "beta": _as_param(beta), "threshold": _as_param(vthr)}


def _linear(node, name: str) -> nn.Linear:
    nir = _require_nir()
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ValueError(f"node {name!r}: only 2-D {type(node).__name__} weights are supported, got {weight.shape}")
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=isinstance(node, nir.Affine))
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight).to(torch.float32))
        if isinstance(node, nir.Affine):
            layer.bias.copy_(torch.as_tensor(np.asarray(node.bias)).to(torch.float32))
    return layer


def _recurrent_module(neuron, feedback, name: str, backend: str) -> nn.Module:
    nir = _require_nir()
    params = _neuron_params(neuron, name)
    weight = np.asarray(feedback.weight)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1] or np.asarray(neuron.v_threshold).ndim != 1 \
            or weight.shape[0] != np.asarray(neuron.v_threshold).shape[0]:
        raise ValueError(f"node {name!r}: the feedback weight {weight.shape} must be square over the "
                         f"{np.asarray(neuron.v_threshold).shape} neurons")
    common = dict(reset_mechanism="zero", reset_delay=False, backend=backend)
    diagonal = np.array_equal(weight, np.diag(np.diag(weight)))
    no_bias = isinstance(feedback, nir.Linear) or not np.any(np.asarray(feedback.bias))
    positive_threshold = bool((params["threshold"] > 0).all())
    if isinstance(neuron, nir.LIF) and diagonal and no_bias and positive_threshold:
        # Same numbers as summing the edges: the feedback V is nonzero only after a spike, and then
        # the membrane restarts from 0 (below a positive threshold, so no further reset), so
        # (beta * 0 + x) + V == beta * 0 + (x + V).
        V = _as_param(np.diag(weight).copy())
        return RLeaky(all_to_all=False, V=V, **params, **common)
    cell = Leaky(**params, **common) if isinstance(neuron, nir.LIF) else Synaptic(**params, **common)
    return SummedFeedbackNeuron(cell, _linear(feedback, f"{name}.w_rec"))


def _parse_subgraph(graph, name: str):
    nir = _require_nir()
    nodes = graph.nodes
    neurons = [k for k, n in nodes.items() if isinstance(n, (nir.LIF, nir.CubaLIF))]
    weights = [k for k, n in nodes.items() if isinstance(n, (nir.Affine, nir.Linear))]
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(nodes) != 4 or not (len(neurons) == len(weights) == len(inputs) == len(outputs) == 1):
        raise ValueError(
            f"node {name!r}: a nested NIRGraph is imported only as a recurrent neuron (Input, LIF/CubaLIF, "
            f"Affine/Linear feedback, Output); it has {sorted(type(n).__name__ for n in nodes.values())}"
        )
    lif, w, i, o = neurons[0], weights[0], inputs[0], outputs[0]
    if set(map(tuple, graph.edges)) != {(i, lif), (lif, w), (w, lif), (lif, o)}:
        raise ValueError(f"node {name!r}: the recurrent sub-graph must be input -> neuron <-> feedback, "
                         f"neuron -> output; its edges are {graph.edges}")
    return nodes[lif], nodes[w]


def _layer_module(node, name: str) -> nn.Module:
    nir = _require_nir()
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _linear(node, name)
    if isinstance(node, nir.Conv2d):
        weight = np.asarray(node.weight)
        padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
        conv = nn.Conv2d(weight.shape[1] * int(node.groups), weight.shape[0], tuple(weight.shape[-2:]),
                         stride=tuple(int(s) for s in np.atleast_1d(node.stride)), padding=padding,
                         dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)), groups=int(node.groups))
        with torch.no_grad():
            conv.weight.copy_(torch.as_tensor(weight).to(torch.float32))
            conv.bias.copy_(torch.as_tensor(np.asarray(node.bias)).to(torch.float32))
        return conv
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        pair = lambda v: tuple(int(x) for x in np.broadcast_to(np.asarray(v), (2,)))  # noqa: E731
        kw = {"divisor_override": 1} if isinstance(node, nir.SumPool2d) else {}
        return nn.AvgPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding), **kw)
    if isinstance(node, nir.Flatten):
        # NIR dims are per sample; the fused model runs layers on [T * B, ...]
        end = int(node.end_dim)
        return nn.Flatten(int(node.start_dim) + 1 if int(node.start_dim) >= 0 else int(node.start_dim),
                          end + 1 if end >= 0 else end)
    raise ValueError(
        f"node {name!r}: NIR {type(node).__name__} is not supported by import_from_nir (supported: Input, "
        "Output, LIF, CubaLIF, Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, and a LIF/CubaLIF with "
        "an Affine/Linear feedback edge)"
    )


def import_from_nir(
    graph: Union["nir.NIRGraph", str, pathlib.Path],  # noqa: F821
    *,
    output_states: bool = False,
    backend: str = "auto",
) -> FusedSequential:
    """A fused model of a NIR graph (or a file written by ``nir.write``).

    Returns a :class:`fusedsnn.FusedSequential`: ``forward(x: [T, B, *input])`` -> the graph's
    output over time ``[T, B, *output]`` (spikes when the last node is a neuron; with
    ``output_states=True`` the last neuron's ``(spk, mem)`` / ``(spk, syn, mem)``). Neurons use
    snnTorch 1.0.0's importer conventions (module docstring), so the spikes are the ones snnTorch's
    ``import_from_nir`` gives. Weights are trainable ``nn.Linear`` / ``nn.Conv2d`` parameters;
    train the result like any fused model. The graph must be a chain from its Input to its Output
    (recurrent neurons included); anything else raises ``ValueError`` naming the node.
    """
    nir = _require_nir()
    if isinstance(graph, (str, pathlib.Path)):
        graph = nir.read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a path to a NIR file, got {type(graph).__name__}")
    nodes = graph.nodes
    edges = [tuple(e) for e in graph.edges]
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph must have one Input and one Output node, got inputs {inputs}, outputs {outputs}")
    # Flat recurrence: a LIF/CubaLIF <-> Affine/Linear cycle whose weight node touches nothing else.
    feedback_of: dict[str, str] = {}
    for a, b in edges:
        if (b, a) in edges and isinstance(nodes[a], (nir.LIF, nir.CubaLIF)) \
                and isinstance(nodes[b], (nir.Affine, nir.Linear)):
            touching = [e for e in edges if b in e]
            if len(touching) == 2:
                feedback_of[a] = b
    hidden = set(feedback_of.values())
    successors: dict[str, list[str]] = {}
    for a, b in edges:
        if a in hidden or b in hidden:
            continue
        successors.setdefault(a, []).append(b)
    stages: list[tuple[str, nn.Module]] = []
    current = inputs[0]
    visited = {current}
    while current != outputs[0]:
        nxt = successors.get(current, [])
        if len(nxt) != 1:
            raise ValueError(f"node {current!r} feeds {nxt}; import_from_nir imports chains (one successor per node)")
        current = nxt[0]
        if current in visited:
            raise ValueError(f"node {current!r} is reached twice; only recurrent neurons may form cycles")
        visited.add(current)
        if current == outputs[0]:
            break
        node = nodes[current]
        if current in feedback_of:
            stages.append(("neuron", _recurrent_module(node, nodes[feedback_of[current]], current, backend)))
        elif isinstance(node, nir.NIRGraph):
            neuron, feedback = _parse_subgraph(node, current)
            stages.append(("neuron", _recurrent_module(neuron, feedback, current, backend)))
        elif isinstance(node, nir.LIF):
            stages.append(("neuron", Leaky(**_neuron_params(node, current), reset_mechanism="zero",
                                           reset_delay=False, backend=backend)))
        elif isinstance(node, nir.CubaLIF):
            stages.append(("neuron", Synaptic(**_neuron_params(node, current), reset_mechanism="zero",
                                              reset_delay=False, backend=backend)))
        else:
            stages.append(("layer", _layer_module(node, current)))
    unused = set(nodes) - visited - hidden
    if unused:
        raise ValueError(f"nodes {sorted(unused)} are not on the path from the Input to the Output node")
    if not stages:
        raise ValueError("the graph has no node between its Input and Output")
    return FusedSequential(stages, output_states=output_states and stages[-1][0] == "neuron")

