"""fusedsnn.interop.fuse: a whole snnTorch Sequential against snnTorch's own stepped loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import fusedsnn as fs

from ..conftest import assert_close_scaled, weighted_loss

snn = pytest.importorskip("snntorch")
from snntorch import utils  # noqa: E402


def _stepped(net, x):
    utils.reset(net)
    outs = [net(x[t]) for t in range(x.shape[0])]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(p) for p in zip(*outs))
    return torch.stack(outs)


def _nets():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(36, 20), snn.Leaky(beta=0.9, init_hidden=True),
                          nn.Linear(20, 5), snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, output=True))
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2),
                         snn.Leaky(beta=0.8, init_hidden=True, spike_grad=snn.surrogate.fast_sigmoid(slope=10)),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 6),
                         snn.RLeaky(beta=0.9, V=0.3, all_to_all=False, init_hidden=True, output=True))
    no_output = nn.Sequential(nn.Linear(36, 8), snn.Leaky(beta=0.9, init_hidden=True))
    return {"dense-synaptic-output": (dense, (1, 6, 6)), "conv-rleaky": (conv, (1, 6, 6)),
            "spikes-only": (no_output, (36,))}


@pytest.mark.parametrize("name", ["dense-synaptic-output", "conv-rleaky", "spikes-only"])
def test_fused_sequential_matches_stepped_snntorch(name):
    net, shape = _nets()[name]
    fused = fs.fuse(net)
    x = (torch.rand(7, 4, *shape) * 3).requires_grad_()
    expected = _stepped(net, x)
    actual = fused(x)
    expected_t = expected if isinstance(expected, tuple) else (expected,)
    actual_t = actual if isinstance(actual, tuple) else (actual,)
    assert len(actual_t) == len(expected_t)
    assert torch.equal(actual_t[0], expected_t[0])
    assert 0 < expected_t[0].count_nonzero() < expected_t[0].numel()
    for a, e in zip(actual_t[1:], expected_t[1:]):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    ge = torch.autograd.grad(weighted_loss(expected_t), [x, *net.parameters()], allow_unused=True)
    ga = torch.autograd.grad(weighted_loss(actual_t), [x, *fused.parameters()], allow_unused=True)
    assert len(ge) == len(ga)
    for i, (a, e) in enumerate(zip(ga, ge)):
        if e is None:
            continue
        assert_close_scaled(a, e, 1e-4, f"grad {i}")


def test_fuse_rejects_unsupported_layers_by_name():
    with pytest.raises(TypeError, match="'1'.*BatchNorm1d"):
        fs.fuse(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), snn.Leaky(beta=0.9, init_hidden=True)))
    with pytest.raises(TypeError, match="Lapicque"):
        fs.fuse(nn.Sequential(nn.Linear(4, 4), snn.Lapicque(beta=0.9, init_hidden=True)))
    with pytest.raises(ValueError, match="init_hidden=False"):
        fs.fuse(nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.9)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        fs.fuse(nn.Linear(3, 3))


def test_fused_copy_is_independent_of_the_original():
    net, _ = _nets()["spikes-only"]
    fused = fs.fuse(net)
    with torch.no_grad():
        net[0].weight.zero_()
    assert fused.stages[0].weight.abs().sum() > 0


@pytest.mark.parametrize("name", ["dense-synaptic-output", "conv-rleaky", "spikes-only"])
def test_fused_state_dict_loads_strictly_into_snntorch_and_back(name):
    net, shape = _nets()[name]
    fused = fs.fuse(net)
    assert sorted(fused.state_dict()) == sorted(net.state_dict())
    # fresh random values each way, so a load that skipped a key would leave a difference
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(torch.randn_like(p))
    net.load_state_dict(fused.state_dict(), strict=True)
    for k, v in fused.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    fused.load_state_dict(net.state_dict(), strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(fused.state_dict()[k], v), k
    x = torch.rand(5, 3, *shape) * 3
    out, want = fused(x), _stepped(net, x)
    assert torch.equal(out[0] if isinstance(out, tuple) else out, want[0] if isinstance(want, tuple) else want)


def test_fused_state_dict_saved_with_stages_keys_still_loads():
    net, _ = _nets()["dense-synaptic-output"]
    fused = fs.fuse(net)
    old = {f"stages.{k}": v + torch.rand_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    fused.load_state_dict(old, strict=True)
    assert torch.equal(fused.state_dict()["1.weight"], old["stages.1.weight"])


def test_from_snntorch_and_fuse_say_parameters_are_copied_and_are():
    # an optimizer on the original trains nothing in the twin: the docs must say so, and it is so
    for doc in (fs.from_snntorch.__doc__, fs.fuse.__doc__):
        assert "copied" in doc and "optimizer" in doc
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "**copies** the parameters" in readme and "optimizer" in readme
    neuron = snn.Leaky(beta=torch.rand(6), threshold=torch.rand(6) + 0.5, learn_beta=True, learn_threshold=True)
    fused = fs.from_snntorch(neuron)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    opt = torch.optim.SGD(neuron.parameters(), lr=1.0)
    x = torch.rand(4, 3, 6) * 2
    sum(neuron(x[t])[1].sum() for t in range(4)).backward()
    opt.step()
    assert not torch.equal(neuron.beta, before["beta"])  # the original moved
    for k, v in fused.state_dict().items():
        assert torch.equal(v, before[k]), k  # the twin did not


# ---------------------------------------------------------------------------------------------
# spike products in the fused model: off by default (snnTorch's spikes bit for bit), on by request
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def product_calls(monkeypatch):
    """The inputs' shapes of each spike-product call, with the global mode from a clean environment."""
    from fusedsnn.backends.host import all_to_all as host

    monkeypatch.delenv(fs.memory.product_rule.ENV_VAR, raising=False)
    seen = []
    real = host.spike_linear_checked

    def recording(x, *args, **kwargs):
        result = real(x, *args, **kwargs)
        seen.append((tuple(x.shape), result.out is not None))
        return result

    monkeypatch.setattr(host, "spike_linear_checked", recording)
    return seen


