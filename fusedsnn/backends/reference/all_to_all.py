"""Plain PyTorch all-to-all recurrent LIF (the ``"reference"`` backend of :mod:`fusedsnn.ops.all_to_all`).

The recurrent input of step ``t`` is ``torch.nn.functional.linear(spk[t-1], W, b)``, the very call
snnTorch's ``nn.Linear`` makes, so this backend's float32 outputs are bit-identical to snnTorch.
Each step's neuron update and its adjoint are the one-step calls of the elementwise reference
(:mod:`.lif_reference`) with that input, so the neuron algebra exists in one place. The backward
walks time in reverse: the spike gradient reaching step ``t-1`` is ``G_t @ W`` (``G_t`` the
gradient of step ``t``'s recurrent input), and ``dW = sum_t G_t^T spk[t-1]``, ``db = sum_t G_t``
are one product each over all steps after the loop.

Shapes: ``x: [T, B, N]``, states ``[B, N]``, ``weight: [N, N]``, ``bias`` and parameters ``[N]``.
"""

from __future__ import annotations

from typing import Optional

import torch

from .lif import lif_backward_reference, lif_forward_reference
from ...spec import RECURRENCE_ALL_TO_ALL, LIFSpec

Tensor = torch.Tensor


def _state(state: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros(like.shape[1:], dtype=like.dtype, device=like.device) if state is None else state


def lif_all_to_all_forward_reference(
    x: Tensor,
    mem0: Optional[Tensor],
    syn0: Optional[Tensor],
    spk0: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor],
    beta: Tensor,
    thr: Tensor,
    alpha: Tensor,
    spec: LIFSpec,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``x: [T, B, N]`` -> ``(spk, syn, mem, trace, pre)``, each ``[T, B, N]`` in ``x.dtype``
    (``syn`` empty unless synaptic, ``pre`` empty unless ``reset_delay=False`` with a reset)."""
    assert spec.recurrence == RECURRENCE_ALL_TO_ALL
    T = x.shape[0]
    spk_out, mem_out, trace = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    syn_out = torch.empty_like(x) if spec.synaptic else x.new_empty(0)
    pre = torch.empty_like(x) if spec.immediate_reset else x.new_empty(0)
    # spk0 row-major, as every later step's spikes are: a GEMM sums in another order for a
    # transposed operand, and a layout must not change the answer
    mem, syn, spk = mem0, syn0, _state(spk0, x).contiguous()
    for t in range(T):
        rec = torch.nn.functional.linear(spk, weight, bias)
        s, y, m, tr, _, p = lif_forward_reference(x[t : t + 1], mem, syn, None, rec[None], beta, thr, alpha,
                                                  beta.new_empty(0), spec, False)
        spk_out[t], mem_out[t], trace[t] = s[0], m[0], tr[0]
        if spec.synaptic:
            syn_out[t] = y[0]
            syn = y[0]
        if spec.immediate_reset:
            pre[t] = p[0]
        mem, spk = m[0], s[0]
    return spk_out, syn_out, mem_out, trace, pre


def all_to_all_parameter_gradients(grad_rec: Tensor, spk: Tensor, spk0: Optional[Tensor], need_weight: bool,
                              need_bias: bool) -> tuple[Tensor, Tensor]:
    """``dW = sum_t G_t^T spk[t-1]`` and ``db = sum_t G_t`` for ``grad_rec = G: [T, B, N]``, as
    one matrix product over all ``T * B`` rows (empty tensors when not needed)."""
    T, B, N = grad_rec.shape
    grad_w = grad_rec.new_empty(0)
    if need_weight:
        prev = spk[:-1].reshape(-1, N).to(grad_rec.dtype)  # 16-bit spikes (Triton) under float32 G
        grad_w = grad_rec[1:].reshape(-1, N).t() @ prev if T > 1 else grad_rec.new_zeros(N, N)
        if spk0 is not None and T > 0:
            grad_w = grad_w + grad_rec[0].t() @ spk0.to(grad_rec.dtype).contiguous()
    grad_b = grad_rec.reshape(-1, N).sum(0) if need_bias else grad_rec.new_empty(0)
    return grad_w, grad_b


def lif_all_to_all_backward_reference(
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
    weight: Tensor,
    beta: Tensor,
    thr: Tensor,
    alpha: Tensor,
    spec: LIFSpec,
    needs: tuple[bool, bool, bool, bool, bool],
) -> tuple[Tensor, ...]:
    """Reverse loop. ``needs = (weight, bias, beta, threshold, alpha)``. Returns ``(grad_x,
    grad_mem0, grad_syn0, grad_spk0, grad_weight, grad_bias, grad_beta, grad_thr, grad_alpha)``:
    states ``[B, N]``, ``grad_weight: [N, N]``, the rest ``[N]`` (empty when not needed)."""
    need_w, need_b, need_beta, need_thr, need_alpha = needs
    T = trace.shape[0]
    zeros = torch.zeros(trace.shape[1:], dtype=trace.dtype, device=trace.device)
    grad_x = torch.empty_like(trace)
    carry_mem, carry_syn, carry_spk = zeros, zeros, zeros
    acc = [zeros[0].new_zeros(trace.shape[-1]) for _ in range(3)]

    def up(grad: Optional[Tensor], t: int) -> Tensor:
        return zeros if grad is None else grad[t]

    for t in range(T - 1, -1, -1):
        mem_prev = mem_hist[t - 1] if t > 0 else mem0
        syn_prev = (syn_hist[t - 1] if t > 0 else syn0) if spec.synaptic else None
        outs = lif_backward_reference(
            (up(grad_spk, t) + carry_spk)[None], (up(grad_syn, t) + carry_syn)[None] if spec.synaptic else None,
            (up(grad_mem, t) + carry_mem)[None], trace[t : t + 1], mem_hist[t : t + 1], syn_hist[t : t + 1],
            spk_hist[t : t + 1], pre[t : t + 1] if pre.numel() else pre, mem_prev, syn_prev, None,
            beta, thr, alpha, beta.new_empty(0), spec, trace.dtype,
            (need_beta, need_thr, need_alpha and spec.synaptic, False),
        )
        g_rec, carry_mem, carry_syn = outs[0][0], outs[1], outs[2]
        grad_x[t] = g_rec
        for k, part in enumerate(outs[4:7]):
            if part.numel():
                acc[k] = acc[k] + part
        carry_spk = g_rec @ weight
    grad_w, grad_b = all_to_all_parameter_gradients(grad_x, spk_hist, spk0, need_w, need_b)

    def param(k: int, needed: bool) -> Tensor:
        return acc[k] if needed else trace.new_empty(0)

    return (grad_x, carry_mem.clone(), carry_syn.clone(), carry_spk.clone(), grad_w, grad_b,
            param(0, need_beta), param(1, need_thr), param(2, need_alpha and spec.synaptic))
