"""Persistent Triton kernels for the all-to-all recurrent LIF (the ``"triton"`` backend of
:mod:`fusedsnn.ops.all_to_all`). The eager twin is ``lif_all_to_all_reference.py``; read it first.

Layout, top to bottom: the ``@triton.jit`` forward and backward kernels, then the launchers.

Step-to-step dependency. Step ``t`` needs every spike of step ``t-1`` of the same batch row, and
nothing of other rows. So each program owns a block of ``BLOCK_B`` batch rows and *all* ``N``
neurons of them, and walks the whole sequence: its spikes never leave the SM between steps, and
no grid-wide barrier or cooperative launch is needed. The recurrent weight (``[N, N]``, at most
``MAX_N`` = 64 so it stays in registers: 64 * 64 fp32 over 4 warps is 32 registers a thread) is
loaded once before the loop, then ``W @ spk`` is one ``tl.dot`` per step
(``input_precision="ieee"``: full fp32, which ptxas lowers to FMA loops rather than TF32 tensor
cores; TF32 would round the weights to 10 mantissa bits and move spikes). Larger N would have to
re-read W from L2 every step or split the neurons across CTAs with a grid barrier per step; that
is not implemented here: such layers run the host/reference op, or on a GPU the per-step path.

The backward is the same shape in reverse: per step the elementwise adjoint gives ``G_t`` (stored
as ``grad_x[t]``), and ``G_t @ W`` (one ``tl.dot``) is the spike gradient carried to step
``t-1``. ``dW`` and ``db`` are one matrix product over all steps, formed by the launcher.
Launches pass ``enable_fp_fusion=False`` as the elementwise kernels do.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..layout import dense_empty, surrogate_constants
from ..reference.all_to_all import all_to_all_parameter_gradients
from ...spec import LIFSpec
from .launch import HAS_TRITON, interpreter_enabled, launchable

Tensor = torch.Tensor

#: Largest N the register-resident persistent kernel serves.
MAX_N = 64
BLOCK_B = 16

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T"])
    def lif_all_to_all_forward_kernel(
        x_ptr, wt_ptr, bias_ptr, mem0_ptr, syn0_ptr, spk0_ptr, beta_ptr, thr_ptr, alpha_ptr,
        spk_ptr, syn_ptr, mem_ptr, trace_ptr, pre_ptr,
        T, B, N, gsf, c0, c1,
        SYNAPTIC: tl.constexpr, RESET: tl.constexpr, IMMEDIATE_RESET: tl.constexpr, SURROGATE: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr, HAS_SPK0: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_N)
        col_ok = cols < N
        mask = (rows < B)[:, None] & col_ok[None, :]
        offs = rows[:, None] * N + cols[None, :]
        M = B * N
        gsf = tl.cast(gsf, tl.float32)
        c0 = tl.cast(c0, tl.float32)
        c1 = tl.cast(c1, tl.float32)
        # wt[k, n] = W[n, k]: rec = spk @ wt. Loaded once, held for the whole sequence.
        wt = tl.load(wt_ptr + cols[:, None] * N + cols[None, :], mask=col_ok[:, None] & col_ok[None, :], other=0.0)
        beta = tl.load(beta_ptr + cols, mask=col_ok, other=0.0)[None, :]
        thr = tl.load(thr_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if HAS_BIAS:
            bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if HAS_MEM0:
            mem = tl.load(mem0_ptr + offs, mask=mask, other=0.0)
        else:
            mem = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        if SYNAPTIC:
            if HAS_SYN0:
                syn = tl.load(syn0_ptr + offs, mask=mask, other=0.0)
            else:
                syn = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        if HAS_SPK0:
            spk = tl.load(spk0_ptr + offs, mask=mask, other=0.0)
        else:
            spk = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        out_off = offs
        for _t in range(T):
            rec = tl.dot(spk, wt, input_precision="ieee")
            if HAS_BIAS:
                rec = rec + bias
            xt = tl.load(x_ptr + out_off, mask=mask, other=0.0)
            r = tl.where(mem - thr > 0, 1.0, 0.0)
            if SYNAPTIC:
                s = alpha * syn + xt
                s = s + rec
                base = beta * mem + s
            else:
                base = beta * mem + xt
                base = base + rec
            if RESET == 0:
                m_pre = base - r * thr
            elif RESET == 1:
                m_pre = base - base * r
            else:
                m_pre = base
            h = m_pre - thr
            # Padded rows/columns never spike, so they add nothing to the next step's product.
            spk_t = tl.where(mask & (h > 0), 1.0, 0.0) * gsf
            # The surrogates, inlined for the same reason as in lif.py.
            # BEGIN GENERATED: surrogate derivative d of h (fusedsnn/surrogate.py)
            if SURROGATE == 0:  # atan: c0 = pi/2 * alpha, c1 = alpha / 2
                scaled = c0 * h
                d = tl.math.div_rn(c1, 1.0 + scaled * scaled)
            elif SURROGATE == 1:  # fast_sigmoid: c0 = slope
                denom = c0 * tl.abs(h) + 1.0
                d = tl.math.div_rn(1.0, denom * denom)
            elif SURROGATE == 2:  # sigmoid: c0 = slope, overflow-free symmetric form
                e = tl.exp(-c0 * tl.abs(h))
                d = tl.math.div_rn(c0 * e, (e + 1.0) * (e + 1.0))
            elif SURROGATE == 3:  # straight_through_estimator
                d = tl.full(h.shape, 1.0, tl.float32)
            elif SURROGATE == 4:  # triangular: snnTorch's sign: -c0 where h >= 0
                d = tl.where(h >= 0.0, -c0, c0)
            elif SURROGATE == 5:  # spike_rate_escape: c0 = beta, c1 = slope
                d = c1 * tl.exp(-c0 * tl.abs(h - 1.0))
            else:  # disabled
                d = tl.full(h.shape, 0.0, tl.float32)
            # END GENERATED
            tl.store(trace_ptr + out_off, d, mask=mask)
            if IMMEDIATE_RESET:
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
            spk = spk_t
            out_off += M

    @triton.jit(do_not_specialize=["T"])
    def lif_all_to_all_backward_kernel(
        grad_spk_ptr, grad_syn_ptr, grad_mem_ptr, trace_ptr, mem_hist_ptr, syn_hist_ptr, pre_ptr,
        mem0_ptr, syn0_ptr, w_ptr, beta_ptr, thr_ptr, alpha_ptr,
        grad_x_ptr, grad_mem0_ptr, grad_syn0_ptr, grad_spk0_ptr, part_beta_ptr, part_thr_ptr, part_alpha_ptr,
        T, B, N, gsf,
        SYNAPTIC: tl.constexpr, RESET: tl.constexpr, IMMEDIATE_RESET: tl.constexpr,
        HAS_GRAD_SPK: tl.constexpr, HAS_GRAD_SYN: tl.constexpr, HAS_GRAD_MEM: tl.constexpr,
        HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr,
        NEED_BETA: tl.constexpr, NEED_THR: tl.constexpr, NEED_ALPHA: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_N)
        col_ok = cols < N
        mask = (rows < B)[:, None] & col_ok[None, :]
        offs = rows[:, None] * N + cols[None, :]
        M = B * N
        gsf = tl.cast(gsf, tl.float32)
        # w[i, j] = W[i, j]: the spike gradient of step t-1 is G_t @ w.
        w = tl.load(w_ptr + cols[:, None] * N + cols[None, :], mask=col_ok[:, None] & col_ok[None, :], other=0.0)
        beta = tl.load(beta_ptr + cols, mask=col_ok, other=0.0)[None, :]
        thr = tl.load(thr_ptr + cols, mask=col_ok, other=0.0)[None, :]
        zeros = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if HAS_MEM0:
            mem0 = tl.load(mem0_ptr + offs, mask=mask, other=0.0)
        else:
            mem0 = zeros
        if SYNAPTIC:
            if HAS_SYN0:
                syn0 = tl.load(syn0_ptr + offs, mask=mask, other=0.0)
            else:
                syn0 = zeros
        carry_mem = zeros
        carry_syn = zeros
        carry_spk = zeros
        acc_beta = zeros
        acc_thr = zeros
        acc_alpha = zeros
        off = (T - 1).to(tl.int64) * M + offs
        for _i in range(T):
            # Step t > 0 exactly where off >= M; step 0 reads the initial states instead.
            has_prev = off >= M
            prev_off = tl.where(has_prev, off - M, off)
            mp = tl.where(has_prev, tl.load(mem_hist_ptr + prev_off, mask=mask, other=0.0), mem0)
            g_mem = carry_mem
            if HAS_GRAD_MEM:
                g_mem = tl.load(grad_mem_ptr + off, mask=mask, other=0.0) + carry_mem
            g_spk = carry_spk
            if HAS_GRAD_SPK:
                g_spk = tl.load(grad_spk_ptr + off, mask=mask, other=0.0) + carry_spk
            r = tl.where(mp - thr > 0, 1.0, 0.0)
            g_pre = g_mem
            if IMMEDIATE_RESET:
                m_pre = tl.load(pre_ptr + off, mask=mask, other=0.0)
                do_reset = tl.where(m_pre - thr > 0, 1.0, 0.0) - r
                if RESET == 0:
                    g_do_reset = -(thr * g_mem)
                    acc_thr = acc_thr - do_reset * g_mem
                else:
                    g_do_reset = -(m_pre * g_mem)
                    g_pre = g_mem - do_reset * g_mem
                g_spk = g_spk + tl.math.div_rn(g_do_reset, gsf)
            g_h = g_spk * gsf * tl.load(trace_ptr + off, mask=mask, other=0.0)
            g_pre = g_pre + g_h
            acc_thr = acc_thr - g_h
            if RESET == 0:
                acc_thr = acc_thr - r * g_pre
                g_base = g_pre
            elif RESET == 1:
                g_base = g_pre - r * g_pre
            else:
                g_base = g_pre
            g_s = g_base
            if SYNAPTIC:
                if HAS_GRAD_SYN:
                    g_s = g_base + tl.load(grad_syn_ptr + off, mask=mask, other=0.0) + carry_syn
                else:
                    g_s = g_base + carry_syn
                if NEED_ALPHA:
                    sp = tl.where(has_prev, tl.load(syn_hist_ptr + prev_off, mask=mask, other=0.0), syn0)
                    acc_alpha = acc_alpha + sp * g_s
                carry_syn = alpha * g_s
            g_s = tl.where(mask, g_s, 0.0)
            tl.store(grad_x_ptr + off, g_s, mask=mask)
            acc_beta = acc_beta + mp * g_base
            carry_mem = beta * g_base
            carry_spk = tl.dot(g_s, w, input_precision="ieee")
            off -= M
        tl.store(grad_mem0_ptr + offs, carry_mem, mask=mask)
        tl.store(grad_spk0_ptr + offs, carry_spk, mask=mask)
        if SYNAPTIC:
            tl.store(grad_syn0_ptr + offs, carry_syn, mask=mask)
        # Per-neuron sums over time; the launcher sums over the batch (a tl.sum here would be
        # a @jit helper of triton.language, which the launch-time interpreter switch cannot call).
        if NEED_BETA:
            tl.store(part_beta_ptr + offs, acc_beta, mask=mask)
        if NEED_THR:
            tl.store(part_thr_ptr + offs, acc_thr, mask=mask)
        if NEED_ALPHA:
            tl.store(part_alpha_ptr + offs, acc_alpha, mask=mask)


def block_n(N: int) -> int:
    return max(16, triton.next_power_of_2(N))


def unsupported_reason(x: Tensor) -> Optional[str]:
    """None when the persistent kernel can run ``x: [T, B, N]``, else why not."""
    if not HAS_TRITON:
        return "triton is not installed"
    if x.dtype != torch.float32:
        return f"the all-to-all triton kernel takes float32 input, got {x.dtype}"
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreter_enabled()):
        return "the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    if x.shape[-1] > MAX_N:
        return f"the persistent all-to-all kernel holds W in registers for N <= {MAX_N}, got N={x.shape[-1]}"
    return None


def _c(t: Optional[Tensor], dummy: Tensor) -> tuple[Tensor, bool]:
    if t is None or t.numel() == 0:
        return dummy, False
    return t.to(torch.float32).contiguous(), True


def lif_all_to_all_forward_triton(x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, spec: LIFSpec):
    """Same contract as :func:`lif_all_to_all_reference.lif_all_to_all_forward_reference`."""
    T, B, N = x.shape
    spk, mem, trace = (dense_empty(x) for _ in range(3))
    syn = dense_empty(x) if spec.synaptic else x.new_empty(0)
    pre = dense_empty(x) if spec.immediate_reset else x.new_empty(0)
    if T == 0 or B == 0:
        return spk, syn, mem, trace, pre
    dummy = trace
    bias_c, has_bias = _c(bias, dummy)
    mem0_c, has_mem0 = _c(mem0, dummy)
    syn0_c, has_syn0 = _c(syn0 if spec.synaptic else None, dummy)
    spk0_c, has_spk0 = _c(spk0, dummy)
    c0, c1 = surrogate_constants(spec)
    grid = (triton.cdiv(B, BLOCK_B),)
    launchable(lif_all_to_all_forward_kernel)[grid](
        x.contiguous(), weight.t().contiguous(), bias_c, mem0_c, syn0_c, spk0_c, beta.contiguous(),
        thr.contiguous(), alpha.contiguous() if spec.synaptic else dummy,
        spk, syn if spec.synaptic else dummy, mem, trace, pre if spec.immediate_reset else dummy,
        T, B, N, float(spec.graded_spikes_factor), float(c0), float(c1),
        SYNAPTIC=spec.synaptic, RESET=spec.reset, IMMEDIATE_RESET=spec.immediate_reset,
        SURROGATE=spec.surrogate.code, HAS_BIAS=has_bias, HAS_MEM0=has_mem0, HAS_SYN0=has_syn0,
        HAS_SPK0=has_spk0, BLOCK_B=BLOCK_B, BLOCK_N=block_n(N), num_warps=4, enable_fp_fusion=False,
    )
    return spk, syn, mem, trace, pre


def lif_all_to_all_backward_triton(grad_spk, grad_syn, grad_mem, trace, mem_hist, syn_hist, spk_hist, pre,
                              mem0, syn0, spk0, weight, beta, thr, alpha, spec: LIFSpec, needs):
    """Same contract as :func:`lif_all_to_all_reference.lif_all_to_all_backward_reference`."""
    need_w, need_b, need_beta, need_thr, need_alpha = needs
    need_alpha = need_alpha and spec.synaptic
    T, B, N = trace.shape
    grad_x = dense_empty(trace)
    grad_mem0, grad_syn0, grad_spk0 = (trace.new_zeros(B, N) for _ in range(3))
    programs = triton.cdiv(B, BLOCK_B) if B else 0
    parts = [trace.new_zeros(B, N) if n else trace.new_empty(0) for n in (need_beta, need_thr, need_alpha)]
    if T > 0 and B > 0:
        dummy = trace
        gs, has_gs = _c(grad_spk, dummy)
        gy, has_gy = _c(grad_syn if spec.synaptic else None, dummy)
        gm, has_gm = _c(grad_mem, dummy)
        mem0_c, has_mem0 = _c(mem0, dummy)
        syn0_c, has_syn0 = _c(syn0 if spec.synaptic else None, dummy)
        launchable(lif_all_to_all_backward_kernel)[(programs,)](
            gs, gy, gm, trace.contiguous(), mem_hist.contiguous(), syn_hist.contiguous() if spec.synaptic else dummy,
            pre.contiguous() if spec.immediate_reset else dummy, mem0_c, syn0_c, weight.contiguous(),
            beta.contiguous(), thr.contiguous(), alpha.contiguous() if spec.synaptic else dummy,
            grad_x, grad_mem0, grad_syn0, grad_spk0,
            *(p if p.numel() else dummy for p in parts),
            T, B, N, float(spec.graded_spikes_factor),
            SYNAPTIC=spec.synaptic, RESET=spec.reset, IMMEDIATE_RESET=spec.immediate_reset,
            HAS_GRAD_SPK=has_gs, HAS_GRAD_SYN=has_gy, HAS_GRAD_MEM=has_gm, HAS_MEM0=has_mem0,
            HAS_SYN0=has_syn0, NEED_BETA=need_beta, NEED_THR=need_thr, NEED_ALPHA=need_alpha,
            BLOCK_B=BLOCK_B, BLOCK_N=block_n(N), num_warps=4, enable_fp_fusion=False,
        )
    grad_w, grad_b = all_to_all_parameter_gradients(grad_x, spk_hist, spk0, need_w, need_b)
    reduced = [p.sum(0) if p.numel() else p for p in parts]
    return (grad_x, grad_mem0, grad_syn0, grad_spk0, grad_w, grad_b, *reduced)
