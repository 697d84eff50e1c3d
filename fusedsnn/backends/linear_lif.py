"""What every backend's fused Linear + LIF op shares: the argument contract and the backward.

The op (:mod:`fusedsnn.ops.linear_lif`) runs ``nn.Linear(K, N)`` followed by a Leaky or
Synaptic neuron over a whole sequence: ``x: [T, B, K]`` (a static input is ``[B, K]`` expanded
over time with stride 0), ``weight: [N, K]``, ``bias: [N]`` or None -> ``spk, syn, mem`` each
``[T, B, N]``. A backend's forward must not keep the input current ``x_t W^T + b`` of the whole
sequence in memory (the Triton kernel never writes it; the host keeps one chunk of steps).

Forward launcher contract, ``linear_lif_forward(x, weight, bias, mem0, syn0, beta, thr, alpha,
spec, for_backward) -> (spk, syn, mem, pre)``: ``x: [T, B, K]`` float32/float64 (float32 only on
Triton), states ``[B, N]`` or None, parameters ``[N]`` in ``x.dtype``; ``syn`` empty unless
synaptic, ``pre`` (the pre-reset membrane) empty unless ``reset_delay=False`` and
``for_backward``. The state precision is the input's, so the membrane output is the saved state
and the surrogate derivative is recomputed in the backward (no trace).

The backward (:func:`linear_lif_backward`) is the same for every backend: the backend's LIF
backward gives the gradient of the current ``G: [T, B, N]`` (materialised: the backward needs
it whole for the products), then ``grad_x = G W``, ``dW = G^T x``, ``db = sum G`` as products
over all steps. For a static input the sums over time come first: ``grad_x = (sum_t G_t) W`` and
``dW = (sum_t G_t)^T x``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..spec import LIFSpec

Tensor = torch.Tensor

__all__ = ["linear_lif_backward", "is_static"]


def is_static(x: Tensor) -> bool:
    """Whether ``x: [T, B, K]`` is one ``[B, K]`` input expanded over time (time stride 0)."""
    return x.shape[0] > 1 and x.stride(0) == 0


def forward_outputs(x: Tensor, N: int, spec: LIFSpec, for_backward: bool,
                    alloc: Callable[[tuple, torch.dtype, torch.device], Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(spk, syn, mem, pre)`` for ``x: [T, B, K]`` and ``N`` outputs, each ``[T, B, N]`` in
    ``x.dtype`` from ``alloc(shape, dtype, device)``, or empty where the spec has none (``syn``
    unless synaptic, ``pre`` unless an immediate reset is kept for the backward)."""
    shape = (x.shape[0], x.shape[1], N)

    def out(present: bool) -> Tensor:
        return alloc(shape, x.dtype, x.device) if present else x.new_empty(0)

    return out(True), out(spec.synaptic), out(True), out(spec.immediate_reset and for_backward)


def linear_lif_backward(lif_backward: Callable, grad_spk: Optional[Tensor], grad_syn: Optional[Tensor],
                        grad_mem: Optional[Tensor], x: Tensor, weight: Tensor, mem: Tensor, syn: Tensor, pre: Tensor,
                        mem0: Optional[Tensor], syn0: Optional[Tensor], beta: Tensor, thr: Tensor, alpha: Tensor,
                        spec: LIFSpec, needs: tuple[bool, bool, bool, bool, bool, bool],
                        weight_gradient: Optional[Callable[[Tensor, Tensor], Tensor]] = None):
    """``(grad_x, grad_weight, grad_bias, grad_mem0, grad_syn0, grad_beta, grad_threshold,
    grad_alpha)``, None where ``needs = (x, weight, bias, beta, threshold, alpha)`` says no (or
    the initial state is absent). ``x: [T, B, K]`` as the forward saw it; ``grad_x`` has its
    shape (for a static input the time-summed gradient, expanded). ``weight_gradient(G2, x2)``
    replaces the product ``G2^T x2`` (``[rows, N]``, ``[rows, K]``; the host's spike product)."""
    need_x, need_w, need_b, need_beta, need_thr, need_alpha = needs
    T, B, N = mem.shape
    K = x.shape[2]
    empty = mem.new_empty(0)
    synaptic = spec.synaptic
    grads = lif_backward(
        grad_spk, grad_syn if synaptic else None, grad_mem, empty, mem, syn if synaptic else empty, mem, pre,
        mem0, syn0 if synaptic else None, None, beta, thr, alpha if synaptic else empty, empty, spec, x.dtype,
        (need_beta, need_thr, need_alpha and synaptic, False),
    )
    G, g_mem0, g_syn0, _g_spk0, g_beta, g_thr, g_alpha, _g_v = grads
    grad_x = grad_w = grad_b = None
    if G.dtype != x.dtype:
        G = G.to(x.dtype)
    if is_static(x):
        g_sum = G.sum(0)
        if need_x:
            grad_x = (g_sum @ weight).unsqueeze(0).expand(T, B, K)
        if need_w:
            grad_w = g_sum.t() @ x[0]
    else:
        G2 = G.reshape(T * B, N)
        if need_x:
            grad_x = (G2 @ weight).reshape(T, B, K)
        if need_w:
            x2 = x.reshape(T * B, K)
            grad_w = weight_gradient(G2, x2) if weight_gradient is not None else G2.t() @ x2
    if need_b:
        grad_b = G.sum((0, 1)) if T * B > 0 else G.new_zeros(N)

    def present(g: Optional[Tensor], needed: bool) -> Optional[Tensor]:
        return g if needed and g is not None and g.numel() else None

    return (grad_x, grad_w, grad_b, g_mem0 if mem0 is not None else None,
            g_syn0 if synaptic and syn0 is not None else None,
            present(g_beta, need_beta), present(g_thr, need_thr), present(g_alpha, need_alpha and synaptic))
