"""Builds the host (CPU) backend's shared library; everything else is in pyproject.toml.

The library is plain C++ with a C ABI (csrc/host), loaded with ctypes: it needs only a C++
compiler, no Poplar and no torch headers. It is optional: if it cannot be built the install still
succeeds and fusedsnn falls back to its reference backend (with a warning at first use).
"""

import hashlib
import os
import shutil
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The one flag list of every C++ build of the kernels (csrc/compile_flags.txt).
KERNEL_FLAGS = [flag for line in (Path(__file__).parent / "csrc" / "compile_flags.txt").read_text().splitlines()
                if not line.lstrip().startswith("#") for flag in line.split()]

# FUSEDSNN_BUILD_HOST=0 skips the C++ build: the GPU check (benchmarks/gpu/check.sh) installs
# with it, since compiling the AVX-512/AVX2 clones took over a minute there and CUDA never runs
# the host library (it would still compile into the cache at first use).
BUILD_HOST = os.environ.get("FUSEDSNN_BUILD_HOST", "1") != "0"



class CachedBuildExt(build_ext):
    """Reuses an extension built before from the same sources and flags: each ``pip install -e``
    builds in a fresh temporary folder, so without this every reinstall recompiled the host
    libraries from scratch (minutes, for the AVX-512/AVX2 clones). The cache lives in
    ``FUSEDSNN_CACHE/build`` (default ``~/.cache/fusedsnn/build``), keyed by a hash of every
    source and header the extension names, its flags and the interpreter's extension suffix."""

    def build_extension(self, ext: Extension) -> None:
        digest = hashlib.sha256()
        for path in [*ext.sources, *ext.depends]:
            digest.update(Path(path).read_bytes())
        digest.update(" ".join([*ext.extra_compile_args, *ext.extra_link_args]).encode())
        digest.update((sysconfig.get_config_var("EXT_SUFFIX") or "").encode())
        cache = Path(os.environ.get("FUSEDSNN_CACHE", Path.home() / ".cache" / "fusedsnn")) / "build"
        cached = cache / f"{ext.name}-{digest.hexdigest()[:16]}.so"
        target = Path(self.get_ext_fullpath(ext.name))
        if cached.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, target)
            return
        super().build_extension(ext)
        if target.exists():
            try:
                cache.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(target, cached.with_suffix(".tmp"))
                os.replace(cached.with_suffix(".tmp"), cached)
            except OSError:  # a read-only home: the build itself succeeded
                pass


setup(
    cmdclass={"build_ext": CachedBuildExt},
    ext_modules=[] if not BUILD_HOST else [
        Extension(
            "fusedsnn._host",
            sources=["csrc/host/fusedsnn_host.cpp"],
            depends=["csrc/kernels/lif.hpp", "csrc/kernels/surrogate.hpp"],
            language="c++",
            # -fopenmp: the loops run on torch's OpenMP workers (libgomp.so.1 resolves to torch's).
            extra_compile_args=[*KERNEL_FLAGS, "-pthread", "-fopenmp"],
            extra_link_args=["-pthread", "-fopenmp"],
            optional=True,
        ),
        # The all-to-all recurrent neuron's fused loop: a library of its own (see
        # fusedsnn/backends/host/all_to_all.py).
        Extension(
            "fusedsnn._host_all_to_all",
            sources=["csrc/host/fusedsnn_all_to_all.cpp"],
            depends=["csrc/kernels/lif_all_to_all.hpp", "csrc/kernels/lif.hpp", "csrc/kernels/surrogate.hpp"],
            language="c++",
            # -fopenmp: its thread teams run on torch's OpenMP workers, as fusedsnn._host's loops do.
            extra_compile_args=[*KERNEL_FLAGS, "-pthread", "-fopenmp"],
            extra_link_args=["-pthread", "-fopenmp"],
            optional=True,
        ),
    ]
)
