"""Ahead-of-time compilation of every Triton kernel for real GPU targets, without a GPU.

The Triton interpreter accepts code that the compiler rejects, so the test suite compiles every
kernel variant for sm_80 and sm_90 through ``triton.compile`` and reads register and spill counts
from ``ptxas -v`` (the count Triton itself only learns when it loads a binary on a device):
the LIF kernels (:func:`compile_lif_kernels`), the all-to-all kernels
(:func:`compile_all_to_all_kernels`) and the spike-bit kernels (:func:`compile_spike_bits_kernels`).
It imports triton at load: only a machine with triton uses it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from ...spec import RECURRENCE_ONE_TO_ONE, LIFSpec, needs_prev_mem, recomputes_surrogate
from ...surrogate import Surrogate
from .all_to_all import (lif_all_to_all_backward_kernel, lif_all_to_all_forward_kernel,
                         lif_all_to_all_step_backward_kernel, lif_all_to_all_step_forward_kernel,
                         step_num_warps)
from .launch import compilable
from .lif import lif_backward_kernel, lif_forward_kernel
from .linear_lif import BLOCK_B as LINEAR_BLOCK_B, BLOCK_K as LINEAR_BLOCK_K, BLOCK_N as LINEAR_BLOCK_N
from .linear_lif import NUM_WARPS as LINEAR_NUM_WARPS, linear_lif_forward_kernel
from .spike_bits import BLOCK_BYTES, NUM_WARPS, pack_spike_bits_kernel, unpack_spike_bits_kernel

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
    """``python -m fusedsnn.backends.triton.aot CONFIGS.json``: compile each LIF config, print one
    JSON line each; ``--all-to-all``: every all-to-all variant (:func:`all_to_all_variants`);
    ``--spike-bits``: both spike-bit kernels for every integer view.

    Runs in its own process on purpose: once Triton's interpreter has run in a process it patches
    ``triton.language`` for good, and real compilation then fails.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("configs", nargs="?", help="JSON list of {synaptic, recurrence, reset, reset_delay, "
                        "surrogate, p0, p1, gsf, dtype, arch}")
    parser.add_argument("--all-to-all", action="store_true", help="compile the all-to-all kernels instead")
    parser.add_argument("--spike-bits", action="store_true", help="compile the spike-bit kernels instead")
    parser.add_argument("--linear-lif", action="store_true", help="compile the fused Linear + LIF kernels instead")
    args = parser.parse_args(argv)
    if args.linear_lif:
        return _main_linear_lif()
    if args.all_to_all:
        return _main_all_to_all()
    if args.spike_bits:
        return _main_spike_bits()
    if args.configs is None:
        parser.error("give CONFIGS.json, --all-to-all or --spike-bits")
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


