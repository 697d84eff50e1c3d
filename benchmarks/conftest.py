"""pytest-benchmark suites: run with `pytest benchmarks/ --benchmark-only`.

Sizes come from the environment so a quick run stays quick:
FUSEDSNN_BENCH_FULL=1 runs the issue's whole grid (T in 1, 4, 25, 100; B in 8, 32, 128;
N in 1000, 10000; float32/float16/bfloat16), otherwise a small subset.
"""

import os

import pytest
import torch

FULL = os.environ.get("FUSEDSNN_BENCH_FULL", "0") == "1"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_report_header(config):
    return f"fusedsnn benchmarks on {DEVICE} ({'full' if FULL else 'quick'} grid)"


@pytest.fixture(scope="session")
def copy_bandwidth():
    from fusedsnn.bench.timing import copy_bandwidth as measure

    return measure(25 * 128 * 10000 * 4 if FULL else 25 * 128 * 1000 * 4, DEVICE)
