"""``nn.Linear`` / ``nn.Conv2d`` twins that keep their input spikes for the weight gradient as bits.

Every ``nn.Linear`` or ``nn.Conv2d`` after a neuron saves its input for the weight gradient as
floats (4 B per neuron-step in float32), although a spike is one bit. :class:`SpikeLinear` and
:class:`SpikeConv2d` have the same parameters, ``state_dict`` and outputs, save spike inputs
packed (:mod:`.bits`) and compute the default autograd formulas' gradients bit for bit. A
SpikeLinear can also compute its product from which inputs spiked (the host library's spike
product), to rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ..backends.host import all_to_all as host_all_to_all
from ..ops.recompute import eager_only
from ..ops.time_chunks import active_chunk
from .bits import pack_spikes

Tensor = torch.Tensor

__all__ = ["SpikeLinear", "SpikeConv2d", "spike_linear", "spike_conv2d", "SPIKE_PRODUCT_MIN_OUT"]

class _Saved:
    """The layer input kept for the weight gradient: packed when it is spikes, else as given."""

    def __init__(self, x: Tensor, need: bool) -> None:
        self.packed = pack_spikes(x) if need else None
        self.tensor = x if need and self.packed is None else None


class _SpikeLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], operands) -> Tensor:
        out, value = None, None
        if operands is not None:
            out, value = _spike_product(x, weight, operands)
        if out is None:
            out = F.linear(x, weight, bias)
        # Inside a time chunk the checkpoint drops whatever is saved here and recomputes it: the
        # float input is kept as it is (a reference, no pass over it); bits would only cost time.
        if active_chunk() is not None:
            ctx.packed, x_kept = None, (x if ctx.needs_input_grad[1] else None)
        else:
            saved = _Saved(x, ctx.needs_input_grad[1])
            ctx.packed, x_kept = saved.packed, saved.tensor
        ctx.value = value
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        ctx.save_for_backward(weight, x_kept)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        weight, x_float = ctx.saved_tensors
        needs = ctx.needs_input_grad
        # The formulas of autograd's addmm/mm backward on the flattened [rows, features] view,
        # in the same orientation, so the gradients are the default's bit for bit (after a spike
        # product, the weight gradient is the same sum in another order).
        g2 = grad_out.reshape(-1, weight.shape[0])
        grad_x = grad_w = grad_b = None
        if needs[1]:  # first, so the unpacked input is freed before grad_x is allocated
            x = ctx.packed.unpack() if ctx.packed is not None else x_float
            x2 = x.reshape(-1, weight.shape[1])
            if ctx.value is not None:
                grad_w = host_all_to_all.spike_linear_weight_gradient(g2.contiguous(), x2.contiguous(), ctx.value)
            else:
                grad_w = g2.t().mm(x2)
            del x, x2
        if needs[0]:
            grad_x = g2.mm(weight).reshape(ctx.x_shape)
        if ctx.has_bias and needs[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b, None


#: A Linear layer's spike product runs only with at least this many outputs: narrower layers
#: (a 10-class readout) leave the vector registers mostly idle and BLAS is faster there.
SPIKE_PRODUCT_MIN_OUT = 64

# W^T padded for the spike product, per weight tensor, rebuilt when the weight or the bias
# changes (an optimizer step bumps their version counters).
_transposed_weights = None


def _product_operands(weight: Tensor, bias: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """:func:`~fusedsnn.backends.host.all_to_all.spike_linear_operands`, cached per weight."""
    global _transposed_weights

    if _transposed_weights is None:
        _transposed_weights = WeakIdKeyDictionary()
    key = (weight._version, weight.data_ptr(),
           None if bias is None else (id(bias), bias._version, bias.data_ptr()))
    hit = _transposed_weights.get(weight)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    wt, bp = host_all_to_all.spike_linear_operands(weight, bias)
    _transposed_weights[weight] = (key, wt, bp)
    return wt, bp


def _spike_product_applies(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    if not (isinstance(x, torch.Tensor) and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype and weight.dim() == 2
            and weight.shape[0] >= SPIKE_PRODUCT_MIN_OUT and x.dim() >= 1 and x.shape[-1] == weight.shape[1]
            and x.numel() > 0 and (bias is None or (bias.dtype == x.dtype and bias.device.type == "cpu"))
            and not torch.is_autocast_enabled("cpu")):
        return False
    return host_all_to_all.available()


def _spike_product(x: Tensor, weight: Tensor, operands) -> tuple[Optional[Tensor], Optional[float]]:
    """``(x @ W^T + b, c)`` by the spike product when ``x`` is spikes (0 or one value ``c``) and
    sparse enough, else ``(None, None)``."""
    wt, bp = operands
    x2 = x.detach().reshape(-1, weight.shape[1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    done = host_all_to_all.spike_linear_forward(x2, wt, bp, weight.shape[0])
    if done is None:
        return None, None
    out, value = done
    return out.reshape(*x.shape[:-1], weight.shape[0]), value


def _lean_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether the bit-saving path runs: autograd needs the weight gradient, no autocast (whose
    casts the plain path handles), the input is floating point like the weight, and no time
    chunk of :func:`memory_lean`'s ``time_chunk`` mode is running (whatever a chunk keeps is
    dropped and recomputed by the checkpoint anyway; bits would only cost time)."""
    return (torch.is_grad_enabled() and weight.requires_grad and x.dtype == weight.dtype
            and not torch.is_autocast_enabled(x.device.type) and active_chunk() is None)


