"""The fused LIF op: an eager autograd Function, and a ``torch.library`` custom op for tracing.

:func:`lif_apply` is the one entry point. In eager mode it calls :class:`FusedLIF`, a plain
``torch.autograd.Function`` that calls the backend's launchers directly: the dispatcher's
Python custom-op machinery (schema defaults, redispatch, output alias checks) cost more than a
small kernel. While ``torch.compile`` traces (``torch.compiler.is_compiling()``) it calls the
custom op instead, whose fake implementations let the graph be captured without breaks.
Both paths run the same backend functions with the same saved tensors.

``fusedsnn::lif_forward`` runs the whole time loop through the chosen backend and returns the
outputs plus what the backward needs; ``fusedsnn::lif_backward`` runs the reverse loop. Both have
fake (meta) implementations, so ``torch.compile`` traces models that use them without graph
breaks, and the pair is wired together with ``register_autograd``: this is the one autograd
Function of the LIF family, whatever the backend.

Absent optional tensors (initial states, the all-to-all recurrent input, parameters a neuron
type does not have) are passed as empty tensors. Which backend runs is a string argument
resolved by the caller, so no environment or device dispatch happens inside the autograd code.
"""

from __future__ import annotations

import os

import torch

from ..backends.registry import Backend, get_backend
from ..spec import RESET_NONE, LIFSpec, spec_from_flags

Tensor = torch.Tensor

def _opt(t: Tensor) -> Tensor | None:
    return t if t.numel() else None


