"""The fused Linear + LIF op: ``nn.Linear(K, N)`` then a Leaky or Synaptic neuron, one op over
the whole sequence, in which the input current ``[T, B, N]`` is never held whole.

``fusedsnn::linear_lif_forward`` takes ``x: [T, B, K]`` (or a static ``[B, K]`` used at each of
``steps`` steps), ``weight: [N, K]``, ``bias: [N]`` (empty: none) and returns ``(spk, syn, mem,
pre)``, each ``[T, B, N]`` or empty (``syn`` for Synaptic only, ``pre`` only for
``reset_delay=False`` when a backward will run). ``fusedsnn::linear_lif_backward`` is the reverse
loop plus the products ``grad_x = G W``, ``dW = G^T x``, ``db = sum G`` over all steps
(:mod:`fusedsnn.backends.linear_lif`). Both have fake implementations (torch.compile) and are
wired together with ``register_autograd``, as :mod:`fusedsnn.ops.all_to_all` does.

The backend is named by the caller and found in the one registry; which backends have the op
is each backend's ``linear_lif_reason``. Float32/float64 only: the state precision is the
input's, so the backward recomputes the surrogate from the saved membrane (no trace).
"""

from __future__ import annotations

import torch

from ..backends.registry import get_backend
from ..spec import RECURRENCE_NONE, RESET_NONE, spec_from_flags

Tensor = torch.Tensor

__all__ = ["linear_lif_forward", "linear_lif_backward"]


def _opt(t: Tensor) -> Tensor | None:
    return t if t.numel() else None


def _sequence(x: Tensor, steps: int) -> Tensor:
    """``x`` as ``[T, B, K]``: a static ``[B, K]`` input expanded over ``steps`` with stride 0."""
    return x.unsqueeze(0).expand(steps, *x.shape) if x.dim() == 2 else x


