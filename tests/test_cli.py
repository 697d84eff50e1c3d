"""The command line as a user meets it: every wrong invocation of `fusedsnn train` / `fusedsnn
bench` ends with one error line naming the argument and a non-zero exit, never a traceback or a
silent success; --help shows the defaults; `fusedsnn train` says what it trains and sums up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fusedsnn.bench import study
from fusedsnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``fusedsnn ARGV``, whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, command: str, *words: str) -> None:
    assert code != 0, (out, err)
    assert err.startswith(f"fusedsnn {command}: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert "Traceback" not in err and out == "", (out, err)
    for word in words:
        assert word in err, (word, err)


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A folder with an MNIST-named file that is not an IDX file."""
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"nor this")
    return tmp_path


TRAIN_ERRORS = [
    (["--dataset", "mnist"], ["--data-root"]),
    (["--dataset", "cifar10"], ["--data-root"]),
    (["--dataset", "mnist", "--data-root", "{empty}"], ["--data-root", "train-images-idx3-ubyte"]),
    (["--dataset", "cifar10", "--data-root", "{empty}"], ["--data-root", "data_batch_1"]),
    (["--dataset", "mnist", "--data-root", "{mnist}"], ["--data-root", "IDX"]),
    (["--dataset", "mnist", "--data-root", "{missing}"], ["--data-root", "not a folder"]),
    (["--data-root", "{empty}"], ["--data-root", "digits"]),
    (["--batch-size", "0"], ["--batch-size", "positive"]),
    (["--epochs", "-1"], ["--epochs", "positive"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--epochs", "1.5"], ["--epochs", "'1.5'"]),
    (["--num-steps", "0"], ["--num-steps"]),
    (["--hidden", "0"], ["--hidden"]),
    (["--pop-size", "0"], ["--pop-size"]),
    (["--lr", "0"], ["--lr"]),
    (["--lr", "-1e-3"], ["--lr"]),
    (["--lr", "nan"], ["--lr"]),
    (["--lr", "inf"], ["--lr"]),
    (["--seed", "-1"], ["--seed"]),
    (["--device", "tpu"], ["--device", "cpu, cuda or cuda:N"]),
    (["--device", "cuda:x"], ["--device"]),
    (["--model", "rnn"], ["--model"]),
    (["--neuron", "izhikevich"], ["--neuron"]),
    (["--json", "{missing}/r.json"], ["--json", "does not exist"]),
    (["--json", "{empty}"], ["--json", "folder"]),
    (["--population-study", "--pop-size", "4"], ["--pop-size", "--population-study"]),
    (["--model", "csnn", "--hidden", "64"], ["--hidden", "csnn"]),
    (["--dataset", "shd"], ["--data-root", "shd"]),
    (["--dataset", "nmnist"], ["--data-root", "nmnist"]),
    (["--dataset", "shd", "--data-root", "{empty}"], ["--data-root", "shd_train.h5", "never downloads"]),
    (["--dataset", "ssc", "--data-root", "{empty}"], ["--data-root", "ssc_train.h5"]),
    (["--dataset", "nmnist", "--data-root", "{empty}"], ["--data-root", "NMNIST", "never downloads"]),
    (["--dataset", "dvsgesture", "--data-root", "{empty}"], ["--data-root", "ibmGestureTrain"]),
    (["--dataset", "shd", "--data-root", "{empty}", "--model", "csnn"], ["--model csnn", "shd"]),
    (["--dataset", "shd", "--data-root", "{empty}", "--population-study"], ["--population-study", "shd"]),
    (["--unknown-flag"], ["--unknown-flag"]),
]


def _fill(argv: list[str], tmp_path: Path, mnist: Path) -> list[str]:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return [a.format(empty=empty, mnist=mnist, missing=tmp_path / "missing") for a in argv]


@pytest.mark.parametrize("argv,words", TRAIN_ERRORS, ids=[" ".join(a) for a, _ in TRAIN_ERRORS])
def test_train_wrong_invocations_fail_in_one_line(argv, words, tmp_path, mnist_dir, capsys):
    code, out, err = run_cli(["train", *_fill(argv, tmp_path, mnist_dir)], capsys)
    assert_one_line_error(code, out, err, "train", *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "bench"])
def test_cuda_asked_for_without_cuda(command, capsys):
    code, out, err = run_cli([command, "--device", "cuda"], capsys)
    assert_one_line_error(code, out, err, command, "--device", "CUDA is not available")


BENCH_ERRORS = [
    (["--repeats", "0"], ["--repeats", "positive"]),
    (["--repeats", "-3"], ["--repeats"]),
    (["--repeats", "many"], ["--repeats"]),
    (["--sections", "nope"], ["--sections", "nope", "throughput"]),
    (["--sections", "neurons,nope"], ["--sections", "nope"]),
    (["--sections", ","], ["--sections", "empty"]),
    (["--quick", "--full"], ["--full", "--quick"]),
    (["--device", "gpu"], ["--device"]),
    (["--out", "{file}"], ["--out", "is a file"]),
]


@pytest.mark.parametrize("argv,words", BENCH_ERRORS, ids=[" ".join(a) for a, _ in BENCH_ERRORS])
def test_bench_wrong_invocations_fail_in_one_line(argv, words, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    argv = [a.format(file=a_file) for a in argv]
    code, out, err = run_cli(["bench", "--out", str(tmp_path / "out"), *argv], capsys)
    assert_one_line_error(code, out, err, "bench", *words)


def test_no_command_is_an_error(capsys):
    code, out, err = run_cli([], capsys)
    assert code == 2 and err.startswith("fusedsnn: error: ") and err.count("\n") == 1, err
    assert "bench,train" in err


@pytest.mark.parametrize("argv", [["train", "--epochs", "-1"], ["train", "--dataset", "mnist"],
                                  ["bench", "--repeats", "0"]], ids=["argparse-check", "usage-check", "bench"])
def test_console_entry_point_fails_without_traceback(argv):
    """Through `python -m fusedsnn.cli` (as the console script runs it), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"fusedsnn {argv[0]}: error: ")


def test_train_help_shows_defaults(capsys):
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for expected in ("--epochs EPOCHS passes over the training set (default: 5)", "(default: 128)",
                     "default: 25, or 100 for shd and ssc", "default: dsnn; csnn for nmnist", "(default: digits)", "default: 1000", "(default: 0)",
                     "(default: ce_rate)", "(default: float32)", "default: 2e-3", "default: cuda when available"):
        assert expected in flat, expected


def test_bench_help_shows_defaults_and_the_quick_claim(capsys):
    code, out, _ = run_cli(["bench", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    assert "(default: bench-out)" in flat and "default: 3 quick, 20 full" in flat
    assert study.QUICK_CLAIM in flat


def test_readme_states_the_same_quick_time_as_help():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert study.QUICK_CLAIM in readme


def test_train_says_what_it_trains_and_sums_up(capsys):
    code, out, err = run_cli(["train", "--epochs", "2", "--hidden", "16", "--num-steps", "2", "--no-progress"],
                             capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    first, last = lines[0], lines[-1]
    assert first.startswith("training DSNN 64-16-10, leaky neurons, 2 steps on digits"), first
    assert "backend host" in first or "backend reference" in first, first
    assert "device cpu" in first and "2 epoch(s)" in first, first
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1", "epoch 2"]
    assert last.startswith("done: DSNN on digits, 2 epoch(s) in ") and "test acc" in last, last


def test_population_study_sums_up(capsys, monkeypatch):
    from fusedsnn import train

    monkeypatch.setattr(train, "population_study", lambda **kw: [
        {"outputs": 10, "num_steps": kw["baseline_steps"], "test_acc": 0.5, "images_per_s": 100.0},
        {"outputs": 100, "num_steps": 1, "test_acc": 0.6, "images_per_s": 900.0}])
    code, out, err = run_cli(["train", "--population-study", "--epochs", "1", "--num-steps", "7",
                              "--no-progress"], capsys)
    assert code == 0, err
    assert "   10 outputs  7 step(s)" in out
    assert out.strip().splitlines()[-1].startswith("done: population study, 2 trainings")


def test_train_shd_recurrent(tmp_path, capsys):
    """SHD from synthetic files in the published layout: 700 -> all-to-all RLeaky -> Leaky readout."""
    from .test_data import write_shd

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        samples = [(np.sort(rng.uniform(0, 1, 50)).tolist(), rng.integers(0, 700, 50).tolist()) for _ in range(n)]
        write_shd(tmp_path / f"shd_{split}.h5", samples, rng.integers(0, 20, n).tolist())
    code, out, err = run_cli(["train", "--dataset", "shd", "--data-root", str(tmp_path), "--epochs", "1",
                              "--hidden", "8", "--num-steps", "10", "--batch-size", "4", "--no-progress"], capsys)
    assert code == 0, err
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert first.startswith("training DSNN 700-8-20, rleaky_all_to_all neurons (Leaky readout), 10 steps on shd "
                            "(6 train / 3 test samples)"), first
    assert last.startswith("done: DSNN on shd, 1 epoch(s)") and "test acc" in last, last


def test_train_nmnist_csnn(tmp_path, capsys):
    pytest.importorskip("tonic")
    from .test_data import write_nmnist_bin

    for folder, n in (("Train", 3), ("Test", 2)):
        for i in range(n):
            write_nmnist_bin(tmp_path / f"NMNIST/{folder}/{i}/{i:05d}.bin",
                             [(x, x, x % 2, 10 * x) for x in range(30)])
    code, out, err = run_cli(["train", "--dataset", "nmnist", "--data-root", str(tmp_path), "--epochs", "1",
                              "--num-steps", "3", "--batch-size", "2", "--no-progress"], capsys)
    assert code == 0, err
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    assert first.startswith("training CSNN 5C12-MP2-5C64-MP2-10 on 2x34x34, leaky neurons, 3 steps on nmnist "
                            "(3 train / 2 test samples)"), first
    assert last.startswith("done: CSNN on nmnist, 1 epoch(s)"), last
