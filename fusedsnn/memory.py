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
* ``saved_state="recompute"`` on the fused neuron layers (:func:`lif`): the layer keeps only
  its input and initial states and re-runs the fused forward inside its backward; "auto" does
  so only where the input is static over time (there it saves the membrane for free).
* :func:`memory_lean`: converts a model in place to all of the above, and optionally
  (``time_chunk=n``) runs the whole network ``n`` time steps at a time under checkpointing
  (:class:`ChunkedForward`), so that training memory no longer grows with ``T``.

Bytes saved per neuron-step for each mode are tabulated in docs/design.md ("Memory-lean
training").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

__all__ = [
    "PackedSpikes",
    "pack_spikes",
    "SpikeLinear",
    "SpikeConv2d",
    "spike_linear",
    "spike_conv2d",
    "SAVED_STATES",
    "memory_lean",
    "lif",
    "ChunkedForward",
    "once_per_sequence",
]

#: Per-layer choice of what a fused neuron layer keeps for its backward.
#: "default": what the fused op saves (see docs/design.md); "recompute": only the input and the
#: initial states, the forward is run again inside the backward (one more neuron forward);
#: "auto": "recompute" when the input is static (stride 0 over time: then the input costs
#: nothing per step while the membrane would cost 4 B) and the sequence splits into at least
#: :data:`AUTO_MIN_CHUNKS` recompute chunks, else "default" (an input is as large as the
#: membrane it would replace, so recomputing would only cost time: 3-layer network, T=500,
#: CPU, exact bytes: 142 MiB recomputing against 128 MiB with the default saves, 1.25x the time).
SAVED_STATES = ("default", "recompute", "auto")

_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64,
             torch.float16: torch.int16, torch.bfloat16: torch.int16}
_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)


# ---------------------------------------------------------------------------------------------
# bit packing
# ---------------------------------------------------------------------------------------------

@dataclass
class PackedSpikes:
    """A tensor of ``0`` and ``value`` stored as 1 bit per element.

    ``bits``: ``uint8 [ceil(numel / 8)]``, element ``i`` is bit ``i % 8`` of byte ``i // 8``
    (little-endian bit order); ``value``: the nonzero value as a 0-dim tensor of ``dtype``.
    """

    bits: Tensor
    value: Tensor
    shape: torch.Size
    dtype: torch.dtype
    #: ``value``'s bit pattern as a Python int (kept so that unpacking on a GPU needs no read of
    #: ``value`` back to the host); derived from ``value`` when None.
    value_bits: Optional[int] = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self) -> int:
        return self.bits.numel() + self.value.element_size()

    def unpack(self) -> Tensor:
        """The original tensor, contiguous, bit for bit (``+0.0`` and ``value``)."""
        n = self.numel
        if _uses_triton(self.bits):
            from .kernels import spike_bits_triton

            int_dtype = _INT_VIEW[self.dtype]
            c_bits = self.value_bits if self.value_bits is not None else _bit_pattern(self.value)
            ints = spike_bits_triton.unpack_spike_bits(self.bits, c_bits, n, int_dtype)
            return ints.view(self.dtype).reshape(self.shape)
        # One gather of 8 values per stored byte: the table holds the 8 elements of every byte.
        table = torch.where(_bits_of_byte(self.bits.device), self.value,
                            torch.zeros((), dtype=self.dtype, device=self.bits.device))
        flat = F.embedding(self.bits.to(torch.int32), table).reshape(-1)
        return flat[:n].reshape(self.shape)


_BITS_OF_BYTE: dict = {}


def _bits_of_byte(device: torch.device) -> Tensor:
    """``bool [256, 8]``: bit k of each byte value, built once per device (it used to be a
    Python list of 2048 entries per unpack)."""
    table = _BITS_OF_BYTE.get(device)
    if table is None:
        byte = torch.arange(256, dtype=torch.int32)
        table = ((byte[:, None] >> torch.arange(8, dtype=torch.int32)) & 1).bool().to(device)
        _BITS_OF_BYTE[device] = table
    return table


def _uses_triton(t: Tensor) -> bool:
    """Pack and unpack on a CUDA device through the Triton kernels (one pass, no temporaries)."""
    if t.device.type != "cuda":
        return False
    from .kernels import spike_bits_triton

    return spike_bits_triton.HAS_TRITON


