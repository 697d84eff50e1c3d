"""The benchmark code paths run (smoke, tiny sizes) and the analytic counts are right."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from fusedsnn.bench import neurons, study, training
from fusedsnn.kernels.spec import LIFSpec, bytes_per_neuron_step
from fusedsnn.models import CSNN, DSNN
from fusedsnn.surrogate import atan

pytest.importorskip("snntorch")


def test_study_macs_match_hand_counts():
    dsnn = DSNN(num_steps=25)
    assert training.forward_macs_per_image(dsnn) == (784 * 1000 + 1000 * 10) * 25
    csnn = CSNN(num_steps=25)
    conv1 = 12 * 1 * 25 * 24 * 24
    conv2 = 64 * 12 * 25 * 8 * 8
    fc = 64 * 4 * 4 * 10
    assert training.forward_macs_per_image(csnn) == (conv1 + conv2 + fc) * 25
    assert training.training_macs_per_image(csnn) == 3 * training.forward_macs_per_image(csnn)


def test_bytes_model_of_the_hot_path():
    spec = LIFSpec(False, 0, 0, True, atan())
    assert bytes_per_neuron_step(spec, 4, backward=False) == 16
    assert bytes_per_neuron_step(spec, 4, backward=True) == 16
    assert bytes_per_neuron_step(spec, 2, backward=True, need_param_grads=(True, True, False, False)) == 14


@pytest.mark.parametrize("neuron", ["leaky", "rsynaptic"])
def test_snntorch_twin_matches_the_fused_model(neuron):
    torch.manual_seed(0)
    model = DSNN(num_inputs=784, num_hidden=20, num_outputs=10, num_steps=6, neuron=neuron)
    x = torch.rand(3, 784) * 2
    twin = training.SnnTorchTwin(model)
    for _ in range(2):  # twice: the twin must reset its state between calls
        a, b = model(x), twin(x)
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)


def test_training_case_and_sections_run(tmp_path):
    row = training.run_training_case("DSNN", "snntorch", batch=4, num_steps=2, device=torch.device("cpu"),
                                     repeats=2, hidden=16, warmup=1)
    assert row["images_per_s"] > 0 and row["achieved_tflops"] > 0
    split = training.time_split("DSNN", torch.device("cpu"), batch=4, num_steps=3, hidden=16)
    assert split["neuron_share"] > 0 and split["synaptic_share"] > 0
    case = neurons.NeuronCase("Synaptic", 3, 2, 50, torch.float32, torch.device("cpu"))
    rows = [neurons.run_case(case, p, "forward+backward", repeats=2, copy_bytes_per_s=1e10)
            for p in ("fused-reference", "snntorch")]
    study._add_speedups(rows)
    assert rows[1]["speedup_vs_snntorch"] == 1.0 and rows[0]["fraction_of_copy_bandwidth"] > 0


def test_bench_cli_writes_outputs(tmp_path, monkeypatch):
    # a tiny neurons-only run through the real CLI path
    monkeypatch.setattr(study, "section_neurons", lambda args, device, progress: [
        neurons.run_case(neurons.NeuronCase("Leaky", 2, 2, 8, torch.float32, device), "snntorch", "forward",
                         repeats=2)])
    monkeypatch.setitem(study.SECTIONS, "neurons", study.section_neurons)
    args = SimpleNamespace(quick=True, device="cpu", out=str(tmp_path), sections="neurons", repeats=2)
    assert study.run(args) == 0
    assert json.loads((tmp_path / "neurons.json").read_text())[0]["provider"] == "snntorch"
    assert (tmp_path / "neurons.csv").exists() and (tmp_path / "environment.json").exists()
    with pytest.raises(SystemExit, match="unknown"):
        study.run(SimpleNamespace(quick=True, device="cpu", out=str(tmp_path), sections="nope", repeats=2))


def test_inference_bytes_model_drops_the_trace():
    spec = LIFSpec(False, 0, 0, True, atan())
    assert bytes_per_neuron_step(spec, 4, backward=False, for_backward=False) == 12  # x, spk, mem
    assert bytes_per_neuron_step(spec, 4, backward=False) == 16                      # + trace
    case = neurons.NeuronCase("Leaky", 3, 2, 5, torch.float32, torch.device("cpu"))
    assert neurons.kernel_bytes(case, "forward") == 12 * 30
    assert neurons.kernel_bytes(case, "forward-grad-mode") == 16 * 30
    assert neurons.kernel_bytes(case, "forward+backward") == 32 * 30


def test_neuron_sweep_covers_the_issue_grid_and_reports_fixed_cost():
    grid = {(T, B, N) for T in (1, 5, 25, 100) for B in (1, 32, 128) for N in (100, 1000)}
    assert grid <= set(neurons.SWEEP_SHAPES) and neurons.TINY_SHAPE in neurons.SWEEP_SHAPES
    assert neurons.TINY_SHAPE in neurons.QUICK_SHAPES
    assert neurons.copy_bytes_for([(1, 1, 8)]) == neurons.MIN_COPY_BYTES  # never an in-cache copy
    assert neurons.copy_bytes_for([(100, 128, 10000)]) == neurons.kernel_bytes(
        neurons.NeuronCase("Leaky", 100, 128, 10000, torch.float32, torch.device("cpu")), "forward+backward")
    rows = []
    for shape in (neurons.TINY_SHAPE, (3, 2, 17)):
        case = neurons.NeuronCase("Leaky", *shape, torch.float32, torch.device("cpu"))
        rows += neurons.run_interleaved(case, ["fused-reference", "snntorch"], "forward+backward",
                                        repeats=3, warmup=1, copy_bytes_per_s=1e10)
    neurons.add_fixed_costs(rows)
    assert len(rows) == 4
    for r in rows:
        assert r["q20_s"] <= r["median_s"] <= r["q80_s"] and r["repeats"] == 3
        tiny = next(t for t in rows if (t["T"], t["B"], t["N"]) == neurons.TINY_SHAPE
                    and t["provider"] == r["provider"])
        assert r["fixed_cost_s"] == tiny["median_s"]
        assert ("fraction_of_copy_bandwidth" in r) == r["provider"].startswith("fused")