@torch.library.custom_op("fusedsnn::lif_forward", mutates_args=())
def lif_forward(
    x: Tensor, mem0: Tensor, syn0: Tensor, spk0: Tensor, rec: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, V: Tensor,
    synaptic: bool, recurrence: int, reset: int, reset_delay: bool,
    surrogate: int, p0: float, p1: float, gsf: float, store_state: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``x: [T, B, F]`` -> ``(spk, syn, mem, trace, mem_state, pre)``, each ``[T, B, F]`` or empty."""
    spec = spec_from_flags(synaptic, recurrence, reset, reset_delay, surrogate, p0, p1, gsf)
    outs = get_backend(backend).lif_forward(
        x, _opt(mem0), _opt(syn0), _opt(spk0), _opt(rec), beta, threshold, alpha, V, spec, store_state
    )
    # A backend may return None for an absent output (the host does, for the eager path); the
    # op's outputs are tensors that must not alias one another: distinct empty ones.
    sdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    return tuple(x.new_empty(0, dtype=x.dtype if i < 3 else sdt) if o is None else o
                 for i, o in enumerate(outs))


@lif_forward.register_fake
def _lif_forward_fake(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, synaptic, recurrence,
                      reset, reset_delay, surrogate, p0, p1, gsf, store_state, backend):
    sdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    # row-major, as the backends allocate (backends/layout.py), whatever x's strides
    spk = x.new_empty(x.shape)
    syn = x.new_empty(x.shape) if synaptic else x.new_empty(0)
    mem = x.new_empty(x.shape)
    state_copy = store_state and x.dtype != sdt
    state = x.new_empty(x.shape, dtype=sdt) if state_copy else x.new_empty(0, dtype=sdt)
    immediate = (not reset_delay) and reset != RESET_NONE
    # Present only where the backward cannot recompute it (spec.recomputes_surrogate).
    recompute = x.dtype == sdt
    trace = x.new_empty(0 if recompute else x.shape, dtype=sdt)
    pre = x.new_empty(x.shape, dtype=sdt) if immediate else x.new_empty(0, dtype=sdt)
    return spk, syn, mem, trace, state, pre


@torch.library.custom_op("fusedsnn::lif_backward", mutates_args=())
def lif_backward(
    grad_spk: Tensor, grad_syn: Tensor, grad_mem: Tensor,
    trace: Tensor, mem_hist: Tensor, syn_hist: Tensor, spk_hist: Tensor, pre: Tensor,
    mem0: Tensor, syn0: Tensor, spk0: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, V: Tensor,
    synaptic: bool, recurrence: int, reset: int, reset_delay: bool,
    surrogate: int, p0: float, p1: float, gsf: float,
    x_dtype: torch.dtype, need_beta: bool, need_threshold: bool, need_alpha: bool, need_V: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Reverse time loop (``trace`` empty: the surrogate derivative is recomputed from ``pre`` or
    ``mem_hist``): ``(grad_x, grad_mem0, grad_syn0, grad_spk0, grad_beta, grad_threshold,
    grad_alpha, grad_V)``; parameter gradients are ``[F]``, or empty when not requested."""
    spec = spec_from_flags(synaptic, recurrence, reset, reset_delay, surrogate, p0, p1, gsf)
    grads = get_backend(backend).lif_backward(
        _opt(grad_spk), _opt(grad_syn), _opt(grad_mem), trace, mem_hist, syn_hist, spk_hist, pre,
        _opt(mem0), _opt(syn0), _opt(spk0), beta, threshold, alpha, V, spec, x_dtype,
        (need_beta, need_threshold, need_alpha, need_V),
    )
    # A backend may return None for a gradient nobody asked for (the host does for absent
    # initial states and unrequested parameters); the schema has tensors: distinct empty ones.
    # An absent initial state is an empty input that cannot require grad, so nothing reads its
    # gradient: no [B, F] zero fill (the fake below gives the same shapes).
    sdt = torch.float64 if x_dtype == torch.float64 else torch.float32
    state_shape = mem_hist.shape[1:]
    absent = [not t.numel() for t in (mem0, syn0, spk0)] + [False] * 4

    def schema(i: int, g: Tensor | None) -> Tensor:
        if absent[i] or (g is None and i >= 3):
            return mem_hist.new_empty(0, dtype=sdt)
        return mem_hist.new_zeros(state_shape, dtype=sdt) if g is None else g

    return (grads[0],) + tuple(schema(i, g) for i, g in enumerate(grads[1:]))


@lif_backward.register_fake
def _lif_backward_fake(grad_spk, grad_syn, grad_mem, trace, mem_hist, syn_hist, spk_hist, pre,
                       mem0, syn0, spk0, beta, threshold, alpha, V, synaptic, recurrence, reset,
                       reset_delay, surrogate, p0, p1, gsf, x_dtype, need_beta, need_threshold,
                       need_alpha, need_V, backend):
    # The trace may be empty (recomputed in the backward); the membrane history never is.
    sdt = torch.float64 if x_dtype == torch.float64 else torch.float32
    state_shape = mem_hist.shape[1:]
    F = beta.shape[0]

    def param(needed: bool) -> Tensor:
        return mem_hist.new_empty((F,) if needed else (0,), dtype=sdt)

    def state_grad(state: Tensor) -> Tensor:
        return mem_hist.new_empty(state_shape if state.numel() else (0,), dtype=sdt)

    return (
        mem_hist.new_empty(mem_hist.shape, dtype=x_dtype),
        state_grad(mem0), state_grad(syn0), state_grad(spk0),
        param(need_beta), param(need_threshold), param(need_alpha), param(need_V),
    )


_FLAG_NAMES = ("synaptic", "recurrence", "reset", "reset_delay", "surrogate", "p0", "p1", "gsf")


# ---------------------------------------------------------------------------------------------
# The glue both paths share: what is saved, and the gradients handed back to autograd
# ---------------------------------------------------------------------------------------------

def _absent(t: Tensor | None) -> bool:
    return t is None or t.numel() == 0


def _saved_histories(x_dtype: torch.dtype, mem: Tensor, syn: Tensor | None, spk: Tensor | None,
                     state: Tensor | None, needs: tuple[bool, ...]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(mem_hist, syn_hist, spk_hist)`` for the backward.

    The membrane history is kept in state precision: the output itself unless ``x`` is narrower.
    The backward reads ``syn[t-1]`` only for alpha's gradient and ``spk[t-1]`` only for V's;
    keeping them otherwise would hold a ``[T, B, F]`` output alive that the next layer may not
    keep (a SpikeLinear keeps bits). The membrane history stands in: same shape and dtype,
    never read (host and Triton skip the load, the reference drops the sum).
    """
    mem_hist = mem if _absent(state) else state
    if mem_hist.dtype == x_dtype:
        syn = syn if needs[7] else mem_hist
        spk = spk if needs[8] else mem_hist
    return mem_hist, syn, spk


def _input_dtypes(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V) -> tuple:
    """The dtype each differentiable input's gradient is cast to (None: the input is absent)."""
    return (x.dtype, *(None if _absent(t) else t.dtype for t in (mem0, syn0, spk0, rec, beta, threshold, alpha, V)))


def _input_gradients(needs: tuple[bool, ...], dtypes: tuple, grads: tuple) -> list:
    """The backend's ``(grad_x, grad_mem0, grad_syn0, grad_spk0, grad_beta, grad_threshold,
    grad_alpha, grad_V)`` as the gradients of ``(x, mem0, syn0, spk0, rec, beta, threshold, alpha,
    V)``: None where not needed or absent, else cast to the input's dtype (``rec`` receives
    ``grad_x``: it is added to the input current)."""
    grad_x, g_mem0, g_syn0, g_spk0, g_beta, g_thr, g_alpha, g_V = grads
    out = []
    for need, dtype, grad in zip(needs, dtypes, (grad_x, g_mem0, g_syn0, g_spk0, grad_x, g_beta, g_thr, g_alpha, g_V)):
        if not need or dtype is None or grad is None:
            out.append(None)
        else:
            out.append(grad if grad.dtype == dtype else grad.to(dtype))
    return out


# ---------------------------------------------------------------------------------------------
# Traced path (torch.compile): the custom op's autograd
# ---------------------------------------------------------------------------------------------

def _setup_context(ctx, inputs, output):
    (x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, *flags) = inputs
    spk, syn, mem, trace, state, pre = output
    # An output nobody differentiates (the membrane, when only spikes reach the loss) must come
    # as None, not as zeros: AOTAutograd otherwise writes a [T, B, F] zero tensor into the
    # compiled backward and the kernel reads it, two full-size passes per neuron for nothing.
    ctx.set_materialize_grads(False)
    ctx.flags = dict(zip(_FLAG_NAMES, flags[: len(_FLAG_NAMES)]))
    ctx.backend = flags[-1]
    ctx.x_dtype = x.dtype
    ctx.dtypes = _input_dtypes(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V)
    mem_hist, syn, spk = _saved_histories(x.dtype, mem, syn, spk, state, ctx.needs_input_grad)
    ctx.save_for_backward(trace, mem_hist, syn, spk, pre, mem0, syn0, spk0, beta, threshold, alpha, V)


def _backward(ctx, grad_spk, grad_syn, grad_mem, _g_trace, _g_state, _g_pre, backward_op=None):
    (trace, mem_hist, syn, spk, pre, mem0, syn0, spk0, beta, threshold, alpha, V) = ctx.saved_tensors
    needs = ctx.needs_input_grad
    empty = trace.new_empty(0)

    def g(t):
        return empty if t is None else t

    grads = (backward_op or lif_backward)(
        g(grad_spk), g(grad_syn) if ctx.flags["synaptic"] else empty, g(grad_mem),
        trace, mem_hist, syn, spk, pre, mem0, syn0, spk0, beta, threshold, alpha, V,
        *(ctx.flags[name] for name in _FLAG_NAMES),
        ctx.x_dtype, needs[5], needs[6], needs[7], needs[8], ctx.backend,
    )
    return (*_input_gradients(needs, ctx.dtypes, grads), *([None] * (len(_FLAG_NAMES) + 2)))


lif_forward.register_autograd(_backward, setup_context=_setup_context)

_COMPILED_WITH_AUTOGRAD: set = set()


def compiled_triton_op_enabled() -> bool:
    """Whether ``torch.compile`` traces the triton backend's neurons as ``triton_op`` operators
    (``FUSEDSNN_COMPILE_TRITON_OP=1``; inductor then launches the Triton kernels from its own
    code) instead of the opaque custom op ``fusedsnn::lif_forward``. Off by default: not yet
    run on a GPU."""
    return os.environ.get("FUSEDSNN_COMPILE_TRITON_OP", "0") not in ("", "0")


def compiled_forward_op(backend: Backend, x: Tensor):
    """The forward operator ``torch.compile`` traces for ``backend`` on ``x``: its own (with the
    same autograd glue, wired on first use) when it has one, ``x`` is on a GPU and the flag is
    on, else the generic op (whose body calls the launcher: the only way on the interpreter)."""
    if backend.compiled_lif is None or x.device.type != "cuda" or not compiled_triton_op_enabled():
        return lif_forward
    forward_op, backward_op = backend.compiled_lif
    if forward_op not in _COMPILED_WITH_AUTOGRAD:
        def backward(ctx, *grads):
            return _backward(ctx, *grads, backward_op=backward_op)

        forward_op.register_autograd(backward, setup_context=_setup_context)
        _COMPILED_WITH_AUTOGRAD.add(forward_op)
    return forward_op


# ---------------------------------------------------------------------------------------------
# Eager path
# ---------------------------------------------------------------------------------------------

_FORWARD_AD_MESSAGE = (
    "fusedsnn's fused LIF neurons do not support forward-mode AD (torch.func.jvp, "
    "torch.autograd.forward_ad, jacfwd): only reverse mode (backward, torch.autograd.grad) "
    "is implemented. Use reverse mode, or run the layer on the snnTorch neuron it mirrors."
)
_TRANSFORMS_MESSAGE = (
    "fusedsnn's fused LIF neurons do not support torch.func transforms (grad, vjp, jacrev, "
    "vmap) nor forward-mode AD (jvp, jacfwd): the fused kernels run on plain tensors. Use "
    "torch.autograd.grad / backward (reverse mode), or the snnTorch neuron under torch.func."
)
_DOUBLE_BACKWARD_MESSAGE = (
    "fusedsnn's fused LIF neurons do not support double backward: their backward is a fused "
    "reverse time loop that is not itself differentiable, so torch.autograd.grad / backward "
    "with create_graph=True (higher-order gradients, gradient penalties) cannot go through them. "
    "Call backward without create_graph, or use the snnTorch neuron for higher-order gradients."
)


class FusedLIF(torch.autograd.Function):
    """Eager autograd Function over a backend's forward/backward launchers.

    ``forward(x: [T, B, F], mem0/syn0/spk0: [B, F] or None, rec: [T, B, F] or None,
    beta/threshold/alpha/V: [F], spec, store_state, save, backend)`` returns
    ``(spk, syn, mem, trace, mem_state, pre)`` like the custom op; only the first three are
    differentiable. ``save=False`` (no input needs a gradient) lets the backend skip what only
    the backward reads.
    """

    @staticmethod
    def forward(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, spec: LIFSpec,
                store_state: bool, save: bool, backend: Backend):
        return backend.lif_forward(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, spec, store_state,
                               for_backward=save)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, spec, _store, save, backend) = inputs
        spk, syn, mem, trace, state, pre = output
        # Absent outputs are None (host) or empty tensors (the other backends).
        non_differentiable = [t for t in (trace, state, pre) if t is not None]
        if non_differentiable:
            ctx.mark_non_differentiable(*non_differentiable)
        # Unused outputs' gradients arrive as None, not as zero-filled [T, B, F] tensors.
        ctx.set_materialize_grads(False)
        if not save:
            return
        ctx.spec = spec
        ctx.backend = backend
        ctx.x_dtype = x.dtype
        ctx.dtypes = _input_dtypes(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V)
        mem_hist, syn, spk = _saved_histories(x.dtype, mem, syn, spk, state, ctx.needs_input_grad)
        ctx.save_for_backward(trace, mem_hist, syn, spk, pre, mem0, syn0, spk0, beta, threshold, alpha, V)

    @staticmethod
    def backward(ctx, grad_spk, grad_syn, grad_mem, _g_trace, _g_state, _g_pre):
        if torch.is_grad_enabled():
            raise RuntimeError(_DOUBLE_BACKWARD_MESSAGE)
        (trace, mem_hist, syn, spk, pre, mem0, syn0, spk0, beta, threshold, alpha, V) = ctx.saved_tensors
        needs = ctx.needs_input_grad
        spec = ctx.spec
        grads = ctx.backend.lif_backward(
            grad_spk, grad_syn if spec.synaptic else None, grad_mem, trace, mem_hist, syn, spk, pre,
            mem0, syn0, spk0, beta, threshold, alpha, V, spec, ctx.x_dtype,
            (needs[5], needs[6], needs[7], needs[8]),
        )
        return (*_input_gradients(needs, ctx.dtypes, grads), None, None, None, None)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(_FORWARD_AD_MESSAGE)


def lif_apply(x: Tensor, mem0: Tensor | None, syn0: Tensor | None, spk0: Tensor | None,
              rec: Tensor | None, beta: Tensor, threshold: Tensor, alpha: Tensor, V: Tensor,
              spec: LIFSpec, store_state: bool, backend: Backend) -> tuple[Tensor, Tensor, Tensor]:
    """Run the fused time loop: ``x: [T, B, F]`` -> ``(spk, syn, mem)``, each ``[T, B, F]``
    (``syn`` None or empty unless synaptic). States are ``[B, F]`` (None or empty: zeros),
    ``rec`` the all-to-all input ``[T, B, F]`` (None or empty: none), parameters ``[F]``
    (``alpha``/``V`` None or empty where the neuron has none)."""
    if torch.compiler.is_compiling():
        empty = x.new_empty(0)

        def e(t):
            return empty if t is None else t

        out = compiled_forward_op(backend, x)(
            x, e(mem0), e(syn0), e(spk0), e(rec), beta, threshold, e(alpha), e(V),
            spec.synaptic, spec.recurrence, spec.reset, spec.reset_delay, spec.surrogate.code,
            float(spec.surrogate.p0), float(spec.surrogate.p1), float(spec.graded_spikes_factor),
            store_state, backend.name,
        )
        return out[0], out[1], out[2]
    # Empty tensors mean "absent" as None does; normalise to None (the eager callers in
    # fusedsnn.functional pass None already, so the check is all this costs them).
    mem0, syn0, spk0, rec, alpha, V = (None if _absent(t) else t for t in (mem0, syn0, spk0, rec, alpha, V))
    save = torch.is_grad_enabled() and (
        x.requires_grad or beta.requires_grad or threshold.requires_grad
        or any(t is not None and t.requires_grad for t in (alpha, V, mem0, syn0, spk0, rec))
    )
    if torch._C._are_functorch_transforms_active():
        # The launchers need real storage; a transform's wrapped tensors have none. Refuse
        # clearly instead of failing inside a launcher (or, for jvp, returning zero tangents).
        raise NotImplementedError(_TRANSFORMS_MESSAGE)
    # Function.apply binds default arguments with inspect.signature on every call (tens of
    # microseconds); the C entry point below is what it calls next when no torch.func transform
    # is active, and FusedLIF.forward has no defaults to bind.
    out = _apply_without_transforms(x, mem0, syn0, spk0, rec, beta, threshold, alpha, V, spec,
                                    store_state and save, save, backend)
    return out[0], out[1], out[2]


_apply_without_transforms = super(torch.autograd.Function, FusedLIF).apply
