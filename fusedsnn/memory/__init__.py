"""Training long sequences in little memory: spikes saved as bits, neuron state recomputed.

Most of what a spiking network keeps for its backward is not the neuron's: every ``nn.Linear``
or ``nn.Conv2d`` after a neuron saves its input spikes for the weight gradient, as floats
(4 B per neuron-step in float32), although a spike is one bit. This module provides:

* :func:`pack_spikes` / :class:`PackedSpikes`: a tensor whose elements are all ``0`` or one
  value ``c`` (binary spikes, or graded spikes ``c = graded_spikes_factor``), stored as
  1 bit per element plus ``c``; anything else is refused (``None``), so callers fall back to
  keeping the float tensor. Unpacking reproduces the tensor bit for bit.
* :class:`SpikeLinear`, :class:`SpikeConv2d`: drop-in ``nn.Linear`` / ``nn.Conv2d`` (same
  parameters and ``state_dict``) that save their input packed when it is spikes and compute
  the same gradients as the default autograd formulas, bit for bit.
* ``saved_state="recompute"`` on the fused neuron layers (an option of the core,
  :mod:`fusedsnn.ops.recompute`): the layer keeps only its input and initial states and re-runs
  the fused forward inside its backward; "auto" does so only where the input is static over
  time (there it saves the membrane for free).
* :func:`memory_lean`: converts a model in place to all of the above, and optionally
  (``time_chunk=n``) runs the whole network ``n`` time steps at a time under checkpointing
  (:class:`ChunkedForward`), so that training memory no longer grows with ``T``.
* spike products: a ``Linear`` fed by spikes on the CPU may add the weight columns of the inputs
  that spiked instead of multiplying by zeros, where a rule measured on the CPU says that is
  faster (:mod:`.product_rule`: :func:`spike_products` / :func:`set_spike_products` and the
  environment variable ``FUSEDSNN_SPIKE_PRODUCT`` switch it, a layer's ``spike_product``
  overrides; :func:`linear_after_spikes` applies it to a plain ``nn.Linear``).

This package sits above the layers: it only sets options the core understands (a layer's
``saved_state``, the time chunk a neuron call carries its state through) and swaps
``nn.Linear``/``nn.Conv2d`` for their spike-saving twins. ``bits.py`` packs spikes,
``spike_layers.py`` holds the twins, ``product_rule.py`` the spike products' rule and switches,
``chunking.py`` the chunked forward.

Bytes saved per neuron-step for each mode are tabulated in docs/design.md ("Memory-lean
training").
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from .. import functional as Fn
from ..layers import _FusedLIF
from ..ops.recompute import SAVED_STATES, check_saved_state
from ..ops.time_chunks import once_per_sequence
from .bits import PackedSpikes, pack_spikes
from .chunking import ChunkedForward
from .product_rule import set_spike_products, spike_products, spike_products_mode
from .spike_layers import (SPIKE_PRODUCT_MIN_OUT, SpikeConv2d, SpikeLinear, linear_after_spikes, spike_conv2d,
                           spike_linear)

Tensor = torch.Tensor

__all__ = [
    "PackedSpikes",
    "pack_spikes",
    "SpikeLinear",
    "SpikeConv2d",
    "spike_linear",
    "spike_conv2d",
    "SPIKE_PRODUCT_MIN_OUT",
    "linear_after_spikes",
    "spike_products",
    "set_spike_products",
    "spike_products_mode",
    "SAVED_STATES",
    "memory_lean",
    "lif",
    "ChunkedForward",
    "MIN_EFFICIENT_TIME_CHUNK",
    "once_per_sequence",
]


def lif(saved_state: str, x: Tensor, spec, beta, threshold=1.0, alpha=None, V=None, recurrent=None,
        mem: Optional[Tensor] = None, syn: Optional[Tensor] = None, spk: Optional[Tensor] = None,
        backend: str = "auto") -> tuple[Tensor, ...]:
    """:func:`fusedsnn.functional.lif` with ``saved_state`` first (see :data:`SAVED_STATES`)."""
    return Fn.lif(x, spec, beta, threshold, alpha, V, recurrent, mem, syn, spk, backend, saved_state)


#: Below this many steps per chunk, memory_lean(time_chunk=n) warns: every chunk costs a
#: checkpoint and one more forward of the whole network in the backward, a fixed cost that a
#: chunk of 1 to 3 steps pays per step or two (many times slower than the default).
MIN_EFFICIENT_TIME_CHUNK = 4


def memory_lean(model: nn.Module, saved_state: str = "auto", time_chunk: Optional[int] = None,
                spike_products: Optional[bool] = None) -> nn.Module:
    """Convert ``model`` in place for memory-lean training and return it.

    Every ``nn.Linear`` and ``nn.Conv2d`` (exact types; subclasses may override ``forward`` and
    are left alone) becomes a :class:`SpikeLinear` / :class:`SpikeConv2d` with the same
    parameters: layers that receive spikes (after a fused neuron, or after a max-pool of spikes)
    save them 1 bit per neuron-step; layers that receive anything else (images, currents) check
    it once per call and keep it as before. Every fused neuron layer gets
    ``saved_state=saved_state`` (default "auto": a layer recomputes its forward in the backward
    only when its input is static over time, see :data:`SAVED_STATES`). Forward outputs are
    unchanged and gradients are those of the unconverted model bit for bit (a recomputing
    layer's learnable parameters: to float rounding when its sequence is cut in chunks).

    ``time_chunk``: None (default) runs the model over the whole sequence as before. An int
    ``n`` runs the whole network ``n`` steps at a time under checkpointing (see
    :class:`ChunkedForward`): what the forward keeps no longer grows with ``T`` beyond the
    outputs, the chunks' inputs and one set of boundary states per chunk, and the backward's
    transients are one chunk in size, for one more forward of the network in the backward
    (inside a chunk the layers keep their default saves: bits or neuron recompute would only
    shrink what is dropped anyway). Weight gradients are then summed chunk by chunk, so they
    equal the default's to float rounding, not bit for bit; the per-chunk matrix products may
    also round the currents differently in the last bit. With 16-bit inputs the state carried
    across a chunk boundary is the layer's 16-bit output, not the kernel's float32 state, so
    results move by that rounding at every boundary. The model's forward must take the
    sequence time-first (or be a fusedsnn model with a static input) and return time-first
    tensors.

    ``spike_products``: the converted ``Linear`` layers' ``spike_product`` (whether they may
    compute their product and weight gradient from which inputs spiked, where the measured rule
    of :mod:`.product_rule` says that is faster: CPU only, binary spikes; results equal the
    dense product's to rounding). None (default) leaves each layer's setting as it is (a fresh
    layer's is None: the global mode, whose default "auto" takes the products inside the time
    chunks of ``time_chunk``, whose results already equal the default's only to rounding and
    where they pay for the recomputed forward, and keeps BLAS, and the default's bits, without);
    True or False set every converted layer's.

    Converting twice with the same arguments changes nothing; ``time_chunk=None`` removes an
    earlier chunking.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_saved_state(saved_state)
    if time_chunk is not None and (isinstance(time_chunk, bool) or not isinstance(time_chunk, int) or time_chunk < 1):
        raise ValueError(f"time_chunk must be None or a positive int (time steps per chunk), got {time_chunk!r}")
    if time_chunk is not None and time_chunk < MIN_EFFICIENT_TIME_CHUNK:
        warnings.warn(
            f"memory_lean(time_chunk={time_chunk}): chunks this small are very slow (each chunk is checkpointed "
            "and its forward runs again in the backward, a fixed cost per chunk); a few dozen steps per chunk "
            "(e.g. time_chunk=32) keep most of the memory saving",
            UserWarning, stacklevel=2)
    if spike_products is not None and not isinstance(spike_products, bool):
        raise ValueError(f"spike_products must be None, True or False, got {spike_products!r}")
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = SpikeLinear
        if type(module) is SpikeLinear and spike_products is not None:
            module.spike_product = spike_products
        elif type(module) is nn.Conv2d:
            module.__class__ = SpikeConv2d
        elif isinstance(module, _FusedLIF):
            module.saved_state = saved_state
    chunked = model.__dict__.get("forward")
    if isinstance(chunked, ChunkedForward):
        if time_chunk is None:
            del model.__dict__["forward"]
        else:
            chunked.time_chunk = time_chunk
    elif time_chunk is not None:
        # An instance attribute: nn.Module.__call__ finds it before the class's forward, and
        # state_dict, parameters and the class stay as they were.
        model.__dict__["forward"] = ChunkedForward(model, time_chunk)
    return model
