"""Targets for the tests that must pass on a real GPU.

Every test here takes the ``target`` fixture and runs twice: on ``cuda`` (marked ``cuda``, so
``pytest -m cuda`` selects exactly these; skipped with a reason where CUDA is absent) at sizes
that fill a GPU, and on ``interpreter``: the same body on CPU tensors through Triton's
interpreter at tiny sizes, so that the GPU tests are exercised on every CPU run too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusedsnn.backends.triton import lif as lif_triton

NO_CUDA = "no CUDA device here: this test runs on a GPU (benchmarks/gpu/check.sh); its interpreter twin runs on CPU"
CUDA_MARKS = (pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))


def cuda_param(*values, id: str | None = None):
    return pytest.param("cuda", *values, marks=CUDA_MARKS, id=id)


def interpreter_param(*values, id: str | None = None):
    return pytest.param("interpreter", *values, id=id)


TARGETS = [interpreter_param(id="interpreter"), cuda_param(id="cuda")]


@dataclass(frozen=True)
class Target:
    name: str
    device: torch.device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def pick(self, tiny, large):
        """``large`` on the GPU, ``tiny`` in the interpreter."""
        return large if self.is_cuda else tiny

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)


@pytest.fixture
def target(request, monkeypatch) -> Target:
    """Parametrized through ``TARGETS`` (or ``indirect=["target"]``): sets the Triton mode."""
    name = getattr(request, "param", None)
    if name == "cuda":
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        # Tuning each of the grid's ~100 kernel variants would cost minutes of compilation; the
        # launch configuration cannot change results (neurons are independent) and the tuner has
        # its own test, which switches it back on.
        monkeypatch.setenv("FUSEDSNN_TRITON_AUTOTUNE", "0")
        return Target("cuda", torch.device("cuda"))
    assert name == "interpreter", f"unknown target {name!r}"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return Target("interpreter", torch.device("cpu"))


@pytest.fixture
def poisoned_outputs(monkeypatch):
    """Every kernel output starts as NaN: an element a kernel forgets to write fails the test."""
    def nan_filled(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(lif_triton, "new_output", nan_filled)


def to_target(tensors: dict, device: torch.device) -> dict:
    """Copies on ``device``; leaves that required grad are leaves there that require grad."""
    return {k: v.detach().to(device).requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v
            for k, v in tensors.items()}


class HostSyncDetector(TorchDispatchMode):
    """Records every operator that makes the host wait for the device or allocates by data
    (``.item()``, ``nonzero``, boolean-mask indexing...): what would break CUDA-graph capture.
    Works on any device, so the CPU run of a test checks it too."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tags = getattr(func, "tags", ())
        if torch.Tag.data_dependent_output in tags or torch.Tag.dynamic_output_shape in tags:
            self.found.append(str(func))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_host_sync(target: Target):
    """Yields a :class:`HostSyncDetector` that is active inside; on CUDA, PyTorch's own sync
    check raises too (it also catches copies from pageable host memory, which capture forbids)."""
    detector = HostSyncDetector()
    if target.is_cuda:
        torch.cuda.set_sync_debug_mode("error")
    try:
        with detector:
            yield detector
    finally:
        if target.is_cuda:
            torch.cuda.set_sync_debug_mode("default")
