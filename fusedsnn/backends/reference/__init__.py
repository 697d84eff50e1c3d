"""The reference backend: the fused ops' algorithm in whole-tensor PyTorch, one step at a time.

It runs anywhere torch does (any device and float dtype), serves as the fallback of
``backend="auto"`` and as the oracle of the compiled backends' tests. ``naive.py`` is the other
oracle: an autograd step loop written like snnTorch, checked against snnTorch itself.
"""

from __future__ import annotations

import functools

import torch

from ..registry import Backend, register_backend
from .all_to_all import lif_all_to_all_backward_reference, lif_all_to_all_forward_reference
from .lif import lif_backward_reference, lif_forward_reference
from .linear_lif import linear_lif_backward_reference, linear_lif_forward_reference


def _runs_anything(x) -> None:
    return None


def _all_to_all_unsupported(x):
    if x.dtype not in (torch.float32, torch.float64):
        return f"the fused all-to-all op takes float32 or float64 input, got {x.dtype}"
    return None


def _linear_lif_unsupported(x):
    if x.dtype not in (torch.float32, torch.float64):
        return f"the fused Linear + LIF op takes float32 or float64 input, got {x.dtype}"
    return None


register_backend(Backend(
    "reference",
    # The op's contract: no trace where the backward recomputes the surrogate.
    lif_forward=functools.partial(lif_forward_reference, keep_trace=False),
    lif_backward=lif_backward_reference,
    unsupported=_runs_anything,
    all_to_all_forward=lif_all_to_all_forward_reference,
    all_to_all_backward=lif_all_to_all_backward_reference,
    all_to_all_unsupported=_all_to_all_unsupported,
    linear_lif_forward=linear_lif_forward_reference,
    linear_lif_backward=linear_lif_backward_reference,
    linear_lif_unsupported=_linear_lif_unsupported,
    claims=lambda x: True,
    auto_priority=1000,
))
