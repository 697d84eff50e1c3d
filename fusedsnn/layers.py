"""Drop-in fused twins of snnTorch 1.0.0's Leaky, Synaptic, RLeaky and RSynaptic.

Same constructor keywords and parameter names as snnTorch; the difference is the call: a fused
layer takes the whole sequence ``x: [T, B, *features]`` (time first) and returns what snnTorch's
per-step call returns, stacked over time. State keywords follow snnTorch's forward signatures
(``mem=``, ``syn=``, ``spk=``), each ``[B, *features]``; missing state starts at zero.

Stepped calls, as snnTorch makes them, run one step and return snnTorch's per-step outputs:
a call is a step when a state passed has ``x``'s own shape, or is the empty state that
``init_leaky()`` / ``init_synaptic()`` / ``init_rleaky()`` / ``init_rsynaptic()`` /
``reset_mem()`` return (zeros, as snnTorch's)::

    mem = lif.init_leaky()
    for t in range(T):
        spk, mem = lif(x[t], mem)          # x[t]: [B, *features]

A 2-D input without any state is refused rather than read as ``[T, B]``: the batch of a stepped
call would silently become time.

Options of snnTorch that the fused path does not support raise ``NotImplementedError`` naming
the option, rather than computing something different.

Parameters (``beta``, ``threshold``, ``alpha``, ``V``, ``graded_spikes_factor``) are stored as
snnTorch stores them (``torch.as_tensor`` of what was given: Python or NumPy numbers, arrays or
tensors, registered as a buffer or, when learnable, an ``nn.Parameter``), so a state_dict loads
strictly into the snnTorch twin and back. They are read at every call: editing one in place or
assigning a new tensor takes effect at the next forward, as in snnTorch. (Under
``torch.compile`` the graded spikes factor is a constant of the compiled graph, read when the
graph is traced: after editing it, compile again, e.g. after ``torch._dynamo.reset()``.)
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import torch
from torch import nn

from . import functional as Fn
from .ops.recompute import check_saved_state
from .spec import RECURRENCE_ALL_TO_ALL, RECURRENCE_NONE, RECURRENCE_ONE_TO_ONE, RESET_CODES

Tensor = torch.Tensor
# A number (Python or NumPy), a NumPy array or a tensor, as snnTorch accepts.
Param = Union[float, int, Tensor, "numpy.ndarray"]

__all__ = ["Leaky", "Synaptic", "RLeaky", "RSynaptic", "LinearLeaky"]


@torch.compiler.assume_constant_result
def _value_when_traced(value: Tensor) -> float:
    # torch.compile runs this on the real tensor while tracing and bakes the float into the
    # graph (a kernel constant cannot be a graph input).
    return float(value.item())


def _unsupported(option: str, value: object, why: str) -> NotImplementedError:
    return NotImplementedError(f"{option}={value!r} is not supported by fused neurons: {why}")


class _FusedLIF(nn.Module):
    """Shared constructor logic: parameters/buffers registered exactly as snnTorch registers them."""

    _synaptic = False
    _neuron = "Leaky"
    _step_example = "mem = layer.init_leaky(), then spk, mem = layer(x[t], mem) per step"

    def __init__(
        self,
        beta: Param,
        threshold: Param,
        spike_grad: object,
        surrogate_disable: bool,
        init_hidden: bool,
        inhibition: bool,
        learn_beta: bool,
        learn_threshold: bool,
        reset_mechanism: str,
        state_quant: object,
        output: bool,
        graded_spikes_factor: Param,
        learn_graded_spikes_factor: bool,
        reset_delay: bool,
        backend: str,
    ) -> None:
        super().__init__()
        if init_hidden:
            raise _unsupported(
                "init_hidden", init_hidden,
                "a fused layer takes the whole sequence at once and returns the states; "
                "convert whole init_hidden models with fusedsnn.interop.fuse",
            )
        if inhibition:
            raise _unsupported("inhibition", inhibition, "winner-take-all inhibition couples neurons within a step")
        if state_quant:
            raise _unsupported("state_quant", state_quant, "state quantisation is not fused")
        if learn_graded_spikes_factor:
            raise _unsupported("learn_graded_spikes_factor", learn_graded_spikes_factor,
                               "the graded spikes factor is a compile-time constant of the kernel")
        if reset_mechanism not in RESET_CODES:
            raise ValueError(
                f"reset_mechanism must be one of 'subtract', 'zero', 'none', got {reset_mechanism!r}"
            )
        self.output = output
        self.backend = backend
        self.spike_grad = spike_grad
        self.surrogate_disable = surrogate_disable
        self.reset_mechanism = reset_mechanism
        self.reset_delay = reset_delay
        self._register("beta", beta, learn_beta)
        self._register("threshold", threshold, learn_threshold)
        self._register("graded_spikes_factor", graded_spikes_factor, False)
        self._gsf_seen: Optional[tuple] = None  # (tensor, version, data_ptr) behind the cached float
        self._graded_spikes_value = 1.0
        self._graded_spikes()  # validates the shape now rather than at the first forward
        self.register_buffer("reset_mechanism_val", torch.as_tensor(RESET_CODES[reset_mechanism]))

    #: What the layer keeps for its backward, one of ``fusedsnn.functional.SAVED_STATES``:
    #: "default" (the fused op's saved trace/states), "recompute" (only the input and the
    #: initial states; the forward runs again in the backward) or "auto" ("recompute" for a
    #: static input, else "default"). Set by ``fusedsnn.memory_lean``.
    @property
    def saved_state(self) -> str:
        return self.__dict__.get("_saved_state", "default")

    @saved_state.setter
    def saved_state(self, value: str) -> None:
        self.__dict__["_saved_state"] = check_saved_state(value)

    def _lif(self, *args, **kwargs):
        return Fn.lif(*args, saved_state=self.saved_state, **kwargs)

    def _fresh_state(self) -> Tensor:
        """snnTorch's state before its first step: an empty tensor (on the layer's device) that a
        stepped call reads as zeros of the input's shape."""
        return torch.zeros(0, device=self.threshold.device)

    def _stepped_or_sequence(self, x: Tensor, states: dict, run) -> tuple[Tensor, ...]:
        """Run ``run(x, **states)`` on the whole sequence, or one step when the call is stepped.

        Stepped (snnTorch's per-step call): a state passed is x's own shape, or the empty state
        the ``init_*()`` methods return. Then ``x`` is one step ``[B, *features]``: it runs as
        ``[1, B, *features]``, empty states as zeros, and the outputs are that step's.
        """
        passed = {k: v for k, v in states.items() if isinstance(v, torch.Tensor)}
        if isinstance(x, torch.Tensor):
            def per_step(v: Tensor) -> bool:
                return (v.dim() == 1 and v.numel() == 0) or tuple(v.shape) == tuple(x.shape)

            stepped = [k for k, v in passed.items() if per_step(v)]
            if stepped:
                others = [k for k in passed if k not in stepped]
                if others:
                    k = others[0]
                    raise ValueError(
                        f"{k} has shape {tuple(passed[k].shape)}, but {stepped[0]} makes this a stepped call "
                        f"(one step x of shape {tuple(x.shape)}): each state must be x's shape "
                        f"{tuple(x.shape)} or the empty state that init_*() / reset_mem() return"
                    )
                step_states = {k: (None if v is None or v.numel() == 0 else v) for k, v in states.items()}
                return tuple(o[0] for o in run(x.unsqueeze(0), **step_states))
            if x.dim() == 2 and not passed:
                raise ValueError(
                    f"x has shape {tuple(x.shape)}: a fused layer takes the whole sequence time first, "
                    "[T, B, *features], and a 2-D input without a state is ambiguous (its batch would be "
                    "read as time). For one step of [B, features] pass x.unsqueeze(0) and take [0] of the "
                    f"outputs, or step as snnTorch does: {self._step_example}; for [T, B] with scalar "
                    "features pass x.unsqueeze(-1)"
                )
        return run(x, **states)

    def _register(self, name: str, value: Param, learn: bool) -> None:
        # torch.as_tensor, as snnTorch does: ints stay int64, NumPy keeps its dtype.
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if learn:
            if not tensor.is_floating_point():
                # snnTorch fails here inside nn.Parameter; a learnable integer is meant as a float.
                tensor = tensor.to(torch.get_default_dtype())
            setattr(self, name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def _graded_spikes(self) -> float:
        """The graded spikes factor as the Python float the kernels take (a compile-time constant).

        The buffer is read again whenever it changed (a new tensor, an in-place edit, a load), so
        edits take effect as in snnTorch; an unchanged one costs no ``.item()`` (no device sync).
        Under torch.compile the value is read when the graph is traced and is a constant of
        the compiled graph (a data-dependent ``.item()`` cannot be part of it).
        """
        gsf = self.graded_spikes_factor
        if torch.compiler.is_compiling():
            return _value_when_traced(gsf)
        seen = self._gsf_seen
        if seen is not None and seen[0] is gsf and seen[1] == gsf._version and seen[2] == gsf.data_ptr():
            return self._graded_spikes_value
        if gsf.numel() != 1:
            raise ValueError(
                f"graded_spikes_factor must be a single value; per-neuron graded spikes are not fused, "
                f"got shape {tuple(gsf.shape)}"
            )
        self._graded_spikes_value = float(gsf.item())
        self._gsf_seen = (gsf, gsf._version, gsf.data_ptr())
        return self._graded_spikes_value

    def _spec(self, recurrence: int):
        return Fn.make_spec(
            synaptic=self._synaptic, recurrence=recurrence, reset_mechanism=self.reset_mechanism,
            reset_delay=self.reset_delay, spike_grad=self.spike_grad,
            surrogate_disable=self.surrogate_disable, graded_spikes_factor=self._graded_spikes(),
            neuron=self._neuron,
        )

    def extra_repr(self) -> str:
        parts = [f"reset_mechanism={self.reset_mechanism!r}", f"backend={self.backend!r}"]
        if not self.reset_delay:
            parts.append("reset_delay=False")
        if self.saved_state != "default":
            parts.append(f"saved_state={self.saved_state!r}")
        if self.surrogate_disable:
            parts.append("surrogate_disable=True")
        elif self.spike_grad is not None:
            parts.append(f"spike_grad={self.spike_grad!r}")
        return ", ".join(parts)


class Leaky(_FusedLIF):
    """Fused first-order LIF neuron, the twin of snnTorch 1.0.0's ``Leaky``.

    Per step, as snnTorch computes it: ``mem[t] = beta * mem[t-1] + x[t] - reset[t]`` and
    ``spk[t] = graded_spikes_factor * H(mem[t] - threshold)``, with ``H`` the Heaviside step whose
    gradient is the surrogate's. All ``T`` steps run in one fused kernel call.

    The call takes the whole sequence, time first, and returns snnTorch's per-step outputs
    stacked over time; see :meth:`forward`.

    Args:
        beta: membrane decay per step: a number or a tensor broadcastable to the features
            (per-neuron), clamped to [0, 1] in the forward as snnTorch does.
        threshold: firing threshold: a number or a tensor broadcastable to the features
            (per-neuron). Default 1.0.
        spike_grad: surrogate gradient of the spike: one of ``fusedsnn.surrogate``'s
            (``atan()``, ``fast_sigmoid(slope=25)``, ...) or snnTorch 1.0.0's closure of the same
            name (``snntorch.surrogate.atan(alpha=2)``); None means ``atan()``, as in snnTorch. A
            custom Python surrogate raises ``ValueError`` (it cannot run inside a fused kernel).
        surrogate_disable: if True, no gradient flows through the spikes (snnTorch's flag).
        init_hidden: must be False (a fused layer returns its states instead of keeping them);
            True raises ``NotImplementedError``. Convert whole ``init_hidden`` models with
            ``fusedsnn.interop.fuse``.
        inhibition: must be False; True (winner-take-all) raises ``NotImplementedError``.
        learn_beta: make ``beta`` an ``nn.Parameter`` (else a buffer), as snnTorch does.
        learn_threshold: make ``threshold`` an ``nn.Parameter`` (else a buffer).
        reset_mechanism: ``"subtract"`` (a spike subtracts the threshold), ``"zero"`` (a spike
            sets the membrane to zero) or ``"none"``; anything else raises ``ValueError``.
        state_quant: must be False; a quantisation function raises ``NotImplementedError``.
        output: accepted for snnTorch compatibility (it matters there only with
            ``init_hidden``); a fused layer always returns its states.
        graded_spikes_factor: one number, the spike amplitude: ``spk`` is
            ``graded_spikes_factor * H(mem - threshold)``. Default 1.0.
        learn_graded_spikes_factor: must be False; True raises ``NotImplementedError`` (the
            factor is a constant of the kernel).
        reset_delay: True (snnTorch's default): the reset caused by a spike at step t acts at
            step t+1, so ``mem[t]`` is returned before it; False: it acts within step t.
        backend: what runs the time loop: ``"auto"`` (default: ``triton`` for CUDA tensors,
            the PopART op inside a PopTorch model on an IPU, ``host`` for float32/float64 CPU
            tensors, else ``reference``), ``"triton"`` (CUDA; CPU tensors only with
            ``TRITON_INTERPRET=1``), ``"host"`` (the C++ loops; CPU float32/float64),
            ``"reference"`` (eager PyTorch; any device and dtype) or ``"poplar"`` (inside
            PopTorch only). A backend that cannot run the input raises ``ValueError`` at the
            call, naming the reason.

    Raises:
        NotImplementedError: when one of the snnTorch options that are not fused is set:
            ``init_hidden``, ``inhibition``, ``state_quant``,
            ``learn_graded_spikes_factor``.
        ValueError: an unknown ``reset_mechanism``; a ``graded_spikes_factor`` that is not one
            value.
    """

    def __init__(
        self,
        beta: Param,
        threshold: Param = 1.0,
        spike_grad: object = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: object = False,
        output: bool = False,
        graded_spikes_factor: Param = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output,
                         graded_spikes_factor, learn_graded_spikes_factor, reset_delay, backend)

    def forward(self, x: Tensor, mem: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Run all ``T`` steps.

        Args:
            x: input current ``[T, B, *features]``, time first; float32, float64, float16 or
                bfloat16.
            mem: initial membrane ``[B, *features]``; None starts at zero (snnTorch's
                ``reset_mem()``).

        Returns:
            ``(spk, mem)``, each ``[T, B, *features]`` in ``x``'s dtype: the spikes and the
            membrane of every step, as snnTorch's per-step calls return them, stacked.

        A stepped call (``mem`` of ``x``'s own shape, or the empty state of :meth:`init_leaky`)
        runs one step of ``x: [B, *features]`` and returns that step's ``(spk, mem)``, as
        snnTorch's call does.
        """
        def run(x, mem):
            return self._lif(x, self._spec(RECURRENCE_NONE), self.beta, self.threshold, mem=mem,
                             backend=self.backend)

        return self._stepped_or_sequence(x, {"mem": mem}, run)

    def reset_mem(self) -> Tensor:
        """snnTorch's fresh state: an empty ``mem`` that starts a stepped call at zero."""
        return self._fresh_state()

    def init_leaky(self) -> Tensor:
        """As snnTorch's (deprecated there): :meth:`reset_mem`."""
        return self.reset_mem()


class Synaptic(_FusedLIF):
    """Fused current-based LIF neuron, the twin of snnTorch 1.0.0's ``Synaptic``.

    Per step: ``syn[t] = alpha * syn[t-1] + x[t]``, ``mem[t] = beta * mem[t-1] + syn[t] - reset[t]``,
    ``spk[t] = graded_spikes_factor * H(mem[t] - threshold)``; one fused kernel call for all ``T``.

    The call takes the whole sequence, time first, and returns snnTorch's per-step outputs
    stacked over time; see :meth:`forward`.

    Args:
        alpha: synaptic current decay per step: a number or a per-neuron tensor, clamped to
            [0, 1].
        beta: membrane decay per step: a number or a per-neuron tensor, clamped to [0, 1].
        threshold: firing threshold: a number or a tensor broadcastable to the features
            (per-neuron). Default 1.0.
        spike_grad: surrogate gradient of the spike: one of ``fusedsnn.surrogate``'s
            (``atan()``, ``fast_sigmoid(slope=25)``, ...) or snnTorch 1.0.0's closure of the same
            name (``snntorch.surrogate.atan(alpha=2)``); None means ``atan()``, as in snnTorch. A
            custom Python surrogate raises ``ValueError`` (it cannot run inside a fused kernel).
        surrogate_disable: if True, no gradient flows through the spikes (snnTorch's flag).
        init_hidden: must be False (a fused layer returns its states instead of keeping them);
            True raises ``NotImplementedError``. Convert whole ``init_hidden`` models with
            ``fusedsnn.interop.fuse``.
        inhibition: must be False; True (winner-take-all) raises ``NotImplementedError``.
        learn_alpha: make ``alpha`` an ``nn.Parameter`` (else a buffer).
        learn_beta: make ``beta`` an ``nn.Parameter`` (else a buffer), as snnTorch does.
        learn_threshold: make ``threshold`` an ``nn.Parameter`` (else a buffer).
        reset_mechanism: ``"subtract"`` (a spike subtracts the threshold), ``"zero"`` (a spike
            sets the membrane to zero) or ``"none"``; anything else raises ``ValueError``.
        state_quant: must be False; a quantisation function raises ``NotImplementedError``.
        output: accepted for snnTorch compatibility (it matters there only with
            ``init_hidden``); a fused layer always returns its states.
        reset_delay: True (snnTorch's default): the reset caused by a spike at step t acts at
            step t+1, so ``mem[t]`` is returned before it; False: it acts within step t.
        graded_spikes_factor: one number, the spike amplitude: ``spk`` is
            ``graded_spikes_factor * H(mem - threshold)``. Default 1.0. (snnTorch's ``Synaptic``
            fixes it at 1.0; accepted here as for ``Leaky``.)
        backend: what runs the time loop: ``"auto"`` (default: ``triton`` for CUDA tensors,
            the PopART op inside a PopTorch model on an IPU, ``host`` for float32/float64 CPU
            tensors, else ``reference``), ``"triton"`` (CUDA; CPU tensors only with
            ``TRITON_INTERPRET=1``), ``"host"`` (the C++ loops; CPU float32/float64),
            ``"reference"`` (eager PyTorch; any device and dtype) or ``"poplar"`` (inside
            PopTorch only). A backend that cannot run the input raises ``ValueError`` at the
            call, naming the reason.

    Raises:
        NotImplementedError: when one of the snnTorch options that are not fused is set:
            ``init_hidden``, ``inhibition``, ``state_quant``.
        ValueError: an unknown ``reset_mechanism``; a ``graded_spikes_factor`` that is not one
            value.
    """

    _synaptic = True
    _neuron = "Synaptic"
    _step_example = "syn, mem = layer.init_synaptic(), then spk, syn, mem = layer(x[t], syn, mem) per step"

    def __init__(
        self,
        alpha: Param,
        beta: Param,
        threshold: Param = 1.0,
        spike_grad: object = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: object = False,
        output: bool = False,
        reset_delay: bool = True,
        graded_spikes_factor: Param = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output,
                         graded_spikes_factor, False, reset_delay, backend)
        self._register("alpha", alpha, learn_alpha)

    def forward(
        self, x: Tensor, syn: Optional[Tensor] = None, mem: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run all ``T`` steps.

        Args:
            x: input current ``[T, B, *features]``, time first.
            syn: initial synaptic current ``[B, *features]``; None starts at zero.
            mem: initial membrane ``[B, *features]``; None starts at zero.

        Returns:
            ``(spk, syn, mem)``, each ``[T, B, *features]``: every step's spikes, synaptic
            current and membrane, as snnTorch's per-step calls return them, stacked.

        A stepped call (a state of ``x``'s own shape, or the empty ones of
        :meth:`init_synaptic`) runs one step of ``x: [B, *features]`` and returns that step's
        ``(spk, syn, mem)``, as snnTorch's call does.
        """
        def run(x, syn, mem):
            return self._lif(x, self._spec(RECURRENCE_NONE), self.beta, self.threshold, alpha=self.alpha,
                             syn=syn, mem=mem, backend=self.backend)

        return self._stepped_or_sequence(x, {"syn": syn, "mem": mem}, run)

    def reset_mem(self) -> tuple[Tensor, Tensor]:
        """snnTorch's fresh states ``(syn, mem)``: empty, starting a stepped call at zero."""
        return self._fresh_state(), self._fresh_state()

    def init_synaptic(self) -> tuple[Tensor, Tensor]:
        """As snnTorch's (deprecated there): :meth:`reset_mem`."""
        return self.reset_mem()


class RecurrentOneToOne(nn.Module):
    """The one-to-one recurrent connection ``spk * V``, held as snnTorch 1.0.0 holds it.

    snnTorch keeps ``V`` on the neuron and again as ``recurrent.V``; a learnable ``V`` is the
    same ``nn.Parameter`` under both names, so it appears under both in the state_dict (a frozen
    one is a buffer of the neuron only). The fused kernel reads the neuron's ``V``.
    """

    def __init__(self, V: Tensor) -> None:
        super().__init__()
        self.V = V

    def forward(self, spk: Tensor) -> Tensor:
        """``spk: [B, *features]`` -> ``spk * V``, same shape."""
        return spk * self.V


class _Recurrent(_FusedLIF):
    """Recurrence set-up shared by RLeaky and RSynaptic, with snnTorch's argument checks."""

    def _init_recurrence(
        self,
        V: Param,
        all_to_all: bool,
        linear_features: Optional[int],
        conv2d_channels: Optional[int],
        kernel_size: object,
        learn_recurrent: bool,
    ) -> None:
        self.all_to_all = all_to_all
        self.learn_recurrent = learn_recurrent
        self.linear_features = linear_features
        if conv2d_channels or kernel_size:
            raise _unsupported(
                "conv2d_channels" if conv2d_channels else "kernel_size",
                conv2d_channels or kernel_size,
                "Conv2d recurrence is not fused; use snnTorch for convolutional recurrent neurons",
            )
        if all_to_all:
            if linear_features is None:
                raise TypeError(
                    f"When `all_to_all=True`, {self._neuron} requires `linear_features` "
                    "(the number of neurons) for its nn.Linear recurrent weights"
                )
            if isinstance(linear_features, bool) or not isinstance(linear_features, numbers.Integral) \
                    or linear_features < 1:
                raise ValueError(
                    f"linear_features must be a positive int (the number of neurons of {self._neuron}'s "
                    f"nn.Linear recurrence), got {linear_features!r}"
                )
            linear_features = int(linear_features)
            self.linear_features = linear_features
            self.recurrent = nn.Linear(linear_features, linear_features)
            if not learn_recurrent:
                for p in self.recurrent.parameters():
                    p.requires_grad = False
        else:
            if linear_features:
                raise TypeError("When `all_to_all=False`, `linear_features` must not be given; `V` is used instead")
            self._register("V", V, learn_recurrent)
            self.recurrent = RecurrentOneToOne(self.V)

    def _recurrence_kwargs(self) -> dict:
        if self.all_to_all:
            return {"recurrent": self.recurrent}
        return {"V": self.V}

    def _recurrence_code(self) -> int:
        return RECURRENCE_ALL_TO_ALL if self.all_to_all else RECURRENCE_ONE_TO_ONE


class RLeaky(_Recurrent):
    """Fused recurrent LIF neuron, the twin of snnTorch 1.0.0's ``RLeaky``.

    Per step: ``mem[t] = beta * mem[t-1] + x[t] + rec(spk[t-1]) - reset[t]`` with ``rec`` the
    one-to-one ``V * spk`` or the all-to-all ``nn.Linear``, then the spike as in :class:`Leaky`.
    One-to-one recurrence runs as one fused kernel call; all-to-all calls the kernel per step
    with the ``nn.Linear`` in between.

    The call takes the whole sequence, time first, and returns snnTorch's per-step outputs
    stacked over time; see :meth:`forward`.

    Args:
        beta: membrane decay per step: a number or a per-neuron tensor, clamped to [0, 1].
        V: one-to-one recurrent weight (``all_to_all=False``): each neuron's previous spike,
            times ``V``, is added to its input. A number or a per-neuron tensor. Default 1.0.
        all_to_all: True (snnTorch's default): the feedback is ``recurrent(spk[t-1])``, an
            ``nn.Linear(linear_features, linear_features)`` (``recurrent.weight``,
            ``recurrent.bias``); False: one-to-one ``V * spk[t-1]``.
        linear_features: the number of neurons, required with ``all_to_all=True`` (else
            ``TypeError``), and refused with ``all_to_all=False`` (``TypeError``).
        conv2d_channels: must be None; convolutional recurrence raises ``NotImplementedError``.
        kernel_size: must be None; convolutional recurrence raises ``NotImplementedError``.
        threshold: firing threshold: a number or a tensor broadcastable to the features
            (per-neuron). Default 1.0.
        spike_grad: surrogate gradient of the spike: one of ``fusedsnn.surrogate``'s
            (``atan()``, ``fast_sigmoid(slope=25)``, ...) or snnTorch 1.0.0's closure of the same
            name (``snntorch.surrogate.atan(alpha=2)``); None means ``atan()``, as in snnTorch. A
            custom Python surrogate raises ``ValueError`` (it cannot run inside a fused kernel).
        surrogate_disable: if True, no gradient flows through the spikes (snnTorch's flag).
        init_hidden: must be False (a fused layer returns its states instead of keeping them);
            True raises ``NotImplementedError``. Convert whole ``init_hidden`` models with
            ``fusedsnn.interop.fuse``.
        inhibition: must be False; True (winner-take-all) raises ``NotImplementedError``.
        learn_beta: make ``beta`` an ``nn.Parameter`` (else a buffer), as snnTorch does.
        learn_threshold: make ``threshold`` an ``nn.Parameter`` (else a buffer).
        learn_recurrent: train ``V`` or the recurrent ``nn.Linear`` (default True, as snnTorch).
        reset_mechanism: ``"subtract"`` (a spike subtracts the threshold), ``"zero"`` (a spike
            sets the membrane to zero) or ``"none"``; anything else raises ``ValueError``.
        state_quant: must be False; a quantisation function raises ``NotImplementedError``.
        output: accepted for snnTorch compatibility (it matters there only with
            ``init_hidden``); a fused layer always returns its states.
        reset_delay: True (snnTorch's default): the reset caused by a spike at step t acts at
            step t+1, so ``mem[t]`` is returned before it; False: it acts within step t.
        graded_spikes_factor: one number, the spike amplitude: ``spk`` is
            ``graded_spikes_factor * H(mem - threshold)``. Default 1.0.
        backend: what runs the time loop: ``"auto"`` (default: ``triton`` for CUDA tensors,
            the PopART op inside a PopTorch model on an IPU, ``host`` for float32/float64 CPU
            tensors, else ``reference``), ``"triton"`` (CUDA; CPU tensors only with
            ``TRITON_INTERPRET=1``), ``"host"`` (the C++ loops; CPU float32/float64),
            ``"reference"`` (eager PyTorch; any device and dtype) or ``"poplar"`` (inside
            PopTorch only). A backend that cannot run the input raises ``ValueError`` at the
            call, naming the reason.

    Raises:
        NotImplementedError: when one of the snnTorch options that are not fused is set:
            ``init_hidden``, ``inhibition``, ``state_quant``,
            ``conv2d_channels`` / ``kernel_size``.
        ValueError: an unknown ``reset_mechanism``; a ``graded_spikes_factor`` that is not one
            value.
        TypeError: ``linear_features`` missing with ``all_to_all=True`` or given with
            ``all_to_all=False``.
    """

    _neuron = "RLeaky"
    _step_example = "spk, mem = layer.init_rleaky(), then spk, mem = layer(x[t], spk, mem) per step"

    def __init__(
        self,
        beta: Param,
        V: Param = 1.0,
        all_to_all: bool = True,
        linear_features: Optional[int] = None,
        conv2d_channels: Optional[int] = None,
        kernel_size: object = None,
        threshold: Param = 1.0,
        spike_grad: object = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_recurrent: bool = True,
        reset_mechanism: str = "subtract",
        state_quant: object = False,
        output: bool = False,
        reset_delay: bool = True,
        graded_spikes_factor: Param = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output,
                         graded_spikes_factor, False, reset_delay, backend)
        self._init_recurrence(V, all_to_all, linear_features, conv2d_channels, kernel_size, learn_recurrent)

    def forward(
        self, x: Tensor, spk: Optional[Tensor] = None, mem: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor]:
        """Run all ``T`` steps.

        Args:
            x: input current ``[T, B, *features]``, time first (all-to-all: ``features`` is
                ``(linear_features,)``).
            spk: the spikes of the step before the first ``[B, *features]``, fed back through
                the recurrence; None starts at zero.
            mem: initial membrane ``[B, *features]``; None starts at zero.

        Returns:
            ``(spk, mem)``, each ``[T, B, *features]``, as snnTorch's per-step calls return
            them, stacked.

        A stepped call (a state of ``x``'s own shape, or the empty ones of
        :meth:`init_rleaky`) runs one step of ``x: [B, *features]`` and returns that step's
        ``(spk, mem)``, as snnTorch's call does.
        """
        def run(x, spk, mem):
            return self._lif(x, self._spec(self._recurrence_code()), self.beta, self.threshold,
                             spk=spk, mem=mem, backend=self.backend, **self._recurrence_kwargs())

        return self._stepped_or_sequence(x, {"spk": spk, "mem": mem}, run)

    def reset_mem(self) -> tuple[Tensor, Tensor]:
        """snnTorch's fresh states ``(spk, mem)``: empty, starting a stepped call at zero."""
        return self._fresh_state(), self._fresh_state()

    def init_rleaky(self) -> tuple[Tensor, Tensor]:
        """As snnTorch's (deprecated there): :meth:`reset_mem`."""
        return self.reset_mem()


class RSynaptic(_Recurrent):
    """Fused recurrent current-based LIF neuron, the twin of snnTorch 1.0.0's ``RSynaptic``.

    Per step: ``syn[t] = alpha * syn[t-1] + x[t] + rec(spk[t-1])``,
    ``mem[t] = beta * mem[t-1] + syn[t] - reset[t]``, then the spike as in :class:`Leaky`.

    The call takes the whole sequence, time first, and returns snnTorch's per-step outputs
    stacked over time; see :meth:`forward`.

    Args:
        alpha: synaptic current decay per step: a number or a per-neuron tensor, clamped to
            [0, 1].
        beta: membrane decay per step: a number or a per-neuron tensor, clamped to [0, 1].
        V: one-to-one recurrent weight (``all_to_all=False``): each neuron's previous spike,
            times ``V``, is added to its input. A number or a per-neuron tensor. Default 1.0.
        all_to_all: True (snnTorch's default): the feedback is ``recurrent(spk[t-1])``, an
            ``nn.Linear(linear_features, linear_features)`` (``recurrent.weight``,
            ``recurrent.bias``); False: one-to-one ``V * spk[t-1]``.
        linear_features: the number of neurons, required with ``all_to_all=True`` (else
            ``TypeError``), and refused with ``all_to_all=False`` (``TypeError``).
        conv2d_channels: must be None; convolutional recurrence raises ``NotImplementedError``.
        kernel_size: must be None; convolutional recurrence raises ``NotImplementedError``.
        threshold: firing threshold: a number or a tensor broadcastable to the features
            (per-neuron). Default 1.0.
        spike_grad: surrogate gradient of the spike: one of ``fusedsnn.surrogate``'s
            (``atan()``, ``fast_sigmoid(slope=25)``, ...) or snnTorch 1.0.0's closure of the same
            name (``snntorch.surrogate.atan(alpha=2)``); None means ``atan()``, as in snnTorch. A
            custom Python surrogate raises ``ValueError`` (it cannot run inside a fused kernel).
        surrogate_disable: if True, no gradient flows through the spikes (snnTorch's flag).
        init_hidden: must be False (a fused layer returns its states instead of keeping them);
            True raises ``NotImplementedError``. Convert whole ``init_hidden`` models with
            ``fusedsnn.interop.fuse``.
        inhibition: must be False; True (winner-take-all) raises ``NotImplementedError``.
        learn_alpha: make ``alpha`` an ``nn.Parameter`` (else a buffer).
        learn_beta: make ``beta`` an ``nn.Parameter`` (else a buffer), as snnTorch does.
        learn_threshold: make ``threshold`` an ``nn.Parameter`` (else a buffer).
        learn_recurrent: train ``V`` or the recurrent ``nn.Linear`` (default True, as snnTorch).
        reset_mechanism: ``"subtract"`` (a spike subtracts the threshold), ``"zero"`` (a spike
            sets the membrane to zero) or ``"none"``; anything else raises ``ValueError``.
        state_quant: must be False; a quantisation function raises ``NotImplementedError``.
        output: accepted for snnTorch compatibility (it matters there only with
            ``init_hidden``); a fused layer always returns its states.
        reset_delay: as in snnTorch 1.0.0, False has no effect on ``RSynaptic`` (snnTorch
            computes the immediate reset and discards it): a warning says so and the layer
            behaves as True, the reset acting at the next step.
        graded_spikes_factor: one number, the spike amplitude: ``spk`` is
            ``graded_spikes_factor * H(mem - threshold)``. Default 1.0.
        backend: what runs the time loop: ``"auto"`` (default: ``triton`` for CUDA tensors,
            the PopART op inside a PopTorch model on an IPU, ``host`` for float32/float64 CPU
            tensors, else ``reference``), ``"triton"`` (CUDA; CPU tensors only with
            ``TRITON_INTERPRET=1``), ``"host"`` (the C++ loops; CPU float32/float64),
            ``"reference"`` (eager PyTorch; any device and dtype) or ``"poplar"`` (inside
            PopTorch only). A backend that cannot run the input raises ``ValueError`` at the
            call, naming the reason.

    Raises:
        NotImplementedError: when one of the snnTorch options that are not fused is set:
            ``init_hidden``, ``inhibition``, ``state_quant``,
            ``conv2d_channels`` / ``kernel_size``.
        ValueError: an unknown ``reset_mechanism``; a ``graded_spikes_factor`` that is not one
            value.
        TypeError: ``linear_features`` missing with ``all_to_all=True`` or given with
            ``all_to_all=False``.
    """

    _synaptic = True
    _neuron = "RSynaptic"
    _step_example = "spk, syn, mem = layer.init_rsynaptic(), then spk, syn, mem = layer(x[t], spk, syn, mem) per step"

    def __init__(
        self,
        alpha: Param,
        beta: Param,
        V: Param = 1.0,
        all_to_all: bool = True,
        linear_features: Optional[int] = None,
        conv2d_channels: Optional[int] = None,
        kernel_size: object = None,
        threshold: Param = 1.0,
        spike_grad: object = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_recurrent: bool = True,
        reset_mechanism: str = "subtract",
        state_quant: object = False,
        output: bool = False,
        reset_delay: bool = True,
        graded_spikes_factor: Param = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output,
                         graded_spikes_factor, False, reset_delay, backend)
        self._init_recurrence(V, all_to_all, linear_features, conv2d_channels, kernel_size, learn_recurrent)
        self._register("alpha", alpha, learn_alpha)
        if not reset_delay:
            # Warn once here, then store what snnTorch effectively does (see make_spec).
            Fn.make_spec(synaptic=True, recurrence=self._recurrence_code(), reset_mechanism=reset_mechanism,
                         reset_delay=False, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
                         graded_spikes_factor=graded_spikes_factor, neuron="RSynaptic")
            self.reset_delay = True

    def forward(
        self,
        x: Tensor,
        spk: Optional[Tensor] = None,
        syn: Optional[Tensor] = None,
        mem: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run all ``T`` steps.

        Args:
            x: input current ``[T, B, *features]``, time first (all-to-all: ``features`` is
                ``(linear_features,)``).
            spk: the spikes of the step before the first ``[B, *features]``, fed back through
                the recurrence; None starts at zero.
            syn: initial synaptic current ``[B, *features]``; None starts at zero.
            mem: initial membrane ``[B, *features]``; None starts at zero.

        Returns:
            ``(spk, syn, mem)``, each ``[T, B, *features]``, as snnTorch's per-step calls
            return them, stacked.

        A stepped call (a state of ``x``'s own shape, or the empty ones of
        :meth:`init_rsynaptic`) runs one step of ``x: [B, *features]`` and returns that step's
        ``(spk, syn, mem)``, as snnTorch's call does.
        """
        def run(x, spk, syn, mem):
            return self._lif(x, self._spec(self._recurrence_code()), self.beta, self.threshold,
                             alpha=self.alpha, spk=spk, syn=syn, mem=mem, backend=self.backend,
                             **self._recurrence_kwargs())

        return self._stepped_or_sequence(x, {"spk": spk, "syn": syn, "mem": mem}, run)

    def reset_mem(self) -> tuple[Tensor, Tensor, Tensor]:
        """snnTorch's fresh states ``(spk, syn, mem)``: empty, starting a stepped call at zero."""
        return self._fresh_state(), self._fresh_state(), self._fresh_state()

    def init_rsynaptic(self) -> tuple[Tensor, Tensor, Tensor]:
        """As snnTorch's (deprecated there): :meth:`reset_mem`."""
        return self.reset_mem()


class LinearLeaky(Leaky):
    """``nn.Linear(in_features, out_features)`` followed by a fused :class:`Leaky`, run as one op
    over the whole sequence (:func:`fusedsnn.functional.linear_leaky`): the input current
    ``[T, B, out_features]`` is never held in memory.

    Its parameters and buffers carry the names of ``nn.Linear`` and ``Leaky`` (``weight``,
    ``bias``, ``beta``, ``threshold``, ...), so ``nn.Sequential(nn.Linear(K, N), fs.Leaky(...))``
    maps onto it key for key (``0.weight`` -> ``weight``, ``1.beta`` -> ``beta``). ``weight`` and
    ``bias`` are initialised as ``nn.Linear`` initialises them.

    The current is summed in the backend's order (Triton's ``tl.dot``, the host's spike product
    for spike inputs), so membranes may differ from the two-layer composition in the last bits;
    the ``"reference"`` backend reproduces the composition exactly.

    Args:
        in_features: size of each input sample (``nn.Linear``'s).
        out_features: number of neurons (``nn.Linear``'s).
        beta: membrane decay per step, as in :class:`Leaky` (one value or one per neuron).
        bias: whether the product adds a learnable bias (``nn.Linear``'s). Default True.
        device: where ``weight`` and ``bias`` are created (``nn.Linear``'s).
        dtype: dtype of ``weight`` and ``bias``: float32 or float64 (``nn.Linear``'s).
        threshold: firing threshold, as in :class:`Leaky`. Default 1.0.
        spike_grad: surrogate gradient, as in :class:`Leaky`.
        surrogate_disable: if True, no gradient flows through the spikes.
        init_hidden: must be False; True raises ``NotImplementedError``.
        inhibition: must be False; True raises ``NotImplementedError``.
        learn_beta: make ``beta`` an ``nn.Parameter`` (else a buffer).
        learn_threshold: make ``threshold`` an ``nn.Parameter`` (else a buffer).
        reset_mechanism: ``"subtract"``, ``"zero"`` or ``"none"``, as in :class:`Leaky`.
        state_quant: must be False; a quantisation function raises ``NotImplementedError``.
        output: accepted for snnTorch compatibility.
        graded_spikes_factor: one number, the spike amplitude. Default 1.0.
        learn_graded_spikes_factor: must be False; True raises ``NotImplementedError``.
        reset_delay: as in :class:`Leaky`. Default True.
        backend: ``"auto"`` (``triton`` for float32 CUDA tensors, ``host`` for CPU tensors, else
            ``"reference"``), ``"triton"`` (float32; CPU tensors only with ``TRITON_INTERPRET=1``),
            ``"host"`` (CPU float32/float64), ``"reference"`` (eager PyTorch: ``F.linear`` then the
            neuron loop). ``"poplar"`` has no fused Linear + LIF op and raises ``ValueError``, as
            does any backend that cannot run the input.

    Raises:
        NotImplementedError: ``init_hidden``, ``inhibition``, ``state_quant`` or
            ``learn_graded_spikes_factor`` set, as in :class:`Leaky`.
        ValueError: an unknown ``reset_mechanism``; input shapes that do not match.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        beta: Param,
        bias: bool = True,
        device=None,
        dtype=None,
        threshold: Param = 1.0,
        spike_grad: object = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: object = False,
        output: bool = False,
        graded_spikes_factor: Param = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__(beta, threshold, spike_grad, surrogate_disable, init_hidden, inhibition,
                         learn_beta, learn_threshold, reset_mechanism, state_quant, output,
                         graded_spikes_factor, learn_graded_spikes_factor, reset_delay, backend)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty((out_features, in_features), device=device, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation of ``weight`` and ``bias``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, mem: Optional[Tensor] = None,  # type: ignore[override]
                num_steps: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Run all ``T`` steps.

        Args:
            x: input ``[T, B, in_features]``, time first, or a static ``[B, in_features]`` with
                ``num_steps``; float32 or float64, the dtype of ``weight``.
            mem: initial membrane ``[B, out_features]``; None starts at zero.
            num_steps: T for a static ``[B, in_features]`` input (else None or ``x.shape[0]``).

        Returns:
            ``(spk, mem)``, each ``[T, B, out_features]``.
        """
        return Fn.linear_lif(x, self.weight, self.bias, self._spec(RECURRENCE_NONE), self.beta, self.threshold,
                             None, mem, None, num_steps, self.backend)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, " + super().extra_repr())
