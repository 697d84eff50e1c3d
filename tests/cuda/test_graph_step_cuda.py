"""fs.cuda_graph_step on a GPU: three DSNN/CSNN training steps replayed from the graph equal
three eager steps (loss and parameters), dense and memory_lean (also chunked), and a batch of
another shape, dtype or device is refused. The interpreter twin runs the same body on CPU with
the capture replaced by re-running the step (CUDA graphs exist only on CUDA): it checks the
structure (static buffers, warm-up undone, gradients set afresh, the loss returned)."""

from __future__ import annotations

import copy

import pytest
import torch

import fusedsnn as fs
from fusedsnn import graph_step
from fusedsnn.bench import training

from .conftest import TARGETS

pytest.importorskip("triton")


def _loss(out, y):
    return fs.population.ce_rate_loss(out[0], y, 10)


def _fake_capture(optimizer):
    """CPU stand-in for the graph: replay re-runs the captured body into one static loss. The
    gradients are None at capture, so a replayed backward writes them afresh: None again here."""
    def capture(run, device):
        static = torch.zeros(())

        def replay():
            optimizer.zero_grad(set_to_none=True)
            static.copy_(run().detach())

        return replay, static

    return capture


def _fake_warmup(run, device, steps):
    for _ in range(steps):
        run()


def _make_step(target, model, opt, x, y):
    if target.is_cuda:
        return fs.cuda_graph_step(model, _loss, opt, (x, y))
    return graph_step._build(model, _loss, opt, x.clone(), y.clone(), x.device, 3, _fake_capture(opt), _fake_warmup)


@pytest.mark.parametrize("lean", [None, "lean", "chunked"])
@pytest.mark.parametrize("network", ["DSNN", "CSNN"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_graph_step_equals_eager_after_three_steps(target, network, lean, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    batch, steps = target.pick((2, 4), (128, 25))
    size = target.pick({"hidden": 24, "channels": (2, 4)}, {"hidden": 1000, "channels": (12, 64)})
    torch.manual_seed(7)
    model = training.make_model(network, batch, steps, hidden=size["hidden"], channels=size["channels"])
    training.set_backend(model, "triton")
    if lean is not None:
        fs.memory_lean(model, time_chunk=2 if lean == "chunked" else None)
    model = model.to(target.device)
    twin = copy.deepcopy(model)
    initial = [p.detach().clone() for p in model.parameters()]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, capturable=target.is_cuda) for m in (model, twin)]
    shape = (batch, 784) if network == "DSNN" else (batch, 1, 28, 28)
    batches = [(torch.rand(shape, device=target.device) * 2, torch.randint(0, 10, (batch,), device=target.device))
               for _ in range(3)]
    step = _make_step(target, twin, opts[1], *batches[0])
    for p, p0 in zip(twin.parameters(), initial):  # the warm-up steps were undone
        assert torch.equal(p.detach(), p0), "warm-up moved the parameters"
    for x, y in batches:
        opts[0].zero_grad(set_to_none=True)
        expected = _loss(model(x), y)
        expected.backward()
        opts[0].step()
        got = step(x, y)
        target.sync()
        torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-6)
    moved = 0
    for (name, a), e, p0 in zip(twin.named_parameters(), model.parameters(), initial):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5, msg=f"{name} after 3 steps")
        moved += int(not torch.equal(a.detach(), p0))
    assert moved > 0
    x, y = batches[0]
    with pytest.raises(ValueError, match=r"step: x has shape \(1, .*expected shape \(%d, " % batch):
        step(x[:1], y[:1])
    with pytest.raises(ValueError, match=r"step: y has .*dtype torch.int32.*expected .*dtype torch.int64"):
        step(x, y.int())
    if target.is_cuda:
        with pytest.raises(ValueError, match=r"step: x has .*device cpu.*expected .*device cuda"):
            step(x.cpu(), y)
