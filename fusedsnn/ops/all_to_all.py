"""The all-to-all recurrent LIF as one op over the whole sequence, with one autograd node.

``fusedsnn::lif_all_to_all_forward`` runs RLeaky/RSynaptic with an ``nn.Linear(N, N)`` recurrence for
all T steps in the chosen backend: the recurrent input ``W @ spk[t-1] + b`` is formed inside the
loop, not passed in. ``fusedsnn::lif_all_to_all_backward`` is the reverse loop, with the spike gradient
through the recurrence and ``dW``, ``db`` as one product over all steps. Both have fake
implementations (torch.compile) and are wired together with ``register_autograd``, as
:mod:`fusedsnn.ops` does for the elementwise neurons.

Absent optional tensors (initial states, bias, alpha) are passed as empty tensors. The backend
is named by the caller and found in the one registry (:mod:`fusedsnn.backends.registry`); which
backends have the op, and for which inputs, is each backend's ``all_to_all_unsupported``.
"""

from __future__ import annotations

import torch

from ..backends.registry import get_backend
from ..spec import RECURRENCE_ALL_TO_ALL, RESET_NONE, state_dtype, spec_from_flags

Tensor = torch.Tensor

__all__ = ["lif_all_to_all_forward", "lif_all_to_all_backward"]


def _opt(t: Tensor) -> Tensor | None:
    return t if t.numel() else None


