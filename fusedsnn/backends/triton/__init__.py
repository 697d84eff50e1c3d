"""The Triton backend (NVIDIA GPUs): one fused kernel per neuron call, forward and backward.

``lif.py`` holds the LIF family's kernels and launchers, ``all_to_all.py`` the all-to-all
recurrent op's persistent kernels, ``spike_bits.py`` the 1-bit spike packing of the memory-lean
mode, ``launch.py`` what every kernel's launch shares (interpreter switch, autotuning),
``aot.py`` ahead-of-time compilation of all of them for sm_80/sm_90 without a GPU.
Not registered when triton is not installed. On CPU tensors it runs only through Triton's
interpreter (``TRITON_INTERPRET=1``, tests) and is never chosen by ``backend="auto"`` there.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..registry import Backend, register_backend
from .launch import HAS_TRITON, interpreter_enabled

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _unsupported(x: torch.Tensor) -> Optional[str]:
    if x.dtype not in _FLOATS:
        return f"the triton backend takes float32, float16 or bfloat16 input, got {x.dtype}"
    if x.device.type == "cuda":
        return None
    if x.device.type == "cpu" and interpreter_enabled():
        return None
    return (f"the triton backend needs CUDA tensors (got a {x.device.type} tensor); "
            "set TRITON_INTERPRET=1 to run it on CPU tensors through Triton's interpreter")


if HAS_TRITON:
    from . import all_to_all, lif, linear_lif, ops

    register_backend(Backend(
        "triton",
        lif_forward=lif.lif_forward_triton,
        lif_backward=lif.lif_backward_triton,
        unsupported=_unsupported,
        all_to_all_forward=all_to_all.lif_all_to_all_forward_triton,
        all_to_all_backward=all_to_all.lif_all_to_all_backward_triton,
        all_to_all_unsupported=all_to_all.unsupported_reason,
        linear_lif_forward=linear_lif.linear_lif_forward_triton,
        linear_lif_backward=linear_lif.linear_lif_backward_triton,
        linear_lif_unsupported=linear_lif.unsupported_reason,
        claims=lambda x: x.device.type == "cuda",
        auto_priority=10,
        compiled_lif=(ops.lif_forward_triton_op, ops.lif_backward_triton_op),
    ))
