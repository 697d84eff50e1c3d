"""The SHD-shaped training step of the benchmarks (fusedsnn.bench.training.shd_training_step)."""

from __future__ import annotations

import pytest
import torch

from fusedsnn.bench.training import shd_training_step


def test_shd_step_trains_on_shd_shaped_sparse_input():
    step, model, x, y = shd_training_step(batch=8, num_steps=20, hidden=16, spikes_per_sample=2000.0)
    assert x.shape == (20, 8, 700) and x.dtype == torch.float32 and y.shape == (8,)
    assert 0 <= y.min() and y.max() < 20
    assert x.sum(dim=(0, 2)).mean().item() == pytest.approx(2000.0, rel=0.05)  # the asked rate
    assert model.neurons[0].all_to_all and type(model.neurons[1]).__name__ == "Leaky"
    before = [p.detach().clone() for p in model.parameters()]
    step()  # the parameters must move: the step really trains
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_shd_step_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden"):
        shd_training_step(hidden=0)
    with pytest.raises(ValueError, match="spikes_per_sample"):
        shd_training_step(spikes_per_sample=-1.0)
