"""Functional API of the fused neurons: whole sequences in, whole sequences out.

Every function takes ``x: [T, B, *features]`` (time first) and returns what snnTorch's per-step
call returns, stacked over time, each ``[T, B, *features]`` in ``x.dtype``:

* :func:`leaky`, :func:`rleaky` -> ``(spk, mem)``
* :func:`synaptic`, :func:`rsynaptic` -> ``(spk, syn, mem)``

Parameters (``beta``, ``threshold``, ``alpha``, ``V``) are numbers (Python or NumPy, int or
float), NumPy arrays or tensors that broadcast, as in snnTorch's per-step call, against one
step ``[B, *features]`` without varying over the batch: a scalar, or per-neuron values of shape
``features``, ``(1, *features)`` or any shape that broadcasts to them (e.g. ``(1, F)`` or
``(F,)`` for ``[T, B, F]``). Integer values are used as float32, as snnTorch's arithmetic
promotes them. ``beta`` and ``alpha`` are clamped to [0, 1] as snnTorch does, with gradients
through the clamp. Initial states are ``[B, *features]``; a missing state starts at zero.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable, Optional, Union

import torch

from . import surrogate as surrogate_mod
from .backends import Backend, resolve_backend
from .spec import (
    RECURRENCE_ALL_TO_ALL,
    RECURRENCE_NONE,
    RECURRENCE_ONE_TO_ONE,
    RESET_CODES,
    LIFSpec,
    needs_prev_mem,
    state_dtype,
)
from .ops import time_chunks
from .ops.all_to_all import lif_all_to_all_forward
from .ops.lif import lif_apply
from .ops.linear_lif import linear_lif_forward
from .ops.recompute import SAVED_STATES, check_saved_state, recompute_lif, resolve_saved_state

Tensor = torch.Tensor
# A number (Python or NumPy), a NumPy array or a tensor, as snnTorch accepts.
Param = Union[float, int, Tensor, "numpy.ndarray"]

__all__ = ["leaky", "synaptic", "rleaky", "rsynaptic", "lif", "linear_leaky", "linear_synaptic", "linear_lif",
           "SAVED_STATES"]


def _check_input(x: object) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [T, B, *features], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(
            f"x must have shape [T, B, *features] (at least 2 dims, time first), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (float32, float16, bfloat16 or float64), got {x.dtype}")
    return x


def _check_state(name: str, state: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    if state is None:
        return None
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, *features] or None, got {type(state).__name__}")
    if tuple(state.shape) != tuple(x.shape[1:]):
        raise ValueError(f"{name} must have shape {tuple(x.shape[1:])} ([B, *features] of x), got {tuple(state.shape)}")
    allowed = (x.dtype, state_dtype(x.dtype))
    if state.dtype not in allowed:
        if allowed[0] == allowed[1]:
            expected = f"{x.dtype} (that of x)"
        else:
            expected = f"{x.dtype} (that of x) or {allowed[1]} (the state precision)"
        raise ValueError(f"{name} must have dtype {expected}, got {state.dtype}")
    if state.device != x.device:
        raise ValueError(f"{name} is on {state.device} but x is on {x.device}")
    return state


def _param_tensor(name: str, value: object, x: Tensor) -> Tensor:
    """``value`` as a real tensor on x's device (a number, a NumPy array or scalar, or a tensor)."""
    expected = f"a number, a NumPy array or a tensor broadcastable to the features {tuple(x.shape[2:])}"
    if isinstance(value, torch.Tensor):
        tensor = value
        if tensor.device != x.device:
            raise ValueError(f"{name} is on {tensor.device} but x is on {x.device}")
    elif isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}, got the bool {value!r}")
    elif isinstance(value, numbers.Real):  # Python and NumPy ints and floats
        # A 0-dim value enters snnTorch's float32 arithmetic as a float32 scalar.
        tensor = torch.as_tensor(float(value), dtype=torch.float32, device=x.device)
    elif hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        try:
            tensor = torch.as_tensor(value, device=x.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be {expected}, got {value!r} ({err})") from None
    else:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {tensor.dtype}")
    return tensor


def _param(name: str, value: Param, x: Tensor, clamp: bool) -> Tensor:
    """A neuron parameter as a contiguous ``[F]`` tensor in state precision, in the autograd graph.

    Accepts what snnTorch's per-step arithmetic accepts for one neuron per value: any shape that
    broadcasts against one step ``[B, *features]`` to exactly that shape, and is constant over
    the batch (e.g. ``()``, ``(F,)``, ``(1, F)`` for ``x: [T, B, F]``).
    """
    fast = _param_fast(value, x, clamp)
    if fast is not None:
        return fast
    features = tuple(x.shape[2:])
    step = tuple(x.shape[1:])
    tensor = _param_tensor(name, value, x)
    shape = tuple(tensor.shape)
    try:
        broadcast = torch.broadcast_shapes(shape, step)
    except RuntimeError:
        broadcast = None
    if broadcast != step:
        raise ValueError(
            f"{name} of shape {shape} does not broadcast over one step {step} ([B, *features]) of "
            f"x ([T, B, *features]); give a scalar or one value per neuron (shape {features} or "
            f"(1, *{features}))"
        )
    if len(shape) == len(step):
        if shape[0] != 1:
            raise ValueError(
                f"{name} of shape {shape} has one value per sample in the batch dimension; fused "
                f"neurons take one value per neuron: give shape {features} or (1, *{features})"
            )
        tensor = tensor.squeeze(0)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)  # snnTorch's arithmetic promotes integers the same way
    if clamp:
        tensor = tensor.clamp(0, 1)
    tensor = tensor.to(state_dtype(x.dtype))
    return tensor.expand(features).reshape(-1)


