"""Every op on every backend reads any memory layout as its values, forward and backward.

A permuted, sliced, stride-0 or channels-last input or initial state must give exactly what
the same backend gives on a contiguous copy: the kernels index row-major, so a layout that
reaches them unconverted (or an output allocated with the input's strides) reads or writes
elements in the wrong places. Same backend on both sides, so the comparison is bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from fusedsnn import functional as F

from ..conftest import random_input

T, B, N = 5, 3, 7


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t``'s values in the named non-contiguous layout (same shape)."""
    if layout == "permuted":  # the first two dims swapped in memory
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "sliced":  # every other element of a wider last dim
        wide = torch.randn(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "stride0":  # one slice expanded over the first dim
        return t[:1].expand(t.shape)
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    raise AssertionError(layout)


def _call(op: str, x, mem, syn, spk, params, backend):
    beta, thr, alpha, V, linear = params
    if op == "leaky":
        return F.leaky(x, beta, thr, mem=mem, backend=backend)
    if op == "synaptic":
        return F.synaptic(x, alpha, beta, thr, mem=mem, syn=syn, backend=backend)
    if op == "rleaky_one_to_one":
        return F.rleaky(x, beta, V, thr, mem=mem, spk=spk, backend=backend)
    if op == "rleaky_all_to_all":
        return F.rleaky(x, beta, threshold=thr, recurrent=linear, mem=mem, spk=spk, backend=backend)
    if op == "rsynaptic_all_to_all":
        return F.rsynaptic(x, alpha, beta, threshold=thr, recurrent=linear, mem=mem, syn=syn, spk=spk,
                           backend=backend)
    raise AssertionError(op)


def _run(op, x, states, params, backend, weights):
    """Outputs, then gradients of a random weighting of them w.r.t. x, the states and the weights."""
    x = x.detach().requires_grad_()
    states = [None if s is None else s.detach().requires_grad_() for s in states]
    linear = params[4]
    outs = _call(op, x, *states, params, backend)
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    leaves = [x] + [s for s in states if s is not None] + list(linear.parameters())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [o.detach() for o in outs], grads


OPS = ["leaky", "synaptic", "rleaky_one_to_one", "rleaky_all_to_all", "rsynaptic_all_to_all"]
# the input's and the states' layouts; channels-last needs a 4-D input, which all-to-all (on [T, B, N]) never takes
CASES = [("permuted", None), ("sliced", None), ("stride0", None), (None, "permuted"), (None, "sliced"),
         (None, "stride0"), ("permuted", "permuted"), ("channels_last", None)]


COMBOS = [pytest.param(op, a, b, id=f"{op}-x-{a or 'dense'}_state-{b or 'dense'}")
          for op in OPS for a, b in CASES if not (a == "channels_last" and op.endswith("all_to_all"))]


@pytest.mark.parametrize("backend", ["reference", "host", "triton"])
@pytest.mark.parametrize("op,x_layout,state_layout", COMBOS)
def test_layout_gives_the_contiguous_answer(op, x_layout, state_layout, backend, monkeypatch):
    if backend == "triton":
        pytest.importorskip("triton")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    features = (4, 2, 3) if x_layout == "channels_last" else (N,)
    # channels-last is a 4-D format: [T, B, C, H, W] folded to [T*B, C, H, W] and back
    x = random_input(T, B, *features)
    F_ = x[0, 0].numel()
    linear = torch.nn.Linear(F_, F_)
    with torch.no_grad():
        linear.weight.mul_(3.0)  # large enough that the recurrence changes who spikes
    params = (torch.rand(F_).reshape(features) * 0.9 + 0.05, torch.rand(F_).reshape(features) + 0.5,
              torch.rand(F_).reshape(features) * 0.9 + 0.05, torch.randn(F_).reshape(features), linear)
    synaptic = op.startswith(("synaptic", "rsynaptic"))
    recurrent = op.startswith("r")
    dense_states = [torch.randn(B, *features), torch.randn(B, *features) if synaptic else None,
                    (torch.rand(B, *features) > 0.5).float() if recurrent else None]
    outs = _call(op, x, *dense_states, params, backend)
    weights = [torch.randn_like(o) for o in outs]

    if x_layout == "channels_last":
        strided_x = _layout(x.reshape(T * B, *features), "channels_last").reshape(x.shape)
        assert not strided_x.is_contiguous()
    elif x_layout is not None:
        strided_x = _layout(x if x_layout != "stride0" else x[:1].expand(x.shape).clone(), x_layout)
        x = strided_x.contiguous()
    else:
        strided_x = x
    strided_states = [None if s is None or state_layout is None else _layout(s if state_layout != "stride0"
                      else s[:1].expand(s.shape).clone(), state_layout) for s in dense_states]
    strided_states = [d if s is None else s for s, d in zip(strided_states, dense_states)]
    dense_states = [None if s is None else s.contiguous() for s in strided_states]
    assert torch.equal(strided_x, x)

    want_out, want_grad = _run(op, x, dense_states, params, backend, weights)
    got_out, got_grad = _run(op, strided_x, strided_states, params, backend, weights)
    for name, got, want in zip(("spk", "syn/mem", "mem"), got_out, want_out):
        assert torch.equal(got, want), f"{op} on {backend}: {name} differs on the strided layout"
    for i, (got, want) in enumerate(zip(got_grad, want_grad)):
        assert (got is None) == (want is None), f"gradient {i}"
        if got is not None:
            assert torch.equal(got, want), f"{op} on {backend}: gradient {i} differs on the strided layout"
