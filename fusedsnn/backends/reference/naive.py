"""Autograd step loop that mirrors snnTorch 1.0.0's neurons operation for operation.

This is the oracle: it is written the way snnTorch writes each neuron's ``forward`` (see
``snntorch/_neurons/{leaky,synaptic,rleaky,rsynaptic}.py``), with PyTorch autograd doing the
backward, so it can be compared with snnTorch bit for bit in the forward and with the fused
backends' hand-written backward. It is slow on purpose (one autograd graph per step).

Shapes: ``x: [T, B, *features]``; states ``[B, *features]``; parameters broadcast against
``[B, *features]``. Parameters are the raw (unclamped) values; the clamp happens here.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ...spec import RECURRENCE_ALL_TO_ALL, RECURRENCE_ONE_TO_ONE, RESET_SUBTRACT, RESET_ZERO, LIFSpec

Tensor = torch.Tensor


def naive_lif(
    x: Tensor,
    spec: LIFSpec,
    beta: Tensor,
    threshold: Tensor,
    alpha: Optional[Tensor] = None,
    V: Optional[Tensor] = None,
    recurrent: Optional[Callable[[Tensor], Tensor]] = None,
    mem: Optional[Tensor] = None,
    syn: Optional[Tensor] = None,
    spk: Optional[Tensor] = None,
) -> tuple[Tensor, ...]:
    """Returns ``(spk, mem)`` or ``(spk, syn, mem)`` stacked over time, like the fused layers."""
    sdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    zeros = torch.zeros(x.shape[1:], dtype=sdt, device=x.device)
    mem = zeros if mem is None else mem.to(sdt)
    syn = zeros if syn is None else syn.to(sdt)
    spk = zeros if spk is None else spk.to(sdt)
    fire = spec.surrogate
    gsf = spec.graded_spikes_factor
    spikes, syns, mems = [], [], []
    for t in range(x.shape[0]):
        xt = x[t].to(sdt)
        reset = fire(mem - threshold).clone().detach()
        if spec.recurrence == RECURRENCE_ONE_TO_ONE:
            rec = spk * V
        elif spec.recurrence == RECURRENCE_ALL_TO_ALL:
            rec = recurrent(spk.to(x.dtype)).to(sdt)
        if spec.synaptic:
            s = alpha.clamp(0, 1) * syn + xt
            if spec.recurrence:
                s = s + rec
            base = beta.clamp(0, 1) * mem + s
            if spec.reset == RESET_SUBTRACT:
                new_mem = base - reset * threshold
            elif spec.reset == RESET_ZERO:
                new_mem = base - base * reset
            else:
                new_mem = base
            syn = s
        else:
            if spec.zero_before_decay:
                mem = (1 - reset) * mem
            base = beta.clamp(0, 1) * mem + xt
            if spec.recurrence:
                base = base + rec
            if spec.reset == RESET_SUBTRACT:
                new_mem = base - reset * threshold
            elif spec.reset == RESET_ZERO and not spec.zero_before_decay:
                new_mem = base - reset * base
            else:
                new_mem = base
        mem = new_mem
        spk = fire(mem - threshold) * gsf
        if spec.immediate_reset:
            do_reset = spk / gsf - reset
            if spec.reset == RESET_SUBTRACT:
                mem = mem - do_reset * threshold
            else:
                mem = mem - do_reset * mem
        spikes.append(spk)
        syns.append(syn)
        mems.append(mem)
    if x.shape[0] == 0:
        empty = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return (empty, empty.clone(), empty.clone()) if spec.synaptic else (empty, empty.clone())
    out_spk = torch.stack(spikes).to(x.dtype)
    out_mem = torch.stack(mems).to(x.dtype)
    if spec.synaptic:
        return out_spk, torch.stack(syns).to(x.dtype), out_mem
    return out_spk, out_mem
