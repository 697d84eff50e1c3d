"""fusedsnn.memory: spikes saved as bits, neuron layers that recompute, memory_lean on models.

The lean paths change what is kept for the backward, never the arithmetic, so outputs and
gradients are compared bit for bit with the default paths (torch.equal); the one documented
exception, a learnable neuron parameter summed chunk by chunk in recompute mode, is compared
bitwise with one chunk and to rounding with several. The time-chunked whole-network mode
(``time_chunk``) changes the products' row blocking and the weight gradients' summation order,
so it is compared in float64 to rounding (spikes exactly).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusedsnn as fs
from fusedsnn import memory
from fusedsnn.backends.host import all_to_all as lif_all_to_all_host
from fusedsnn.bench import plots as bench_plots
from fusedsnn.memory import bits, spike_layers
from fusedsnn.ops import recompute
from fusedsnn.bench import memory as bench_memory

from ..conftest import NEURONS, RESETS, ordered_spike_linear, random_input

FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _spikes(*shape, value=1.0, rate=0.3, dtype=torch.float32):
    return torch.where(torch.rand(shape) < rate, torch.tensor(value, dtype=dtype), torch.tensor(0.0, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("value", [1.0, 0.5, -2.0], ids=["binary", "graded", "negative"])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 11), (9, 2, 3, 4)], ids=lambda s: "x".join(map(str, s)))
def test_pack_roundtrip_is_bitwise(dtype, value, shape):
    x = _spikes(*shape, value=value, dtype=dtype)
    packed = memory.pack_spikes(x)
    assert packed is not None
    assert packed.bits.dtype == torch.uint8 and packed.bits.numel() == -(-x.numel() // 8)
    out = packed.unpack()
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out.view(-1).view(torch.uint8), x.reshape(-1).view(torch.uint8))  # bits, incl. +0.0


@pytest.mark.parametrize("n", [1, 8, 13, 1001])
def test_pack_torch_path_matches_numpy_path(n):
    # CUDA tensors pack with torch ops; the CPU uses numpy. Both give the same bytes.
    mask = torch.rand(n) < 0.4
    assert torch.equal(bits._pack_bool(mask, use_numpy=False), bits._pack_bool(mask, use_numpy=True))


@pytest.mark.parametrize("fill", [0.0, 1.0, 0.25], ids=["all-zero", "all-one", "all-graded"])
def test_pack_constant_tensors(fill):
    x = torch.full((5, 13), fill)
    assert torch.equal(memory.pack_spikes(x).unpack(), x)


def test_pack_expanded_static_input():
    base = _spikes(1, 4, 9)
    x = base.expand(6, 4, 9)  # stride 0 in time
    assert torch.equal(memory.pack_spikes(x).unpack(), x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.rand(4, 9) + 0.1,                                   # continuous
        lambda: torch.tensor([0.0, 1.0, 2.0, 0.0]),                       # three values
        lambda: torch.tensor([-1.0, 0.0, 1.0, 1.0]),                      # both signs
        lambda: torch.tensor([0.0, 1.0, -0.0, 1.0]),                      # -0.0 beside 1.0
        lambda: torch.tensor([0.0, float("nan"), 1.0]),                   # NaN
        lambda: torch.tensor([0, 1, 1, 0]),                               # integers
        lambda: torch.zeros(0),                                           # empty
    ],
    ids=["continuous", "three-values", "both-signs", "negative-zero", "nan", "int", "empty"],
)
def test_pack_refuses_what_is_not_spikes(make):
    assert memory.pack_spikes(make()) is None


# ---------------------------------------------------------------------------------------------
# SpikeLinear / SpikeConv2d
# ---------------------------------------------------------------------------------------------

def _grads_of(fn, inputs, grad_out_seed=0):
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_out_seed))
    grads = torch.autograd.grad(out, [t for t in inputs if t is not None and t.requires_grad], g)
    return out, grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("shape", [(13, 7), (5, 3, 33), (4, 2, 3, 17)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["spikes", "graded", "floats"])
def test_spike_linear_matches_linear_bitwise(kind, shape, bias):
    x = {"spikes": _spikes(*shape), "graded": _spikes(*shape, value=0.75),
         "floats": torch.randn(shape)}[kind].requires_grad_()
    weight = torch.randn(11, shape[-1], requires_grad=True)
    b = torch.randn(11, requires_grad=True) if bias else None
    ctx = memory.spike_linear(x, weight, b).grad_fn
    if kind == "floats":
        assert ctx.packed is None and ctx.saved_tensors[1] is x  # fell back to the float input
    else:
        assert ctx.packed is not None and ctx.saved_tensors[1] is None  # kept only the bits
    out_ref, grads_ref = _grads_of(F.linear, (x, weight, b))
    out, grads = _grads_of(memory.spike_linear, (x, weight, b))
    assert torch.equal(out, out_ref)
    for got, want in zip(grads, grads_ref):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "conv",
    [dict(), dict(stride=2), dict(padding=1), dict(padding=(2, 1), dilation=2), dict(groups=2, bias=False)],
    ids=["plain", "stride", "pad", "pad-dilation", "groups-nobias"],
)
@pytest.mark.parametrize("kind", ["spikes", "floats"])
def test_spike_conv2d_matches_conv2d_bitwise(kind, conv):
    conv = dict(conv)
    bias = conv.pop("bias", True)
    x = (_spikes(3, 4, 9, 11) if kind == "spikes" else torch.randn(3, 4, 9, 11)).requires_grad_()
    ref_layer = nn.Conv2d(4, 6, 3, bias=bias, **conv)
    lean_layer = copy.deepcopy(ref_layer)
    memory.memory_lean(lean_layer)
    assert type(lean_layer) is memory.SpikeConv2d
    out_ref, grads_ref = _grads_of(lambda t: ref_layer(t), (x,))
    out, grads = _grads_of(lambda t: lean_layer(t), (x,))
    assert torch.equal(out, out_ref) and torch.equal(grads[0], grads_ref[0])
    for p_ref, p in zip(torch.autograd.grad(ref_layer(x).sum(), list(ref_layer.parameters())),
                        torch.autograd.grad(lean_layer(x).sum(), list(lean_layer.parameters()))):
        assert torch.equal(p, p_ref)
    assert (lean_layer(x).grad_fn.packed is not None) == (kind == "spikes")


def test_spike_linear_under_no_grad_and_frozen_weight_is_plain():
    layer = memory.memory_lean(nn.Linear(5, 3))
    x = _spikes(4, 5)
    with torch.no_grad():
        assert layer(x).grad_fn is None
    layer.weight.requires_grad_(False)
    out = layer(x)  # only the bias needs a gradient: nothing to save, the plain F.linear runs
    assert not hasattr(out.grad_fn, "packed")


needs_host_all_to_all = pytest.mark.skipif(not lif_all_to_all_host.available(),
                                           reason="the host library with the spike product did not build")


@needs_host_all_to_all
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_spike_product_linear(bias, dtype, monkeypatch):
    # 3204 rows of 171 inputs into 129 outputs: sizes where the rule takes both products (the
    # weight gradient from masks in float32 only)
    x = _spikes(6, 534, 171, rate=0.05, dtype=dtype).requires_grad_()
    weight = torch.randn(129, 171, dtype=dtype, requires_grad=True)
    b = torch.randn(129, dtype=dtype, requires_grad=True) if bias else None
    ran = []
    real = lif_all_to_all_host.spike_linear_checked
    monkeypatch.setattr(lif_all_to_all_host, "spike_linear_checked", lambda *a, **k: ran.append(real(*a, **k)) or ran[-1])
    out, grads = _grads_of(lambda *t: memory.spike_linear(*t, spike_product=True), (x, weight, b))
    out_ref, grads_ref = _grads_of(F.linear, (x, weight, b))
    assert [r.out is not None for r in ran] == [True]
    # the spike product ran, and the weight gradient from masks (float64: BLAS's)
    assert out.grad_fn.value == (1.0 if dtype == torch.float32 else None)
    with torch.no_grad():
        assert torch.equal(out, ordered_spike_linear(x, weight, b))
        assert torch.equal(memory.spike_linear(x, weight, b, spike_product=True), out)  # no graph: same bits
    assert torch.equal(grads[0], grads_ref[0])  # the input gradient is the dense formula's
    if bias:
        assert torch.equal(grads[2], grads_ref[2])
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads_ref[1], **tol)
    torch.testing.assert_close(out, out_ref, **tol)


@needs_host_all_to_all
def test_spike_product_falls_back_to_linear_bitwise():
    # Inputs that are not binary spikes (floats, graded spikes), or spikes denser than the rule
    # allows, and layers narrower than SPIKE_PRODUCT_MIN_OUT run F.linear itself.
    weight = torch.randn(64, 300, requires_grad=True)
    for x in (torch.randn(900, 300), _spikes(900, 300, rate=0.97), _spikes(900, 300, value=0.75, rate=0.1)):
        out = memory.spike_linear(x, weight, None, spike_product=True)
        assert torch.equal(out, F.linear(x, weight)) and out.grad_fn.value is None
    narrow = torch.randn(10, 300, requires_grad=True)
    x = _spikes(900, 300)
    assert torch.equal(memory.spike_linear(x, narrow, None, spike_product=True), F.linear(x, narrow))


@needs_host_all_to_all
def test_spike_product_follows_weight_updates():
    layer = memory.memory_lean(nn.Linear(140, 80), spike_products=True)
    x = _spikes(900, 140, rate=0.1)
    before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(-2)
        layer.bias.add_(1)
    after = layer(x)
    assert torch.equal(after, ordered_spike_linear(x, layer.weight.detach(), layer.bias.detach()))
    assert not torch.equal(before, after)


@pytest.mark.filterwarnings("ignore:memory_lean\\(time_chunk=:UserWarning")  # tiny chunks on purpose
def test_memory_lean_spike_products_setting():
    def linears(model):
        return [m.spike_product for m in model.modules() if isinstance(m, memory.SpikeLinear)]

    # None: the global mode, whose default takes the products inside time chunks only
    assert linears(memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=6))) == [None, None]
    chunked = memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=6), time_chunk=3)
    assert linears(chunked) == [None, None]
    assert linears(memory.memory_lean(chunked, time_chunk=3)) == [None, None]  # twice: unchanged
    assert linears(memory.memory_lean(chunked, time_chunk=3, spike_products=False)) == [False, False]
    assert linears(memory.memory_lean(chunked, time_chunk=3)) == [False, False]  # None keeps a setting
    assert linears(memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=6), spike_products=True)) == [True, True]
    # a model's own override survives the conversion
    assert linears(memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=6, spike_products=True))) == [None, True]
    with pytest.raises(ValueError, match="spike_products must be None, True or False"):
        memory.memory_lean(nn.Sequential(), spike_products="yes")


# ---------------------------------------------------------------------------------------------
# neuron layers: saved_state="recompute"
# ---------------------------------------------------------------------------------------------

_STATE_NAMES = {"Leaky": ["mem"], "Synaptic": ["syn", "mem"], "RLeaky": ["spk", "mem"], "RSynaptic": ["spk", "syn", "mem"]}


def _make_layer(kind: str, reset: str, reset_delay: bool, learn: bool, backend: str, gsf: float = 1.0):
    common = dict(reset_mechanism=reset, reset_delay=reset_delay, backend=backend, graded_spikes_factor=gsf,
                  learn_beta=learn, learn_threshold=learn, threshold=torch.rand(12) * 0.5 + 0.5,
                  beta=torch.rand(12) * 0.5 + 0.4)
    if kind == "Leaky":
        return fs.Leaky(**common)
    if kind == "Synaptic":
        return fs.Synaptic(alpha=torch.rand(12) * 0.5 + 0.4, learn_alpha=learn, **common)
    if kind == "RLeaky":
        return fs.RLeaky(V=torch.rand(12), all_to_all=False, learn_recurrent=learn, **common)
    return fs.RSynaptic(alpha=torch.rand(12) * 0.5 + 0.4, V=torch.rand(12), all_to_all=False, learn_alpha=learn,
                        learn_recurrent=learn, **common)


def _run_layer(layer, x, states, grads_out, use_mem_grad: bool):
    x = x.detach().requires_grad_()
    states = {k: v.detach().requires_grad_() for k, v in states.items()}
    outs = layer(x, **states)
    pairs = [(o, g) for o, g in zip(outs, grads_out)]
    if not use_mem_grad:
        pairs = pairs[:1]  # only the spikes feed the loss: the membrane's gradient is None
    params = [p for p in layer.parameters() if p.requires_grad]
    leaves = [x, *states.values(), *params]
    grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g for _, g in pairs])
    return outs, grads[: 1 + len(states)], grads[1 + len(states):]


@pytest.mark.parametrize("backend", ["host", "reference"])
@pytest.mark.parametrize("learn", [False, True], ids=["fixed", "learnable"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_recompute_matches_default(kind, reset, reset_delay, learn, backend, monkeypatch):
    monkeypatch.setattr(recompute, "RECOMPUTE_MIN_STEPS", 3)  # several chunks of odd length at T=37
    T, B = 37, 3
    x = random_input(T, B, 12)
    states = {name: torch.randn(B, 12) * 0.5 for name in _STATE_NAMES[kind]}
    with pytest.warns(UserWarning) if kind == "RSynaptic" and not reset_delay else _nothing():
        default = _make_layer(kind, reset, reset_delay, learn, backend)
    lean = copy.deepcopy(default)
    lean.saved_state = "recompute"
    grads_out = [torch.randn(T, B, 12) for _ in range(1 + len(states))]
    for use_mem_grad in (True, False):
        ref_outs, ref_grads, ref_pgrads = _run_layer(default, x, states, grads_out, use_mem_grad)
        outs, grads, pgrads = _run_layer(lean, x, states, grads_out, use_mem_grad)
        for got, want in zip(outs, ref_outs):
            assert torch.equal(got, want)
        for got, want in zip(grads, ref_grads):  # input and initial states: bitwise
            assert torch.equal(got, want)
        for got, want in zip(pgrads, ref_pgrads):  # summed per chunk: to rounding
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # With one chunk nothing is summed in another order: parameters bitwise too.
    monkeypatch.setattr(recompute, "RECOMPUTE_CHUNKS", 1)
    _, grads, pgrads = _run_layer(lean, x, states, grads_out, True)
    _, ref_grads, ref_pgrads = _run_layer(default, x, states, grads_out, True)
    for got, want in zip([*grads, *pgrads], [*ref_grads, *ref_pgrads]):
        assert torch.equal(got, want)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("kind", NEURONS)
def test_recompute_matches_default_on_triton_interpreter(interpret, kind, monkeypatch):
    monkeypatch.setattr(recompute, "RECOMPUTE_MIN_STEPS", 2)
    T, B = 9, 2
    x = random_input(T, B, 12)
    states = {name: torch.randn(B, 12) * 0.5 for name in _STATE_NAMES[kind]}
    default = _make_layer(kind, "subtract", True, False, "triton")
    lean = copy.deepcopy(default)
    lean.saved_state = "recompute"
    grads_out = [torch.randn(T, B, 12) for _ in range(1 + len(states))]
    ref_outs, ref_grads, _ = _run_layer(default, x, states, grads_out, True)
    outs, grads, _ = _run_layer(lean, x, states, grads_out, True)
    for got, want in zip([*outs, *grads], [*ref_outs, *ref_grads]):
        assert torch.equal(got, want)


def test_recompute_keeps_a_static_input_as_one_slice():
    base = torch.randn(1, 4, 12) * 2
    x = base.expand(50, 4, 12).requires_grad_(False)
    weight = torch.randn(12, requires_grad=True)  # beta that needs a gradient: a graph is built
    layer_kw = dict(beta=weight, threshold=1.0)
    spk, mem = memory.lif("recompute", x, fs.functional.make_spec(
        synaptic=False, recurrence=0, reset_mechanism="subtract", reset_delay=True, spike_grad=None,
        surrogate_disable=False, graded_spikes_factor=1.0, neuron="Leaky"), **layer_kw)
    saved_x = spk.grad_fn.saved_tensors[0]
    assert saved_x.stride(0) == 0 and saved_x.untyped_storage().nbytes() == base.numel() * 4
    ref_spk, ref_mem = fs.functional.leaky(x, weight, 1.0)
    assert torch.equal(spk, ref_spk) and torch.equal(mem, ref_mem)


def test_saved_state_is_validated():
    layer = fs.Leaky(beta=0.9)
    assert layer.saved_state == "default"
    with pytest.raises(ValueError, match="saved_state must be one of"):
        layer.saved_state = "bits"
    with pytest.raises(ValueError, match="saved_state must be one of"):
        memory.memory_lean(nn.Sequential(), saved_state="bits")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        memory.memory_lean("DSNN")


def test_all_to_all_layer_keeps_default_saving():
    layer = fs.RLeaky(beta=0.9, linear_features=6)
    memory.memory_lean(layer)
    assert type(layer.recurrent) is memory.SpikeLinear
    x = random_input(5, 2, 6).requires_grad_()
    spk, mem = layer(x)
    (spk.sum() + mem.sum()).backward()
    ref = copy.deepcopy(layer)
    ref.saved_state = "default"
    ref.recurrent.__class__ = nn.Linear
    x2 = x.detach().requires_grad_()
    spk2, mem2 = ref(x2)
    (spk2.sum() + mem2.sum()).backward()
    assert torch.equal(x.grad, x2.grad) and torch.equal(layer.recurrent.weight.grad, ref.recurrent.weight.grad)


# ---------------------------------------------------------------------------------------------
# memory_lean on whole models
# ---------------------------------------------------------------------------------------------

def _model_grads(model, x, y):
    for p in model.parameters():
        p.grad = None
    spk, mem = model(x)
    loss = fs.population.ce_rate_loss(spk, y, 10, 1) + (mem ** 2).mean()
    loss.backward()
    return spk, mem, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: fs.DSNN(30, [24, 17], 10, num_steps=21), (5, 30)),
        (lambda: fs.DSNN(30, 24, 10, num_steps=9, neuron="synaptic",
                         neuron_kwargs=dict(graded_spikes_factor=0.5)), (9, 4, 30)),
        (lambda: fs.DSNN(30, 24, 10, num_steps=9, neuron="rleaky", static_input_once=False), (3, 30)),
        (lambda: fs.CSNN((1, 14, 14), (4, 6), kernel_size=3, num_steps=6, neuron="rsynaptic"), (2, 1, 14, 14)),
    ],
    ids=["dsnn-static", "dsnn-graded-sequence", "dsnn-expanded", "csnn"],
)
@pytest.mark.parametrize("saved_state", ["auto", "recompute"])
def test_memory_lean_model_gradients_bitwise(make, shape, saved_state, monkeypatch):
    monkeypatch.setattr(recompute, "RECOMPUTE_MIN_STEPS", 2)
    model = make()
    lean = memory.memory_lean(copy.deepcopy(model), saved_state=saved_state)
    x = torch.rand(shape) * 2
    y = torch.randint(0, 10, (shape[-2] if len(shape) == 3 and "CSNN" not in type(model).__name__ else shape[0],))
    if isinstance(model, fs.DSNN) and len(shape) == 3:
        y = torch.randint(0, 10, (shape[1],))
    ref = _model_grads(model, x, y)
    got = _model_grads(lean, x, y)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    neuron_params = {name for name, _ in model.named_parameters() if "neuron" in name}
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:
        if name in neuron_params:  # a learnable V, summed chunk by chunk: to rounding
            torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-5, atol=1e-6)
        else:  # every synaptic weight and bias: bit for bit
            assert torch.equal(got[2][name], ref[2][name]), name


@pytest.mark.parametrize("saved_state, recomputed", [("auto", [True]), ("recompute", [True, False, False]),
                                                     ("default", [])])
def test_auto_recomputes_only_a_static_inputs_layer(saved_state, recomputed, monkeypatch):
    # DSNN's first layer sees the image's current expanded over time (stride 0): recomputing it
    # keeps one [B, F] slice instead of a [T, B, F] membrane. The others see a fresh current per
    # step, as large as the membrane, so "auto" keeps the default's saves there.
    monkeypatch.setattr(recompute, "RECOMPUTE_MIN_STEPS", 1)  # 8 chunks of one step: enough for "auto"
    model = memory.memory_lean(fs.DSNN(30, [24, 17], 10, num_steps=8), saved_state=saved_state)
    calls = []  # per recomputing layer: whether its input is static
    original = recompute._RecomputeLIF.apply
    monkeypatch.setattr(recompute._RecomputeLIF, "apply", lambda run, layout, x, *rest: (
        calls.append(x.stride(0) == 0), original(run, layout, x, *rest))[1])
    model(torch.rand(3, 30) * 2)[0].sum().backward()
    assert calls == recomputed


def test_memory_lean_packs_the_spikes_the_models_pass_on():
    model = memory.memory_lean(fs.DSNN(30, [24, 17], 10, num_steps=8, neuron_kwargs=dict(graded_spikes_factor=0.25)))
    packed = []
    original = spike_layers.pack_spikes

    def spy(x):
        result = original(x)
        packed.append(result is not None)
        return result

    spike_layers.pack_spikes = spy
    try:
        model(torch.rand(3, 30)).__getitem__(0).sum().backward()
    finally:
        spike_layers.pack_spikes = original
    # fc0 sees images (kept as floats), fc1 and fc2 see graded spikes (packed).
    assert packed == [False, True, True]


def test_memory_lean_on_fused_sequential():
    snn = pytest.importorskip("snntorch")
    net = nn.Sequential(nn.Linear(12, 16), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(16, 5),
                        snn.Leaky(beta=0.8, init_hidden=True, output=True))
    fused = fs.fuse(net)
    lean = memory.memory_lean(copy.deepcopy(fused))
    assert [type(m) for m in lean.stages] == [memory.SpikeLinear, fs.Leaky, memory.SpikeLinear, fs.Leaky]
    x = random_input(11, 3, 12)
    outs = []
    for model in (fused, lean):
        spk, mem = model(x)
        (spk.sum() + mem.sum()).backward()
        outs.append((spk, mem, [p.grad for p in model.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for a, b in zip(outs[0][2], outs[1][2]):
        assert torch.equal(a, b)


def test_memory_lean_twice_changes_nothing():
    model = memory.memory_lean(fs.CSNN((1, 14, 14), (4, 6), kernel_size=3, num_steps=4))
    before = (repr(model), {k: v.clone() for k, v in model.state_dict().items()},
              [type(m) for m in model.modules()], [getattr(m, "saved_state", None) for m in model.modules()])
    again = memory.memory_lean(model)
    assert again is model
    after = (repr(model), model.state_dict(), [type(m) for m in model.modules()],
             [getattr(m, "saved_state", None) for m in model.modules()])
    assert before[0] == after[0] and before[2] == after[2] and before[3] == after[3]
    assert before[1].keys() == after[1].keys() and all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    plain = fs.CSNN((1, 14, 14), (4, 6), kernel_size=3, num_steps=4)
    assert model.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way


def test_memory_lean_leaves_linear_subclasses_alone():
    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(MyLinear(3, 4), nn.Linear(4, 2))
    memory.memory_lean(model)
    assert type(model[0]) is MyLinear and type(model[1]) is memory.SpikeLinear


# ---------------------------------------------------------------------------------------------
# the bench section
# ---------------------------------------------------------------------------------------------

def test_memory_bench_rows_and_plot(tmp_path):
    pytest.importorskip("snntorch")
    pytest.importorskip("matplotlib")
    rows = bench_memory.run_memory(torch.device("cpu"), (3,), 2, repeats=1, rss=False, networks=("MLP3",))
    assert [r["provider"] for r in rows] == list(bench_memory.PROVIDERS)
    for r in rows:
        assert r["peak_mib"] > 0 and r["median_s"] > 0
    assert next(r for r in rows if r["provider"] == "fused")["peak_vs_fused"] == 1.0
    bench_plots.plot_memory(rows, tmp_path)
    assert (tmp_path / "memory.png").stat().st_size > 0


def test_memory_bench_peak_counts_a_known_allocation():
    def step():
        t = torch.empty(3 * 2 ** 20, dtype=torch.uint8)
        t.fill_(1)
        del t

    assert bench_memory.peak_bytes(step, torch.device("cpu")) >= 3 * 2 ** 20


# ---------------------------------------------------------------------------------------------
# memory_lean(time_chunk=n): the whole network in time chunks under checkpointing
# ---------------------------------------------------------------------------------------------

class _TwoLayer(nn.Module):
    """Linear -> neuron -> Linear -> neuron over ``x: [T, B, 12]``; the first neuron may start
    from caller-given states (``states``), so chunk 0 must use them and later chunks the carry."""

    def __init__(self, make_neuron, states: dict | None = None) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(12, 12), make_neuron()
        self.fc2, self.lif2 = nn.Linear(12, 12), make_neuron()
        self.states = states or {}

    def forward(self, x):
        out1 = self.lif1(self.fc1(x), **self.states)
        out2 = self.lif2(self.fc2(out1[0]))
        return out2[0], out2[-1], out1[-1]  # spikes, membrane, and a hidden membrane (time-first)


def _chunked_grads(model, x, grads_out):
    for p in model.parameters():
        p.grad = None
    x = x.detach().requires_grad_()
    states = list(model.states.values())
    for s in states:
        s.grad = None
    outs = model(x)
    torch.autograd.backward(outs, grads_out)
    return outs, [x.grad, *(s.grad for s in states)], {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("backend", ["host", "reference"])
@pytest.mark.parametrize("learn", [False, True], ids=["fixed", "learnable"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_time_chunked_matches_default(kind, reset, reset_delay, learn, backend):
    # float64: the per-chunk products and the weight gradients summed chunk by chunk differ
    # from the whole-sequence ones by rounding only, far below any spike decision.
    T, B = 23, 3
    torch.manual_seed(1)
    x = random_input(T, B, 12, dtype=torch.float64)
    states = {name: (torch.randn(B, 12, dtype=torch.float64) * 0.5).requires_grad_() for name in _STATE_NAMES[kind]}
    with pytest.warns(UserWarning) if kind == "RSynaptic" and not reset_delay else _nothing():
        default = _TwoLayer(lambda: _make_layer(kind, reset, reset_delay, learn, backend, gsf=0.5), states).double()
    chunked = memory.memory_lean(copy.deepcopy(default), time_chunk=5)  # chunks 5,5,5,5,3
    chunked.states = states
    grads_out = [torch.randn(T, B, 12, dtype=torch.float64) for _ in range(3)]
    ref = _chunked_grads(default, x, grads_out)
    got = _chunked_grads(chunked, x, grads_out)
    assert torch.equal(got[0][0], ref[0][0])  # spikes (graded 0.5)
    for a, b in zip([*got[0][1:], *got[1]], [*ref[0][1:], *ref[1]]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.filterwarnings("ignore:memory_lean\\(time_chunk=:UserWarning")  # tiny chunks on purpose
@pytest.mark.parametrize("kind", NEURONS)
def test_time_chunked_matches_default_on_triton_interpreter(interpret, kind):
    T, B = 7, 2
    x = random_input(T, B, 12)
    default = _TwoLayer(lambda: _make_layer(kind, "subtract", True, True, "triton"))
    chunked = memory.memory_lean(copy.deepcopy(default), time_chunk=3)
    grads_out = [torch.randn(T, B, 12) for _ in range(3)]
    ref = _chunked_grads(default, x, grads_out)
    got = _chunked_grads(chunked, x, grads_out)
    for a, b in zip([*got[0], got[1][0], *got[2].values()], [*ref[0], ref[1][0], *ref[2].values()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: fs.DSNN(30, [24, 17], 10, num_steps=21), (5, 30)),
        (lambda: fs.DSNN(30, 24, 10, num_steps=9, neuron="synaptic",
                         neuron_kwargs=dict(graded_spikes_factor=0.5)), (9, 4, 30)),
        (lambda: fs.DSNN(30, 24, 10, num_steps=10, neuron="rleaky_all_to_all"), (3, 30)),
        (lambda: fs.CSNN((1, 14, 14), (4, 6), kernel_size=3, num_steps=7, neuron="rsynaptic"), (2, 1, 14, 14)),
        # images the DSNN flattens itself: the chunking must see them flattened
        (lambda: fs.DSNN(30, 24, 10, num_steps=11), (3, 1, 5, 6)),
    ],
    ids=["dsnn-static", "dsnn-graded-sequence", "dsnn-all-to-all", "csnn", "dsnn-static-images"],
)
def test_time_chunked_models(make, shape):
    torch.manual_seed(2)
    model = make().double()
    chunked = memory.memory_lean(copy.deepcopy(model), time_chunk=4)
    x = torch.rand(shape, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (shape[1] if len(shape) == 3 else shape[0],))
    ref = _model_grads(model, x, y)
    got = _model_grads(chunked, x, y)
    assert got[0].shape == ref[0].shape == (model.num_steps, y.numel(), 10)
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)
    assert model.num_steps == chunked.num_steps  # restored after every chunk
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)


@needs_host_all_to_all
@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_time_chunked_spike_products_match_default(threads, monkeypatch):
    # The 3-layer network (512-wide layers take the spike product), in float64: the products and
    # weight gradients differ from BLAS's by rounding only; the spikes are the default's.
    ran = []
    real = lif_all_to_all_host.spike_linear_checked
    monkeypatch.setattr(lif_all_to_all_host, "spike_linear_checked", lambda *a, **k: ran.append(real(*a, **k)) or ran[-1])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(3)
        model = bench_memory.MLP3().double()  # 256-512-512-10, the network
        # chunks of 20 steps x 40 samples = 800 rows: enough for both products (the last one, 400
        # rows, takes the forward's only)
        chunked = memory.memory_lean(copy.deepcopy(model), time_chunk=20)
        x = torch.rand(30, 40, 256, dtype=torch.float64) * 2
        g = torch.randn(30, 40, 10, dtype=torch.float64)

        def run(m):
            xx = x.clone().requires_grad_()
            spk = m(xx)[0]
            spk.backward(g)
            return spk, xx.grad, {n: p.grad for n, p in m.named_parameters()}

        ref, got = run(model), run(chunked)
    finally:
        torch.set_num_threads(previous)
    assert any(r.out is not None for r in ran)  # the 512 -> 512 layer took the spike product
    assert torch.equal(got[0], ref[0]) and got[0].count_nonzero() > 0
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("make, shape", [
    (lambda: fs.DSNN(30, 24, 10, num_steps=13), (5, 30)),
    (lambda: fs.CSNN((1, 14, 14), (4, 6), kernel_size=3, num_steps=9), (2, 1, 14, 14)),
], ids=["dsnn", "csnn"])
def test_time_chunked_static_input_first_layer_runs_once(make, shape):
    # A static input's first layer is the same in every chunk: computed once per forward (not
    # once per chunk and again in each recompute), with the gradients of the unchunked model.
    torch.manual_seed(4)
    model = make().double()
    chunked = memory.memory_lean(copy.deepcopy(model), time_chunk=4)  # chunks 4, 4, 4, 1 (or 4, 4, 1)
    first = chunked.fcs[0] if isinstance(chunked, fs.DSNN) else chunked.convs[0]
    calls = []
    first.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(shape, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (shape[0],))
    ref = _model_grads(model, x, y)
    got = _model_grads(chunked, x, y)
    assert len(calls) == 1
    assert torch.equal(got[0], ref[0])
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)


def test_time_chunked_memory_does_not_grow_with_T():
    # The peak of a training step grows with T by the outputs only (10 wide) when chunked, by
    # several [T, B, 512] tensors when not.
    def step_peak(T, chunk):
        torch.manual_seed(0)
        model = memory.memory_lean(bench_memory.MLP3(), saved_state="default", time_chunk=chunk)
        x = torch.rand(T, 4, 256) * 2
        y = torch.zeros(4, dtype=torch.long)

        def step():
            spk, _ = model(x)
            fs.population.ce_rate_loss(spk, y, 10, 1).backward()

        return bench_memory.peak_bytes(step, torch.device("cpu"))

    chunked_growth = step_peak(400, 10) - step_peak(40, 10)
    whole_growth = step_peak(400, None) - step_peak(40, None)
    assert whole_growth > 360 * 4 * 512 * 4 * 3  # at least three [T, B, 512] float tensors
    assert chunked_growth < whole_growth / 10


def test_time_chunked_leaves_no_grad_and_short_sequences_alone():
    model = memory.memory_lean(_TwoLayer(lambda: fs.Leaky(beta=0.9)), time_chunk=8)
    x = random_input(5, 2, 12)
    with torch.no_grad():
        a = model(x)
        b = type(model).forward(model, x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    spk, _, _ = model(x)  # T <= time_chunk: one plain call
    assert type(spk.grad_fn).__name__ != "CatBackward0"


@pytest.mark.filterwarnings("ignore:memory_lean\\(time_chunk=:UserWarning")  # tiny chunks on purpose
def test_time_chunked_conversion_twice_and_removal():
    model = fs.DSNN(30, 24, 10, num_steps=12)
    plain_keys = model.state_dict().keys()
    memory.memory_lean(model, time_chunk=5)
    forward = model.forward
    assert isinstance(forward, memory.ChunkedForward) and forward.time_chunk == 5
    assert memory.memory_lean(model, time_chunk=5) is model and model.forward is forward
    memory.memory_lean(model, time_chunk=3)
    assert model.forward is forward and forward.time_chunk == 3
    assert model.state_dict().keys() == plain_keys
    copied = copy.deepcopy(model)
    assert copied.forward.model is copied
    memory.memory_lean(model)
    assert "forward" not in model.__dict__


def test_readme_time_chunked_example_runs():
    # README's own example, on MNIST-shaped images: the DSNN flattens them before chunking
    model = fs.memory_lean(fs.DSNN(num_steps=2000), time_chunk=32)
    x = torch.rand(4, 1, 28, 28)
    spk, mem = model(x)
    assert spk.shape == mem.shape == (2000, 4, 10)
    mem.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_time_chunk_is_validated(bad):
    with pytest.raises(ValueError, match="time_chunk must be None or a positive int"):
        memory.memory_lean(nn.Sequential(), time_chunk=bad)


@pytest.mark.filterwarnings("ignore:memory_lean\\(time_chunk=:UserWarning")  # tiny chunks on purpose
def test_time_chunked_refuses_outputs_that_are_not_time_first():
    class LastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = fs.Leaky(beta=0.9)

        def forward(self, x):
            spk, mem = self.lif(x)
            return mem[-1]  # [B, F]: cannot be concatenated over chunks

    model = memory.memory_lean(LastStep(), time_chunk=2)
    with pytest.raises(ValueError, match="time first"):
        model(random_input(6, 3, 4).requires_grad_())


# ---------------------------------------------------------------------------------------------
# what the default fused op keeps
# ---------------------------------------------------------------------------------------------

def _saved_storages(fn):
    """Data pointers of every tensor autograd saves while ``fn()`` runs, and ``fn()``'s result."""
    saved = []

    def pack(t):
        saved.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return set(saved), out