_FLOAT_PARAMS: dict = {}


def _param_fast(value: Param, x: Tensor, clamp: bool) -> Optional[Tensor]:
    """The common cases of :func:`_param` without re-validating what cannot be wrong, or None.

    A Python float becomes the same ``[F]`` tensor on every call (cached: it carries no
    gradient); a floating-point tensor on x's device that is a scalar or already has the
    feature shape needs no broadcast check. Anything else takes the general path.
    """
    if type(value) is float and not torch._C._are_functorch_transforms_active():
        # (under torch.func transforms a new tensor is a transform's wrapper: never cache one)
        key = (value, clamp, x.shape[2:], x.dtype, x.device)
        cached = _FLOAT_PARAMS.get(key)
        if cached is None:
            v = min(max(value, 0.0), 1.0) if clamp else value
            # float32 first, as snnTorch stores the float, then state precision.
            scalar = torch.tensor(v, dtype=torch.float32, device=x.device).to(state_dtype(x.dtype))
            F = 1
            for d in x.shape[2:]:
                F *= d
            cached = scalar.expand(F).contiguous()
            if len(_FLOAT_PARAMS) > 1024:
                _FLOAT_PARAMS.clear()
            _FLOAT_PARAMS[key] = cached
        return cached
    if (type(value) is torch.Tensor or type(value) is torch.nn.Parameter) and value.is_floating_point() \
            and value.device == x.device and (value.dim() == 0 or value.shape == x.shape[2:]):
        tensor = value.clamp(0, 1) if clamp else value
        tensor = tensor.to(state_dtype(x.dtype))
        if tensor.dim() == 0:
            return tensor.expand(math.prod(x.shape[2:]))
        return tensor if tensor.dim() == 1 else tensor.reshape(-1)
    return None


def _reshaped(t: Tensor, shape) -> Tensor:
    """``t.reshape(shape)``, or ``t`` itself when it has that shape: a same-shape reshape is a
    view that adds a node to the autograd graph for nothing."""
    return t if t.shape == shape else t.reshape(shape)


def _empty(x: Tensor) -> Tensor:
    return x.new_empty(0)


