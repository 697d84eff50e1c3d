"""The Poplar backend (Graphcore IPUs): the neurons as PopART custom ops under PopTorch.

``poptorch.py`` forms the ``poptorch.custom_op`` calls; the ops themselves are
``csrc/popart`` (PopART op and grad op) over the Poplar codelets of ``csrc/codelets``, whose
arithmetic is ``csrc/kernels/*.hpp``: the same headers the host backend compiles for CPUs.
PopTorch traces the model and PopART owns the backward, so this backend hands over the whole
neuron call (``traced_lif``) instead of running through fusedsnn's autograd ops. It claims
every input while ``poptorch.isRunningOnIpu()``, and refuses everything elsewhere.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ...spec import RECURRENCE_ALL_TO_ALL, LIFSpec
from ..reference.naive import naive_lif
from ..registry import Backend, register_backend
from . import poptorch
from .poptorch import running_on_ipu

Tensor = torch.Tensor


def _unsupported(x: Tensor) -> Optional[str]:
    if running_on_ipu():
        return None
    return "backend='poplar' runs only inside a PopTorch model on an IPU (poptorch.isRunningOnIpu())"


def lif_traced(x: Tensor, spec: LIFSpec, beta: Tensor, threshold: Tensor, alpha: Optional[Tensor],
               V: Optional[Tensor], recurrent: Optional[Callable[[Tensor], Tensor]], mem: Optional[Tensor],
               syn: Optional[Tensor], spk: Optional[Tensor]) -> tuple[Tensor, ...]:
    """The whole neuron call under PopTorch: ``x: [T, B, *features]``, parameters ``[F]``
    (flattened features, already clamped), states ``[B, *features]`` or None. Elementwise
    neurons and all-to-all recurrence through an ``nn.Linear(N, N)`` emit the PopART ops; any
    other recurrent map is traced from plain PyTorch ops."""
    features = tuple(x.shape[2:])
    if spec.recurrence == RECURRENCE_ALL_TO_ALL:
        if poptorch.all_to_all_op_applies(recurrent, x):
            return poptorch.lif_all_to_all_poptorch(x, spec, recurrent, beta, threshold, alpha, mem, syn, spk)

        def per_neuron(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.reshape(features)

        return naive_lif(x, spec, per_neuron(beta), per_neuron(threshold), per_neuron(alpha), None, recurrent,
                         mem, syn, spk)
    T, B = x.shape[0], x.shape[1]

    def flat(state: Optional[Tensor]) -> Optional[Tensor]:
        return None if state is None else state.reshape(B, -1)

    outs = poptorch.lif_poptorch(x.reshape(T, B, -1), spec, beta, threshold, alpha, V, flat(mem), flat(syn),
                                 flat(spk))
    return tuple(o.reshape(x.shape) for o in outs)


def _no_launcher(*args, **kwargs):
    raise RuntimeError("the poplar backend runs whole neuron calls under PopTorch (lif_traced), not launchers")


register_backend(Backend(
    "poplar",
    lif_forward=_no_launcher,
    lif_backward=_no_launcher,
    unsupported=_unsupported,
    claims=lambda x: running_on_ipu(),
    auto_priority=0,
    traced_lif=lif_traced,
))
