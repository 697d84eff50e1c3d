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
import threading
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
    ``FUSEDSNN_MALLOC_TUNING=0`` or the user set glibc's own ``MALLOC_*_`` variables. With them
    the heap is advised for transparent huge pages (:func:`_start_huge_page_advice`).
    Returns whether the settings were applied.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("FUSEDSNN_MALLOC_TUNING", "1") == "0" or any(v in os.environ for v in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: other libcs' mallopt take other parameters
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _allocator_tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    if _allocator_tuned:
        _start_huge_page_advice(libc)
    return _allocator_tuned


# madvise(2) advice (linux/mman.h).
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25  # Linux 6.1+; an older kernel refuses it (EINVAL)
_HUGE = 2 << 20
_PAGE = 4096
#: Outputs at least this large make a launcher extend the huge-page advice over the heap's growth.
HUGE_PAGE_MIN_BYTES = _HUGE


class _HugePages:
    """The heap's huge-page state: the libc calls, how far the heap has been advised, and the
    thread collapsing what existed when the library loaded."""

    def __init__(self, libc: ctypes.CDLL, heap_start: int) -> None:
        self.sbrk, self.madvise = libc.sbrk, libc.madvise
        self.sbrk.argtypes, self.sbrk.restype = [ctypes.c_ssize_t], ctypes.c_void_p
        self.madvise.argtypes, self.madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
        self.heap_start = heap_start
        self.advised_to = heap_start
        self.collapse_thread: Optional[threading.Thread] = None

    def collapse(self, begin: int, end: int) -> None:
        """MADV_COLLAPSE [begin, end) one 2 MiB region at a time (a syscall each, without the GIL:
        ctypes releases it), stopping at the first refusal of a kernel that lacks it."""
        for region in range(-(-begin // _HUGE), end // _HUGE):
            if self.madvise(region * _HUGE, _HUGE, _MADV_COLLAPSE) != 0 and ctypes.get_errno() == 22:
                return


_huge_pages: Optional[_HugePages] = None


def _transparent_huge_pages_mode() -> str:
    """"always", "madvise" or "never" (the bracketed choice of the kernel's setting), "" if unknown."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def _heap_start() -> Optional[int]:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("[heap]"):
                    return int(line.split("-", 1)[0], 16)
    except (OSError, ValueError):
        return None
    return None


def _start_huge_page_advice(libc: ctypes.CDLL) -> None:
    """Give the fused loops' large arrays transparent huge pages.

    The time loops walk ``[T, B * F]`` arrays one step row at a time for a chunk of neurons,
    several arrays at once, so every few KiB they enter a new 4 KiB page of each array: address
    translation, not bandwidth, bounds them (under a hypervisor each miss is a nested page
    walk). Where the kernel's setting is "madvise" (the common default) no page is huge unless
    advised. With mmap off for malloc (above) large tensors live in the heap, so the heap is
    advised ``MADV_HUGEPAGE`` now and, in :func:`advise_huge_pages`, as it grows: memory advised
    before its first touch (the fused outputs, written first by the kernels) is huge at once.
    The heap that exists now was faulted in small pages; a background thread collapses it into
    huge ones (``MADV_COLLAPSE``, Linux 6.1+): about half a second of one core for the ~110 MiB
    heap of a fresh torch process, which done in the first call instead delayed it by as much.
    Skipped where the setting is "always" (nothing to advise), "never" or unreadable, and with
    ``FUSEDSNN_HUGE_PAGES=0``."""
    global _huge_pages
    if os.environ.get("FUSEDSNN_HUGE_PAGES", "1") == "0" or _transparent_huge_pages_mode() != "madvise":
        return
    start = _heap_start()
    if start is None or not hasattr(libc, "sbrk") or not hasattr(libc, "madvise"):
        return
    hp = _HugePages(libc, start)
    _huge_pages = hp
    advise_huge_pages()
    hp.collapse_thread = threading.Thread(target=hp.collapse, args=(start, hp.advised_to),
                                          name="fusedsnn-huge-pages", daemon=True)
    hp.collapse_thread.start()


def advise_huge_pages() -> None:
    """Extend the huge-page advice over the heap grown since the last call (one ``sbrk(0)`` when
    it has not grown). Launchers call it after allocating large outputs, before the kernel first
    touches them. A no-op unless :func:`tune_allocator` started the advice; a failure only
    loses the speed-up."""
    hp = _huge_pages
    if hp is None:
        return
    end = hp.sbrk(0) or 0
    if end > hp.advised_to:
        begin = hp.advised_to & ~(_PAGE - 1)
        hp.madvise(begin, end - begin, _MADV_HUGEPAGE)
        hp.advised_to = end


def huge_page_advice_active() -> bool:
    """Whether the heap is being advised for huge pages (see :func:`tune_allocator`)."""
    return _huge_pages is not None
