"""``nn.Linear`` / ``nn.Conv2d`` twins that keep their input spikes for the weight gradient as bits.

Every ``nn.Linear`` or ``nn.Conv2d`` after a neuron saves its input for the weight gradient as
floats (4 B per neuron-step in float32), although a spike is one bit. :class:`SpikeLinear` and
:class:`SpikeConv2d` have the same parameters, ``state_dict`` and outputs, save spike inputs
packed (:mod:`.bits`) and compute the default autograd formulas' gradients bit for bit. A
SpikeLinear can also compute its product from which inputs spiked (the host library's spike
product), to rounding, where :mod:`.product_rule` says that is faster.

:func:`linear_after_spikes` is the same choice for a plain ``nn.Linear`` that keeps its input
as floats: the study's networks and ``fs.fuse`` call it for the ``Linear`` layers their neurons
feed.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ..backends.host import all_to_all as host_all_to_all
from ..ops.recompute import eager_only
from ..ops.time_chunks import active_chunk
from . import product_rule
from .bits import pack_spikes
from .product_rule import SPIKE_PRODUCT_MIN_OUT

Tensor = torch.Tensor

__all__ = ["SpikeLinear", "SpikeConv2d", "spike_linear", "spike_conv2d", "linear_after_spikes",
           "SPIKE_PRODUCT_MIN_OUT"]

class _Saved:
    """The layer input kept for the weight gradient: packed when it is spikes, else as given."""

    def __init__(self, x: Tensor, need: bool) -> None:
        self.packed = pack_spikes(x) if need else None
        self.tensor = x if need and self.packed is None else None


class _Plan(NamedTuple):
    """What the rule allows for one call: the padded ``W^T`` and bias of the spike product, and
    the highest spike rates of the forward product and of the weight gradient from masks."""

    operands: tuple[Tensor, Optional[Tensor]]
    forward_rate: float
    weight_grad_rate: float


class _SpikeLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], plan: Optional[_Plan],
                save_bits: bool) -> Tensor:
        out, value = None, None
        if plan is not None:
            out, value = _spike_product(x, weight, plan)
        if out is None:
            out = F.linear(x, weight, bias)
        # Inside a time chunk the checkpoint drops whatever is saved here and recomputes it: the
        # float input is kept as it is (a reference, no pass over it); bits would only cost time.
        if active_chunk() is not None or not save_bits:
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
        return grad_x, grad_w, grad_b, None, None


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


def _plan(x: Tensor, weight: Tensor, bias: Optional[Tensor], setting: Optional[bool]) -> Optional[_Plan]:
    """The spike products this call may take (None: BLAS only). ``setting``: the layer's
    ``spike_product`` (True, False or None, see :func:`.product_rule.layer_uses_products`)."""
    if not product_rule.applies_to(x, weight, bias) or not product_rule.layer_uses_products(setting):
        return None
    n_out, n_in = weight.shape
    rows = x.numel() // n_in
    forward_rate = product_rule.forward_max_rate(rows, n_in, n_out)
    if forward_rate <= 0.0 or not host_all_to_all.available():
        return None
    return _Plan(_product_operands(weight, bias), forward_rate,
                 product_rule.weight_grad_max_rate(rows, n_in, n_out, x.dtype))


def _spike_product(x: Tensor, weight: Tensor, plan: _Plan) -> tuple[Optional[Tensor], Optional[float]]:
    """``(x @ W^T + b, c)`` by the spike product when ``x`` is binary spikes sparse enough for the
    plan's forward, else ``(None, None)``; ``c`` (1.0, or 0.0 for an all-zero ``x``) is None too
    when the spikes are too dense for the weight gradient from masks."""
    wt, bp = plan.operands
    x2 = x.detach().reshape(-1, weight.shape[1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    check = host_all_to_all.spike_linear_checked(x2, wt, bp, weight.shape[0], plan.forward_rate, unit_only=True)
    if check.out is None:
        return None, None
    dense_grad = plan.weight_grad_rate <= 0.0 or check.nonzero > plan.weight_grad_rate * x2.numel()
    value = None if dense_grad else check.value
    return check.out.reshape(*x.shape[:-1], weight.shape[0]), value


def _lean_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether the bit-saving path runs: autograd needs the weight gradient, no autocast (whose
    casts the plain path handles), the input is floating point like the weight, and no time
    chunk of :func:`memory_lean`'s ``time_chunk`` mode is running (whatever a chunk keeps is
    dropped and recomputed by the checkpoint anyway; bits would only cost time)."""
    return (torch.is_grad_enabled() and weight.requires_grad and x.dtype == weight.dtype
            and not torch.is_autocast_enabled(x.device.type) and active_chunk() is None)


