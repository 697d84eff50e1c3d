"""Triton kernels for the all-to-all recurrent LIF (the ``"triton"`` backend of
:mod:`fusedsnn.ops.all_to_all`), at any N, on float32, float16 and bfloat16 input. The eager
twin is ``backends/reference/all_to_all.py``; read it first.

Layout, top to bottom: the persistent forward and backward kernels (N <= 64), the per-step
forward and backward tile kernels (N > 64), then the launchers.

**Step-to-step dependency.** Step ``t`` needs every spike of step ``t-1`` of the same batch row,
and nothing of other rows.

**N <= 64: persistent.** Each program owns a block of ``BLOCK_B`` batch rows and *all* ``N``
neurons of them, and walks the whole sequence: its spikes never leave the SM between steps, and
no grid-wide barrier is needed. ``W`` (at most 64 * 64 fp32: 32 registers a thread over 4 warps)
is loaded once, then ``spk @ W^T`` is one ``tl.dot`` per step (``input_precision="ieee"``: full
fp32, FMA loops rather than TF32 tensor cores, which would round W to 10 mantissa bits and move
spikes). One launch per op, which is what keeps the fused op at or below snnTorch's cost at T=1
and tiny N (snnTorch launches a linear and a handful of elementwise kernels per step). 16-bit
inputs are widened to float32 by the launcher (exact), the same products in the same sums.

**N > 64: one launch per step, a grid of (batch-row, neuron) tiles.** Forward step ``t``:
``rec = spk[t-1] @ W^T + b`` for a ``BLOCK_M x BLOCK_N`` tile, a ``tl.dot`` per ``BLOCK_K``
slice of the N inputs, fused with that tile's LIF step; states go through the float32 ``mem`` /
``syn`` outputs (written at ``t``, read at ``t+1``). Why not the alternatives:

- *Persistent with a grid-wide barrier per step*: a tile of step ``t`` reads the spikes of every
  neuron tile of step ``t-1``, so all CTAs would meet at a barrier every step. Triton has no
  grid-sync primitive; one hand-made from atomics deadlocks unless every CTA is resident at once
  (not guaranteed without a cooperative launch, which Triton does not do), and its memory
  ordering would rest on unverified ``atomic``/``debug_barrier`` semantics. The kernel boundary
  is that barrier, with ordering the CUDA stream guarantees.
- *Split by batch rows only* (each program all N neurons of some rows, as for N <= 64): a row
  block then streams all of ``W`` (N^2 elements, 64 MiB in fp32 at N=4096) from L2/HBM every
  step, and with B/16 programs a small batch leaves most SMs idle. Tiling the neurons too gives
  ``ceil(B/BLOCK_M) * ceil(N/BLOCK_N)`` programs, each reading an ``N x BLOCK_N`` column of W.
- *Cost of per-step launches*: T launches of a few microseconds each, on the same stream, no host
  syncs and no allocation inside the loop: capturable by a CUDA graph (``torch.cuda.graphs`` /
  ``torch.compile(mode="reduce-overhead")``), which removes the host cost. At N > 64 each step's
  product is ``B * N^2`` multiply-adds, which outweighs a launch.

Products: float32 input keeps ``input_precision="ieee"`` (as above); float16/bfloat16 ``x`` and
``W`` feed ``tl.dot`` as they are, so it runs on tensor cores with float32 accumulation: spikes are
exactly 0/gsf in that dtype, products of 16-bit values are exact in float32, and only the
summation order differs from a float32 product of the same values. States, traces, the LIF
algebra and every gradient are float32; for a 16-bit ``x`` only ``spk`` is returned in
``x.dtype`` (the op's ``mem``/``syn``/``trace``/``pre`` stay float32 for the backward, and
``functional`` casts ``mem``/``syn`` for the caller). Triton 3.9's interpreter multiplies
bfloat16 dot operands as raw bits, so on CPU the launcher widens bf16 operands to float32 (same
products); the native bf16 dot is checked by compiling it (aot.py).

**Backward.** The same shape in reverse: per step the elementwise adjoint gives ``G_t`` (stored
as ``grad_x[t]``) and ``G_t @ W`` is the spike gradient carried to step ``t-1``: inside the
persistent kernel (N <= 64), or for N > 64 as the ``tl.dot`` of step ``t-1``'s tile kernel over
``grad_x[t]`` (written by the previous launch), fused with that step's adjoint. The membrane and
synaptic carries and the per-element sums for beta/threshold/alpha live in ``[B, N]`` float32
buffers that each tile reads and writes only at its own elements. ``G`` and ``W`` are float32
(``ieee``) whatever the input dtype. ``dW = sum_t G_t^T spk[t-1]`` and ``db = sum_t G_t`` are one
torch product each over all steps (``all_to_all_parameter_gradients``), ``grad_spk0 = G_0 @ W``
one more. Launches pass ``enable_fp_fusion=False`` as the elementwise kernels do.

Tile sizes (:func:`tile_sizes`) are chosen by the arguments above, not timed: no GPU was
available when they were written. :mod:`.aot` compiles every kernel for sm_80/sm_90 and records
registers and spills.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..layout import row_major_empty, surrogate_constants
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


    @triton.jit(do_not_specialize=["t"])
    def lif_all_to_all_step_forward_kernel(
        x_ptr, wt_ptr, bias_ptr, mem0_ptr, syn0_ptr, spk0_ptr, beta_ptr, thr_ptr, alpha_ptr,
        spk_ptr, syn_ptr, mem_ptr, trace_ptr, pre_ptr,
        t, B, N, gsf, c0, c1,
        SYNAPTIC: tl.constexpr, RESET: tl.constexpr, IMMEDIATE_RESET: tl.constexpr, SURROGATE: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr, HAS_SPK0: tl.constexpr,
        FIRST: tl.constexpr, IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        """Step ``t`` of the sequence for one ``BLOCK_M x BLOCK_N`` tile of (batch rows, neurons):
        ``rec = spk[t-1] @ W^T + b`` over all N inputs (``tl.dot`` per ``BLOCK_K`` slice), then
        the LIF step of the tile. States of step ``t-1`` are read from the float32 ``mem``/``syn``
        outputs the previous launch wrote (``FIRST``: from the initial states)."""
        # Offsets within one step are int32 (the launcher checks B * N < 2**31); the step's
        # int64 base moves the pointers (int64 offsets over a whole tile cost registers).
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < B
        col_ok = cols < N
        mask = row_ok[:, None] & col_ok[None, :]
        offs = rows[:, None] * N + cols[None, :]
        step = t.to(tl.int64) * B * N
        x_ptr += step
        spk_ptr += step
        syn_ptr += step
        mem_ptr += step
        trace_ptr += step
        pre_ptr += step
        out_off = offs
        gsf = tl.cast(gsf, tl.float32)
        c0 = tl.cast(c0, tl.float32)
        c1 = tl.cast(c1, tl.float32)
        rec = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        # The previous step's spikes (or spk0), in the dot's input type (that of wt): 0/gsf exactly.
        if FIRST:
            prev_spk_ptr = spk0_ptr
            prev_base = rows * N
        else:
            prev_spk_ptr = spk_ptr - B * N
            prev_base = rows * N
        if HAS_SPK0 or not FIRST:
            for k0 in range(0, N, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                k_ok = ks < N
                a = tl.load(prev_spk_ptr + prev_base[:, None] + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                            other=0.0).to(wt_ptr.dtype.element_ty)
                w = tl.load(wt_ptr + ks[:, None] * N + cols[None, :], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
                if IEEE:
                    rec += tl.dot(a, w, input_precision="ieee")
                else:
                    rec += tl.dot(a, w)
        if HAS_BIAS:
            rec = rec + tl.load(bias_ptr + cols, mask=col_ok, other=0.0)[None, :]
        beta = tl.load(beta_ptr + cols, mask=col_ok, other=0.0)[None, :]
        thr = tl.load(thr_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if FIRST:
            if HAS_MEM0:
                mem = tl.load(mem0_ptr + offs, mask=mask, other=0.0)
            else:
                mem = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        else:
            mem = tl.load(mem_ptr + out_off - B * N, mask=mask, other=0.0)
        xt = tl.load(x_ptr + out_off, mask=mask, other=0.0).to(tl.float32)
        r = tl.where(mem - thr > 0, 1.0, 0.0)
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + cols, mask=col_ok, other=0.0)[None, :]
            if FIRST:
                if HAS_SYN0:
                    syn = tl.load(syn0_ptr + offs, mask=mask, other=0.0)
                else:
                    syn = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
            else:
                syn = tl.load(syn_ptr + out_off - B * N, mask=mask, other=0.0)
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
        spk_t = tl.where(mask & (h > 0), 1.0, 0.0) * gsf
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
        tl.store(spk_ptr + out_off, spk_t.to(spk_ptr.dtype.element_ty), mask=mask)
        tl.store(mem_ptr + out_off, m, mask=mask)
        if SYNAPTIC:
            tl.store(syn_ptr + out_off, s, mask=mask)

    @triton.jit(do_not_specialize=["t"])
    def lif_all_to_all_step_backward_kernel(
        grad_spk_ptr, grad_syn_ptr, grad_mem_ptr, trace_ptr, mem_hist_ptr, syn_hist_ptr, pre_ptr,
        mem0_ptr, syn0_ptr, w_ptr, beta_ptr, thr_ptr, alpha_ptr,
        grad_x_ptr, carry_mem_ptr, carry_syn_ptr, part_beta_ptr, part_thr_ptr, part_alpha_ptr,
        t, B, N, gsf,
        SYNAPTIC: tl.constexpr, RESET: tl.constexpr, IMMEDIATE_RESET: tl.constexpr,
        HAS_GRAD_SPK: tl.constexpr, HAS_GRAD_SYN: tl.constexpr, HAS_GRAD_MEM: tl.constexpr,
        HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr,
        NEED_BETA: tl.constexpr, NEED_THR: tl.constexpr, NEED_ALPHA: tl.constexpr,
        FIRST: tl.constexpr, LAST: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        """Step ``t`` of the reverse loop for one tile: the spike gradient arriving from step
        ``t+1`` is ``G_{t+1} @ W`` over all N (``tl.dot`` per ``BLOCK_K`` slice; ``LAST``: none),
        then the LIF adjoint of the tile, storing ``G_t`` in ``grad_x[t]``. The membrane and
        synaptic carries and the per-element parameter sums live in ``[B, N]`` float32 buffers,
        each element read and written only by its own tile."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < B
        col_ok = cols < N
        mask = row_ok[:, None] & col_ok[None, :]
        offs = rows[:, None] * N + cols[None, :]
        step = t.to(tl.int64) * B * N
        grad_spk_ptr += step
        grad_syn_ptr += step
        grad_mem_ptr += step
        trace_ptr += step
        mem_hist_ptr += step
        syn_hist_ptr += step
        pre_ptr += step
        grad_x_ptr += step
        off = offs
        gsf = tl.cast(gsf, tl.float32)
        carry_spk = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        if not LAST:
            next_base = B * N + rows * N
            for k0 in range(0, N, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                k_ok = ks < N
                g = tl.load(grad_x_ptr + next_base[:, None] + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                            other=0.0)
                w = tl.load(w_ptr + ks[:, None] * N + cols[None, :], mask=k_ok[:, None] & col_ok[None, :], other=0.0)
                carry_spk += tl.dot(g, w, input_precision="ieee")
        beta = tl.load(beta_ptr + cols, mask=col_ok, other=0.0)[None, :]
        thr = tl.load(thr_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if FIRST:
            if HAS_MEM0:
                mp = tl.load(mem0_ptr + offs, mask=mask, other=0.0)
            else:
                mp = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        else:
            mp = tl.load(mem_hist_ptr + off - B * N, mask=mask, other=0.0)
        if LAST:
            carry_mem = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        else:
            carry_mem = tl.load(carry_mem_ptr + offs, mask=mask, other=0.0)
        g_mem = carry_mem
        if HAS_GRAD_MEM:
            g_mem = tl.load(grad_mem_ptr + off, mask=mask, other=0.0).to(tl.float32) + carry_mem
        g_spk = carry_spk
        if HAS_GRAD_SPK:
            g_spk = tl.load(grad_spk_ptr + off, mask=mask, other=0.0).to(tl.float32) + carry_spk
        acc_thr = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
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
            alpha = tl.load(alpha_ptr + cols, mask=col_ok, other=0.0)[None, :]
            if LAST:
                carry_syn = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
            else:
                carry_syn = tl.load(carry_syn_ptr + offs, mask=mask, other=0.0)
            if HAS_GRAD_SYN:
                g_s = g_base + tl.load(grad_syn_ptr + off, mask=mask, other=0.0).to(tl.float32) + carry_syn
            else:
                g_s = g_base + carry_syn
            if NEED_ALPHA:
                if FIRST:
                    if HAS_SYN0:
                        sp = tl.load(syn0_ptr + offs, mask=mask, other=0.0)
                    else:
                        sp = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
                else:
                    sp = tl.load(syn_hist_ptr + off - B * N, mask=mask, other=0.0)
                part = sp * g_s
                if not LAST:
                    part = tl.load(part_alpha_ptr + offs, mask=mask, other=0.0) + part
                tl.store(part_alpha_ptr + offs, part, mask=mask)
            tl.store(carry_syn_ptr + offs, alpha * g_s, mask=mask)
        tl.store(grad_x_ptr + off, g_s, mask=mask)
        tl.store(carry_mem_ptr + offs, beta * g_base, mask=mask)
        # Per-element sums over time in the order of the persistent kernel (latest step first);
        # the launcher sums over the batch.
        if NEED_BETA:
            part_b = mp * g_base
            if not LAST:
                part_b = tl.load(part_beta_ptr + offs, mask=mask, other=0.0) + part_b
            tl.store(part_beta_ptr + offs, part_b, mask=mask)
        if NEED_THR:
            if not LAST:
                acc_thr = tl.load(part_thr_ptr + offs, mask=mask, other=0.0) + acc_thr
            tl.store(part_thr_ptr + offs, acc_thr, mask=mask)


def block_n(N: int) -> int:
    return max(16, triton.next_power_of_2(N))


#: Dtypes the op takes: float32 state and accumulation throughout; 16-bit ``x`` and ``W`` feed
#: the tiled kernels' ``tl.dot`` as they are (exact products, float32 sums).
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def unsupported_reason(x: Tensor) -> Optional[str]:
    """None when the Triton all-to-all op can run ``x: [T, B, N]`` (any N), else why not."""
    if not HAS_TRITON:
        return "triton is not installed"
    if x.dtype not in DTYPES:
        return f"the all-to-all triton kernels take float32, float16 or bfloat16 input, got {x.dtype}"
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreter_enabled()):
        return "the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"
    return None


def persistent(N: int) -> bool:
    """Whether ``N`` neurons run the persistent kernel (W in registers), else the per-step tiles."""
    return N <= MAX_N


def tile_sizes(B: int, N: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """``(BLOCK_M, BLOCK_N, BLOCK_K)`` of the per-step kernels. Untuned (no GPU to time them):
    the batch tile is the batch rounded up to a power of two in 16..64 (``tl.dot`` needs 16);
    64-neuron tiles unless that leaves fewer than 128 programs (about one per SM of an
    A100/H100/H200), then 32; K slices of 32 in float32 (FMA loops), 64 in 16-bit (tensor cores)."""
    block_m = min(64, max(16, triton.next_power_of_2(B)))
    block_n = 64 if triton.cdiv(B, block_m) * triton.cdiv(N, 64) >= 128 else 32
    return block_m, block_n, 32 if dtype == torch.float32 else 64


def step_num_warps(block_m: int, block_n: int) -> int:
    """8 warps for a 64 x 64 tile (ptxas spills the LIF step's temporaries at 4), else 4."""
    return 8 if block_m * block_n >= 4096 else 4


def _c(t: Optional[Tensor], dummy: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, bool]:
    if t is None or t.numel() == 0:
        return dummy, False
    return t.to(dtype).contiguous(), True


def _f32(t: Tensor) -> Tensor:
    return t.to(torch.float32).contiguous()


def lif_all_to_all_forward_triton(x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, spec: LIFSpec):
    """Same contract as :func:`lif_all_to_all_reference.lif_all_to_all_forward_reference`, except
    that for a 16-bit ``x`` only ``spk`` is in ``x.dtype``: ``syn``, ``mem``, ``trace`` and ``pre``
    are the float32 states the kernels carry (the backward reads them; ``functional`` casts
    ``syn``/``mem`` to ``x.dtype`` for the caller)."""
    T, B, N = x.shape
    spk = row_major_empty(x)
    mem, trace = (row_major_empty(x, torch.float32) for _ in range(2))
    syn = row_major_empty(x, torch.float32) if spec.synaptic else x.new_empty(0, dtype=torch.float32)
    pre = row_major_empty(x, torch.float32) if spec.immediate_reset else x.new_empty(0, dtype=torch.float32)
    if T == 0 or B == 0:
        return spk, syn, mem, trace, pre
    dummy = trace
    bias_c, has_bias = _c(bias, dummy)
    mem0_c, has_mem0 = _c(mem0, dummy)
    syn0_c, has_syn0 = _c(syn0 if spec.synaptic else None, dummy)
    c0, c1 = surrogate_constants(spec)
    flags = dict(SYNAPTIC=spec.synaptic, RESET=spec.reset, IMMEDIATE_RESET=spec.immediate_reset,
                 SURROGATE=spec.surrogate.code, HAS_BIAS=has_bias, HAS_MEM0=has_mem0, HAS_SYN0=has_syn0)
    params = (_f32(beta), _f32(thr), _f32(alpha) if spec.synaptic else dummy)
    outs = (syn if spec.synaptic else dummy, mem, trace, pre if spec.immediate_reset else dummy)
    scalars = (float(spec.graded_spikes_factor), float(c0), float(c1))
    if persistent(N):
        # 16-bit x and W go in as float32 (exact): the same products, summed in float32.
        spk0_c, has_spk0 = _c(spk0, dummy)
        spk32 = spk if x.dtype == torch.float32 else torch.empty_like(trace)
        launchable(lif_all_to_all_forward_kernel)[(triton.cdiv(B, BLOCK_B),)](
            _f32(x), _f32(weight.t()), bias_c, mem0_c, syn0_c, spk0_c, *params, spk32, *outs,
            T, B, N, *scalars, **flags, HAS_SPK0=has_spk0, BLOCK_B=BLOCK_B, BLOCK_N=block_n(N),
            num_warps=4, enable_fp_fusion=False,
        )
        if spk32 is not spk:
            spk.copy_(spk32)
        return spk, syn, mem, trace, pre
    # Wider layers: one launch per step (see the module docstring). The product's inputs are in
    # x.dtype: spikes 0/gsf and spk0 rounded to it, as an nn.Linear in that dtype would take them.
    if B * N >= 2**31:
        raise ValueError(f"the per-step all-to-all kernels index one step in int32: B * N must be < 2**31, got {B * N}")
    spk0_c, has_spk0 = _c(spk0, dummy, x.dtype)
    block_m, block_n_, block_k = tile_sizes(B, N, x.dtype)
    grid = (triton.cdiv(B, block_m), triton.cdiv(N, block_n_))
    fn = launchable(lif_all_to_all_step_forward_kernel, ("t",))
    # Triton 3.9's interpreter multiplies bfloat16 dot operands as raw bits (garbage), so there
    # the bf16 operands are widened to float32 (exact; the products are the same) and the
    # native bf16 dot is checked by compiling it (aot.py).
    dot_dtype = torch.float32 if x.dtype == torch.bfloat16 and x.device.type == "cpu" else x.dtype
    x_c, wt = x.contiguous(), weight.t().to(x.dtype).to(dot_dtype).contiguous()
    for t in range(T):
        fn[grid](
            x_c, wt, bias_c, mem0_c, syn0_c, spk0_c, *params, spk, *outs, t, B, N, *scalars, **flags,
            HAS_SPK0=has_spk0, FIRST=t == 0, IEEE=dot_dtype == torch.float32,
            BLOCK_M=block_m, BLOCK_N=block_n_, BLOCK_K=block_k, num_warps=step_num_warps(block_m, block_n_),
            enable_fp_fusion=False,
        )
    return spk, syn, mem, trace, pre


def lif_all_to_all_backward_triton(grad_spk, grad_syn, grad_mem, trace, mem_hist, syn_hist, spk_hist, pre,
                              mem0, syn0, spk0, weight, beta, thr, alpha, spec: LIFSpec, needs):
    """Same contract as :func:`lif_all_to_all_reference.lif_all_to_all_backward_reference`; every
    output is float32 (the op's autograd casts them to their inputs' dtypes)."""
    need_w, need_b, need_beta, need_thr, need_alpha = needs
    need_alpha = need_alpha and spec.synaptic
    T, B, N = trace.shape
    grad_x = row_major_empty(trace)
    grad_mem0, grad_syn0, grad_spk0 = (trace.new_zeros(B, N) for _ in range(3))
    parts = [trace.new_zeros(B, N) if n else trace.new_empty(0) for n in (need_beta, need_thr, need_alpha)]
    if T > 0 and B > 0:
        dummy = trace
        gs, has_gs = _c(grad_spk, dummy)
        gy, has_gy = _c(grad_syn if spec.synaptic else None, dummy)
        gm, has_gm = _c(grad_mem, dummy)
        mem0_c, has_mem0 = _c(mem0, dummy)
        syn0_c, has_syn0 = _c(syn0 if spec.synaptic else None, dummy)
        ins = (gs, gy, gm, trace.contiguous(), mem_hist.contiguous(),
               syn_hist.contiguous() if spec.synaptic else dummy, pre.contiguous() if spec.immediate_reset else dummy,
               mem0_c, syn0_c, _f32(weight), _f32(beta), _f32(thr), _f32(alpha) if spec.synaptic else dummy)
        flags = dict(SYNAPTIC=spec.synaptic, RESET=spec.reset, IMMEDIATE_RESET=spec.immediate_reset,
                     HAS_GRAD_SPK=has_gs, HAS_GRAD_SYN=has_gy, HAS_GRAD_MEM=has_gm, HAS_MEM0=has_mem0,
                     HAS_SYN0=has_syn0, NEED_BETA=need_beta, NEED_THR=need_thr, NEED_ALPHA=need_alpha)
        part_ptrs = [p if p.numel() else dummy for p in parts]
        gsf = float(spec.graded_spikes_factor)
        if persistent(N):
            launchable(lif_all_to_all_backward_kernel)[(triton.cdiv(B, BLOCK_B),)](
                *ins, grad_x, grad_mem0, grad_syn0, grad_spk0, *part_ptrs, T, B, N, gsf, **flags,
                BLOCK_B=BLOCK_B, BLOCK_N=block_n(N), num_warps=4, enable_fp_fusion=False,
            )
        else:
            # The reverse loop, one launch per step; grad_mem0/grad_syn0 are the carries.
            if B * N >= 2**31:
                raise ValueError(f"the per-step all-to-all kernels index one step in int32: B * N must be < 2**31, "
                                 f"got {B * N}")
            block_m, block_n_, block_k = tile_sizes(B, N, torch.float32)
            grid = (triton.cdiv(B, block_m), triton.cdiv(N, block_n_))
            fn = launchable(lif_all_to_all_step_backward_kernel, ("t",))
            for t in range(T - 1, -1, -1):
                fn[grid](
                    *ins, grad_x, grad_mem0, grad_syn0, *part_ptrs, t, B, N, gsf, **flags,
                    FIRST=t == 0, LAST=t == T - 1, BLOCK_M=block_m, BLOCK_N=block_n_, BLOCK_K=block_k,
                    num_warps=step_num_warps(block_m, block_n_), enable_fp_fusion=False,
                )
            grad_spk0 = grad_x[0] @ ins[9]
    grad_w, grad_b = all_to_all_parameter_gradients(grad_x, spk_hist, spk0, need_w, need_b)
    reduced = [p.sum(0) if p.numel() else p for p in parts]
    return (grad_x, grad_mem0, grad_syn0, grad_spk0, grad_w, grad_b, *reduced)
