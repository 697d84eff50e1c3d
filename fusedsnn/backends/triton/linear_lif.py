"""The fused Linear + LIF op on GPUs (contract in :mod:`fusedsnn.backends.linear_lif`).

Forward: each program owns an output tile of ``BLOCK_B`` samples x ``BLOCK_N`` neurons and walks
all ``T`` steps. Per step it forms the tile's input current ``x_t W^T + b`` with ``tl.dot`` over
``K`` in ``BLOCK_K`` slices (``input_precision="ieee"``: full float32 products, no TF32), then
runs the LIF step of ``backends/triton/lif.py`` (same operation order) with ``mem``/``syn`` in
float32 registers, and writes ``spk``, ``mem`` (``syn``, ``pre``). The current never leaves
registers: per step the tile reads ``x_t`` and ``W`` (``W`` from L2 after the first programs)
and writes only the outputs. A static input (time stride 0) re-reads the same ``[B, K]``.

The dot sums ``K`` in its own order, so the current differs from cuBLAS's ``nn.Linear`` in the
last bits (the op's stated tolerance); the LIF step after it is the fused neuron's exactly.

Backward: the LIF backward kernel (:func:`.lif.lif_backward_triton`) gives the current's
gradient ``G: [T, B, N]``; ``grad_x``, ``dW``, ``db`` are cuBLAS products over all steps
(:func:`fusedsnn.backends.linear_lif.linear_lif_backward`).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

from ..linear_lif import forward_outputs, linear_lif_backward
from ...spec import LIFSpec
from .launch import HAS_TRITON, interpreter_enabled, launchable, new_output
from .lif import lif_backward_triton

Tensor = torch.Tensor

#: Tile of the forward: samples x neurons per program, and the K slice of one tl.dot (every
#: dimension >= 16 for tl.dot). A float32 "ieee" dot is CUDA-core FMAs with both operand tiles
#: in registers: ptxas (sm_90, no GPU) gives 109-112 registers and no spills at 16 x 32 x 16 and
#: 4 warps, against 152-190 at 16 x 64 or 32 x 32 and 186-255 with spills at 16 x 64 x 32.
#: Not tuned on a GPU.
BLOCK_B = 16
BLOCK_N = 32
BLOCK_K = 16
NUM_WARPS = 4

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T"])
    def linear_lif_forward_kernel(
        x_ptr, w_ptr, bias_ptr, mem0_ptr, syn0_ptr, beta_ptr, thr_ptr, alpha_ptr,
        spk_ptr, syn_ptr, mem_ptr, pre_ptr,
        T, B, N, K, stride_x_t, stride_x_b, stride_w_n, gsf,
        SYNAPTIC: tl.constexpr, RESET: tl.constexpr, IMMEDIATE_RESET: tl.constexpr,
        ZERO_BEFORE_DECAY: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MEM0: tl.constexpr,
        HAS_SYN0: tl.constexpr, STORE_PRE: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
        rn = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        mask_b = rb < B
        mask_n = rn < N
        mask = mask_b[:, None] & mask_n[None, :]
        gsf = tl.cast(gsf, tl.float32)
        beta = tl.load(beta_ptr + rn, mask=mask_n, other=0.0)[None, :]
        thr = tl.load(thr_ptr + rn, mask=mask_n, other=0.0)[None, :]
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + rn, mask=mask_n, other=0.0)[None, :]
        if HAS_BIAS:
            bias = tl.load(bias_ptr + rn, mask=mask_n, other=0.0)[None, :]
        state_off = rb[:, None] * N + rn[None, :]
        if HAS_MEM0:
            mem = tl.load(mem0_ptr + state_off, mask=mask, other=0.0).to(tl.float32)
        else:
            mem = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        if SYNAPTIC:
            if HAS_SYN0:
                syn = tl.load(syn0_ptr + state_off, mask=mask, other=0.0).to(tl.float32)
            else:
                syn = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        # x tile [BLOCK_B, BLOCK_K] of step t, W^T tile [BLOCK_K, BLOCK_N] (W is [N, K], K unit stride)
        x_rows = x_ptr + rb[:, None] * stride_x_b + rk[None, :]
        w_cols = w_ptr + rn[None, :] * stride_w_n + rk[:, None]
        x_t = tl.cast(0, tl.int64)
        out_off = state_off
        BN = B.to(tl.int64) * N
        for _t in range(T):
            acc = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
            for k0 in range(0, K, BLOCK_K):
                k_ok = rk + k0 < K
                xk = tl.load(x_rows + x_t + k0, mask=mask_b[:, None] & k_ok[None, :], other=0.0)
                wk = tl.load(w_cols + k0, mask=k_ok[:, None] & mask_n[None, :], other=0.0)
                acc = tl.dot(xk, wk, acc, input_precision="ieee")
            if HAS_BIAS:
                xt = acc + bias
            else:
                xt = acc
            # The LIF step, as lif_forward_kernel's (RECURRENCE == 0).
            r = tl.where(mem - thr > 0, 1.0, 0.0)
            if SYNAPTIC:
                s = alpha * syn + xt
                base = beta * mem + s
            elif ZERO_BEFORE_DECAY:
                base = beta * ((1.0 - r) * mem) + xt
            else:
                base = beta * mem + xt
            if RESET == 0:
                m_pre = base - r * thr
            elif RESET == 1 and not ZERO_BEFORE_DECAY:
                m_pre = base - base * r
            else:
                m_pre = base
            h = m_pre - thr
            spk_t = tl.where(h > 0, 1.0, 0.0) * gsf
            if IMMEDIATE_RESET:
                if STORE_PRE:
                    tl.store(pre_ptr + out_off, m_pre, mask=mask)
                do_reset = tl.math.div_rn(spk_t, gsf) - r
                if RESET == 0:
                    m = m_pre - do_reset * thr
                else:
                    m = m_pre - do_reset * m_pre
            else:
                m = m_pre
            tl.store(spk_ptr + out_off, spk_t, mask=mask)
            tl.store(mem_ptr + out_off, m, mask=mask)
            if SYNAPTIC:
                tl.store(syn_ptr + out_off, s, mask=mask)
                syn = s
            mem = m
            x_t += stride_x_t
            out_off += BN


def unsupported_reason(x: Tensor) -> Optional[str]:
    """None when the fused Linear + LIF kernel can run ``x: [T, B, K]``, else why not."""
    if not HAS_TRITON:
        return "triton is not installed"
    if x.dtype != torch.float32:
        return f"the fused Linear + LIF triton kernel takes float32 input, got {x.dtype}"
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreter_enabled()):
        return "the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    return None


def _c(t: Optional[Tensor], dummy: Tensor) -> tuple[Tensor, bool]:
    if t is None or t.numel() == 0:
        return dummy, False
    return t.to(torch.float32).contiguous(), True


def linear_lif_forward_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], mem0: Optional[Tensor],
                              syn0: Optional[Tensor], beta: Tensor, thr: Tensor, alpha: Tensor, spec: LIFSpec,
                              for_backward: bool = True):
    T, B, K = x.shape
    N = weight.shape[0]
    store_pre = spec.immediate_reset and for_backward
    spk, syn, mem, pre = forward_outputs(x, N, spec, for_backward, new_output)  # x is float32 here
    if T == 0 or B * N == 0:
        return spk, syn, mem, pre
    # One [B, K] slice with unit K stride; a static input keeps time stride 0 (no T copies).
    if x.stride(0) == 0:
        step = x[0].contiguous()
        x_k, stride_t = step, 0
    else:
        x_k = x if x.stride(2) == 1 and x.stride(1) == K else x.contiguous()
        stride_t = x_k.stride(0)
    stride_b = x_k.stride(-2) if B > 1 else K
    w = weight.contiguous()
    dummy = mem
    bias_c, has_bias = _c(bias, dummy)
    mem0_c, has_mem0 = _c(mem0, dummy)
    syn0_c, has_syn0 = _c(syn0 if spec.synaptic else None, dummy)
    grid = (triton.cdiv(B, BLOCK_B), triton.cdiv(N, BLOCK_N))
    launchable(linear_lif_forward_kernel)[grid](
        x_k, w, bias_c, mem0_c, syn0_c, beta.contiguous(), thr.contiguous(),
        alpha.contiguous() if spec.synaptic else dummy,
        spk, syn if spec.synaptic else dummy, mem, pre if store_pre else dummy,
        T, B, N, K, stride_t, stride_b, w.stride(0), float(spec.graded_spikes_factor),
        SYNAPTIC=spec.synaptic, RESET=spec.reset, IMMEDIATE_RESET=spec.immediate_reset,
        ZERO_BEFORE_DECAY=spec.zero_before_decay, HAS_BIAS=has_bias, HAS_MEM0=has_mem0, HAS_SYN0=has_syn0,
        STORE_PRE=store_pre, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
        num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    return spk, syn, mem, pre


linear_lif_backward_triton = functools.partial(linear_lif_backward, lif_backward_triton)
