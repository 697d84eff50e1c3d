"""Host (CPU) backend of the all-to-all recurrent LIF: csrc/kernels/lif_all_to_all.hpp via ctypes.

A shared library of its own (csrc/host/fusedsnn_all_to_all.cpp), built by setup.py as
``fusedsnn._host_all_to_all`` or, in a source checkout, compiled once into the same cache folder as
the elementwise host library. Same launcher contract as :mod:`.lif_all_to_all_reference`.

The forward's partition follows ``torch.get_num_threads()`` (a share of the batch rows per
thread, no barrier; with fewer rows than threads one tile of neurons per thread, a barrier per
step); the backward's dense spike-gradient product is handed to the BLAS gemm torch itself
exports (``sgemm_``/``dgemm_`` of libtorch_cpu), when it does; ``dW`` is summed from the spikes'
bit masks in C++ (:func:`spike_weight_gradient`).

The same two products serve a ``Linear`` layer fed by spikes (:func:`spike_linear_checked`,
which also counts the spikes it checks, :func:`spike_linear_forward`,
:func:`spike_linear_weight_gradient`; used by ``fusedsnn.memory``'s spike-fed layers).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import torch

from . import library
from ..layout import row_major_empty, surrogate_constants
from ..reference.all_to_all import all_to_all_parameter_gradients
from ...spec import LIFSpec

Tensor = torch.Tensor

_ABI_VERSION = 6
_DTYPES = {torch.float32: 0, torch.float64: 1}
SOURCES = ("csrc/host/fusedsnn_all_to_all.cpp", "csrc/kernels/lif_all_to_all.hpp", "csrc/kernels/lif.hpp",
           "csrc/kernels/surrogate.hpp")

_vp = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32


class _Desc(ctypes.Structure):
    """Mirror of ``fusedsnn_all_to_all_desc`` in csrc/host/fusedsnn_all_to_all.cpp (same field order)."""

    _fields_ = [
        ("x", _vp), ("wt", _vp), ("w", _vp), ("bias", _vp),
        ("mem0", _vp), ("syn0", _vp), ("spk0", _vp),
        ("beta", _vp), ("thr", _vp), ("alpha", _vp),
        ("spk", _vp), ("syn", _vp), ("mem", _vp), ("trace", _vp), ("pre", _vp), ("scratch", _vp),
        ("grad_spk", _vp), ("grad_syn", _vp), ("grad_mem", _vp),
        ("grad_x", _vp), ("grad_mem0", _vp), ("grad_syn0", _vp), ("grad_spk0", _vp),
        ("part_beta", _vp), ("part_thr", _vp), ("part_alpha", _vp),
        ("gemm", _vp),
        ("steps", _i64), ("batch", _i64), ("n", _i64),
        ("synaptic", _i32), ("reset", _i32), ("immediate", _i32), ("surrogate", _i32),
        ("dtype", _i32), ("threads", _i32),
        ("c0", ctypes.c_double), ("c1", ctypes.c_double), ("gsf", ctypes.c_double),
        ("grad_spk_step", _i64), ("grad_syn_step", _i64), ("grad_mem_step", _i64),
        ("wt_stride", _i64), ("rec_stride", _i64), ("bias_padded", _i32),
    ]


_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_load_error: Optional[str] = None


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.fusedsnn_all_to_all_abi_version() != _ABI_VERSION:
        raise OSError(f"{path} has ABI version {lib.fusedsnn_all_to_all_abi_version()}, expected {_ABI_VERSION}")
    for name in ("fusedsnn_all_to_all_forward", "fusedsnn_all_to_all_backward"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(_Desc)]
        fn.restype = ctypes.c_int
    lib.fusedsnn_spike_linear.argtypes = [_vp, _i64, _i64, _vp, _i64, _vp, _i32, _vp, _i64, ctypes.c_double, _i32,
                                          _i32, _i32, _vp, ctypes.POINTER(_i64)]
    lib.fusedsnn_spike_linear.restype = ctypes.c_int
    lib.fusedsnn_spike_linear_weight_gradient.argtypes = [_vp, _vp, _i64, _i64, _i64, _vp, _i64, _i32, _i32]
    lib.fusedsnn_spike_linear_weight_gradient.restype = ctypes.c_int
    return lib


def load_library() -> Optional[ctypes.CDLL]:
    """The dense host library, or None (with one warning) when it cannot be built or loaded."""
    global _library, _load_error
    with _lock:
        if _library is not None or _load_error is not None:
            return _library
        errors = []
        built = library.built_extension("_host_all_to_all")
        if built is not None and os.environ.get("FUSEDSNN_HOST_REBUILD", "0") == "0":
            try:
                _library = _open(built)
                return _library
            except OSError as err:
                errors.append(str(err))
        try:
            # the same cache build as the elementwise library: with OpenMP (its teams run on
            # torch's OpenMP workers, see run_team in the C++), else without
            _library = _open(library.compile_into_cache(SOURCES, "libfusedsnn_all_to_all"))
            return _library
        except OSError as err:
            errors.append(str(err))
            _load_error = "; ".join(errors)
    warnings.warn(
        "fusedsnn: the all-to-all host (C++) library is unavailable; all-to-all recurrent neurons on "
        f"CPU use the reference backend. Cause: {_load_error}",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the dense host library loads (a constant to torch.compile, as lif_host.available)."""
    return load_library() is not None


