"""Fused layers against snnTorch 1.0.0 itself, and the autograd oracle against both.

For every neuron x reset mechanism x surrogate x reset_delay x parameter mode: spikes and states
must be bit-identical to snnTorch's step loop in float32, and every gradient (input, initial
states, beta, threshold, alpha, V) close to snnTorch's autograd.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import fusedsnn as fs
from fusedsnn.backends.reference.naive import naive_lif

from .conftest import NEURONS, RESETS, assert_close_scaled, random_input, snntorch_steps, weighted_loss

snn = pytest.importorskip("snntorch")
from snntorch import surrogate as snn_surrogate  # noqa: E402

FEATURES = (2, 5)
T, B = 6, 3

SURROGATES = {
    "atan-default": dict(),
    "atan3": dict(spike_grad=snn_surrogate.atan(alpha=3.0)),
    "fast_sigmoid5": dict(spike_grad=snn_surrogate.fast_sigmoid(slope=5)),
    "sigmoid4": dict(spike_grad=snn_surrogate.sigmoid(slope=4)),
    "ste": dict(spike_grad=snn_surrogate.straight_through_estimator()),
    "triangular0.7": dict(spike_grad=snn_surrogate.triangular(threshold=0.7)),
    "sre": dict(spike_grad=snn_surrogate.spike_rate_escape(beta=0.5, slope=3)),
    "disabled": dict(surrogate_disable=True),
}


def _params(kind: str, mode: str) -> dict:
    """snnTorch keywords for ``mode``: frozen scalars, or learnable per-neuron tensors."""
    if mode == "scalar-frozen":
        kw = dict(beta=0.85, threshold=0.9, learn_beta=False, learn_threshold=False)
        if kind in ("Synaptic", "RSynaptic"):
            kw.update(alpha=0.7, learn_alpha=False)
        if kind in ("RLeaky", "RSynaptic"):
            kw.update(V=0.4, all_to_all=False, learn_recurrent=False)
        return kw
    # Per-neuron, learnable; beta/alpha straddle [0, 1] so the clamp's gradient mask matters;
    # threshold broadcasts over the trailing feature dim only.
    kw = dict(
        beta=torch.rand(FEATURES) * 1.2 - 0.1,
        threshold=torch.rand(FEATURES[-1]) + 0.5,
        learn_beta=True,
        learn_threshold=True,
    )
    if kind in ("Synaptic", "RSynaptic"):
        kw.update(alpha=torch.rand(FEATURES) * 1.2 - 0.1, learn_alpha=True)
    if kind in ("RLeaky", "RSynaptic"):
        kw.update(V=torch.randn(FEATURES) * 0.5, all_to_all=False, learn_recurrent=True)
    return kw


def _state_names(kind: str) -> list[str]:
    return {"Leaky": ["mem"], "Synaptic": ["syn", "mem"], "RLeaky": ["spk", "mem"],
            "RSynaptic": ["spk", "syn", "mem"]}[kind]


def _initial_states(kind: str) -> dict:
    states = {}
    for name in _state_names(kind):
        if name == "spk":
            states[name] = (torch.rand(B, *FEATURES) > 0.5).float().requires_grad_()
        else:
            states[name] = torch.randn(B, *FEATURES).requires_grad_()
    return states


def _param_tensors(module: torch.nn.Module, kind: str) -> dict:
    names = ["beta", "threshold"]
    if kind in ("Synaptic", "RSynaptic"):
        names.append("alpha")
    if kind in ("RLeaky", "RSynaptic"):
        names.append("V")
    return {n: getattr(module, n) for n in names if isinstance(getattr(module, n), torch.nn.Parameter)}


@pytest.mark.parametrize("mode", ["scalar-frozen", "per-neuron-learnable"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("surrogate", list(SURROGATES))
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("backend", ["reference", "host"])
def test_fused_layer_matches_snntorch(backend, kind, reset, surrogate, reset_delay, mode):
    kwargs = dict(_params(kind, mode), reset_mechanism=reset, reset_delay=reset_delay, **SURROGATES[surrogate])
    reference = getattr(snn, kind)(**kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = fs.from_snntorch(reference, backend=backend)
    if kind == "RSynaptic" and not reset_delay:
        assert any("reset_delay" in str(w.message) for w in caught)

    x = random_input(T, B, *FEATURES).requires_grad_()
    states = _initial_states(kind) if mode == "per-neuron-learnable" else {}

    expected = snntorch_steps(reference, x, states)
    actual = fused(x, **states)
    assert len(actual) == len(expected)
    assert torch.equal(actual[0], expected[0]), "spikes differ from snnTorch"
    out_names = ["spk", "syn", "mem"] if len(actual) == 3 else ["spk", "mem"]
    for name, a, e in zip(out_names, actual, expected):
        assert torch.equal(a, e), f"{name} differs from snnTorch"
    # A test that cannot fail on silence: the inputs must make neurons spike and stay quiet.
    assert 0 < expected[0].count_nonzero() < expected[0].numel()

    ref_params = _param_tensors(reference, kind)
    fused_params = _param_tensors(fused, kind)
    assert ref_params.keys() == fused_params.keys()
    leaves = [x, *states.values()]
    expected_grads = torch.autograd.grad(weighted_loss(expected), leaves + list(ref_params.values()),
                                         allow_unused=True)
    actual_grads = torch.autograd.grad(weighted_loss(actual), leaves + list(fused_params.values()),
                                       allow_unused=True)
    names = ["x", *states.keys(), *ref_params.keys()]
    for name, a, e in zip(names, actual_grads, expected_grads):
        if e is None:
            # snnTorch has no path to it (e.g. spk0 into a neuron with no recurrence)
            assert a is None or not a.any(), name
            continue
        assert a is not None, f"no gradient for {name}"
        assert_close_scaled(a, e, 2e-4, f"grad {name}")


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_oracle_matches_snntorch_bitwise(kind, reset, reset_delay):
    """The autograd oracle (naive.py) is itself checked against snnTorch, spikes and states exact."""
    kwargs = dict(_params(kind, "per-neuron-learnable"), reset_mechanism=reset, reset_delay=reset_delay)
    reference = getattr(snn, kind)(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = fs.from_snntorch(reference)._spec(1 if kind.startswith("R") else 0)
    x = random_input(T, B, *FEATURES)
    expected = snntorch_steps(reference, x, {})
    actual = naive_lif(x, spec, reference.beta, reference.threshold,
                       getattr(reference, "alpha", None), getattr(reference, "V", None))
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("backend", ["reference", "host"])
def test_all_to_all_recurrence_matches_snntorch(backend, kind, reset):
    n = 7
    kwargs = dict(beta=0.8, linear_features=n, reset_mechanism=reset, learn_beta=True)
    if kind == "RSynaptic":
        kwargs.update(alpha=0.6)
    reference = getattr(snn, kind)(**kwargs)
    fused = fs.from_snntorch(reference, backend=backend)
    assert torch.equal(fused.recurrent.weight, reference.recurrent.weight)
    x = random_input(8, 4, n).requires_grad_()
    expected = snntorch_steps(reference, x, {})
    actual = fused(x)
    # The host's fused all-to-all op sums W @ spk in its own order (see tests/test_ops_all_to_all.py):
    # its float32 states may differ from nn.Linear's in the last bits; spikes here do not.
    assert torch.equal(actual[0], expected[0])
    for a, e in zip(actual[1:], expected[1:]):
        if backend == "reference":
            assert torch.equal(a, e)
        else:
            assert_close_scaled(a, e, 1e-5, "state")
    assert 0 < expected[0].count_nonzero() < expected[0].numel()
    ref_leaves = [x, reference.recurrent.weight, reference.recurrent.bias, reference.beta]
    fused_leaves = [x, fused.recurrent.weight, fused.recurrent.bias, fused.beta]
    eg = torch.autograd.grad(weighted_loss(expected), ref_leaves)
    ag = torch.autograd.grad(weighted_loss(actual), fused_leaves)
    for name, a, e in zip(["x", "recurrent.weight", "recurrent.bias", "beta"], ag, eg):
        assert_close_scaled(a, e, 2e-4, name)


def test_graded_spikes_factor_matches_snntorch():
    reference = snn.Leaky(beta=0.9, graded_spikes_factor=2.5, reset_delay=False)
    fused = fs.from_snntorch(reference)
    x = random_input(T, B, 11).requires_grad_()
    expected = snntorch_steps(reference, x, {})
    actual = fused(x)
    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[1], expected[1])
    assert set(actual[0].unique().tolist()) == {0.0, 2.5}
    (ga,) = torch.autograd.grad(weighted_loss(actual), x)
    (ge,) = torch.autograd.grad(weighted_loss(expected), x)
    assert_close_scaled(ga, ge, 2e-4, "grad x")


def test_sigmoid_surrogate_stays_finite_where_snntorch_overflows():
    """snnTorch's sigmoid gives NaN gradients below threshold - 88/slope; ours is the finite limit."""
    reference = snn.Leaky(beta=0.5, spike_grad=snn_surrogate.sigmoid(slope=25))
    fused = fs.from_snntorch(reference)
    x = torch.full((3, 2, 4), -10.0)
    x[0, 0, 0] = 2.0  # one spike so the output is not constant
    x.requires_grad_()
    expected = snntorch_steps(reference, x, {})
    (ge,) = torch.autograd.grad(expected[0].sum() + expected[1].sum(), x)
    assert torch.isnan(ge).any()
    actual = fused(x)
    assert torch.equal(actual[0], expected[0])
    (ga,) = torch.autograd.grad(actual[0].sum() + actual[1].sum(), x)
    assert torch.isfinite(ga).all()


