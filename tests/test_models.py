"""DSNN / CSNN: snnTorch-equivalent stepped computation, static-input expansion, neuron types."""

from __future__ import annotations

import pytest
import torch

import fusedsnn as fs
from fusedsnn.models import NEURONS

from .conftest import weighted_loss

snn = pytest.importorskip("snntorch")


def _stepped_dsnn(model: fs.DSNN, x: torch.Tensor):
    """The same network stepped the snnTorch way, with snnTorch neurons and the model's weights."""
    lifs = [snn.Leaky(beta=0.95) for _ in model.neurons]
    mems = [lif.reset_mem() for lif in lifs]
    outs = []
    for _ in range(model.num_steps):
        cur = x
        for i, (fc, lif) in enumerate(zip(model.fcs, lifs)):
            cur, mems[i] = lif(fc(cur), mems[i])
        outs.append((cur, mems[-1]))
    return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])


def test_dsnn_matches_stepped_snntorch():
    torch.manual_seed(3)
    model = fs.DSNN(num_inputs=20, num_hidden=[17, 13], num_outputs=7, num_steps=9)
    x = torch.rand(6, 20) * 3
    spk, mem = model(x)
    ref_spk, ref_mem = _stepped_dsnn(model, x)
    assert spk.shape == (9, 6, 7)
    assert torch.equal(spk, ref_spk)
    torch.testing.assert_close(mem, ref_mem, rtol=1e-5, atol=1e-5)
    assert 0 < ref_spk.count_nonzero() < ref_spk.numel()


@pytest.mark.parametrize("model_factory", [
    lambda: fs.DSNN(num_inputs=12, num_hidden=9, num_outputs=4, num_steps=5),
    lambda: fs.CSNN(input_shape=(1, 16, 16), channels=(3, 4), kernel_size=3, num_outputs=4, num_steps=5),
], ids=["dsnn", "csnn"])
def test_static_input_once_equals_computing_every_step(model_factory):
    torch.manual_seed(0)
    model = model_factory()
    shape = (3, *model.input_shape)
    x = (torch.rand(shape) * 3).requires_grad_()
    model.static_input_once = True
    once = model(x)
    g_once = torch.autograd.grad(weighted_loss(once), [x, *model.parameters()])
    model.static_input_once = False
    every = model(x)
    g_every = torch.autograd.grad(weighted_loss(every), [x, *model.parameters()])
    for a, e in zip(once, every):
        assert torch.equal(a, e)
    for a, e in zip(g_once, g_every):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_sequence_input_and_shapes():
    model = fs.CSNN(num_steps=4)  # the study's 5C12-MP2-5C64-MP2-10 on 1x28x28
    assert model.fc.in_features == 64 * 4 * 4
    seq = torch.rand(4, 2, 1, 28, 28)
    spk, mem = model(seq)  # a sequence of num_steps steps (another length is refused, see below)
    assert spk.shape == (4, 2, 10) and mem.shape == (4, 2, 10)
    with pytest.raises(ValueError, match="static batch"):
        model(torch.rand(28, 28))
    with pytest.raises(ValueError, match="trailing shape"):
        model(torch.rand(2, 3, 28, 28))


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 5, 7)], ids=["mnist_1x28x28", "odd_3x5x7"])
def test_dsnn_takes_images_static_and_over_time(image_shape):
    """Images [B, C, H, W] and [T, B, C, H, W] give exactly what their flattened pixels give."""
    pixels = image_shape[0] * image_shape[1] * image_shape[2]
    model = fs.DSNN(num_inputs=pixels, num_hidden=17, num_steps=5)
    static = torch.rand(3, *image_shape) * 2
    spk, mem = model(static)
    flat_spk, flat_mem = model(static.flatten(1))
    assert spk.shape == (5, 3, 10) and torch.equal(spk, flat_spk) and torch.equal(mem, flat_mem)
    assert spk.sum() > 0  # not a silent network, so the comparison above means something
    seq = torch.rand(5, 3, *image_shape) * 2
    spk, mem = model(seq)
    flat_spk, flat_mem = model(seq.flatten(2))
    assert spk.shape == (5, 3, 10) and torch.equal(spk, flat_spk) and torch.equal(mem, flat_mem)


