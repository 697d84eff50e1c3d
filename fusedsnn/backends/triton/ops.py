"""The Triton LIF kernels as ``torch.library.triton_op`` operators, for ``torch.compile``.

``fusedsnn::lif_forward_triton`` / ``fusedsnn::lif_backward_triton`` have the schemas of the
backend-generic custom ops ``fusedsnn::lif_forward`` / ``lif_backward`` (``fusedsnn/ops/lif.py``;
the trailing ``backend`` string is accepted and ignored), but their bodies launch the kernels
through ``torch.library.wrap_triton``: a traced graph then holds the Triton kernels themselves
and inductor launches them from its generated code, without fusedsnn's Python launcher (the
~20-argument binding per launch that docs/gpu.md found to dominate eager host time).

Used while ``torch.compile`` traces a model on the triton backend when
``FUSEDSNN_COMPILE_TRITON_OP=1`` (off by default: not yet run on a GPU; ``fusedsnn/ops/lif.py``
reads the flag). Eager calls never come here.
"""

from __future__ import annotations

import torch

from ...spec import spec_from_flags
from . import lif

Tensor = torch.Tensor

def _opt(t: Tensor):
    return t if t.numel() else None


@torch.library.triton_op("fusedsnn::lif_forward_triton", mutates_args=())
def lif_forward_triton_op(
    x: Tensor, mem0: Tensor, syn0: Tensor, spk0: Tensor, rec: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, V: Tensor,
    synaptic: bool, recurrence: int, reset: int, reset_delay: bool,
    surrogate: int, p0: float, p1: float, gsf: float, store_state: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    spec = spec_from_flags(synaptic, recurrence, reset, reset_delay, surrogate, p0, p1, gsf)
    return tuple(lif.lif_forward_triton(x, _opt(mem0), _opt(syn0), _opt(spk0), _opt(rec), beta, threshold,
                                        alpha, V, spec, store_state, wrapped=True))


@torch.library.triton_op("fusedsnn::lif_backward_triton", mutates_args=())
def lif_backward_triton_op(
    grad_spk: Tensor, grad_syn: Tensor, grad_mem: Tensor,
    trace: Tensor, mem_hist: Tensor, syn_hist: Tensor, spk_hist: Tensor, pre: Tensor,
    mem0: Tensor, syn0: Tensor, spk0: Tensor,
    beta: Tensor, threshold: Tensor, alpha: Tensor, V: Tensor,
    synaptic: bool, recurrence: int, reset: int, reset_delay: bool,
    surrogate: int, p0: float, p1: float, gsf: float,
    x_dtype: torch.dtype, need_beta: bool, need_threshold: bool, need_alpha: bool, need_V: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    spec = spec_from_flags(synaptic, recurrence, reset, reset_delay, surrogate, p0, p1, gsf)
    grads = lif.lif_backward_triton(
        _opt(grad_spk), _opt(grad_syn), _opt(grad_mem), trace, mem_hist, syn_hist, spk_hist, pre,
        _opt(mem0), _opt(syn0), _opt(spk0), beta, threshold, alpha, V, spec, x_dtype,
        (need_beta, need_threshold, need_alpha, need_V), wrapped=True)
    # The schema has tensors where the launcher returns None (states the neuron lacks): zeros,
    # as fusedsnn::lif_backward returns.
    state_shape = mem_hist.shape[1:]
    return (grads[0],) + tuple(
        mem_hist.new_zeros(state_shape, dtype=torch.float32) if g is None else g for g in grads[1:])
