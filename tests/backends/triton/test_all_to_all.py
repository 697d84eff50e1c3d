"""The all-to-all Triton kernels (fusedsnn/backends/triton/all_to_all.py): the persistent kernel
(N <= 64) and the per-step tile kernels (N > 64; float32, float16, bfloat16), parity with the
reference op in Triton's interpreter at small, odd sizes (a batch that is not a multiple of the
row block, N not a power of two nor a multiple of the tile), and ahead-of-time compilation for
sm_80/sm_90.

The interpreter's ``tl.dot`` is a NumPy product; the tile kernels sum it per K slice, another
order than the reference's single product. States and float32 gradients are compared within
float32 tolerance (1e-5 and 1e-4 of each tensor's scale), spikes exactly wherever the membrane
that decides them is more than 1e-4 from the threshold (at least 99 % of them).
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
from fusedsnn.backends.triton.all_to_all import persistent

from ...conftest import RESETS, assert_close_scaled, all_to_all_inputs, random_input, weighted_loss

pytest.importorskip("triton")


# RSynaptic(reset_delay=False) is reset_delay=True in snnTorch 1.0.0 (make_spec maps it), so its
# immediate-reset variant does not exist.
VARIANTS = [(k, r, d) for k in ("RLeaky", "RSynaptic") for r in RESETS for d in (True, False)
            if not (k == "RSynaptic" and not d)]


def assert_spikes_match(spk, ref_out, threshold):
    """``spk`` equals the reference spikes wherever the membrane that decided them (``pre`` with an
    immediate reset, else ``mem``) clears the threshold by more than the products' rounding."""
    ref_spk, _, ref_mem, _, ref_pre = ref_out
    decided = ref_pre if ref_pre.numel() else ref_mem
    clear = (decided.detach().float() - threshold.detach().float()).abs() > 1e-4
    assert clear.float().mean() > 0.99
    assert 0 < ref_spk.count_nonzero() < ref_spk.numel()
    assert torch.equal(spk.detach().float()[clear], ref_spk.detach().float()[clear])


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
    assert_spikes_match(tri_out[0], ref_out, tensors["threshold"])
    for a, e in zip(tri_out[1:], ref_out[1:]):
        if e.numel():
            assert_close_scaled(a, e, 1e-5, "forward output")
    names = ["x"] + [k for k, t in tensors.items() if t.requires_grad]
    for name, a, e in zip(names, tri_grad, ref_grad):
        assert_close_scaled(a, e, 1e-4, name)


@pytest.mark.parametrize("kind, reset, reset_delay", VARIANTS,
                         ids=[f"{k}-{r}-{'delay' if d else 'immediate'}" for k, r, d in VARIANTS])
