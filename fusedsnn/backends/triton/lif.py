"""Fused Triton time loops for the LIF family (Leaky, Synaptic, RLeaky, RSynaptic).

Layout, top to bottom: the ``@triton.jit`` forward and backward kernels, then the launchers that
allocate outputs, apply the one contiguity policy and pick the grid. No autograd here; the
autograd Function is in ``fusedsnn/ops/lif.py`` and the eager twin of this file is
``backends/reference/lif.py`` (same algorithm, same operation order; read it first).

Each program owns ``BLOCK`` neurons (flattened ``[B * F]``) and walks all ``T`` steps with the
state in float32 registers: nothing per step returns to Python. The four neuron types share one
kernel because they are one recurrence with two compile-time switches (``SYNAPTIC``,
``RECURRENCE``); writing four files would repeat most of the code, and Triton removes the dead
branches at compile time, so each neuron still gets its own specialised binary.

Spikes must be bit-identical to snnTorch's in float32, so launches pass
``enable_fp_fusion=False`` (no ``a * b + c`` contracted into an FMA) and the per-step arithmetic
mirrors ``spec.py`` operation for operation.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..layout import forward_outputs, surrogate_constants, time_major_2d
from ...spec import RECURRENCE_ALL_TO_ALL, RECURRENCE_ONE_TO_ONE, LIFSpec, needs_prev_mem
from .launch import (  # noqa: F401 - the launch helpers' names are part of this module's interface
    DEFAULT_CONFIG,
    HAS_TRITON,
    INTERPRETER_BLOCK,
    LaunchConfig,
    clear_tuning_cache,
    compilable,
    default_config,
    interpreter_enabled,
    launch,
    launchable,
    new_output,
    size_bucket,
    tuned_configs,
)

Tensor = torch.Tensor

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["T"])
    def lif_forward_kernel(
        x_ptr, rec_ptr, mem0_ptr, syn0_ptr, spk0_ptr,
        beta_ptr, thr_ptr, alpha_ptr, v_ptr,
        spk_ptr, syn_ptr, mem_ptr, trace_ptr, state_ptr, pre_ptr,
        T, M, F, stride_x_t, stride_rec_t,
        gsf, c0, c1,
        SYNAPTIC: tl.constexpr, RECURRENCE: tl.constexpr, RESET: tl.constexpr,
        IMMEDIATE_RESET: tl.constexpr, ZERO_BEFORE_DECAY: tl.constexpr, SURROGATE: tl.constexpr,
        HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr, HAS_SPK0: tl.constexpr,
        STORE_STATE: tl.constexpr, STORE_TRACE: tl.constexpr, STORE_PRE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # int64 offsets: T * B * F may exceed 2**31 elements.
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        feat = offs % F
        gsf = tl.cast(gsf, tl.float32)
        c0 = tl.cast(c0, tl.float32)
        c1 = tl.cast(c1, tl.float32)
        beta = tl.load(beta_ptr + feat, mask=mask, other=0.0)
        thr = tl.load(thr_ptr + feat, mask=mask, other=0.0)
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + feat, mask=mask, other=0.0)
        if RECURRENCE == 1:
            v = tl.load(v_ptr + feat, mask=mask, other=0.0)
        if HAS_MEM0:
            mem = tl.load(mem0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            mem = tl.full([BLOCK], 0.0, tl.float32)
        if SYNAPTIC:
            if HAS_SYN0:
                syn = tl.load(syn0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            else:
                syn = tl.full([BLOCK], 0.0, tl.float32)
        if RECURRENCE == 1:
            if HAS_SPK0:
                spk = tl.load(spk0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            else:
                spk = tl.full([BLOCK], 0.0, tl.float32)
        x_off = offs
        rec_off = offs
        out_off = offs
        for _t in range(T):
            xt = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
            r = tl.where(mem - thr > 0, 1.0, 0.0)
            if SYNAPTIC:
                s = alpha * syn + xt
                if RECURRENCE == 1:
                    s = s + v * spk
                elif RECURRENCE == 2:
                    s = s + tl.load(rec_ptr + rec_off, mask=mask, other=0.0).to(tl.float32)
                base = beta * mem + s
            elif ZERO_BEFORE_DECAY:
                base = beta * ((1.0 - r) * mem) + xt
            else:
                base = beta * mem + xt
                if RECURRENCE == 1:
                    base = base + v * spk
                elif RECURRENCE == 2:
                    base = base + tl.load(rec_ptr + rec_off, mask=mask, other=0.0).to(tl.float32)
            if RESET == 0:
                m_pre = base - r * thr
            elif RESET == 1 and not ZERO_BEFORE_DECAY:
                m_pre = base - base * r
            else:
                m_pre = base
            h = m_pre - thr
            spk_t = tl.where(h > 0, 1.0, 0.0) * gsf
            # Surrogate derivative, generated from the table in fusedsnn/surrogate.py (whose eager
            # surrogate_derivative evaluates the same expressions); c0/c1 come from the same table.
            # Inlined rather than a nested @jit helper so the kernel can also be wrapped for
            # the interpreter at launch time (see _launchable).
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
            # False in inference, and wherever the backward recomputes d from the saved
            # membrane or pre (layout.forward_outputs); the compiler then drops d entirely.
            if STORE_TRACE:
                tl.store(trace_ptr + out_off, d, mask=mask)
            if IMMEDIATE_RESET:
                if STORE_PRE:  # False in inference
                    tl.store(pre_ptr + out_off, m_pre, mask=mask)
                do_reset = tl.math.div_rn(spk_t, gsf) - r
                if RESET == 0:
                    m = m_pre - do_reset * thr
                else:
                    m = m_pre - do_reset * m_pre
            else:
                m = m_pre
            tl.store(spk_ptr + out_off, spk_t.to(spk_ptr.dtype.element_ty), mask=mask)
            tl.store(mem_ptr + out_off, m.to(mem_ptr.dtype.element_ty), mask=mask)
            if STORE_STATE:
                tl.store(state_ptr + out_off, m, mask=mask)
            if SYNAPTIC:
                tl.store(syn_ptr + out_off, s.to(syn_ptr.dtype.element_ty), mask=mask)
                syn = s
            if RECURRENCE == 1:
                spk = spk_t
            mem = m
            x_off += stride_x_t
            rec_off += stride_rec_t
            out_off += M

    @triton.jit(do_not_specialize=["T"])
    def lif_backward_kernel(
        grad_spk_ptr, grad_syn_ptr, grad_mem_ptr,
        trace_ptr, mem_hist_ptr, syn_hist_ptr, spk_hist_ptr, pre_ptr,
        mem0_ptr, syn0_ptr, spk0_ptr,
        beta_ptr, thr_ptr, alpha_ptr, v_ptr,
        grad_x_ptr, grad_mem0_ptr, grad_syn0_ptr, grad_spk0_ptr,
        part_beta_ptr, part_thr_ptr, part_alpha_ptr, part_v_ptr,
        T, M, F, stride_gspk_t, stride_gsyn_t, stride_gmem_t,
        gsf, c0, c1,
        SYNAPTIC: tl.constexpr, RECURRENCE: tl.constexpr, RESET: tl.constexpr,
        IMMEDIATE_RESET: tl.constexpr, ZERO_BEFORE_DECAY: tl.constexpr,
        SURROGATE: tl.constexpr, RECOMPUTE_SURROGATE: tl.constexpr,
        HAS_GRAD_SPK: tl.constexpr, HAS_GRAD_SYN: tl.constexpr, HAS_GRAD_MEM: tl.constexpr,
        HAS_MEM0: tl.constexpr, HAS_SYN0: tl.constexpr, HAS_SPK0: tl.constexpr,
        NEED_PREV_MEM: tl.constexpr, NEED_BETA: tl.constexpr, NEED_THR: tl.constexpr,
        NEED_ALPHA: tl.constexpr, NEED_V: tl.constexpr, BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        feat = offs % F
        gsf = tl.cast(gsf, tl.float32)
        c0 = tl.cast(c0, tl.float32)
        c1 = tl.cast(c1, tl.float32)
        beta = tl.load(beta_ptr + feat, mask=mask, other=0.0)
        thr = tl.load(thr_ptr + feat, mask=mask, other=0.0)
        if SYNAPTIC:
            alpha = tl.load(alpha_ptr + feat, mask=mask, other=0.0)
        if RECURRENCE == 1:
            v = tl.load(v_ptr + feat, mask=mask, other=0.0)
        zero = tl.full([BLOCK], 0.0, tl.float32)
        carry_mem = zero
        carry_syn = zero
        carry_spk = zero
        acc_beta = zero
        acc_thr = zero
        acc_alpha = zero
        acc_v = zero
        # Offsets of step t (walking down from T - 1) and of step t - 1 in the [T, M] histories.
        t_last = (T - 1).to(tl.int64)
        out_off = t_last * M + offs
        gspk_off = t_last * stride_gspk_t + offs
        gsyn_off = t_last * stride_gsyn_t + offs
        gmem_off = t_last * stride_gmem_t + offs
        for i in range(T):
            # As a block, not a scalar: the interpreter rejects a Python bool in a mask.
            has_prev = tl.full([BLOCK], i, tl.int32) < T - 1
            prev_mask = mask & has_prev
            prev_off = out_off - M
            if RECOMPUTE_SURROGATE:
                # No trace was written: evaluate the surrogate again at the forward's
                # h = m_pre - thr, where m_pre is the saved pre-reset membrane (immediate reset)
                # or the saved float32 membrane (otherwise m = m_pre). Same expressions and
                # operations as the forward kernel's, so d is bit-identical to the trace.
                # (First in the step: only d stays live across the loads below.)
                h = tl.load((pre_ptr if IMMEDIATE_RESET else mem_hist_ptr) + out_off,
                            mask=mask, other=0.0).to(tl.float32) - thr
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
            else:
                d = tl.load(trace_ptr + out_off, mask=mask, other=0.0)
            g_mem = carry_mem
            if HAS_GRAD_MEM:
                g_mem += tl.load(grad_mem_ptr + gmem_off, mask=mask, other=0.0).to(tl.float32)
            g_spk = carry_spk
            if HAS_GRAD_SPK:
                g_spk += tl.load(grad_spk_ptr + gspk_off, mask=mask, other=0.0).to(tl.float32)
            if NEED_PREV_MEM:
                mem_prev = tl.load(mem_hist_ptr + prev_off, mask=prev_mask, other=0.0).to(tl.float32)
                if HAS_MEM0:
                    mem_init = tl.load(mem0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                    mem_prev = tl.where(has_prev, mem_prev, mem_init)
                r = tl.where(mem_prev - thr > 0, 1.0, 0.0)
            if IMMEDIATE_RESET:
                m_pre = tl.load(pre_ptr + out_off, mask=mask, other=0.0)
                do_reset = tl.where(m_pre - thr > 0, 1.0, 0.0) - r
                if RESET == 0:
                    g_do_reset = -tl.where(g_mem == 0, 0.0, g_mem * thr)
                    acc_thr = acc_thr - do_reset * g_mem
                    g_pre = g_mem
                else:
                    g_do_reset = -tl.where(g_mem == 0, 0.0, g_mem * m_pre)
                    g_pre = g_mem - do_reset * g_mem
                g_spk = g_spk + tl.math.div_rn(g_do_reset, gsf)
            else:
                g_pre = g_mem
            # Each gradient x forward-value product below is zero where the gradient is: a step
            # no gradient reaches must not turn a non-finite forward value (NaN input, overflowed
            # membrane, exploding surrogate) into 0 * inf = NaN that poisons earlier steps.
            g_h = g_spk * gsf
            g_h = tl.where(g_h == 0, 0.0, g_h * d)
            g_pre = g_pre + g_h
            acc_thr = acc_thr - g_h
            if RESET == 0:
                if NEED_THR:
                    acc_thr = acc_thr - r * g_pre
                g_base = g_pre
            elif RESET == 1 and not ZERO_BEFORE_DECAY:
                g_base = g_pre - r * g_pre
            else:
                g_base = g_pre
            if SYNAPTIC:
                g_s = g_base + carry_syn
                if HAS_GRAD_SYN:
                    g_s += tl.load(grad_syn_ptr + gsyn_off, mask=mask, other=0.0).to(tl.float32)
            else:
                g_s = g_base
            tl.store(grad_x_ptr + out_off, g_s.to(grad_x_ptr.dtype.element_ty), mask=mask)
            if ZERO_BEFORE_DECAY:
                kept = 1.0 - r
                if NEED_BETA:
                    acc_beta = acc_beta + tl.where(g_base == 0, 0.0, g_base * (kept * mem_prev))
                carry_mem = kept * (beta * g_base)
            else:
                if NEED_BETA:
                    acc_beta = acc_beta + tl.where(g_base == 0, 0.0, g_base * mem_prev)
                carry_mem = beta * g_base
            if SYNAPTIC:
                if NEED_ALPHA:
                    syn_prev = tl.load(syn_hist_ptr + prev_off, mask=prev_mask, other=0.0).to(tl.float32)
                    if HAS_SYN0:
                        syn_init = tl.load(syn0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                        syn_prev = tl.where(has_prev, syn_prev, syn_init)
                    acc_alpha = acc_alpha + tl.where(g_s == 0, 0.0, g_s * syn_prev)
                carry_syn = alpha * g_s
            if RECURRENCE == 1:
                if NEED_V:
                    spk_prev = tl.load(spk_hist_ptr + prev_off, mask=prev_mask, other=0.0).to(tl.float32)
                    if HAS_SPK0:
                        spk_init = tl.load(spk0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                        spk_prev = tl.where(has_prev, spk_prev, spk_init)
                    acc_v = acc_v + spk_prev * g_s
                carry_spk = v * g_s
            out_off -= M
            gspk_off -= stride_gspk_t
            gsyn_off -= stride_gsyn_t
            gmem_off -= stride_gmem_t
        tl.store(grad_mem0_ptr + offs, carry_mem, mask=mask)
        if SYNAPTIC:
            tl.store(grad_syn0_ptr + offs, carry_syn, mask=mask)
        if RECURRENCE == 1:
            tl.store(grad_spk0_ptr + offs, carry_spk, mask=mask)
        if NEED_BETA:
            tl.store(part_beta_ptr + offs, acc_beta, mask=mask)
        if NEED_THR:
            tl.store(part_thr_ptr + offs, acc_thr, mask=mask)
        if NEED_ALPHA:
            tl.store(part_alpha_ptr + offs, acc_alpha, mask=mask)
        if NEED_V:
            tl.store(part_v_ptr + offs, acc_v, mask=mask)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

# Candidates for the autotuner. Neurons are independent, so a smaller block only means more
# programs; what matters is elements per thread (registers, loads in flight) and filling the GPU.
# The backward holds several accumulators per element: at 4 elements per thread (BLOCK=512,
# 4 warps) the all-learnable RSynaptic backward needs 178 registers on sm_90 (11 of 64 warps per
# SM resident), at 2 it needs 72 and at 1 it needs 48, so its candidates stop at 2 per thread.
FORWARD_CONFIGS = (LaunchConfig(128, 4), LaunchConfig(256, 4), LaunchConfig(256, 8),
                   LaunchConfig(512, 4), LaunchConfig(512, 8))
BACKWARD_CONFIGS = (LaunchConfig(128, 4), LaunchConfig(256, 4), LaunchConfig(256, 8),
                    LaunchConfig(512, 8))


# Per-call work that depends only on the spec and which optional tensors are present, cached:
# the host constants and the kernels' compile-time flags with their sorted key (the tuning key).
_SPEC_CONSTANTS: dict[LIFSpec, tuple] = {}
_FLAGS: dict[tuple, tuple[dict, tuple]] = {}


def _constants(spec: LIFSpec) -> tuple[float, float, float, bool, bool]:
    """``(graded_spikes_factor, c0, c1, immediate_reset, one_to_one)`` of ``spec``."""
    hit = _SPEC_CONSTANTS.get(spec)
    if hit is None:
        c0, c1 = surrogate_constants(spec)
        hit = _SPEC_CONSTANTS[spec] = (float(spec.graded_spikes_factor), float(c0), float(c1),
                                       spec.immediate_reset, spec.recurrence == RECURRENCE_ONE_TO_ONE)
    return hit


def _flags(kind: str, spec: LIFSpec, *switches: bool) -> tuple[dict, tuple]:
    """The kernel's compile-time flags for ``spec`` and the call's switches (in the order of the
    ``kind`` kernel's flags after the spec's), and ``tuple(sorted(flags.items()))``."""
    key = (kind, spec, switches)
    hit = _FLAGS.get(key)
    if hit is None:
        flags = dict(
            SYNAPTIC=spec.synaptic, RECURRENCE=spec.recurrence, RESET=spec.reset,
            IMMEDIATE_RESET=spec.immediate_reset, ZERO_BEFORE_DECAY=spec.zero_before_decay,
            SURROGATE=spec.surrogate.code)
        names = (("HAS_MEM0", "HAS_SYN0", "HAS_SPK0", "STORE_STATE", "STORE_TRACE", "STORE_PRE")
                 if kind == "forward" else
                 ("RECOMPUTE_SURROGATE", "HAS_GRAD_SPK", "HAS_GRAD_SYN", "HAS_GRAD_MEM", "HAS_MEM0", "HAS_SYN0",
                  "HAS_SPK0", "NEED_PREV_MEM", "NEED_BETA", "NEED_THR", "NEED_ALPHA", "NEED_V"))
        flags.update(zip(names, switches))
        hit = _FLAGS[key] = (flags, tuple(sorted(flags.items())))
    return hit


def _flat_or_dummy(t: Optional[Tensor], dummy: Tensor) -> tuple[Tensor, bool]:
    if t is None or t.numel() == 0:
        return dummy, False
    return _contiguous(t.reshape(-1)), True


def _contiguous(t: Tensor) -> Tensor:
    # The parameters and states are almost always contiguous already.
    return t if t.is_contiguous() else t.contiguous()


def lif_forward_triton(
    x: Tensor,
    mem0: Optional[Tensor],
    syn0: Optional[Tensor],
    spk0: Optional[Tensor],
    rec: Optional[Tensor],
    beta: Tensor,
    thr: Tensor,
    alpha: Tensor,
    V: Tensor,
    spec: LIFSpec,
    store_state: bool,
    block_size: Optional[int] = None,
    for_backward: bool = True,
    wrapped: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Same contract as :func:`lif_reference.lif_forward_reference` (``x: [T, B, F]``)."""
    T, B, F = x.shape
    M = B * F
    x2, stride_x_t = time_major_2d(x, T)
    rec2, stride_rec_t = time_major_2d(rec, T) if spec.recurrence == RECURRENCE_ALL_TO_ALL else (None, 0)
    store = store_state and x.dtype != torch.float32 and for_backward
    spk, syn, mem, trace, state, pre = forward_outputs(
        x, spec, torch.float32, store, alloc=new_output,
        for_backward=for_backward)
    if T == 0 or M == 0:
        return spk, syn, mem, trace, state, pre
    # Any tensor on the device; never read or written. Not an output when wrapped: a traced
    # graph treats each kernel argument as its own (functionalised) tensor, so an output passed
    # twice would come back from the slot that never wrote it.
    dummy = torch.empty(1, dtype=torch.float32, device=x.device) if wrapped else spk
    gsf, c0, c1, immediate, one_to_one = _constants(spec)
    synaptic = spec.synaptic
    mem0_f, has_mem0 = _flat_or_dummy(mem0, dummy)
    syn0_f, has_syn0 = _flat_or_dummy(syn0 if synaptic else None, dummy)
    spk0_f, has_spk0 = _flat_or_dummy(spk0 if one_to_one else None, dummy)
    store_trace = trace.numel() > 0
    store_pre = immediate and for_backward
    flags, flags_key = _flags("forward", spec, has_mem0, has_syn0, has_spk0, store, store_trace, store_pre)
    launch(lif_forward_kernel, FORWARD_CONFIGS, M, x.dtype, x.device, block_size, (
        x2, rec2 if rec2 is not None else dummy, mem0_f, syn0_f, spk0_f,
        _contiguous(beta), _contiguous(thr), _contiguous(alpha) if synaptic else dummy,
        _contiguous(V) if one_to_one else dummy,
        spk, syn if synaptic else dummy, mem, trace if store_trace else dummy, state if store else dummy,
        pre if store_pre else dummy,
        T, M, F, stride_x_t, stride_rec_t, gsf, c0, c1,
    ), flags, wrapped=wrapped, flags_key=flags_key)
    return spk, syn, mem, trace, state, pre


