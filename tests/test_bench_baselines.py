"""Issue 18: the benchmark's baselines are the strongest ones, compared mode with mode, and its
statistics cannot lie."""

from __future__ import annotations

import pytest
import torch

from fusedsnn.bench import neurons

pytest.importorskip("snntorch")


def _graph_nodes(tensors) -> list[str]:
    seen, names, todo = set(), [], [t.grad_fn for t in tensors if t.grad_fn is not None]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("kind", neurons.NEURON_KINDS)
def test_snntorch_provider_steps_unbound_inputs_not_selects(kind):
    """x[t] on an x that requires grad puts a SelectBackward per step in the graph, each of which
    allocates a zero tensor of x's full size in the backward (O(T^2)); unbind puts one node."""
    case = neurons.NeuronCase(kind, 6, 2, 4, torch.float32, torch.device("cpu"))
    x = torch.randn(6, 2, 4, requires_grad=True)
    names = _graph_nodes(neurons._snntorch_call(case)(x))
    assert not any(n.startswith("SelectBackward") for n in names), names
    assert sum(n.startswith("UnbindBackward") for n in names) == 1


# ---------------------------------------------------------------------------------------------
# providers
# ---------------------------------------------------------------------------------------------

def test_cpu_offers_no_graph_provider_and_says_why_a_case_is_skipped():
    cpu = torch.device("cpu")
    assert "snntorch-graph" not in neurons.baseline_providers(cpu, torch.float32)
    case = neurons.NeuronCase("Leaky", 100, 2, 8, torch.float32, cpu)
    assert "CUDA" in neurons.unavailable(case, "snntorch-graph", "forward")
    assert "compile budget" in neurons.unavailable(case, "snntorch-compiled", "forward")
    assert neurons.unavailable(case, "snntorch-compiled", "forward", compile_max_t=100) is None
    rows = neurons.run_interleaved(case, ["snntorch-compiled", "snntorch-graph"], "forward", repeats=2)
    assert [r["execution_mode"] for r in rows] == ["compiled", "graph"]
    assert all(r["median_s"] is None and r["skipped"] for r in rows)


def test_compiled_provider_reports_its_compile_time(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)  # no inductor build here
    case = neurons.NeuronCase("Leaky", 3, 2, 8, torch.float32, torch.device("cpu"))
    rows = neurons.run_interleaved(case, ["snntorch", "snntorch-compiled"], "forward+backward", repeats=2)
    assert len(compiled) == 1
    eager, comp = rows
    assert eager["compile_s"] is None and comp["compile_s"] > 0 and comp["execution_mode"] == "compiled"


def test_spikingjelly_provider_runs_or_says_why_not():
    case = neurons.NeuronCase("Leaky", 4, 2, 8, torch.float32, torch.device("cpu"))
    reason = neurons._spikingjelly_unavailable()
    if reason is not None:
        row = neurons.run_case(case, "spikingjelly", "forward")
        assert row["skipped"] == reason and "spikingjelly" in reason
        return
    row = neurons.run_case(case, "spikingjelly", "forward+backward", repeats=2)
    assert row["median_s"] > 0 and row["execution_mode"] == "eager"
    synaptic = neurons.NeuronCase("Synaptic", 4, 2, 8, torch.float32, torch.device("cpu"))
    assert "no Synaptic" in neurons.unavailable(synaptic, "spikingjelly", "forward")


def test_hoisted_twin_computes_the_same_and_runs_the_first_layer_once():
    from fusedsnn.bench import training
    from fusedsnn.models import DSNN

    torch.manual_seed(0)
    model = DSNN(num_inputs=784, num_hidden=20, num_outputs=10, num_steps=5)
    x = torch.rand(3, 784) * 2
    calls = []
    handle = model.fcs[0].register_forward_hook(lambda *a: calls.append(1))
    tutorial = training.SnnTorchTwin(model, "tutorial")(x)
    n_tutorial = len(calls)
    hoisted = training.SnnTorchTwin(model, "hoisted")(x)
    handle.remove()
    assert n_tutorial == 5 and len(calls) - n_tutorial == 1
    assert torch.equal(tutorial[0], hoisted[0])
    torch.testing.assert_close(tutorial[1], hoisted[1])


# ---------------------------------------------------------------------------------------------
# same mode against same mode
# ---------------------------------------------------------------------------------------------

def _row(provider, median, how=None):
    r = {"neuron": "Leaky", "T": 25, "B": 128, "N": 1000, "dtype": "float32", "mode": "forward+backward",
         "provider": provider, "median_s": median, "q20_s": median and median * 0.9, "q80_s": median and median * 1.1}
    r["execution_mode"] = how or neurons.execution_mode(provider)
    return r


def test_speedups_are_against_the_fastest_baseline_of_the_same_mode_only():
    from fusedsnn.bench import study

    rows = [_row("fused-host", 1.0), _row("snntorch", 8.0), _row("spikingjelly", 4.0),
            _row("fused-host-compiled", 0.9), _row("snntorch-compiled", 3.0),
            _row("fused-triton-graph", 0.5), {**_row("snntorch-graph", None), "skipped": "no CUDA"}]
    study._add_speedups(rows)
    by = {r["provider"]: r for r in rows}
    assert by["fused-host"]["baseline"] == "spikingjelly" and by["fused-host"]["speedup_vs_baseline"] == 4.0
    assert by["fused-host-compiled"]["baseline"] == "snntorch-compiled"
    assert by["fused-host-compiled"]["speedup_vs_baseline"] == pytest.approx(3.0 / 0.9)
    assert by["fused-triton-graph"]["speedup_vs_baseline"] is None  # no graph baseline: no ratio at all
    for r in rows:
        if r.get("baseline"):
            assert by[r["baseline"]]["execution_mode"] == r["execution_mode"]


