"""Ahead-of-time compilation of the LIF kernels for real GPU targets, without a GPU.

The Triton interpreter accepts code that the compiler rejects, so the test suite compiles every
kernel variant for sm_80 and sm_90 through ``triton.compile`` and reads register and spill counts
from ``ptxas -v`` (the count Triton itself only learns when it loads a binary on a device).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .spec import RECURRENCE_ONE_TO_ONE, LIFSpec, needs_prev_mem, recomputes_surrogate

_TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass
class CompiledKernelInfo:
    name: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    ptx: str

    def summary(self) -> str:
        return (
            f"{self.name} sm_{self.arch}: {self.registers} registers, "
            f"{self.spill_stores} bytes spill stores, {self.spill_loads} bytes spill loads"
        )


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int, int]:
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(arch).path if hasattr(get_ptxas(arch), "path") else get_ptxas(arch)
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        proc = subprocess.run(
            [str(ptxas), "-v", f"--gpu-name={gpu}", str(src), "-o", str(Path(tmp) / "kernel.cubin")],
            capture_output=True,
            text=True,
            check=True,
        )
    text = proc.stdout + proc.stderr
    regs = int(re.search(r"Used (\d+) registers", text).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return regs, int(spills.group(1)), int(spills.group(2))


def theoretical_occupancy(registers: int, num_warps: int, max_warps: int = 64,
                          registers_per_sm: int = 65536, max_blocks: int = 32) -> float:
    """Resident warps over the SM's maximum, as registers allow (sm_80/sm_90 limits by default:
    64 warps, 64K registers, allocated per warp in units of 256). The LIF kernels use almost no
    shared memory, so registers are what limit them."""
    per_warp = -(-registers * 32 // 256) * 256
    warps = min(max_warps, registers_per_sm // per_warp)
    blocks = min(max_blocks, warps // num_warps)
    return blocks * num_warps / max_warps


def compile_lif_kernels(
    spec: LIFSpec,
    dtype: torch.dtype,
    arch: int,
    need_param_grads: tuple[bool, bool, bool, bool] = (True, True, True, True),
    block: int = 512,
    num_warps: int = 4,
) -> list[CompiledKernelInfo]:
    """Compile the forward and backward kernels of ``spec`` for ``sm_{arch}``; no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .lif_triton import compilable, lif_backward_kernel, lif_forward_kernel

    io = _TRITON_DTYPES[dtype]
    target = GPUTarget("cuda", arch, 32)
    options = {"enable_fp_fusion": False, "num_warps": num_warps}
    need_beta, need_thr, need_alpha, need_V = need_param_grads
    # As the launchers do: a 16-bit input keeps a float32 membrane copy only when the backward
    # reads the previous membrane, and only a float32 input's backward recomputes the surrogate
    # (no trace written).
    store_state = dtype != torch.float32 and needs_prev_mem(spec, need_beta, need_thr)
    recompute = recomputes_surrogate(dtype)
    fwd_sig = {
        "x_ptr": f"*{io}", "rec_ptr": f"*{io}", "mem0_ptr": "*fp32", "syn0_ptr": "*fp32", "spk0_ptr": "*fp32",
        "beta_ptr": "*fp32", "thr_ptr": "*fp32", "alpha_ptr": "*fp32", "v_ptr": "*fp32",
        "spk_ptr": f"*{io}", "syn_ptr": f"*{io}", "mem_ptr": f"*{io}", "trace_ptr": "*fp32",
        "state_ptr": "*fp32", "pre_ptr": "*fp32",
        "T": "i32", "M": "i64", "F": "i64", "stride_x_t": "i64", "stride_rec_t": "i64",
        "gsf": "fp32", "c0": "fp32", "c1": "fp32",
    }
    fwd_const = {
        "SYNAPTIC": spec.synaptic, "RECURRENCE": spec.recurrence, "RESET": spec.reset,
        "IMMEDIATE_RESET": spec.immediate_reset, "ZERO_BEFORE_DECAY": spec.zero_before_decay,
        "SURROGATE": spec.surrogate.code, "HAS_MEM0": True, "HAS_SYN0": spec.synaptic,
        "HAS_SPK0": spec.recurrence == RECURRENCE_ONE_TO_ONE, "STORE_STATE": store_state,
        "STORE_TRACE": not recompute, "STORE_PRE": spec.immediate_reset, "BLOCK": block,
    }
    bwd_sig = {
        "grad_spk_ptr": f"*{io}", "grad_syn_ptr": f"*{io}", "grad_mem_ptr": f"*{io}",
        "trace_ptr": "*fp32", "mem_hist_ptr": "*fp32" if store_state else f"*{io}",
        "syn_hist_ptr": f"*{io}", "spk_hist_ptr": f"*{io}", "pre_ptr": "*fp32",
        "mem0_ptr": "*fp32", "syn0_ptr": "*fp32", "spk0_ptr": "*fp32",
        "beta_ptr": "*fp32", "thr_ptr": "*fp32", "alpha_ptr": "*fp32", "v_ptr": "*fp32",
        "grad_x_ptr": f"*{io}", "grad_mem0_ptr": "*fp32", "grad_syn0_ptr": "*fp32", "grad_spk0_ptr": "*fp32",
        "part_beta_ptr": "*fp32", "part_thr_ptr": "*fp32", "part_alpha_ptr": "*fp32", "part_v_ptr": "*fp32",
        "T": "i32", "M": "i64", "F": "i64", "stride_gspk_t": "i64", "stride_gsyn_t": "i64",
        "stride_gmem_t": "i64", "gsf": "fp32", "c0": "fp32", "c1": "fp32",
    }
    bwd_const = {
        "SYNAPTIC": spec.synaptic, "RECURRENCE": spec.recurrence, "RESET": spec.reset,
        "IMMEDIATE_RESET": spec.immediate_reset, "ZERO_BEFORE_DECAY": spec.zero_before_decay,
        "SURROGATE": spec.surrogate.code, "RECOMPUTE_SURROGATE": recompute,
        "HAS_GRAD_SPK": True, "HAS_GRAD_SYN": spec.synaptic, "HAS_GRAD_MEM": True,
        "HAS_MEM0": True, "HAS_SYN0": spec.synaptic, "HAS_SPK0": spec.recurrence == RECURRENCE_ONE_TO_ONE,
        "NEED_PREV_MEM": needs_prev_mem(spec, need_beta, need_thr), "NEED_BETA": need_beta,
        "NEED_THR": need_thr, "NEED_ALPHA": need_alpha and spec.synaptic,
        "NEED_V": need_V and spec.recurrence == RECURRENCE_ONE_TO_ONE, "BLOCK": block,
    }
    infos = []
    for name, fn, sig, const in (
        ("lif_forward_kernel", lif_forward_kernel, fwd_sig, fwd_const),
        ("lif_backward_kernel", lif_backward_kernel, bwd_sig, bwd_const),
    ):
        full_sig = dict(sig)
        full_sig.update({k: "constexpr" for k in const})
        src = ASTSource(fn=compilable(fn), signature=full_sig, constexprs=const)
        compiled = triton.compile(src, target=target, options=options)
        ptx = compiled.asm["ptx"]
        regs, spill_st, spill_ld = _ptxas_usage(ptx, arch)
        infos.append(CompiledKernelInfo(name, arch, regs, spill_st, spill_ld, ptx))
    return infos


