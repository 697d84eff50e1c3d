"""The GPU sections of ``fusedsnn bench`` (fusedsnn/bench/gpu.py) and the training-step modes run
on CPU at tiny sizes: eager and torch.compile rows are measured, CUDA graphs are skipped with a
reason, and the section list on a CPU run does not include them by default."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from fusedsnn.cli import bench as bench_cli
from fusedsnn.bench import gpu, study, training

pytest.importorskip("snntorch")


def test_step_modes_on_cpu_measure_eager_and_compile_and_say_why_graphs_are_skipped(tmp_path):
    torch._dynamo.reset()
    args = SimpleNamespace(repeats=1, quick=True, out=str(tmp_path))
    rows = gpu.section_step_modes(args, torch.device("cpu"), lambda msg: None)
    assert {(r["network"], r["provider"], r["mode"]) for r in rows} == {
        (net, p, m) for net in ("DSNN", "CSNN")
        for p in ("snntorch-tutorial", "snntorch-hoisted", "fused") for m in ("eager", "compile", "cuda_graph")}
    for r in rows:
        if r["mode"] == "cuda_graph":
            assert "CUDA" in r["skipped"] and math.isnan(r["images_per_s"])
        else:
            assert r["images_per_s"] > 0 and "skipped" not in r
    assert all(r["compile_backend"] == "aot_eager" for r in rows if r["mode"] == "compile")
    assert json.loads((tmp_path / "launch_configs.json").read_text()) == []  # nothing is tuned on CPU


def test_gpu_targets_on_cpu_report_copy_fraction_and_speedup(tmp_path):
    args = SimpleNamespace(repeats=1, quick=True, out=str(tmp_path))
    rows = gpu.section_gpu_targets(args, torch.device("cpu"), lambda msg: None)
    fused = [r for r in rows if r["provider"] == "fused-host"]
    assert [r["mode"] for r in fused] == ["forward", "forward+backward"]
    for r in fused:
        assert 0 < r["fraction_of_copy_bandwidth"] and r["speedup_vs_snntorch"] > 0
    assert fused[1]["target_fraction_of_copy_bandwidth"] == gpu.LEAKY_COPY_FRACTION_TARGET


def test_cuda_graph_mode_refuses_a_cpu_device():
    with pytest.raises(ValueError, match="cuda_graph.*CUDA"):
        training.run_training_case("DSNN", "fused", 2, 2, torch.device("cpu"), 1, hidden=4, mode="cuda_graph")
    with pytest.raises(ValueError, match="CUDA device"):
        training.cuda_graph_step(lambda: None, torch.device("cpu"))
    with pytest.raises(ValueError, match="mode must be one of"):
        training.step_mode_unavailable("graph", torch.device("cpu"))


def test_gpu_sections_run_by_default_only_on_cuda(tmp_path, monkeypatch):
    ran = []
    for name in study.SECTIONS:
        monkeypatch.setitem(study.SECTIONS, name, lambda args, device, progress, name=name: ran.append(name) or [])
    args = SimpleNamespace(device="cpu", quick=True, repeats=1, sections=None, out=str(tmp_path))
    assert bench_cli.run(args) == 0
    assert ran and not set(gpu.SECTIONS) & set(ran)


def test_lean_where_runs_on_cpu_and_writes_its_json(tmp_path):
    # benchmarks/gpu/lean_where.py is not in check.sh: its CPU run (tiny sizes) keeps it working.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, str(root / "benchmarks/gpu/lean_where.py"), "--device", "cpu",
                           "--steps", "12", "--chunks", "4", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads((tmp_path / "lean_where.json").read_text())["cases"]
    assert [(c["network"], c["provider"]) for c in cases] == [
        (n, p) for n in ("DSNN", "MLP3") for p in ("fused", "fused-lean", "fused-chunked")]
    assert all(c["median_ms"] > 0 for c in cases)
    assert next(c for c in cases if c["provider"] == "fused")["host_syncs"] == 0