def lif(
    x: Tensor,
    spec: LIFSpec,
    beta: Param,
    threshold: Param = 1.0,
    alpha: Optional[Param] = None,
    V: Optional[Param] = None,
    recurrent: Optional[Callable[[Tensor], Tensor]] = None,
    mem: Optional[Tensor] = None,
    syn: Optional[Tensor] = None,
    spk: Optional[Tensor] = None,
    backend: str = "auto",
    saved_state: str = "default",
) -> tuple[Tensor, ...]:
    """The general fused LIF call behind the four neuron functions.

    ``recurrent`` is the all-to-all recurrent map when ``spec.recurrence == RECURRENCE_ALL_TO_ALL``.
    An ``nn.Linear(F, F)`` over ``x: [T, B, F]`` runs as one fused op for the whole sequence
    (:mod:`fusedsnn.ops.all_to_all`, on backends that have it; the host's float32 product sums
    in its own order, so states may differ from snnTorch in the last bits). Any other callable,
    or a backend without that op, runs a Python time loop: each step calls the fused kernel for
    one step with ``recurrent(spk_prev)`` added exactly where snnTorch adds it.

    ``saved_state``: what is kept for the backward, one of ``SAVED_STATES``
    (:mod:`fusedsnn.ops.recompute`): "default" (the fused op's saves), "recompute" (only the
    input and initial states; the forward runs again in the backward) or "auto" ("recompute"
    for a static, stride-0 input over enough steps). All-to-all recurrence always uses "default".

    Inside a time chunk of ``fusedsnn.memory_lean(model, time_chunk=n)``
    (:mod:`fusedsnn.ops.time_chunks`) the call starts from the state the same call ended the
    previous chunk in, and records the state it ends in.
    """
    x = _check_input(x)
    mem = _check_state("mem", mem, x)
    syn = _check_state("syn", syn, x) if spec.synaptic else None
    spk = _check_state("spk", spk, x) if spec.recurrence != RECURRENCE_NONE else None
    check_saved_state(saved_state)
    chunk = time_chunks.active_chunk()
    if chunk is not None:
        # Inside a time chunk the checkpoint drops what the op saves and recomputes it: the
        # default saves, from the state the previous chunk ended in.
        mem, syn, spk = chunk.initial_states(mem, syn, spk)
        out = _lif(x, spec, beta, threshold, alpha, V, recurrent, mem, syn, spk, backend)
        chunk.record_final_states(out, spec)
        return out
    if saved_state != "default" and recurrent is None and torch.is_grad_enabled() \
            and resolve_saved_state(saved_state, x) == "recompute":
        params = {"beta": beta, "threshold": threshold, "alpha": alpha, "V": V}
        tensors = {k: v for k, v in params.items() if isinstance(v, torch.Tensor)}
        if any(t is not None and t.requires_grad for t in (x, mem, syn, spk, *tensors.values())):
            def run(x_: Tensor, mem_, syn_, spk_, *values: Tensor) -> tuple[Tensor, ...]:
                kw = {**params, **dict(zip(tensors, values))}
                return _lif(x_, spec, kw["beta"], kw["threshold"], kw["alpha"], kw["V"], None, mem_, syn_, spk_,
                            backend)

            return recompute_lif(run, spec.synaptic, spec.recurrence != RECURRENCE_NONE, x, mem, syn, spk,
                                 *tensors.values())
    return _lif(x, spec, beta, threshold, alpha, V, recurrent, mem, syn, spk, backend)