@pytest.mark.parametrize(
    "make, keeps_spk, keeps_syn",
    [
        (lambda: fs.Leaky(beta=0.9), False, False),
        (lambda: fs.Synaptic(alpha=0.8, beta=0.9), False, False),
        (lambda: fs.Synaptic(alpha=0.8, beta=0.9, learn_alpha=True), False, True),
        (lambda: fs.RLeaky(beta=0.9, V=0.5, all_to_all=False, learn_recurrent=False), False, False),
        (lambda: fs.RLeaky(beta=0.9, V=0.5, all_to_all=False, learn_recurrent=True), True, False),
        (lambda: fs.RSynaptic(alpha=0.8, beta=0.9, V=0.5, all_to_all=False, learn_alpha=True,
                              learn_recurrent=True), True, True),
    ],
    ids=["leaky", "synaptic", "synaptic-learn-alpha", "rleaky", "rleaky-learn-V", "rsynaptic-learn-both"],
)
@pytest.mark.parametrize("backend", ["host", "reference"])
def test_fused_op_keeps_spikes_and_current_only_for_their_parameter(make, keeps_spk, keeps_syn, backend):
    layer = make()
    layer.backend = backend
    x = random_input(9, 3, 7).requires_grad_()
    saved, out = _saved_storages(lambda: layer(x))
    assert (out[0].untyped_storage().data_ptr() in saved) == keeps_spk
    if len(out) == 3:
        assert (out[1].untyped_storage().data_ptr() in saved) == keeps_syn
    assert out[-1].untyped_storage().data_ptr() in saved  # the membrane history always


