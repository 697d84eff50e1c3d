"""The ``"poplar"`` backend: fused neurons as PopART custom ops under PopTorch on a Graphcore IPU.

Under ``poptorch.isRunningOnIpu()`` the layers call :func:`lif_poptorch`, which emits
``poptorch.custom_op(...)`` for the neuron type (``custom.fusedsnn::LeakyFused`` etc., built
from ``csrc/popart`` and ``csrc/codelets`` with ``make -C csrc/popart``). PopTorch hands the
backward to PopART, which uses the op's grad op (``csrc/popart/lif_op.cpp``), so nothing here
is an autograd Function. All-to-all recurrence through an ``nn.Linear(N, N)`` over float32
``x: [T, B, N]`` emits ``custom.fusedsnn::RLeakyAllToAllFused`` / ``RSynapticAllToAllFused``
(:func:`lif_all_to_all_poptorch`, ``csrc/popart/lif_all_to_all_op.cpp``): the whole sequence in one op,
tiles keeping their rows of W and exchanging spikes each step. Any other recurrent map (or
dtype, or T = 0) is traced from plain PyTorch ops (``fusedsnn/backends/reference/naive.py``).

What was verified where: the codelets' arithmetic is compiled and checked on the host
(tests/backends/poplar; the all-to-all ones with the per-step exchange emulated); this module's call formation is checked with a stand-in ``poptorch`` module
(tests/backends/poplar/test_poptorch.py); running on an IPU or the IPU Model needs the Poplar SDK and PopTorch, which
this repository's CI does not have (see docs/ipu.md).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path
from typing import Optional

import torch

from ..layout import surrogate_constants
from ...spec import RECURRENCE_ONE_TO_ONE, LIFSpec

Tensor = torch.Tensor

DOMAIN = "custom.fusedsnn"
OP_NAMES = {(False, 0): "LeakyFused", (True, 0): "SynapticFused", (False, 1): "RLeakyFused",
            (True, 1): "RSynapticFused"}
ALL_TO_ALL_OP_NAMES = {False: "RLeakyAllToAllFused", True: "RSynapticAllToAllFused"}

_loaded: Optional[Path] = None


_HAS_POPTORCH = importlib.util.find_spec("poptorch") is not None


def running_on_ipu() -> bool:
    """True while PopTorch traces or runs a model for the IPU (False without PopTorch)."""
    if not _HAS_POPTORCH:
        return False
    import poptorch

    return bool(poptorch.isRunningOnIpu())


def default_build_dir() -> Path:
    return Path(os.environ.get("FUSEDSNN_IPU_BUILD", Path(__file__).resolve().parents[3] / "build"))


def load_custom_op(build_dir: Optional[Path] = None) -> Path:
    """Load ``libfusedsnn_popart.so`` (once) and point the ops at ``lif_codelets.gp`` and
    ``lif_all_to_all_codelets.gp``.

    Build all three with ``make -C csrc/popart`` on a machine with the Poplar SDK enabled.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    build = Path(build_dir) if build_dir is not None else default_build_dir()
    lib = build / "libfusedsnn_popart.so"
    codelets = build / "lif_codelets.gp"
    all_to_all_codelets = build / "lif_all_to_all_codelets.gp"
    missing = [p.name for p in (lib, codelets, all_to_all_codelets) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"fusedsnn IPU op not built ({', '.join(missing)} missing in {build}): run "
            "`make -C csrc/popart` with the Poplar SDK enabled, or set FUSEDSNN_IPU_BUILD"
        )
    os.environ.setdefault("FUSEDSNN_CODELETS", str(codelets))
    os.environ.setdefault("FUSEDSNN_ALL_TO_ALL_CODELETS", str(all_to_all_codelets))
    ctypes.cdll.LoadLibrary(str(lib))
    _loaded = lib
    return lib