def _blas_gemm(dtype: torch.dtype) -> Optional[int]:
    """Address of the Fortran gemm torch's CPU library exports (MKL or OpenBLAS), or None."""
    name = "sgemm_" if dtype == torch.float32 else "dgemm_"
    lib_dir = Path(torch.__file__).resolve().parent / "lib"
    for candidate in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = lib_dir / candidate
        if path.exists():
            try:
                return ctypes.cast(getattr(ctypes.CDLL(str(path)), name), ctypes.c_void_p).value
            except (OSError, AttributeError):
                return None
    return None


_gemm_cache: dict = {}

#: Below this many multiply-adds per step, the backward's per-step gemm runs on the calling thread
#: alone: an OpenMP fork/join per small product costs more than it saves (measured: T=100, B=32,
#: N=256 backward 19 ms on one thread, 137 ms with two on a busy 2-core machine).
SEQUENTIAL_BLAS_WORK = 1 << 24


@contextlib.contextmanager
def _sequential_blas(enabled: bool) -> Iterator[None]:
    """MKL's thread-local thread count set to 1 for this thread (no effect without MKL)."""
    setter = _mkl_local_setter() if enabled else None
    if setter is None:
        yield
        return
    previous = setter(1)
    try:
        yield
    finally:
        setter(previous)


_mkl_setter_cache: list = []


def _mkl_local_setter():
    if not _mkl_setter_cache:
        fn = None
        path = Path(torch.__file__).resolve().parent / "lib" / "libtorch_cpu.so"
        try:
            # The C entry point (the lowercase name is the Fortran one, which takes a pointer).
            fn = ctypes.CDLL(str(path)).MKL_Set_Num_Threads_Local
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _mkl_setter_cache.append(fn)
    return _mkl_setter_cache[0]


def _gemm(dtype: torch.dtype) -> Optional[int]:
    if os.environ.get("FUSEDSNN_DENSE_BLAS", "1") == "0":
        return None
    if dtype not in _gemm_cache:
        _gemm_cache[dtype] = _blas_gemm(dtype)
    return _gemm_cache[dtype]


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


