"""Non-finite forward values stay where snnTorch keeps them: every backend's reverse loop against
snnTorch 1.0.0 (the Triton kernel through its interpreter).

A NaN input, an overflowed membrane, an infinite threshold or an exploding surrogate makes some
forward values non-finite. snnTorch's autograd never multiplies them by a zero gradient (it does
not run the backward of outputs nobody uses), so its gradients stay finite everywhere the
non-finite values cannot reach. A fused reverse loop visits every step, and ``0 * inf = NaN``
would spread backwards through time into every earlier step and every parameter. Wherever
snnTorch's gradient is finite, ours must be finite and equal to it within tolerance.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import fusedsnn as fs

from ..conftest import NEURONS, snntorch_steps

snn = pytest.importorskip("snntorch")
from snntorch import surrogate as snn_surrogate  # noqa: E402

T, B, F = 7, 3, 5
BACKENDS = ["reference", "host", "triton"]


def _snn_neuron(kind: str, **kw) -> torch.nn.Module:
    params = dict(beta=0.9, learn_beta=True, **kw)
    if kind in ("Synaptic", "RSynaptic"):
        params.update(alpha=0.8, learn_alpha=True)
    if kind in ("RLeaky", "RSynaptic"):
        params.update(V=0.5, all_to_all=False, learn_recurrent=True)
    return getattr(snn, kind)(**params)


def _nan_input():
    x = torch.randn(T, B, F) * 1.5 + 0.3
    x[4, 0, 0] = float("nan")
    return x


def _large_input(scale: float):
    return (torch.randn(T, B, F) * 1.5 + 0.3) * scale


def _first_mem(outs):
    return outs[-1][0].sum()


def _all_mem(outs):
    return outs[-1].sum()


# id -> (snnTorch keywords, input, loss over the outputs)
CASES = {
    # A NaN input at step 4; only the first step's membrane is used.
    "nan-input-first-mem": (dict(learn_threshold=True), _nan_input, _first_mem),
    # The same with the immediate reset, whose gradient multiplies the (NaN) pre-reset membrane.
    "nan-input-first-mem-immediate-zero": (dict(learn_threshold=True, reset_mechanism="zero", reset_delay=False),
                                           _nan_input, _first_mem),
    "nan-input-first-mem-immediate-subtract": (dict(learn_threshold=True, reset_delay=False),
                                               _nan_input, _first_mem),
    # exp(+|h - 1|) overflows to inf; the spikes are unused, so their gradient is zero.
    "escape-rate-beta-1-x200": (
        dict(learn_threshold=True, spike_grad=snn_surrogate.spike_rate_escape(beta=-1.0)),
        lambda: _large_input(200.0), _all_mem),
    # reset * threshold = 0 * inf makes every membrane NaN in both libraries, but that path is
    # detached in snnTorch: the input gradient stays finite.
    "threshold-inf-subtract": (dict(threshold=float("inf")), lambda: _large_input(1.0), _all_mem),
    # Membranes near float32's maximum overflow to inf after the zero reset (inf * 0).
    "overflow-1e38-zero-reset": (dict(learn_threshold=True, reset_mechanism="zero"),
                                 lambda: _large_input(1e38), _all_mem),
}


def _leaf_grads(module: torch.nn.Module) -> dict:
    # snnTorch registers a learnable one-to-one V twice (V and recurrent.V): same tensor.
    return {name: p.grad for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_finite_wherever_snntorch_is(request, backend, kind, case):
    if backend == "triton":
        request.getfixturevalue("interpret")
    kw, make_input, loss_of = CASES[case]
    reference = _snn_neuron(kind, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSynaptic(reset_delay=False) warns by design
        fused = fs.from_snntorch(reference, backend=backend)
    x = make_input()

    x_ref = x.clone().requires_grad_()
    loss_of(snntorch_steps(reference, x_ref, {})).backward()
    x_fused = x.clone().requires_grad_()
    loss_of(fused(x_fused)).backward()

    expected = {"x": x_ref.grad, **_leaf_grads(reference)}
    actual = {"x": x_fused.grad, **_leaf_grads(fused)}
    assert expected.keys() <= actual.keys() | {"recurrent.V"}
    # The case must exercise something: snnTorch's input gradient is finite somewhere.
    assert torch.isfinite(expected["x"]).any()
    for name, e in expected.items():
        if name == "recurrent.V":
            continue
        a = actual[name]
        finite = torch.isfinite(e)
        leaked = finite & ~torch.isfinite(a)
        assert not leaked.any(), f"{name}: {int(leaked.sum())} non-finite gradients where snnTorch's are finite"
        scale = e[finite].abs().max().item() if finite.any() else 1.0
        torch.testing.assert_close(a[finite].double(), e[finite].double(), rtol=1e-4,
                                   atol=1e-5 * max(scale, 1.0), msg=name)