def main(argv: list[str] | None = None) -> int:
    """``python -m fusedsnn.kernels.aot CONFIGS.json``: compile each config, print one JSON line each.

    Runs in its own process on purpose: once Triton's interpreter has run in a process it patches
    ``triton.language`` for good, and real compilation then fails.
    """
    import argparse
    import json

    from ..surrogate import Surrogate

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("configs", help="JSON list of {synaptic, recurrence, reset, reset_delay, "
                        "surrogate, p0, p1, gsf, dtype, arch}")
    args = parser.parse_args(argv)
    with open(args.configs) as fh:
        configs = json.load(fh)
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    for cfg in configs:
        spec = LIFSpec(cfg["synaptic"], cfg["recurrence"], cfg["reset"], cfg["reset_delay"],
                       Surrogate(cfg["surrogate"], cfg.get("p0", 2.0), cfg.get("p1", 0.0)), cfg.get("gsf", 1.0))
        block, num_warps = cfg.get("block", 512), cfg.get("num_warps", 4)
        need = tuple(cfg.get("need_param_grads", (True, True, True, True)))
        for info in compile_lif_kernels(spec, dtypes[cfg["dtype"]], cfg["arch"], need, block, num_warps):
            print(json.dumps({**cfg, "kernel": info.name, "registers": info.registers,
                              "occupancy": theoretical_occupancy(info.registers, num_warps),
                              "spill_stores": info.spill_stores, "spill_loads": info.spill_loads,
                              "has_fma": "fma.rn" in info.ptx,
                              # Triton's plain '/' is div.full.f32 (approximate); the kernels use
                              # div_rn so divisions round as PyTorch's do.
                              "has_approx_div": "div.full.f32" in info.ptx or "div.approx.f32" in info.ptx}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
