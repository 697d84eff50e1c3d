"""Functional API: argument checking, edge cases, gradcheck, and the torch.library registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fusedsnn as fs
import fusedsnn.functional as F
from fusedsnn.ops import lif_forward

from .conftest import NEURONS, random_input


def _call(kind, x, backend="reference", **kw):
    if kind == "Leaky":
        return F.leaky(x, kw.pop("beta", 0.9), kw.pop("threshold", 1.0), backend=backend, **kw)
    if kind == "Synaptic":
        return F.synaptic(x, kw.pop("alpha", 0.8), kw.pop("beta", 0.9), kw.pop("threshold", 1.0), backend=backend, **kw)
    if kind == "RLeaky":
        return F.rleaky(x, kw.pop("beta", 0.9), kw.pop("V", 0.5), kw.pop("threshold", 1.0), backend=backend, **kw)
    return F.rsynaptic(x, kw.pop("alpha", 0.8), kw.pop("beta", 0.9), kw.pop("V", 0.5), kw.pop("threshold", 1.0),
                       backend=backend, **kw)


# ---------------------------------------------------------------------------------------------
# bad input: a clear error that names the argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "make_x, error, match",
    [
        (lambda: torch.randn(5), ValueError, "at least 2 dims"),
        (lambda: torch.randint(0, 3, (4, 2, 3)), TypeError, "floating-point"),
        (lambda: torch.ones(4, 2, 3, dtype=torch.bool), TypeError, "floating-point"),
        (lambda: [[1.0]], TypeError, "torch.Tensor"),
    ],
    ids=["1d", "int", "bool", "list"],
)
def test_bad_input_tensor(make_x, error, match):
    with pytest.raises(error, match=match):
        F.leaky(make_x(), 0.9)


@pytest.mark.parametrize("kind", NEURONS)
def test_bad_state_shape_dtype(kind):
    x = torch.randn(4, 2, 3)
    name = "mem"
    with pytest.raises(ValueError, match=r"mem must have shape \(2, 3\)"):
        _call(kind, x, **{name: torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="mem must have dtype"):
        _call(kind, x, **{name: torch.zeros(2, 3, dtype=torch.float64)})
    with pytest.raises(TypeError, match="mem must be a torch.Tensor"):
        _call(kind, x, **{name: 0.0})


def test_bad_state_device():
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="mem is on meta"):
        F.leaky(x, 0.9, mem=torch.zeros(2, 3, device="meta"))


@pytest.mark.parametrize("param", ["beta", "threshold"])
def test_param_that_does_not_broadcast(param):
    x = torch.randn(4, 2, 3, 5)
    with pytest.raises(ValueError, match=f"{param} of shape \\(4,\\) does not broadcast"):
        F.leaky(x, **{"beta": 0.9, param: torch.rand(4)})
    with pytest.raises(TypeError, match=param):
        F.leaky(x, **{"beta": 0.9, param: "high"})


def test_alpha_and_V_checked():
    x = torch.randn(4, 2, 5)
    with pytest.raises(ValueError, match="alpha of shape"):
        F.synaptic(x, torch.rand(3), 0.9)
    with pytest.raises(ValueError, match="V of shape"):
        F.rleaky(x, 0.9, torch.rand(2, 5, 1))


def test_unknown_reset_and_surrogate_and_backend():
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="reset_mechanism must be one of"):
        F.leaky(x, 0.9, reset_mechanism="soft")
    with pytest.raises(ValueError, match="reset_mechanism must be one of"):
        fs.Leaky(beta=0.9, reset_mechanism="soft")
    with pytest.raises(ValueError, match="cannot be fused"):
        F.leaky(x, 0.9, spike_grad=lambda h: (h > 0).float())
    with pytest.raises(ValueError, match="surrogate name must be one of"):
        fs.surrogate.Surrogate("tanh")
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        F.leaky(x, 0.9, backend="cuda-graphs")


def test_all_to_all_recurrent_must_keep_shape():
    x = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="recurrent must map spikes of shape"):
        F.rleaky(x, 0.9, recurrent=torch.nn.Linear(4, 5))


# ---------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NEURONS)
def test_zero_time_steps_give_empty_outputs(kind):
    x = torch.randn(0, 3, 4, requires_grad=True)
    outs = _call(kind, x)
    assert all(o.shape == (0, 3, 4) for o in outs)
    (g,) = torch.autograd.grad(sum(o.sum() for o in outs), x, allow_unused=True)
    assert g is None or g.shape == x.shape


@pytest.mark.parametrize("kind", NEURONS)
def test_nan_in_gives_nan_out(kind):
    x = random_input(5, 2, 4)
    x[2, 1, 3] = float("nan")
    outs = _call(kind, x)
    mem = outs[-1]
    assert torch.isnan(mem[2:, 1, 3]).all()
    assert not torch.isnan(mem[:, 0]).any()  # other neurons untouched


def test_two_dim_input_means_one_neuron_per_sample():
    x = random_input(6, 4)
    spk, mem = F.leaky(x, 0.9)
    spk3, mem3 = F.leaky(x.unsqueeze(-1), 0.9)
    assert torch.equal(spk, spk3.squeeze(-1)) and torch.equal(mem, mem3.squeeze(-1))


def test_state_chunks_continue_the_sequence():
    """Running T steps at once equals running two chunks with the state carried over."""
    x = random_input(10, 3, 7)
    spk, syn, mem = F.synaptic(x, 0.7, 0.9)
    s1, y1, m1 = F.synaptic(x[:4], 0.7, 0.9)
    s2, y2, m2 = F.synaptic(x[4:], 0.7, 0.9, syn=y1[-1], mem=m1[-1])
    assert torch.equal(spk, torch.cat([s1, s2])) and torch.equal(mem, torch.cat([m1, m2]))


def test_reduced_precision_reference_keeps_float32_state():
    x = random_input(8, 3, 6)
    spk32, mem32 = F.leaky(x, 0.9)
    spk16, mem16 = F.leaky(x.to(torch.bfloat16), 0.9)
    assert spk16.dtype == mem16.dtype == torch.bfloat16
    # Same float32 arithmetic on the bf16-rounded inputs: spikes mostly agree with float32.
    assert (spk16.float() == spk32).float().mean() > 0.9


# ---------------------------------------------------------------------------------------------
# gradients: float64 gradcheck of the hand-written backward
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("kind", NEURONS)
def test_gradcheck_reference_float64(kind, reset, reset_delay):
    # Spikes are piecewise constant, so finite differences see no gradient through them. Where
    # spikes feed the membrane (recurrence, immediate reset) the surrogate is disabled so the
    # true derivative is what the backward computes; elsewhere the membrane never sees the
    # surrogate. The surrogate path itself is checked against snnTorch's autograd in
    # test_layers.py. Inputs keep membranes away from threshold so no difference crosses it.
    T, B, N = 4, 2, 3
    x = (torch.rand(T, B, N, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    beta = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    thr = torch.full((N,), 0.73, dtype=torch.float64).add(torch.rand(N, dtype=torch.float64) * 0.1).requires_grad_()
    alpha = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    V = (torch.rand(N, dtype=torch.float64) * 0.2).requires_grad_()
    mem0 = (torch.rand(B, N, dtype=torch.float64) * 0.3).requires_grad_()

    def fn(x, beta, thr, alpha, V, mem0):
        kw = dict(mem=mem0, reset_mechanism=reset, reset_delay=reset_delay,
                  backend="reference")
        if kind.startswith("R") or not reset_delay:
            kw["surrogate_disable"] = True
        else:
            kw["spike_grad"] = fs.surrogate.straight_through_estimator()
        if kind == "Leaky":
            return F.leaky(x, beta, thr, **kw)
        if kind == "Synaptic":
            return F.synaptic(x, alpha, beta, thr, **kw)
        if kind == "RLeaky":
            return F.rleaky(x, beta, V, thr, **kw)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.rsynaptic(x, alpha, beta, V, thr, **kw)

    # Membrane outputs only: spikes have zero true derivative (the surrogate is a surrogate).
    def mems(*args):
        return fn(*args)[1:]

    assert torch.autograd.gradcheck(mems, (x, beta, thr, alpha, V, mem0), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# torch.library registration
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("synaptic, recurrence", [(False, 0), (True, 1)], ids=["leaky", "rsynaptic"])
def test_opcheck(synaptic, recurrence):
    T, B, N = 4, 3, 5
    x = torch.randn(T, B, N, requires_grad=True)
    e = torch.empty(0)
    state = lambda: torch.randn(B, N, requires_grad=True)  # noqa: E731
    args = (x, state(), state() if synaptic else e, state() if recurrence else e, e,
            torch.rand(N, requires_grad=True), (torch.rand(N) + 0.5).requires_grad_(),
            torch.rand(N, requires_grad=True) if synaptic else e,
            torch.randn(N, requires_grad=True) if recurrence else e,
            synaptic, recurrence, 1, False, 0, 2.0, 0.0, 1.0, True, "reference")
    torch.library.opcheck(lif_forward, args)


def test_torch_compile_fullgraph_no_graph_breaks():
    torch._dynamo.reset()
    model = torch.nn.ModuleDict({"fc": torch.nn.Linear(6, 5), "lif": fs.Leaky(beta=0.9, learn_beta=True)})

    def forward(x):
        cur = model["fc"](x)
        spk, mem = model["lif"](cur)
        return spk.sum(0), mem

    x = random_input(7, 3, 6)
    compiled = torch.compile(forward, fullgraph=True, backend="aot_eager")
    eager_out = forward(x)
    compiled_out = compiled(x)
    for a, e in zip(compiled_out, eager_out):
        assert torch.equal(a, e)
    loss = compiled_out[1].square().sum()
    loss.backward()
    assert model["lif"].beta.grad is not None and model["fc"].weight.grad.abs().sum() > 0


def test_available_backends_listed():
    assert {"reference", "host"} <= set(fs.available_backends())


# ---------------------------------------------------------------------------------------------
# Parameters as snnTorch takes them, and message wording (issue 10, items 2 and 7)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "beta",
    [np.float32(0.9), np.float64(0.9), 1, np.int64(1), np.full(4, 0.9, dtype=np.float32),
     np.full((1, 4), 0.9, dtype=np.float32), torch.full((1, 4), 0.9), torch.ones(4, dtype=torch.int32)],
    ids=["np-float32", "np-float64", "int", "np-int64", "np-array", "np-(1,F)", "tensor-(1,F)", "int-tensor"],
)
def test_functional_takes_numpy_int_and_broadcast_params(beta):
    """Each form means what it means to snnTorch: the same outputs as the plain float form."""
    snn = pytest.importorskip("snntorch")
    x = random_input(6, 3, 4)
    spk, mem = F.leaky(x, beta, np.float32(1.0), backend="reference")
    reference = snn.Leaky(beta=beta, threshold=np.float32(1.0))
    expected_mem = []
    m = None
    for t in range(x.shape[0]):
        _, m = reference(x[t], m) if m is not None else reference(x[t])
        expected_mem.append(m)
    assert torch.equal(mem, torch.stack(expected_mem))
    assert spk.any()


def test_param_of_wrong_kind_is_named():
    x = torch.randn(4, 2, 5)
    with pytest.raises(TypeError, match="beta must hold real numbers"):
        F.leaky(x, torch.ones(5, dtype=torch.bool))
    with pytest.raises(TypeError, match="threshold must be a number"):
        F.leaky(x, 0.9, True)
    with pytest.raises(ValueError, match="one value per sample"):
        F.leaky(x, torch.rand(2, 5))


@pytest.mark.parametrize(
    "x_dtype, mem_dtype, message",
    [
        (torch.float32, torch.float64, "mem must have dtype torch.float32 (that of x), got torch.float64"),
        (torch.bfloat16, torch.float16,
         "mem must have dtype torch.bfloat16 (that of x) or torch.float32 (the state precision), got torch.float16"),
    ],
    ids=["fp32", "bf16"],
)
def test_state_dtype_message_says_each_choice_once(x_dtype, mem_dtype, message):
    x = torch.randn(4, 2, 3).to(x_dtype)
    with pytest.raises(ValueError) as err:
        F.leaky(x, 0.9, mem=torch.zeros(2, 3, dtype=mem_dtype))
    assert str(err.value) == message


def test_make_spec_caches_default_surrogate_specs():
    """With the default surrogate a layer's keywords map to one cached spec object (the eager
    path does not rebuild it per call); it equals a freshly validated spec, other keywords give
    other specs, and a custom surrogate is never served from the cache."""
    kw = dict(synaptic=False, recurrence=0, reset_mechanism="zero", reset_delay=False, spike_grad=None,
              surrogate_disable=False, graded_spikes_factor=1.0, neuron="Leaky")
    first, second = F.make_spec(**kw), F.make_spec(**kw)
    assert first is second and first == F._make_spec(**kw)
    assert F.make_spec(**{**kw, "reset_mechanism": "subtract"}) != first
    assert F.make_spec(**{**kw, "graded_spikes_factor": 2.0}).graded_spikes_factor == 2.0
    fast = F.make_spec(**{**kw, "spike_grad": F.surrogate_mod.fast_sigmoid(slope=5)})
    assert fast.surrogate.name == "fast_sigmoid"
    with pytest.raises(ValueError, match="reset_mechanism"):
        F.make_spec(**{**kw, "reset_mechanism": "bogus"})
    with pytest.warns(UserWarning, match="RSynaptic"):
        F.make_spec(**{**kw, "synaptic": True, "recurrence": 1, "neuron": "RSynaptic"})
