"""The Triton spike-bit kernels (fusedsnn/backends/triton/spike_bits.py) through the interpreter,
against numpy's packbits, for every float dtype and odd sizes; and compiled ahead of time for
sm_80 and sm_90 with their register and spill counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fusedsnn import memory
from fusedsnn.memory import bits as spike_bits
from fusedsnn.backends.triton import spike_bits as spike_bits_triton

from ...conftest import dtype_id

pytest.importorskip("triton")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SIZES = [1, 7, 8, 1023, 1024, 1025, 3 * 1024 + 13]


def _spikes(n: int, dtype: torch.dtype, value: float, rate: float = 0.3) -> torch.Tensor:
    mask = torch.rand(n) < rate
    return torch.where(mask, torch.tensor(value, dtype=dtype), torch.zeros((), dtype=dtype))


def _ints(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1).view(spike_bits._INT_VIEW[x.dtype])


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("value", [1.0, -2.5, 0.375], ids=["one", "negative", "graded"])
def test_pack_matches_numpy_and_unpack_restores_bits(interpret, n, dtype, value):
    x = _spikes(n, dtype, value)
    value_bits = int(torch.tensor([value], dtype=dtype).view(spike_bits._INT_VIEW[dtype]).item())
    bits, not_spikes = spike_bits_triton.pack_spike_bits(_ints(x), value_bits)
    expected = np.packbits((x != 0).numpy(), bitorder="little")
    assert not_spikes.item() == 0
    assert np.array_equal(bits.numpy(), expected)
    back = spike_bits_triton.unpack_spike_bits(bits, value_bits, n, spike_bits._INT_VIEW[dtype]).view(dtype)
    assert torch.equal(back.view(spike_bits._INT_VIEW[dtype]), _ints(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("stray", ["negative-zero", "third-value", "nan"])
@pytest.mark.parametrize("where", [0, 1029], ids=["first", "last-block"])
def test_pack_flags_any_element_that_is_not_zero_or_c(interpret, dtype, stray, where):
    x = _spikes(1030, dtype, 1.0)
    x[where] = {"negative-zero": -0.0, "third-value": 0.5, "nan": float("nan")}[stray]
    _, not_spikes = spike_bits_triton.pack_spike_bits(_ints(x), int(torch.tensor([1.0], dtype=dtype).view(
        spike_bits._INT_VIEW[dtype]).item()))
    assert not_spikes.item() == 1


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_pack_spikes_through_the_kernels_round_trips(interpret, monkeypatch, dtype):
    # What a CUDA tensor takes (spike_bits._uses_triton), here on CPU tensors through the interpreter.
    monkeypatch.setattr(spike_bits, "_uses_triton", lambda t: True)
    x = _spikes(5 * 77, dtype, 0.75).reshape(5, 7, 11)
    packed = memory.pack_spikes(x)
    assert packed is not None and packed.bits.numel() == (x.numel() + 7) // 8
    assert torch.equal(packed.unpack().view(spike_bits._INT_VIEW[dtype]), x.view(spike_bits._INT_VIEW[dtype]))
    x[2, 3, 4] = -0.0
    assert memory.pack_spikes(x) is None
    assert memory.pack_spikes(torch.rand(4, 9, dtype=dtype) + 0.5) is None  # continuous data


def test_kernels_compile_for_sm80_and_sm90(evidence_table):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", "--spike-bits"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 * 2 * 3
    assert all(r["registers"] > 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0 for r in rows), rows
    evidence_table("spike_bits_registers.txt", [
        f"sm_{r['arch']} {r['int_type']} {r['kernel']:<26} regs={r['registers']:>3} "
        f"spills={r['spill_stores']}/{r['spill_loads']}" for r in rows])
