"""A DSNN training step under ``torch.compile`` in the modes users run (default, and
``mode="reduce-overhead"``: inductor's CUDA graphs), with the fused neurons traced as the generic
custom op and as the Triton kernels' ``triton_op`` (``FUSEDSNN_COMPILE_TRITON_OP=1``): three
steps equal three eager steps. The interpreter twin compiles with ``aot_eager`` on CPU, where the
generic op is always used (the triton_op's own CPU checks are in tests/ops/test_triton_op.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import fusedsnn as fs
from fusedsnn.bench import training

from .conftest import cuda_param, interpreter_param

pytest.importorskip("triton")


def _loss(out, y):
    return fs.population.ce_rate_loss(out[0], y, 10)


@pytest.mark.parametrize("target, mode, triton_op", [
    interpreter_param(None, "0", id="interpreter"),
    cuda_param("default", "0", id="cuda-default-custom_op"),
    cuda_param("default", "1", id="cuda-default-triton_op"),
    cuda_param("reduce-overhead", "0", id="cuda-reduce_overhead-custom_op"),
    cuda_param("reduce-overhead", "1", id="cuda-reduce_overhead-triton_op"),
], indirect=["target"])
def test_compiled_dsnn_training_step_equals_eager(target, mode, triton_op, monkeypatch):
    monkeypatch.setenv("FUSEDSNN_COMPILE_TRITON_OP", triton_op)
    torch._dynamo.reset()
    batch, steps = target.pick((2, 3), (128, 25))
    hidden = target.pick(16, 1000)
    torch.manual_seed(3)
    model = training.set_backend(training.make_model("DSNN", batch, steps, hidden=hidden), "triton").to(target.device)
    twin = copy.deepcopy(model)
    kwargs = {"backend": "aot_eager"} if not target.is_cuda else {"mode": mode}
    compiled = torch.compile(twin, **kwargs)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (model, twin)]
    for _ in range(3):
        x = torch.rand(batch, 784, device=target.device) * 2
        y = torch.randint(0, 10, (batch,), device=target.device)
        losses = []
        for net, opt in ((model, opts[0]), (compiled, opts[1])):
            opt.zero_grad(set_to_none=True)
            loss = _loss(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach().clone())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, a), e in zip(twin.named_parameters(), model.parameters()):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=f"{name} after 3 compiled steps ({mode})")