def _contig(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if t is None or t.numel() == 0 else t.to(dtype).contiguous()


def _per_step(t: Optional[Tensor], dtype: torch.dtype) -> tuple[Optional[Tensor], int]:
    """An upstream gradient ``[T, B, N]`` for the C++ with its elements per step: one ``[B, N]``
    row and step 0 when it is broadcast over time (stride 0, as the gradient of ``out.sum()``),
    which spares copying T identical rows; else the contiguous array and step ``B * N``."""
    if t is None or t.numel() == 0:
        return None, 0
    if t.stride(0) == 0:
        return t[0].to(dtype).contiguous(), 0
    return t.to(dtype).contiguous(), t.shape[1] * t.shape[2]


def padded_row(n: int) -> int:
    """Elements per row of the C++'s row-blocked matrices (W^T, the recurrent input, dW^T): ``n``
    rounded up to 16, so that with a 64-byte aligned base (torch's CPU allocator) every row
    starts 64-byte aligned and no vector load splits across cache lines."""
    return (n + 15) // 16 * 16


def spike_product_row(n: int, dtype: torch.dtype) -> int:
    """Elements per row of a Linear layer's ``W^T`` for :func:`spike_linear_forward`:
    :func:`padded_row`, plus one 64-byte line when the row would be a multiple of 512 bytes
    (rows 1 or 2 KiB apart map onto a quarter of the L1 sets and evict each other while a
    pass of 64 inputs is being added)."""
    row = padded_row(n)
    return row + 16 if row * torch.empty((), dtype=dtype).element_size() % 512 == 0 else row


def _sparse_weight_gradient() -> bool:
    """Whether ``dW`` is summed from the spikes' bit masks in C++ (default) rather than taken as
    one dense BLAS product (``FUSEDSNN_DENSE_SPARSE_DW=0``, kept for comparison)."""
    return os.environ.get("FUSEDSNN_DENSE_SPARSE_DW", "1") != "0"


def spike_weight_gradient(grad_rec: Tensor, spk: Tensor, spk0: Optional[Tensor], gsf: float) -> Tensor:
    """``dW = sum_t G_t^T spk[t-1]`` (+ ``G_0^T spk0``) for the op's own spikes ``spk: [T, B, N]``,
    which are 0 or ``gsf``: the C++ adds, for each input j, the rows of ``G`` where j spiked (about
    a quarter of the dense product's work at typical spike rates) and scales by ``gsf`` once.
    ``spk0`` (any values) is added as a dense product. ``grad_rec: [T, B, N]`` contiguous;
    returns ``[N, N]``. The rows are summed in ascending (t, b) order, not BLAS's order, so float32
    results differ from :func:`all_to_all_parameter_gradients` in the last bits."""
    T, B, N = grad_rec.shape
    rows = max(T - 1, 0) * B
    # step t's input is spk[t-1]: a Linear layer's weight gradient over the (t >= 1) rows
    grad_w = spike_linear_weight_gradient(grad_rec[1:].reshape(rows, N), spk[: max(T - 1, 0)].reshape(rows, N), gsf)
    if spk0 is not None and T > 0:
        return torch.addmm(grad_w, grad_rec[0].t(), spk0.to(grad_rec.dtype))
    return grad_w


#: Above this fraction of non-zero inputs a Linear layer's spike product is left to the dense
#: BLAS product, which catches up there (measured on this project's 2-core CPU, 16000 x 512 x 512:
#: 0.30x of BLAS's time at rate 0.22, 0.74x at 0.7, even at 0.9; docs/design.md "Spike products").
SPIKE_PRODUCT_MAX_RATE = 0.75


def spike_linear_operands(weight: Tensor, bias: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """The layout :func:`spike_linear_forward` takes for ``weight: [out, in]`` and ``bias: [out]``:
    ``W^T`` as ``[in, spike_product_row(out)]`` and the bias zero-padded to the same length (None
    without one). A copy, made without a graph."""
    n_out, n_in = weight.shape
    row = spike_product_row(n_out, weight.dtype)
    with torch.no_grad():
        wt = weight.new_zeros(n_in, row)
        wt[:, :n_out] = weight.t()
        padded = None
        if bias is not None:
            padded = bias.new_zeros(row)
            padded[:n_out] = bias
    return wt, padded


class SpikeCheck(NamedTuple):
    """What :func:`spike_linear_checked` found and did. ``out``: the product ``[rows, out_features]``,
    or None when it declined; ``value``: the non-zero value ``c`` of the spikes (0.0 for an
    all-zero input, None when the input is not spikes); ``nonzero``: how many elements are
    non-zero (-1 when the input is not spikes)."""

    out: Optional[Tensor]
    value: Optional[float]
    nonzero: int


def spike_linear_checked(x: Tensor, wt: Optional[Tensor], bias: Optional[Tensor], out_features: int,
                         max_rate: float = SPIKE_PRODUCT_MAX_RATE, unit_only: bool = False) -> SpikeCheck:
    """``bias + x @ wt[:, :out_features]`` for a Linear layer fed by spikes, adding for each row
    the rows of ``wt`` whose input spiked (bias first, then the inputs in ascending order); in the
    same pass over ``x`` (building its bit words) it checks that ``x`` is spikes and counts them.

    ``x: [rows, in_features]`` contiguous, float32/float64; ``wt: [in_features, ldw]`` = ``W^T``
    with rows padded to :func:`spike_product_row`; ``bias``: ``[ldw]`` zero-padded, or None. The
    product runs only when every element of ``x`` is ``+0.0`` or one finite non-zero value ``c``,
    at most ``max_rate`` of them are non-zero and, with ``unit_only``, ``c`` is 1 (binary
    spikes); else the caller's dense product is faster, or the only one that applies. A negative
    ``max_rate`` only checks and counts (``wt`` may then be None). Float results differ from
    BLAS's in the last bits (another summation order)."""
    rows, n_in = x.shape
    count_only = max_rate < 0
    out = None if count_only else x.new_empty(rows, out_features)
    value = x.new_zeros(())
    nonzero = _i64(0)
    status = load_library().fusedsnn_spike_linear(
        x.data_ptr(), rows, n_in, None if wt is None else wt.data_ptr(), out_features if wt is None else wt.shape[1],
        _ptr(bias), int(bias is not None), None if out is None else out.data_ptr(), out_features, float(max_rate),
        int(unit_only), _DTYPES[x.dtype], max(1, torch.get_num_threads()), value.data_ptr(), ctypes.byref(nonzero))
    if status == 1:
        raise RuntimeError("fusedsnn spike product rejected its arguments")
    spikes = nonzero.value >= 0
    return SpikeCheck(out if status == 0 else None, value.item() if spikes else None, nonzero.value)


def count_spikes(x: Tensor) -> tuple[Optional[float], int]:
    """``(c, nonzero)`` for ``x: [rows, in_features]`` contiguous float32/float64: the non-zero
    value of its spikes and how many elements are non-zero, or ``(None, -1)`` when ``x`` is not
    spikes (see :func:`spike_linear_checked`). One pass over ``x``."""
    check = spike_linear_checked(x, None, None, 1, max_rate=-1.0)
    return check.value, check.nonzero


def spike_linear_forward(x: Tensor, wt: Tensor, bias: Optional[Tensor], out_features: int,
                         max_rate: float = SPIKE_PRODUCT_MAX_RATE) -> Optional[tuple[Tensor, float]]:
    """:func:`spike_linear_checked`'s product as ``(out, c)`` with ``out: [rows, out_features]``
    (``c = 0.0`` for an all-zero ``x``), or None when it declined (``x`` is not spikes or more
    than ``max_rate`` of it is non-zero)."""
    check = spike_linear_checked(x, wt, bias, out_features, max_rate)
    return None if check.out is None else (check.out, check.value)


def spike_linear_weight_gradient(grad_out: Tensor, x: Tensor, value: float) -> Tensor:
    """``dW = grad_out^T x`` for spikes ``x: [rows, in_features]`` that are 0 or ``value``:
    for each input j the rows of ``grad_out: [rows, out_features]`` where j spiked are added
    (ascending rows), then scaled by ``value`` once. Both contiguous; returns
    ``[out_features, in_features]`` contiguous."""
    rows, n_in = x.shape
    n_out = grad_out.shape[1]
    if rows == 0:  # an empty tensor may have no data pointer for the C++ to take
        return grad_out.new_zeros(n_out, n_in)
    dwt = grad_out.new_empty(n_in, padded_row(n_out))
    status = load_library().fusedsnn_spike_linear_weight_gradient(
        grad_out.data_ptr(), x.data_ptr(), rows, n_in, n_out, dwt.data_ptr(), dwt.shape[1], _DTYPES[x.dtype],
        max(1, torch.get_num_threads()))
    if status != 0:
        raise RuntimeError("fusedsnn spike weight gradient rejected its arguments")
    grad_w = dwt[:, :n_out].t()
    if value != 1.0:
        grad_w = grad_w * value
    return grad_w.contiguous()


def _config(d: _Desc, spec: LIFSpec, T: int, B: int, N: int, dtype: torch.dtype) -> None:
    d.steps, d.batch, d.n = T, B, N
    d.synaptic = int(spec.synaptic)
    d.reset = spec.reset
    d.immediate = int(spec.immediate_reset)
    d.surrogate = spec.surrogate.code
    d.dtype = _DTYPES[dtype]
    d.threads = max(1, torch.get_num_threads())
    d.c0, d.c1 = surrogate_constants(spec)
    d.gsf = spec.graded_spikes_factor


def lif_all_to_all_forward_host(x, mem0, syn0, spk0, weight, bias, beta, thr, alpha, spec: LIFSpec):
    T, B, N = x.shape
    dt = x.dtype
    spk, mem, trace = (row_major_empty(x) for _ in range(3))
    syn = row_major_empty(x) if spec.synaptic else x.new_empty(0)
    pre = row_major_empty(x) if spec.immediate_reset else x.new_empty(0)
    if T == 0 or B == 0:
        return spk, syn, mem, trace, pre
    # W^T and the bias padded to whole vectors: the product's last vector per row reads the
    # (zero) padding instead of finishing column by column
    ld = padded_row(N)
    wt = x.new_empty(N, ld)
    wt[:, :N] = weight.t()
    wt[:, N:] = 0
    if bias is not None:
        bias = torch.cat([bias.to(dt), bias.new_zeros(ld - N, dtype=dt)])
    keep = [_contig(t, dt) for t in (x, wt, bias, mem0, syn0, spk0, beta, thr, alpha)]
    scratch = x.new_empty(B * ld + B * N)
    d = _Desc()
    (d.x, d.wt, d.bias, d.mem0, d.syn0, d.spk0, d.beta, d.thr, d.alpha) = (_ptr(t) for t in keep)
    if not spec.synaptic:
        d.syn0 = d.alpha = None
    d.spk, d.syn, d.mem, d.trace, d.pre = (_ptr(t) for t in (spk, syn, mem, trace, pre))
    d.scratch = _ptr(scratch)
    d.wt_stride = d.rec_stride = ld
    d.bias_padded = 1
    _config(d, spec, T, B, N, dt)
    if load_library().fusedsnn_all_to_all_forward(ctypes.byref(d)) != 0:
        raise RuntimeError("fusedsnn dense host forward rejected its arguments")
    return spk, syn, mem, trace, pre


def lif_all_to_all_backward_host(grad_spk, grad_syn, grad_mem, trace, mem_hist, syn_hist, spk_hist, pre,
                            mem0, syn0, spk0, weight, beta, thr, alpha, spec: LIFSpec, needs):
    need_w, need_b, need_beta, need_thr, need_alpha = needs
    need_alpha = need_alpha and spec.synaptic
    T, B, N = trace.shape
    dt = trace.dtype
    grad_x = row_major_empty(trace)
    grad_mem0, grad_syn0, grad_spk0 = (trace.new_zeros(B, N) for _ in range(3))
    parts = [trace.new_zeros(B, N) if n else trace.new_empty(0) for n in (need_beta, need_thr, need_alpha)]
    if T > 0 and B > 0:
        upstream = [_per_step(t, dt) for t in (grad_spk, grad_syn, grad_mem)]
        keep = [t for t, _ in upstream] + [_contig(t, dt) for t in (trace, mem_hist, syn_hist, pre, mem0, syn0,
                                                                    weight, beta, thr, alpha)]
        d = _Desc()
        (d.grad_spk, d.grad_syn, d.grad_mem, d.trace, d.mem, d.syn, d.pre, d.mem0, d.syn0, d.w, d.beta,
         d.thr, d.alpha) = (_ptr(t) for t in keep)
        if not spec.synaptic:
            d.grad_syn = d.syn = d.syn0 = d.alpha = None
        d.grad_x = _ptr(grad_x)
        d.grad_mem0, d.grad_syn0, d.grad_spk0 = (_ptr(t) for t in (grad_mem0, grad_syn0, grad_spk0))
        d.part_beta, d.part_thr, d.part_alpha = (_ptr(p) for p in parts)
        d.grad_spk_step, d.grad_syn_step, d.grad_mem_step = (step for _, step in upstream)
        d.gemm = _gemm(dt)
        _config(d, spec, T, B, N, dt)
        with _sequential_blas(d.gemm is not None and B * N * N < SEQUENTIAL_BLAS_WORK):
            status = load_library().fusedsnn_all_to_all_backward(ctypes.byref(d))
        if status != 0:
            raise RuntimeError("fusedsnn dense host backward rejected its arguments")
    if not spec.synaptic:
        grad_syn0.zero_()
    if need_w and T > 0 and B > 0 and _sparse_weight_gradient():
        grad_w = spike_weight_gradient(grad_x, _contig(spk_hist, dt), spk0, spec.graded_spikes_factor)
        grad_b = grad_x.reshape(-1, N).sum(0) if need_b else grad_x.new_empty(0)
    else:
        grad_w, grad_b = all_to_all_parameter_gradients(grad_x, spk_hist, spk0, need_w, need_b)
    reduced = [p.sum(0) if p.numel() else p for p in parts]
    return (grad_x, grad_mem0, grad_syn0, grad_spk0, grad_w, grad_b, *reduced)
