"""The fused all-to-all recurrent op (fusedsnn/ops/all_to_all.py) against snnTorch 1.0.0 and itself.

The reference backend forms the recurrent input with the same ``F.linear`` call as snnTorch's
``nn.Linear``, so its float32 spikes and states are bit-identical to snnTorch. The host backend
sums ``W @ spk`` in its own order (bias, then spiking inputs in ascending order), so its float32
states differ in the last bits: states and gradients are compared within a tolerance, spikes
exactly wherever the pre-spike membrane is further than ``MARGIN`` from threshold (the seeds are
fixed per test, so no comparison is left to chance). In float64 the host matches the reference
to 1e-9.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import fusedsnn as fs
from fusedsnn import functional as F
from fusedsnn.spec import RESET_CODES
from fusedsnn.ops.all_to_all import lif_all_to_all_forward

from ..conftest import RESETS, assert_close_scaled, random_input, snntorch_steps, weighted_loss

snn = pytest.importorskip("snntorch")
from snntorch import surrogate as snn_surrogate  # noqa: E402

BACKENDS = ["reference", "host"]
# Float32 rounding of a sum of ~N products of O(1) values, with room: spikes are compared
# exactly wherever the pre-spike membrane is further than this from threshold.
MARGIN = 1e-4


def _snntorch_neuron(kind: str, n: int, reset: str, reset_delay: bool, learn: bool, **extra) -> torch.nn.Module:
    gsf = extra.pop("graded_spikes_factor", None)
    kw = dict(linear_features=n, reset_mechanism=reset, reset_delay=reset_delay, **extra)
    if learn:
        # Per-neuron and learnable; beta/alpha straddle [0, 1] so the clamp's mask matters.
        kw.update(beta=torch.rand(n) * 1.2 - 0.1, threshold=torch.rand(n) + 0.5, learn_beta=True,
                  learn_threshold=True)
        if kind == "RSynaptic":
            kw.update(alpha=torch.rand(n) * 1.2 - 0.1, learn_alpha=True)
    else:
        kw.update(beta=0.8, threshold=0.9)
        if kind == "RSynaptic":
            kw.update(alpha=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSynaptic(reset_delay=False) warns that it is a no-op
        neuron = getattr(snn, kind)(**kw)
    if gsf is not None:  # RLeaky/RSynaptic do not take it as a keyword; it is a buffer
        neuron.graded_spikes_factor = torch.as_tensor(gsf)
    with torch.no_grad():  # weights large enough that the recurrence changes who spikes
        neuron.recurrent.weight.mul_(3.0)
    return neuron


def _leaves(neuron: torch.nn.Module, kind: str, learn: bool) -> list[tuple[str, torch.Tensor]]:
    named = [("recurrent.weight", neuron.recurrent.weight), ("recurrent.bias", neuron.recurrent.bias)]
    if learn:
        named += [("beta", neuron.beta), ("threshold", neuron.threshold)]
        if kind == "RSynaptic":
            named.append(("alpha", neuron.alpha))
    return named


def _pre_spike_membrane(neuron: torch.nn.Module, x: torch.Tensor, states: dict) -> torch.Tensor:
    """The membrane each spike decision compares with threshold, from the reference backend
    (bit-identical to snnTorch): the output membrane, or the saved pre-reset one."""
    spec = neuron._spec(neuron._recurrence_code())
    N = x.shape[-1]
    beta = neuron.beta.detach().clamp(0, 1).expand(N).contiguous()
    thr = neuron.threshold.detach().expand(N).contiguous()
    alpha = neuron.alpha.detach().clamp(0, 1).expand(N).contiguous() if spec.synaptic else x.new_empty(0)
    empty = x.new_empty(0)
    _, _, mem, _, pre = lif_all_to_all_forward(
        x.detach(), states.get("mem", empty).detach() if "mem" in states else empty,
        states["syn"].detach() if "syn" in states else empty, states["spk"].detach() if "spk" in states else empty,
        neuron.recurrent.weight.detach(), neuron.recurrent.bias.detach(), beta, thr, alpha,
        spec.synaptic, spec.reset, spec.reset_delay, spec.surrogate.code, float(spec.surrogate.p0),
        float(spec.surrogate.p1), spec.graded_spikes_factor, "reference")
    return pre if pre.numel() else mem


def _initial_states(kind: str, B: int, n: int, given: bool) -> dict:
    if not given:
        return {}
    states = {"spk": (torch.rand(B, n) > 0.6).float(), "mem": torch.randn(B, n) * 0.5}
    if kind == "RSynaptic":
        states["syn"] = torch.randn(B, n) * 0.5
    return {k: v.requires_grad_() for k, v in states.items()}


def _check_against_snntorch(kind, reset, reset_delay, backend, learn, states_given, T=9, B=5, n=13, **extra):
    reference = _snntorch_neuron(kind, n, reset, reset_delay, learn, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = fs.from_snntorch(reference, backend=backend)
    x = random_input(T, B, n).requires_grad_()
    states = _initial_states(kind, B, n, states_given)
    expected = snntorch_steps(reference, x, states)
    actual = fused(x, **states)
    assert 0 < expected[0].count_nonzero() < expected[0].numel(), "inputs must give some spikes, not all"
    if backend == "reference":
        for a, e in zip(actual, expected):
            assert torch.equal(a, e)
    else:
        margin = (_pre_spike_membrane(fused, x, states) - fused.threshold.detach()).abs()
        clear = margin > MARGIN
        assert torch.equal(actual[0][clear], expected[0][clear])
        for name, a, e in zip(["spk", "syn", "mem"] if kind == "RSynaptic" else ["spk", "mem"], actual, expected):
            assert_close_scaled(a, e, 1e-5, name)
    ref_named = [("x", x)] + list(states.items()) + _leaves(reference, kind, learn)
    fused_named = [("x", x)] + list(states.items()) + _leaves(fused, kind, learn)
    ge = torch.autograd.grad(weighted_loss(expected), [t for _, t in ref_named])
    ga = torch.autograd.grad(weighted_loss(actual), [t for _, t in fused_named])
    for (name, _), a, e in zip(ref_named, ga, ge):
        assert_close_scaled(a, e, 2e-4, name)


@pytest.mark.parametrize("states_given", [False, True], ids=["zero-init", "given-states"])
@pytest.mark.parametrize("learn", [False, True], ids=["frozen", "learnable"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_all_to_all_matches_snntorch(backend, kind, reset, reset_delay, learn, states_given):
    _check_against_snntorch(kind, reset, reset_delay, backend, learn, states_given)


@pytest.mark.parametrize(
    "extra",
    [dict(spike_grad=snn_surrogate.fast_sigmoid(slope=5)), dict(spike_grad=snn_surrogate.sigmoid(slope=4)),
     dict(graded_spikes_factor=2.5), dict(spike_grad=snn_surrogate.straight_through_estimator())],
    ids=["fast_sigmoid5", "sigmoid4", "graded2.5", "ste"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_all_to_all_surrogates_and_graded_spikes(backend, extra):
    _check_against_snntorch("RLeaky", "subtract", True, backend, True, True, **extra)


@pytest.mark.parametrize("T", [0, 1], ids=["T0", "T1"])
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_all_to_all_short_sequences(backend, kind, T):
    n, B = 6, 3
    reference = _snntorch_neuron(kind, n, "subtract", True, True)
    fused = fs.from_snntorch(reference, backend=backend)
    x = random_input(T, B, n).requires_grad_()
    states = _initial_states(kind, B, n, True)
    actual = fused(x, **states)
    assert all(tuple(a.shape) == (T, B, n) for a in actual)
    if T == 0:
        loss = sum(a.sum() for a in actual) + sum(s.sum() * 0 for s in states.values())
        grads = torch.autograd.grad(loss, [x, *states.values()], allow_unused=True)
        assert grads[0].shape == x.shape
        return
    expected = snntorch_steps(reference, x, states)
    for a, e in zip(actual, expected):
        assert_close_scaled(a, e, 1e-5, "output")
    leaves = [x, *states.values(), fused.recurrent.weight, fused.recurrent.bias, fused.beta]
    ref_leaves = [x, *states.values(), reference.recurrent.weight, reference.recurrent.bias, reference.beta]
    ga = torch.autograd.grad(weighted_loss(actual), leaves)
    ge = torch.autograd.grad(weighted_loss(expected), ref_leaves)
    for a, e in zip(ga, ge):
        assert_close_scaled(a, e, 2e-4, "gradient")


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_gradcheck_reference_float64(kind, reset, reset_delay):
    # As in test_functional.py: spikes are piecewise constant, so the surrogate is disabled and
    # only membranes (and synaptic currents) are checked; inputs keep membranes off threshold.
    # W, b and the initial spikes still act through the recurrent input W @ spk + b.
    T, B, N = 4, 2, 3
    d = torch.float64
    x = (torch.rand(T, B, N, dtype=d) * 0.6 + 0.2).requires_grad_()
    weight = (torch.randn(N, N, dtype=d) * 0.2).requires_grad_()
    bias = (torch.randn(N, dtype=d) * 0.1).requires_grad_()
    beta = (torch.rand(N, dtype=d) * 0.8 + 0.1).requires_grad_()
    thr = (torch.full((N,), 0.73, dtype=d) + torch.rand(N, dtype=d) * 0.1).requires_grad_()
    alpha = (torch.rand(N, dtype=d) * 0.8 + 0.1).requires_grad_()
    mem0 = (torch.rand(B, N, dtype=d) * 0.3).requires_grad_()
    syn0 = (torch.rand(B, N, dtype=d) * 0.3).requires_grad_()
    spk0 = (torch.rand(B, N, dtype=d) > 0.5).to(d).requires_grad_()

    def states(x, weight, bias, beta, thr, alpha, mem0, syn0, spk0):
        linear = torch.nn.Linear(N, N, dtype=d)
        del linear.weight, linear.bias
        linear.weight, linear.bias = weight, bias
        kw = dict(recurrent=linear, spk=spk0, mem=mem0, reset_mechanism=reset, reset_delay=reset_delay,
                  surrogate_disable=True, backend="reference")
        if kind == "RLeaky":
            return F.rleaky(x, beta, 1.0, thr, **kw)[1:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.rsynaptic(x, alpha, beta, 1.0, thr, syn=syn0, **kw)[1:]

    assert torch.autograd.gradcheck(states, (x, weight, bias, beta, thr, alpha, mem0, syn0, spk0),
                                    eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("shape", [(11, 3, 7), (5, 2, 67)], ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_host_matches_reference_float64(shape, kind, reset, reset_delay):
    """Every output and every gradient of the op, host against reference, in float64 (where the
    order of the product's sum shows only at ~1e-15)."""
    T, B, N = shape
    d = torch.float64
    synaptic = kind == "RSynaptic"
    delay = True if synaptic else reset_delay
    x = random_input(T, B, N, dtype=d).requires_grad_()
    weight = (torch.randn(N, N, dtype=d) * 2 / N**0.5).requires_grad_()
    inputs = dict(
        mem0=torch.randn(B, N, dtype=d).requires_grad_(), syn0=torch.randn(B, N, dtype=d).requires_grad_(),
        spk0=(torch.rand(B, N, dtype=d) > 0.5).to(d).requires_grad_(), weight=weight,
        bias=torch.randn(N, dtype=d).requires_grad_(), beta=torch.rand(N, dtype=d).requires_grad_(),
        threshold=(torch.rand(N, dtype=d) + 0.5).requires_grad_(), alpha=torch.rand(N, dtype=d).requires_grad_(),
    )
    if not synaptic:
        inputs["syn0"] = inputs["alpha"] = x.new_empty(0)
    flags = (synaptic, RESET_CODES[reset], delay, 0, 2.0, 1.0, 1.0)
    results = {}
    for backend in BACKENDS:
        outs = lif_all_to_all_forward(x, *inputs.values(), *flags, backend)
        leaves = [x] + [t for t in inputs.values() if t.requires_grad]
        present = [o for o in outs[:3] if o.numel()]
        results[backend] = (outs, torch.autograd.grad(weighted_loss(present), leaves))
    (ref_out, ref_grad), (host_out, host_grad) = results["reference"], results["host"]
    assert torch.equal(ref_out[0], host_out[0])
    for a, e in zip(host_out[1:] + host_grad, ref_out[1:] + ref_grad):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("B, N", [(8, 131), (1, 521)], ids=["batch-shares", "neuron-tiles"])
def test_host_threaded_and_blas_paths_match_reference(monkeypatch, B, N):
    """Sizes where the forward runs on a team of threads (a share of the batch rows each, or with
    fewer rows than threads one neuron tile each) and the backward calls BLAS, against the same
    size single-threaded without BLAS, and against the reference."""
    from fusedsnn.backends.host import all_to_all as lif_all_to_all_host

    T = 6
    d = torch.float64
    x = random_input(T, B, N, dtype=d).requires_grad_()
    linear = torch.nn.Linear(N, N, dtype=d)
    with torch.no_grad():
        linear.weight.mul_(4)
    runs = []
    for backend, threads, blas in [("host", 2, "1"), ("host", 1, "0"), ("reference", 1, "1")]:
        monkeypatch.setenv("FUSEDSNN_DENSE_BLAS", blas)
        monkeypatch.setattr(lif_all_to_all_host, "_gemm_cache", {})
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            spk, mem = F.rleaky(x, 0.9, threshold=1.0, recurrent=linear, backend=backend)
            grads = torch.autograd.grad(weighted_loss([spk, mem]), [x, linear.weight, linear.bias])
        finally:
            torch.set_num_threads(previous)
        runs.append((spk, mem, *grads))
    assert 0 < runs[0][0].count_nonzero() < runs[0][0].numel()
    for other in runs[1:]:
        for a, e in zip(runs[0], other):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


def test_other_recurrent_maps_still_run_step_by_step():
    """A recurrent map that is not an nn.Linear(N, N) keeps the per-step path (and its checks)."""
    x = random_input(5, 2, 4)
    linear = torch.nn.Linear(4, 4)
    fused = F.rleaky(x, 0.9, recurrent=linear, backend="host")
    stepwise = F.rleaky(x, 0.9, recurrent=lambda s: linear(s), backend="host")
    assert torch.equal(fused[0], stepwise[0])
    assert_close_scaled(fused[1], stepwise[1], 1e-5, "mem")


def test_opcheck():
    T, B, N = 3, 2, 5
    x = random_input(T, B, N)
    args = (x, torch.randn(B, N), x.new_empty(0), (torch.rand(B, N) > 0.5).float(), torch.randn(N, N),
            torch.randn(N), torch.rand(N), torch.rand(N) + 0.5, x.new_empty(0), False, 0, False, 0, 2.0, 1.0, 1.0)
    for backend in BACKENDS:
        torch.library.opcheck(lif_all_to_all_forward, args + (backend,),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_torch_compile_fullgraph():
    """The fused all-to-all call traces without graph breaks (fake kernels registered) and gives
    the eager result."""
    linear = torch.nn.Linear(6, 6)
    x = random_input(5, 3, 6).requires_grad_()

    def run(x):
        return F.rleaky(x, 0.9, recurrent=linear, backend="host")

    eager = run(x)
    compiled = torch.compile(run, fullgraph=True)(x)
    for a, e in zip(compiled, eager):
        assert torch.equal(a, e)
    (ga,) = torch.autograd.grad(weighted_loss(compiled), x)
    (ge,) = torch.autograd.grad(weighted_loss(eager), x)
    torch.testing.assert_close(ga, ge)


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("broadcast", ["scalar", "over-time"])
def test_host_gradient_broadcast_over_time_matches_materialised(kind, broadcast):
    """Upstream gradients broadcast over time (stride 0, as from ``out.sum()``) go to the host as one
    [B, N] row for every step: the same gradients, bit for bit, as the materialised [T, B, N] array."""
    T, B, N = 9, 3, 37
    x = random_input(T, B, N).requires_grad_()
    linear = torch.nn.Linear(N, N)
    with torch.no_grad():
        linear.weight.mul_(3)
    synaptic = kind == "RSynaptic"

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if synaptic:
                spk, syn, mem = F.rsynaptic(x, 0.8, 0.9, threshold=1.0, recurrent=linear, backend="host")
                return [spk, syn, mem]
            return list(F.rleaky(x, 0.9, threshold=1.0, recurrent=linear, backend="host"))

    leaves = [x, linear.weight, linear.bias]
    per_row = torch.randn(B, N) if broadcast == "over-time" else torch.tensor(0.7)
    outs = run()
    broadcast_grads = [per_row.expand(T, B, N) for _ in outs]
    assert all(g.stride(0) == 0 for g in broadcast_grads)
    expected = torch.autograd.grad(outs, leaves, [g.contiguous() for g in broadcast_grads])
    actual = torch.autograd.grad(run(), leaves, broadcast_grads)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)
