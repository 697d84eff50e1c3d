"""Build the fused twin of an snnTorch 1.0.0 neuron, with the same parameters and options."""

from __future__ import annotations

import torch
from torch import nn

from .. import surrogate as surrogate_mod
from ..layers import Leaky, RLeaky, RSynaptic, Synaptic

__all__ = ["from_snntorch"]


def _copy(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone()


def _learnable(neuron: nn.Module, name: str) -> bool:
    return isinstance(getattr(neuron, name, None), nn.Parameter)


def from_snntorch(neuron: nn.Module, backend: str = "auto", *, _in_sequential: bool = False) -> nn.Module:
    """Fused layer equivalent to an snnTorch ``Leaky``, ``Synaptic``, ``RLeaky`` or ``RSynaptic``.

    Parameters are copied (not shared); learnable ones stay learnable. An optimizer built on the
    original neuron's parameters therefore trains nothing in the fused layer: build it on the
    fused layer's ``parameters()`` (state_dicts load into each other strictly). The surrogate is
    recognised from snnTorch's closure (a custom Python surrogate raises ``ValueError`` naming
    it). Options the fused path does not support raise ``NotImplementedError`` naming them.
    A standalone ``init_hidden=True`` neuron is refused; :func:`fusedsnn.interop.fuse` converts whole
    ``init_hidden`` models (it passes ``_in_sequential=True``, as the state then lives in the
    fused sequence model).
    """
    try:
        import snntorch
    except ImportError as err:  # pragma: no cover - snntorch is a test dependency
        raise ImportError("from_snntorch needs snnTorch: pip install snntorch==1.0.0") from err

    kinds = {
        snntorch.RSynaptic: RSynaptic,
        snntorch.RLeaky: RLeaky,
        snntorch.Synaptic: Synaptic,
        snntorch.Leaky: Leaky,
    }
    fused_cls = next((fused for cls, fused in kinds.items() if type(neuron) is cls), None)
    if fused_cls is None:
        raise TypeError(
            f"from_snntorch converts snntorch.Leaky, Synaptic, RLeaky or RSynaptic, got {type(neuron).__name__}"
        )
    gsf = neuron.graded_spikes_factor
    if isinstance(gsf, nn.Parameter):
        raise NotImplementedError(
            "learn_graded_spikes_factor=True is not supported by fused neurons: the graded spikes "
            "factor is a compile-time constant of the kernel"
        )
    surrogate_disable = bool(neuron.surrogate_disable)
    spike_grad = None if surrogate_disable else surrogate_mod.from_snntorch_closure(neuron.spike_grad)
    common = dict(
        beta=_copy(neuron.beta),
        threshold=_copy(neuron.threshold),
        spike_grad=spike_grad,
        surrogate_disable=surrogate_disable,
        init_hidden=False if _in_sequential else neuron.init_hidden,
        inhibition=neuron.inhibition,
        learn_beta=_learnable(neuron, "beta"),
        learn_threshold=_learnable(neuron, "threshold"),
        reset_mechanism=neuron.reset_mechanism,
        state_quant=neuron.state_quant,
        output=False if _in_sequential else neuron.output,
        reset_delay=neuron.reset_delay,
        graded_spikes_factor=_copy(gsf),
        backend=backend,
    )
    if fused_cls in (Synaptic, RSynaptic):
        common.update(alpha=_copy(neuron.alpha), learn_alpha=_learnable(neuron, "alpha"))
    if fused_cls in (RLeaky, RSynaptic):
        recurrent = getattr(neuron, "recurrent", None)
        if isinstance(recurrent, nn.Conv2d):
            raise NotImplementedError(
                "Conv2d recurrence (conv2d_channels/kernel_size) is not supported by fused neurons"
            )
        common.update(all_to_all=neuron.all_to_all, learn_recurrent=neuron.learn_recurrent)
        if neuron.all_to_all:
            common.update(linear_features=neuron.linear_features)
        else:
            common.update(V=_copy(neuron.V))
    fused = fused_cls(**common)
    if fused_cls in (RLeaky, RSynaptic) and neuron.all_to_all:
        with torch.no_grad():
            fused.recurrent.weight.copy_(neuron.recurrent.weight)
            fused.recurrent.bias.copy_(neuron.recurrent.bias)
    return fused.to(neuron.beta.device)
