"""Surrogate gradients of the spike nonlinearity, with snnTorch 1.0.0's names and defaults.

Every surrogate's forward is the Heaviside step ``H(h) = [h > 0]`` of the shifted membrane
``h = mem - threshold``; only the backward differs. A :class:`Surrogate` is a small frozen value
(a name and up to two float parameters) so that a fused kernel can receive it as compile-time
constants; it is also callable on a tensor, like snnTorch's closures, for eager code.

Derivatives ``dS/dh`` as coded in snnTorch 1.0.0's ``surrogate.py``:

============================  =============================================================
``atan(alpha=2.0)``           ``alpha / 2 / (1 + (pi / 2 * alpha * h) ** 2)``
``fast_sigmoid(slope=25)``    ``1 / (slope * |h| + 1) ** 2``
``sigmoid(slope=25)``         ``slope * exp(-slope * h) / (exp(-slope * h) + 1) ** 2``
``straight_through_estimator``  ``1``
``triangular(threshold=1)``   ``-threshold`` where ``h >= 0``, ``+threshold`` elsewhere
``spike_rate_escape(beta=1, slope=25)``  ``slope * exp(-beta * |h - 1|)``
============================  =============================================================

Two documented differences from a naive reading:

* ``triangular`` is not a triangle in snnTorch 1.0.0: its backward multiplies the incoming
  gradient by ``threshold`` and flips the sign where ``h >= 0``. We reproduce that exactly,
  because the goal is the same numbers as snnTorch.
* ``sigmoid`` in snnTorch overflows ``exp(-slope * h)`` to ``inf`` for ``h < -88 / slope`` and
  returns NaN there (``inf / inf``). We evaluate the same function in the symmetric, overflow-free
  form ``slope * e / (1 + e) ** 2`` with ``e = exp(-slope * |h|)``, which equals snnTorch's value
  wherever snnTorch's is finite and gives the true limit (0) where snnTorch gives NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "Surrogate",
    "atan",
    "fast_sigmoid",
    "sigmoid",
    "straight_through_estimator",
    "triangular",
    "spike_rate_escape",
    "disabled",
    "from_snntorch_closure",
    "SURROGATE_CODES",
]

# Integer codes handed to kernels as compile-time constants. Order is part of the kernel ABI.
SURROGATE_CODES = {
    "atan": 0,
    "fast_sigmoid": 1,
    "sigmoid": 2,
    "straight_through_estimator": 3,
    "triangular": 4,
    "spike_rate_escape": 5,
    "disabled": 6,
}


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient: ``name`` plus parameters ``p0``, ``p1`` (meaning depends on name)."""

    name: str
    p0: float = 0.0
    p1: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SURROGATE_CODES:
            raise ValueError(
                f"surrogate name must be one of {sorted(SURROGATE_CODES)}, got {self.name!r}"
            )
        for field_name in ("p0", "p1"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"surrogate parameter {field_name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"surrogate parameter {field_name} must be finite, got {value!r}")

    @property
    def code(self) -> int:
        return SURROGATE_CODES[self.name]

    def derivative(self, h: torch.Tensor) -> torch.Tensor:
        """``dS/dh`` at the shifted membrane ``h = mem - threshold`` (same dtype as ``h``)."""
        return surrogate_derivative(h, self.code, float(self.p0), float(self.p1))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Spike ``[h > 0]`` in ``h``'s dtype; its backward is this surrogate's derivative."""
        return _SpikeFunction.apply(h, self)

    def __repr__(self) -> str:
        names = _PARAM_NAMES[self.name]
        args = ", ".join(f"{n}={v!r}" for n, v in zip(names, (self.p0, self.p1)))
        return f"{self.name}({args})"


_PARAM_NAMES = {
    "atan": ("alpha",),
    "fast_sigmoid": ("slope",),
    "sigmoid": ("slope",),
    "straight_through_estimator": (),
    "triangular": ("threshold",),
    "spike_rate_escape": ("beta", "slope"),
    "disabled": (),
}


def atan(alpha: float = 2.0) -> Surrogate:
    """Arctangent surrogate (snnTorch's default): ``alpha / 2 / (1 + (pi/2 * alpha * h)^2)``."""
    return Surrogate("atan", float(alpha))


def fast_sigmoid(slope: float = 25) -> Surrogate:
    """Fast sigmoid: ``1 / (slope * |h| + 1)^2``."""
    return Surrogate("fast_sigmoid", float(slope))


def sigmoid(slope: float = 25) -> Surrogate:
    """Logistic sigmoid derivative with steepness ``slope`` (overflow-free form, see module doc)."""
    return Surrogate("sigmoid", float(slope))


def straight_through_estimator() -> Surrogate:
    """Passes the gradient through unchanged."""
    return Surrogate("straight_through_estimator")


def triangular(threshold: float = 1) -> Surrogate:
    """snnTorch's ``triangular``: ``-threshold`` where ``h >= 0``, ``+threshold`` elsewhere.

    This reproduces snnTorch 1.0.0 exactly, including its sign convention (the gradient is
    negative above threshold), which is an oddity of snnTorch rather than a triangle function.
    """
    return Surrogate("triangular", float(threshold))


def spike_rate_escape(beta: float = 1, slope: float = 25) -> Surrogate:
    """Escape-rate surrogate: ``slope * exp(-beta * |h - 1|)``."""
    return Surrogate("spike_rate_escape", float(beta), float(slope))


def disabled() -> Surrogate:
    """No gradient through spikes: what snnTorch's ``surrogate_disable=True`` does."""
    return Surrogate("disabled")


def surrogate_derivative(h: torch.Tensor, code: int, p0: float, p1: float) -> torch.Tensor:
    """Eager PyTorch ``dS/dh``; the Triton and C++ kernels evaluate the same expressions."""
    if code == 0:  # atan: alpha / 2 / (1 + (pi/2 * alpha * h)^2)
        scaled = (math.pi / 2 * p0) * h
        # A true division, as the kernels do: PyTorch's `scalar / tensor` is a reciprocal times
        # the scalar, which rounds twice and would make backends differ in the last bit.
        return torch.full_like(h, p0 / 2) / (1 + scaled * scaled)
    if code == 1:  # fast_sigmoid
        denom = p0 * h.abs() + 1.0
        return 1.0 / (denom * denom)
    if code == 2:  # sigmoid, symmetric overflow-free form
        e = torch.exp(-p0 * h.abs())
        return p0 * e / ((e + 1) * (e + 1))
    if code == 3:  # straight-through
        return torch.ones_like(h)
    if code == 4:  # triangular, with snnTorch's sign convention
        return torch.where(h >= 0, -p0, p0).to(h.dtype)
    if code == 5:  # spike_rate_escape
        return p1 * torch.exp(-p0 * (h - 1).abs())
    if code == 6:  # disabled
        return torch.zeros_like(h)
    raise ValueError(f"unknown surrogate code {code}")


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.surrogate = surrogate
        return (h > 0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (h,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(h), None


# snnTorch builds each surrogate as a closure named "<factory>.<locals>.inner"; its free
# variables hold the factory's arguments, in the factory's own keyword names.
_SNNTORCH_FACTORIES: dict[str, Callable[..., Surrogate]] = {
    "atan": atan,
    "fast_sigmoid": fast_sigmoid,
    "sigmoid": sigmoid,
    "straight_through_estimator": straight_through_estimator,
    "triangular": triangular,
    "spike_rate_escape": spike_rate_escape,
}


def from_snntorch_closure(fn: object) -> Surrogate:
    """Recognise an snnTorch 1.0.0 surrogate closure (e.g. ``snntorch.surrogate.atan(alpha=3)``).

    Raises ``ValueError`` naming the function when it is not one of snnTorch's fusable
    surrogates (a custom Python surrogate cannot run inside a fused kernel).
    """
    if isinstance(fn, Surrogate):
        return fn
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", "")
    factory_name = qualname.split(".<locals>.")[0] if ".<locals>." in qualname else None
    if module == "snntorch.surrogate" and factory_name in _SNNTORCH_FACTORIES:
        code = fn.__code__  # type: ignore[attr-defined]
        cells = fn.__closure__ or ()  # type: ignore[attr-defined]
        kwargs = {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)}
        # Closures capture only the names the inner function uses, which are the factory args.
        return _SNNTORCH_FACTORIES[factory_name](**kwargs)
    label = f"{module}.{qualname}" if module else repr(fn)
    raise ValueError(
        f"spike_grad={label} cannot be fused: fused kernels support snnTorch's atan, fast_sigmoid, "
        "sigmoid, straight_through_estimator, triangular and spike_rate_escape surrogates "
        "(or fusedsnn.surrogate equivalents). Use a fusedsnn.surrogate, or keep this neuron in snnTorch."
    )


def resolve(spike_grad: object, surrogate_disable: bool = False) -> Surrogate:
    """Turn a layer's ``spike_grad``/``surrogate_disable`` keywords into a :class:`Surrogate`."""
    if surrogate_disable:
        return disabled()
    if spike_grad is None:
        return atan()
    return from_snntorch_closure(spike_grad)