def lif_poptorch(
    x: Tensor,
    spec: LIFSpec,
    beta: Tensor,
    threshold: Tensor,
    alpha: Optional[Tensor],
    V: Optional[Tensor],
    mem: Optional[Tensor],
    syn: Optional[Tensor],
    spk: Optional[Tensor],
) -> tuple[Tensor, ...]:
    """``x: [T, B, *features]``; parameters ``[F]`` (flattened features, already clamped).

    Returns ``(spk, mem)`` or ``(spk, syn, mem)`` like the other backends.
    """
    import poptorch

    load_custom_op()
    recurrent = spec.recurrence == RECURRENCE_ONE_TO_ONE
    state_shape = tuple(x.shape[1:])

    def state(t: Optional[Tensor]) -> Tensor:
        return torch.zeros(state_shape, dtype=x.dtype) if t is None else t

    inputs = [x, state(mem)]
    if spec.synaptic:
        inputs.append(state(syn))
    if recurrent:
        inputs.append(state(spk))
    inputs += [beta, threshold]
    if spec.synaptic:
        inputs.append(alpha)
    if recurrent:
        inputs.append(V)
    f32 = x.float()
    example = [x, x, f32]  # spk, mem, trace
    if spec.synaptic:
        example.append(x)
    if spec.immediate_reset:
        example.append(f32)
    if x.dtype == torch.float16:
        example.append(f32)  # float32 membrane state for the backward
    return _emit(poptorch, inputs, OP_NAMES[(spec.synaptic, 1 if recurrent else 0)], example, spec)


def _emit(poptorch, inputs: list, name: str, example: list, spec: LIFSpec) -> tuple[Tensor, ...]:
    """One ``poptorch.custom_op`` call of the ``custom.fusedsnn`` domain; its outputs are
    ``(spk, mem, trace[, syn][, ...])``, returned as ``(spk, mem)`` or ``(spk, syn, mem)``."""
    outputs = poptorch.custom_op(inputs, name, DOMAIN, 1, example_outputs=example, attributes=_op_attributes(spec))
    spk_out, mem_out = outputs[0], outputs[1]
    if spec.synaptic:
        return spk_out, outputs[3], mem_out
    return spk_out, mem_out


def _op_attributes(spec) -> dict:
    """The attributes both PopART ops (one-to-one and all-to-all) read: reset, surrogate, factor."""
    c0, c1 = surrogate_constants(spec)
    return {
        "reset": int(spec.reset),
        "immediate_reset": int(spec.immediate_reset),
        "surrogate": int(spec.surrogate.code),
        "c0": float(c0),
        "c1": float(c1),
        "gsf": float(spec.graded_spikes_factor),
    }


def all_to_all_op_applies(recurrent: object, x: Tensor) -> bool:
    """Whether the all-to-all PopART op runs this call: ``recurrent`` an ``nn.Linear(N, N)`` and
    ``x: [T, B, N]`` float32 with T >= 1 (the op's codelets are float32 only)."""
    return (isinstance(recurrent, torch.nn.Linear) and x.dim() == 3 and x.dtype == torch.float32
            and x.shape[0] > 0 and tuple(recurrent.weight.shape) == (x.shape[2], x.shape[2]))


def lif_all_to_all_poptorch(
    x: Tensor,
    spec: LIFSpec,
    recurrent: torch.nn.Linear,
    beta: Tensor,
    threshold: Tensor,
    alpha: Optional[Tensor],
    mem: Optional[Tensor],
    syn: Optional[Tensor],
    spk: Optional[Tensor],
) -> tuple[Tensor, ...]:
    """All-to-all RLeaky / RSynaptic over the whole sequence as one PopART op.

    ``x: [T, B, N]`` float32, ``recurrent``: ``nn.Linear(N, N)`` (its weight and bias are op
    inputs, so PopART's grad op gives their gradients), parameters ``[N]`` (already clamped),
    states ``[B, N]`` or None. Returns ``(spk, mem)`` or ``(spk, syn, mem)``, each ``[T, B, N]``.
    """
    import poptorch

    load_custom_op()
    state_shape = tuple(x.shape[1:])

    def state(t: Optional[Tensor]) -> Tensor:
        return torch.zeros(state_shape, dtype=x.dtype) if t is None else t.to(x.dtype)

    N = x.shape[2]
    bias = recurrent.bias if recurrent.bias is not None else torch.zeros(N, dtype=x.dtype)
    inputs = [x, state(mem)]
    if spec.synaptic:
        inputs.append(state(syn))
    inputs += [state(spk), recurrent.weight, bias, beta, threshold]
    if spec.synaptic:
        inputs.append(alpha)
    example = [x, x, x]  # spk, mem, trace
    if spec.synaptic:
        example.append(x)
    if spec.immediate_reset:
        example.append(x)
    return _emit(poptorch, inputs, ALL_TO_ALL_OP_NAMES[spec.synaptic], example, spec)