def _bit_pattern(value: Tensor) -> int:
    """The bits of a 0-dim float tensor as a signed Python int of its width."""
    return int(value.detach().reshape(1).view(_INT_VIEW[value.dtype]).item())


def _pack_bool(mask: Tensor, use_numpy: Optional[bool] = None) -> Tensor:
    """``bool [n]`` -> ``uint8 [ceil(n / 8)]``, little-endian bit order (numpy on the CPU,
    torch ops elsewhere)."""
    n = mask.numel()
    if use_numpy if use_numpy is not None else mask.device.type == "cpu":
        import numpy as np

        # numpy packs fastest; the copy puts the bits in torch's allocator (visible to memory
        # accounting, freed with the autograd graph).
        return torch.from_numpy(np.packbits(mask.numpy(), bitorder="little")).clone()
    pad = (-n) % 8
    if pad:
        mask = torch.cat([mask, mask.new_zeros(pad)])
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=mask.device)
    return (mask.view(torch.uint8).view(-1, 8) * weights).sum(1, dtype=torch.uint8)


def pack_spikes(x: Tensor) -> Optional[PackedSpikes]:
    """Pack ``x`` (any shape) 1 bit per element if every element is ``+0.0`` or one value ``c``.

    Returns ``None`` (the caller keeps ``x`` as it is) for anything else: more than two values,
    ``-0.0`` beside ``c``, NaN, integer tensors. The check costs one min/max pass (which
    already rejects continuous data such as images) and, for candidates, one comparison and two
    counts; a stride-0 (expanded) tensor is packed from its materialised values.
    """
    if not isinstance(x, torch.Tensor) or x.dtype not in _INT_VIEW or x.numel() == 0:
        return None
    # One synchronisation with the device for both extremes.
    lo, hi = torch.stack(torch.aminmax(x.detach().reshape(-1))).tolist()
    if lo == 0.0:
        c = hi
    elif hi == 0.0 or lo == hi:
        c = lo
    else:
        return None  # two distinct nonzero values (or NaN): not spikes
    flat = x.detach().reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    ints = flat.view(_INT_VIEW[x.dtype])
    # c's bits from a host copy: reading them back from the device would synchronise again.
    c_bits = _bit_pattern(torch.tensor(c, dtype=x.dtype))
    value = torch.tensor(c, dtype=x.dtype, device=x.device)
    if _uses_triton(ints):
        from .kernels import spike_bits_triton

        bits, not_spikes = spike_bits_triton.pack_spike_bits(ints, c_bits)
        return None if not_spikes.item() else PackedSpikes(bits, value, x.shape, x.dtype, c_bits)
    is_c = ints == value.view(_INT_VIEW[x.dtype])
    # Every element is +0.0 (all bits zero) or c exactly, bitwise: the elements whose bits are
    # not all zero are exactly the c's (-0.0 counts among them, so it is refused; when c is
    # itself +0.0 there must be none).
    nonzero = int(torch.count_nonzero(ints))
    if nonzero != (int(torch.count_nonzero(is_c)) if c_bits != 0 else 0):
        return None
    return PackedSpikes(_pack_bool(is_c), value, x.shape, x.dtype, c_bits)


# ---------------------------------------------------------------------------------------------
# Linear / Conv2d that save spikes as bits
# ---------------------------------------------------------------------------------------------

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
        if _active_chunk() is not None:
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
                from .kernels import lif_dense_host

                grad_w = lif_dense_host.spike_linear_weight_gradient(g2.contiguous(), x2.contiguous(), ctx.value)
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
    """:func:`~fusedsnn.kernels.lif_dense_host.spike_linear_operands`, cached per weight."""
    global _transposed_weights
    from torch.utils.weak import WeakIdKeyDictionary

    from .kernels import lif_dense_host

    if _transposed_weights is None:
        _transposed_weights = WeakIdKeyDictionary()
    key = (weight._version, weight.data_ptr(),
           None if bias is None else (id(bias), bias._version, bias.data_ptr()))
    hit = _transposed_weights.get(weight)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    wt, bp = lif_dense_host.spike_linear_operands(weight, bias)
    _transposed_weights[weight] = (key, wt, bp)
    return wt, bp


