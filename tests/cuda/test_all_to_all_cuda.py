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

from fusedsnn import functional as F
from fusedsnn.bench import training

from ..conftest import assert_close_scaled, all_to_all_inputs, random_input
from .conftest import TARGETS, no_host_sync, to_target

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


# The per-step tile kernels (N > 64). The interpreter twin runs N=67 (tiny); the GPU N=256 and
# N=1024 (4 and 16 column tiles, row tiles of 64, a partial one at B=67).
WIDE = [pytest.param(n, dt, id=f"N{n}-{str(dt).split('.')[-1]}") for n in (256, 1024)
        for dt in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("target", TARGETS, indirect=True)
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("N, dtype", WIDE)
def test_all_to_all_tiles_match_cpu_reference(target, kind, N, dtype):
    """Forward and every gradient of the per-step kernels against the float32 reference on CPU,
    run on the same values: for bfloat16, x, W, b and spk0 are rounded to bf16 first (products
    of bf16 values are exact in float32; both sum in float32). Tolerances: float32 states 1e-4
    and float32 gradients 1e-3 of the tensor's scale (another summation order over N up to
    1024 and T steps); gradients returned in bf16 (x, W, b, spk0) 2 * eps(bf16) = 1/64."""
    T, B, N = target.pick((4, 3, 67), (16, 67, N))
    synaptic = kind == "RSynaptic"
    x, tensors = all_to_all_inputs(T, B, N, synaptic)
    narrow = ("x", "weight", "bias", "spk0")
    low = {k: v.detach().to(dtype).requires_grad_() if k in narrow else v for k, v in {"x": x, **tensors}.items()}
    wide = {k: v.detach().float().requires_grad_(v.requires_grad) for k, v in low.items()}
    flags = (synaptic, RESET_CODES["subtract"], True, 0, 2.0, 1.0, 1.0)

    def loss(outs):
        gen = torch.Generator().manual_seed(1234)  # weights bf16 holds exactly: multiples of 1/8
        return sum((o.float() * (torch.randint(-32, 33, o.shape, generator=gen) / 8).to(o.device)).sum()
                   for o in outs)

    def run(inputs: dict, backend: str):
        leaves = [v for v in inputs.values() if v.requires_grad]
        args = [inputs[k] for k in ("x", *tensors)]
        outs = lif_all_to_all_forward(*args, *flags, backend)
        grads = torch.autograd.grad(loss([o for o in outs[:3] if o.numel()]), leaves)
        return [o.detach().cpu() for o in outs[:3]], [g.cpu() for g in grads]

    ref_out, ref_grad = run(wide, "reference")
    dev_out, dev_grad = run(to_target(low, target.device), "triton")
    target.sync()

    ref_spk, ref_mem = ref_out[0], ref_out[2]
    assert 0 < ref_spk.count_nonzero() < ref_spk.numel()
    assert dev_out[0].dtype == dtype and dev_out[2].dtype == torch.float32
    clear = (ref_mem - tensors["threshold"].detach()).abs() > 1e-4
    assert clear.float().mean() > 0.99
    assert torch.equal(dev_out[0].float()[clear], ref_spk[clear])
    for a, e, name in zip(dev_out[1:], ref_out[1:], ("syn", "mem")):
        if e.numel():
            assert_close_scaled(a, e, 1e-4, name)
    names = [k for k, v in low.items() if v.requires_grad]
    for name, a, e in zip(names, dev_grad, ref_grad):
        rounded = dtype != torch.float32 and name in narrow
        assert_close_scaled(a.float(), e, 2 * torch.finfo(dtype).eps if rounded else 1e-3, f"grad {name}")


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_all_to_all_tiles_never_sync_and_replay_from_cuda_graph(target):
    """The per-step launches of forward and backward (N > 64) neither sync with the host nor
    allocate by data; on CUDA a captured forward + backward replays to the eager result (the
    claim that T launches per op cost no host time under a CUDA graph). The interpreter twin
    runs the sync check only (CUDA graphs exist only on CUDA)."""
    T, B, N = target.pick((3, 3, 67), (16, 64, 256))
    linear = torch.nn.Linear(N, N).to(target.device)
    with torch.no_grad():
        linear.weight.mul_(4.0)  # about a quarter of the neurons spike
    x = random_input(T, B, N).to(target.device)
    weights = torch.randn(T, B, N).to(target.device)
    out = {}

    def step():
        if linear.weight.grad is not None:
            linear.weight.grad.zero_()
            linear.bias.grad.zero_()
        spk, mem = F.rleaky(x, 0.9, recurrent=linear, backend="triton")
        ((spk + mem) * weights).sum().backward()
        out["spk"], out["mem"] = spk.detach(), mem.detach()

    step()
    with no_host_sync(target) as detector:
        step()
    assert detector.found == [], detector.found
    if not target.is_cuda:
        return
    eager = {k: v.clone() for k, v in out.items()}
    eager_grads = [linear.weight.grad.clone(), linear.bias.grad.clone()]
    assert 0 < eager["spk"].count_nonzero() < eager["spk"].numel()
    replay = training.cuda_graph_step(step, target.device, warmup=2)
    with torch.no_grad():
        out["spk"].zero_()
        out["mem"].zero_()
    replay()
    target.sync()
    assert torch.equal(out["spk"], eager["spk"])
    assert torch.equal(out["mem"], eager["mem"])
    assert torch.equal(linear.weight.grad, eager_grads[0]) and torch.equal(linear.bias.grad, eager_grads[1])


def _median_ms(fn, device, repeats: int = 50) -> float:
    """Median wall time of ``fn()`` in milliseconds, host and device together (what a training
    loop pays at T=1: launches are host-bound there)."""
    import statistics
    import time

    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_fused_all_to_all_not_slower_than_snntorch_at_t1_tiny_n(target):
    """Issue 21: at T=1 and tiny N (16 neurons, batch 8) one fused forward + backward of
    RLeaky(linear_features=16) costs no more than snnTorch's one step (both launch-bound; 20 %
    allowance for timer noise). The interpreter twin checks only that both give the same spikes."""
    snntorch = pytest.importorskip("snntorch")
    import fusedsnn as fs

    N, B = 16, 8
    torch.manual_seed(5)
    ours = fs.RLeaky(beta=0.9, linear_features=N, backend="triton").to(target.device)
    theirs = snntorch.RLeaky(beta=0.9, linear_features=N).to(target.device)
    theirs.recurrent.load_state_dict(ours.recurrent.state_dict())
    x = (torch.randn(1, B, N) * 2).to(target.device).requires_grad_()

    def fused():
        spk, mem = ours(x)
        (spk.sum() + mem.sum()).backward()
        return spk

    def reference():
        spk0, mem0 = theirs.init_rleaky()
        spk, mem = theirs(x[0], spk0, mem0)
        (spk.sum() + mem.sum()).backward()
        return spk

    assert torch.equal(fused()[0], reference())
    if not target.is_cuda:
        return
    t_fused, t_snntorch = _median_ms(fused, target.device), _median_ms(reference, target.device)
    assert t_fused <= 1.2 * t_snntorch, f"fused {t_fused:.3f} ms vs snnTorch {t_snntorch:.3f} ms per step"
