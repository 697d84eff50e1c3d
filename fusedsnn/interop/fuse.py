"""Convert a whole snnTorch ``nn.Sequential`` into a sequence model built on fused neurons.

snnTorch's idiom: stateless layers interleaved with ``init_hidden=True`` neurons (the last often
``output=True``), run step by step::

    utils.reset(net)
    out = [net(x[t]) for t in range(T)]

:func:`fuse` returns a module that takes ``x: [T, B, ...]`` and returns what that loop stacks:
the last module's output per step, stacked over time (a tuple ``(spk, mem)`` or
``(spk, syn, mem)`` when the last neuron has ``output=True``). Stateless layers run once over
all ``T * B`` samples; each neuron runs once over the whole sequence.

A ``Linear`` whose input comes from a neuron (directly, or through layers that keep spikes
spikes: :data:`SPIKES_KEPT_BY`) runs through :func:`fusedsnn.memory.linear_after_spikes`: on the
CPU it may take the spike products where their measured rule says they are faster. Off by
default, because the fused model promises snnTorch's spikes bit for bit and the products sum in
another order than BLAS; ``fuse(model, spike_products=True)``, a layer's ``spike_product``
attribute or the global ``fusedsnn.memory.spike_products("on")`` turn them on.
"""

from __future__ import annotations

import copy
from typing import Optional

from torch import nn

from ..memory.spike_layers import linear_after_spikes
from .snntorch import from_snntorch

# Layers whose output for a sample depends only on that sample (per-step application equals
# one application over T * B samples). Dropout is per element too, but its random mask differs
# from snnTorch's draw for draw, so training-mode parity is statistical, not exact.
STATELESS = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.ReLU, nn.LeakyReLU, nn.Sigmoid,
    nn.Tanh, nn.Dropout, nn.Dropout2d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d,
)

#: Layers whose output is binary spikes when their input is (they move or select values, or pick
#: the largest): a Linear after a neuron and any of these is still fed by spikes.
SPIKES_KEPT_BY = (nn.Flatten, nn.Unflatten, nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                  nn.AdaptiveMaxPool2d)


class FusedSequential(nn.Module):
    """Sequence model produced by :func:`fuse`. ``forward(x: [T, B, ...])``.

    ``stages``: ``(kind, module)`` pairs, kind ``"neuron"`` or ``"layer"``, in order. ``names``:
    each stage's child name (default ``"0"``, ``"1"``, ...); :func:`fuse` passes the
    ``nn.Sequential``'s own, so the state_dict has the snnTorch model's keys and loads strictly
    into it and back, as the neurons' state_dicts do. ``stages`` reads the modules in order.
    A ``Linear`` stage fed by a neuron's spikes runs through
    :func:`fusedsnn.memory.linear_after_spikes` (see the module docstring).
    """

    def __init__(self, stages: list[tuple[str, nn.Module]], output_states: bool,
                 names: Optional[list[str]] = None) -> None:
        super().__init__()
        names = [str(i) for i in range(len(stages))] if names is None else [str(n) for n in names]
        if len(names) != len(stages) or len(set(names)) != len(names):
            raise ValueError(f"names must be {len(stages)} distinct child names, one per stage, got {names!r}")
        self.kinds = [kind for kind, _ in stages]
        self.names = names
        for name, (_, module) in zip(names, stages):
            self.add_module(name, module)
        self.output_states = output_states
        self._register_load_state_dict_pre_hook(self._rename_old_keys)

    @property
    def stages(self) -> list[nn.Module]:
        return [self._modules[name] for name in self.names]

    def _rename_old_keys(self, state_dict, prefix, *args) -> None:
        # state_dicts saved before the stages took their Sequential names had "stages.<i>." keys
        old = prefix + "stages."
        for key in [k for k in state_dict if k.startswith(old)]:
            index, _, rest = key[len(old):].partition(".")
            if index.isdigit() and int(index) < len(self.names):
                state_dict[f"{prefix}{self.names[int(index)]}.{rest}"] = state_dict.pop(key)

    def forward(self, x):
        if x.dim() < 2:
            raise ValueError(f"x must be [T, B, ...] (time first), got shape {tuple(x.shape)}")
        out = x
        states = None
        spikes = False  # whether ``out`` is a neuron's spikes (kept so by the layers since)
        for kind, module in zip(self.kinds, self.stages):
            if kind == "neuron":
                states = module(out)
                out = states[0]
                spikes = True
            else:
                T, B = out.shape[:2]
                flat = out.reshape(T * B, *out.shape[2:])
                y = linear_after_spikes(module, flat) if spikes else module(flat)
                out = y.reshape(T, B, *y.shape[1:])
                states = None
                spikes = spikes and isinstance(module, SPIKES_KEPT_BY)
        if self.output_states and states is not None:
            return states
        return out


def fuse(model: nn.Sequential, backend: str = "auto", spike_products: Optional[bool] = None) -> FusedSequential:
    """Fused twin of an snnTorch ``nn.Sequential``. Parameters are copied, not shared: an optimizer
    built on ``model.parameters()`` trains nothing in the twin (build it on the twin's; the
    state_dicts load into each other strictly, under the Sequential's keys). Unsupported layers raise
    ``TypeError`` naming them; unsupported neuron options raise ``NotImplementedError``.

    ``spike_products``: the ``spike_product`` attribute of every copied ``nn.Linear`` (None:
    the global mode of :mod:`fusedsnn.memory.product_rule`, which keeps BLAS and so snnTorch's
    spikes bit for bit by default; True: the Linear layers fed by spikes take the spike products
    where the measured rule says they are faster, results then equal to float rounding)."""
    import snntorch

    if not isinstance(model, nn.Sequential):
        raise TypeError(f"fuse expects an nn.Sequential in snnTorch's idiom, got {type(model).__name__}")
    if spike_products is not None and not isinstance(spike_products, bool):
        raise ValueError(f"spike_products must be None, True or False, got {spike_products!r}")
    neuron_types = (snntorch.Leaky, snntorch.Synaptic, snntorch.RLeaky, snntorch.RSynaptic)
    stages: list[tuple[str, nn.Module]] = []
    names: list[str] = []
    output_states = False
    children = list(model.named_children())
    for position, (name, module) in enumerate(children):
        names.append(name)
        if type(module) in neuron_types:
            if not module.init_hidden:
                raise ValueError(
                    f"layer {name!r} ({type(module).__name__}) has init_hidden=False; in an nn.Sequential "
                    "snnTorch neurons must keep their state (init_hidden=True)"
                )
            if module.output and position != len(children) - 1:
                raise ValueError(f"layer {name!r} has output=True but is not the last layer")
            stages.append(("neuron", from_snntorch(module, backend=backend, _in_sequential=True)))
            output_states = bool(module.output)
        elif isinstance(module, snntorch.SpikingNeuron):
            raise TypeError(f"layer {name!r}: {type(module).__name__} has no fused twin "
                            "(supported: Leaky, Synaptic, RLeaky, RSynaptic)")
        elif isinstance(module, STATELESS):
            layer = copy.deepcopy(module)
            if spike_products is not None and type(layer) is nn.Linear:
                layer.spike_product = spike_products
            stages.append(("layer", layer))
        else:
            raise TypeError(
                f"layer {name!r}: {type(module).__name__} is not supported by fuse (it must act on each "
                f"sample independently; supported: {', '.join(t.__name__ for t in STATELESS)})"
            )
    return FusedSequential(stages, output_states, names)