def _spike_product_applies(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    if not (isinstance(x, torch.Tensor) and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype and weight.dim() == 2
            and weight.shape[0] >= SPIKE_PRODUCT_MIN_OUT and x.dim() >= 1 and x.shape[-1] == weight.shape[1]
            and x.numel() > 0 and (bias is None or (bias.dtype == x.dtype and bias.device.type == "cpu"))
            and not torch.is_autocast_enabled("cpu")):
        return False
    from .kernels import lif_dense_host

    return lif_dense_host.available()


def _spike_product(x: Tensor, weight: Tensor, operands) -> tuple[Optional[Tensor], Optional[float]]:
    """``(x @ W^T + b, c)`` by the spike product when ``x`` is spikes (0 or one value ``c``) and
    sparse enough, else ``(None, None)``."""
    from .kernels import lif_dense_host

    wt, bp = operands
    x2 = x.detach().reshape(-1, weight.shape[1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    done = lif_dense_host.spike_linear_forward(x2, wt, bp, weight.shape[0])
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
            and not torch.is_autocast_enabled(x.device.type) and _active_chunk() is None)


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

    def forward(self, x: Tensor) -> Tensor:
        return spike_linear(x, self.weight, self.bias, self.spike_product)


class SpikeConv2d(nn.Conv2d):
    """``nn.Conv2d`` that saves its input spikes 1 bit per element (see :class:`SpikeLinear`).
    Non-zero padding modes (``reflect``, ...) run the plain convolution."""

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return spike_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


# ---------------------------------------------------------------------------------------------
# neuron layers: recompute the fused forward in the backward
# ---------------------------------------------------------------------------------------------

#: The recompute mode runs the time loop in this many chunks at most, so that what exists at
#: once in its forward and backward, besides the outputs and gradients, is one chunk's worth;
#: chunks are at least RECOMPUTE_MIN_STEPS long, so short sequences pay no per-chunk overhead.
RECOMPUTE_CHUNKS = 16
RECOMPUTE_MIN_STEPS = 32


#: Off the CPU, a recompute chunk holds at least this many neuron-steps (16 MiB per float32
#: state tensor): each chunk costs about 1 ms of host time (launches, autograd) on a GPU, where
#: the kernels of a whole T=500, B=32, 1000-neuron layer take a fraction of that (H100: 16
#: chunks made memory_lean's DSNN step 20x slower than the default's).
RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU = 1 << 22
#: "auto" recomputes a static input's layer only in at least this many chunks. The backward of
#: one chunk holds about four chunk-sized tensors (its recomputed spikes and membrane, its input
#: gradient, the carried gradient's buffer), so with n chunks it saves the membrane's
#: 4 B per neuron-step but spends about 16 / n B of transients: break-even near n = 4 (DSNN,
#: T=500, 4 chunks: 190 MiB against the default's 185; the H100 ran it at 0.38x the default's
#: speed), half the membrane saved at 8 (8 chunks: 159 MiB; both exact bytes on the CPU).
AUTO_MIN_CHUNKS = 8


def _chunks(T: int, n: int, per_step: int = 1, on_cpu: bool = True) -> list[tuple[int, int]]:
    size = max(RECOMPUTE_MIN_STEPS, -(-T // n), 1)
    if not on_cpu:
        size = max(size, -(-RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU // max(per_step, 1)))
    return [(t, min(T, t + size)) for t in range(0, T, size)]


def _recompute_spans(x: Tensor, n_chunks: int) -> list[tuple[int, int]]:
    """The time spans the recompute of ``x: [T, ...]`` runs in: one when its dtype is 16-bit
    (carrying a state between chunks is exact only when the outputs hold the float state)."""
    T = x.shape[0]
    if not T:
        return [(0, 0)]
    if x.dtype not in (torch.float32, torch.float64):
        n_chunks = 1
    return _chunks(T, n_chunks, x[0].numel(), x.device.type == "cpu")


class _RecomputeLIF(torch.autograd.Function):
    """Keeps only the input, the initial states, the parameters and the states at chunk
    boundaries; the backward walks the chunks last to first, re-running each chunk's fused
    forward with a graph from its boundary state and differentiating it, the gradients of a
    chunk's initial states carried into the previous chunk's last step.

    The per-step arithmetic is the fused op's, so outputs and the input/initial-state gradients
    are the default's bit for bit; a learnable parameter's gradient is summed per chunk, so it
    equals the default's to float rounding (exactly when there is one chunk).
    """

    @staticmethod
    def forward(ctx, run, layout, x, *tensors):
        synaptic, recurrent, n_chunks = layout
        T = x.shape[0]
        spans = _recompute_spans(x, n_chunks)
        states0 = list(tensors[:3])
        with torch.no_grad():
            if len(spans) == 1:
                outs = run(x, *states0, *tensors[3:])
                boundaries = []
            else:
                outs, boundaries, states = None, [], states0
                for t0, t1 in spans:
                    part = run(x[t0:t1], *states, *tensors[3:])
                    if outs is None:
                        outs = tuple(p.new_empty((T, *p.shape[1:])) for p in part)
                    for o, p in zip(outs, part):
                        o[t0:t1] = p
                    states = [part[-1][-1], part[1][-1] if synaptic else None, part[0][-1] if recurrent else None]
                    if t1 < T:
                        boundaries.append([None if s is None else s.clone() for s in states])
        # Gradients of unused outputs (a hidden layer's membrane) arrive as None, not as zeros.
        ctx.set_materialize_grads(False)
        ctx.run, ctx.spans, ctx.boundaries = run, spans, boundaries
        ctx.layout = (synaptic, recurrent)
        ctx.save_for_backward(x, *tensors)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        x, *tensors = ctx.saved_tensors
        synaptic, recurrent = ctx.layout
        needs = ctx.needs_input_grad[2:]
        params = [t.detach().requires_grad_(need) if t is not None else None for t, need in zip(tensors[3:], needs[4:])]
        spans = ctx.spans
        if synaptic and grads[1] is not None:
            # The fused backward adds the synaptic current's upstream gradient and its carry in
            # one order that a carry injected at a chunk boundary cannot reproduce bit for bit:
            # differentiate the whole sequence at once instead (bigger transient, same bits).
            spans = [(0, x.shape[0])]
        grad_x = torch.empty_like(x) if needs[0] and len(spans) > 1 else None
        grad_params = [None] * len(params)
        carry = [None, None, None]  # gradients of the next chunk's initial mem, syn, spk
        grad_states0 = [None, None, None]
        buffers: dict[int, Tensor] = {}
        for k in range(len(spans) - 1, -1, -1):
            t0, t1 = spans[k]
            starts = tensors[:3] if k == 0 else ctx.boundaries[k - 1]
            state_needs = needs[1:4] if k == 0 else [s is not None for s in starts]
            states = [None if s is None else s.detach().requires_grad_(n) for s, n in zip(starts, state_needs)]
            x_k = x[t0:t1].detach().requires_grad_(needs[0])
            with torch.enable_grad():
                outs = ctx.run(x_k, *states, *params)
            # Output order: (spk, mem) or (spk, syn, mem); the carries land on the last step.
            slots = [0, 1, 2] if synaptic else [0, 2]  # spk, syn, mem -> carry index 2, 1, 0
            carry_of = {0: 2, 1: 1, 2: 0}
            outputs, out_grads = [], []
            for o, slot, g in zip(outs, slots, (grads[i] for i in range(len(outs)))):
                g_k = None if g is None else g[t0:t1]
                c = carry[carry_of[slot]]
                if c is not None:
                    # One buffer per output for the whole backward, reused chunk after chunk:
                    # fresh memory costs page faults on every first touch.
                    if slot not in buffers:
                        buffers[slot] = o.new_empty((spans[-1][1] - spans[-1][0] if len(spans) == 1 else
                                                     max(b - a for a, b in spans), *o.shape[1:]))
                    buf = buffers[slot][: t1 - t0]
                    if g_k is None:
                        buf.zero_()
                        buf[-1] = c
                    else:
                        buf.copy_(g_k)
                        buf[-1] = g_k[-1] + c
                    g_k = buf
                if g_k is not None and o.requires_grad:
                    outputs.append(o)
                    out_grads.append(g_k)
            wanted = [(i, t) for i, t in enumerate([x_k, *states, *params]) if t is not None and t.requires_grad]
            found = (torch.autograd.grad(outputs, [t for _, t in wanted], out_grads, allow_unused=True)
                     if outputs and wanted else [None] * len(wanted))
            got = {i: g for (i, _), g in zip(wanted, found)}
            if needs[0]:
                g = got.get(0)
                if grad_x is None:
                    grad_x = g
                else:
                    grad_x[t0:t1] = 0 if g is None else g
            carry = [got.get(1), got.get(2), got.get(3)]
            if k == 0:
                grad_states0 = carry
            for j in range(len(params)):
                g = got.get(4 + j)
                if g is not None:
                    grad_params[j] = g if grad_params[j] is None else grad_params[j] + g
            # Drop this chunk's recomputed outputs and gradients now: held until the next
            # iteration reassigns them, they would coexist with the next chunk's (H100, DSNN
            # T=500 in 4 chunks: 82 MiB of recompute tensors at the peak instead of ~45).
            outs = outputs = out_grads = found = got = o = g = g_k = buf = None
        return (None, None, grad_x, *(g if n else None for g, n in zip(grad_states0, needs[1:4])),
                *(g if n else None for g, n in zip(grad_params, needs[4:])))


def lif(saved_state: str, x: Tensor, spec, beta, threshold=1.0, alpha=None, V=None, recurrent=None,
        mem: Optional[Tensor] = None, syn: Optional[Tensor] = None, spk: Optional[Tensor] = None,
        backend: str = "auto") -> tuple[Tensor, ...]:
    """:func:`fusedsnn.functional.lif` with a choice of what is kept for the backward.

    ``saved_state``: one of :data:`SAVED_STATES`. "recompute" keeps ``x`` (a stride-0 static
    input stays one ``[B, *features]`` slice), the initial states, the tensor parameters and
    the states at up to :data:`RECOMPUTE_CHUNKS` chunk boundaries (fewer off the CPU, see
    :data:`RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU`), and re-runs the forward chunk by chunk in the
    backward. "auto" recomputes only a static input's layer, and only when it splits into at
    least :data:`AUTO_MIN_CHUNKS` chunks. All-to-all recurrence
    (``recurrent``) runs its own per-step graph, so it always uses "default".
    """
    from . import functional as Fn
    from .kernels.spec import RECURRENCE_NONE

    if saved_state not in SAVED_STATES:
        raise ValueError(f"saved_state must be one of {SAVED_STATES}, got {saved_state!r}")
    chunk = _active_chunk()
    if chunk is not None:
        # Inside a time chunk the checkpoint drops what the op saves and recomputes it; the
        # layer starts from the state the previous chunk ended in.
        mem, syn, spk = chunk.initial_states(mem, syn, spk)
        out = Fn.lif(x, spec, beta, threshold, alpha, V, recurrent, mem, syn, spk, backend)
        chunk.record_final_states(out, spec)
        return out
    states = {"mem": mem, "syn": syn, "spk": spk}
    params = {"beta": beta, "threshold": threshold, "alpha": alpha, "V": V}
    param_names = [k for k, v in params.items() if isinstance(v, torch.Tensor)]
    needs_graph = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, mem, syn, spk, *params.values()))
    if saved_state == "auto":
        static = isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[0] > 1 and x.stride(0) == 0
        enough = static and len(_recompute_spans(x, RECOMPUTE_CHUNKS)) >= AUTO_MIN_CHUNKS
        saved_state = "recompute" if enough else "default"
    if (saved_state == "default" or recurrent is not None or not needs_graph
            or not isinstance(x, torch.Tensor) or x.dim() < 2):
        return Fn.lif(x, spec, beta, threshold, alpha, V, recurrent, mem, syn, spk, backend)
    # Argument errors surface from the plain call, before anything is saved.
    Fn._check_input(x)
    for name, state in states.items():
        Fn._check_state(name, state, x)

    def run(x_, mem_, syn_, spk_, *tensors):
        kw = dict(params)
        kw.update(zip(param_names, tensors))
        return Fn.lif(x_, spec, kw["beta"], kw["threshold"], kw["alpha"], kw["V"], None,
                      mem_, syn_ if spec.synaptic else None,
                      spk_ if spec.recurrence != RECURRENCE_NONE else None, backend)

    layout = (spec.synaptic, spec.recurrence != RECURRENCE_NONE, RECOMPUTE_CHUNKS)
    return _RecomputeLIF.apply(run, layout, x, mem, syn, spk, *(params[k] for k in param_names))


# ---------------------------------------------------------------------------------------------
# whole models run in time chunks
# ---------------------------------------------------------------------------------------------

_chunk_local = threading.local()


def _active_chunk() -> Optional["_Chunk"]:
    return getattr(_chunk_local, "chunk", None)


class _Chunk:
    """The fused neuron calls of one time chunk of a model's forward, in call order: call ``k``
    starts from the states call ``k`` of the previous chunk ended in (``carried[k]``, None in the
    first chunk: the caller's own initial states) and records the states it ends in."""

    def __init__(self, carried: Optional[list[tuple]], shared: dict) -> None:
        self.carried = carried
        self.final: list[tuple] = []
        self.shared = shared  # one per ChunkedForward call: see once_per_sequence

    def initial_states(self, mem, syn, spk):
        k = len(self.final)
        if self.carried is None:
            return mem, syn, spk
        if k >= len(self.carried):
            raise RuntimeError(
                "memory_lean(time_chunk=...): the model called more fused neuron layers in this time chunk "
                f"({k + 1}) than in the first ({len(self.carried)}); chunked execution needs the same calls in "
                "every chunk")
        return self.carried[k]

    def record_final_states(self, out: tuple, spec) -> None:
        from .kernels.spec import RECURRENCE_NONE

        if out[0].shape[0] == 0:
            raise ValueError("memory_lean(time_chunk=...) needs at least one time step per chunk")
        # The last step's states, cloned: a view would keep the whole chunk's output alive.
        mem = out[-1][-1].clone()
        syn = out[1][-1].clone() if spec.synaptic else None
        spk = out[0][-1].clone() if spec.recurrence != RECURRENCE_NONE else None
        self.final.append((mem, syn, spk))


def once_per_sequence(key: tuple, compute):
    """``compute()``, evaluated once per call of a :class:`ChunkedForward` model and shared by all
    of its time chunks and their recomputes; outside one, simply ``compute()``.

    For values that do not depend on the time chunk, such as the first layer's output for a
    static input (``fusedsnn.models``): without this every chunk would compute it again, and
    again in its recompute. ``key`` names the value within the call (include what it depends
    on). The value keeps its own graph (its saved tensors are not the chunk's to drop), so its
    backward runs once, after every chunk has added its gradient.
    """
    chunk = _active_chunk()
    if chunk is None:
        return compute()
    value = chunk.shared.get(key)
    if value is None:
        # Innermost saved-tensor hooks win: these keep what compute() saves as autograd would,
        # instead of the chunk's checkpoint dropping it (the recompute finds the value cached
        # and must save what the first run's checkpoint counted: nothing from here).
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            value = compute()
        chunk.shared[key] = value
    return value


class _Steps:
    """Temporarily sets a fusedsnn sequence model's ``num_steps`` (static input, one chunk)."""

    def __init__(self, model: nn.Module, steps: Optional[int]) -> None:
        self.model, self.steps = model, steps

    def __enter__(self):
        if self.steps is not None:
            self.saved, self.model.num_steps = self.model.num_steps, self.steps

    def __exit__(self, *exc):
        if self.steps is not None:
            self.model.num_steps = self.saved
        return False


def _time_major_outputs(out, name: str, steps: int) -> list:
    flat = list(out) if isinstance(out, (tuple, list)) else [out]
    for i, t in enumerate(flat):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != steps:
            raise ValueError(
                f"memory_lean(time_chunk=...) needs every output of {name}.forward to be a tensor with time first "
                f"([T, ...]); output {i} of a {steps}-step chunk is "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    return flat


class ChunkedForward:
    """``model.forward`` replaced by :func:`memory_lean` (``time_chunk=n``): the whole network
    runs ``n`` time steps at a time, each chunk under ``torch.utils.checkpoint`` (non-reentrant),
    so its forward keeps only each chunk's input and boundary states and the chunk's outputs; the
    backward re-runs one chunk at a time (last to first) and differentiates it. Every fused
    neuron call starts a chunk from the state the same call ended the previous chunk in (call
    order within the forward, so a layer called twice is two calls).

    The model's first argument is the sequence ``[T, B, ...]`` (sliced per chunk; other arguments
    are passed to every chunk unchanged), or a fusedsnn model's static ``[B, ...]`` input with
    ``num_steps`` steps. Every output must be time-first (``[T, ...]``); they are concatenated.
    The layers between the neurons must treat time steps independently (Linear, Conv2d, pooling,
    dropout: checkpoint replays its random state). A value that is the same for every chunk can
    be computed once per call with :func:`once_per_sequence` (the fusedsnn models do so for a
    static input's first layer).
    """

    def __init__(self, model: nn.Module, time_chunk: int) -> None:
        self.model = model
        self.time_chunk = time_chunk

    def __call__(self, x: Tensor, *args, **kwargs):
        from torch.utils.checkpoint import checkpoint

        model = self.model
        forward = type(model).forward
        static = False
        if hasattr(model, "_time_major") and hasattr(model, "num_steps"):  # fusedsnn.models
            x, static = model._time_major(x)
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            raise ValueError(f"memory_lean(time_chunk=...) needs a time-first tensor input [T, B, ...], got "
                             f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
        T = model.num_steps if static else x.shape[0]
        if not torch.is_grad_enabled() or T <= self.time_chunk:
            return forward(model, x, *args, **kwargs)
        spans = [(t, min(T, t + self.time_chunk)) for t in range(0, T, self.time_chunk)]
        name = type(model).__name__
        pieces: list[list[Tensor]] = []
        shared: dict = {}
        carried: Optional[list[tuple]] = None
        structure = None

        def run(t0: int, t1: int, x_part: Tensor, *flat_states):
            states = None if t0 == 0 else [tuple(flat_states[i:i + 3]) for i in range(0, len(flat_states), 3)]
            chunk = _Chunk(states, shared)
            previous, _chunk_local.chunk = _active_chunk(), chunk
            try:
                with _Steps(model, t1 - t0 if static else None):
                    out = forward(model, x_part, *args, **kwargs)
            finally:
                _chunk_local.chunk = previous
            if states is not None and len(chunk.final) != len(states):
                raise RuntimeError(
                    f"memory_lean(time_chunk=...): the model called {len(chunk.final)} fused neuron layers in one "
                    f"time chunk and {len(states)} in the first; chunked execution needs the same calls in every "
                    "chunk")
            return out, [s for final in chunk.final for s in final]

        for k, (t0, t1) in enumerate(spans):
            x_part = x if static else x[t0:t1]
            flat = [] if carried is None else [s for final in carried for s in final]
            if k == len(spans) - 1:
                # The last chunk is the first the backward needs: it keeps what it saves, which
                # spares recomputing it.
                out, final = run(t0, t1, x_part, *flat)
            else:
                out, final = checkpoint(run, t0, t1, x_part, *flat, use_reentrant=False)
            if structure is None:
                structure = type(out) if isinstance(out, (tuple, list)) else None
            pieces.append(_time_major_outputs(out, name, t1 - t0))
            carried = [tuple(final[i:i + 3]) for i in range(0, len(final), 3)]
        outs = [torch.cat(parts) for parts in zip(*pieces)]
        if structure is None:
            return outs[0]
        return structure(*outs) if hasattr(structure, "_fields") else structure(outs)


# ---------------------------------------------------------------------------------------------
# whole models
# ---------------------------------------------------------------------------------------------

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

    ``spike_products``: whether the converted ``Linear`` layers compute their product and weight
    gradient from which inputs spiked (:func:`spike_linear`'s ``spike_product``: CPU only, at
    least :data:`SPIKE_PRODUCT_MIN_OUT` outputs, inputs that are spikes at most 3/4 non-zero;
    results equal the dense product's to rounding). None (default): on with ``time_chunk``, whose
    results already equal the default's only to rounding, and where it pays for the recomputed
    forward; off without, which keeps the default's bits.

    Converting twice with the same arguments changes nothing; ``time_chunk=None`` removes an
    earlier chunking.
    """
    from .layers import _FusedLIF

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if saved_state not in SAVED_STATES:
        raise ValueError(f"saved_state must be one of {SAVED_STATES}, got {saved_state!r}")
    if time_chunk is not None and (isinstance(time_chunk, bool) or not isinstance(time_chunk, int) or time_chunk < 1):
        raise ValueError(f"time_chunk must be None or a positive int (time steps per chunk), got {time_chunk!r}")
    if spike_products is not None and not isinstance(spike_products, bool):
        raise ValueError(f"spike_products must be None, True or False, got {spike_products!r}")
    product = time_chunk is not None if spike_products is None else spike_products
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = SpikeLinear
        if type(module) is SpikeLinear:
            module.spike_product = product
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
