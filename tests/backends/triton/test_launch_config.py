"""The Triton launch configuration: size buckets, defaults, and the autotuner's choice and cache.

The tuner's logic is checked here without a GPU by standing in for the kernel and the timer;
tests/cuda/test_triton_cuda.py runs it for real on CUDA, and tests/backends/triton/test_compile.py
compiles every candidate for sm_80/sm_90 with its register count.
"""

from __future__ import annotations

import pytest
import torch

from fusedsnn.backends.triton import launch as triton_launch
from fusedsnn.backends.triton import lif as lif_triton
from fusedsnn.backends.triton.lif import BACKWARD_CONFIGS, DEFAULT_CONFIG, FORWARD_CONFIGS, LaunchConfig

pytest.importorskip("triton")


@pytest.mark.parametrize("M,bucket", [(1, 1), (2, 2), (3, 4), (1000, 1024), (1024, 1024), (1025, 2048),
                                      (128 * 65_536, 128 * 65_536)])
def test_size_bucket_is_the_next_power_of_two(M, bucket):
    assert lif_triton.size_bucket(M) == bucket


def test_default_config_shrinks_for_tiny_layers_only():
    assert lif_triton.default_config(10**6) == DEFAULT_CONFIG
    assert lif_triton.default_config(30) == LaunchConfig(32, 1)
    assert lif_triton.default_config(1) == LaunchConfig(16, 1)


def test_backward_candidates_keep_registers_low():
    # At 4 elements per thread the all-learnable RSynaptic backward needs 178 registers on sm_90.
    assert all(c.elements_per_thread <= 2 for c in BACKWARD_CONFIGS)
    assert DEFAULT_CONFIG.elements_per_thread == 1
    assert DEFAULT_CONFIG in FORWARD_CONFIGS and DEFAULT_CONFIG in BACKWARD_CONFIGS


class _FakeKernel:
    """Stands in for a compiled kernel: records launches; its 'time' depends on the config."""

    def __init__(self) -> None:
        self.fn = type("fn", (), {"__name__": "lif_forward_kernel"})
        self.launches: list[tuple] = []

    def __getitem__(self, grid):
        def launch(*args, BLOCK, num_warps, enable_fp_fusion, **flags):
            assert enable_fp_fusion is False
            self.launches.append((grid, BLOCK, num_warps))
        return launch


@pytest.fixture
def fake_gpu(monkeypatch):
    kernel = _FakeKernel()
    fastest = LaunchConfig(256, 8)
    monkeypatch.setattr(triton_launch, "launchable", lambda k: kernel)
    monkeypatch.setattr(triton_launch, "_device_key", lambda device: "Fake GPU sm_90")
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)

    def do_bench(fn, warmup, rep, return_mode):
        fn()
        _, block, warps = kernel.launches[-1]
        return 1.0 if LaunchConfig(block, warps) == fastest else 2.0 + block / 1024

    import triton.testing

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    monkeypatch.setenv("FUSEDSNN_TRITON_AUTOTUNE", "1")
    lif_triton.clear_tuning_cache()
    yield kernel, fastest
    lif_triton.clear_tuning_cache()


def _launch(M, dtype=torch.float32, flags=None, block_size=None):
    return lif_triton.launch(lif_triton.lif_forward_kernel, FORWARD_CONFIGS, M, dtype, torch.device("cuda"),
                              block_size, (), flags or {"SYNAPTIC": False})


def test_autotuner_picks_the_fastest_candidate_and_caches_it(fake_gpu):
    kernel, fastest = fake_gpu
    assert _launch(100_000) == fastest
    tried = {(b, w) for _, b, w in kernel.launches}
    assert tried == {(c.block, c.num_warps) for c in FORWARD_CONFIGS}
    grid, block, warps = kernel.launches[-1]
    assert (block, warps) == (fastest.block, fastest.num_warps) and grid == (-(-100_000 // block),)
    (row,) = lif_triton.tuned_configs()
    assert row["size_bucket"] == 131_072 and row["block"] == fastest.block and len(row["times_ms"]) == len(FORWARD_CONFIGS)
    # Same bucket (any T, another M in the bucket): no new tuning, one launch.
    before = len(kernel.launches)
    assert _launch(120_000) == fastest
    assert len(kernel.launches) == before + 1 and len(lif_triton.tuned_configs()) == 1


@pytest.mark.parametrize("change", ["bucket", "dtype", "flags"])
def test_autotuner_tunes_again_for_a_new_key(fake_gpu, change):
    _launch(100_000)
    other = {"bucket": dict(M=300_000), "dtype": dict(M=100_000, dtype=torch.bfloat16),
             "flags": dict(M=100_000, flags={"SYNAPTIC": True})}[change]
    _launch(**other)
    assert len(lif_triton.tuned_configs()) == 2


def test_no_tuning_while_a_cuda_graph_is_captured(fake_gpu, monkeypatch):
    kernel, _ = fake_gpu
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert _launch(100_000) == DEFAULT_CONFIG
    assert len(kernel.launches) == 1 and lif_triton.tuned_configs() == []


def test_tuning_off_or_explicit_block_uses_no_timer(fake_gpu, monkeypatch):
    kernel, _ = fake_gpu
    assert _launch(100_000, block_size=64) == LaunchConfig(64, 1)
    monkeypatch.setenv("FUSEDSNN_TRITON_AUTOTUNE", "0")
    assert _launch(100_000) == DEFAULT_CONFIG
    assert len(kernel.launches) == 2 and lif_triton.tuned_configs() == []
