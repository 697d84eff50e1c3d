"""Triton kernels that store spikes 1 bit per element and restore them, for ``fusedsnn.memory``
on a GPU; ``fusedsnn.memory._pack_bool`` / ``PackedSpikes.unpack`` hold the plain PyTorch twin
(numpy's ``packbits`` on the CPU).

Both kernels work on the integer view of the float tensor (int16/int32/int64 for 16/32/64-bit
floats), so the value ``c`` and ``+0.0`` are compared and written as bit patterns: restoring is
exact for every dtype, and ``-0.0`` is told apart from ``+0.0``.

One pass each. The first CUDA run of the memory section found the PyTorch pack path holding
137 MiB of temporaries for a 61 MiB spike tensor (``count_nonzero`` widens to int64 on CUDA), so
the lean mode kept more at its peak than the default; here the pack reads the spikes once and
writes only the bits and a one-word "not spikes" flag. Element ``i`` is bit ``i % 8`` of byte
``i // 8`` (little-endian bit order, as numpy's ``packbits(bitorder="little")``).
"""

from __future__ import annotations

import torch

from .launch import HAS_TRITON, compilable, launchable

if HAS_TRITON:
    import triton
    import triton.language as tl

Tensor = torch.Tensor

#: Bytes of bits per program (8 times as many elements): 1024 elements, 4 warps.
BLOCK_BYTES = 128
NUM_WARPS = 4

if HAS_TRITON:

    @triton.jit
    def pack_spike_bits_kernel(x_ptr, bits_ptr, not_spikes_ptr, value_bits, n, BLOCK_BYTES: tl.constexpr):
        """``x_ptr``: the integer view of ``n`` elements; byte ``j`` of ``bits_ptr`` gets bit
        ``k`` set where element ``8 j + k`` equals ``value_bits``; ``not_spikes_ptr[0]`` is
        set to 1 if any element is neither ``+0.0`` (all bits zero) nor ``value_bits``."""
        pid = tl.program_id(0).to(tl.int64)
        byte = pid * BLOCK_BYTES + tl.arange(0, BLOCK_BYTES)
        word = tl.full((BLOCK_BYTES,), 0, tl.int32)
        stray = tl.full((BLOCK_BYTES,), 0, tl.int32)
        # Eight strided loads instead of one [BLOCK, 8] tile and a reduction: together they
        # read every byte of the same cache lines, and the kernel needs no @jit helper
        # (tl.sum), which the interpreter cannot call (see launch.launchable).
        for k in tl.static_range(8):
            idx = byte * 8 + k
            inside = idx < n
            v = tl.load(x_ptr + idx, mask=inside, other=0)
            is_c = v == value_bits
            word = word | tl.where(is_c, 1 << k, 0)
            stray = stray | tl.where(inside & (v != 0) & (v != value_bits), 1, 0)
        tl.store(bits_ptr + byte, word.to(tl.uint8), mask=byte * 8 < n)
        # Every program that finds a stray element writes the same 1: no atomics needed.
        tl.store(not_spikes_ptr + byte * 0, stray, mask=stray != 0)

    @triton.jit
    def unpack_spike_bits_kernel(bits_ptr, out_ptr, value_bits, n, BLOCK_BYTES: tl.constexpr):
        """The inverse: element ``i`` of the integer view ``out_ptr`` becomes ``value_bits``
        where bit ``i % 8`` of byte ``i // 8`` is set, else 0."""
        pid = tl.program_id(0).to(tl.int64)
        byte = pid * BLOCK_BYTES + tl.arange(0, BLOCK_BYTES)
        word = tl.load(bits_ptr + byte, mask=byte * 8 < n, other=0).to(tl.int32)
        for k in tl.static_range(8):
            idx = byte * 8 + k
            on = ((word >> k) & 1) != 0
            v = tl.where(on, value_bits, 0)
            tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=idx < n)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(triton.cdiv(n, 8), BLOCK_BYTES),)


def pack_spike_bits(ints: Tensor, value_bits: int) -> tuple[Tensor, Tensor]:
    """``ints``: contiguous 1-D integer view of the elements (int16/int32/int64). Returns
    ``(bits: uint8 [ceil(n / 8)], not_spikes: int32 [1])``; ``not_spikes`` is 1 when an element
    is neither ``+0.0`` nor ``value_bits`` (the bits are then meaningless). Launches only: no
    synchronisation with the device."""
    n = ints.numel()
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8, device=ints.device)
    not_spikes = torch.zeros(1, dtype=torch.int32, device=ints.device)
    if n:
        launchable(pack_spike_bits_kernel)[_grid(n)](ints, bits, not_spikes, value_bits, n,
                                                       BLOCK_BYTES=BLOCK_BYTES, num_warps=NUM_WARPS)
    return bits, not_spikes


def unpack_spike_bits(bits: Tensor, value_bits: int, n: int, int_dtype: torch.dtype) -> Tensor:
    """The ``n`` elements of ``bits`` as ``value_bits`` (set) and 0, an ``int_dtype`` tensor
    (view it as the float dtype)."""
    out = torch.empty(n, dtype=int_dtype, device=bits.device)
    if n:
        launchable(unpack_spike_bits_kernel)[_grid(n)](bits, out, value_bits, n,
                                                         BLOCK_BYTES=BLOCK_BYTES, num_warps=NUM_WARPS)
    return out
