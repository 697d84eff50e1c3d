"""Backends that implement the fused LIF forward/backward contract, and how one is chosen.

A backend is a pair of plain functions with the signatures of
:func:`fusedsnn.kernels.lif_reference.lif_forward_reference` and
:func:`~fusedsnn.kernels.lif_reference.lif_backward_reference`. The autograd Function in
:mod:`fusedsnn.ops` only ever calls through this table, so a new backend (the host C++ library,
the Poplar op) slots in by registering here, with no change to the layers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .kernels import lif_reference

__all__ = ["Backend", "register_backend", "get_backend", "resolve_backend", "available_backends"]


@dataclass(frozen=True)
class Backend:
    name: str
    forward: Callable
    backward: Callable
    #: returns None when the backend can run tensors like ``x``, else the reason it cannot.
    unsupported_reason: Callable[[torch.Tensor], str | None]


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(_BACKENDS)}, got {name!r}"
        ) from None


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def _reference_reason(x: torch.Tensor) -> str | None:
    return None


register_backend(
    Backend(
        "reference",
        # The op's contract: no trace where the backward recomputes the surrogate.
        functools.partial(lif_reference.lif_forward_reference, keep_trace=False),
        lif_reference.lif_backward_reference,
        _reference_reason,
    )
)


def _register_triton() -> None:
    from .kernels import lif_triton

    if not lif_triton.HAS_TRITON:
        return

    def reason(x: torch.Tensor) -> str | None:
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return f"the triton backend takes float32, float16 or bfloat16 input, got {x.dtype}"
        if x.device.type == "cuda":
            return None
        if x.device.type == "cpu" and lif_triton.interpreter_enabled():
            return None
        return (
            f"the triton backend needs CUDA tensors (got a {x.device.type} tensor); "
            "set TRITON_INTERPRET=1 to run it on CPU tensors through Triton's interpreter"
        )

    register_backend(
        Backend("triton", lif_triton.lif_forward_triton, lif_triton.lif_backward_triton, reason)
    )


_register_triton()


def _register_host() -> None:
    global _host_reason, _host_module
    from .kernels import lif_host

    def reason(x: torch.Tensor) -> str | None:
        if x.device.type != "cpu":
            return f"the host backend runs CPU tensors, got a {x.device.type} tensor"
        if x.dtype not in (torch.float32, torch.float64):
            return f"the host backend takes float32 or float64 input, got {x.dtype}"
        # loaded(): skip the loader's lock and torch.compile wrapper once the library is in.
        if not (lif_host.loaded() or lif_host.available()):
            return "the host library could not be built or loaded (see the warning above)"
        return None

    _host_reason, _host_module = reason, lif_host
    register_backend(Backend("host", lif_host.lif_forward_host, lif_host.lif_backward_host, reason))


_host_reason = _host_module = None


_register_host()


def resolve_backend(name: str, x: torch.Tensor) -> Backend:
    """Pick the backend for ``x``: ``"auto"`` means triton for CUDA tensors, else the CPU default."""
    if name == "auto" and x.is_cpu and (x.dtype is torch.float32 or x.dtype is torch.float64):
        # The per-call common case, decided without building device objects or reasons: the
        # CPU default is the host backend once its library is loaded (cpu_default_backend).
        host = _BACKENDS.get("host")
        if host is not None and host.unsupported_reason is _host_reason and _host_module.loaded() \
                and not torch.compiler.is_compiling():
            return host
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name == "auto":
        if x.device.type == "cuda" and "triton" in _BACKENDS and _BACKENDS["triton"].unsupported_reason(x) is None:
            return _BACKENDS["triton"]
        return _BACKENDS[cpu_default_backend(x)]
    backend = get_backend(name)
    reason = backend.unsupported_reason(x)
    if reason is not None:
        raise ValueError(f"backend={name!r} cannot run this input: {reason}")
    return backend


def cpu_default_backend(x: torch.Tensor) -> str:
    """The backend ``"auto"`` uses off-GPU. The host library will take this over when present."""
    for candidate in ("host",):
        backend = _BACKENDS.get(candidate)
        if backend is not None and backend.unsupported_reason(x) is None:
            return candidate
    return "reference"
