"""The real Poplar codelets (csrc/codelets/lif_codelets.cpp), compiled on the host against a
minimal <poplar/Vertex.hpp> (tests/backends/poplar/stub), driven worker by worker like one IPU tile.

Every output is pre-filled with NaN. Each worker is first run alone on fresh NaN buffers to find
what it writes: the workers' sets must be disjoint and together cover every element (each
element written by exactly one worker). Then all workers run on one set of buffers and the
result must equal the reference backend: bit for bit in float32, and in half as well (both keep
float32 state and round only on store).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

import fusedsnn.functional as Fn
from fusedsnn import surrogate as S
from fusedsnn.backends.layout import surrogate_constants
from fusedsnn.backends.reference.lif import lif_backward_reference, lif_forward_reference, surrogate_trace
from fusedsnn.spec import RESET_CODES, needs_prev_mem

from ...conftest import NEURONS, RESETS, random_input

ROOT = Path(__file__).resolve().parents[3]
WORKERS = 6


class _Fields(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p * 24), ("size", ctypes.c_int64 * 24)]


class _Scalars(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint) for n in ("steps", "reset", "immediate_reset", "surrogate",
                                             "need_prev_mem", "num_workers")] + \
               [(n, ctypes.c_float) for n in ("c0", "c1", "gsf")]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.fail("a C++ compiler is required to verify the codelets on the host")
    out = tmp_path_factory.mktemp("codelets") / "drive_codelets.so"
    cmd = [compiler, "-O1", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared",
           f"-I{ROOT / 'tests' / 'backends' / 'poplar' / 'stub'}", str(ROOT / "tests" / "backends" / "poplar" / "stub" / "drive_codelets.cpp"),
           "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lib = ctypes.CDLL(str(out))
    lib.drive_vertex.argtypes = [ctypes.c_int] * 4 + [ctypes.POINTER(_Fields), ctypes.POINTER(_Scalars), ctypes.c_uint]
    lib.drive_vertex.restype = ctypes.c_int
    return lib


def _fields(tensors: list) -> _Fields:
    f = _Fields()
    for i, t in enumerate(tensors):
        if t is not None and t.numel():
            f.ptr[i] = t.data_ptr()
            f.size[i] = t.numel()
    return f


def _run(driver, forward: bool, io_half: bool, spec, tensors_factory, scalars, check_ownership: bool):
    """Run all workers; optionally first each worker alone to check element ownership."""
    kind = (int(spec.synaptic), spec.recurrence)
    if check_ownership:
        owners = None
        for w in range(WORKERS):
            inputs, outputs = tensors_factory()
            rc = driver.drive_vertex(int(forward), int(io_half), *kind, _fields(inputs + outputs), scalars, w)
            assert rc == 0
            written = [~torch.isnan(o.float()) if o is not None and o.numel() else None for o in outputs]
            if owners is None:
                owners = [torch.zeros_like(m, dtype=torch.int32) if m is not None else None for m in written]
            for own, m in zip(owners, written):
                if m is not None:
                    own += m.int()
        for i, own in enumerate(owners):
            if own is not None:
                assert (own == 1).all(), f"output field {i}: some elements written by {own.unique().tolist()} workers"
    inputs, outputs = tensors_factory()
    for w in range(WORKERS):
        assert driver.drive_vertex(int(forward), int(io_half), *kind, _fields(inputs + outputs), scalars, w) == 0
    return outputs


def _spec(kind: str, reset: str, reset_delay: bool, surrogate=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Fn.make_spec(synaptic=kind in ("Synaptic", "RSynaptic"), recurrence=1 if kind.startswith("R") else 0,
                            reset_mechanism=reset, reset_delay=reset_delay, spike_grad=surrogate,
                            surrogate_disable=False, graded_spikes_factor=1.0 if kind != "Leaky" else 1.5,
                            neuron=kind)


@pytest.mark.parametrize("io", ["float", "half"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", NEURONS)
def test_codelets_match_reference(driver, kind, reset, reset_delay, io):
    T, n = 5, 23  # 23 neurons on the tile over 6 workers: uneven ranges
    dtype = torch.float16 if io == "half" else torch.float32
    spec = _spec(kind, reset, reset_delay)
    x = random_input(T, 1, n, dtype=dtype)
    beta = torch.rand(n) * 0.9 + 0.05
    thr = torch.rand(n) + 0.5
    alpha = torch.rand(n) * 0.9 if spec.synaptic else torch.empty(0)
    V = torch.randn(n) * 0.5 if spec.recurrence == 1 else torch.empty(0)
    mem0 = torch.randn(1, n)
    syn0 = torch.randn(1, n) if spec.synaptic else torch.empty(0)
    spk0 = (torch.rand(1, n) > 0.5).float() if spec.recurrence == 1 else torch.empty(0)
    need_state = io == "half"
    ref = lif_forward_reference(x, mem0, syn0, spk0, None, beta, thr, alpha, V, spec, store_state=need_state)

    def nan(dt, numel=T * n):
        return torch.full((numel,), float("nan"), dtype=dt)

    def fwd_tensors():
        inputs = [x.reshape(-1), None, mem0.reshape(-1), syn0.reshape(-1), spk0.reshape(-1), beta, thr, alpha, V]
        outputs = [nan(dtype), nan(dtype) if spec.synaptic else None, nan(dtype), nan(torch.float32),
                   nan(torch.float32) if need_state else None,
                   nan(torch.float32) if spec.immediate_reset else None]
        return inputs, outputs

    c0, c1 = surrogate_constants(spec)
    sc = _Scalars(steps=T, reset=spec.reset, immediate_reset=int(spec.immediate_reset), surrogate=spec.surrogate.code,
                  need_prev_mem=0, num_workers=WORKERS, c0=c0, c1=c1, gsf=spec.graded_spikes_factor)
    spk, syn, mem, trace, state, pre = _run(driver, True, io == "half", spec, fwd_tensors, sc, check_ownership=True)
    assert torch.equal(spk, ref[0].reshape(-1)) and torch.equal(mem, ref[2].reshape(-1))
    assert torch.equal(trace, surrogate_trace(spec, ref, thr).reshape(-1))
    if spec.synaptic:
        assert torch.equal(syn, ref[1].reshape(-1))
    if spec.immediate_reset:
        assert torch.equal(pre, ref[5].reshape(-1))
    if need_state:
        assert torch.equal(state, ref[4].reshape(-1))
    assert 0 < spk.count_nonzero() < spk.numel()

    # backward, every parameter gradient requested
    g_spk, g_syn, g_mem = (torch.randn(T, 1, n).to(dtype) for _ in range(3))
    mem_hist = ref[4] if need_state else ref[2]
    expected = lif_backward_reference(g_spk, g_syn if spec.synaptic else None, g_mem, ref[3], mem_hist, ref[1], ref[0],
                                      ref[5], mem0, syn0, spk0, beta, thr, alpha, V, spec, dtype, (True,) * 4)
    need_prev = needs_prev_mem(spec, True, True)

    def bwd_tensors():
        inputs = [g_spk.reshape(-1), g_syn.reshape(-1) if spec.synaptic else None, g_mem.reshape(-1),
                  surrogate_trace(spec, ref, thr).reshape(-1), mem_hist.reshape(-1).float(), ref[1].reshape(-1),
                  ref[0].reshape(-1),
                  ref[5].reshape(-1), mem0.reshape(-1), syn0.reshape(-1), spk0.reshape(-1), beta, thr, alpha, V]
        outputs = [nan(dtype), nan(torch.float32, n), nan(torch.float32, n) if spec.synaptic else None,
                   nan(torch.float32, n) if spec.recurrence == 1 else None, nan(torch.float32, n), nan(torch.float32, n),
                   nan(torch.float32, n) if spec.synaptic else None, nan(torch.float32, n) if spec.recurrence == 1 else None]
        return inputs, outputs

    sc_b = _Scalars(steps=T, reset=spec.reset, immediate_reset=int(spec.immediate_reset), surrogate=0,
                    need_prev_mem=int(need_prev), num_workers=WORKERS, c0=0, c1=0, gsf=spec.graded_spikes_factor)
    got = _run(driver, False, io == "half", spec, bwd_tensors, sc_b, check_ownership=True)
    grad_x, grad_mem0, grad_syn0, grad_spk0, p_beta, p_thr, p_alpha, p_v = got
    tol = dict(rtol=1e-5, atol=1e-5) if io == "float" else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad_x.float(), expected[0].reshape(-1).float(), **tol)
    torch.testing.assert_close(grad_mem0, expected[1].reshape(-1), **tol)
    torch.testing.assert_close(p_beta, expected[4], **tol)
    torch.testing.assert_close(p_thr, expected[5], **tol)
    if spec.synaptic:
        torch.testing.assert_close(grad_syn0, expected[2].reshape(-1), **tol)
        torch.testing.assert_close(p_alpha, expected[6], **tol)
    if spec.recurrence == 1:
        torch.testing.assert_close(grad_spk0, expected[3].reshape(-1), **tol)
        torch.testing.assert_close(p_v, expected[7], **tol)


@pytest.mark.parametrize("name", ["atan", "fast_sigmoid", "sigmoid", "triangular", "spike_rate_escape",
                                  "straight_through_estimator", "disabled"])
def test_codelet_surrogates(driver, name):
    T, n = 4, 13
    surrogate = S.Surrogate(name, 3.0, 2.0)
    spec = _spec("Leaky", "subtract", True, surrogate)
    x = random_input(T, 1, n)
    beta, thr, e = torch.full((n,), 0.8), torch.ones(n), torch.empty(0)
    ref = lif_forward_reference(x, None, None, None, None, beta, thr, e, e, spec, False)
    c0, c1 = surrogate_constants(spec)

    def tensors():
        nan = lambda: torch.full((T * n,), float("nan"))  # noqa: E731
        return [x.reshape(-1), None, None, None, None, beta, thr, e, e], [nan(), None, nan(), nan(), None, None]

    sc = _Scalars(steps=T, reset=0, immediate_reset=0, surrogate=spec.surrogate.code, need_prev_mem=0,
                  num_workers=WORKERS, c0=c0, c1=c1, gsf=1.5)
    spk, _, mem, trace, _, _ = _run(driver, True, False, spec, tensors, sc, check_ownership=False)
    assert torch.equal(spk, ref[0].reshape(-1))
    expected = surrogate_trace(spec, ref, thr).reshape(-1)
    if name in ("sigmoid", "spike_rate_escape"):
        # exp() of the C library and of torch's vectorised kernels may differ in the last bit.
        torch.testing.assert_close(trace, expected, rtol=1e-6, atol=0)
    else:
        assert torch.equal(trace, expected)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("kind", NEURONS)
def test_codelet_backward_keeps_nan_out_of_unreached_steps(driver, kind, reset_delay):
    """A NaN input at a late step, and a gradient only at the first step: the codelets' reverse
    loop must not carry 0 * NaN back into the first steps or the parameters (issue 10, item 4).
    The reference backend, checked against snnTorch in tests/backends/test_nonfinite_backward.py,
    is finite there; the codelets must give the same numbers."""
    T, n = 6, 13
    spec = _spec(kind, "zero", reset_delay)
    x = random_input(T, 1, n)
    x[4, 0, 3] = float("nan")
    beta, thr = torch.rand(n) * 0.9 + 0.05, torch.rand(n) + 0.5
    alpha = torch.rand(n) * 0.9 if spec.synaptic else torch.empty(0)
    V = torch.randn(n) * 0.5 if spec.recurrence == 1 else torch.empty(0)
    mem0, e = torch.randn(1, n), torch.empty(0)
    syn0 = torch.randn(1, n) if spec.synaptic else e
    spk0 = (torch.rand(1, n) > 0.5).float() if spec.recurrence == 1 else e
    ref = lif_forward_reference(x, mem0, syn0, spk0, None, beta, thr, alpha, V, spec, store_state=False)
    # NaN reaches trace and membrane
    assert torch.isnan(surrogate_trace(spec, ref, thr)).any() and torch.isnan(ref[2]).any()
    g_mem = torch.zeros(T, 1, n)
    g_mem[0] = torch.randn(1, n)
    expected = lif_backward_reference(None, None, g_mem, ref[3], ref[2], ref[1], ref[0], ref[5], mem0, syn0,
                                      spk0, beta, thr, alpha, V, spec, torch.float32, (True,) * 4)
    assert torch.isfinite(expected[0][0]).all() and torch.isfinite(expected[4]).all()

    def full(numel):
        return torch.full((numel,), float("nan"))

    def tensors():
        inputs = [None, None, g_mem.reshape(-1), surrogate_trace(spec, ref, thr).reshape(-1), ref[2].reshape(-1),
                  ref[1].reshape(-1),
                  ref[0].reshape(-1), ref[5].reshape(-1), mem0.reshape(-1), syn0.reshape(-1), spk0.reshape(-1),
                  beta, thr, alpha, V]
        outputs = [full(T * n), full(n), full(n) if spec.synaptic else None,
                   full(n) if spec.recurrence == 1 else None, full(n), full(n),
                   full(n) if spec.synaptic else None, full(n) if spec.recurrence == 1 else None]
        return inputs, outputs

    sc = _Scalars(steps=T, reset=spec.reset, immediate_reset=int(spec.immediate_reset), surrogate=0,
                  need_prev_mem=1, num_workers=WORKERS, c0=0, c1=0, gsf=spec.graded_spikes_factor)
    # Outputs legitimately hold NaN here, so ownership (found through NaN pre-fill) is not checked.
    got = _run(driver, False, False, spec, tensors, sc, check_ownership=False)
    names = ["grad_x", "grad_mem0", "grad_syn0", "grad_spk0", "beta", "threshold", "alpha", "V"]
    for name, g, want in zip(names, got, expected):
        if g is not None:
            torch.testing.assert_close(g, want.reshape(-1), rtol=1e-5, atol=1e-5, equal_nan=True, msg=name)


def test_reset_codes_are_shared():
    # The vertex's `reset` field takes the same codes as the Python spec.
    assert RESET_CODES == {"subtract": 0, "zero": 1, "none": 2}
