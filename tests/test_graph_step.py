"""fs.cuda_graph_step on a CPU: argument checks and the refusals (the capture itself is in
tests/cuda/test_graph_step_cuda.py, whose interpreter twin runs the step's structure on CPU)."""

from __future__ import annotations

import pytest
import torch

import fusedsnn as fs


def _setup(capturable=True):
    torch.manual_seed(0)
    model = fs.DSNN(12, 8, 10, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=capturable)
    x, y = torch.rand(4, 12), torch.randint(0, 10, (4,))
    return model, opt, x, y


def loss_fn(out, y):
    return fs.population.ce_rate_loss(out[0], y, 10)


def test_exported():
    assert fs.cuda_graph_step is fs.graph_step.cuda_graph_step
    assert "cuda_graph_step" in fs.__all__


def test_refuses_cpu_tensors_clearly():
    model, opt, x, y = _setup()
    with pytest.raises(ValueError, match=r"example_batch: expected CUDA tensors, got x on cpu and y on cpu: CUDA graphs need CUDA"):
        fs.cuda_graph_step(model, loss_fn, opt, (x, y))


@pytest.mark.parametrize("batch, match", [
    (None, "example_batch must be a pair of tensors"),
    ((torch.zeros(2),), "example_batch must be a pair of tensors .* of length 1"),
    ((torch.zeros(2), 3), "example_batch must be a pair of tensors"),
])
def test_refuses_a_malformed_example_batch(batch, match):
    model, opt, _, _ = _setup()
    with pytest.raises(ValueError, match=match):
        fs.cuda_graph_step(model, loss_fn, opt, batch)


def test_refuses_bad_arguments_by_name():
    model, opt, x, y = _setup()
    with pytest.raises(ValueError, match="^model must be a torch.nn.Module"):
        fs.cuda_graph_step(lambda x: x, loss_fn, opt, (x, y))
    with pytest.raises(ValueError, match="^loss_fn must be callable"):
        fs.cuda_graph_step(model, None, opt, (x, y))
    with pytest.raises(ValueError, match="^optimizer must be a torch.optim.Optimizer"):
        fs.cuda_graph_step(model, loss_fn, object(), (x, y))
    with pytest.raises(ValueError, match="^warmup must be a positive int"):
        fs.cuda_graph_step(model, loss_fn, opt, (x, y), warmup=0)


def test_refuses_an_optimizer_that_is_not_capturable():
    model, opt, x, y = _setup(capturable=False)
    with pytest.raises(ValueError, match=r"optimizer: AdamW has capturable=False .*expected capturable=True"):
        fs.cuda_graph_step(model, loss_fn, opt, (x, y))