def _wide_nets():
    """Spike-fed Linear layers the rule takes at T * B = 7 * 130 rows: after a neuron directly,
    after MaxPool2d + neuron + Flatten, and (not spike-fed) after a ReLU or as the first layer."""
    torch.manual_seed(1)
    dense = nn.Sequential(nn.Linear(36, 300), snn.Leaky(beta=0.9, init_hidden=True),
                          nn.Linear(300, 200), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    conv = nn.Sequential(nn.Conv2d(1, 16, 3), nn.MaxPool2d(2), snn.Leaky(beta=0.8, init_hidden=True), nn.Flatten(),
                         nn.Linear(16 * 5 * 5, 150), snn.Leaky(beta=0.9, init_hidden=True), nn.ReLU(),
                         nn.Linear(150, 100), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    return {"dense": (dense, (36,), [(910, 300)]), "conv": (conv, (1, 12, 12), [(910, 400)])}


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_fuse_keeps_blas_by_default_and_snntorch_spikes(name, product_calls):
    net, shape, _ = _wide_nets()[name]
    fused = fs.fuse(net)
    x = torch.rand(7, 130, *shape) * 3
    out = fused(x)
    assert product_calls == []
    assert torch.equal(out[0], _stepped(net, x)[0]) and out[0].count_nonzero() > 0


@pytest.mark.parametrize("how", ["argument", "global"])
@pytest.mark.parametrize("name", ["dense", "conv"])
def test_fuse_spike_products_on_spike_fed_linears_equal_the_default_to_rounding(name, how, product_calls):
    net, shape, fed = _wide_nets()[name]
    net = net.double()
    base = fs.fuse(net)
    fused = fs.fuse(net, spike_products=True if how == "argument" else None)
    assert list(fused.state_dict()) == list(base.state_dict())  # unchanged, in order
    assert sorted(fused.state_dict()) == sorted(net.state_dict())
    net.load_state_dict(fused.state_dict(), strict=True)
    x = torch.rand(7, 130, *shape, dtype=torch.float64) * 3
    ref = base(x)
    g_ref = torch.autograd.grad(weighted_loss(ref), list(base.parameters()))
    with fs.memory.spike_products("on" if how == "global" else "auto"):
        out = fused(x)
        g = torch.autograd.grad(weighted_loss(out), list(fused.parameters()))
    # only the Linear whose input a neuron's spikes reach, once per forward; not the first layer
    # nor one after a ReLU
    assert product_calls == [(s, True) for s in fed]
    assert torch.equal(out[0], ref[0]) and out[0].count_nonzero() > 0
    for a, e in zip(out[1:], ref[1:]):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    for a, e in zip(g, g_ref):
        assert_close_scaled(a, e, 1e-10, "gradient")


def test_fuse_refuses_a_spike_products_that_is_not_a_bool():
    with pytest.raises(ValueError, match="spike_products must be None, True or False"):
        fs.fuse(nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.9, init_hidden=True)), spike_products="on")
