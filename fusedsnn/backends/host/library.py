"""Building and finding the host backend's shared libraries, and the process settings they need.

The install (setup.py) builds ``fusedsnn._host`` and ``fusedsnn._host_all_to_all`` as optional
extensions; a source checkout without them compiles each once into ``FUSEDSNN_CACHE`` (default
``~/.cache/fusedsnn``), keyed by a hash of its sources and flags. Every build takes the flags of
``csrc/compile_flags.txt``, the one list that setup.py and csrc/popart/Makefile read too.

The libraries are plain C++ with a C ABI, loaded with ctypes: docs/design.md ("Why ctypes and
not a torch extension") says why this is kept over ``torch.utils.cpp_extension``.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

_PACKAGE_DIR = Path(__file__).resolve().parents[2]
_SOURCE_ROOT = _PACKAGE_DIR.parent


def _read_flags() -> list[str]:
    """The shared C++ flags (``csrc/compile_flags.txt``; the fallback mirrors it for an install
    without the sources, where nothing is compiled anyway)."""
    path = _SOURCE_ROOT / "csrc" / "compile_flags.txt"
    if not path.exists():
        return ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-trapping-math"]
    return [f for line in path.read_text().splitlines() if not line.lstrip().startswith("#") for f in line.split()]


#: What every host build uses: the shared list, plus a shared library's own link flags.
COMPILE_FLAGS = _read_flags() + ["-fPIC", "-shared", "-pthread"]
# Run the loops on torch's OpenMP workers (see run_partitioned in csrc/host); a compiler without
# OpenMP builds the library with its own persistent pool instead.
OPENMP_FLAGS = ["-fopenmp"]


def source_root() -> Optional[Path]:
    """The checkout holding csrc/ (an editable install or a source tree), if any."""
    root = _SOURCE_ROOT
    return root if (root / "csrc" / "compile_flags.txt").exists() else None


def built_extension(module: str = "_host") -> Optional[Path]:
    """The copy of ``fusedsnn.<module>`` that the install built, if any."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = _PACKAGE_DIR / f"{module}{suffix}"
        if candidate.exists():
            return candidate
    return None


def compile_into_cache(sources: tuple[str, ...], stem: str,
                        flag_variants: Optional[tuple[list[str], ...]] = None) -> Path:
    """Compile ``sources[0]`` (the others are headers it includes) into ``FUSEDSNN_CACHE``, once
    per hash of the sources and flags. ``flag_variants`` are tried in order (default: with
    OpenMP, then without, for a compiler that lacks it). Shared by every host library."""
    variants = (OPENMP_FLAGS, []) if flag_variants is None else flag_variants
    root = source_root()
    if root is None or not (root / sources[0]).exists():
        raise OSError(f"the C++ sources (csrc/) are not available to build {stem}")
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise OSError("no C++ compiler found (set CXX or install g++)")
    digest = hashlib.sha256()
    for rel in sources:
        digest.update((root / rel).read_bytes())
    digest.update(" ".join(COMPILE_FLAGS + variants[0]).encode())
    cache = Path(os.environ.get("FUSEDSNN_CACHE", Path.home() / ".cache" / "fusedsnn"))
    target = cache / f"{stem}_{digest.hexdigest()[:16]}.so"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            out = Path(tmp) / target.name
            proc = None
            for extra in variants:
                proc = subprocess.run([compiler, *COMPILE_FLAGS, *extra, str(root / sources[0]), "-o", str(out)],
                                      capture_output=True, text=True)
                if proc.returncode == 0:
                    break
            if proc.returncode != 0:
                raise OSError(f"compiling {stem} failed:\n{proc.stderr[-2000:]}")
            os.replace(out, target)
    return target


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")
_allocator_tuned: Optional[bool] = None


def tune_allocator() -> bool:
    """Keep freed ``[T, B, F]`` buffers in the process instead of returning them to the OS.

    PyTorch's CPU allocator is glibc malloc: blocks above the mmap threshold (at most 32 MB) are
    fresh mappings, and freed memory above the trim threshold goes back to the OS, so each call
    of a fused neuron faulted in (and zero-filled) every page of its outputs and gradients again
    (25,000-50,000 page faults per call at T=100, B=128, N=1000). With mmap off for malloc
    (``M_MMAP_MAX=0``) and a 1 GiB trim threshold the pages are reused: 0 faults per call at
    T=25 (docs/host_performance.md has the measurements). The cost is that the process keeps
    its peak heap. Applied once when the host backend loads, on glibc only, unless
    ``FUSEDSNN_MALLOC_TUNING=0`` or the user set glibc's own ``MALLOC_*_`` variables.
    Returns whether the settings were applied.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("FUSEDSNN_MALLOC_TUNING", "1") == "0" or any(v in os.environ for v in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: other libcs' mallopt take other parameters
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _allocator_tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _allocator_tuned
