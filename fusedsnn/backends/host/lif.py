"""Host (CPU) backend: the IPU codelets' C++ time loops (csrc/kernels/lif.hpp), run on CPU threads.

The shared library is built by the package's install (setup.py, an optional extension that needs
only a C++ compiler). If it is missing, for example in a source checkout that was never built,
it is compiled once into a cache folder with the system's C++ compiler; if that fails too, the
package still works on the reference backend and warns once.

Neurons are partitioned as the IPU op maps them: contiguous whole-neuron ranges per tile, then
per worker in a tile. :func:`partition` sets the split (default: one tile per CPU thread, one
worker each); threads follow ``torch.get_num_threads()``. Supports float32 and float64.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator, Optional

import torch

from . import library
from ..layout import surrogate_constants, time_major_2d
from ...spec import RECURRENCE_ALL_TO_ALL, RECURRENCE_ONE_TO_ONE, LIFSpec, needs_prev_mem

Tensor = torch.Tensor

_ABI_VERSION = 6
_DTYPES = {torch.float32: 0, torch.float64: 1}

_c_void_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32


class _Desc(ctypes.Structure):
    """Mirror of ``fusedsnn_lif_desc`` in csrc/host/fusedsnn_host.cpp (same field order)."""

    _fields_ = [
        ("x", _c_void_p), ("x_step", _i64), ("rec", _c_void_p), ("rec_step", _i64),
        ("mem0", _c_void_p), ("syn0", _c_void_p), ("spk0", _c_void_p),
        ("beta", _c_void_p), ("thr", _c_void_p), ("alpha", _c_void_p), ("v", _c_void_p),
        ("spk", _c_void_p), ("syn", _c_void_p), ("mem", _c_void_p), ("trace", _c_void_p),
        ("state", _c_void_p), ("pre", _c_void_p),
        ("grad_spk", _c_void_p), ("grad_spk_step", _i64), ("grad_syn", _c_void_p), ("grad_syn_step", _i64),
        ("grad_mem", _c_void_p), ("grad_mem_step", _i64),
        ("mem_hist", _c_void_p), ("syn_hist", _c_void_p), ("spk_hist", _c_void_p),
        ("grad_x", _c_void_p), ("grad_mem0", _c_void_p), ("grad_syn0", _c_void_p), ("grad_spk0", _c_void_p),
        ("part_beta", _c_void_p), ("part_thr", _c_void_p), ("part_alpha", _c_void_p), ("part_v", _c_void_p),
        ("steps", _i64), ("neurons", _i64), ("features", _i64),
        ("synaptic", _i32), ("recurrence", _i32), ("reset", _i32), ("immediate_reset", _i32),
        ("surrogate", _i32), ("need_prev_mem", _i32), ("dtype", _i32),
        ("c0", ctypes.c_double), ("c1", ctypes.c_double), ("gsf", ctypes.c_double),
        ("tiles", _i32), ("workers_per_tile", _i32), ("threads", _i32),
    ]


# ---------------------------------------------------------------------------------------------
# Loading the library
# ---------------------------------------------------------------------------------------------

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_load_error: Optional[str] = None
_warned = False

SOURCES = ("csrc/host/fusedsnn_host.cpp", "csrc/kernels/lif.hpp", "csrc/kernels/surrogate.hpp")


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.fusedsnn_host_abi_version() != _ABI_VERSION:
        raise OSError(f"{path} has ABI version {lib.fusedsnn_host_abi_version()}, expected {_ABI_VERSION}")
    for name in ("fusedsnn_lif_forward", "fusedsnn_lif_backward"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(_Desc)]
        fn.restype = ctypes.c_int
    return lib


def load_library() -> Optional[ctypes.CDLL]:
    """The host library, or None (with one warning) when it cannot be built or loaded."""
    global _library, _load_error, _warned
    with _lock:
        if _library is not None or _load_error is not None:
            return _library
        errors = []
        built = library.built_extension("_host")
        if built is not None and os.environ.get("FUSEDSNN_HOST_REBUILD", "0") == "0":
            try:
                _library = _open(built)
                library.tune_allocator()
                return _library
            except OSError as err:
                errors.append(str(err))
        try:
            _library = _open(library.compile_into_cache(SOURCES, "libfusedsnn_host"))
            library.tune_allocator()
            return _library
        except OSError as err:
            errors.append(str(err))
        _load_error = "; ".join(errors)
    if not _warned:
        _warned = True
        warnings.warn(
            "fusedsnn: the host (C++) backend is unavailable, CPU tensors use the slower reference "
            f"backend. Reinstall with a C++ compiler present (pip install -e .). Cause: {_load_error}",
            RuntimeWarning,
            stacklevel=2,
        )
    return None


def loaded() -> bool:
    """Whether the host library is loaded already (a cheap check for the per-call path). While
    torch.compile traces it answers False, so the trace asks :func:`available` (a constant to
    it): reading the ``_library`` global in a trace makes Dynamo guard on a ctypes.CDLL, which
    it cannot, and the compile failed whenever it came before the process's first eager call."""
    return not torch.compiler.is_compiling() and _library is not None