def test_training_rows_compare_within_their_step_mode():
    from fusedsnn.bench import study

    def train(provider, mode, median):
        return {"network": "DSNN", "batch": 128, "num_steps": 25, "hidden": 1000, "channels": None,
                "neuron": "leaky", "outputs": 10, "precision": "float32", "provider": provider, "mode": mode,
                "median_s": median, "q20_s": median, "q80_s": median}

    rows = [train("fused", "eager", 1.0), train("snntorch-tutorial", "eager", 5.0),
            train("snntorch-hoisted", "eager", 3.0), train("fused", "compile", 0.8),
            train("snntorch-hoisted", "compile", 1.6)]
    study._training_speedups(rows)
    assert rows[0]["baseline"] == "snntorch-hoisted" and rows[0]["speedup_vs_baseline"] == 3.0
    assert rows[3]["baseline"] == "snntorch-hoisted" and rows[3]["speedup_vs_baseline"] == 2.0
    assert rows[3]["execution_mode"] == "compiled"


# ---------------------------------------------------------------------------------------------
# statistics that cannot lie
# ---------------------------------------------------------------------------------------------

def test_quantiles_of_a_noisy_few_samples_stay_within_the_samples():
    import random
    import statistics

    from fusedsnn.bench import timing

    # the old exclusive quantiles extrapolated: one slow sample of two put q20 below zero
    assert statistics.quantiles([0.001, 0.05], n=5)[0] < 0
    rng = random.Random(0)
    for _ in range(500):
        v = [rng.choice((1e-4, 1e-3, 1.0)) * rng.random() + 1e-6 for _ in range(rng.randint(1, 6))]
        median, q20, q80 = timing.sample_quantiles(v)
        assert min(v) <= q20 <= median <= q80 <= max(v)


def test_interleaved_timing_under_a_noisy_fake_clock_never_goes_negative(monkeypatch):
    import itertools

    from fusedsnn.bench import study

    ticks = itertools.accumulate(itertools.cycle([1e-4, 5e-2, 2e-4, 1e-5, 3e-1]))
    monkeypatch.setattr(neurons.time, "perf_counter", lambda: next(ticks))
    case = neurons.NeuronCase("Leaky", 2, 1, 8, torch.float32, torch.device("cpu"))
    rows = neurons.run_interleaved(case, ["fused-reference", "snntorch"], "forward", repeats=2, warmup=0)
    study._add_speedups(rows)
    for r in rows:
        assert 0 < r["q20_s"] <= r["median_s"] <= r["q80_s"]
        assert r["speedup_low"] is None or 0 < r["speedup_low"] <= r["speedup_high"]


def test_copy_bandwidth_is_the_copys_bytes_over_the_copys_own_time(monkeypatch):
    from fusedsnn.bench import timing

    monkeypatch.setattr(timing, "measure", lambda *a, **k: timing.Timing(0.002, 0.001, 0.003, 3))
    assert timing.copy_bandwidth(8 << 20, "cpu") == pytest.approx(2 * (8 << 20) / 0.002)


def test_progress_total_is_fixed_up_front(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from fusedsnn.bench import study
    from fusedsnn.cli import bench as bench_cli

    monkeypatch.setattr(bench_cli.plots, "plot_section", lambda *a, **k: None)
    calls = []

    def unplanned(args, device, progress):  # a section without a plan, reporting 5 steps
        for i in range(5):
            progress(f"step {i}")
        calls.append(1)
        return [{"median_s": 1.0}]

    monkeypatch.setitem(study.SECTIONS, "unplanned", unplanned)
    monkeypatch.setattr(bench_cli, "SECTIONS", study.SECTIONS)
    args = SimpleNamespace(quick=True, device="cpu", out=str(tmp_path), sections="unplanned,time_split", repeats=1)
    monkeypatch.setattr(study.training, "time_split", lambda *a, **k: {"network": a[0], "median_s": 1.0})
    seen = []
    real = bench_cli._Progress.start_run

    def spy(self, label):
        seen.append(self.total)
        real(self, label)

    monkeypatch.setattr(bench_cli._Progress, "start_run", spy)
    assert bench_cli.run(args) == 0
    out = capsys.readouterr().out
    assert set(seen) == {3} and "[1/3 runs" in out and "[3/3 runs" in out


def test_environment_names_commit_dirty_flag_load_and_versions():
    from fusedsnn.bench import study

    env = study.environment(torch.device("cpu"))
    for key in ("commit", "dirty", "load_average_at_start", "torch", "snntorch", "spikingjelly", "triton"):
        assert key in env
    assert env["commit"] is None or len(env["commit"]) == 40


def test_all_to_all_snntorch_provider_steps_unbound_inputs():
    from fusedsnn.bench import all_to_all

    case = all_to_all.AllToAllCase("RLeaky", 5, 2, 8, torch.device("cpu"))
    step, x = all_to_all.make_step(case, "snntorch")
    names = _graph_nodes([step()])  # the nodes outlive the backward that freed their buffers
    assert not any(n.startswith("SelectBackward") for n in names)
    assert sum(n.startswith("UnbindBackward") for n in names) == 1
