"""Backends: the kernels and launchers that run the fused ops, one folder each, and the one
registry (:mod:`.registry`) through which :mod:`fusedsnn.ops` finds them.

``reference`` (whole-tensor PyTorch, any device), ``triton`` (NVIDIA GPUs), ``host`` (CPUs,
C++) and ``poplar`` (Graphcore IPUs under PopTorch). ``layout.py`` holds the memory layout
and host-side constants every compiled backend shares. Importing this package registers every
backend whose dependencies are present.
"""

from . import host, poplar, reference, triton  # noqa: F401 - each registers itself
from .registry import Backend, available_backends, get_backend, register_backend, resolve_backend

__all__ = ["Backend", "available_backends", "get_backend", "register_backend", "resolve_backend"]