@torch.compiler.assume_constant_result
def available() -> bool:
    """Whether the host library loads. A constant to torch.compile: the answer cannot change
    during a process, and tracing the loader (a lock, a compiler call) would break the graph."""
    return load_library() is not None


# ---------------------------------------------------------------------------------------------
# Partition (tiles x workers), as on the IPU
# ---------------------------------------------------------------------------------------------

_partition = threading.local()
_INT32_MAX = 2**31 - 1  # the C descriptor's tiles and workers_per_tile are int32


def _check_count(name: str, value: object, none_ok: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _INT32_MAX:
        expected = "None or an int" if none_ok else "an int"
        raise ValueError(f"{name} must be {expected} in [1, 2**31 - 1] (an int32 on the C side), got {value!r}")


@contextlib.contextmanager
def partition(tiles: Optional[int] = None, workers_per_tile: int = 1) -> Iterator[None]:
    """Split neurons into ``tiles`` x ``workers_per_tile`` contiguous pieces, as the IPU mapping
    does (None: one tile per CPU thread). Pieces run on ``torch.get_num_threads()`` threads.
    Each count is at most ``2**31 - 1``; pieces beyond the neuron count own nothing."""
    if tiles is not None:
        _check_count("tiles", tiles, none_ok=True)
    _check_count("workers_per_tile", workers_per_tile, none_ok=False)
    previous = getattr(_partition, "value", None)
    _partition.value = (tiles, workers_per_tile)
    try:
        yield
    finally:
        _partition.value = previous


def _partition_fields(desc: _Desc) -> None:
    threads = max(1, torch.get_num_threads())
    tiles, workers = getattr(_partition, "value", None) or (None, 1)
    tiles = tiles if tiles is not None else threads
    # More tiles than neurons, or more workers than a tile's neurons, only add empty pieces:
    # capping both at what can own a neuron gives the same split without looping over
    # billions of empty pieces (partition(tiles=2**31 - 1) would spin for a minute).
    neurons = max(1, desc.neurons)
    tiles = min(tiles, neurons)
    desc.tiles = tiles
    desc.workers_per_tile = min(workers, -(-neurons // tiles))  # ceil(neurons / tiles): the largest tile
    desc.threads = threads


# ---------------------------------------------------------------------------------------------
# Launchers: the same contract as lif_reference.lif_forward_reference / lif_backward_reference
# ---------------------------------------------------------------------------------------------

def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


def _time_major(t: Optional[Tensor], T: int, dtype: torch.dtype) -> tuple[Optional[Tensor], int]:
    if t is None or t.numel() == 0:
        return None, 0
    flat, step = time_major_2d(t if t.dtype == dtype else t.to(dtype), T)
    return flat, step


def _flat(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """``t`` as a contiguous 1-D tensor of ``dtype`` (a view when it already is one), or None."""
    if t is None or t.numel() == 0:
        return None
    if t.dtype != dtype:
        t = t.to(dtype)
    if t.dim() != 1:
        t = t.reshape(-1)
    return t if t.is_contiguous() else t.contiguous()


_templates: dict = {}


def _template(spec: LIFSpec, dtype: torch.dtype) -> _Desc:
    """A descriptor with the configuration fields of ``spec`` filled in, made once per (spec,
    dtype): a call copies it (one C-level copy) instead of setting a dozen fields from Python."""
    # Keyed by the spec object (a layer reuses its spec; functional calls reuse make_spec's
    # cached ones): hashing the frozen dataclass and its surrogate cost a microsecond per call.
    # The entry holds the spec, so its id cannot be reused while the entry exists.
    entry = _templates.get((id(spec), dtype))
    desc = entry[1] if entry is not None and entry[0] is spec else None
    if desc is None:
        desc = _Desc()
        desc.synaptic = int(spec.synaptic)
        desc.recurrence = spec.recurrence
        desc.reset = spec.reset
        desc.immediate_reset = int(spec.immediate_reset)
        desc.surrogate = spec.surrogate.code
        desc.dtype = _DTYPES[dtype]
        desc.c0, desc.c1 = surrogate_constants(spec)
        desc.gsf = spec.graded_spikes_factor
        if len(_templates) > 256:  # specs come from a handful of layers; bound it anyway
            _templates.clear()
        _templates[(id(spec), dtype)] = (spec, desc)
    return _Desc.from_buffer_copy(desc)


def _config(spec: LIFSpec, T: int, M: int, F: int, dtype: torch.dtype) -> _Desc:
    desc = _template(spec, dtype)
    desc.steps, desc.neurons, desc.features = T, M, F
    _partition_fields(desc)
    return desc


def _contiguous_steps(t: Tensor, T: int, M: int, dtype: torch.dtype) -> tuple[Optional[Tensor], int]:
    """``t: [T, B, F]`` as kernel input: itself when it is already contiguous in ``dtype`` (the
    common case, checked without building a view), else :func:`_time_major`."""
    if t.dtype == dtype and t.is_contiguous():
        return t, M
    return _time_major(t, T, dtype)


def _param_ptr(t: Optional[Tensor], dtype: torch.dtype, keep: list) -> Optional[int]:
    """Address of ``t`` as a contiguous 1-D ``dtype`` array (converted copies go to ``keep`` so
    they outlive the call), or None when absent."""
    if t is None:
        return None
    if t.dtype != dtype or not t.is_contiguous():
        t = _flat(t, dtype)
        if t is None:
            return None
        keep.append(t)
    elif t.numel() == 0:
        return None
    return t.data_ptr()


def lif_forward_host(x, mem0, syn0, spk0, rec, beta, thr, alpha, V, spec: LIFSpec, store_state: bool,
                     for_backward: bool = True, out=None):
    """Same contract as :func:`lif_reference.lif_forward_reference` (``x: [T, B, F]``), except
    that absent outputs are None: the host's state precision is the input's (float32/float64),
    so there is never a membrane copy or a trace (the backward recomputes the surrogate), and
    ``syn``/``pre`` exist only where the neuron has them. The ``torch.library`` op turns None
    into distinct empty tensors (``ops._forward_outputs_or_empty``); the eager path does not
    pay for them.

    ``out``: ``(spk, syn, mem, pre)``, contiguous tensors of ``x``'s shape and dtype to write
    into instead of new ones (None where the neuron has no such output; the fused Linear + LIF
    op writes its chunks of steps into slices of its outputs)."""
    lib = _library if _library is not None else load_library()
    shape = x.shape
    T, B, F = shape
    M = B * F
    dt = x.dtype
    synaptic = spec.synaptic
    immediate = spec.immediate_reset
    if out is not None:
        spk, syn, mem, pre = out
    else:
        # new_empty: x's dtype and device (also under torch.set_default_device), without kwargs parsing.
        spk = x.new_empty(shape)
        mem = x.new_empty(shape)
        syn = x.new_empty(shape) if synaptic else None
        pre = x.new_empty(shape) if immediate and for_backward else None
    if T == 0 or M == 0:
        return spk, syn, mem, None, None, pre
    one_to_one = spec.recurrence == RECURRENCE_ONE_TO_ONE
    keep: list = []  # converted inputs stay alive until the call returns
    x2, x_step = _contiguous_steps(x, T, M, dt)
    d = _config(spec, T, M, F, dt)
    d.x, d.x_step = x2.data_ptr(), x_step
    if rec is not None and spec.recurrence == RECURRENCE_ALL_TO_ALL:
        rec2, d.rec_step = _contiguous_steps(rec, T, M, dt)
        d.rec = _ptr(rec2)
    d.mem0 = _param_ptr(mem0, dt, keep)
    d.beta, d.thr = _param_ptr(beta, dt, keep), _param_ptr(thr, dt, keep)
    if synaptic:
        d.syn0, d.alpha = _param_ptr(syn0, dt, keep), _param_ptr(alpha, dt, keep)
        d.syn = syn.data_ptr()
    if one_to_one:
        d.spk0, d.v = _param_ptr(spk0, dt, keep), _param_ptr(V, dt, keep)
    d.spk, d.mem = spk.data_ptr(), mem.data_ptr()
    if pre is not None:
        d.pre = pre.data_ptr()
    if lib.fusedsnn_lif_forward(ctypes.byref(d)) != 0:
        raise RuntimeError("fusedsnn host forward rejected its arguments")
    return spk, syn, mem, None, None, pre


def lif_backward_host(grad_spk, grad_syn, grad_mem, trace, mem_hist, syn_hist, spk_hist, pre,
                      mem0, syn0, spk0, beta, thr, alpha, V, spec: LIFSpec, x_dtype, need_param_grads):
    """Same contract as :func:`lif_reference.lif_backward_reference` (``mem_hist: [T, B, F]``;
    ``trace`` empty or None: recomputed from ``pre`` or ``mem_hist``), except that the gradient
    of an absent initial state (``mem0``/``syn0``/``spk0`` None or empty) is None: nothing
    asks for it, so it is neither allocated nor zero-filled. The ``torch.library`` op fills
    zeros in for its schema (``ops.lif_backward``)."""
    lib = _library if _library is not None else load_library()
    shape = mem_hist.shape
    T, B, F = shape
    M = B * F
    dt = mem_hist.dtype
    need_beta, need_thr, need_alpha, need_V = need_param_grads
    synaptic = spec.synaptic
    one_to_one = spec.recurrence == RECURRENCE_ONE_TO_ONE
    need_alpha = need_alpha and synaptic
    need_V = need_V and one_to_one
    grad_x = mem_hist.new_empty(shape, dtype=x_dtype)
    launch = T > 0 and M > 0
    state_shape = (B, F)

    def present(t: Optional[Tensor]) -> bool:
        return t is not None and t.numel() > 0

    def state_grad(wanted: bool) -> Optional[Tensor]:
        # The kernel writes every element of what it is given; zeros only where it is not run.
        if not wanted:
            return None
        return mem_hist.new_empty(state_shape) if launch else mem_hist.new_zeros(state_shape)

    grad_mem0 = state_grad(present(mem0))
    grad_syn0 = state_grad(synaptic and present(syn0))
    grad_spk0 = state_grad(one_to_one and present(spk0))
    parts = [state_grad(n) for n in (need_beta, need_thr, need_alpha, need_V)]
    if launch:
        keep: list = []
        d = _config(spec, T, M, F, dt)
        if grad_spk is not None:
            gs, d.grad_spk_step = _contiguous_steps(grad_spk, T, M, dt)
            d.grad_spk = _ptr(gs)
        if grad_mem is not None:
            gm, d.grad_mem_step = _contiguous_steps(grad_mem, T, M, dt)
            d.grad_mem = _ptr(gm)
        if synaptic and grad_syn is not None:
            gy, d.grad_syn_step = _contiguous_steps(grad_syn, T, M, dt)
            d.grad_syn = _ptr(gy)
        # Histories are the forward's own (contiguous) outputs; the kernel reads syn/spk
        # histories only for the alpha/V gradients, and a trace or pre only when present.
        hist = mem_hist.contiguous()
        d.mem_hist = hist.data_ptr()
        if need_alpha and present(syn_hist):
            syn_h = syn_hist.contiguous()
            d.syn_hist = syn_h.data_ptr()
        if need_V and present(spk_hist):
            spk_h = spk_hist.contiguous()
            d.spk_hist = spk_h.data_ptr()
        if present(trace):
            trace_c = trace.contiguous()
            d.trace = trace_c.data_ptr()
        if present(pre):
            pre_c = pre.contiguous()
            d.pre = pre_c.data_ptr()
        d.mem0 = _param_ptr(mem0, dt, keep)
        d.beta, d.thr = _param_ptr(beta, dt, keep), _param_ptr(thr, dt, keep)
        if synaptic:
            d.syn0, d.alpha = _param_ptr(syn0, dt, keep), _param_ptr(alpha, dt, keep)
        if one_to_one:
            d.spk0, d.v = _param_ptr(spk0, dt, keep), _param_ptr(V, dt, keep)
        gx = grad_x if x_dtype == dt else mem_hist.new_empty(shape)
        d.grad_x = gx.data_ptr()
        if grad_mem0 is not None:
            d.grad_mem0 = grad_mem0.data_ptr()
        if grad_syn0 is not None:
            d.grad_syn0 = grad_syn0.data_ptr()
        if grad_spk0 is not None:
            d.grad_spk0 = grad_spk0.data_ptr()
        if need_beta or need_thr or need_alpha or need_V:
            d.part_beta, d.part_thr, d.part_alpha, d.part_v = (_ptr(p) for p in parts)
        d.need_prev_mem = int(needs_prev_mem(spec, need_beta, need_thr))
        if lib.fusedsnn_lif_backward(ctypes.byref(d)) != 0:
            raise RuntimeError("fusedsnn host backward rejected its arguments")
        if gx is not grad_x:
            grad_x.copy_(gx)
    # Partials are [B, F]; the sum over the batch is the per-feature gradient (B == 1: a view).
    reduced = [None if p is None else (p[0] if B == 1 else p.sum(0)) for p in parts]
    return (grad_x, grad_mem0, grad_syn0, grad_spk0, *reduced)
