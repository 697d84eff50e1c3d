"""All-to-all recurrent RLeaky (nn.Linear(N, N) recurrence), forward+backward: the fused
whole-sequence op against the eager reference and snnTorch's step loop, at the issue's target
shapes. Group with `--benchmark-group-by=param:case` to compare providers side by side. The quick
grid shortens T=10000 to T=1000; FUSEDSNN_BENCH_FULL=1 runs it as the target states."""

import warnings

import pytest
import torch

from fusedsnn.bench import all_to_all

from conftest import DEVICE, FULL

SHAPES = [(T if FULL or T <= 1000 else 1000, B, N) for T, B, N in all_to_all.TARGET_SHAPES]
PROVIDERS = ["fused", "snntorch"] + (["fused-reference"] if FULL else [])
PARAMS = [(shape, p) for shape in SHAPES for p in PROVIDERS]


@pytest.mark.parametrize("shape, provider", PARAMS, ids=[f"T{T}-B{B}-N{N}-{p}" for (T, B, N), p in PARAMS])
def test_rleaky_all_to_all(benchmark, shape, provider):
    T, B, N = shape
    case = all_to_all.AllToAllCase("RLeaky", T, B, N, DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step, _ = all_to_all.make_step(case, provider)
    sync = (lambda: torch.cuda.synchronize()) if DEVICE.type == "cuda" else (lambda: None)

    def run():
        step()
        sync()

    run()  # warm-up
    benchmark.group = f"RLeaky-all-to-all-T{T}-B{B}-N{N}"
    benchmark.extra_info.update(case=benchmark.group, provider=provider)
    benchmark.pedantic(run, rounds=3 if T > 1000 else 5, warmup_rounds=0)
