"""Training: a small real run on the shipped digits with an accuracy floor a broken model cannot
reach, the population-code experiment, the CLI, and DDP gradients against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from fusedsnn import train
from fusedsnn.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def test_dsnn_learns_digits():
    result = train.fit("dsnn", epochs=3, hidden=128, num_steps=10, progress=False, log=lambda m: None)
    last = result["history"][-1]
    # chance is 0.10; a model whose gradients are wrong stays near it
    assert last["test_acc"] > 0.75, result["history"]
    assert result["history"][0]["loss"] > last["loss"]


def test_population_code_one_step_learns_digits():
    rows = train.population_study(output_sizes=(100,), epochs=3, hidden=128, progress=False, log=lambda m: None)
    assert [(r["outputs"], r["num_steps"]) for r in rows] == [(10, 25), (100, 1)]
    assert all(r["test_acc"] > 0.6 for r in rows), rows
    assert all(r["images_per_s"] > 0 for r in rows)


def test_csnn_trains_a_step_on_upsampled_digits():
    result = train.fit("csnn", epochs=1, num_steps=2, batch_size=256, progress=False, log=lambda m: None)
    assert result["history"][0]["loss"] > 0 and result["config"]["model"] == "csnn"


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli_main(["train", "--epochs", "1", "--hidden", "32", "--num-steps", "3", "--no-progress",
                     "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["dataset"] == "digits" and len(result["history"]) == 1
    assert "epoch 1" in capsys.readouterr().out


def test_ddp_two_processes_match_one_process(tmp_path):
    """Two gloo processes, each on half of a global batch, give the gradients of one process on
    the whole batch (DDP averages, the loss is a batch mean)."""
    out = tmp_path / "ddp_grads.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DDP_WORKER_STACKS_AFTER_S": "90"}
    # --standalone: the launcher binds a free port itself (a port probed here and handed over
    # could be taken in between).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(out)]
    # The launch hung now and then on this 2-core VM (a run takes 7 s): in the workers' teardown,
    # which ddp_worker.py now skips. Should a worker hang anyway, it prints every thread's stack
    # and exits after 90 s; one hang is reported as a warning with those stacks and the launch
    # tried once more; two fail.
    for attempt in (1, 2):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
            hung, stderr = "Timeout (0:01:30)!" in proc.stderr, proc.stderr
        except subprocess.TimeoutExpired as err:  # the launcher itself hung: no worker stacks
            if attempt == 2:
                raise
            hung, stderr = True, str(err.stderr or "")
        if not hung or attempt == 2:
            break
        warnings.warn(f"the DDP launch hung and was retried; its stderr:\n{stderr[-6000:]}", stacklevel=1)
    assert proc.returncode == 0, proc.stderr[-6000:]
    ddp = torch.load(out)

    torch.manual_seed(0)
    model = train.build_model("dsnn", (12,), num_classes=3, pop_size=2, num_steps=6, hidden=10)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 12, generator=gen) * 3
    y = torch.randint(0, 3, (8,), generator=gen)
    train.train_step(model, x, y, train.make_loss("ce_rate", 3, 2))
    single = {n: p.grad for n, p in model.named_parameters()}
    assert single.keys() == ddp.keys()
    assert any(g.abs().sum() > 0 for g in single.values())
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=1e-6, msg=name)


def test_batch_size_larger_than_the_training_set_is_clamped_and_said():
    torch.manual_seed(1)
    x_train, y_train = torch.rand(37, 1, 8, 8), torch.randint(0, 10, (37,))
    x_test, y_test = torch.rand(11, 1, 8, 8), torch.randint(0, 10, (11,))
    lines = []
    result = train.fit("dsnn", epochs=1, hidden=16, num_steps=3, batch_size=100_000_000, progress=False,
                       log=lines.append, data=(x_train, y_train, x_test, y_test))
    warned = [line for line in lines if line.startswith("warning: batch size 100000000")]
    assert len(warned) == 1 and "using batch size 37" in warned[0], lines
    assert result["config"]["batch_size"] == 37
