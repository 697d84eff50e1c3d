"""Ahead-of-time compilation of the all-to-all persistent kernels (lif_dense_triton.py) for
sm_80/sm_90 without a GPU, with ptxas's register and spill counts (as fusedsnn.kernels.aot does
for the elementwise kernels, whose helpers this reuses).

``python -m fusedsnn.kernels.lif_dense_aot`` compiles every neuron x reset x reset_delay variant
at N <= 64 for both architectures and prints one JSON line per kernel. It runs in its own process
because an interpreter run patches ``triton.language`` for the rest of the process.
"""

from __future__ import annotations

import itertools
import json

from .aot import CompiledKernelInfo, _ptxas_usage


def compile_dense_kernels(synaptic: bool, reset: int, immediate: bool, arch: int, block_n: int = 64,
                          block_b: int = 16, num_warps: int = 4) -> list[CompiledKernelInfo]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .lif_dense_triton import _launchable, lif_dense_backward_kernel, lif_dense_forward_kernel

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
    infos = []
    for name, fn, sig, const in (("lif_dense_forward_kernel", lif_dense_forward_kernel, fwd_sig, fwd_const),
                                 ("lif_dense_backward_kernel", lif_dense_backward_kernel, bwd_sig, bwd_const)):
        full_sig = dict(sig)
        full_sig.update({k: "constexpr" for k in const})
        compiled = triton.compile(ASTSource(fn=_launchable(fn), signature=full_sig, constexprs=const),
                                  target=target, options=options)
        ptx = compiled.asm["ptx"]
        regs, spill_st, spill_ld = _ptxas_usage(ptx, arch)
        infos.append(CompiledKernelInfo(name, arch, regs, spill_st, spill_ld, ptx))
    return infos


def variants() -> list[dict]:
    """RLeaky (every reset x reset_delay) and RSynaptic (every reset; reset_delay has no effect)."""
    out = []
    for (synaptic, immediate), reset, arch in itertools.product(
            [(False, False), (False, True), (True, False)], [0, 1, 2], [80, 90]):
        if immediate and reset == 2:
            continue
        out.append(dict(synaptic=synaptic, reset=reset, immediate=immediate, arch=arch))
    return out


def main() -> int:
    for cfg in variants():
        for info in compile_dense_kernels(**cfg):
            print(json.dumps({**cfg, "kernel": info.name, "registers": info.registers,
                              "spill_stores": info.spill_stores, "spill_loads": info.spill_loads,
                              "mma": "mma.sync" in info.ptx or "wgmma" in info.ptx,
                              "has_approx_div": "div.full.f32" in info.ptx or "div.approx.f32" in info.ptx}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