def test_lean_default_neurons_keep_no_float_spikes():
    # Neurons "default" + SpikeLinear: the float spikes are kept by nobody, only their bits.
    model = memory.memory_lean(fs.DSNN(30, [24, 17], 10, num_steps=8, static_input_once=False),
                               saved_state="default")
    x = torch.rand(4, 30) * 2
    # The hook keeps the spike tensors themselves alive: with only their addresses kept, a freed
    # spike buffer's address could be handed to a later saved tensor and read as "kept" (this
    # failed once in CI that way).
    hidden = []
    hooks = [lif.register_forward_hook(lambda m, i, o: hidden.append(o[0])) for lif in model.neurons[:-1]]
    saved, _ = _saved_storages(lambda: model(x))
    for h in hooks:
        h.remove()
    hidden_ptrs = {spk.untyped_storage().data_ptr() for spk in hidden}
    assert len(hidden_ptrs) == 2 and not saved.intersection(hidden_ptrs)


def test_time_chunked_fused_sequential():
    snn = pytest.importorskip("snntorch")
    net = nn.Sequential(nn.Linear(12, 16), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(16, 5),
                        snn.Leaky(beta=0.8, init_hidden=True, output=True))
    fused = fs.fuse(net).double()
    chunked = memory.memory_lean(copy.deepcopy(fused), time_chunk=4)
    x = random_input(11, 3, 12, dtype=torch.float64)
    outs = []
    for model in (fused, chunked):
        spk, mem = model(x)
        (spk.sum() + (mem ** 2).sum()).backward()
        outs.append((spk, mem, [p.grad for p in model.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[1][2], outs[0][2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_recompute_chunks_off_the_cpu_hold_enough_work():
    # On the CPU: up to RECOMPUTE_CHUNKS chunks of at least RECOMPUTE_MIN_STEPS steps; off it,
    # a chunk also holds at least RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU neuron-steps (host cost).
    per_step = 32 * 512  # B x F
    assert len(recompute._chunks(2000, 16, per_step, on_cpu=True)) == 16
    gpu = recompute._chunks(2000, 16, per_step, on_cpu=False)
    assert [b - a for a, b in gpu[:-1]] == [recompute.RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU // per_step] * 7  # 256 steps
    assert gpu[0] == (0, gpu[0][1]) and gpu[-1][1] == 2000
    assert all(a[1] == b[0] for a, b in zip(gpu, gpu[1:]))
    assert recompute._chunks(40, 16, 4, on_cpu=False) == [(0, 40)]


@pytest.mark.parametrize("num_steps, min_steps, recomputes", [(8, 1, True), (7, 1, False), (8, 2, False),
                                                               (225, 32, True), (224, 32, False)])
def test_auto_recomputes_only_in_enough_chunks(num_steps, min_steps, recomputes, monkeypatch):
    # Fewer than AUTO_MIN_CHUNKS chunks: the recompute's chunk-sized transients would eat what it
    # saves, so "auto" keeps the default's saves even for a static input.
    monkeypatch.setattr(recompute, "RECOMPUTE_MIN_STEPS", min_steps)
    calls = []
    original = recompute._RecomputeLIF.apply
    monkeypatch.setattr(recompute._RecomputeLIF, "apply", lambda *a: (calls.append(1), original(*a))[1])
    layer = memory.memory_lean(fs.Leaky(beta=0.9))
    x = (torch.rand(3, 5) * 2).expand(num_steps, 3, 5).requires_grad_()
    layer(x)[0].sum().backward()
    assert bool(calls) == recomputes


def test_recompute_runs_16_bit_inputs_in_one_span_so_auto_keeps_the_default():
    x = torch.rand(3, 5).expand(400, 3, 5)
    assert len(recompute._recompute_spans(x, recompute.RECOMPUTE_CHUNKS)) == 13  # 400 / 32 steps
    for dtype in (torch.float16, torch.bfloat16):
        assert recompute._recompute_spans(x.to(dtype), recompute.RECOMPUTE_CHUNKS) == [(0, 400)]
    assert recompute._recompute_spans(x[:0], recompute.RECOMPUTE_CHUNKS) == [(0, 0)]


LEAN_COMPILED = {
    "dsnn-bits": (lambda: memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=9)), (3, 30), "SpikeLinear"),
    "dsnn-chunked": (lambda: memory.memory_lean(fs.DSNN(30, 24, 10, num_steps=9), time_chunk=4), (3, 30),
                     r"memory_lean\(time_chunk=\.\.\.\)"),
    "csnn-bits": (lambda: memory.memory_lean(fs.CSNN((1, 10, 10), (3,), kernel_size=3, num_steps=5)),
                  (2, 1, 10, 10), "SpikeConv2d"),
    "leaky-recompute": (lambda: memory.memory_lean(fs.Leaky(beta=0.9), saved_state="recompute"), (7, 3, 5),
                        'saved_state="recompute"'),
}


@pytest.mark.parametrize("case", list(LEAN_COMPILED))
def test_fullgraph_compile_of_a_memory_lean_model_is_refused_naming_it(case):
    make, shape, part = LEAN_COMPILED[case]
    model = make()
    x = (torch.rand(shape) * 2).requires_grad_()
    torch._dynamo.reset()
    try:
        with pytest.raises(RuntimeError, match=rf"fusedsnn\.memory_lean: .*{part}.*cannot be traced by "
                                               r"torch\.compile\(fullgraph=True\)"):
            torch.compile(model, fullgraph=True, backend="aot_eager")(x)
        # without fullgraph the memory-lean parts run eagerly, with the eager results
        torch._dynamo.reset()
        got = torch.compile(model, backend="aot_eager")(x)
    finally:
        torch._dynamo.reset()
    want = model(x)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_tiny_time_chunks_warn_that_they_are_slow(chunk):
    with pytest.warns(UserWarning, match=rf"memory_lean\(time_chunk={chunk}\): chunks this small are very slow"):
        memory.memory_lean(fs.DSNN(30, 8, 4, num_steps=6), time_chunk=chunk)


def test_usual_time_chunks_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.memory_lean(fs.DSNN(30, 8, 4, num_steps=6), time_chunk=memory.MIN_EFFICIENT_TIME_CHUNK)
