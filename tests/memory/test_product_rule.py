"""fusedsnn.memory.product_rule: which path a spike-fed Linear takes, the switches, and the results.

The spike products sum in another order than BLAS, so their outputs and weight gradients are
compared with the dense path to a stated tolerance (float32: 1e-5 of the tensor's largest
magnitude; float64: 1e-12), and bit for bit with the products' own order
(``ordered_spike_linear``); the input and bias gradients are the dense formulas' bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusedsnn import memory
from fusedsnn.backends.host import all_to_all as host
from fusedsnn.memory import product_rule

from ..conftest import assert_close_scaled, ordered_spike_linear

ROOT = Path(__file__).resolve().parents[2]

needs_host = pytest.mark.skipif(not host.available(), reason="the host library with the spike product did not build")

#: The tolerance the docs state for the products against BLAS: of the tensor's largest magnitude.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def _global_mode_from_environment(monkeypatch):
    """Every test starts from the environment's mode (none set) and leaves no override behind."""
    monkeypatch.delenv(product_rule.ENV_VAR, raising=False)
    product_rule.set_spike_products(None)
    yield
    product_rule.set_spike_products(None)


def _spikes(*shape, rate, dtype=torch.float32, value=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(shape, generator=gen) < rate, torch.tensor(value, dtype=dtype),
                       torch.tensor(0.0, dtype=dtype))


@pytest.fixture
def calls(spike_product_calls):
    """What each spike-product call of the layers did (tests/conftest.py)."""
    return spike_product_calls


# ---------------------------------------------------------------------------------------------
# the rule
# ---------------------------------------------------------------------------------------------

def test_rule_picks_the_spike_product_for_wide_sparse_layers_and_blas_elsewhere():
    # float64: the forward's limits, BLAS for the weight gradient
    assert product_rule.weight_grad_max_rate(3200, 512, 512, torch.float64) == 0.0
    # the 3-layer network's hidden layer, T=25 x B=32 rows: products up to a sensible rate
    assert product_rule.forward_max_rate(800, 512, 512) >= 0.2
    assert product_rule.weight_grad_max_rate(800, 512, 512) >= 0.05
    # a 10-wide readout never, at any size
    assert product_rule.forward_max_rate(3200, 1000, 10) == 0.0
    assert product_rule.weight_grad_max_rate(3200, 1000, 10) == 0.0
    # too little work for the call's fixed cost
    assert product_rule.forward_max_rate(20, 256, 256) == 0.0
    # few rows: the forward pays, the weight gradient from masks does not
    assert product_rule.forward_max_rate(128, 512, 512) > 0.0
    assert product_rule.weight_grad_max_rate(128, 512, 512) == 0.0
    # a 4096-wide input over a 4096-wide output: only very sparse spikes
    assert 0.0 < product_rule.forward_max_rate(3200, 4096, 4096) < product_rule.forward_max_rate(3200, 1000, 1000)
    for rows, k, n in [(800, 512, 512), (3200, 4096, 4096), (128, 300, 700), (5000, 2000, 100)]:
        assert product_rule.weight_grad_max_rate(rows, k, n) <= product_rule.forward_max_rate(rows, k, n)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "800"])
def test_rule_sizes_are_checked(bad):
    with pytest.raises(ValueError, match="rows must be a non-negative int"):
        product_rule.forward_max_rate(bad, 10, 10)
    with pytest.raises(ValueError, match="out_features must be a non-negative int"):
        product_rule.weight_grad_max_rate(900, 10, bad)


