"""Memory layout and host-side constants shared by every compiled backend (Triton, host C++)."""

from __future__ import annotations

from typing import Optional

import torch

from ..spec import LIFSpec, recomputes_surrogate
from ..surrogate import host_constants

Tensor = torch.Tensor


def surrogate_constants(spec: LIFSpec) -> tuple[float, float]:
    """Host-side constants ``(c0, c1)`` the kernels' surrogate switch expects (from the surrogate table)."""
    s = spec.surrogate
    return host_constants(s.name, s.p0, s.p1)


def time_major_2d(t: Optional[Tensor], T: int) -> tuple[Optional[Tensor], int]:
    """The one contiguity policy: view ``[T, B, F]`` as ``[T, M]`` with unit inner stride.

    Returns the 2-D view and its time stride. A time dimension of stride 0 (a static input
    expanded over time) stays stride 0: only one step is made contiguous, never T copies.
    """
    if t is None or t.numel() == 0 and T > 0:
        return None, 0
    if T > 0 and t.stride(0) == 0:
        step = t[0].reshape(-1)
        if step.numel() > 1 and step.stride(0) != 1:
            step = step.contiguous()
        return step.unsqueeze(0).expand(T, step.numel()), 0
    flat = t.reshape(T, -1)
    if flat.shape[1] > 1 and flat.stride(1) != 1:
        flat = flat.contiguous()
    return flat, flat.stride(0)


def row_major_empty(like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """An uninitialised row-major tensor of ``like``'s shape (and device; ``like``'s dtype unless given).

    Every output a compiled kernel writes is allocated here: the kernels index ``[T, B, N]``
    row-major, while ``torch.empty_like`` keeps a permuted input's strides, so a kernel's
    row-major writes into it would read back transposed.
    """
    return torch.empty(like.shape, dtype=like.dtype if dtype is None else dtype, device=like.device)


def forward_outputs(x: Tensor, spec: LIFSpec, state_dtype: torch.dtype, state_copy: bool, alloc=None,
                    for_backward: bool = True, keep_trace: bool = False):
    """The forward's six outputs for ``x: [T, B, F]``: ``spk, syn, mem`` in ``x.dtype`` (``syn``
    empty unless synaptic), then ``trace``, the membrane copy (only when ``state_copy``) and the
    pre-reset membrane (only for ``reset_delay=False``) in ``state_dtype``. Absent outputs are
    distinct empty tensors: a custom op's outputs must not alias one another.

    ``trace`` is also empty when the backward recomputes the surrogate derivative from a saved
    membrane (:func:`~.spec.recomputes_surrogate`: float32/float64 input); the backward
    recomputes it whenever the trace is empty. ``keep_trace=True`` writes it anyway (callers
    outside the op's contract that consume the trace themselves).
    ``for_backward=False`` (inference: nothing will be differentiated) leaves the last three
    empty, so the kernels write only ``spk, syn, mem``.
    ``alloc(shape, dtype, device)`` allocates each present output (``torch.empty`` by default).
    """
    def new(dtype):
        return alloc(x.shape, dtype, x.device) if alloc else torch.empty(x.shape, dtype=dtype, device=x.device)

    def absent(dtype):
        return x.new_empty(0, dtype=dtype)

    write_trace = for_backward and (keep_trace or not recomputes_surrogate(x.dtype))
    return (
        new(x.dtype),
        new(x.dtype) if spec.synaptic else absent(x.dtype),
        new(x.dtype),
        new(state_dtype) if write_trace else absent(state_dtype),
        new(state_dtype) if state_copy and for_backward else absent(state_dtype),
        new(state_dtype) if spec.immediate_reset and for_backward else absent(state_dtype),
    )
