"""The fused Linear + LIF op on CPUs (contract in :mod:`fusedsnn.backends.linear_lif`).

The forward walks the sequence in chunks of steps: each chunk's input current is one product
(the spike-sparse :func:`.all_to_all.spike_linear_forward` when the chunk's input is spikes, a
BLAS ``addmm`` otherwise) into a chunk-sized buffer, and the host LIF time loop runs over it
from the state the previous chunk ended in, writing straight into the op's outputs. So only one
chunk of current (``CHUNK_ELEMENTS``) exists at a time, never the ``[T, B, N]`` current. A
static input (``[B, K]`` expanded over time) needs one product for all steps.

Float results differ from ``nn.Linear`` in the last bits where a product sums in another order
(the spike product adds the bias first, then the weights of the inputs that spiked; BLAS may
block a chunk's rows differently from the whole sequence's).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

from ..linear_lif import forward_outputs, is_static, linear_lif_backward
from ...spec import LIFSpec
from . import all_to_all
from .lif import lif_backward_host, lif_forward_host

Tensor = torch.Tensor

#: Elements of input current per chunk (4 MiB in float32): at least one step.
CHUNK_ELEMENTS = 1 << 20


def _current(x2: Tensor, weight: Tensor, bias: Optional[Tensor], spike_operands, N: int) -> Tensor:
    """``x2 @ weight^T + bias`` for ``x2: [rows, K]`` contiguous, by the spike product when
    ``x2`` is spikes (and sparse enough), else by BLAS."""
    if spike_operands is not None and all_to_all.available():
        wt, bias_p = spike_operands
        result = all_to_all.spike_linear_forward(x2, wt, bias_p, N)
        if result is not None:
            return result[0]
    if bias is None:
        return x2 @ weight.t()
    return torch.addmm(bias, x2, weight.t())



def _empty(shape: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def linear_lif_forward_host(x: Tensor, weight: Tensor, bias: Optional[Tensor], mem0: Optional[Tensor],
                            syn0: Optional[Tensor], beta: Tensor, thr: Tensor, alpha: Tensor, spec: LIFSpec,
                            for_backward: bool = True):
    T, B, K = x.shape
    N = weight.shape[0]
    shape = (T, B, N)
    spk, syn, mem, pre = forward_outputs(x, N, spec, for_backward, _empty)
    if T == 0 or B * N == 0:
        return spk, syn, mem, pre
    empty = x.new_empty(0)
    weight = weight.contiguous()
    alpha_ = alpha if spec.synaptic else empty
    spike_operands = all_to_all.spike_linear_operands(weight, bias) if all_to_all.available() and K > 0 else None

    def run(current: Tensor, t0: int, t1: int, m0: Optional[Tensor], s0: Optional[Tensor]) -> None:
        out = (spk[t0:t1], syn[t0:t1] if spec.synaptic else None, mem[t0:t1], pre[t0:t1] if pre.numel() else None)
        lif_forward_host(current, m0, s0, None, None, beta, thr, alpha_, empty, spec, False,
                         for_backward=for_backward, out=out)

    if is_static(x):
        current = _current(x[0].contiguous(), weight, bias, spike_operands, N)
        run(current.unsqueeze(0).expand(shape), 0, T, mem0, syn0)
        return spk, syn, mem, pre
    steps = max(1, CHUNK_ELEMENTS // (B * N))
    m0, s0 = mem0, syn0
    for t0 in range(0, T, steps):
        t1 = min(T, t0 + steps)
        x2 = x[t0:t1].reshape((t1 - t0) * B, K)
        current = _current(x2.contiguous(), weight, bias, spike_operands, N).view(t1 - t0, B, N)
        run(current, t0, t1, m0, s0)
        m0 = mem[t1 - 1]
        s0 = syn[t1 - 1] if spec.synaptic else None
    return spk, syn, mem, pre


linear_lif_backward_host = functools.partial(linear_lif_backward, lif_backward_host)
