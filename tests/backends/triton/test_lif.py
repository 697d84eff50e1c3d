"""Triton kernels (run by Triton's CPU interpreter) against the reference backend.

Every output and gradient is compared, per dtype, with outputs pre-filled with NaN so that an
element the kernel never writes fails. float32 spikes and states must be bit-identical to the
reference (same operation order, no contraction); reduced precision within per-dtype tolerance.
"""

from __future__ import annotations

import pytest
import torch

import fusedsnn.functional as F
from fusedsnn import surrogate as S
from fusedsnn.backends.triton import lif as lif_triton

from ...conftest import NEURONS, RESETS, dtype_id, random_input
from ..parity import compare_backends, make_params

pytest.importorskip("triton")

SURROGATES = {
    "atan": S.atan(alpha=3.0),
    "fast_sigmoid": S.fast_sigmoid(slope=5),
    "sigmoid": S.sigmoid(slope=25),
    "ste": S.straight_through_estimator(),
    "triangular": S.triangular(threshold=0.7),
    "sre": S.spike_rate_escape(beta=0.5, slope=3),
    "disabled": S.disabled(),
}


@pytest.fixture
def poisoned_outputs(monkeypatch):
    def nan_filled(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(lif_triton, "new_output", nan_filled)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_triton_matches_reference_fp32(interpret, poisoned_outputs, kind, reset, reset_delay):
    B, features = 3, (37,)
    x = random_input(7, B, *features)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B)
    compare_backends("triton", kind, x, params, states, torch.float32, exact=True, reset_mechanism=reset, reset_delay=reset_delay)


@pytest.mark.parametrize("surrogate", list(SURROGATES))
@pytest.mark.parametrize("kind", ["Leaky", "RSynaptic"])
def test_triton_surrogates(interpret, poisoned_outputs, kind, surrogate):
    B, features = 2, (5, 3)
    x = random_input(5, B, *features, scale=0.8)
    params, states = make_params(kind, features, learn=True, with_states=False, B=B)
    compare_backends("triton", kind, x, params, states, torch.float32, exact=True, spike_grad=SURROGATES[surrogate])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("kind", NEURONS)
def test_triton_reduced_precision(interpret, poisoned_outputs, kind, dtype):
    B, features = 3, (29,)
    x = random_input(6, B, *features, dtype=dtype)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B, dtype=dtype)
    # Both backends keep float32 state and round only on store, so spikes agree exactly too.
    compare_backends("triton", kind, x, params, states, dtype, exact=False, reset_mechanism="zero")


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
def test_triton_learned_params_in_bf16_use_saved_float32_state(interpret, poisoned_outputs, kind):
    # In bf16 the membrane output is rounded; the reset must come from the float32 state.
    B, features = 4, (17,)
    x = random_input(8, B, *features, dtype=torch.bfloat16)
    params, states = make_params(kind, features, learn=True, with_states=False, B=B)
    compare_backends("triton", kind, x, params, states, torch.bfloat16, exact=False, reset_mechanism="subtract")


def test_triton_stride0_time_input(interpret, poisoned_outputs, monkeypatch):
    """A static input expanded over time keeps stride 0: no T copies are made, and the gradient
    flows back to the static tensor summed over time."""
    B, N, T = 4, 19, 9
    static = random_input(1, B, N)[0]
    seen = []
    original = lif_triton.time_major_2d

    def spy(t, steps):
        flat, stride = original(t, steps)
        if t is not None and t.data_ptr() == static_t.data_ptr():
            seen.append((stride, flat.untyped_storage().nbytes()))
        return flat, stride

    monkeypatch.setattr(lif_triton, "time_major_2d", spy)
    outs, grads = [], []
    for backend in ("reference", "triton"):
        static_t = static.clone().requires_grad_()
        x = static_t.unsqueeze(0).expand(T, B, N)
        assert x.stride(0) == 0
        spk, mem = F.leaky(x, 0.9, 0.8, backend=backend)
        outs.append((spk, mem))
        grads.append(torch.autograd.grad((mem * torch.linspace(-1, 1, N)).sum() + spk.sum(), static_t)[0])
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert 0 < outs[0][0].count_nonzero() < outs[0][0].numel()
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    assert seen and all(stride == 0 and nbytes <= B * N * 4 for stride, nbytes in seen)


@pytest.mark.parametrize("layout", ["transposed-features", "strided-batch", "time-slice"])
def test_triton_non_contiguous_input(interpret, poisoned_outputs, layout):
    B = 3
    if layout == "transposed-features":
        x = random_input(6, B, 7, 5).transpose(2, 3)
    elif layout == "strided-batch":
        x = random_input(6, 2 * B, 11)[:, ::2]
    else:
        x = random_input(12, B, 11)[::2]
    assert not x.is_contiguous()
    params, states = make_params("Synaptic", tuple(x.shape[2:]), learn=True, with_states=True, B=B)
    compare_backends("triton", "Synaptic", x, params, states, torch.float32, exact=True)


def test_triton_all_to_all(interpret, poisoned_outputs):
    n, B = 6, 3
    recurrent = torch.nn.Linear(n, n)
    x = random_input(5, B, n)
    params, states = make_params("RLeaky", (n,), learn=True, with_states=True, B=B)
    states.pop("spk")
    for backend_pair in [("reference", "triton")]:
        outs = [F.rleaky(x, params["beta"], threshold=params["threshold"], recurrent=recurrent,
                         backend=b, **states) for b in backend_pair]
        # The interpreter's tl.dot (NumPy) and torch's product may sum W @ spk in another order:
        # spikes must agree, membranes to the last bits.
        assert torch.equal(outs[0][0], outs[1][0])
        torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)
        grads = [torch.autograd.grad(o[1].sum() + o[0].sum(), [recurrent.weight, params["beta"]]) for o in outs]
        for a, e in zip(*grads):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def test_triton_block_size_smaller_than_neurons(interpret, poisoned_outputs):
    """Several programs, with a ragged last block."""
    B, N = 5, 23
    x = random_input(4, B, N)
    params, _ = make_params("Leaky", (N,), learn=False, with_states=False, B=B)
    spec = F.make_spec(synaptic=False, recurrence=0, reset_mechanism="subtract", reset_delay=True,
                       spike_grad=None, surrogate_disable=False, graded_spikes_factor=1.0, neuron="Leaky")
    beta = params["beta"].clamp(0, 1).expand(N).contiguous()
    thr = params["threshold"].expand(N).contiguous()
    e = torch.empty(0)
    out = lif_triton.lif_forward_triton(x, None, None, None, None, beta, thr, e, e, spec, False, block_size=16)
    ref = F.leaky(x, params["beta"], params["threshold"], backend="reference")
    assert torch.equal(out[0], ref[0]) and torch.equal(out[2], ref[1])


def test_triton_backend_refuses_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        F.leaky(torch.randn(3, 2, 4), 0.9, backend="triton")


def test_triton_backend_refuses_float64(interpret):
    with pytest.raises(ValueError, match="float64"):
        F.leaky(torch.randn(3, 2, 4, dtype=torch.float64), 0.9, backend="triton")
