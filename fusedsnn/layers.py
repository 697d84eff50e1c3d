"""Drop-in fused twins of snnTorch 1.0.0's Leaky, Synaptic, RLeaky and RSynaptic.

Same constructor keywords and parameter names as snnTorch; the difference is the call: a fused
layer takes the whole sequence ``x: [T, B, *features]`` (time first) and returns what snnTorch's
per-step call returns, stacked over time. State keywords follow snnTorch's forward signatures
(``mem=``, ``syn=``, ``spk=``), each ``[B, *features]``; missing state starts at zero.

Options of snnTorch that the fused path does not support raise ``NotImplementedError`` naming
the option, rather than computing something different.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from . import functional as Fn
from . import memory
from .kernels.spec import RECURRENCE_INPUT, RECURRENCE_NONE, RECURRENCE_ONE_TO_ONE, RESET_CODES

Tensor = torch.Tensor
Param = Union[float, Tensor]

__all__ = ["Leaky", "Synaptic", "RLeaky", "RSynaptic"]


def _unsupported(option: str, value: object, why: str) -> NotImplementedError:
    return NotImplementedError(f"{option}={value!r} is not supported by fused neurons: {why}")


class _FusedLIF(nn.Module):
    """Shared constructor logic: parameters/buffers registered exactly as snnTorch registers them."""

    _synaptic = False
    _neuron = "Leaky"

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
                "convert whole init_hidden models with fusedsnn.fuse",
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
        self._graded_spikes_value = self._scalar_gsf()
        self.register_buffer("reset_mechanism_val", torch.as_tensor(RESET_CODES[reset_mechanism]))

    #: What the layer keeps for its backward, one of ``fusedsnn.memory.SAVED_STATES``:
    #: "default" (the fused op's saved trace/states) or "recompute" (only the input and the
    #: initial states; the forward runs again in the backward). Set by ``fusedsnn.memory_lean``.
    @property
    def saved_state(self) -> str:
        return self.__dict__.get("_saved_state", "default")

    @saved_state.setter
    def saved_state(self, value: str) -> None:
        if value not in memory.SAVED_STATES:
            raise ValueError(f"saved_state must be one of {memory.SAVED_STATES}, got {value!r}")
        self.__dict__["_saved_state"] = value

    def _lif(self, *args, **kwargs):
        return memory.lif(self.saved_state, *args, **kwargs)

    def _register(self, name: str, value: Param, learn: bool) -> None:
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if learn:
            setattr(self, name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    def _scalar_gsf(self) -> float:
        gsf = self.graded_spikes_factor
        if gsf.numel() != 1:
            raise ValueError("graded_spikes_factor must be a single value; per-neuron graded spikes are not fused")
        return float(gsf.item())

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._graded_spikes_value = self._scalar_gsf()

    def _spec(self, recurrence: int):
        # The graded spikes factor is a kernel constant, kept as a Python float so that
        # torch.compile does not see a data-dependent .item() on every call.
        return Fn.make_spec(
            synaptic=self._synaptic, recurrence=recurrence, reset_mechanism=self.reset_mechanism,
            reset_delay=self.reset_delay, spike_grad=self.spike_grad,
            surrogate_disable=self.surrogate_disable, graded_spikes_factor=self._graded_spikes_value,
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
    """Fused first-order LIF neuron (snnTorch's ``Leaky``).

    ``forward(x, mem=None)``: ``x: [T, B, *features]``, ``mem: [B, *features]`` ->
    ``(spk, mem)``, each ``[T, B, *features]``.
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
        return self._lif(x, self._spec(RECURRENCE_NONE), self.beta, self.threshold, mem=mem,
                      backend=self.backend)


class Synaptic(_FusedLIF):
    """Fused current-based LIF neuron (snnTorch's ``Synaptic``).

    ``forward(x, syn=None, mem=None)`` -> ``(spk, syn, mem)``, each ``[T, B, *features]``.
    ``graded_spikes_factor`` is accepted here too (snnTorch's Synaptic fixes it at 1.0).
    """

    _synaptic = True
    _neuron = "Synaptic"

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
        return self._lif(x, self._spec(RECURRENCE_NONE), self.beta, self.threshold, alpha=self.alpha,
                      syn=syn, mem=mem, backend=self.backend)


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
            if not linear_features:
                raise TypeError(
                    f"When `all_to_all=True`, {self._neuron} requires `linear_features` "
                    "(the number of neurons) for its nn.Linear recurrent weights"
                )
            self.recurrent = nn.Linear(linear_features, linear_features)
            if not learn_recurrent:
                for p in self.recurrent.parameters():
                    p.requires_grad = False
        else:
            if linear_features:
                raise TypeError("When `all_to_all=False`, `linear_features` must not be given; `V` is used instead")
            self._register("V", V, learn_recurrent)

    def _recurrence_kwargs(self) -> dict:
        if self.all_to_all:
            return {"recurrent": self.recurrent}
        return {"V": self.V}

    def _recurrence_code(self) -> int:
        return RECURRENCE_INPUT if self.all_to_all else RECURRENCE_ONE_TO_ONE


class RLeaky(_Recurrent):
    """Fused recurrent LIF (snnTorch's ``RLeaky``): one-to-one ``V * spk`` feedback or an
    all-to-all ``nn.Linear`` (``recurrent.weight``, ``recurrent.bias``).

    ``forward(x, spk=None, mem=None)`` -> ``(spk, mem)``, each ``[T, B, *features]``.
    """

    _neuron = "RLeaky"

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
        return self._lif(x, self._spec(self._recurrence_code()), self.beta, self.threshold,
                      spk=spk, mem=mem, backend=self.backend, **self._recurrence_kwargs())


class RSynaptic(_Recurrent):
    """Fused recurrent current-based LIF (snnTorch's ``RSynaptic``).

    ``forward(x, spk=None, syn=None, mem=None)`` -> ``(spk, syn, mem)``. As in snnTorch 1.0.0,
    ``reset_delay=False`` has no effect on RSynaptic (a warning says so).
    """

    _synaptic = True
    _neuron = "RSynaptic"

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
        return self._lif(x, self._spec(self._recurrence_code()), self.beta, self.threshold,
                      alpha=self.alpha, spk=spk, syn=syn, mem=mem, backend=self.backend,
                      **self._recurrence_kwargs())