def test_dsnn_rejects_images_of_the_wrong_size():
    model = fs.DSNN(num_steps=2)
    with pytest.raises(ValueError, match=r"images of shape \(3, 28, 28\).*num_inputs=784"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="trailing shape"):
        model(torch.rand(2, 28, 28))  # 3-d is a sequence [T, B, num_inputs], not [B, H, W]


@pytest.mark.parametrize("neuron", NEURONS)
def test_every_neuron_type_trains_a_step(neuron):
    torch.manual_seed(1)
    model = fs.DSNN(num_inputs=10, num_hidden=8, num_outputs=4, num_steps=6, neuron=neuron)
    x = torch.rand(5, 10) * 4
    spk, mem = model(x)
    loss = fs.population.ce_rate_loss(spk, torch.tensor([0, 1, 2, 3, 0]), 4) + mem.square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_csnn_rejects_convolutional_all_to_all():
    with pytest.raises(NotImplementedError, match="all_to_all"):
        fs.CSNN(neuron="rleaky_all_to_all")
    with pytest.raises(ValueError, match="neuron must be one of"):
        fs.DSNN(neuron="izhikevich")


@pytest.mark.parametrize("dtype", [torch.bfloat16], ids=["bf16"])
def test_autocast_mixed_precision(dtype):
    torch.manual_seed(2)
    model = fs.DSNN(num_inputs=16, num_hidden=12, num_outputs=4, num_steps=5)
    x = torch.rand(4, 16) * 3
    with torch.autocast("cpu", dtype=dtype):
        spk, mem = model(x)
    assert spk.dtype == dtype
    ref_spk, _ = model(x)
    assert (spk.float() == ref_spk).float().mean() > 0.8  # same network, rounded activations
    loss = fs.population.ce_rate_loss(spk.float(), torch.tensor([0, 1, 2, 3]), 4)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_csnn_takes_integer_event_frames():
    """tonic's ToFrame gives int16 counts [T, B, 2, 34, 34]: same outputs as the float frames."""
    torch.manual_seed(0)
    model = fs.CSNN((2, 34, 34), num_steps=3)
    frames = torch.randint(0, 4, (3, 2, 2, 34, 34), dtype=torch.int16)
    spk, mem = model(frames)
    ref_spk, ref_mem = model(frames.float())
    assert spk.shape == (3, 2, 10) and spk.dtype == torch.float32
    assert torch.equal(spk, ref_spk) and torch.equal(mem, ref_mem)
    assert torch.equal(model(frames[0])[1], model(frames[0].float())[1])  # static int input too


def test_dsnn_readout_neuron_differs_from_hidden():
    model = fs.DSNN(700, 16, 20, 5, neuron="rleaky_all_to_all", readout_neuron="leaky")
    assert type(model.neurons[0]).__name__ == "RLeaky" and model.neurons[0].all_to_all
    assert type(model.neurons[1]).__name__ == "Leaky"
    spk, _ = model(torch.rand(5, 3, 700))
    assert spk.shape == (5, 3, 20)


@pytest.mark.parametrize("make, shape", [
    (lambda: fs.CSNN((1, 12, 12), (3,), kernel_size=3, num_steps=10), (25, 2, 1, 12, 12)),
    (lambda: fs.DSNN(30, 8, 4, num_steps=7), (9, 3, 30)),
    (lambda: fs.DSNN(30, 8, 4, num_steps=7), (5, 3, 1, 5, 6)),
], ids=["csnn-25-for-10", "dsnn-9-for-7", "dsnn-images-5-for-7"])
def test_a_sequence_of_another_length_than_num_steps_is_refused(make, shape):
    model = make()
    with pytest.raises(ValueError, match=rf"x is a sequence of {shape[0]} steps, but this \w+ has num_steps="):
        model(torch.rand(shape))
    model.num_steps = shape[0]  # the documented way to run another length
    assert model(torch.rand(shape))[0].shape[0] == shape[0]


# ---------------------------------------------------------------------------------------------
# spike products (fusedsnn.memory.product_rule): off by default, on by request
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def product_calls(spike_product_calls):
    """What each spike-product call did (tests/conftest.py)."""
    return spike_product_calls