def _lif(x: Tensor, spec: LIFSpec, beta: Param, threshold: Param, alpha: Optional[Param], V: Optional[Param],
         recurrent: Optional[Callable[[Tensor], Tensor]], mem: Optional[Tensor], syn: Optional[Tensor],
         spk: Optional[Tensor], backend: str) -> tuple[Tensor, ...]:
    """:func:`lif` with the default saves, on checked inputs."""
    if spec.recurrence == RECURRENCE_ALL_TO_ALL and isinstance(recurrent, torch.nn.Linear):
        _check_recurrent_linear(recurrent, x)
    chosen = resolve_backend(backend, x)
    T, B = x.shape[0], x.shape[1]
    features = tuple(x.shape[2:])
    F = 1
    for d in features:
        F *= d
    beta_f = _param("beta", beta, x, clamp=True)
    thr_f = _param("threshold", threshold, x, clamp=False)
    # Absent parameters and states are None (lif_apply's eager path takes None; an empty
    # tensor per absent argument cost a microsecond each, for lif_apply to turn back into None).
    alpha_f = _param("alpha", alpha, x, clamp=True) if spec.synaptic else None
    V_f = _param("V", V, x, clamp=False) if spec.recurrence == RECURRENCE_ONE_TO_ONE else None
    if chosen.traced_lif is not None:  # a tracer that owns the gradients (PopTorch)
        return chosen.traced_lif(x, spec, beta_f, thr_f, alpha_f, V_f, recurrent, mem, syn, spk)
    grad_on = torch.is_grad_enabled()
    store_state = grad_on and needs_prev_mem(spec, beta_f.requires_grad, thr_f.requires_grad)

    def flat_state(state: Optional[Tensor]) -> Optional[Tensor]:
        return None if state is None else _reshaped(state, (B, F))

    def call(x3: Tensor, mem_s: Optional[Tensor], syn_s: Optional[Tensor], spk_s: Optional[Tensor],
             rec3: Optional[Tensor]):
        return lif_apply(x3, mem_s, syn_s, spk_s, rec3, beta_f, thr_f, alpha_f, V_f, spec, store_state, chosen)

    if spec.recurrence != RECURRENCE_ALL_TO_ALL:
        out_spk, out_syn, out_mem = call(
            _reshaped(x, (T, B, F)), flat_state(mem), flat_state(syn), flat_state(spk), None
        )
    elif (dense := _fused_all_to_all_weights(recurrent, x, chosen)) is not None:
        # nn.Linear(F, F) on [T, B, F]: the whole sequence is one op (fusedsnn/ops/all_to_all.py),
        # a custom op whose schema takes tensors: empty ones for what is absent.
        weight, bias = dense

        def as_tensor(t: Optional[Tensor]) -> Tensor:
            return _empty(x) if t is None else t

        out_spk, out_syn, out_mem, *_ = lif_all_to_all_forward(
            x.reshape(T, B, F), as_tensor(flat_state(mem)), as_tensor(flat_state(syn)),
            as_tensor(flat_state(spk)), weight, bias,
            beta_f, thr_f, as_tensor(alpha_f), spec.synaptic, spec.reset, spec.reset_delay, spec.surrogate.code,
            float(spec.surrogate.p0), float(spec.surrogate.p1), float(spec.graded_spikes_factor), chosen.name,
        )
        # A 16-bit x comes back with float32 states (what the op's backward reads); return x.dtype.
        out_mem = out_mem.to(x.dtype)
        out_syn = out_syn.to(x.dtype)
    else:
        # Any other recurrent map (or a backend without the fused all-to-all op): one fused
        # step per time step, with recurrent(spk_prev) added exactly where snnTorch adds it.
        if recurrent is None:
            raise ValueError("recurrent must be given (e.g. an nn.Linear) for all-to-all recurrence")
        spk_prev = spk if spk is not None else torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        mem_s, syn_s = flat_state(mem), flat_state(syn)
        spikes, syns, mems = [], [], []
        for t in range(T):
            rec_t = recurrent(spk_prev)
            if tuple(rec_t.shape) != tuple(x.shape[1:]):
                raise ValueError(
                    f"recurrent must map spikes of shape {tuple(x.shape[1:])} to the same shape, "
                    f"got {tuple(rec_t.shape)}"
                )
            s_t, y_t, m_t = call(
                x[t].reshape(1, B, F), mem_s, syn_s, None, rec_t.reshape(1, B, F).to(x.dtype)
            )
            mem_s, syn_s = m_t[0], y_t[0] if spec.synaptic else syn_s
            spk_prev = s_t[0].reshape(x.shape[1:])
            spikes.append(s_t[0])
            mems.append(m_t[0])
            syns.append(y_t[0] if spec.synaptic else None)
        if T == 0:
            out_spk = out_mem = torch.empty((0, B, F), dtype=x.dtype, device=x.device)
            out_syn = out_spk
        else:
            out_spk, out_mem = torch.stack(spikes), torch.stack(mems)
            out_syn = torch.stack(syns) if spec.synaptic else None
    shape = x.shape
    if spec.synaptic:
        return _reshaped(out_spk, shape), _reshaped(out_syn, shape), _reshaped(out_mem, shape)
    return _reshaped(out_spk, shape), _reshaped(out_mem, shape)


def _check_recurrent_linear(recurrent: torch.nn.Linear, x: Tensor) -> None:
    """An all-to-all ``nn.Linear`` recurrence must map x's features to themselves in x's dtype."""
    n_in, n_out = recurrent.in_features, recurrent.out_features
    if n_in != n_out:
        raise ValueError(f"recurrent must map spikes of shape {tuple(x.shape[1:])} to the same shape: a square "
                         f"nn.Linear(N, N) (spikes back to the same neurons), got nn.Linear({n_in}, {n_out})")
    if x.dim() < 3 or x.shape[-1] != n_in:
        raise ValueError(f"x must have shape [T, B, {n_in}] (time first; {n_in} = linear_features, the neurons "
                         f"of the recurrent nn.Linear, as the last dimension), got {tuple(x.shape)}")
    if recurrent.weight.dtype != x.dtype:
        raise ValueError(f"x has dtype {x.dtype} but the recurrent nn.Linear's weight has {recurrent.weight.dtype}: "
                         f"they must match (convert the layer, e.g. layer.to({x.dtype}), or the input)")