@torch.library.custom_op("fusedsnn::linear_lif_forward", mutates_args=())
def linear_lif_forward(
    x: Tensor, weight: Tensor, bias: Tensor, mem0: Tensor, syn0: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, steps: int,
    synaptic: bool, reset: int, reset_delay: bool, surrogate: int, p0: float, p1: float, gsf: float,
    for_backward: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x: [T, B, K]`` or ``[B, K]`` (with ``steps`` = T), ``weight: [N, K]`` -> ``(spk, syn, mem, pre)``."""
    spec = spec_from_flags(synaptic, RECURRENCE_NONE, reset, reset_delay, surrogate, p0, p1, gsf)
    spk, syn, mem, pre = get_backend(backend).linear_lif_forward(
        _sequence(x, steps), weight, _opt(bias), _opt(mem0), _opt(syn0), beta, threshold, alpha, spec,
        for_backward)
    # distinct tensors: a custom op's outputs must not alias one another
    return spk, syn if syn.numel() else x.new_empty(0), mem, pre if pre.numel() else x.new_empty(0)


@linear_lif_forward.register_fake
def _forward_fake(x, weight, bias, mem0, syn0, beta, threshold, alpha, steps, synaptic, reset, reset_delay,
                  surrogate, p0, p1, gsf, for_backward, backend):
    shape = (steps if x.dim() == 2 else x.shape[0], x.shape[-2], weight.shape[0])
    immediate = (not reset_delay) and reset != RESET_NONE and for_backward
    return (x.new_empty(shape), x.new_empty(shape if synaptic else (0,)), x.new_empty(shape),
            x.new_empty(shape if immediate else (0,)))


@torch.library.custom_op("fusedsnn::linear_lif_backward", mutates_args=())
def linear_lif_backward(
    grad_spk: Tensor, grad_syn: Tensor, grad_mem: Tensor, x: Tensor, weight: Tensor,
    mem: Tensor, syn: Tensor, pre: Tensor, mem0: Tensor, syn0: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, steps: int,
    synaptic: bool, reset: int, reset_delay: bool, surrogate: int, p0: float, p1: float, gsf: float,
    need_x: bool, need_weight: bool, need_bias: bool, need_beta: bool, need_threshold: bool, need_alpha: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(grad_x, grad_weight, grad_bias, grad_mem0, grad_syn0, grad_beta, grad_threshold,
    grad_alpha)``: ``grad_x`` shaped like ``x``, states ``[B, N]``, the rest ``[N]``; empty where
    not requested."""
    spec = spec_from_flags(synaptic, RECURRENCE_NONE, reset, reset_delay, surrogate, p0, p1, gsf)
    x3 = _sequence(x, steps)
    grads = get_backend(backend).linear_lif_backward(
        _opt(grad_spk), _opt(grad_syn), _opt(grad_mem), x3, weight, mem, syn, pre, _opt(mem0), _opt(syn0),
        beta, threshold, alpha, spec, (need_x, need_weight, need_bias, need_beta, need_threshold, need_alpha))
    grad_x = grads[0]
    if grad_x is not None and grad_x.shape != x.shape:  # a static [B, K] input: the sum over time
        grad_x = grad_x[0] if grad_x.stride(0) == 0 else grad_x.sum(0)
    if grad_x is not None and grad_x.dim() == 3 and grad_x.shape[0] > 1 and grad_x.stride(0) == 0:
        grad_x = grad_x.contiguous()  # an expanded [T, B, K] static gradient given a [T, B, K] x
    # distinct empty tensors for what was not requested: outputs must not alias one another
    return tuple(mem.new_empty(0) if g is None else g for g in (grad_x, *grads[1:]))


@linear_lif_backward.register_fake
def _backward_fake(grad_spk, grad_syn, grad_mem, x, weight, mem, syn, pre, mem0, syn0, beta, threshold, alpha,
                   steps, synaptic, reset, reset_delay, surrogate, p0, p1, gsf, need_x, need_weight, need_bias,
                   need_beta, need_threshold, need_alpha, backend):
    N = weight.shape[0]

    def maybe(needed: bool, shape) -> Tensor:
        return mem.new_empty(shape if needed else (0,))

    return (maybe(need_x, x.shape), maybe(need_weight, weight.shape), maybe(need_bias, (N,)),
            maybe(mem0.numel() > 0, mem0.shape), maybe(synaptic and syn0.numel() > 0, syn0.shape),
            maybe(need_beta, (N,)), maybe(need_threshold, (N,)), maybe(need_alpha and synaptic, (N,)))


_FLAGS = ("synaptic", "reset", "reset_delay", "surrogate", "p0", "p1", "gsf")


def _setup_context(ctx, inputs, output):
    x, weight, bias, mem0, syn0, beta, threshold, alpha, steps, *flags = inputs
    spk, syn, mem, pre = output
    ctx.steps = steps
    ctx.flags = flags[: len(_FLAGS)]
    ctx.backend = flags[-1]
    ctx.has = (bias.numel() > 0, mem0.numel() > 0, syn0.numel() > 0)
    ctx.dtypes = (x.dtype, weight.dtype, bias.dtype, mem0.dtype, syn0.dtype, beta.dtype, threshold.dtype, alpha.dtype)
    ctx.save_for_backward(x, weight, mem, syn, pre, mem0, syn0, beta, threshold, alpha)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spk, grad_syn, grad_mem, _g_pre):
    x, weight, mem, syn, pre, mem0, syn0, beta, threshold, alpha = ctx.saved_tensors
    needs = ctx.needs_input_grad
    synaptic = ctx.flags[0]
    has_bias, has_mem0, has_syn0 = ctx.has
    empty = mem.new_empty(0)

    def g(t):
        return empty if t is None else t

    grads = linear_lif_backward(
        g(grad_spk), g(grad_syn) if synaptic else empty, g(grad_mem), x, weight, mem, syn, pre, mem0, syn0,
        beta, threshold, alpha, ctx.steps, *ctx.flags,
        needs[0], needs[1], needs[2] and has_bias, needs[5], needs[6], needs[7] and synaptic, ctx.backend,
    )
    wanted = (needs[0], needs[1], needs[2] and has_bias, needs[3] and has_mem0, needs[4] and has_syn0 and synaptic,
              needs[5], needs[6], needs[7] and synaptic)
    dtypes = tuple(ctx.dtypes[i] for i in (0, 1, 2, 3, 4, 5, 6, 7))
    out = tuple(gr.to(dt) if want else None for gr, want, dt in zip(grads, wanted, dtypes))
    return (*out, *([None] * (len(_FLAGS) + 3)))


linear_lif_forward.register_autograd(_backward, setup_context=_setup_context)