def _wide_dsnn(**kw) -> fs.DSNN:
    """Hidden layers wide enough, over enough rows (T * B = 1000), that the rule takes the spike
    product for the spike-fed 300 -> 300 layer."""
    torch.manual_seed(5)
    return fs.DSNN(num_inputs=30, num_hidden=[300, 300], num_outputs=10, num_steps=25, **kw)


def test_dsnn_keeps_blas_by_default_and_its_snntorch_spikes(product_calls):
    model = _wide_dsnn()
    assert fs.memory.product_rule.forward_max_rate(25 * 40, 300, 300) > 0  # the rule would take it
    x = torch.rand(40, 30) * 3
    spk, _ = model(x)
    assert product_calls == []  # the default mode: BLAS, so the spikes stay snnTorch's
    ref_spk, _ = _stepped_dsnn(model, x)
    assert torch.equal(spk, ref_spk) and 0 < spk.count_nonzero() < spk.numel()


@pytest.mark.parametrize("how", ["argument", "global"])
def test_dsnn_spike_products_equal_the_default_to_rounding(how, product_calls):
    # float64, so rounding in the products cannot move a spike: spikes equal, the rest to 1e-10
    base = _wide_dsnn().double()
    model = _wide_dsnn(spike_products=True if how == "argument" else None).double()
    assert sorted(model.state_dict()) == sorted(base.state_dict())
    model.load_state_dict(base.state_dict(), strict=True)
    x = torch.rand(40, 30, dtype=torch.float64) * 3
    ref = base(x)
    g_ref = torch.autograd.grad(weighted_loss(ref), list(base.parameters()))
    if how == "argument":
        out = model(x)
        g = torch.autograd.grad(weighted_loss(out), list(model.parameters()))
    else:
        with fs.memory.spike_products("on"):
            out = model(x)
            g = torch.autograd.grad(weighted_loss(out), list(model.parameters()))
    assert product_calls.count("product") == 1  # the 300 -> 300 layer; the 10-wide readout keeps BLAS
    assert torch.equal(out[0], ref[0]) and 0 < out[0].count_nonzero()
    torch.testing.assert_close(out[1], ref[1], rtol=1e-10, atol=1e-10)
    for a, e in zip(g, g_ref):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    assert set(model.state_dict()) == set(base.state_dict())  # nothing added by running


def test_csnn_readout_takes_products_when_on_and_wide_enough(product_calls):
    torch.manual_seed(6)
    # 28 -> 26 -> 13 -> 11 -> 5: 16 * 5 * 5 = 400 spike inputs into 200 outputs, over 6 * 30 rows
    base = fs.CSNN((1, 28, 28), (4, 16), kernel_size=3, num_outputs=200, num_steps=6).double()
    model = fs.CSNN((1, 28, 28), (4, 16), kernel_size=3, num_outputs=200, num_steps=6, spike_products=True).double()
    assert sorted(model.state_dict()) == sorted(base.state_dict())
    model.load_state_dict(base.state_dict(), strict=True)
    x = torch.rand(30, 1, 28, 28, dtype=torch.float64) * 2
    ref, out = base(x), model(x)
    assert product_calls and set(product_calls) <= {"product", "declined"}  # the readout asked the rule
    assert torch.equal(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1], rtol=1e-10, atol=1e-10)
    # the study's CSNN: a 10-wide readout, which the rule leaves to BLAS whatever the mode
    product_calls.clear()
    with fs.memory.spike_products("on"):
        fs.CSNN(num_steps=2)(torch.rand(2, 1, 28, 28))
    assert product_calls == []


def test_models_refuse_a_spike_products_that_is_not_a_bool():
    with pytest.raises(ValueError, match="spike_products must be None, True or False"):
        fs.DSNN(spike_products="yes")
    with pytest.raises(ValueError, match="spike_products must be None, True or False"):
        fs.CSNN(spike_products=1)


def test_graded_spikes_keep_blas_even_with_products_on(product_calls):
    kw = dict(neuron_kwargs={"graded_spikes_factor": 0.5})
    base, model = _wide_dsnn(**kw), _wide_dsnn(spike_products=True, **kw)
    model.load_state_dict(base.state_dict())
    x = torch.rand(40, 30) * 3
    out, ref = model(x), base(x)
    assert product_calls == ["declined"]  # checked and counted, then left to BLAS: 0.5 is not a binary spike
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
