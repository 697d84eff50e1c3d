"""Spikes stored as bits: a tensor of ``0`` and one value ``c`` kept as 1 bit per element plus ``c``.

:func:`pack_spikes` refuses (``None``) anything that is not spikes, so a caller falls back to
keeping the float tensor; :meth:`PackedSpikes.unpack` reproduces the tensor bit for bit. On a
CUDA device both run as one-pass Triton kernels on the integer view
(:mod:`fusedsnn.backends.triton.spike_bits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..backends.triton import spike_bits as spike_bits_triton

Tensor = torch.Tensor

__all__ = ["PackedSpikes", "pack_spikes"]

_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64,
             torch.float16: torch.int16, torch.bfloat16: torch.int16}
_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)


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
    """``bool [256, 8]``: bit k of each byte value, built once per device so that an unpack is
    one gather on the device, with no Python loop over bits."""
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
    return spike_bits_triton.HAS_TRITON


def _bit_pattern(value: Tensor) -> int:
    """The bits of a 0-dim float tensor as a signed Python int of its width."""
    return int(value.detach().reshape(1).view(_INT_VIEW[value.dtype]).item())


def _pack_bool(mask: Tensor, use_numpy: Optional[bool] = None) -> Tensor:
    """``bool [n]`` -> ``uint8 [ceil(n / 8)]``, little-endian bit order (numpy on the CPU,
    torch ops elsewhere)."""
    n = mask.numel()
    if use_numpy if use_numpy is not None else mask.device.type == "cpu":

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
