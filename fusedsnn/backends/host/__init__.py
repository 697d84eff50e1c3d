"""The host backend (CPUs): the IPU codelets' C++ time loops, run on CPU threads.

``library.py`` builds (or finds) and loads the shared libraries, ``lif.py`` and
``all_to_all.py`` are the launchers of the two fused ops (ctypes descriptors over
csrc/kernels/*.hpp). ``backend="auto"`` picks it for float32/float64 CPU tensors once its
library loads; without a C++ compiler it is unavailable and the reference backend runs (with a
warning at first use).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..registry import Backend, register_backend, set_cpu_fast_path
from . import all_to_all, lif, linear_lif


def _unsupported(x: torch.Tensor) -> Optional[str]:
    if x.device.type != "cpu":
        return f"the host backend runs CPU tensors, got a {x.device.type} tensor"
    if x.dtype not in (torch.float32, torch.float64):
        return f"the host backend takes float32 or float64 input, got {x.dtype}"
    # loaded(): skip the loader's lock and torch.compile wrapper once the library is in.
    if not (lif.loaded() or lif.available()):
        return "the host library could not be built or loaded (see the warning above)"
    return None


def _all_to_all_unsupported(x: torch.Tensor) -> Optional[str]:
    reason = _unsupported(x)
    if reason is None and not all_to_all.available():
        return "the all-to-all host library could not be built or loaded"
    return reason


def _claims(x: torch.Tensor) -> bool:
    if x.device.type != "cpu" or _unsupported(x) is not None:
        return False
    if not torch.compiler.is_compiling():
        set_cpu_fast_path(HOST)
    return True


HOST = Backend(
    "host",
    lif_forward=lif.lif_forward_host,
    lif_backward=lif.lif_backward_host,
    unsupported=_unsupported,
    all_to_all_forward=all_to_all.lif_all_to_all_forward_host,
    all_to_all_backward=all_to_all.lif_all_to_all_backward_host,
    all_to_all_unsupported=_all_to_all_unsupported,
    linear_lif_forward=linear_lif.linear_lif_forward_host,
    linear_lif_backward=linear_lif.linear_lif_backward_host,
    linear_lif_unsupported=_unsupported,
    claims=_claims,
    auto_priority=100,
)
register_backend(HOST)