def test_layer_parameters_are_named_like_snntorch():
    layer = fs.RSynaptic(alpha=0.5, beta=0.9, V=0.3, all_to_all=False, learn_alpha=True,
                         learn_beta=True, learn_threshold=True)
    assert {n for n, _ in layer.named_parameters()} == {"alpha", "beta", "threshold", "V"}
    layer = fs.RLeaky(beta=0.9, linear_features=4)
    assert {n for n, _ in layer.named_parameters()} == {"recurrent.weight", "recurrent.bias"}
    frozen = fs.RLeaky(beta=0.9, linear_features=4, learn_recurrent=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert "reset_mechanism='subtract'" in repr(fs.Leaky(beta=0.5))


@pytest.mark.parametrize(
    "factory, option",
    [
        (lambda: fs.Leaky(beta=0.9, init_hidden=True), "init_hidden"),
        (lambda: fs.Leaky(beta=0.9, inhibition=True), "inhibition"),
        (lambda: fs.Leaky(beta=0.9, state_quant=lambda m: m), "state_quant"),
        (lambda: fs.Leaky(beta=0.9, learn_graded_spikes_factor=True), "learn_graded_spikes_factor"),
        (lambda: fs.RLeaky(beta=0.9, conv2d_channels=4, kernel_size=3), "conv2d_channels"),
    ],
    ids=["init_hidden", "inhibition", "state_quant", "learn_graded_spikes_factor", "conv2d"],
)
def test_unsupported_options_raise_naming_them(factory, option):
    with pytest.raises(NotImplementedError, match=option):
        factory()


def test_from_snntorch_rejects_custom_surrogate_by_name():
    def my_surrogate(x):
        return (x > 0).float()

    with pytest.raises(ValueError, match="my_surrogate"):
        fs.from_snntorch(snn.Leaky(beta=0.9, spike_grad=my_surrogate))
    with pytest.raises(NotImplementedError, match="learn_graded_spikes_factor"):
        fs.from_snntorch(snn.Leaky(beta=0.9, learn_graded_spikes_factor=True))
    with pytest.raises(TypeError, match="Leaky, Synaptic"):
        fs.from_snntorch(snn.Lapicque(beta=0.9))


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
def test_convolutional_feature_shape_matches_snntorch(kind):
    """[T, B, C, H, W] inputs with per-channel parameters broadcast over H and W."""
    C, H, W = 3, 4, 5
    kwargs = dict(beta=torch.rand(C, 1, 1), threshold=torch.rand(C, 1, 1) + 0.5, learn_beta=True)
    if kind == "Synaptic":
        kwargs.update(alpha=0.6)
    reference = getattr(snn, kind)(**kwargs)
    fused = fs.from_snntorch(reference)
    x = random_input(5, 2, C, H, W).requires_grad_()
    expected = snntorch_steps(reference, x, {})
    actual = fused(x)
    for a, e in zip(actual, expected):
        assert a.shape == (5, 2, C, H, W) and torch.equal(a, e)
    ga = torch.autograd.grad(weighted_loss(actual), [x, fused.beta])
    ge = torch.autograd.grad(weighted_loss(expected), [x, reference.beta])
    for name, a, e in zip(["x", "beta"], ga, ge):
        assert_close_scaled(a, e, 2e-4, name)


# ---------------------------------------------------------------------------------------------
# Drop-in fidelity (issue 10, items 1-3): state_dict, int/NumPy/broadcast parameters, graded spikes
# ---------------------------------------------------------------------------------------------

def _twin_kwargs(kind: str, recurrence: str, learn: bool) -> dict:
    """snnTorch keywords with fresh random per-neuron values (learnable or not) for ``kind``."""
    n = 7
    kw = dict(beta=torch.rand(n), threshold=torch.rand(n) + 0.5, learn_beta=learn, learn_threshold=learn)
    if kind in ("Synaptic", "RSynaptic"):
        kw.update(alpha=torch.rand(n), learn_alpha=learn)
    if kind in ("RLeaky", "RSynaptic"):
        kw.update(learn_recurrent=learn)
        if recurrence == "one-to-one":
            kw.update(V=torch.randn(n), all_to_all=False)
        else:
            kw.update(linear_features=n)
    return kw


_STATE_DICT_CASES = [
    pytest.param(kind, rec, learn, id=f"{kind}-{rec}-{'learn' if learn else 'frozen'}")
    for kind in NEURONS
    for rec in (["one-to-one", "all-to-all"] if kind.startswith("R") else ["none"])
    for learn in (True, False)
]


@pytest.mark.parametrize("kind, recurrence, learn", _STATE_DICT_CASES)
def test_state_dict_loads_strictly_into_the_snntorch_twin_and_back(kind, recurrence, learn):
    """Same keys and shapes both ways (snnTorch also stores a learnable one-to-one V as
    recurrent.V), and the loaded values are the ones used: outputs equal snnTorch's."""
    source = getattr(snn, kind)(**_twin_kwargs(kind, recurrence, learn))
    fused = getattr(fs, kind)(**_twin_kwargs(kind, recurrence, learn))  # other random values
    if recurrence == "all-to-all":
        # the host's fused all-to-all product sums in its own order (last bits); the reference
        # backend's product is nn.Linear's, so bit-equality still checks the loaded values
        fused.backend = "reference"
    assert set(fused.state_dict()) == set(source.state_dict())
    fused.load_state_dict(source.state_dict(), strict=True)
    for name, value in source.state_dict().items():
        assert torch.equal(fused.state_dict()[name], value), name
    x = random_input(5, 3, 7)
    for a, e in zip(fused(x), snntorch_steps(source, x, {})):
        assert torch.equal(a, e)

    back = getattr(snn, kind)(**_twin_kwargs(kind, recurrence, learn))
    back.load_state_dict(fused.state_dict(), strict=True)
    for name, value in fused.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    if recurrence == "one-to-one" and learn:
        assert fused.recurrent.V is fused.V  # one tensor under both names, as in snnTorch


_NUMBER_PARAMS = {
    # id -> (fused/snnTorch constructor, keywords); integers and NumPy as snnTorch takes them
    "Leaky-int-beta": ("Leaky", dict(beta=1)),
    "Synaptic-int-alpha-beta": ("Synaptic", dict(alpha=1, beta=1)),
    "Leaky-int-threshold": ("Leaky", dict(beta=0.9, threshold=1)),
    "RLeaky-int-V": ("RLeaky", dict(beta=0.8, V=1, all_to_all=False, learn_recurrent=False)),
    "Leaky-numpy-scalar": ("Leaky", dict(beta=np.float32(0.85), threshold=np.float64(0.7))),
    "Synaptic-numpy-arrays": ("Synaptic", dict(alpha=np.linspace(0.2, 0.9, 6, dtype=np.float32),
                                               beta=np.linspace(0.9, 0.3, 6, dtype=np.float32))),
    "Leaky-int-array-threshold": ("Leaky", dict(beta=0.9, threshold=np.array([1, 2, 1, 1, 2, 1]))),
    "Leaky-(1,F)": ("Leaky", dict(beta=torch.linspace(0.2, 0.95, 6).reshape(1, 6), learn_beta=True)),
    "RSynaptic-(1,F)": ("RSynaptic", dict(alpha=torch.linspace(0.1, 0.9, 6).reshape(1, 6),
                                          beta=torch.linspace(0.9, 0.1, 6).reshape(1, 6), learn_beta=True,
                                          V=torch.randn(1, 6), all_to_all=False, learn_recurrent=True,
                                          threshold=torch.rand(1, 6) + 0.5, learn_threshold=True)),
}


@pytest.mark.parametrize("backend", ["reference", "host"])
@pytest.mark.parametrize("case", list(_NUMBER_PARAMS))
def test_int_numpy_and_broadcast_parameters_match_snntorch(case, backend):
    kind, kwargs = _NUMBER_PARAMS[case]
    reference = getattr(snn, kind)(**kwargs)
    direct = getattr(fs, kind)(**kwargs, backend=backend)
    converted = fs.from_snntorch(reference, backend=backend)
    x = random_input(6, 3, 6).requires_grad_()
    expected = snntorch_steps(reference, x, {})
    assert 0 < expected[0].count_nonzero() < expected[0].numel()
    for fused in (direct, converted):
        actual = fused(x)
        for a, e in zip(actual, expected):
            assert torch.equal(a, e)
        ref_params = dict(reference.named_parameters())
        fused_params = dict(fused.named_parameters())
        assert ref_params.keys() == fused_params.keys()
        names = list(ref_params)
        eg = torch.autograd.grad(weighted_loss(expected), [x, *ref_params.values()], retain_graph=True)
        ag = torch.autograd.grad(weighted_loss(actual), [x, *(fused_params[n] for n in names)])
        for name, a, e in zip(["x", *names], ag, eg):
            assert a.shape == e.shape, name  # a (1, F) parameter gets a (1, F) gradient
            assert_close_scaled(a, e, 2e-4, name)


def test_per_sample_parameter_is_refused_by_name():
    x = random_input(4, 3, 5)
    with pytest.raises(ValueError, match="beta of shape \\(3, 5\\) has one value per sample"):
        fs.Leaky(beta=torch.rand(3, 5))(x)


@pytest.mark.parametrize("edit", ["in-place", "assign", "load_state_dict"])
@pytest.mark.parametrize("kind", NEURONS)
def test_graded_spikes_factor_edits_take_effect(kind, edit):
    """snnTorch reads graded_spikes_factor at every step; the fused layers at every call."""
    kwargs = dict(beta=0.9, reset_delay=False)
    if kind == "Leaky":
        kwargs.update(graded_spikes_factor=2.0)  # the others take it only as a buffer (1.0)
    if kind in ("Synaptic", "RSynaptic"):
        kwargs.update(alpha=0.7)
    if kind in ("RLeaky", "RSynaptic"):
        kwargs.update(V=0.3, all_to_all=False)
    reference = getattr(snn, kind)(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSynaptic(reset_delay=False) warns by design
        fused = fs.from_snntorch(reference)
    x = random_input(T, B, 9)
    fused(x)  # a first call, so that a value cached by it would be stale
    for module in (reference, fused):
        if edit == "in-place":
            with torch.no_grad():
                module.graded_spikes_factor.fill_(3.5)
        elif edit == "assign":
            module.graded_spikes_factor = torch.tensor(3.5)
        else:
            module.load_state_dict({**module.state_dict(), "graded_spikes_factor": torch.tensor(3.5)})
    expected = snntorch_steps(reference, x, {})
    actual = fused(x)
    assert set(expected[0].unique().tolist()) == {0.0, 3.5}
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


def test_graded_spikes_factor_edited_before_torch_compile_is_used():
    """Under torch.compile the factor is a constant of the graph: the value when it is traced."""
    torch._dynamo.reset()
    layer = fs.Leaky(beta=0.9, graded_spikes_factor=2.0)
    with torch.no_grad():
        layer.graded_spikes_factor.fill_(2.5)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = random_input(T, B, 9)
    spk, mem = compiled(x)
    assert set(spk.unique().tolist()) == {0.0, 2.5}
    for a, e in zip((spk, mem), layer(x)):
        assert torch.equal(a, e)


# All-to-all on the reference only: its product is snnTorch's F.linear, bit for bit; the host's
# sums in its own order (tests/ops/test_all_to_all.py compares it within a tolerance).
STEP_CASES = [pytest.param(k, "elementwise", b, id=f"{k}-{b}") for k in NEURONS for b in ("reference", "host")] + [
    pytest.param(k, "all-to-all", "reference", id=f"{k}-all-to-all-reference") for k in ("RLeaky", "RSynaptic")]


@pytest.mark.parametrize("kind,recurrence,backend", STEP_CASES)
def test_stepped_calls_match_snntorch_stepping(kind, recurrence, backend):
    # snnTorch's own loop: init_*() states, then each step's returned states fed back. The fused
    # layer called the same way must run one step per call and return that step's outputs.
    kw = _params(kind, "per-neuron-learnable")
    features = FEATURES
    if recurrence == "all-to-all":  # snnTorch's all-to-all takes [B, linear_features]
        features = (7,)
        kw = dict(beta=torch.rand(7) * 0.9, threshold=torch.rand(7) + 0.5, all_to_all=True, linear_features=7)
        if kind == "RSynaptic":
            kw.update(alpha=torch.rand(7) * 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(snn, kind)(**kw)
    fused = getattr(fs, kind)(**kw, backend=backend)
    if recurrence == "all-to-all":
        with torch.no_grad():
            ref.recurrent.weight.mul_(3.0)
        fused.recurrent.load_state_dict(ref.recurrent.state_dict())
    init = {"Leaky": "init_leaky", "Synaptic": "init_synaptic", "RLeaky": "init_rleaky",
            "RSynaptic": "init_rsynaptic"}[kind]
    x = random_input(T, B, *features)
    ref_states, fused_states = getattr(ref, init)(), getattr(fused, init)()
    ref_states = ref_states if isinstance(ref_states, tuple) else (ref_states,)
    fused_states = fused_states if isinstance(fused_states, tuple) else (fused_states,)
    assert [tuple(s.shape) for s in fused_states] == [tuple(s.shape) for s in ref_states]
    fused_loss = ref_loss = 0.0
    for t in range(T):
        want = ref(x[t], *ref_states)
        got = fused(x[t], *fused_states)
        assert len(got) == len(want)
        for name, g, w in zip(["spk"] + _state_names(kind)[-len(want) + 1:], got, want):
            assert g.shape == x[t].shape, f"step {t} {name}: shape {tuple(g.shape)}"
            assert torch.equal(g, w), f"step {t}: {name} differs from snnTorch"
        # Leaky/Synaptic take back (mem) / (syn, mem); RLeaky/RSynaptic all they return, in order
        ref_states = tuple(want[1:]) if kind in ("Leaky", "Synaptic") else tuple(want)
        fused_states = tuple(got[1:]) if kind in ("Leaky", "Synaptic") else tuple(got)
        fused_loss = fused_loss + got[-1].square().sum()
        ref_loss = ref_loss + want[-1].square().sum()
    # the gradient flows through the stepped calls as through snnTorch's
    learn = [n for n in ("beta", "threshold") if isinstance(getattr(fused, n), torch.nn.Parameter)]
    if learn:
        g_fused = torch.autograd.grad(fused_loss, [getattr(fused, n) for n in learn])
        g_ref = torch.autograd.grad(ref_loss, [getattr(ref, n) for n in learn])
        for n, a, b in zip(learn, g_fused, g_ref):
            assert_close_scaled(a, b, 1e-4, n)


def test_stepped_call_with_a_state_of_x_shape_runs_one_step():
    layer = fs.Leaky(beta=0.8)
    x, mem = torch.randn(B, 5), torch.randn(B, 5)
    spk, mem_out = layer(x, mem)
    want_spk, want_mem = layer(x.unsqueeze(0), mem)
    assert torch.equal(spk, want_spk[0]) and torch.equal(mem_out, want_mem[0])


def test_two_dim_input_without_state_is_refused_not_read_as_time():
    with pytest.raises(ValueError, match=r"x has shape \(64, 128\).*\[T, B, \*features\].*unsqueeze\(0\).*init_leaky"):
        fs.Leaky(beta=0.9)(torch.rand(64, 128))
    with pytest.raises(ValueError, match=r"init_rsynaptic"):
        fs.RSynaptic(alpha=0.5, beta=0.9, V=0.3, all_to_all=False)(torch.rand(4, 6))


def test_time_first_calls_are_unchanged():
    layer = fs.Synaptic(alpha=0.6, beta=0.8)
    x = random_input(T, B, 5)
    syn0, mem0 = torch.randn(B, 5), torch.randn(B, 5)
    spk, syn, mem = layer(x, syn0, mem0)
    assert spk.shape == (T, B, 5)
    # the same steps, one stepped call each, give the sequence's outputs
    y_t, m_t = syn0, mem0
    for t in range(T):
        s_t, y_t, m_t = layer(x[t], y_t, m_t)
        assert torch.equal(s_t, spk[t]) and torch.equal(y_t, syn[t]) and torch.equal(m_t, mem[t])


def test_stepped_call_with_a_mismatched_state_names_it():
    layer = fs.Synaptic(alpha=0.6, beta=0.8)
    with pytest.raises(ValueError, match=r"mem has shape \(5,\), but syn makes this a stepped call"):
        layer(torch.randn(B, 5), torch.randn(B, 5), torch.randn(5))


ALL_TO_ALL_ERRORS = {
    "fp16-input": (lambda: fs.RLeaky(beta=0.9, linear_features=5)(torch.randn(3, 2, 5).half()),
                   ValueError, r"x has dtype torch\.float16 but the recurrent nn\.Linear's weight has torch\.float32"),
    "bf16-input": (lambda: fs.RSynaptic(alpha=0.5, beta=0.9, linear_features=5)(torch.randn(3, 2, 5).bfloat16()),
                   ValueError, r"x has dtype torch\.bfloat16 but the recurrent nn\.Linear's weight"),
    "wrong-features": (lambda: fs.RLeaky(beta=0.9, linear_features=5)(torch.randn(3, 2, 6)),
                       ValueError, r"x must have shape \[T, B, 5\].*linear_features.*got \(3, 2, 6\)"),
    "functional-wrong-features": (lambda: fs.functional.rsynaptic(torch.randn(3, 2, 6), 0.5, 0.9,
                                                                  recurrent=torch.nn.Linear(5, 5)),
                                  ValueError, r"x must have shape \[T, B, 5\]"),
    "functional-fp16": (lambda: fs.functional.rleaky(torch.randn(3, 2, 5).half(), 0.9, recurrent=torch.nn.Linear(5, 5)),
                        ValueError, r"x has dtype torch\.float16"),
    "functional-not-square": (lambda: fs.functional.rleaky(torch.randn(3, 2, 5), 0.9, recurrent=torch.nn.Linear(5, 4)),
                              ValueError, r"recurrent must map spikes of shape \(2, 5\) to the same shape: a square nn\.Linear\(N, N\).*Linear\(5, 4\)"),
    "linear_features=-3": (lambda: fs.RLeaky(beta=0.9, linear_features=-3),
                           ValueError, r"linear_features must be a positive int .*got -3"),
    "linear_features=5.0": (lambda: fs.RSynaptic(alpha=0.5, beta=0.9, linear_features=5.0),
                            ValueError, r"linear_features must be a positive int .*got 5\.0"),
    "linear_features=0": (lambda: fs.RLeaky(beta=0.9, linear_features=0),
                          ValueError, r"linear_features must be a positive int .*got 0"),
    "linear_features=True": (lambda: fs.RLeaky(beta=0.9, linear_features=True),
                             ValueError, r"linear_features must be a positive int .*got True"),
}


@pytest.mark.parametrize("case", list(ALL_TO_ALL_ERRORS))
def test_all_to_all_errors_name_the_argument(case):
    call, error, match = ALL_TO_ALL_ERRORS[case]
    with pytest.raises(error, match=match):
        call()


def test_all_to_all_in_the_layers_dtype_runs():
    layer = fs.RLeaky(beta=0.9, linear_features=5).double()
    spk, mem = layer(random_input(4, 3, 5, dtype=torch.float64))
    assert spk.dtype == mem.dtype == torch.float64 and spk.shape == (4, 3, 5)