def lif_backward_triton(
    grad_spk: Optional[Tensor],
    grad_syn: Optional[Tensor],
    grad_mem: Optional[Tensor],
    trace: Tensor,
    mem_hist: Tensor,
    syn_hist: Tensor,
    spk_hist: Tensor,
    pre: Tensor,
    mem0: Optional[Tensor],
    syn0: Optional[Tensor],
    spk0: Optional[Tensor],
    beta: Tensor,
    thr: Tensor,
    alpha: Tensor,
    V: Tensor,
    spec: LIFSpec,
    x_dtype: torch.dtype,
    need_param_grads: tuple[bool, bool, bool, bool],
    block_size: Optional[int] = None,
    wrapped: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Same contract as :func:`lif_reference.lif_backward_reference`, except that the gradient
    of a state the neuron lacks (``syn0`` unless synaptic, ``spk0`` unless one-to-one
    recurrent) is None, as from the host backend."""
    T, B, F = mem_hist.shape
    M = B * F
    dev = mem_hist.device
    recompute = trace.numel() == 0  # no trace: the kernel recomputes the surrogate
    need_beta, need_thr, need_alpha, need_V = need_param_grads
    need_alpha = need_alpha and spec.synaptic
    need_V = need_V and spec.recurrence == RECURRENCE_ONE_TO_ONE
    grad_x = new_output((T, B, F), x_dtype, dev)
    runs = T > 0 and M > 0

    def state_grad(has_state: bool) -> Optional[Tensor]:
        # Written by the kernel when it runs; zero for T == 0. A state this neuron lacks gets
        # None, as from the host backend (the op fills its schema's zeros where one is needed):
        # zero-filling one would cost two allocations and two fill launches per Leaky backward.
        if not has_state:
            return None
        if runs:
            return new_output((B, F), torch.float32, dev)
        return torch.zeros((B, F), dtype=torch.float32, device=dev)

    grad_mem0 = state_grad(True)
    grad_syn0 = state_grad(spec.synaptic)
    grad_spk0 = state_grad(spec.recurrence == RECURRENCE_ONE_TO_ONE)

    def partial(needed: bool) -> Tensor:
        return state_grad(True) if needed else mem_hist.new_empty(0, dtype=torch.float32)

    parts = [partial(n) for n in (need_beta, need_thr, need_alpha, need_V)]
    if runs:
        gsf, c0, c1, immediate, one_to_one = _constants(spec)
        synaptic = spec.synaptic
        gspk2, s_gspk = time_major_2d(grad_spk, T)
        gsyn2, s_gsyn = time_major_2d(grad_syn if synaptic else None, T)
        gmem2, s_gmem = time_major_2d(grad_mem, T)
        dummy = torch.empty(1, dtype=torch.float32, device=dev) if wrapped else grad_x  # never read or written
        mem0_f, has_mem0 = _flat_or_dummy(mem0, dummy)
        syn0_f, has_syn0 = _flat_or_dummy(syn0 if synaptic else None, dummy)
        spk0_f, has_spk0 = _flat_or_dummy(spk0 if one_to_one else None, dummy)
        flags, flags_key = _flags(
            "backward", spec, recompute, gspk2 is not None, gsyn2 is not None, gmem2 is not None,
            has_mem0, has_syn0, has_spk0, needs_prev_mem(spec, need_beta, need_thr),
            need_beta, need_thr, need_alpha, need_V)
        launch(lif_backward_kernel, BACKWARD_CONFIGS, M, x_dtype, dev, block_size, (
            gspk2 if gspk2 is not None else dummy,
            gsyn2 if gsyn2 is not None else dummy,
            gmem2 if gmem2 is not None else dummy,
            trace if not recompute else dummy, mem_hist, syn_hist if synaptic else dummy,
            spk_hist if one_to_one else dummy,
            pre if immediate else dummy,
            mem0_f, syn0_f, spk0_f,
            _contiguous(beta), _contiguous(thr), _contiguous(alpha) if synaptic else dummy,
            _contiguous(V) if one_to_one else dummy,
            grad_x, grad_mem0, grad_syn0 if grad_syn0 is not None else dummy,
            grad_spk0 if grad_spk0 is not None else dummy,
            *[p if p.numel() else dummy for p in parts],
            T, M, F, s_gspk, s_gsyn, s_gmem, gsf, c0, c1,
        ), flags, wrapped=wrapped, flags_key=flags_key)
    reduced = [p.sum(0) if p.numel() else p for p in parts]
    return (grad_x, grad_mem0, grad_syn0, grad_spk0, *reduced)


