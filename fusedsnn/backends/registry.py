"""The one table of backends, and how one is chosen for an input.

A backend is a :class:`Backend`: the launchers of the fused LIF op (signatures of
:func:`fusedsnn.backends.reference.lif.lif_forward_reference` and ``lif_backward_reference``),
optionally those of the all-to-all op (:mod:`fusedsnn.backends.reference.all_to_all`) and of the
fused Linear + LIF op (:mod:`fusedsnn.backends.linear_lif`), and what
it can run. Both autograd ops in :mod:`fusedsnn.ops` call only through this table, so a backend
is one folder under ``fusedsnn/backends`` whose ``__init__`` calls :func:`register_backend`,
plus its import in ``fusedsnn/backends/__init__.py``; nothing above the ops changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

__all__ = ["Backend", "register_backend", "get_backend", "resolve_backend", "available_backends"]


def _never(x: torch.Tensor) -> bool:
    return False


@dataclass(frozen=True)
class Backend:
    name: str
    #: The fused LIF op's launchers.
    lif_forward: Callable
    lif_backward: Callable
    #: None when the backend can run the LIF op on tensors like ``x``, else the reason it cannot.
    unsupported: Callable[[torch.Tensor], Optional[str]]
    #: The all-to-all op's launchers (None: the backend has no such op; the layer then loops
    #: over time with the LIF op).
    all_to_all_forward: Optional[Callable] = None
    all_to_all_backward: Optional[Callable] = None
    #: None when the all-to-all op runs on ``x`` (an ``[T, B, N]`` input), else why not.
    all_to_all_unsupported: Optional[Callable[[torch.Tensor], Optional[str]]] = None
    #: The fused Linear + LIF op's launchers (contract in :mod:`fusedsnn.backends.linear_lif`;
    #: None: the backend has no such op) and None when it runs on ``x: [T, B, K]``, else why not.
    linear_lif_forward: Optional[Callable] = None
    linear_lif_backward: Optional[Callable] = None
    linear_lif_unsupported: Optional[Callable[[torch.Tensor], Optional[str]]] = None
    #: Whether ``backend="auto"`` picks this backend for ``x``; candidates are tried in
    #: ascending ``auto_priority``, so the most specialised claims an input first.
    claims: Callable[[torch.Tensor], bool] = _never
    auto_priority: int = 100
    #: A backend whose framework traces the model and owns its gradients (PopTorch): the
    #: functional call hands it the whole neuron call, bypassing fusedsnn's autograd ops.
    #: Signature of :func:`fusedsnn.backends.poplar.lif_traced`.
    traced_lif: Optional[Callable] = None
    #: ``(forward op, backward op)``: torch.library operators with the schemas of
    #: ``fusedsnn::lif_forward`` / ``lif_backward`` that ``torch.compile`` can see into (the
    #: Triton kernels as ``triton_op``); used while compiling when ``FUSEDSNN_COMPILE_TRITON_OP=1``.
    compiled_lif: Optional[tuple] = None

    def all_to_all_reason(self, x: torch.Tensor) -> Optional[str]:
        """None when this backend runs the fused all-to-all op on ``x``, else why not."""
        if self.all_to_all_forward is None:
            return f"the {self.name!r} backend has no fused all-to-all op"
        return None if self.all_to_all_unsupported is None else self.all_to_all_unsupported(x)

    def linear_lif_reason(self, x: torch.Tensor) -> Optional[str]:
        """None when this backend runs the fused Linear + LIF op on ``x``, else why not."""
        if self.linear_lif_forward is None:
            return f"the {self.name!r} backend has no fused Linear + LIF op"
        return None if self.linear_lif_unsupported is None else self.linear_lif_unsupported(x)


_BACKENDS: dict[str, Backend] = {}
_AUTO_ORDER: list[Backend] = []


def register_backend(backend: Backend) -> None:
    """Add ``backend`` to the table (replacing one of the same name)."""
    _BACKENDS[backend.name] = backend
    _AUTO_ORDER[:] = sorted(_BACKENDS.values(), key=lambda b: b.auto_priority)


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend must be 'auto' or one of {sorted(_BACKENDS)}, got {name!r}") from None


def available_backends() -> list[str]:
    """Names of the registered backends (``fusedsnn.available_backends()``)."""
    return sorted(_BACKENDS)


def registered() -> dict[str, Backend]:
    """The table itself, name -> backend (read-only use: benches list what can run)."""
    return dict(_BACKENDS)


_cpu_fast: Optional[Backend] = None
_cpu_fast_before: tuple[Backend, ...] = ()


def set_cpu_fast_path(backend: Optional[Backend]) -> None:
    """The backend ``"auto"`` returns for a float32/float64 CPU tensor without asking each
    candidate whether it can run it (the per-call common case; its ``claims`` must agree): only
    the backends before it in priority are asked whether they claim the input (an IPU trace).
    The host backend sets it once its library has loaded."""
    global _cpu_fast, _cpu_fast_before
    _cpu_fast = backend
    _cpu_fast_before = () if backend is None else tuple(
        b for b in _AUTO_ORDER if b.auto_priority < backend.auto_priority)


def resolve_backend(name: str, x: torch.Tensor) -> Backend:
    """The backend that runs ``x``: ``"auto"`` asks the backends in priority order (the GPU's
    Triton kernels, the host library on CPUs, the reference loop last); a named backend that
    cannot run ``x`` raises ``ValueError`` saying why."""
    if name == "auto" and _cpu_fast is not None and x.is_cpu \
            and (x.dtype is torch.float32 or x.dtype is torch.float64) and not torch.compiler.is_compiling() \
            and not any(b.claims(x) for b in _cpu_fast_before):
        return _cpu_fast
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name == "auto":
        for backend in _AUTO_ORDER:
            if backend.claims(x) and backend.unsupported(x) is None:
                return backend
        raise ValueError(f"no backend can run a {x.dtype} tensor on {x.device}")
    backend = get_backend(name)
    reason = backend.unsupported(x)
    if reason is not None:
        raise ValueError(f"backend={name!r} cannot run this input: {reason}")
    return backend
