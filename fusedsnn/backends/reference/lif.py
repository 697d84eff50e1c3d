"""Plain PyTorch implementation of the fused LIF forward and backward (the ``"reference"`` backend).

This is the same algorithm as the Triton kernel in ``backends/triton/lif.py``, written with whole-tensor
PyTorch ops and a Python loop over time: the forward saves the surrogate-derivative trace, the
backward walks time in reverse with hand-written adjoints. It is the CPU default until the host
backend exists, the float64 path for ``gradcheck``, and the readable spec of what the kernel does.
The autograd oracle that mirrors snnTorch op for op lives in ``naive.py``.

Shapes: ``x: [T, B, F]`` (features flattened), states ``[B, F]``, parameters ``[F]``.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..layout import forward_outputs
from ...spec import (
    RECURRENCE_ALL_TO_ALL,
    RECURRENCE_ONE_TO_ONE,
    RESET_SUBTRACT,
    RESET_ZERO,
    LIFSpec,
    state_dtype,
)

Tensor = torch.Tensor


def _initial(state: Optional[Tensor], like: Tensor, dtype: torch.dtype) -> Tensor:
    if state is None or state.numel() == 0:
        return torch.zeros(like.shape[1:], dtype=dtype, device=like.device)
    return state.to(dtype)


def _spike_reset(mem_prev: Tensor, thr: Tensor) -> Tensor:
    return (mem_prev - thr > 0).to(mem_prev.dtype)


def lif_forward_reference(
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
    for_backward: bool = True,
    keep_trace: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Run the time loop. Returns ``(spk, syn, mem, trace, mem_state, pre)``.

    ``keep_trace=False`` is the op's contract (the ``reference`` backend registers it so):
    no trace where the backward recomputes it (:func:`~.spec.recomputes_surrogate`). The
    default keeps writing it for callers that consume it directly (the all-to-all reference
    loop, the codelet and PopART tests).

    ``spk, syn, mem: [T, B, F]`` in ``x.dtype`` (``syn`` empty unless synaptic);
    ``trace: [T, B, F]`` surrogate derivative in the state dtype, empty where the backward
    recomputes it (:func:`~.spec.recomputes_surrogate`); ``mem_state`` the membrane in the
    state dtype when ``store_state`` and ``x`` is narrower (else empty); ``pre`` the pre-reset
    membrane when ``reset_delay=False`` (else empty). ``for_backward=False``: the last three
    are empty (inference writes only the outputs).
    """
    sdt = state_dtype(x.dtype)
    T = x.shape[0]
    mem = _initial(mem0, x, sdt)
    syn = _initial(syn0, x, sdt) if spec.synaptic else None
    spk = _initial(spk0, x, sdt) if spec.recurrence == RECURRENCE_ONE_TO_ONE else None
    spk_out, syn_out, mem_out, trace, mem_state, pre = forward_outputs(
        x, spec, sdt, store_state and x.dtype != sdt, for_backward=for_backward, keep_trace=keep_trace)
    gsf = spec.graded_spikes_factor
    surrogate = spec.surrogate
    for t in range(T):
        xt = x[t].to(sdt)
        r = _spike_reset(mem, thr)
        if spec.synaptic:
            s = alpha * syn + xt
            if spec.recurrence == RECURRENCE_ONE_TO_ONE:
                s = s + V * spk
            elif spec.recurrence == RECURRENCE_ALL_TO_ALL:
                s = s + rec[t].to(sdt)
            base = beta * mem + s
        elif spec.zero_before_decay:
            base = beta * ((1 - r) * mem) + xt
        else:
            base = beta * mem + xt
            if spec.recurrence == RECURRENCE_ONE_TO_ONE:
                base = base + V * spk
            elif spec.recurrence == RECURRENCE_ALL_TO_ALL:
                base = base + rec[t].to(sdt)
        if spec.reset == RESET_SUBTRACT:
            m_pre = base - r * thr
        elif spec.reset == RESET_ZERO and not spec.zero_before_decay:
            m_pre = base - base * r
        else:
            m_pre = base
        h = m_pre - thr
        spk_t = (h > 0).to(sdt) * gsf
        if trace.numel():  # else the backward recomputes it from mem or pre
            trace[t] = surrogate.derivative(h)
        if spec.immediate_reset:
            if for_backward:
                pre[t] = m_pre
            do_reset = spk_t / gsf - r
            m = m_pre - do_reset * (thr if spec.reset == RESET_SUBTRACT else m_pre)
        else:
            m = m_pre
        spk_out[t] = spk_t
        mem_out[t] = m
        if mem_state.numel():
            mem_state[t] = m
        if spec.synaptic:
            syn_out[t] = s
            syn = s
        mem = m
        spk = spk_t
    return spk_out, syn_out, mem_out, trace, mem_state, pre


def surrogate_trace(spec: LIFSpec, outputs: tuple[Tensor, ...], thr: Tensor) -> Tensor:
    """The surrogate-derivative trace ``[T, B, F]`` that a forward's six ``outputs`` determine:
    the saved ``trace`` when the forward wrote one (16-bit input), else ``dS/dh`` evaluated at
    ``h = m_pre - thr`` from the saved pre-reset membrane (immediate reset) or the membrane
    output itself, exactly as the backward recomputes it. For callers that need the trace as a
    tensor (the PopART op and its codelets still write one)."""
    trace = outputs[3]
    if trace.numel():
        return trace
    m_pre = outputs[5] if spec.immediate_reset else outputs[2]
    if m_pre.shape[0] == 0:
        return m_pre.new_empty(m_pre.shape)
    return torch.stack([spec.surrogate.derivative(m_pre[t] - thr) for t in range(m_pre.shape[0])])


