"""NeuroBench 2.x for fused models: :func:`neurobench_model` wraps one so that ``Benchmark``
reports the workload metrics its snnTorch twin gets from NeuroBench's ``SNNTorchModel``.

Why an adapter: ``SNNTorchModel`` steps the network one time step at a time over ``[B, T, ...]``
data and reads its metrics from hooks on ``snn.SpikingNeuron`` modules (the spikes of every
step, the membrane before and after every step) and on Linear/Conv layers (their input at every
step). A fused model runs each layer once over the whole sequence, and its neurons are no
``snn.SpikingNeuron``: under ``SNNTorchModel`` ActivationSparsity and MembraneUpdates read 0.0,
silently wrong. The adapter runs the model time-first on the whole sequence and hands the hooks
what the stepped twin would have stored, split per step:

- neuron hooks: per step the spikes ``spk[t]``, the membrane after the step ``mem[t]`` and before
  it ``mem[t-1]`` (snnTorch's state after ``reset``, zeros, at ``t = 0``; MembraneUpdates skips it);
- Linear/Conv hooks: a layer called once on ``[T * B, ...]`` is recorded as ``T`` calls on ``[B, ...]``
  (SynapticOperations decides AC or MAC per call, from whether that call's input is binary);
- an all-to-all ``RLeaky``/``RSynaptic``'s ``recurrent`` Linear, which the fused kernel applies
  inside its time loop without calling the module, is recorded with the inputs snnTorch feeds it:
  the previous step's spikes (zeros at ``t = 0``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ..layers import RLeaky, RSynaptic, _FusedLIF

Tensor = torch.Tensor

__all__ = ["neurobench_model"]


@lru_cache(maxsize=None)
def _classes():
    """The adapter classes, built on first use: they subclass NeuroBench's, an optional dependency."""
    try:
        from neurobench.hooks.layer import LayerHook
        from neurobench.hooks.neuron import NeuronHook
        from neurobench.models.neurobench_model import NeuroBenchModel
    except ImportError as err:
        raise ImportError("neurobench_model needs NeuroBench 2.x: pip install neurobench") from err

    class SequenceLayerHook(LayerHook):
        """A Linear/Conv layer's input, one entry per time step ``[B, ...]``."""

        def __init__(self, layer: nn.Module, adapter) -> None:
            super().__init__(None)  # no torch hook yet: ours splits the input per step
            self.layer, self.adapter = layer, adapter
            self.register_hook()

        def hook_fn(self, module: nn.Module, inputs: tuple) -> None:
            x = inputs[0]
            T, B = self.adapter.steps
            if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] == T * B and T > 1:
                # the models reshape [T, B, ...] to [T * B, ...]: rows t * B .. (t + 1) * B are step t
                self.inputs.extend((x[t * B:(t + 1) * B],) for t in range(T))
            else:
                self.inputs.append(inputs)

    class SequenceNeuronHook(NeuronHook):
        """A fused neuron's spikes and membrane ``[T, B, ...]``, one entry per time step."""

        def __init__(self, layer: nn.Module, name: str, recurrent_hook=None) -> None:
            super().__init__(None, name)
            self.layer, self.recurrent_hook = layer, recurrent_hook
            self.hook = layer.register_forward_hook(self.hook_fn)

        def hook_fn(self, layer: nn.Module, inputs: tuple, output) -> None:
            spk, mem = (output[0], output[-1]) if isinstance(output, tuple) else (output, None)
            x = inputs[0] if inputs else None
            for t in range(spk.shape[0]):
                self.activation_outputs.append(spk[t])
                if x is not None:
                    self.activation_inputs.append((x[t],))
                if mem is not None:
                    self.pre_fire_mem_potential.append(mem[t - 1] if t else torch.zeros_like(mem[0]))
                    self.post_fire_mem_potential.append(mem[t])
            if self.recurrent_hook is not None:
                previous = torch.cat([torch.zeros_like(spk[:1]), spk[:-1]])
                self.recurrent_hook.inputs.extend((previous[t],) for t in range(spk.shape[0]))

    class FusedNeuroBenchModel(NeuroBenchModel):
        """A fused model as NeuroBench takes it: ``__call__(data: [B, T, ...])`` -> output spikes
        ``[B, T, outputs]``, as ``SNNTorchModel`` returns them."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.net.eval()
            self.steps = (1, 1)
            # Fused neurons are activation layers too (found and hooked by register_hooks below).
            self.add_activation_module(_FusedLIF)

        def __net__(self) -> nn.Module:
            return self.net

        def __call__(self, data: Tensor) -> Tensor:
            if not isinstance(data, Tensor) or data.dim() < 3:
                raise ValueError(f"data must be [B, T, ...] (NeuroBench's layout), got "
                                 f"{tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__}")
            B, T = data.shape[:2]
            self.steps = (T, B)
            out = self.net(data.transpose(0, 1))
            spk = out[0] if isinstance(out, tuple) else out
            return spk.transpose(0, 1)

        def register_hooks(self) -> None:
            for layer in self.connection_layers():
                self.connection_hooks.append(SequenceLayerHook(layer, self))
            by_layer = {id(h.layer): h for h in self.connection_hooks}
            for found in self.activation_layers():
                layer = found["layer"]
                if not isinstance(layer, _FusedLIF):  # a ReLU or Sigmoid in the model: NeuroBench's own hook
                    self.activation_hooks.append(NeuronHook(layer, found["layer_name"]))
                    continue
                recurrent = None
                if isinstance(layer, (RLeaky, RSynaptic)) and layer.all_to_all:
                    recurrent = by_layer.get(id(layer.recurrent))
                self.activation_hooks.append(SequenceNeuronHook(layer, found["layer_name"], recurrent))

    return FusedNeuroBenchModel


def neurobench_model(model: nn.Module):
    """``model`` (a fused DSNN, CSNN, :func:`fusedsnn.fuse` result, or any module that takes
    ``x: [T, B, ...]`` and returns spikes ``[T, B, outputs]`` or a tuple starting with them) as a
    NeuroBench ``NeuroBenchModel`` for ``neurobench.benchmarks.Benchmark``.

    ActivationSparsity, MembraneUpdates, SynapticOperations and ClassificationAccuracy come out
    as NeuroBench's ``SNNTorchModel`` reports them for the snnTorch twin (see the module docstring).
    Sets ``model.eval()``, as ``SNNTorchModel`` does.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return _classes()(model)
