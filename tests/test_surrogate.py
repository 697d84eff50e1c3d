"""Surrogate derivatives against snnTorch 1.0.0's own autograd functions."""

from __future__ import annotations

import pytest
import torch

from fusedsnn import surrogate as S

snn_surrogate = pytest.importorskip("snntorch.surrogate")

CASES = {
    "atan-default": (snn_surrogate.atan(), S.atan()),
    "atan-0.5": (snn_surrogate.atan(alpha=0.5), S.atan(alpha=0.5)),
    "fast_sigmoid-default": (snn_surrogate.fast_sigmoid(), S.fast_sigmoid()),
    "fast_sigmoid-3": (snn_surrogate.fast_sigmoid(slope=3), S.fast_sigmoid(slope=3)),
    "sigmoid-default": (snn_surrogate.sigmoid(), S.sigmoid()),
    "sigmoid-2": (snn_surrogate.sigmoid(slope=2), S.sigmoid(slope=2)),
    "ste": (snn_surrogate.straight_through_estimator(), S.straight_through_estimator()),
    "triangular-default": (snn_surrogate.triangular(), S.triangular()),
    "triangular-0.3": (snn_surrogate.triangular(threshold=0.3), S.triangular(threshold=0.3)),
    "sre-default": (snn_surrogate.spike_rate_escape(), S.spike_rate_escape()),
    "sre-2-7": (snn_surrogate.spike_rate_escape(beta=2, slope=7), S.spike_rate_escape(beta=2, slope=7)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_derivative_and_spike_match_snntorch(case):
    theirs, ours = CASES[case]
    h = torch.randn(4097) * 1.5
    h[:3] = torch.tensor([0.0, -0.0, 1e-30])  # the threshold itself and a denormal-ish value
    h_theirs = h.clone().requires_grad_()
    h_ours = h.clone().requires_grad_()
    spk_theirs = theirs(h_theirs)
    spk_ours = ours(h_ours)
    assert torch.equal(spk_theirs, spk_ours)
    g = torch.randn(h.shape)
    (spk_theirs * g).sum().backward()
    (spk_ours * g).sum().backward()
    finite = torch.isfinite(h_theirs.grad)
    assert finite.float().mean() > 0.99
    torch.testing.assert_close(h_ours.grad[finite], h_theirs.grad[finite], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(h_ours.grad).all()


@pytest.mark.parametrize("case", list(CASES))
def test_closure_recognised_with_parameters(case):
    theirs, ours = CASES[case]
    assert S.from_snntorch_closure(theirs) == ours


def test_triangular_keeps_snntorch_sign():
    h = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    S.triangular(threshold=2.0)(h).sum().backward()
    assert h.grad.tolist() == [2.0, -2.0, -2.0]


def test_disabled_has_no_gradient():
    h = torch.randn(10, requires_grad=True)
    S.disabled()(h).sum().backward()
    assert not h.grad.any()


def test_surrogate_parameters_are_checked():
    with pytest.raises(TypeError, match="p0"):
        S.Surrogate("atan", "two")
    with pytest.raises(ValueError, match="finite"):
        S.atan(alpha=float("inf"))
