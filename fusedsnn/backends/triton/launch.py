"""How every Triton kernel of fusedsnn is launched: compiled or interpreted, configured, tuned.

One place for what the neuron, all-to-all and spike-bit kernels share: the switch between the
compiled kernel and Triton's CPU interpreter (read at launch time, so a test can flip it), the
form given to ahead-of-time compilation, output allocation (tests poison it), and the launch
configuration with its autotuner keyed on (GPU, size bucket, dtype, compile-time flags).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

try:
    import triton

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    HAS_TRITON = False

Tensor = torch.Tensor

def new_output(shape, dtype, device) -> Tensor:
    """Allocation of every kernel output; tests replace it to pre-fill outputs with NaN, so that
    an element the kernel forgets to write fails the comparison instead of passing by luck."""
    return torch.empty(shape, dtype=dtype, device=device)


@dataclass(frozen=True)
class LaunchConfig:
    """How a kernel is launched: ``block`` neurons per program, run by ``num_warps`` warps.

    The result does not depend on it (every neuron is computed alone, in the same order), only
    the speed: which is why tuning may pick a different one on each GPU.
    """

    block: int
    num_warps: int

    @property
    def elements_per_thread(self) -> int:
        return max(1, self.block // (32 * self.num_warps))


#: Used untuned on CUDA when tuning is off (FUSEDSNN_TRITON_AUTOTUNE=0) or while a CUDA graph is
#: captured; shrunk for tiny M. One element per thread keeps every variant's registers low.
DEFAULT_CONFIG = LaunchConfig(128, 4)
#: The interpreter's one fixed block (timing means nothing there; its cost is per program, so
#: one large block is fastest).
INTERPRETER_BLOCK = 1024

_TUNED: dict[tuple, LaunchConfig] = {}
_TUNING_LOG: list[dict] = []


def autotune_enabled() -> bool:
    """Whether CUDA launches pick their configuration by timing (``FUSEDSNN_TRITON_AUTOTUNE``,
    default on; ``0`` uses :data:`DEFAULT_CONFIG`)."""
    return os.environ.get("FUSEDSNN_TRITON_AUTOTUNE", "1") not in ("", "0")


def size_bucket(M: int) -> int:
    """The tuning key's size: ``M = B * F`` neurons rounded up to a power of two (T is not part
    of the key: the time loop is inside each program, so T scales every candidate alike)."""
    return 1 << max(0, (max(M, 1) - 1).bit_length())


def default_config(M: int) -> LaunchConfig:
    """:data:`DEFAULT_CONFIG`, with the block shrunk to the neuron count for tiny ``M``."""
    block = min(DEFAULT_CONFIG.block, max(16, size_bucket(M)))
    return LaunchConfig(block, max(1, min(DEFAULT_CONFIG.num_warps, block // 32)))


def tuned_configs() -> list[dict]:
    """What the autotuner chose in this process, with the candidates' median times (for reports)."""
    return [dict(row) for row in _TUNING_LOG]


def clear_tuning_cache() -> None:
    _TUNED.clear()
    _RESOLVED.clear()
    _TUNING_LOG.clear()


_DEVICE_KEYS: dict = {}


def _device_key(device: torch.device) -> str:
    key = _DEVICE_KEYS.get(device)
    if key is None:
        props = torch.cuda.get_device_properties(device)
        key = _DEVICE_KEYS[device] = f"{props.name} sm_{props.major}{props.minor}"
    return key


def _autotune(run, candidates: tuple[LaunchConfig, ...], key: tuple) -> LaunchConfig:
    """Time ``run(config)`` for each candidate (median of CUDA-event timings), keep the fastest.

    Safe to repeat on the real arguments: the kernels only write their outputs, never accumulate.
    """
    from triton.testing import do_bench

    times = {}
    for cfg in candidates:
        run(cfg)  # compile and load outside the timing
        times[cfg] = do_bench(lambda: run(cfg), warmup=5, rep=25, return_mode="median")
    best = min(times, key=times.get)
    _TUNING_LOG.append({"kernel": key[0], "device": key[1], "size_bucket": key[2], "dtype": str(key[3]),
                        "flags": dict(key[4]), "block": best.block, "num_warps": best.num_warps,
                        "times_ms": {f"{c.block}x{c.num_warps}": t for c, t in times.items()}})
    return best


#: The configuration each (kernel, device, M, dtype, flags, block_size, tuning on) resolved to
#: (tuned, default or given): one dictionary look-up per launch instead of the key building,
#: size bucket and branch. Cleared with the tuning cache; never filled during a graph capture.
_RESOLVED: dict[tuple, LaunchConfig] = {}


