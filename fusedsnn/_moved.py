"""Import paths of modules that moved when the package took its present layout.

Each old path names the module that now holds its code, so ``import fusedsnn.convert`` or
``from fusedsnn.kernels import lif_host`` keep working for code written against the earlier
layout. New code imports the new paths (docs/design.md lists them).
"""

from __future__ import annotations

import importlib
import sys
import types

MOVED = {
    "fusedsnn.convert": "fusedsnn.interop.snntorch",
    "fusedsnn.fuse": "fusedsnn.interop.fuse",
    "fusedsnn.nir_interop": "fusedsnn.interop.nir",
    "fusedsnn.ipu": "fusedsnn.backends.poplar.poptorch",
    "fusedsnn.ops_dense": "fusedsnn.ops.all_to_all",
    "fusedsnn.kernels.spec": "fusedsnn.spec",
    "fusedsnn.kernels.layout": "fusedsnn.backends.layout",
    "fusedsnn.kernels.lif_reference": "fusedsnn.backends.reference.lif",
    "fusedsnn.kernels.lif_dense_reference": "fusedsnn.backends.reference.all_to_all",
    "fusedsnn.kernels.naive": "fusedsnn.backends.reference.naive",
    "fusedsnn.kernels.lif_host": "fusedsnn.backends.host.lif",
    "fusedsnn.kernels.lif_dense_host": "fusedsnn.backends.host.all_to_all",
    "fusedsnn.kernels.lif_triton": "fusedsnn.backends.triton.lif",
    "fusedsnn.kernels.lif_dense_triton": "fusedsnn.backends.triton.all_to_all",
    "fusedsnn.kernels.spike_bits_triton": "fusedsnn.backends.triton.spike_bits",
    "fusedsnn.kernels.aot": "fusedsnn.backends.triton.aot",
    "fusedsnn.kernels.lif_dense_aot": "fusedsnn.backends.triton.aot",
}


def register() -> None:
    """Alias every old path in ``sys.modules`` (the Triton ones only where triton imports)."""
    kernels = sys.modules.setdefault("fusedsnn.kernels", types.ModuleType(
        "fusedsnn.kernels", "Moved: fusedsnn.backends and fusedsnn.spec hold what was here."))
    for old, new in MOVED.items():
        try:
            module = importlib.import_module(new)
        except ImportError:  # triton absent: its modules cannot be imported under any name
            continue
        sys.modules.setdefault(old, module)
        if old.startswith("fusedsnn.kernels."):
            setattr(kernels, old.rsplit(".", 1)[1], module)