# (6, 19, 13), (3, 2, 40): the persistent kernel; (4, 3, 67), (3, 19, 70): the per-step tiles
# (several row and column tiles, partial ones, three K slices).
@pytest.mark.parametrize("shape", [(6, 19, 13), (3, 2, 40), (4, 3, 67), (3, 19, 70)],
                         ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_triton_matches_reference(interpret, shape, kind, reset, reset_delay):
    _check_against_reference(shape, kind, reset, reset_delay)


def test_paths_split_at_64():
    assert persistent(64) and not persistent(65) and not persistent(4096)


# Every surrogate's generated branch (fusedsnn/surrogate.py) in both kernels' 2-D blocks.
@pytest.mark.parametrize("surrogate", list(SURROGATE_CODES))
@pytest.mark.parametrize("shape", [(4, 5, 13), (3, 3, 67)], ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_triton_surrogates_match_reference(interpret, shape, surrogate):
    _check_against_reference(shape, "RLeaky", "subtract", True, surrogate, 2.0, 3.0)


@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_tiles_without_initial_states_or_bias(interpret, kind):
    """Absent mem0/syn0/spk0/bias: the first step has no product and starts from zero states."""
    T, B, N = 3, 5, 67
    synaptic = kind == "RSynaptic"
    x, tensors = all_to_all_inputs(T, B, N, synaptic)
    for name in ("mem0", "syn0", "spk0", "bias"):
        tensors[name] = x.new_empty(0)
    flags = (synaptic, RESET_CODES["subtract"], True, 0, 2.0, 1.0, 1.0)
    leaves = [x] + [t for t in tensors.values() if t.requires_grad]
    results = {}
    for backend in ("reference", "triton"):
        outs = lif_all_to_all_forward(x, *tensors.values(), *flags, backend)
        results[backend] = (outs, torch.autograd.grad(weighted_loss([o for o in outs[:3] if o.numel()]), leaves))
    (ref_out, ref_grad), (tri_out, tri_grad) = results["reference"], results["triton"]
    assert_spikes_match(tri_out[0], ref_out, tensors["threshold"])
    assert_close_scaled(tri_out[2], ref_out[2], 1e-5, "mem")
    for a, e in zip(tri_grad, ref_grad):
        assert_close_scaled(a, e, 1e-4, "grad")


def _loss_16bit_weights(outputs) -> torch.Tensor:
    """Like ``weighted_loss``, with weights (multiples of 1/8 in [-4, 4]) that bfloat16 and
    float16 hold exactly, so that a 16-bit run and its float32 reference receive the same output
    gradients."""
    gen = torch.Generator().manual_seed(1234)
    return sum((o.float() * (torch.randint(-32, 33, o.shape, generator=gen) / 8)).sum() for o in outputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind, reset, reset_delay", [("RLeaky", "subtract", True), ("RLeaky", "zero", False),
                                                       ("RSynaptic", "zero", True)],
                         ids=["RLeaky-subtract", "RLeaky-zero-immediate", "RSynaptic-zero"])
@pytest.mark.parametrize("shape", [(4, 3, 13), (4, 3, 67)], ids=lambda s: "T{}-B{}-N{}".format(*s))
def test_16bit_matches_float32_reference(interpret, shape, kind, reset, reset_delay, dtype):
    """16-bit x, W, b, spk0 against the reference op on the same values in float32: products of
    16-bit values are exact in float32 and both sum in float32, so the float32 states and the
    float32 gradients (beta, threshold, alpha, mem0, syn0) agree within float32 tolerance, and
    the gradients returned in 16-bit (x, W, b, spk0) within that dtype's rounding (its eps of the
    tensor's scale). Spikes are 0/1 in ``dtype``."""
    T, B, N = shape
    synaptic = kind == "RSynaptic"
    x, tensors = all_to_all_inputs(T, B, N, synaptic)
    narrow = ("weight", "bias", "spk0")
    low = {k: v.detach().to(dtype).requires_grad_() if k in narrow else v for k, v in tensors.items()}
    x_low = x.detach().to(dtype).requires_grad_()
    wide = {k: v.detach().float().requires_grad_(v.requires_grad) for k, v in low.items()}
    x_wide = x_low.detach().float().requires_grad_()
    flags = (synaptic, RESET_CODES[reset], reset_delay, 0, 2.0, 1.0, 1.0)

    def run(x_, inputs, backend):
        leaves = [x_] + [t for t in inputs.values() if t.requires_grad]
        outs = lif_all_to_all_forward(x_, *inputs.values(), *flags, backend)
        return outs, torch.autograd.grad(_loss_16bit_weights([o for o in outs[:3] if o.numel()]), leaves)

    tri_out, tri_grad = run(x_low, low, "triton")
    ref_out, ref_grad = run(x_wide, wide, "reference")
    assert tri_out[0].dtype == dtype and all(o.dtype == torch.float32 for o in tri_out[1:])
    assert set(tri_out[0].unique().tolist()) <= {0.0, 1.0}
    assert_spikes_match(tri_out[0], ref_out, tensors["threshold"])
    for a, e, name in zip(tri_out[1:], ref_out[1:], ("syn", "mem", "trace", "pre")):
        if e.numel():
            assert_close_scaled(a, e, 1e-5, name)
    names = ["x"] + [k for k, t in low.items() if t.requires_grad]
    for name, a, e in zip(names, tri_grad, ref_grad):
        is_low = name == "x" or name in narrow
        assert a.dtype == (dtype if is_low else torch.float32), name
        assert_close_scaled(a.float(), e, torch.finfo(dtype).eps if is_low else 1e-4, name)


def test_triton_takes_any_width_and_16bit(interpret):
    from fusedsnn.backends import get_backend

    reason = get_backend("triton").all_to_all_reason
    for N in (64, 65, 4096):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            assert reason(torch.zeros(2, 2, N, dtype=dtype)) is None
    assert "float64" in reason(torch.zeros(2, 2, 8, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_functional_runs_the_fused_op_at_n_above_64(interpret, monkeypatch, dtype):
    """``F.rleaky`` with an nn.Linear(67, 67) on the triton backend takes the fused op (not the
    per-step Python loop), returns x.dtype, and trains the linear layer."""
    import fusedsnn.functional as functional

    calls = []
    original = functional.lif_all_to_all_forward
    monkeypatch.setattr(functional, "lif_all_to_all_forward", lambda *a: calls.append(a[-1]) or original(*a))
    x = random_input(4, 3, 67).to(dtype).requires_grad_()
    linear = torch.nn.Linear(67, 67).to(dtype)
    spk, mem = F.rleaky(x, 0.9, recurrent=linear, backend="triton")
    assert calls == ["triton"] and spk.dtype == dtype and mem.dtype == dtype
    (spk.float().sum() + mem.float().sum()).backward()
    assert linear.weight.grad.dtype == dtype and linear.weight.grad.abs().sum() > 0
    assert x.grad.dtype == dtype
    if dtype == torch.float32:
        reference = F.rleaky(x.detach(), 0.9, recurrent=linear, backend="reference")
        assert_close_scaled(mem.detach(), reference[1], 1e-5, "mem")


def test_all_to_all_kernels_compile_for_sm80_and_sm90(evidence_table):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.backends.triton.aot", "--all-to-all"], capture_output=True, text=True,
                          env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    from fusedsnn.backends.triton.aot import all_to_all_variants as variants

    expected = sum(4 if v.get("dtype", "fp32") == "fp32" else 1 for v in variants())
    assert len(rows) == expected
    assert {r["arch"] for r in rows} == {80, 90}
    assert {r["dtype"] for r in rows} == {"fp32", "bf16", "fp16"}
    for row in rows:
        assert row["registers"] > 0
        assert not row["has_approx_div"], row  # divisions round as PyTorch's (div_rn)
        # 16-bit products run on tensor cores; float32 ones stay full fp32 (ieee: no TF32 mma).
        assert row["mma"] == (row["dtype"] != "fp32"), row
        if "_step_" in row["kernel"]:
            assert row["spill_stores"] <= 64, row  # the tiles' temporaries stay in registers
    lines = ["all-to-all kernels, registers / spill bytes (persistent: BLOCK_B=16, BLOCK_N=64, 4 warps; "
             "per-step: 64x64 tiles, 8 warps):"]
    for r in rows:
        lines.append(f"  sm_{r['arch']} {r['dtype']} syn={int(r['synaptic'])} reset={r['reset']} "
                     f"immediate={int(r['immediate'])} {r['kernel']:<36} regs={r['registers']:>3} "
                     f"spills={r['spill_stores']}/{r['spill_loads']}")
    evidence_table("registers_all_to_all.txt", lines)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_opcheck_tiles(interpret, dtype):
    """Schema, fake kernel (float32 states for a 16-bit x) and autograd registration of the op
    on the per-step path."""
    T, B, N = 2, 3, 67
    x = random_input(T, B, N).to(dtype)
    args = (x, torch.randn(B, N), x.new_empty(0), (torch.rand(B, N) > 0.5).to(dtype), torch.randn(N, N).to(dtype),
            torch.randn(N).to(dtype), torch.rand(N), torch.rand(N) + 0.5, x.new_empty(0, dtype=torch.float32),
            False, 0, False, 0, 2.0, 1.0, 1.0, "triton")
    torch.library.opcheck(lif_all_to_all_forward, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