def compile_all_to_all_kernels(synaptic: bool, reset: int, immediate: bool, arch: int, dtype: str = "fp32",
                               block_n: int = 64, block_b: int = 16, num_warps: int = 4,
                               tile: tuple[int, int, int] = (64, 64, 32)) -> list[CompiledKernelInfo]:
    """The all-to-all kernels of one neuron variant for ``sm_{arch}``. ``dtype="fp32"``: the
    persistent forward/backward (``BLOCK_B x block_n``) and the per-step forward/backward tiles
    (``tile = (BLOCK_M, BLOCK_N, BLOCK_K)``, :func:`step_num_warps` warps); ``"bf16"``/``"fp16"``: the per-step forward only,
    the one kernel whose code depends on the input dtype (its ``tl.dot`` takes 16-bit operands;
    the persistent kernels and the backward take float32 from the launcher)."""
    target = GPUTarget("cuda", arch, 32)
    options = {"enable_fp_fusion": False, "num_warps": num_warps}
    p = "*fp32"
    fwd_sig = {name: p for name in ("x_ptr", "wt_ptr", "bias_ptr", "mem0_ptr", "syn0_ptr", "spk0_ptr", "beta_ptr",
                                    "thr_ptr", "alpha_ptr", "spk_ptr", "syn_ptr", "mem_ptr", "trace_ptr", "pre_ptr")}
    fwd_sig.update({"T": "i32", "B": "i32", "N": "i32", "gsf": "fp32", "c0": "fp32", "c1": "fp32"})
    fwd_const = {"SYNAPTIC": synaptic, "RESET": reset, "IMMEDIATE_RESET": immediate, "SURROGATE": 0,
                 "HAS_BIAS": True, "HAS_MEM0": True, "HAS_SYN0": synaptic, "HAS_SPK0": True,
                 "BLOCK_B": block_b, "BLOCK_N": block_n}
    bwd_sig = {name: p for name in ("grad_spk_ptr", "grad_syn_ptr", "grad_mem_ptr", "trace_ptr", "mem_hist_ptr",
                                    "syn_hist_ptr", "pre_ptr", "mem0_ptr", "syn0_ptr", "w_ptr", "beta_ptr",
                                    "thr_ptr", "alpha_ptr", "grad_x_ptr", "grad_mem0_ptr", "grad_syn0_ptr",
                                    "grad_spk0_ptr", "part_beta_ptr", "part_thr_ptr", "part_alpha_ptr")}
    bwd_sig.update({"T": "i32", "B": "i32", "N": "i32", "gsf": "fp32"})
    bwd_const = {"SYNAPTIC": synaptic, "RESET": reset, "IMMEDIATE_RESET": immediate, "HAS_GRAD_SPK": True,
                 "HAS_GRAD_SYN": synaptic, "HAS_GRAD_MEM": True, "HAS_MEM0": True, "HAS_SYN0": synaptic,
                 "NEED_BETA": True, "NEED_THR": True, "NEED_ALPHA": synaptic, "BLOCK_B": block_b,
                 "BLOCK_N": block_n}
    # The per-step tiles: a middle step (FIRST/LAST False: the product and every state read).
    block_m, tile_n, block_k = tile
    low = f"*{dtype}"
    step_fwd_sig = {k: v for k, v in fwd_sig.items() if k != "T"}
    step_fwd_sig.update({"x_ptr": low, "wt_ptr": low, "spk0_ptr": low, "spk_ptr": low})
    step_fwd_sig = {**{k: step_fwd_sig[k] for k in list(fwd_sig)[:14]}, "t": "i32",
                    **{k: step_fwd_sig[k] for k in ("B", "N", "gsf", "c0", "c1")}}
    tile_const = {"BLOCK_M": block_m, "BLOCK_N": tile_n, "BLOCK_K": block_k if dtype == "fp32" else 64}
    step_fwd_const = {**{k: v for k, v in fwd_const.items() if k not in ("BLOCK_B", "BLOCK_N")},
                      "FIRST": False, "IEEE": dtype == "fp32", **tile_const}
    step_bwd_sig = {k: p for k in ("grad_spk_ptr", "grad_syn_ptr", "grad_mem_ptr", "trace_ptr", "mem_hist_ptr",
                                   "syn_hist_ptr", "pre_ptr", "mem0_ptr", "syn0_ptr", "w_ptr", "beta_ptr", "thr_ptr",
                                   "alpha_ptr", "grad_x_ptr", "carry_mem_ptr", "carry_syn_ptr", "part_beta_ptr",
                                   "part_thr_ptr", "part_alpha_ptr")}
    step_bwd_sig.update({"t": "i32", "B": "i32", "N": "i32", "gsf": "fp32"})
    step_bwd_const = {**{k: v for k, v in bwd_const.items() if k not in ("BLOCK_B", "BLOCK_N")},
                      "FIRST": False, "LAST": False, **tile_const}
    kernels = [("lif_all_to_all_step_forward_kernel", lif_all_to_all_step_forward_kernel, step_fwd_sig,
                step_fwd_const, ("t",))]
    if dtype == "fp32":
        kernels = [("lif_all_to_all_forward_kernel", lif_all_to_all_forward_kernel, fwd_sig, fwd_const, ("T",)),
                   ("lif_all_to_all_backward_kernel", lif_all_to_all_backward_kernel, bwd_sig, bwd_const, ("T",)),
                   *kernels,
                   ("lif_all_to_all_step_backward_kernel", lif_all_to_all_step_backward_kernel, step_bwd_sig,
                    step_bwd_const, ("t",))]
    infos = []
    for name, fn, sig, const, dns in kernels:
        full_sig = dict(sig)
        full_sig.update({k: "constexpr" for k in const})
        opts = {**options, "num_warps": step_num_warps(block_m, tile_n)} if "_step_" in name else options
        compiled = triton.compile(ASTSource(fn=compilable(fn, dns), signature=full_sig, constexprs=const),
                                  target=target, options=opts)
        ptx = compiled.asm["ptx"]
        regs, spill_st, spill_ld = _ptxas_usage(ptx, arch)
        infos.append(CompiledKernelInfo(name, arch, regs, spill_st, spill_ld, ptx))
    return infos


def all_to_all_variants() -> list[dict]:
    """RLeaky (every reset x reset_delay) and RSynaptic (every reset; reset_delay has no effect),
    in float32; the 16-bit per-step forward for RLeaky(subtract) and RSynaptic(zero) (its dtype
    touches only the product, which every variant shares)."""
    out = []
    for (synaptic, immediate), reset, arch in itertools.product(
            [(False, False), (False, True), (True, False)], [0, 1, 2], [80, 90]):
        if immediate and reset == 2:
            continue
        out.append(dict(synaptic=synaptic, reset=reset, immediate=immediate, arch=arch))
    for (synaptic, reset), dtype, arch in itertools.product([(False, 0), (True, 1)], ["bf16", "fp16"], [80, 90]):
        out.append(dict(synaptic=synaptic, reset=reset, immediate=False, arch=arch, dtype=dtype))
    return out