@torch.library.custom_op("fusedsnn::lif_all_to_all_forward", mutates_args=())
def lif_all_to_all_forward(
    x: Tensor, mem0: Tensor, syn0: Tensor, spk0: Tensor, weight: Tensor, bias: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor,
    synaptic: bool, reset: int, reset_delay: bool, surrogate: int, p0: float, p1: float, gsf: float,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``x: [T, B, N]``, ``weight: [N, N]`` -> ``(spk, syn, mem, trace, pre)``, each ``[T, B, N]`` or empty."""
    spec = spec_from_flags(synaptic, RECURRENCE_ALL_TO_ALL, reset, reset_delay, surrogate, p0, p1, gsf)
    return get_backend(backend).all_to_all_forward(x, _opt(mem0), _opt(syn0), _opt(spk0), weight, _opt(bias), beta, threshold, alpha, spec)


@lif_all_to_all_forward.register_fake
def _forward_fake(x, mem0, syn0, spk0, weight, bias, beta, threshold, alpha, synaptic, reset, reset_delay,
                  surrogate, p0, p1, gsf, backend):
    immediate = (not reset_delay) and reset != RESET_NONE
    # Row-major, as the backends allocate (backends/layout.py row_major_empty), whatever x's
    # strides; states and traces in the state dtype (float32 for a 16-bit x, which only Triton takes).
    sdt = state_dtype(x.dtype)

    def state(present: bool) -> Tensor:
        return x.new_empty(x.shape if present else (0,), dtype=sdt)

    return x.new_empty(x.shape), state(synaptic), state(True), state(True), state(immediate)


@torch.library.custom_op("fusedsnn::lif_all_to_all_backward", mutates_args=())
def lif_all_to_all_backward(
    grad_spk: Tensor, grad_syn: Tensor, grad_mem: Tensor,
    trace: Tensor, mem: Tensor, syn: Tensor, spk: Tensor, pre: Tensor,
    mem0: Tensor, syn0: Tensor, spk0: Tensor, weight: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor,
    synaptic: bool, reset: int, reset_delay: bool, surrogate: int, p0: float, p1: float, gsf: float,
    need_weight: bool, need_bias: bool, need_beta: bool, need_threshold: bool, need_alpha: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(grad_x, grad_mem0, grad_syn0, grad_spk0, grad_weight, grad_bias, grad_beta, grad_threshold,
    grad_alpha)``; states ``[B, N]``, ``grad_weight: [N, N]``, the rest ``[N]`` or empty."""
    spec = spec_from_flags(synaptic, RECURRENCE_ALL_TO_ALL, reset, reset_delay, surrogate, p0, p1, gsf)
    return get_backend(backend).all_to_all_backward(_opt(grad_spk), _opt(grad_syn), _opt(grad_mem), trace, mem, syn, spk, pre,
                    _opt(mem0), _opt(syn0), _opt(spk0), weight, beta, threshold, alpha, spec,
                    (need_weight, need_bias, need_beta, need_threshold, need_alpha))


@lif_all_to_all_backward.register_fake
def _backward_fake(grad_spk, grad_syn, grad_mem, trace, mem, syn, spk, pre, mem0, syn0, spk0, weight, beta,
                   threshold, alpha, synaptic, reset, reset_delay, surrogate, p0, p1, gsf, need_weight,
                   need_bias, need_beta, need_threshold, need_alpha, backend):
    N = weight.shape[0]
    state = trace.shape[1:]

    def vec(needed: bool) -> Tensor:
        return trace.new_empty((N,) if needed else (0,))

    return (trace.new_empty(trace.shape), trace.new_empty(state), trace.new_empty(state), trace.new_empty(state),
            trace.new_empty((N, N) if need_weight else (0,)), vec(need_bias), vec(need_beta),
            vec(need_threshold), vec(need_alpha and synaptic))


_FLAGS = ("synaptic", "reset", "reset_delay", "surrogate", "p0", "p1", "gsf")


def _setup_context(ctx, inputs, output):
    x, mem0, syn0, spk0, weight, bias, beta, threshold, alpha, *flags = inputs
    spk, syn, mem, trace, pre = output
    ctx.flags = flags[: len(_FLAGS)]
    ctx.backend = flags[-1]
    ctx.dtypes = (mem0.dtype, syn0.dtype, spk0.dtype)
    ctx.in_dtypes = (x.dtype, bias.dtype)
    ctx.has_state = (mem0.numel() > 0, syn0.numel() > 0, spk0.numel() > 0, bias.numel() > 0)
    ctx.save_for_backward(trace, mem, syn, spk, pre, mem0, syn0, spk0, weight, beta, threshold, alpha)
    # outputs without a gradient (always trace and pre) arrive as None, not as zero-filled [T, B, N]
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spk, grad_syn, grad_mem, _g_trace, _g_pre):
    trace, mem, syn, spk, pre, mem0, syn0, spk0, weight, beta, threshold, alpha = ctx.saved_tensors
    needs = ctx.needs_input_grad
    synaptic = ctx.flags[0]
    empty = trace.new_empty(0)

    def g(t):
        return empty if t is None else t

    grads = lif_all_to_all_backward(
        g(grad_spk), g(grad_syn) if synaptic else empty, g(grad_mem), trace, mem, syn, spk, pre,
        mem0, syn0, spk0, weight, beta, threshold, alpha, *ctx.flags,
        needs[4], needs[5] and ctx.has_state[3], needs[6], needs[7], needs[8] and synaptic, ctx.backend,
    )
    grad_x, grad_mem0, grad_syn0, grad_spk0, grad_w, grad_b, grad_beta, grad_thr, grad_alpha = grads
    has_mem0, has_syn0, has_spk0, has_bias = ctx.has_state
    mem_dt, syn_dt, spk_dt = ctx.dtypes
    return (
        grad_x.to(ctx.in_dtypes[0]) if needs[0] else None,
        grad_mem0.to(mem_dt) if needs[1] and has_mem0 else None,
        grad_syn0.to(syn_dt) if needs[2] and has_syn0 else None,
        grad_spk0.to(spk_dt) if needs[3] and has_spk0 else None,
        grad_w.to(weight.dtype) if needs[4] else None,
        grad_b.to(ctx.in_dtypes[1]) if needs[5] and has_bias else None,
        grad_beta.to(beta.dtype) if needs[6] else None,
        grad_thr.to(threshold.dtype) if needs[7] else None,
        grad_alpha.to(alpha.dtype) if needs[8] and synaptic else None,
        *([None] * (len(_FLAGS) + 1)),
    )


lif_all_to_all_forward.register_autograd(_backward, setup_context=_setup_context)