def _fused_all_to_all_weights(recurrent: object, x: Tensor, backend: Backend) -> Optional[tuple[Tensor, Tensor]]:
    """``(weight, bias)`` in ``x.dtype`` when ``recurrent`` is an ``nn.Linear(F, F)`` over
    ``x: [T, B, F]`` and ``backend`` has the fused all-to-all op; otherwise None."""
    if not isinstance(recurrent, torch.nn.Linear) or x.dim() != 3:
        return None
    if tuple(recurrent.weight.shape) != (x.shape[2], x.shape[2]):
        return None
    if backend.all_to_all_reason(x) is not None or recurrent.weight.device != x.device:
        return None
    bias = recurrent.bias.to(x.dtype) if recurrent.bias is not None else _empty(x)
    return recurrent.weight.to(x.dtype), bias


def make_spec(
    *,
    synaptic: bool,
    recurrence: int,
    reset_mechanism: str,
    reset_delay: bool,
    spike_grad: object,
    surrogate_disable: bool,
    graded_spikes_factor: Union[float, Tensor],
    neuron: str,
) -> LIFSpec:
    """Validate snnTorch-style keywords and build the kernel's :class:`LIFSpec`.

    With the default surrogate (``spike_grad=None``) and a number as ``graded_spikes_factor``
    the spec is cached: the same keywords give the same spec object on every call, so the
    per-call path neither re-validates nor rebuilds it (and the host backend finds its
    descriptor template by identity).
    """
    # (never while torch.compile traces: dynamo cannot guard on the type checks; and never for
    # RSynaptic without delay, which warns)
    key = None
    if not torch.compiler.is_compiling() and spike_grad is None \
            and type(graded_spikes_factor) in (float, int) and type(reset_delay) is bool \
            and not (neuron == "RSynaptic" and not reset_delay):
        key = (synaptic, recurrence, reset_mechanism, reset_delay, bool(surrogate_disable),
               float(graded_spikes_factor), neuron)
        spec = _SPECS.get(key)
        if spec is not None:
            return spec
    spec = _make_spec(synaptic=synaptic, recurrence=recurrence, reset_mechanism=reset_mechanism,
                      reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                      graded_spikes_factor=graded_spikes_factor, neuron=neuron)
    if key is not None:
        if len(_SPECS) > 256:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec


_SPECS: dict = {}


def _make_spec(
    *,
    synaptic: bool,
    recurrence: int,
    reset_mechanism: str,
    reset_delay: bool,
    spike_grad: object,
    surrogate_disable: bool,
    graded_spikes_factor: Union[float, Tensor],
    neuron: str,
) -> LIFSpec:
    if reset_mechanism not in RESET_CODES:
        raise ValueError(
            f"reset_mechanism must be one of 'subtract', 'zero', 'none', got {reset_mechanism!r}"
        )
    if not isinstance(reset_delay, bool):
        raise TypeError(f"reset_delay must be a bool, got {reset_delay!r}")
    if isinstance(graded_spikes_factor, torch.Tensor):
        if graded_spikes_factor.numel() != 1:
            raise ValueError(
                "graded_spikes_factor must be a single value; per-neuron graded spikes are not fused"
            )
        graded_spikes_factor = float(graded_spikes_factor.item())
    if isinstance(graded_spikes_factor, bool) or not isinstance(graded_spikes_factor, (int, float)):
        raise TypeError(f"graded_spikes_factor must be a float, got {graded_spikes_factor!r}")
    surrogate = surrogate_mod.resolve(spike_grad, surrogate_disable)
    if neuron == "RSynaptic" and not reset_delay:
        # snnTorch 1.0.0's RSynaptic computes the immediate reset on local variables and discards
        # it, so its outputs are those of reset_delay=True; we return the same numbers.
        warnings.warn(
            "RSynaptic(reset_delay=False) has no effect in snnTorch 1.0.0 (the immediate reset is "
            "computed and discarded); fusedsnn reproduces snnTorch and behaves as reset_delay=True",
            UserWarning,
            stacklevel=4,  # the caller of leaky()/rsynaptic(): via make_spec and _make_spec
        )
        reset_delay = True
    return LIFSpec(synaptic, recurrence, RESET_CODES[reset_mechanism], reset_delay, surrogate,
                   float(graded_spikes_factor))


