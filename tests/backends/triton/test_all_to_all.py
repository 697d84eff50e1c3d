"""The persistent all-to-all Triton kernels (fusedsnn/backends/triton/all_to_all.py): parity with
the reference op in Triton's interpreter at small, odd sizes (a batch that is not a multiple of
the 16-row block, N not a power of two), and ahead-of-time compilation for sm_80/sm_90.

The interpreter's ``tl.dot`` is a NumPy product, so states are compared within float32
tolerance, spikes exactly (the inputs keep membranes off threshold by more than the rounding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fusedsnn import functional as F
from fusedsnn.spec import RESET_CODES
from fusedsnn.surrogate import SURROGATE_CODES
from fusedsnn.ops.all_to_all import lif_all_to_all_forward

from ...conftest import RESETS, assert_close_scaled, all_to_all_inputs, random_input, weighted_loss

pytest.importorskip("triton")


# RSynaptic(reset_delay=False) is reset_delay=True in snnTorch 1.0.0 (make_spec maps it), so its
# immediate-reset variant does not exist.
VARIANTS = [(k, r, d) for k in ("RLeaky", "RSynaptic") for r in RESETS for d in (True, False)
            if not (k == "RSynaptic" and not d)]


def _check_against_reference(shape, kind, reset, reset_delay, surrogate="atan", p0=2.0, p1=1.0):
    T, B, N = shape
    synaptic = kind == "RSynaptic"
    x, tensors = all_to_all_inputs(T, B, N, synaptic)
    flags = (synaptic, RESET_CODES[reset], reset_delay, SURROGATE_CODES[surrogate], p0, p1, 1.0)
    leaves = [x] + [t for t in tensors.values() if t.requires_grad]
    results = {}
    for backend in ("reference", "triton"):
        outs = lif_all_to_all_forward(x, *tensors.values(), *flags, backend)
        results[backend] = (outs, torch.autograd.grad(weighted_loss([o for o in outs[:3] if o.numel()]), leaves))
    (ref_out, ref_grad), (tri_out, tri_grad) = results["reference"], results["triton"]
    assert 0 < ref_out[0].count_nonzero() < ref_out[0].numel()
    assert torch.equal(tri_out[0], ref_out[0])
    for a, e in zip(tri_out[1:], ref_out[1:]):
        if e.numel():
            assert_close_scaled(a, e, 1e-5, "forward output")
    names = ["x"] + [k for k, t in tensors.items() if t.requires_grad]
    for name, a, e in zip(names, tri_grad, ref_grad):
        assert_close_scaled(a, e, 1e-4, name)


@pytest.mark.parametrize("kind, reset, reset_delay", VARIANTS,
                         ids=[f"{k}-{r}-{'delay' if d else 'immediate'}" for k, r, d in VARIANTS])
@pytest.mark.parametrize("shape", [(6, 19, 13), (3, 2, 40)], ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_triton_matches_reference(interpret, shape, kind, reset, reset_delay):
    _check_against_reference(shape, kind, reset, reset_delay)


# Every surrogate's generated branch (fusedsnn/surrogate.py) in the kernel's 2-D block.
@pytest.mark.parametrize("surrogate", list(SURROGATE_CODES))
def test_triton_surrogates_match_reference(interpret, surrogate):
    _check_against_reference((4, 5, 13), "RLeaky", "subtract", True, surrogate, 2.0, 3.0)


def test_functional_uses_triton_only_where_it_fits(interpret):
    """N <= 64 runs the persistent kernel; a wider layer falls back to the per-step path."""
    from fusedsnn.backends import get_backend

    assert get_backend("triton").all_to_all_reason(torch.zeros(2, 2, 64)) is None
    assert "N <= 64" in get_backend("triton").all_to_all_reason(torch.zeros(2, 2, 65))
    x = random_input(4, 3, 65)
    linear = torch.nn.Linear(65, 65)
    fused = F.rleaky(x, 0.9, recurrent=linear, backend="triton")
    reference = F.rleaky(x, 0.9, recurrent=linear, backend="reference")
    assert torch.equal(fused[0], reference[0])


def test_all_to_all_kernels_compile_for_sm80_and_sm90(evidence_table):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", "--all-to-all"], capture_output=True, text=True,
                          env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    from fusedsnn.backends.triton.aot import all_to_all_variants as variants

    assert len(rows) == 2 * len(variants())
    assert {r["arch"] for r in rows} == {80, 90}
    for row in rows:
        assert row["registers"] > 0
        assert not row["has_approx_div"], row  # divisions round as PyTorch's (div_rn)
    lines = ["all-to-all persistent kernels, registers / spill bytes (BLOCK_B=16, BLOCK_N=64, 4 warps):"]
    for r in rows:
        lines.append(f"  sm_{r['arch']} syn={int(r['synaptic'])} reset={r['reset']} immediate={int(r['immediate'])} "
                     f"{r['kernel']:<26} regs={r['registers']:>3} spills={r['spill_stores']}/{r['spill_loads']}")
    evidence_table("registers_all_to_all.txt", lines)