def _measured_cases():
    """``(rows, K, N, rate) -> {"forward": ratio, "weight_grad": ratio}`` from the float32 runs the
    rule cites: the median over the runs of each run's median spike/BLAS time ratio."""
    folder = ROOT / product_rule.RULE_DATA
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("run*.json"))]
    assert len(runs) >= 3, f"expected the three runs in {folder}"
    per_run = {}
    for run in runs:
        assert run["dtype"] == "float32"
        for case in run["cases"]:
            for rate, sp in case["spike"].items():
                key = (case["rows"], case["in_features"], case["out_features"], float(rate))
                entry = per_run.setdefault(key, {"forward": [], "weight_grad": []})
                entry["forward"].append(sp["forward_ratio"]["median"])
                entry["weight_grad"].append(sp["weight_grad_ratio"]["median"])
    return {k: {part: sorted(v)[len(v) // 2] for part, v in parts.items()} for k, parts in per_run.items()}


def test_rule_is_the_measurement_it_cites():
    """Every measured case where the rule takes a spike product was faster with it (median of the
    pooled per-round ratios below 1), and the rule takes most of the clear wins (below 0.7x)."""
    measured = _measured_cases()
    wins = taken = 0
    for (rows, k, n, rate), ratio in measured.items():
        forward = rate <= product_rule.forward_max_rate(rows, k, n)
        weight_grad = rate <= product_rule.weight_grad_max_rate(rows, k, n)
        assert not forward or ratio["forward"] < 1.0, (rows, k, n, rate, ratio)
        assert not weight_grad or ratio["weight_grad"] < 1.0, (rows, k, n, rate, ratio)
        if ratio["forward"] < 0.7:
            wins += 1
            taken += forward
    assert taken >= 0.8 * wins, f"the rule takes {taken} of {wins} measured forward wins below 0.7x"


# ---------------------------------------------------------------------------------------------
# the switches
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env, mode", [(None, "auto"), ("0", "off"), ("off", "off"), ("1", "on"), ("ON", "on"),
                                       ("auto", "auto")])
def test_global_mode_reads_the_environment(monkeypatch, env, mode):
    if env is not None:
        monkeypatch.setenv(product_rule.ENV_VAR, env)
    assert memory.spike_products_mode() == mode


def test_a_bad_mode_is_refused_naming_where_it_came_from(monkeypatch):
    monkeypatch.setenv(product_rule.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match="FUSEDSNN_SPIKE_PRODUCT"):
        memory.spike_products_mode()
    with pytest.raises(ValueError, match="mode must be one of"):
        memory.set_spike_products("fast")
    with pytest.raises(ValueError, match="mode must be one of"):
        with memory.spike_products(None):
            pass
    with pytest.raises(ValueError, match="spike_product must be None, True or False"):
        product_rule.layer_uses_products("yes")


def test_context_manager_and_setter_override_the_environment_and_restore(monkeypatch):
    monkeypatch.setenv(product_rule.ENV_VAR, "0")
    with memory.spike_products("on"):
        assert memory.spike_products_mode() == "on"
        with memory.spike_products(False):
            assert memory.spike_products_mode() == "off"
        assert memory.spike_products_mode() == "on"
    assert memory.spike_products_mode() == "off"
    memory.set_spike_products(True)
    assert memory.spike_products_mode() == "on"
    memory.set_spike_products(None)
    assert memory.spike_products_mode() == "off"


@pytest.mark.parametrize("mode, setting, uses", [
    ("auto", None, False), ("auto", True, True), ("auto", False, False),
    ("on", None, True), ("on", True, True), ("on", False, False),
    ("off", None, False), ("off", True, False), ("off", False, False),
])
def test_precedence_off_then_the_layer_then_the_global_mode(mode, setting, uses):
    with memory.spike_products(mode):
        assert product_rule.layer_uses_products(setting) is uses


@needs_host
def test_switches_turn_the_products_on_and_off_for_a_layer(calls, monkeypatch):
    layer = nn.Linear(301, 257)
    x = _spikes(5, 173, 301, rate=0.1)
    dense = F.linear(x, layer.weight, layer.bias)
    assert torch.equal(memory.linear_after_spikes(layer, x), dense) and calls == []  # "auto": BLAS
    with memory.spike_products("on"):
        assert not torch.equal(memory.linear_after_spikes(layer, x), dense)
        layer.spike_product = False
        assert torch.equal(memory.linear_after_spikes(layer, x), dense)
    assert calls == ["product"]
    layer.spike_product = True
    memory.linear_after_spikes(layer, x)
    assert calls == ["product", "product"]
    monkeypatch.setenv(product_rule.ENV_VAR, "0")  # off beats the layer's True
    assert torch.equal(memory.linear_after_spikes(layer, x), dense)
    assert calls == ["product", "product"]


# ---------------------------------------------------------------------------------------------
# the paths it picks, and their results
# ---------------------------------------------------------------------------------------------

def _run(fn, x, weight, bias, seed=7):
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    bias = bias.clone().requires_grad_()
    out = fn(x, weight, bias)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return out, torch.autograd.grad(out, [x, weight, bias], g)


def _linear_after_spikes(x, weight, bias):
    layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
    del layer.weight, layer.bias
    layer.weight, layer.bias = weight, bias  # the tensors themselves, so gradients reach them
    return memory.linear_after_spikes(layer, x)


@needs_host
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("shape, n_out", [((5, 173, 333), 301), ((7, 131, 257), 509), ((3, 3, 357, 131), 129)],
                         ids=["865x333-301", "917x257-509", "3213x131-129"])
@pytest.mark.parametrize("entry", ["linear_after_spikes", "spike_linear"])
def test_products_equal_the_dense_path_within_tolerance(entry, shape, n_out, dtype, calls):
    fn = _linear_after_spikes if entry == "linear_after_spikes" else memory.spike_linear
    rows, n_in = torch.Size(shape[:-1]).numel(), shape[-1]
    rate = product_rule.weight_grad_max_rate(rows, n_in, n_out) / 2
    assert rate > 0  # sizes the rule gives to both products (in float32)
    x = _spikes(*shape, rate=rate, dtype=dtype, seed=rows)
    weight = torch.randn(n_out, n_in, dtype=dtype) / n_in ** 0.5
    bias = torch.randn(n_out, dtype=dtype)
    with memory.spike_products("on"):
        out, (gx, gw, gb) = _run(fn, x, weight, bias)
    # both products ran (float64: the weight gradient by BLAS, as the rule says)
    assert calls == ["product"] and out.grad_fn.value == (1.0 if dtype == torch.float32 else None)
    ref, (gx_ref, gw_ref, gb_ref) = _run(F.linear, x, weight, bias)
    with torch.no_grad():
        assert torch.equal(out, ordered_spike_linear(x, weight, bias))
    assert_close_scaled(out, ref, RTOL[dtype], "output")
    assert_close_scaled(gw, gw_ref, RTOL[dtype], "weight gradient")
    assert torch.equal(gx, gx_ref) and torch.equal(gb, gb_ref)
    with memory.spike_products("on"), torch.no_grad():
        assert torch.equal(fn(x, weight, bias), out)  # without a graph: the same bits


@needs_host
def test_few_rows_take_the_forward_product_and_the_dense_weight_gradient(calls):
    n_in, n_out = 301, 257
    x = _spikes(3, 41, n_in, rate=0.1)  # 123 rows
    assert product_rule.forward_max_rate(123, n_in, n_out) > 0.1 and product_rule.weight_grad_max_rate(123, n_in, n_out) == 0
    weight, bias = torch.randn(n_out, n_in), torch.randn(n_out)
    with memory.spike_products("on"):
        out, (gx, gw, gb) = _run(_linear_after_spikes, x, weight, bias)
    assert calls == ["product"] and out.grad_fn.value is None  # weight gradient by BLAS
    _, (gx_ref, gw_ref, gb_ref) = _run(F.linear, x, weight, bias)
    assert torch.equal(gw, gw_ref) and torch.equal(gx, gx_ref) and torch.equal(gb, gb_ref)


@needs_host
def test_spikes_denser_than_the_rule_allows_take_blas_bit_for_bit(calls):
    rows, n_in, n_out = 865, 333, 301
    x = _spikes(rows, n_in, rate=min(1.0, product_rule.forward_max_rate(rows, n_in, n_out) + 0.2))
    weight, bias = torch.randn(n_out, n_in), torch.randn(n_out)
    with memory.spike_products("on"):
        out, grads = _run(_linear_after_spikes, x, weight, bias)
    assert calls == ["declined"]  # counted in the one checking pass, then left to BLAS
    ref, grads_ref = _run(F.linear, x, weight, bias)
    assert torch.equal(out, ref) and all(torch.equal(a, b) for a, b in zip(grads, grads_ref))


@needs_host
@pytest.mark.parametrize("kind", ["floats", "graded", "negative-zero", "two-values", "narrow", "tiny"])
def test_what_is_not_binary_spikes_or_too_small_takes_the_dense_path(kind, calls):
    rows, n_in, n_out = 865, 333, 301
    x = _spikes(rows, n_in, rate=0.1)
    if kind == "floats":
        x = torch.rand(rows, n_in)
    elif kind == "graded":
        x = x * 0.5  # graded spikes: 0 or graded_spikes_factor
    elif kind == "negative-zero":
        x[0, :5] = -0.0
    elif kind == "two-values":
        x[3, 3] = 2.0
    elif kind == "narrow":
        n_out = 10
    elif kind == "tiny":
        x = x[:7]
    weight, bias = torch.randn(n_out, n_in), torch.randn(n_out)
    for entry in (_linear_after_spikes, memory.spike_linear):
        with memory.spike_products("on"):
            out, grads = _run(entry, x, weight, bias)
        ref, grads_ref = _run(F.linear, x, weight, bias)
        assert torch.equal(out, ref) and all(torch.equal(a, b) for a, b in zip(grads, grads_ref)), entry
    if kind in ("narrow", "tiny"):
        assert calls == []  # the sizes alone decide: not even a checking pass
    else:
        assert set(calls) == {"declined"}


@needs_host
def test_a_compiled_layer_keeps_f_linear(calls):
    layer = nn.Linear(333, 301)
    x = _spikes(865, 333, rate=0.1)
    compiled = torch.compile(lambda t: memory.linear_after_spikes(layer, t), backend="aot_eager", fullgraph=True)
    with memory.spike_products("on"):
        out = compiled(x)
    assert calls == [] and torch.equal(out, F.linear(x, layer.weight, layer.bias))


@needs_host
def test_spike_linear_layer_follows_the_global_mode_and_keeps_bits(calls):
    layer = memory.memory_lean(nn.Linear(333, 301))
    assert layer.spike_product is None
    x = _spikes(5, 173, 333, rate=0.1).requires_grad_()
    with memory.spike_products("on"):
        out = layer(x)
    assert calls == ["product"] and out.grad_fn.packed is not None  # products, and the input kept as bits
    assert layer(x).grad_fn.value is None and calls == ["product"]  # "auto" outside time chunks: BLAS


@needs_host
def test_hooks_on_the_layer_see_the_call_with_products(calls):
    layer = nn.Linear(333, 301)
    seen = []
    layer.register_forward_pre_hook(lambda m, args: seen.append(("pre", args[0].shape)))
    layer.register_forward_hook(lambda m, args, out: seen.append(("post", out)))
    x = _spikes(865, 333, rate=0.1)
    with memory.spike_products("on"):
        out = memory.linear_after_spikes(layer, x)
    assert calls == ["product"] and "forward" not in layer.__dict__  # the class's forward is back
    assert seen[0] == ("pre", x.shape) and seen[1][0] == "post" and seen[1][1] is out