def leaky(
    x: Tensor,
    beta: Param,
    threshold: Param = 1.0,
    *,
    mem: Optional[Tensor] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Fused Leaky (first-order LIF). ``x: [T, B, *features]`` -> ``(spk, mem)``, each ``[T, B, *features]``."""
    spec = make_spec(synaptic=False, recurrence=RECURRENCE_NONE, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="Leaky")
    return lif(x, spec, beta, threshold, mem=mem, backend=backend)


def synaptic(
    x: Tensor,
    alpha: Param,
    beta: Param,
    threshold: Param = 1.0,
    *,
    syn: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused Synaptic (current-based LIF). ``x: [T, B, *features]`` -> ``(spk, syn, mem)``."""
    spec = make_spec(synaptic=True, recurrence=RECURRENCE_NONE, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="Synaptic")
    return lif(x, spec, beta, threshold, alpha=alpha, mem=mem, syn=syn, backend=backend)


def rleaky(
    x: Tensor,
    beta: Param,
    V: Param = 1.0,
    threshold: Param = 1.0,
    *,
    recurrent: Optional[Callable[[Tensor], Tensor]] = None,
    spk: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Fused recurrent Leaky. One-to-one recurrence ``V * spk`` unless ``recurrent`` (all-to-all,
    e.g. ``nn.Linear``) is given. ``x: [T, B, *features]`` -> ``(spk, mem)``."""
    recurrence = RECURRENCE_ALL_TO_ALL if recurrent is not None else RECURRENCE_ONE_TO_ONE
    spec = make_spec(synaptic=False, recurrence=recurrence, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="RLeaky")
    return lif(x, spec, beta, threshold, V=V, recurrent=recurrent, mem=mem, spk=spk, backend=backend)


def rsynaptic(
    x: Tensor,
    alpha: Param,
    beta: Param,
    V: Param = 1.0,
    threshold: Param = 1.0,
    *,
    recurrent: Optional[Callable[[Tensor], Tensor]] = None,
    spk: Optional[Tensor] = None,
    syn: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused recurrent Synaptic. ``x: [T, B, *features]`` -> ``(spk, syn, mem)``."""
    recurrence = RECURRENCE_ALL_TO_ALL if recurrent is not None else RECURRENCE_ONE_TO_ONE
    spec = make_spec(synaptic=True, recurrence=recurrence, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="RSynaptic")
    return lif(x, spec, beta, threshold, alpha=alpha, V=V, recurrent=recurrent, mem=mem, syn=syn,
               spk=spk, backend=backend)


# ---------------------------------------------------------------------------------------------
# nn.Linear followed by a neuron, as one op over the sequence (fusedsnn/ops/linear_lif.py)
# ---------------------------------------------------------------------------------------------

def _linear_lif_backend(backend: str, x: Tensor) -> Backend:
    chosen = resolve_backend(backend, x)
    reason = chosen.linear_lif_reason(x)
    if reason is None:
        return chosen
    if backend == "auto":  # e.g. a CUDA tensor the Triton kernel does not take: the reference loop
        fallback = resolve_backend("reference", x)
        if fallback.linear_lif_reason(x) is None:
            return fallback
    raise ValueError(f"backend={backend!r} cannot run the fused Linear + LIF op on this input: {reason}")


def linear_lif(x: Tensor, weight: Tensor, bias: Optional[Tensor], spec: LIFSpec, beta: Param, threshold: Param,
                alpha: Optional[Param], mem: Optional[Tensor], syn: Optional[Tensor], num_steps: Optional[int],
                backend: str) -> tuple[Tensor, ...]:
    """The call behind :func:`linear_leaky` and :func:`linear_synaptic` (and ``fs.LinearLeaky``):
    ``spec`` is a Leaky or Synaptic spec (no recurrence); returns ``(spk, mem)`` or ``(spk, syn, mem)``."""
    if spec.recurrence != RECURRENCE_NONE:
        raise ValueError("the fused Linear + LIF op runs Leaky and Synaptic neurons, not recurrent ones")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [T, B, in_features] or [B, in_features], "
                        f"got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 for the fused Linear + LIF op, got {x.dtype}")
    if x.dim() == 3:
        if num_steps is not None and num_steps != x.shape[0]:
            raise ValueError(f"num_steps={num_steps} contradicts x's {x.shape[0]} steps (shape {tuple(x.shape)})")
        T = x.shape[0]
        if T > 1 and x.stride(0) == 0:  # a static input expanded over time: run it as one
            x = x[0]
    elif x.dim() == 2:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError("num_steps must be an int >= 0 for a static input x of shape [B, in_features], "
                             f"got {num_steps!r}")
        T = num_steps
    else:
        raise ValueError(f"x must have shape [T, B, in_features] or [B, in_features] (with num_steps), "
                         f"got shape {tuple(x.shape)}")
    B, K = x.shape[-2], x.shape[-1]
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != K:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a tensor of shape [out_features, {K}] (in_features of x), got {got}")
    N = weight.shape[0]
    if weight.dtype != x.dtype or weight.device != x.device:
        raise ValueError(f"weight must have x's dtype and device ({x.dtype}, {x.device}), "
                         f"got {weight.dtype} on {weight.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (N,):
            got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
            raise ValueError(f"bias must be None or a tensor of shape ({N},) (out_features), got {got}")
        if bias.dtype != x.dtype or bias.device != x.device:
            raise ValueError(f"bias must have x's dtype and device ({x.dtype}, {x.device}), "
                             f"got {bias.dtype} on {bias.device}")
    # Stand-in for one step of the output [T, B, N]: the parameters and states are checked against it.
    out_like = x.new_empty(()).expand(1, B, N)
    mem = _check_state("mem", mem, out_like)
    syn = _check_state("syn", syn, out_like) if spec.synaptic else None
    chunk = time_chunks.active_chunk()
    if chunk is not None:
        mem, syn, _ = chunk.initial_states(mem, syn, None)
    chosen = _linear_lif_backend(backend, x)
    beta_f = _param("beta", beta, out_like, clamp=True)
    thr_f = _param("threshold", threshold, out_like, clamp=False)
    alpha_f = _param("alpha", alpha, out_like, clamp=True) if spec.synaptic else _empty(x)
    empty = _empty(x)
    spk_o, syn_o, mem_o, _pre = linear_lif_forward(
        x, weight, empty if bias is None else bias, empty if mem is None else mem.to(x.dtype),
        empty if syn is None else syn.to(x.dtype), beta_f, thr_f, alpha_f, T,
        spec.synaptic, spec.reset, spec.reset_delay, spec.surrogate.code, float(spec.surrogate.p0),
        float(spec.surrogate.p1), float(spec.graded_spikes_factor), torch.is_grad_enabled(), chosen.name,
    )
    out = (spk_o, syn_o, mem_o) if spec.synaptic else (spk_o, mem_o)
    if chunk is not None:
        chunk.record_final_states(out, spec)
    return out


def linear_leaky(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    beta: Param,
    threshold: Param = 1.0,
    *,
    mem: Optional[Tensor] = None,
    num_steps: Optional[int] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``nn.Linear`` then a fused Leaky, one op over the sequence: ``leaky(F.linear(x, weight,
    bias), beta, threshold, ...)`` without the input current ``[T, B, N]`` in memory.

    ``x: [T, B, K]``, or a static ``[B, K]`` given at each of ``num_steps`` steps (an input
    expanded over time with stride 0 runs as one); ``weight: [N, K]``, ``bias: [N]`` or None,
    float32/float64 like ``x``; ``mem: [B, N]``. Returns ``(spk, mem)``, each ``[T, B, N]``.
    The product sums in the backend's order (the host's spike product for spike input, Triton's
    ``tl.dot``), so membranes may differ from ``nn.Linear`` + Leaky in the last bits; the
    reference backend gives that composition's results exactly.
    """
    spec = make_spec(synaptic=False, recurrence=RECURRENCE_NONE, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="Leaky")
    return linear_lif(x, weight, bias, spec, beta, threshold, None, mem, None, num_steps, backend)


def linear_synaptic(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    alpha: Param,
    beta: Param,
    threshold: Param = 1.0,
    *,
    syn: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    num_steps: Optional[int] = None,
    spike_grad: object = None,
    surrogate_disable: bool = False,
    reset_mechanism: str = "subtract",
    reset_delay: bool = True,
    graded_spikes_factor: float = 1.0,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """``nn.Linear`` then a fused Synaptic, one op (as :func:`linear_leaky`): ``(spk, syn, mem)``."""
    spec = make_spec(synaptic=True, recurrence=RECURRENCE_NONE, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                     graded_spikes_factor=graded_spikes_factor, neuron="Synaptic")
    return linear_lif(x, weight, bias, spec, beta, threshold, alpha, mem, syn, num_steps, backend)
