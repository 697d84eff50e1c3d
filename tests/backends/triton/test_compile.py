"""Every Triton kernel variant compiled ahead of time for sm_80 and sm_90, with no GPU.

The interpreter accepts code the compiler rejects, so this is the check that the kernels are
real: fusedsnn.backends.triton.aot calls triton.compile(ASTSource(kernel, signature, constexprs),
target=GPUTarget("cuda", 80 or 90, 32), options={"enable_fp_fusion": False}) for every variant.
Compilation runs in a subprocess (see fusedsnn.backends.triton.aot.main). The registers and
spills that ptxas reports are free performance evidence: written to
``.pytest_cache/d/fusedsnn/registers.txt`` on every run and printed under ``pytest -v``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from fusedsnn.surrogate import SURROGATE_CODES

pytest.importorskip("triton")


def _configs() -> list[dict]:
    configs = []
    # Every neuron (incl. all-to-all input recurrence) x reset x reset_delay, fp32, both archs.
    for (synaptic, recurrence), reset, reset_delay, arch in itertools.product(
        [(False, 0), (True, 0), (False, 1), (True, 1), (False, 2), (True, 2)], [0, 1, 2], [True, False], [80, 90]
    ):
        configs.append(dict(synaptic=synaptic, recurrence=recurrence, reset=reset, reset_delay=reset_delay,
                            surrogate="atan", p0=2.0, dtype="float32", arch=arch))
    # Every surrogate, and the reduced-precision storage paths.
    for name in SURROGATE_CODES:
        configs.append(dict(synaptic=False, recurrence=0, reset=0, reset_delay=True, surrogate=name,
                            p0=2.0, p1=3.0, dtype="float32", arch=90))
    for dtype, arch in itertools.product(["float16", "bfloat16"], [80, 90]):
        configs.append(dict(synaptic=True, recurrence=1, reset=1, reset_delay=False, surrogate="sigmoid",
                            p0=25.0, dtype=dtype, arch=arch))
    return configs


def test_all_kernels_compile_for_sm80_and_sm90(tmp_path, evidence_table):
    configs = _configs()
    path = tmp_path / "configs.json"
    path.write_text(json.dumps(configs))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", str(path)],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 * len(configs)
    assert {r["kernel"] for r in rows} == {"lif_forward_kernel", "lif_backward_kernel"}
    for row in rows:
        # enable_fp_fusion=False must leave no fused multiply-add in the PTX.
        assert not row["has_fma"], row
        # and no approximate division: spk / gsf feeds the state, so it must round as PyTorch's
        assert not row["has_approx_div"], row
        assert row["registers"] > 0
    lines = ["registers / spill bytes (BLOCK=512, 4 warps):"]
    for row in rows:
        lines.append(f"  sm_{row['arch']} {row['dtype']:>8} syn={int(row['synaptic'])} rec={row['recurrence']} "
                     f"reset={row['reset']} delay={int(row['reset_delay'])} {row['surrogate']:<26} "
                     f"{row['kernel']:<20} regs={row['registers']:>3} spills={row['spill_stores']}/{row['spill_loads']}")
    evidence_table("registers.txt", lines)


def test_every_launch_candidate_compiles_and_keeps_occupancy(tmp_path, evidence_table):
    """Each configuration the autotuner may pick (and the default) compiles for sm_80 and sm_90
    without spills; the backward of the heaviest variant (RSynaptic, every parameter learnable:
    178 registers at BLOCK=512 with 4 warps) keeps at least a third of the SM's warps resident."""
    from fusedsnn.backends.triton.aot import theoretical_occupancy
    from fusedsnn.backends.triton.lif import BACKWARD_CONFIGS, DEFAULT_CONFIG, FORWARD_CONFIGS

    launch = sorted({(c.block, c.num_warps) for c in (*FORWARD_CONFIGS, *BACKWARD_CONFIGS, DEFAULT_CONFIG)})
    configs = [dict(synaptic=synaptic, recurrence=recurrence, reset=0, reset_delay=True, surrogate="atan",
                    dtype=dtype, arch=arch, block=block, num_warps=warps)
               for (synaptic, recurrence), dtype, archs in (((True, 1), "float32", (80, 90)),
                                                            ((False, 0), "float32", (90,)),
                                                            ((True, 1), "bfloat16", (90,)))
               for arch in archs for block, warps in launch]
    path = tmp_path / "configs.json"
    path.write_text(json.dumps(configs))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", str(path)],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 * len(configs)
    backward = {(c.block, c.num_warps) for c in (*BACKWARD_CONFIGS, DEFAULT_CONFIG)}
    heavy = [r for r in rows if r["kernel"] == "lif_backward_kernel" and r["synaptic"] and r["recurrence"] == 1
             and (r["block"], r["num_warps"]) in backward]
    assert heavy
    for row in rows:
        assert row["spill_stores"] == 0 and row["spill_loads"] == 0, row
        assert row["occupancy"] == theoretical_occupancy(row["registers"], row["num_warps"])
    for row in heavy:
        assert row["occupancy"] >= 1 / 3, row
    lines = ["launch candidates: registers / theoretical occupancy"]
    for row in rows:
        lines.append(f"  sm_{row['arch']} {row['dtype']:>8} syn={int(row['synaptic'])} rec={row['recurrence']} "
                     f"BLOCK={row['block']:>4} warps={row['num_warps']} {row['kernel']:<20} "
                     f"regs={row['registers']:>3} occupancy={row['occupancy']:.2f}")
    evidence_table("launch_candidates.txt", lines)


def test_theoretical_occupancy_matches_hand_counts():
    from fusedsnn.backends.triton.aot import theoretical_occupancy

    assert theoretical_occupancy(32, 4) == 1.0     # 64 warps fit
    assert theoretical_occupancy(48, 4) == 40 / 64  # 1536 registers a warp: 42 warps, 10 blocks of 4
    assert theoretical_occupancy(178, 4) == 8 / 64  # 5888 a warp: 11 warps, 2 blocks of 4


def test_linear_lif_forward_compiles_for_sm80_and_sm90_without_spills(evidence_table):
    """The fused Linear + LIF forward (tl.dot tile kernel), every Leaky/Synaptic x reset x
    reset_delay variant. Its backward is lif_backward_kernel (compiled above) plus cuBLAS.
    The float32 "ieee" dot is itself FMAs, so the no-fma check of the LIF kernels cannot apply;
    the LIF step after the dot has no division but div_rn (checked)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", "--linear-lif"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 24
    assert {r["arch"] for r in rows} == {80, 90}
    lines = ["linear_lif_forward_kernel registers / spill bytes (16 x 32 tile, K slices of 16, 4 warps):"]
    for row in rows:
        assert row["registers"] > 0
        assert not row["has_approx_div"], row
        assert row["spill_stores"] == 0 and row["spill_loads"] == 0, row
        lines.append(f"  sm_{row['arch']} syn={int(row['synaptic'])} reset={row['reset']} "
                     f"immediate={int(row['immediate'])} regs={row['registers']:>3} "
                     f"spills={row['spill_stores']}/{row['spill_loads']}")
    evidence_table("registers_linear_lif.txt", lines)
