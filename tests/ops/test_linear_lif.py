"""The fused Linear + LIF op (fusedsnn/ops/linear_lif.py, ``fs.functional.linear_leaky``,
``fs.LinearLeaky``) against the composition it replaces: ``F.linear`` then the fused neuron on
the reference backend (itself checked against snnTorch 1.0.0, here too once).

The reference backend forms the current with the same ``F.linear`` call, so its float32 spikes,
states and gradients equal the composition's bit for bit. The host (spike product or a BLAS
product per chunk of steps) and Triton (``tl.dot`` in K slices) sum the current in their own
order: states and gradients are compared within float32 tolerance (``RTOL`` of each tensor's
scale), spikes exactly wherever the pre-spike membrane is further than ``MARGIN`` from threshold.
Seeds are fixed per test id (conftest), so no comparison is left to chance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as tF

import fusedsnn as fs
from fusedsnn import functional as F
from fusedsnn.backends import host as host_backend
from fusedsnn.backends.host import linear_lif as host_linear_lif
from fusedsnn.backends.registry import get_backend
from fusedsnn.ops.linear_lif import linear_lif_forward

from ..conftest import RESETS, assert_close_scaled

snn = pytest.importorskip("snntorch")

#: Float32 rounding of a K-term product sum of O(1) values, with room.
MARGIN = 1e-4
RTOL = 1e-5
BACKENDS = ["reference", "host", "triton"]
NEURONS = ["Leaky", "Synaptic"]


@pytest.fixture
def backend(request, monkeypatch):
    name = request.param
    if name == "triton":
        pytest.importorskip("triton")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        # outputs start as NaN: an element the kernel forgets to write fails the comparison
        from fusedsnn.backends.triton import linear_lif as triton_linear_lif
        monkeypatch.setattr(triton_linear_lif, "new_output",
                            lambda shape, dtype, device: torch.full(shape, float("nan"), dtype=dtype, device=device))
    return name


def _operands(T, B, K, N, dtype=torch.float32, spikes=False, learn=False, synaptic=False):
    if spikes:
        x = (torch.rand(T, B, K) < 0.3).to(dtype)
    else:
        x = (torch.randn(T, B, K, dtype=torch.float64) * 1.5 + 0.3).to(dtype)
    W = (torch.randn(N, K, dtype=torch.float64) * (1.5 / K ** 0.5)).to(dtype)
    b = (torch.randn(N, dtype=torch.float64) * 0.3).to(dtype)
    if learn:  # per neuron, straddling [0, 1] so the clamp's mask matters
        beta = (torch.rand(N, dtype=dtype) * 1.2 - 0.1)
        thr = torch.rand(N, dtype=dtype) + 0.5
        alpha = (torch.rand(N, dtype=dtype) * 1.2 - 0.1) if synaptic else None
    else:
        beta, thr, alpha = 0.85, 0.9, (0.6 if synaptic else None)
    return x, W, b, beta, thr, alpha


def _leaf(v):
    return v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v


def _run(kind, x, W, b, beta, thr, alpha, backend, fused, reset="subtract", reset_delay=True, mem=None,
         syn=None, num_steps=None):
    kw = dict(reset_mechanism=reset, reset_delay=reset_delay, backend=backend)
    if fused:
        if kind == "Leaky":
            return F.linear_leaky(x, W, b, beta, thr, mem=mem, num_steps=num_steps, **kw)
        return F.linear_synaptic(x, W, b, alpha, beta, thr, mem=mem, syn=syn, num_steps=num_steps, **kw)
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(num_steps, *x.shape)
    cur = tF.linear(x, W, b)
    if kind == "Leaky":
        return F.leaky(cur, beta, thr, mem=mem, **kw)
    return F.synaptic(cur, alpha, beta, thr, mem=mem, syn=syn, **kw)


def _pre_spike(kind, x, W, b, beta, thr, alpha, reset, reset_delay, num_steps=None):
    """The membrane each spike decision compares with threshold (reference backend)."""
    spec = F.make_spec(synaptic=kind == "Synaptic", recurrence=0, reset_mechanism=reset, reset_delay=reset_delay,
                       spike_grad=None, surrogate_disable=False, graded_spikes_factor=1.0, neuron=kind)
    N = W.shape[0]

    def vec(v, clamp):
        v = torch.as_tensor(v, dtype=x.dtype).detach()
        return (v.clamp(0, 1) if clamp else v).expand(N).contiguous()

    x3 = x.unsqueeze(0).expand(num_steps, *x.shape) if x.dim() == 2 else x
    _, _, mem, pre = get_backend("reference").linear_lif_forward(
        x3.detach(), W.detach(), b.detach(), None, None, vec(beta, True), vec(thr, False),
        vec(alpha, True) if alpha is not None else x.new_empty(0), spec, True)
    return (pre if pre.numel() else mem), vec(thr, False)


def _compare(kind, fused, composed, exact, margin_mem=None, thr=None):
    names = ("spk", "mem") if kind == "Leaky" else ("spk", "syn", "mem")
    for name, a, e in zip(names, fused, composed):
        if exact:
            assert torch.equal(a, e), name
        elif name == "spk":
            clear = (margin_mem - thr).abs() > MARGIN
            assert clear.float().mean() > 0.9  # the comparison covers nearly every spike
            assert torch.equal(a[clear], e[clear]), name
        else:
            assert_close_scaled(a, e, RTOL, name)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delayed-reset", "immediate-reset"])
def test_forward_and_backward_match_linear_then_neuron(backend, kind, reset, reset_delay):
    T, B, K, N = 5, 3, 7, 5
    x, W, b, beta, thr, alpha = _operands(T, B, K, N, learn=True, synaptic=kind == "Synaptic")
    mem0 = torch.randn(B, N) * 0.5
    syn0 = torch.randn(B, N) * 0.5 if kind == "Synaptic" else None
    loss_weights = [torch.randn(T, B, N) for _ in range(2 if kind == "Leaky" else 3)]
    leaves, results = {}, []
    for fused in (True, False):
        args = [_leaf(v) for v in (x, W, b, beta, thr, alpha, mem0, syn0)]
        out = _run(kind, *args[:6], backend if fused else "reference", fused, reset, reset_delay,
                   mem=args[6], syn=args[7])
        sum((o * w).sum() for o, w in zip(out, loss_weights)).backward()  # reaches every output
        results.append([o.detach() for o in out])
        leaves[fused] = dict(zip(("x", "weight", "bias", "beta", "threshold", "alpha", "mem0", "syn0"), args))
    exact = backend == "reference"
    margin_mem, thr_v = _pre_spike(kind, x, W, b, beta, thr, alpha, reset, reset_delay)
    _compare(kind, results[0], results[1], exact, margin_mem, thr_v)
    for name, leaf in leaves[True].items():
        if leaf is None:
            continue
        ref = leaves[False][name]
        assert leaf.grad is not None and ref.grad is not None, name
        if exact:
            torch.testing.assert_close(leaf.grad, ref.grad, rtol=0, atol=0, msg=name)
        else:
            assert_close_scaled(leaf.grad, ref.grad, RTOL, name)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_tiles_and_chunks_at_odd_sizes_past_one_tile(backend, monkeypatch):
    # B, N, K past one Triton tile (16 x 32, K slices of 16); the host in chunks of 2 steps.
    monkeypatch.setattr(host_linear_lif, "CHUNK_ELEMENTS", 2 * 17 * 35)
    T, B, K, N = 5, 17, 37, 35
    x, W, b, beta, thr, _ = _operands(T, B, K, N, learn=True)
    loss_w = torch.randn(2, T, B, N)
    grads = []
    outs = []
    for fused in (True, False):
        args = [_leaf(v) for v in (x, W, b, beta, thr)]
        out = _run("Leaky", *args, None, backend if fused else "reference", fused)
        sum((o * w).sum() for o, w in zip(out, loss_w)).backward()
        outs.append([o.detach() for o in out])
        grads.append([a.grad for a in args])
    margin_mem, thr_v = _pre_spike("Leaky", x, W, b, beta, thr, None, "subtract", True)
    _compare("Leaky", outs[0], outs[1], backend == "reference", margin_mem, thr_v)
    for name, g, e in zip(("x", "weight", "bias", "beta", "threshold"), *grads):
        assert_close_scaled(g, e, RTOL, name)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("form", ["static-BK-num_steps", "expanded-stride0-TBK"])
def test_static_input(backend, form):
    T, B, K, N = 6, 3, 9, 5
    x_static = torch.randn(B, K) * 1.5 + 0.3
    _, W, b, beta, thr, _ = _operands(T, B, K, N)
    loss_w = torch.randn(2, T, B, N)
    runs = []
    for fused in (True, False):
        xs, Ws, bs = _leaf(x_static), _leaf(W), _leaf(b)
        if form == "static-BK-num_steps":
            out = _run("Leaky", xs, Ws, bs, beta, thr, None, backend if fused else "reference", fused, num_steps=T)
        else:
            out = _run("Leaky", xs.unsqueeze(0).expand(T, B, K), Ws, bs, beta, thr, None,
                       backend if fused else "reference", fused)
        sum((o * w).sum() for o, w in zip(out, loss_w)).backward()
        runs.append(([o.detach() for o in out], (xs.grad, Ws.grad, bs.grad)))
    assert runs[0][0][0].shape == (T, B, N)
    margin_mem, thr_v = _pre_spike("Leaky", x_static, W, b, beta, thr, None, "subtract", True, num_steps=T)
    _compare("Leaky", runs[0][0], runs[1][0], False, margin_mem, thr_v)
    for name, g, e in zip(("x", "weight", "bias"), runs[0][1], runs[1][1]):
        assert_close_scaled(g, e, RTOL, name)


def test_host_uses_the_spike_product_for_spike_input(monkeypatch):
    calls = []
    real = host_linear_lif.all_to_all.spike_linear_forward

    def counting(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(host_linear_lif.all_to_all, "spike_linear_forward", counting)
    monkeypatch.setattr(host_linear_lif, "CHUNK_ELEMENTS", 3 * 4 * 11)  # chunks of 3 steps
    T, B, K, N = 7, 4, 19, 11
    x, W, b, beta, thr, _ = _operands(T, B, K, N, spikes=True)
    spk, mem = F.linear_leaky(x, W, b, beta, thr, backend="host")
    spk_r, mem_r = _run("Leaky", x, W, b, beta, thr, None, "reference", False)
    assert calls == [True, True, True]  # ceil(7 / 3) chunks, each by the spike product
    margin_mem, thr_v = _pre_spike("Leaky", x, W, b, beta, thr, None, "subtract", True)
    _compare("Leaky", (spk, mem), (spk_r, mem_r), False, margin_mem, thr_v)


def test_host_dense_input_takes_blas(monkeypatch):
    declined = []
    real = host_linear_lif.all_to_all.spike_linear_forward

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        declined.append(result is None)
        return result

    monkeypatch.setattr(host_linear_lif.all_to_all, "spike_linear_forward", recording)
    T, B, K, N = 3, 2, 5, 4
    x, W, b, beta, thr, _ = _operands(T, B, K, N)
    spk, mem = F.linear_leaky(x, W, b, beta, thr, backend="host")
    spk_r, mem_r = _run("Leaky", x, W, b, beta, thr, None, "reference", False)
    assert declined == [True]  # not spikes: the spike product declines and BLAS forms the current
    assert_close_scaled(mem, mem_r, RTOL, "mem")


def test_reference_matches_snntorch_linear_then_leaky_bit_for_bit():
    T, B, K, N = 6, 3, 7, 5
    x = torch.randn(T, B, K) * 1.5 + 0.3
    lin = torch.nn.Linear(K, N)
    neuron = snn.Leaky(beta=0.8, threshold=0.7)
    mem = neuron.init_leaky()
    spikes, mems = [], []
    for t in range(T):
        s, mem = neuron(lin(x[t]), mem)
        spikes.append(s)
        mems.append(mem)
    spk, m = F.linear_leaky(x, lin.weight, lin.bias, 0.8, 0.7, backend="reference")
    assert torch.equal(spk, torch.stack(spikes))
    assert torch.equal(m, torch.stack(mems))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_inference_writes_no_pre_reset_membrane(backend):
    T, B, K, N = 4, 3, 7, 5
    x, W, b, beta, thr, _ = _operands(T, B, K, N)
    with torch.no_grad():
        spk, mem = F.linear_leaky(x, W, b, beta, thr, reset_delay=False, backend=backend)
        spk_r, mem_r = _run("Leaky", x, W, b, beta, thr, None, "reference", False, reset_delay=False)
    assert_close_scaled(mem, mem_r, RTOL, "mem")
    empty = x.new_empty(0)
    *_, pre = linear_lif_forward(x, W, b, empty, empty, torch.full((N,), 0.85), torch.full((N,), 0.9), empty, T,
                                 False, 0, False, 0, 2.0, 0.0, 1.0, False, backend)
    assert pre.numel() == 0


def test_linear_leaky_layer_loads_a_linear_then_leaky_state_dict():
    K, N = 7, 5
    composed = torch.nn.Sequential(torch.nn.Linear(K, N), fs.Leaky(beta=0.8, threshold=0.6, learn_beta=True,
                                                                    backend="reference"))
    layer = fs.LinearLeaky(K, N, beta=0.5, learn_beta=True, threshold=0.6, backend="reference")
    state = {k.split(".", 1)[1]: v for k, v in composed.state_dict().items()}
    assert set(state) == set(layer.state_dict())
    layer.load_state_dict(state)
    x = torch.randn(5, 3, K) * 1.5
    spk, mem = layer(x)
    spk_c, mem_c = composed[1](composed[0](x))
    assert torch.equal(spk, spk_c) and torch.equal(mem, mem_c)
    mem.sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None and layer.beta.grad is not None
    assert "in_features=7, out_features=5" in repr(layer)


def test_linear_leaky_layer_without_bias_and_static_input():
    layer = fs.LinearLeaky(6, 4, beta=0.9, bias=False)
    assert layer.bias is None and "bias" not in dict(layer.named_parameters())
    spk, mem = layer(torch.randn(3, 6), num_steps=5)
    assert spk.shape == mem.shape == (5, 3, 4)


def test_synaptic_returns_three_outputs_on_the_host():
    x, W, b, beta, thr, alpha = _operands(4, 2, 5, 3, synaptic=True)
    out = F.linear_synaptic(x, W, b, alpha, beta, thr, backend="host")
    assert len(out) == 3 and all(o.shape == (4, 2, 3) for o in out)


@pytest.mark.parametrize("case, error, match", [
    ("x-1d", ValueError, "x must have shape"),
    ("x-fp16", TypeError, "float32 or float64"),
    ("x-not-tensor", TypeError, "x must be a torch.Tensor"),
    ("static-without-num_steps", ValueError, "num_steps"),
    ("num_steps-contradicts", ValueError, "num_steps=4 contradicts"),
    ("weight-in-features", ValueError, r"weight must be a tensor of shape \[out_features, 7\]"),
    ("weight-dtype", ValueError, "weight must have x's dtype"),
    ("bias-shape", ValueError, r"bias must be None or a tensor of shape \(5,\)"),
    ("bias-dtype", ValueError, "bias must have x's dtype"),
    ("mem-shape", ValueError, "mem must have shape"),
    ("beta-shape", ValueError, "beta of shape"),
    ("triton-without-cuda", ValueError, "backend='triton' cannot run"),
    ("host-float16-weights", TypeError, "float32 or float64"),
])
def test_errors_name_the_argument(case, error, match, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, W, b = torch.randn(3, 2, 7), torch.randn(5, 7), torch.randn(5)
    kw: dict = {}
    if case == "x-1d":
        x = torch.randn(7)
    elif case == "x-fp16":
        x = x.half()
    elif case == "x-not-tensor":
        x = x.tolist()
    elif case == "static-without-num_steps":
        x = x[0]
    elif case == "num_steps-contradicts":
        kw["num_steps"] = 4
    elif case == "weight-in-features":
        W = torch.randn(5, 6)
    elif case == "weight-dtype":
        W = W.double()
    elif case == "bias-shape":
        b = torch.randn(4)
    elif case == "bias-dtype":
        b = b.double()
    elif case == "mem-shape":
        kw["mem"] = torch.zeros(2, 4)
    elif case == "beta-shape":
        kw["beta"] = torch.rand(4)
    elif case == "triton-without-cuda":
        pytest.importorskip("triton")
        kw["backend"] = "triton"
    elif case == "host-float16-weights":
        x, W, b = x.half(), W.half(), b.half()
    beta = kw.pop("beta", 0.9)
    with pytest.raises(error, match=match):
        F.linear_leaky(x, W, b, beta, **kw)


def test_torch_compile_fullgraph():
    T, B, K, N = 4, 3, 7, 5
    x, W, b, _, _, _ = _operands(T, B, K, N)
    W = W.requires_grad_()

    def step(x, W, b):
        spk, mem = F.linear_leaky(x, W, b, 0.85, 0.9, backend="host")
        return spk.sum() + mem.square().mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss = compiled(x, W, b)
    (g_c,) = torch.autograd.grad(loss, W)
    loss_e = step(x, W, b)
    (g_e,) = torch.autograd.grad(loss_e, W)
    torch.testing.assert_close(loss, loss_e, rtol=0, atol=0)
    torch.testing.assert_close(g_c, g_e, rtol=0, atol=0)


def test_opcheck():
    T, B, K, N = 3, 2, 5, 4
    x, W, b, _, _, _ = _operands(T, B, K, N)
    empty = x.new_empty(0)
    args = (x.requires_grad_(), W.requires_grad_(), b, empty, empty, torch.full((N,), 0.85),
            torch.full((N,), 0.9).requires_grad_(), empty, T, False, 0, False, 0, 2.0, 0.0, 1.0, True, "host")
    torch.library.opcheck(linear_lif_forward, args)
