"""Shared parity check: any backend against the reference backend, every output and gradient."""

from __future__ import annotations

import warnings

import torch

import fusedsnn.functional as F

from ..conftest import TOLERANCES


def call_neuron(kind: str, x, params: dict, states: dict, backend: str, **kw):
    fn = {"Leaky": F.leaky, "Synaptic": F.synaptic, "RLeaky": F.rleaky, "RSynaptic": F.rsynaptic}[kind]
    args = {"Leaky": ["beta", "threshold"], "Synaptic": ["alpha", "beta", "threshold"],
            "RLeaky": ["beta", "V", "threshold"], "RSynaptic": ["alpha", "beta", "V", "threshold"]}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSynaptic(reset_delay=False) warns by design
        return fn(x, *[params[a] for a in args], backend=backend, **states, **kw)


def make_params(kind: str, features: tuple, learn: bool, with_states: bool, B: int, dtype=torch.float32):
    def p(value):
        return value.requires_grad_() if learn else value

    params = dict(beta=p(torch.rand(features) * 1.2 - 0.1), threshold=p(torch.rand(features[-1:]) + 0.5))
    if kind in ("Synaptic", "RSynaptic"):
        params["alpha"] = p(torch.rand(features) * 1.2 - 0.1)
    if kind in ("RLeaky", "RSynaptic"):
        params["V"] = p(torch.randn(features) * 0.5)
    states = {}
    if with_states:
        names = {"Leaky": ["mem"], "Synaptic": ["syn", "mem"], "RLeaky": ["spk", "mem"],
                 "RSynaptic": ["spk", "syn", "mem"]}[kind]
        for name in names:
            value = (torch.rand(B, *features) > 0.5).float() if name == "spk" else torch.randn(B, *features)
            states[name] = value.to(dtype).requires_grad_()
    return params, states


def compare_backends(backend, kind, x, params, states, dtype, exact: bool, **kw):
    """Run ``backend`` and the reference backend on the same input; compare every output and
    every gradient (inputs, initial states, learnable parameters)."""
    ref_x = x.detach().clone().requires_grad_()
    tri_x = x.detach().clone().requires_grad_()
    ref_states = {k: v.detach().clone().requires_grad_() for k, v in states.items()}
    tri_states = {k: v.detach().clone().requires_grad_() for k, v in states.items()}
    expected = call_neuron(kind, ref_x, params, ref_states, "reference", **kw)
    actual = call_neuron(kind, tri_x, params, tri_states, backend, **kw)
    tol = TOLERANCES[dtype]
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == dtype and a.shape == e.shape
        assert not torch.isnan(a).any(), f"output {i} has unwritten (NaN) elements"
        if exact:
            assert torch.equal(a, e), f"output {i} not bit-identical"
        else:
            torch.testing.assert_close(a, e, **tol)
    if dtype == torch.float32:
        assert torch.equal(actual[0], expected[0])
    weights = [torch.randn(o.shape, dtype=torch.float64).to(device=o.device, dtype=dtype) for o in expected]
    leaves_p = [v for v in params.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    eg = torch.autograd.grad(sum((o * w).sum() for o, w in zip(expected, weights)),
                             [ref_x, *ref_states.values(), *leaves_p])
    ag = torch.autograd.grad(sum((o * w).sum() for o, w in zip(actual, weights)),
                             [tri_x, *tri_states.values(), *leaves_p])
    for i, (a, e) in enumerate(zip(ag, eg)):
        assert not torch.isnan(a).any(), f"gradient {i} has NaN"
        scale = e.abs().max().item() + 1e-6
        torch.testing.assert_close(a.double(), e.double(), rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0))