def _cdiv(a: int, b: int) -> int:
    # Not triton.cdiv: that is a @triton.jit function, and calling it from the host goes through
    # JITFunction.__call__ (about 10 us per launch in the CPU profile).
    return -(-a // b)


def launch(kernel, candidates: tuple[LaunchConfig, ...], M: int, dtype: torch.dtype, device: torch.device,
            block_size: Optional[int], args: tuple, flags: dict, wrapped: bool = False,
            flags_key: Optional[tuple] = None) -> LaunchConfig:
    """Launch ``kernel`` over ``M`` neurons with ``flags`` (its compile-time switches).

    The configuration is ``block_size`` when given, else the tuned one for (GPU, size bucket,
    dtype, flags), else the default. Tuning syncs the device, so it never happens while a CUDA
    graph is captured (the default is used then, and not cached): warm up before capturing.

    ``flags_key``: ``tuple(sorted(flags.items()))`` when the caller has it cached.

    ``wrapped``: called from a ``torch.library.triton_op`` body (``backends/triton/ops.py``): the
    kernel goes through ``torch.library.wrap_triton``, so that a traced graph records the kernel
    itself and inductor launches it without this launcher. Nothing is tuned then (the arguments
    may be fake tensors): the configuration tuned earlier in this process, else the default.
    """
    if wrapped and not interpreter_enabled():
        fn = torch.library.wrap_triton(compilable(kernel))
        if block_size is not None:
            cfg = LaunchConfig(block_size, 4 if block_size >= 512 else (2 if block_size >= 128 else 1))
        else:
            cfg = None
            if device.type == "cuda" and torch.cuda.is_available():
                key = (kernel.fn.__name__, _device_key(device), size_bucket(M), dtype, tuple(sorted(flags.items())))
                cfg = _TUNED.get(key)
            cfg = cfg or default_config(M)
        fn[(_cdiv(M, cfg.block),)](*args, **flags, BLOCK=cfg.block, num_warps=cfg.num_warps,
                                   enable_fp_fusion=False)
        return cfg
    fn = launchable(kernel)
    if flags_key is None:
        flags_key = tuple(sorted(flags.items()))
    tune = autotune_enabled()
    resolved_key = (kernel.fn, device, M, dtype, flags_key, block_size, tune)  # kernel.fn: hashing a JITFunction computes its cache key
    cfg = _RESOLVED.get(resolved_key)
    if cfg is not None:
        fn[(_cdiv(M, cfg.block),)](*args, **flags, BLOCK=cfg.block, num_warps=cfg.num_warps,
                                   enable_fp_fusion=False)
        return cfg

    def run(cfg: LaunchConfig) -> None:
        fn[(_cdiv(M, cfg.block),)](*args, **flags, BLOCK=cfg.block, num_warps=cfg.num_warps,
                                   enable_fp_fusion=False)

    cacheable = True
    if block_size is not None:
        cfg = LaunchConfig(block_size, 4 if block_size >= 512 else (2 if block_size >= 128 else 1))
    elif device.type != "cuda":
        cfg = LaunchConfig(min(INTERPRETER_BLOCK, max(16, size_bucket(M))), 4)
    elif not tune:
        cfg = default_config(M)
    else:
        key = (kernel.fn.__name__, _device_key(device), size_bucket(M), dtype, flags_key)
        cfg = _TUNED.get(key)
        if cfg is None:
            if torch.cuda.is_current_stream_capturing():
                cfg, cacheable = default_config(M), False
            else:
                cfg = _TUNED[key] = _autotune(run, candidates, key)
    if cacheable:
        _RESOLVED[resolved_key] = cfg
    run(cfg)
    return cfg



def interpreter_enabled() -> bool:
    """Whether Triton runs kernels on CPU tensors through its interpreter (tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_VARIANTS: dict[tuple[str, bool], object] = {}


def launchable(kernel, do_not_specialize: tuple[str, ...] = ("T",)):
    """The kernel in the mode asked for now: compiled, or Triton's CPU interpreter.

    ``triton.jit`` fixes the mode when the module is imported; reading ``TRITON_INTERPRET`` at
    launch instead lets a test switch it with ``monkeypatch`` without re-importing anything.
    This is why the kernels call only builtins of ``triton.language`` (``tl.full``, not the
    ``@jit``-defined ``tl.zeros``): a ``@jit`` helper keeps the mode of the moment triton was
    imported and cannot be called from an interpreted kernel.
    """
    interpret = interpreter_enabled()
    key = (kernel.fn.__name__, interpret)
    if key not in _VARIANTS:
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction

        cls = InterpretedFunction if interpret else JITFunction
        _VARIANTS[key] = kernel if isinstance(kernel, cls) else cls(kernel.fn, do_not_specialize=list(do_not_specialize))
    return _VARIANTS[key]


def compilable(kernel, do_not_specialize: tuple[str, ...] = ("T",)):
    """The JIT (not interpreted) form of a kernel, for ahead-of-time compilation."""
    from triton.runtime.jit import JITFunction

    return kernel if isinstance(kernel, JITFunction) else JITFunction(kernel.fn, do_not_specialize=list(do_not_specialize))
