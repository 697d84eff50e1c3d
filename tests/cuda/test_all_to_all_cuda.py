"""The all-to-all recurrent op's persistent Triton kernels on a real GPU (and, as everywhere in
tests/cuda, the same body through the interpreter on CPU): forward outputs and every gradient
against the reference op computed on CPU.

The GPU sums ``W @ spk`` in another order than the CPU's product (and ptxas may contract it into
FMAs: ``input_precision="ieee"`` asks for full fp32, not for PyTorch's rounding), so states and
gradients are compared within float32 tolerance and spikes wherever the reference membrane is
farther from the threshold than that rounding.
"""

from __future__ import annotations

import pytest
import torch

from fusedsnn.spec import RESET_CODES
from fusedsnn.ops.all_to_all import lif_all_to_all_forward

from ..conftest import assert_close_scaled, all_to_all_inputs
from .conftest import TARGETS, to_target

pytest.importorskip("triton")

def _weighted_loss_on(outputs) -> torch.Tensor:
    """Every output element weighted differently; the same weights (drawn on CPU) on any device."""
    gen = torch.Generator().manual_seed(1234)
    return sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype)).sum()
               for o in outputs)


VARIANTS = [(k, r) for k in ("RLeaky", "RSynaptic") for r in ("subtract", "zero", "none")]


@pytest.mark.parametrize("target", TARGETS, indirect=True)
@pytest.mark.parametrize("kind, reset", VARIANTS, ids=[f"{k}-{r}" for k, r in VARIANTS])
def test_all_to_all_triton_matches_cpu_reference(target, kind, reset):
    T, B, N = target.pick((5, 7, 13), (16, 67, 64))  # N=64: the widest the persistent kernel serves
    synaptic = kind == "RSynaptic"
    x, tensors = all_to_all_inputs(T, B, N, synaptic)
    flags = (synaptic, RESET_CODES[reset], True, 0, 2.0, 1.0, 1.0)

    def run(inputs: dict, backend: str):
        leaves = [v for v in inputs.values() if v.requires_grad]
        args = [inputs[k] for k in ("x", *tensors)]
        outs = lif_all_to_all_forward(*args, *flags, backend)
        loss = _weighted_loss_on([o for o in outs[:3] if o.numel()])
        grads = torch.autograd.grad(loss, leaves)
        return [o.detach().cpu() for o in outs[:3]], [g.cpu() for g in grads]

    cpu_inputs = {"x": x, **tensors}
    ref_out, ref_grad = run(cpu_inputs, "reference")
    dev_out, dev_grad = run(to_target(cpu_inputs, target.device), "triton")
    target.sync()

    ref_spk, ref_mem = ref_out[0], ref_out[2]
    assert 0 < ref_spk.count_nonzero() < ref_spk.numel()
    # reset_delay=True: spk[t] = (mem[t] > threshold), so a spike can differ only at a membrane
    # within the products' rounding of the threshold.
    clear = (ref_mem - tensors["threshold"].detach()).abs() > 1e-4
    assert clear.float().mean() > 0.99
    assert torch.equal(dev_out[0][clear], ref_spk[clear])
    for a, e, name in zip(dev_out[1:], ref_out[1:], ("syn", "mem")):
        if e.numel():
            assert_close_scaled(a, e, 1e-4, name)
    names = [k for k, v in cpu_inputs.items() if v.requires_grad]
    for name, a, e in zip(names, dev_grad, ref_grad):
        assert_close_scaled(a, e, 1e-3, f"grad {name}")