def compile_spike_bits_kernels(arch: int, int_type: str = "i32") -> list:
    """Both kernels compiled for ``sm_{arch}`` without a GPU (``CompiledKernelInfo`` each, with
    ptxas's register and spill counts); run in a process without the interpreter."""
    target = GPUTarget("cuda", arch, 32)
    options = {"enable_fp_fusion": False, "num_warps": NUM_WARPS}
    value = "i64" if int_type == "i64" else "i32"
    kernels = (
        ("pack_spike_bits_kernel", pack_spike_bits_kernel,
         {"x_ptr": f"*{int_type}", "bits_ptr": "*u8", "not_spikes_ptr": "*i32", "value_bits": value, "n": "i64"}),
        ("unpack_spike_bits_kernel", unpack_spike_bits_kernel,
         {"bits_ptr": "*u8", "out_ptr": f"*{int_type}", "value_bits": value, "n": "i64"}),
    )
    infos = []
    for name, fn, sig in kernels:
        sig = {**sig, "BLOCK_BYTES": "constexpr"}
        compiled = triton.compile(ASTSource(fn=compilable(fn), signature=sig, constexprs={"BLOCK_BYTES": BLOCK_BYTES}),
                                  target=target, options=options)
        ptx = compiled.asm["ptx"]
        regs, spill_st, spill_ld = _ptxas_usage(ptx, arch)
        infos.append(CompiledKernelInfo(name, arch, regs, spill_st, spill_ld, ptx))
    return infos


def _main_all_to_all() -> int:
    for cfg in all_to_all_variants():
        for info in compile_all_to_all_kernels(**cfg):
            print(json.dumps({"dtype": "fp32", **cfg, "kernel": info.name, "registers": info.registers,
                              "spill_stores": info.spill_stores, "spill_loads": info.spill_loads,
                              "mma": "mma.sync" in info.ptx or "wgmma" in info.ptx,
                              "has_approx_div": "div.full.f32" in info.ptx or "div.approx.f32" in info.ptx}),
              flush=True)
    return 0


def compile_linear_lif_kernel(synaptic: bool, reset: int, immediate: bool, arch: int) -> CompiledKernelInfo:
    """The fused Linear + LIF forward kernel (float32, the launcher's tile) for one neuron variant.
    Its backward is :func:`lif_backward_kernel` (compiled with the LIF variants) plus cuBLAS."""
    target = GPUTarget("cuda", arch, 32)
    options = {"enable_fp_fusion": False, "num_warps": LINEAR_NUM_WARPS}
    sig = {name: "*fp32" for name in ("x_ptr", "w_ptr", "bias_ptr", "mem0_ptr", "syn0_ptr", "beta_ptr", "thr_ptr",
                                      "alpha_ptr", "spk_ptr", "syn_ptr", "mem_ptr", "pre_ptr")}
    sig.update({"T": "i32", "B": "i32", "N": "i32", "K": "i32", "stride_x_t": "i64", "stride_x_b": "i64",
                "stride_w_n": "i64", "gsf": "fp32"})
    const = {"SYNAPTIC": synaptic, "RESET": reset, "IMMEDIATE_RESET": immediate,
             "ZERO_BEFORE_DECAY": reset == 1 and not synaptic, "HAS_BIAS": True, "HAS_MEM0": True,
             "HAS_SYN0": synaptic, "STORE_PRE": immediate, "BLOCK_B": LINEAR_BLOCK_B, "BLOCK_N": LINEAR_BLOCK_N,
             "BLOCK_K": LINEAR_BLOCK_K}
    sig.update({k: "constexpr" for k in const})
    compiled = triton.compile(ASTSource(fn=compilable(linear_lif_forward_kernel), signature=sig, constexprs=const),
                              target=target, options=options)
    ptx = compiled.asm["ptx"]
    regs, spill_st, spill_ld = _ptxas_usage(ptx, arch)
    return CompiledKernelInfo("linear_lif_forward_kernel", arch, regs, spill_st, spill_ld, ptx)


def _main_linear_lif() -> int:
    for (synaptic, immediate), reset, arch in itertools.product(
            [(False, False), (False, True), (True, False), (True, True)], [0, 1, 2], [80, 90]):
        info = compile_linear_lif_kernel(synaptic, reset, immediate, arch)
        print(json.dumps({"synaptic": synaptic, "reset": reset, "immediate": immediate, "arch": arch,
                          "kernel": info.name, "registers": info.registers, "spill_stores": info.spill_stores,
                          "spill_loads": info.spill_loads,
                          "mma": "mma.sync" in info.ptx or "wgmma" in info.ptx,
                          "has_fma": "fma.rn" in info.ptx,
                          "has_approx_div": "div.full.f32" in info.ptx or "div.approx.f32" in info.ptx}),
              flush=True)
    return 0


def _main_spike_bits() -> int:
    for arch in (80, 90):
        for int_type in ("i16", "i32", "i64"):
            for info in compile_spike_bits_kernels(arch, int_type):
                print(json.dumps({"kernel": info.name, "arch": arch, "int_type": int_type,
                                  "registers": info.registers, "spill_stores": info.spill_stores,
                                  "spill_loads": info.spill_loads}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
