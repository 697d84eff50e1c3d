"""Whole-model execution modes on a GPU: ``torch.compile`` (inductor, fullgraph) of a model with
fused neurons, and a whole training step (forward, loss, backward, AdamW) captured in a CUDA
graph and replayed, both equal to eager. Interpreter twins run the same bodies on CPU: compile
with the ``aot_eager`` backend (Dynamo and AOTAutograd trace the fused op exactly as for
inductor; inductor's C++ code generation alone takes over 30 s on a 2-core CPU), and the training
step eagerly in place of the graph (CUDA graphs exist only on CUDA; the host-sync check of the
fused op is in test_triton_cuda.py).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fusedsnn as fs
from fusedsnn.bench import training

from ..conftest import random_input
from .conftest import TARGETS, HostSyncDetector, no_host_sync

pytest.importorskip("triton")


class _TwoLayer(nn.Module):
    """Linear -> Leaky (learnable beta) -> Linear -> Synaptic, the neurons on the triton backend."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
        self.lif1 = fs.Leaky(beta=0.9, learn_beta=True, backend="triton")
        self.lif2 = fs.Synaptic(alpha=0.8, beta=0.9, learn_threshold=True, backend="triton")

    def forward(self, x):
        spk1, mem1 = self.lif1(self.fc1(x))
        spk2, syn2, mem2 = self.lif2(self.fc2(spk1))
        return spk1, spk2, mem2


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_torch_compile_inductor_fullgraph_matches_eager(target):
    torch._dynamo.reset()
    T, B, n_in, hidden, n_out = target.pick((4, 3, 6, 9, 5), (25, 128, 784, 1000, 10))
    model = _TwoLayer(n_in, hidden, n_out).to(target.device)
    twin = copy.deepcopy(model)
    x = random_input(T, B, n_in).to(target.device)
    compiled = torch.compile(twin, backend=target.pick("aot_eager", "inductor"), fullgraph=True)
    expected, actual = model(x), compiled(x)
    assert 0 < expected[0].count_nonzero() < expected[0].numel()
    for name, a, e in zip(["spk1", "spk2", "mem2"], actual, expected):
        if name.startswith("spk"):
            assert torch.equal(a, e), f"{name} differs under torch.compile"
        else:
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    weight = torch.randn(expected[2].shape, device=target.device)
    for net, out in ((model, expected), (twin, actual)):
        ((out[2] * weight).sum() + out[1].sum()).backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * max(1.0, p.grad.abs().max().item()),
                                   msg=name)


def _eager_stand_in(step, device, warmup: int = 3):
    """The CPU twin of ``training.cuda_graph_step``: the same warm-up, then eager steps."""
    for _ in range(warmup):
        step()
    return step


@pytest.mark.parametrize("network", ["DSNN", "CSNN"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_training_step_replayed_from_cuda_graph_equals_eager(target, network, monkeypatch):
    """Two identical models; one steps eagerly, the other is captured once and replayed. After
    the same number of steps their parameters agree."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # same conv algorithms in both
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    batch, steps = target.pick((2, 2), (128, 25))
    size = target.pick({"hidden": 24, "channels": (2, 4)}, {"hidden": 1000, "channels": (12, 64)})
    models = []
    for _ in range(2):
        torch.manual_seed(7)
        model = training.make_model(network, batch, steps, hidden=size["hidden"], channels=size["channels"])
        models.append(training.set_backend(model.to(target.device), "triton"))
    shape = (batch, 784) if network == "DSNN" else (batch, 1, 28, 28)
    x = torch.rand(shape, device=target.device) * 2
    y = torch.randint(0, 10, (batch,), device=target.device)
    capturable = target.is_cuda
    eager = training.training_step_fn(models[0], "fused", x, y, capturable=capturable)
    captured = training.training_step_fn(models[1], "fused", x, y, capturable=capturable)
    capture = training.cuda_graph_step if target.is_cuda else _eager_stand_in
    warmup, replays = target.pick((1, 2), (3, 4))
    replay = capture(captured, target.device, warmup=warmup)
    for _ in range(replays):
        replay()
    for _ in range(warmup + replays):
        eager()
    target.sync()
    initial = training.make_model(network, batch, steps, hidden=size["hidden"], channels=size["channels"])
    moved = 0
    for (name, a), e, start in zip(models[1].named_parameters(), models[0].parameters(), initial.parameters()):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=f"{name} after {warmup + replays} steps")
        moved += int(not torch.equal(a.detach().cpu(), start.detach()))
    assert moved > 0, "the training steps changed no parameter"


@pytest.mark.parametrize("neuron", ["leaky", "rsynaptic"])
@pytest.mark.parametrize("network", ["DSNN", "CSNN"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_model_forward_and_backward_never_sync(target, network, neuron):
    """The layers and models around the fused op (parameter handling, static-input expansion,
    the rate loss) must not synchronise with the host either, or the step cannot be captured."""
    batch, steps = target.pick((2, 2), (128, 25))
    size = target.pick({"hidden": 24, "channels": (2, 4)}, {"hidden": 1000, "channels": (12, 64)})
    model = training.make_model(network, batch, steps, hidden=size["hidden"], channels=size["channels"],
                                neuron=neuron)
    training.set_backend(model.to(target.device), "triton")
    shape = (batch, 784) if network == "DSNN" else (batch, 1, 28, 28)
    x = torch.rand(shape, device=target.device) * 2
    y = torch.randint(0, 10, (batch,), device=target.device)
    model(x)  # first call outside: lazy initialisation is allowed to do anything
    with no_host_sync(target) as detector:
        spk, _ = model(x)
        fs.population.ce_rate_loss(spk, y, 10).backward()
    assert detector.found == [], f"host synchronisation in {network}({neuron}): {detector.found}"


def test_host_sync_detector_sees_item_and_data_dependent_shapes_in_backward_too():
    class SyncsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * float(g.sum().item())

    x = torch.randn(5, requires_grad=True)
    detector = HostSyncDetector()
    with detector:
        SyncsInBackward.apply(x).sum().backward()
        x[x > 0].sum()
    assert any("_local_scalar_dense" in op for op in detector.found)
    assert any("nonzero" in op or "index" in op for op in detector.found), detector.found
    quiet = HostSyncDetector()
    with quiet:
        (x * 3).sum().backward()
    assert quiet.found == []