def lif_backward_reference(
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
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Reverse time loop. Returns ``(grad_x, grad_mem0, grad_syn0, grad_spk0, grad_beta,
    grad_thr, grad_alpha, grad_V)``; parameter gradients are ``[F]`` (empty when not needed).

    ``mem_hist``/``syn_hist``/``spk_hist`` are the forward's per-step states (``[T, B, F]``):
    the membrane in the state dtype (the output itself for float32), synaptic current and
    spikes as output.
    """
    sdt = state_dtype(x_dtype)
    T = mem_hist.shape[0]
    shape = mem_hist.shape[1:]
    need_beta, need_thr, need_alpha, need_V = need_param_grads
    zeros = torch.zeros(shape, dtype=sdt, device=mem_hist.device)
    mem_init = _initial(mem0, mem_hist, sdt)
    syn_init = _initial(syn0, mem_hist, sdt) if spec.synaptic else zeros
    spk_init = _initial(spk0, mem_hist, sdt) if spec.recurrence == RECURRENCE_ONE_TO_ONE else zeros
    gsf = spec.graded_spikes_factor
    # No trace: the surrogate is evaluated again at the same h = m_pre - thr, with the same ops,
    # from the saved pre-reset membrane, or the membrane itself (it is m_pre without immediate reset).
    recompute = trace.numel() == 0
    grad_x = torch.empty(mem_hist.shape, dtype=x_dtype, device=mem_hist.device)
    carry_mem, carry_syn, carry_spk = zeros, zeros, zeros
    acc_beta, acc_thr, acc_alpha, acc_V = zeros, zeros, zeros, zeros

    def upstream(grad: Optional[Tensor], t: int) -> Tensor:
        return zeros if grad is None or grad.numel() == 0 else grad[t].to(sdt)

    def times(grad: Tensor, factor: Tensor) -> Tensor:
        # grad * factor, but exactly zero where grad is: a step no gradient reaches must not
        # turn a non-finite forward value (NaN input, overflowed membrane, an exploding
        # surrogate) into 0 * inf = NaN and poison every earlier step. snnTorch never runs
        # such a product (autograd skips outputs nobody uses), so its gradients stay finite.
        return torch.where(grad == 0, 0.0, grad * factor)

    for t in range(T - 1, -1, -1):
        mem_prev = mem_hist[t - 1].to(sdt) if t > 0 else mem_init
        g_mem = upstream(grad_mem, t) + carry_mem
        g_spk = upstream(grad_spk, t) + carry_spk
        r = _spike_reset(mem_prev, thr)
        if spec.immediate_reset:
            m_pre = pre[t]
            do_reset = (m_pre - thr > 0).to(sdt) - r
            if spec.reset == RESET_SUBTRACT:
                g_do_reset = -times(g_mem, thr)
                acc_thr = acc_thr - do_reset * g_mem
                g_pre = g_mem
            else:
                g_do_reset = -times(g_mem, m_pre)
                g_pre = g_mem - do_reset * g_mem
            g_spk = g_spk + g_do_reset / gsf
        else:
            g_pre = g_mem
        if recompute:
            surrogate_t = spec.surrogate.derivative((pre[t] if spec.immediate_reset else mem_hist[t]) - thr)
        else:
            surrogate_t = trace[t]
        g_h = times(g_spk * gsf, surrogate_t)
        g_pre = g_pre + g_h
        acc_thr = acc_thr - g_h
        if spec.reset == RESET_SUBTRACT:
            acc_thr = acc_thr - r * g_pre
            g_base = g_pre
        elif spec.reset == RESET_ZERO and not spec.zero_before_decay:
            g_base = g_pre - r * g_pre
        else:
            g_base = g_pre
        g_s = g_base + upstream(grad_syn, t) + carry_syn if spec.synaptic else g_base
        grad_x[t] = g_s.to(x_dtype)
        if spec.zero_before_decay:
            kept = 1 - r
            acc_beta = acc_beta + times(g_base, kept * mem_prev)
            carry_mem = kept * (beta * g_base)
        else:
            acc_beta = acc_beta + times(g_base, mem_prev)
            carry_mem = beta * g_base
        if spec.synaptic:
            syn_prev = syn_hist[t - 1].to(sdt) if t > 0 else syn_init
            acc_alpha = acc_alpha + times(g_s, syn_prev)
            carry_syn = alpha * g_s
        if spec.recurrence == RECURRENCE_ONE_TO_ONE:
            spk_prev = spk_hist[t - 1].to(sdt) if t > 0 else spk_init
            acc_V = acc_V + spk_prev * g_s
            carry_spk = V * g_s

    def reduce(acc: Tensor, needed: bool) -> Tensor:
        if not needed:
            return mem_hist.new_empty(0, dtype=sdt)
        return acc.reshape(-1, acc.shape[-1]).sum(0)

    # Each output is its own tensor: a custom op's returns must not alias one another.
    return (
        grad_x,
        carry_mem if carry_mem is not zeros else zeros.clone(),
        carry_syn if carry_syn is not zeros else zeros.clone(),
        carry_spk if carry_spk is not zeros else zeros.clone(),
        reduce(acc_beta, need_beta),
        reduce(acc_thr, need_thr),
        reduce(acc_alpha, need_alpha),
        reduce(acc_V, need_V),
    )
