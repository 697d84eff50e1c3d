"""The fused Linear + LIF op in whole-tensor PyTorch (the ``"reference"`` backend).

The readable spec of the op (contract in :mod:`fusedsnn.backends.linear_lif`): the current
``F.linear(x, weight, bias)`` for all steps, then the LIF loop of :mod:`.lif`. Unlike the
compiled backends it does hold the whole current ``[T, B, N]``; its results are those of
``nn.Linear`` followed by the fused neuron, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from ..linear_lif import linear_lif_backward
from ...spec import RECURRENCE_NONE, LIFSpec
from .lif import lif_backward_reference, lif_forward_reference

Tensor = torch.Tensor


def linear_lif_forward_reference(x: Tensor, weight: Tensor, bias: Optional[Tensor], mem0: Optional[Tensor],
                                 syn0: Optional[Tensor], beta: Tensor, thr: Tensor, alpha: Tensor, spec: LIFSpec,
                                 for_backward: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    assert spec.recurrence == RECURRENCE_NONE
    current = F.linear(x, weight, bias)
    empty = x.new_empty(0)
    spk, syn, mem, _trace, _state, pre = lif_forward_reference(
        current, mem0, syn0, None, None, beta, thr, alpha if spec.synaptic else empty, empty, spec, False,
        for_backward=for_backward, keep_trace=False)
    return spk, syn, mem, pre


linear_lif_backward_reference = functools.partial(linear_lif_backward, lif_backward_reference)
