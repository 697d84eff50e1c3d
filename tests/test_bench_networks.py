"""Issues 18 and 19: the training sections' compiled providers, and the net3 and open_neuromorphic
sections (that every compiled case compiles afresh is tested in test_bench.py, beside the
neurons section's). Tiny sizes; torch.compile through its ``aot_eager`` backend (Dynamo and
AOTAutograd trace the fused op as inductor's would see it, without inductor's C++ build),
except one inductor run that proves the fused network compiles for real on the CPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fusedsnn import population
from fusedsnn.bench import modes, net3, open_neuromorphic, study, training

pytest.importorskip("snntorch")

CPU = torch.device("cpu")
COMPILED_TWINS = ("fused-compiled", "snntorch-tutorial-compiled", "snntorch-hoisted-compiled")


# ---------------------------------------------------------------------------------------------
# compiled training providers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", COMPILED_TWINS)
@pytest.mark.parametrize("network", ["DSNN", "CSNN"])
def test_compiled_training_provider_rows(network, provider):
    size = {"hidden": 8} if network == "DSNN" else {"channels": (2, 3)}
    row = training.run_training_case(network, provider, 2, 2, CPU, repeats=1, warmup=1,
                                     compile_backend="aot_eager", compile_max_t=25, **size)
    assert row["provider"] == provider and row["mode"] == "compile" and row["execution_mode"] == "compiled"
    assert row["compile_backend"] == "aot_eager" and row["compile_s"] >= 0
    assert row["median_s"] > 0 and row["q20_s"] <= row["median_s"] <= row["q80_s"] and row["images_per_s"] > 0
    assert "skipped" not in row


def test_compiled_shd_row_and_eager_rows_have_no_compile_time():
    row = training.run_shd_case("snntorch-hoisted-compiled", 2, 3, CPU, repeats=1, hidden=4, warmup=1,
                                compile_max_t=25, compile_backend="aot_eager")
    assert row["network"] == "SHD" and row["execution_mode"] == "compiled" and row["compile_s"] >= 0
    assert row["compile_backend"] == "aot_eager"
    eager = training.run_shd_case("fused", 2, 3, CPU, repeats=1, hidden=4, warmup=1)
    assert eager["execution_mode"] == "eager" and eager["compile_s"] is None


def test_fused_network_compiles_with_inductor_on_the_cpu_and_computes_the_eager_loss():
    """The fused neurons under torch.compile (inductor: C++ code generation on the CPU) train the
    DSNN to the same loss as eager, step by step, from the same start."""
    torch.manual_seed(1)
    x, y = torch.rand(3, 784) * 2, torch.randint(0, 10, (3,))
    losses = {}
    for provider in ("fused", "fused-compiled"):
        torch.manual_seed(0)
        model = training.make_model("DSNN", 3, 4, hidden=12)
        forward_loss = training.forward_loss_fn(model)
        if provider == "fused-compiled":
            forward_loss = training.compile_fresh(forward_loss, "inductor")
        optimizer = training.make_optimizer(model.parameters(), CPU)
        losses[provider] = []
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            loss = forward_loss(x, y)
            loss.backward()
            optimizer.step()
            losses[provider].append(loss.item())
    torch.testing.assert_close(losses["fused-compiled"], losses["fused"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("run", ["training", "shd"])
def test_compiled_training_steps_above_the_budget_are_skipped_with_the_reason(run):
    if run == "training":
        row = training.run_training_case("DSNN", "snntorch-hoisted-compiled", 2, 30, CPU, repeats=1,
                                         hidden=4, compile_max_t=25)
    else:
        row = training.run_shd_case("fused-compiled", 2, 30, CPU, repeats=1, hidden=4, compile_max_t=25)
    assert "compile budget" in row["skipped"] and "T=30 " in row["skipped"]
    assert row["median_s"] is None and row["images_per_s"] is None and row["execution_mode"] == "compiled"


@pytest.mark.parametrize("provider", ["snntorch-graph", "fused-host", "nope"])
def test_training_refuses_an_unknown_provider_naming_it(provider):
    with pytest.raises(ValueError, match=f"provider must be one of .*{provider}"):
        training.run_training_case("DSNN", provider, 2, 2, CPU, repeats=1, hidden=4)


def test_full_plans_add_the_compiled_twins_with_the_budget_and_quick_plans_do_not():
    full = SimpleNamespace(quick=False, repeats=1, compile_max_t=None)
    labels = [run.label for run in study.plan_throughput(full, CPU)]
    for net in ("DSNN", "CSNN"):
        for provider in COMPILED_TWINS:
            assert f"throughput {net} {provider}" in labels
    assert [run.label for run in study.plan_shd(full, CPU)] == [
        f"shd {p}" for p in ("fused", "snntorch-tutorial", "snntorch-hoisted", *COMPILED_TWINS)]
    quick = SimpleNamespace(quick=True, repeats=1)
    assert not any("compiled" in run.label for run in study.plan_throughput(quick, CPU) + study.plan_shd(quick, CPU))


def test_full_throughput_section_compares_each_mode_with_its_own_fastest_twin(monkeypatch):
    """A full throughput section (measurements faked): compiled rows get a compiled baseline,
    eager rows an eager one; the budget reaches every compiled run."""
    seen = []

    def fake(kind, provider, batch, num_steps, device, repeats, hidden=1000, channels=(12, 64), neuron="leaky",
             outputs=10, autocast_dtype=None, warmup=2, min_time_s=0.0, compile_max_t=None):
        seen.append((provider, compile_max_t))
        compiled = provider.endswith("-compiled")
        median = {"fused": 1.0, "fused-reference": 5.0, "snntorch-tutorial": 4.0, "snntorch-hoisted": 3.0,
                  "fused-compiled": 0.5, "snntorch-tutorial-compiled": 0.8,
                  "snntorch-hoisted-compiled": 0.6}[provider]
        return {"network": kind, "provider": provider, "batch": batch, "num_steps": num_steps, "hidden": hidden,
                "channels": list(channels) if kind == "CSNN" else None, "neuron": neuron, "outputs": outputs,
                "precision": "float32", "device": "cpu", "mode": "compile" if compiled else "eager",
                "median_s": median, "q20_s": median, "q80_s": median, "images_per_s": batch / median,
                "achieved_tflops": 1e-6}

    monkeypatch.setattr(training, "run_training_case", fake)
    args = SimpleNamespace(quick=False, repeats=1, compile_max_t=17)
    rows = study.SECTIONS["throughput"](args, CPU, lambda label: None)
    study._training_speedups(rows)
    assert {c for p, c in seen if p.endswith("-compiled")} == {17}
    assert {c for p, c in seen if not p.endswith("-compiled")} == {None}
    by = {(r["network"], r["provider"]): r for r in rows}
    for net in ("DSNN", "CSNN"):
        assert by[net, "fused"]["baseline"] == "snntorch-hoisted" and by[net, "fused"]["speedup_vs_baseline"] == 3.0
        assert by[net, "fused-compiled"]["baseline"] == "snntorch-hoisted-compiled"
        assert by[net, "fused-compiled"]["speedup_vs_baseline"] == pytest.approx(1.2)
        assert by[net, "fused-reference"]["baseline"] == "snntorch-hoisted"
    for r in rows:
        assert by[r["network"], r["baseline"]]["execution_mode"] == r["execution_mode"]


def test_training_speedups_read_the_mode_from_a_compiled_providers_name():
    def row(provider, median):
        return {"network": "SHD", "batch": 2, "num_steps": 3, "hidden": 4, "channels": None, "neuron": "x",
                "outputs": 20, "precision": "float32", "provider": provider, "median_s": median,
                "q20_s": median, "q80_s": median}

    rows = [row("fused", 1.0), row("snntorch-hoisted", 2.0), row("fused-compiled", 1.0),
            row("snntorch-hoisted-compiled", 1.5), {**row("snntorch-tutorial-compiled", None), "skipped": "budget"}]
    study._training_speedups(rows)
    assert [r["execution_mode"] for r in rows] == ["eager", "eager", "compiled", "compiled", "compiled"]
    assert rows[0]["speedup_vs_baseline"] == 2.0 and rows[2]["speedup_vs_baseline"] == 1.5
    assert rows[2]["baseline"] == "snntorch-hoisted-compiled" and rows[4]["speedup_vs_baseline"] is None


# ---------------------------------------------------------------------------------------------
# net3
# ---------------------------------------------------------------------------------------------

def test_net3_rows_have_the_fields_and_compare_within_a_mode():
    rows = net3.run_case(net3.Net3Case(3, 4), net3.PROVIDERS, repeats=2, warmup=1, compile_max_t=3,
                         compile_backend="aot_eager")
    by = {r["provider"]: r for r in rows}
    assert list(by) == list(net3.PROVIDERS)
    for r in rows:
        if r.get("skipped"):  # SpikingJelly not importable here
            assert r["provider"] == "spikingjelly" and "spikingjelly" in r["skipped"]
            continue
        assert r["execution_mode"] == modes.execution_mode(r["provider"])
        assert r["q20_s"] <= r["median_s"] <= r["q80_s"] and r["ms_per_step"] == pytest.approx(1e3 * r["median_s"])
        assert r["baseline"] is not None and by[r["baseline"]]["execution_mode"] == r["execution_mode"]
        assert r["speedup_vs_baseline"] == pytest.approx(by[r["baseline"]]["median_s"] / r["median_s"])
        assert (r["compile_s"] is not None) == (r["execution_mode"] == "compiled")
        assert len(r["layer_spike_rates"]) == 3 and all(0 < rate < 1 for rate in r["layer_spike_rates"])


def test_net3_skips_with_reasons(monkeypatch):
    monkeypatch.setattr(net3, "_spikingjelly_unavailable", lambda: "spikingjelly: not importable (test)")
    rows = net3.run_case(net3.Net3Case(4, 2), net3.PROVIDERS, repeats=1, warmup=1, compile_max_t=3)
    by = {r["provider"]: r for r in rows}
    assert by["spikingjelly"]["skipped"] == "spikingjelly: not importable (test)"
    for p in ("fused-compiled", "snntorch-compiled"):
        assert "compile budget" in by[p]["skipped"] and by[p]["median_s"] is None and by[p]["baseline"] is None
    assert by["fused"]["baseline"] == "snntorch" and by["fused"]["median_s"] > 0


def test_net3_fused_and_snntorch_give_the_same_spikes_loss_and_gradients():
    """One step from the same weights. Tolerance: both run the same float32 operations in
    snnTorch's order, but the fused network's Linear multiplies all T * B rows at once and
    snnTorch's later layers B rows per step, so BLAS may round a current differently in the
    last bit, which can flip a spike sitting exactly at threshold: at most 0.1 % of the spikes
    may differ, the loss to 1e-5 relative, the weight gradients to 1e-4 of their largest entry."""
    case = net3.Net3Case(T=10, B=6, seed=3)
    x, y, weights = net3.operands(case)
    out = {}
    for provider in ("fused", "snntorch"):
        model, forward = net3.build_forward(case, provider, weights)
        spk = forward(x)[0]
        loss = population.ce_rate_loss(spk, y, net3.NUM_CLASSES)
        loss.backward()
        out[provider] = spk, loss, [p.grad for p in model.parameters()]
    (spk_f, loss_f, grads_f), (spk_s, loss_s, grads_s) = out["fused"], out["snntorch"]
    assert spk_f.shape == (10, 6, 10) and 0 < spk_f.mean() < 1
    assert (spk_f != spk_s).float().mean() <= 1e-3
    torch.testing.assert_close(loss_f, loss_s, rtol=1e-5, atol=0)
    for g_f, g_s in zip(grads_f, grads_s):
        torch.testing.assert_close(g_f, g_s, rtol=0, atol=1e-4 * float(g_s.abs().max()))


@pytest.mark.parametrize("quick,expected", [(True, (8, 32)), (False, (50, 32))], ids=["quick", "full"])
def test_net3_section_sizes_and_budget(monkeypatch, quick, expected):
    calls = []
    monkeypatch.setattr(net3, "run_case", lambda case, providers, **kw: calls.append((case, providers, kw)) or [])
    net3.section_net3(SimpleNamespace(quick=quick, repeats=2), CPU, lambda label: None)
    case, providers, kw = calls[0]
    assert (case.T, case.B) == expected and kw["compile_max_t"] == net3.COMPILE_MAX_T == 50
    assert any(p.endswith("-compiled") for p in providers) == (not quick)
    net3.section_net3(SimpleNamespace(quick=False, repeats=2, compile_max_t=7), CPU, lambda label: None)
    assert calls[1][2]["compile_max_t"] == 7


@pytest.mark.parametrize("field,value", [("T", 0), ("B", -1), ("spike_rate", 1.5), ("beta", 2.0)])
def test_net3_case_names_a_bad_argument(field, value):
    with pytest.raises(ValueError, match=field):
        net3.Net3Case(**{"T": 2, "B": 2, field: value})


# ---------------------------------------------------------------------------------------------
# open_neuromorphic
# ---------------------------------------------------------------------------------------------

def test_open_neuromorphic_rows_have_the_fields_and_the_linear_is_no_contender():
    case = open_neuromorphic.OnCase(n=16, T=4, B=2)
    rows = open_neuromorphic.run_case(case, repeats=2, warmup=1, compile_max_t=4, compile_backend="aot_eager")
    by = {r["provider"]: r for r in rows}
    assert list(by) == list(open_neuromorphic.PROVIDERS)
    linear = by["linear-only"]
    assert linear["median_s"] > 0 and linear["baseline"] is None and linear["speedup_vs_baseline"] is None
    for r in rows:
        if r.get("skipped"):
            assert r["provider"] == "spikingjelly" and "spikingjelly" in r["skipped"]
            continue
        assert r["q20_s"] <= r["median_s"] <= r["q80_s"] and r["peak_memory_bytes"] is None  # CUDA only
        assert r["execution_mode"] == modes.execution_mode(r["provider"])
        assert r["baseline"] != "linear-only"
        if r["provider"] != "linear-only":
            assert by[r["baseline"]]["execution_mode"] == r["execution_mode"]
        eager_contender = r["execution_mode"] == "eager" and r["provider"] != "linear-only"
        assert (r["neuron_overhead_vs_linear"] is not None) == eager_contender
        assert (r["compile_s"] is not None) == (r["execution_mode"] == "compiled")
    for p in ("fused", "fused-linear-leaky"):
        assert by[p]["target_neuron_overhead"] == 0.10 and by[p]["target_speedup_vs_spikingjelly"] == 2.0
        assert by[p]["neuron_overhead_vs_linear"] == pytest.approx(by[p]["median_s"] / linear["median_s"] - 1)


def test_open_neuromorphic_compiled_providers_are_skipped_at_t500_with_the_budget():
    case = open_neuromorphic.OnCase(n=4, T=500, B=1)
    for provider in ("fused-compiled", "snntorch-compiled"):
        assert "compile budget" in open_neuromorphic.unavailable(case, provider)
    rows = open_neuromorphic.run_case(open_neuromorphic.OnCase(n=4, T=30, B=1),
                                      ["fused", "snntorch", "fused-compiled"], repeats=1)
    assert "compile budget" in rows[2]["skipped"] and rows[2]["median_s"] is None


def test_open_neuromorphic_providers_compute_the_same_spikes_and_weight_gradient():
    """fused, fused-linear-leaky and snnTorch from the same Linear on the same input: the Linear's
    product is the same BLAS call for fused and snnTorch (over the whole sequence); the fused op
    sums its products in the host backend's order, so up to 0.1 % of the spikes may flip at
    threshold and the weight gradients agree to 1e-4 of their largest entry."""
    case = open_neuromorphic.OnCase(n=24, T=12, B=3)
    data = open_neuromorphic.operands(case)
    out = {}
    for provider in ("fused", "fused-linear-leaky", "snntorch"):
        step, lin = open_neuromorphic.make_step(case, provider, data)
        out[provider] = step(), lin.weight.grad.clone()
    spk, grad = out["fused"]
    assert spk.shape == (12, 3, 24) and 0 < spk.mean() < 1
    for provider in ("fused-linear-leaky", "snntorch"):
        assert (out[provider][0] != spk).float().mean() <= 1e-3
        torch.testing.assert_close(out[provider][1], grad, rtol=0, atol=1e-4 * float(grad.abs().max()))


@pytest.mark.parametrize("quick,device,expected", [
    (True, "cpu", [(512, 50, 16)]), (False, "cpu", [(512, 500, 16)]),
    (True, "cuda", [(16384, 500, 16)]), (False, "cuda", [(4096, 500, 16), (8192, 500, 16), (16384, 500, 16)]),
], ids=["cpu-quick", "cpu-full", "cuda-quick", "cuda-full"])
def test_open_neuromorphic_sizes(quick, device, expected):
    assert open_neuromorphic.sizes(quick, torch.device(device)) == expected


def test_published_figures_are_printed_beside_cuda_rows_only():
    row = {"provider": "fused", "n": 16384, "T": 500, "B": 16, "median_s": 0.05, "peak_memory_bytes": 4e9}
    assert open_neuromorphic.published_table([dict(row, device="cpu")]) == ""
    text = open_neuromorphic.published_table([dict(row, device="cuda:0")])
    assert "published: Spyx fp16 0.047 s" in text and "published: Norse, torch.compile 0.11 s, 5.43 GB" in text
    assert "published: SpikingJelly CuPy 0.118 s, 5.96 GB" in text and "RTX 4090" in text
    assert "measured here (cuda:0): fused 0.05 s, 4.00 GB" in text


@pytest.mark.parametrize("field,value", [("n", 0), ("T", 1.5), ("B", True), ("beta", -0.1)])
def test_open_neuromorphic_case_names_a_bad_argument(field, value):
    with pytest.raises(ValueError, match=field):
        open_neuromorphic.OnCase(**{"n": 4, field: value})


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------

def test_sections_are_registered_and_named_in_the_help():
    import argparse

    from fusedsnn.cli import bench as bench_cli

    assert {"net3", "open_neuromorphic"} <= set(study.SECTIONS)
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assert "net3" in help_text and "open_neuromorphic" in help_text


def test_net3_spike_products_provider_takes_products_and_matches_fused(monkeypatch):
    """``fused-spike-products``: the hidden Linear layers take the host's spike products where
    the rule allows (here the first layer: 320 rows x 256 -> 512 at 20 % spikes) and the step
    matches ``fused`` within the products' rounding (sums in another order: at most 0.5 % of
    spikes may flip at threshold, loss to 1e-4 relative, gradients to 1e-3 of their largest)."""
    from fusedsnn.memory import spike_layers

    calls = []
    real = spike_layers._with_products

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(spike_layers, "_with_products", spy)
    case = net3.Net3Case(T=10, B=32, seed=5)
    x, y, weights = net3.operands(case)
    out = {}
    for provider in ("fused", "fused-spike-products"):
        model, forward = net3.build_forward(case, provider, weights)
        spk = forward(x)[0]
        loss = population.ce_rate_loss(spk, y, net3.NUM_CLASSES)
        loss.backward()
        out[provider] = spk, loss, [p.grad for p in model.parameters()]
    assert calls and calls[0] == (512, 256)
    (spk_f, loss_f, grads_f), (spk_p, loss_p, grads_p) = out["fused"], out["fused-spike-products"]
    assert (spk_f != spk_p).float().mean() <= 5e-3
    torch.testing.assert_close(loss_p, loss_f, rtol=1e-4, atol=0)
    for g_p, g_f in zip(grads_p, grads_f):
        torch.testing.assert_close(g_p, g_f, rtol=0, atol=1e-3 * float(g_f.abs().max()))