def spike_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, spike_product: bool = False) -> Tensor:
    """``F.linear`` that saves ``x`` for the weight gradient 1 bit per element when ``x`` is
    spikes (see :func:`pack_spikes`), else as ``F.linear`` does.

    ``x: [*, in_features]``, ``weight: [out_features, in_features]`` -> ``[*, out_features]``;
    output and gradients equal ``F.linear``'s bit for bit.

    ``spike_product=True`` (CPU, float32/float64, at least :data:`SPIKE_PRODUCT_MIN_OUT`
    outputs): when ``x`` is spikes with at most 3/4 of them non-zero, the product and the
    weight gradient add, for each row, the weight columns of the inputs that spiked instead of
    multiplying by every zero (the host library's spike product, see docs/design.md). The same
    values in exact arithmetic in another float summation order than BLAS's, so the output and
    the weight gradient equal ``F.linear``'s to rounding only; the input gradient is the dense
    formula's. With or without a graph, the same input gives the same output bits.
    """
    operands = None
    if spike_product and _spike_product_applies(x, weight, bias):
        operands = _product_operands(weight, bias)
        if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))):
            out, _ = _spike_product(x, weight, operands)
            return F.linear(x, weight, bias) if out is None else out
    elif not _lean_applies(x, weight):
        return F.linear(x, weight, bias)
    return _SpikeLinearFunction.apply(x, weight, bias, operands)


class _SpikeConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups):
        out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        saved = _Saved(x, ctx.needs_input_grad[1])
        ctx.packed = saved.packed
        ctx.conv = (stride, padding, dilation, groups)
        ctx.bias_sizes = None if bias is None else list(bias.shape)
        ctx.save_for_backward(weight, saved.tensor)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        weight, x_float = ctx.saved_tensors
        needs = ctx.needs_input_grad
        stride, padding, dilation, groups = ctx.conv
        # This Function only runs when the weight gradient is needed, so the input was kept.
        x = ctx.packed.unpack() if ctx.packed is not None else x_float
        # The very call autograd's ConvolutionBackward0 makes, so gradients match bit for bit.
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, x, weight, ctx.bias_sizes, list(stride), list(padding), list(dilation), False, [0, 0],
            groups, [needs[0], needs[1], ctx.bias_sizes is not None and needs[2]],
        )
        return grad_x, grad_w, grad_b, None, None, None, None


def spike_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
                 groups: int = 1) -> Tensor:
    """``F.conv2d`` (numeric padding) that saves ``x`` 1 bit per element when it is spikes.

    ``x: [N, C_in, H, W]`` -> ``[N, C_out, H', W']``; output and gradients equal ``F.conv2d``'s
    bit for bit. String padding ("same", "valid") runs the plain ``F.conv2d``.
    """
    if isinstance(padding, str) or not _lean_applies(x, weight) or x.dim() != 4:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    pair = torch.nn.modules.utils._pair
    return _SpikeConv2dFunction.apply(x, weight, bias, pair(stride), pair(padding), pair(dilation), groups)


class SpikeLinear(nn.Linear):
    """``nn.Linear`` (same parameters, ``state_dict`` and outputs) that saves its input for the
    backward 1 bit per element when the input is spikes (0 or one value c), falling back to
    the float input otherwise. ``forward(x: [*, in_features]) -> [*, out_features]``.

    ``spike_product`` (attribute, default False; :func:`memory_lean` sets it): compute the
    product and the weight gradient from which inputs spiked (see :func:`spike_linear`)."""

    spike_product: bool = False

    @eager_only("SpikeLinear (an nn.Linear that saves its input spikes as bits)")
    def forward(self, x: Tensor) -> Tensor:
        return spike_linear(x, self.weight, self.bias, self.spike_product)


class SpikeConv2d(nn.Conv2d):
    """``nn.Conv2d`` that saves its input spikes 1 bit per element (see :class:`SpikeLinear`).
    Non-zero padding modes (``reflect``, ...) run the plain convolution."""

    @eager_only("SpikeConv2d (an nn.Conv2d that saves its input spikes as bits)")
    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return spike_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