def _needs_graph(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _with_products(x: Tensor, weight: Tensor, bias: Optional[Tensor], plan: _Plan, save_bits: bool) -> Tensor:
    if _needs_graph(x, weight, bias):
        return _SpikeLinearFunction.apply(x, weight, bias, plan, save_bits)
    out, _ = _spike_product(x, weight, plan)
    return F.linear(x, weight, bias) if out is None else out


def spike_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                 spike_product: Optional[bool] = None) -> Tensor:
    """``F.linear`` that saves ``x`` for the weight gradient 1 bit per element when ``x`` is
    spikes (see :func:`pack_spikes`), else as ``F.linear`` does.

    ``x: [*, in_features]``, ``weight: [out_features, in_features]`` -> ``[*, out_features]``;
    without spike products, output and gradients equal ``F.linear``'s bit for bit.

    ``spike_product``: True, False or None (default: the global mode, see
    :mod:`fusedsnn.memory.product_rule`). Where products are allowed, the measured rule decides
    by the sizes and the input's firing rate (CPU, float32/float64, binary spikes only): the
    product, and the weight gradient, add for each row the weight columns of the inputs that
    spiked instead of multiplying by every zero (the host library's spike product, see
    docs/design.md). The same values in exact arithmetic in another float summation order than
    BLAS's, so the output and the weight gradient equal ``F.linear``'s to rounding only; the
    input gradient is the dense formula's. With or without a graph, the same input gives the
    same output bits.
    """
    plan = _plan(x, weight, bias, spike_product)
    if plan is not None:
        return _with_products(x, weight, bias, plan, save_bits=True)
    if not _lean_applies(x, weight):
        return F.linear(x, weight, bias)
    return _SpikeLinearFunction.apply(x, weight, bias, None, True)


def linear_after_spikes(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` for a layer whose input ``x: [*, in_features]`` comes from a spiking neuron.

    A plain ``nn.Linear`` computes ``F.linear``, or the spike products where its
    ``spike_product`` attribute (None unless set on the instance; True or False to override the
    global mode) and :mod:`.product_rule` allow them; its input is kept as it is for the
    backward, as ``nn.Linear`` keeps it. Either way the layer is called as a module, so its
    hooks (NIR export's trace, NeuroBench's counters) see the call as before. Any other layer (a
    :class:`SpikeLinear`, which decides for itself, or a ``Linear`` subclass) is called as it is.
    Returns ``[*, out_features]``.
    """
    if (type(layer) is not nn.Linear or "forward" in layer.__dict__
            or not product_rule.applies_to(x, layer.weight, layer.bias)
            or not product_rule.layer_uses_products(getattr(layer, "spike_product", None))):
        return layer(x)

    def forward(inp: Tensor) -> Tensor:
        # the input a pre-hook may have replaced decides the plan
        plan = _plan(inp, layer.weight, layer.bias, getattr(layer, "spike_product", None))
        if plan is None:
            return F.linear(inp, layer.weight, layer.bias)
        return _with_products(inp, layer.weight, layer.bias, plan, save_bits=False)

    # For this one call the instance's forward (nn.Module.__call__ looks it up first).
    layer.__dict__["forward"] = forward
    try:
        return layer(x)
    finally:
        del layer.__dict__["forward"]


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

    ``spike_product`` (attribute, default None: the global mode; True or False override it;
    :func:`memory_lean` sets it when asked to): compute the product and the weight gradient from
    which inputs spiked where the measured rule says that is faster (see :func:`spike_linear`)."""

    spike_product: Optional[bool] = None

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
