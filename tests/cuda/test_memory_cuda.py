"""Memory-lean training on a GPU: ``memory_lean(model, time_chunk=n)`` with the neurons on the
Triton backend gives the default's spikes and, to float32 rounding, its gradients, and the peak
memory of a training step stops growing with T. The spike products are a host (CPU) feature:
on CUDA the converted layers run cuBLAS, which this also checks. The interpreter twin runs the
same body on CPU at tiny sizes (the host spike products do run there).

The Triton backend is float32 at most, and products over chunk-sized row blocks may round a
current differently from the whole sequence's, which could flip a spike. So weights, biases and
inputs are multiples of 1/16 and 1/8 small enough that every product and sum is exact in
float32 (in TF32 too) whatever the order: the spikes must then be the default's bit for bit.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fusedsnn as fs
from fusedsnn import memory
from fusedsnn.memory import spike_layers
from fusedsnn.bench import training

from .conftest import TARGETS

pytest.importorskip("triton")


class _ThreeLayer(nn.Module):
    """Linear + Leaky x 3 over ``x: [T, B, sizes[0]]`` -> the last layer's ``(spk, mem)``."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.neurons = nn.ModuleList(fs.Leaky(beta=0.9, backend="triton") for _ in sizes[1:])

    def forward(self, x):
        out = (x,)
        for fc, lif in zip(self.fcs, self.neurons):
            out = lif(fc(out[0]))
        return out[0], out[-1]


def _exact(model: nn.Module) -> nn.Module:
    """Weights and biases tripled (so that every layer spikes) and rounded to multiples of 1/16
    in [-1, 1] (see the module docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("fcs.", "fc")):
                p.copy_((p * 48).round().clamp(-16, 16) / 16)
    return model


def _step(model, x, y):
    spk, mem = model(x)
    loss = fs.population.ce_rate_loss(spk, y, 10, 1) + (mem ** 2).mean()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None
    return spk.detach(), mem.detach(), grads


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_time_chunked_training_matches_default(target):
    sizes = target.pick((12, 70, 70, 10), (256, 512, 512, 10))
    T, B, chunk = target.pick((11, 3, 4), (500, 32, 32))
    torch.manual_seed(5)
    model = _exact(_ThreeLayer(sizes)).to(target.device)
    chunked = memory.memory_lean(copy.deepcopy(model), time_chunk=chunk)
    x = (torch.rand(T, B, sizes[0], device=target.device) * 16).floor() / 8
    y = torch.randint(0, 10, (B,), device=target.device)
    ref = _step(model, x, y)
    got = _step(chunked, x, y)
    assert torch.equal(got[0], ref[0]) and got[0].count_nonzero() > 0
    assert torch.equal(got[1], ref[1])  # the membrane too: the same kernel arithmetic, exact currents
    for name in ref[2]:  # weight gradients: float32 sums over T * B rows in chunk order
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-4, atol=1e-4 * ref[2][name].abs().max().item(),
                                   msg=name)


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_time_chunked_peak_does_not_grow_with_T(target):
    # What a chunked step holds at its peak grows with T by its outputs ([T, B, 10], a few
    # copies) and one [B, hidden] state per layer and chunk: less than one [T, B, hidden] tensor,
    # where the default step's grows by several.
    from fusedsnn.bench.memory import peak_bytes

    hidden, B, chunk = target.pick((160, 4, 16), (512, 32, 32))
    short, long = target.pick((32, 128), (200, 800))

    def peak(T, time_chunk):
        torch.manual_seed(0)
        model = _ThreeLayer((64, hidden, hidden, 10)).to(target.device)
        if time_chunk:
            memory.memory_lean(model, time_chunk=time_chunk)
        x = torch.rand(T, B, 64, device=target.device) * 2
        y = torch.zeros(B, dtype=torch.long, device=target.device)
        step = lambda: _step(model, x, y)  # noqa: E731
        step()  # warm-up: kernels compiled, cached operands built
        return peak_bytes(step, target.device)

    one_tensor = (long - short) * B * hidden * 4  # the growth of one [T, B, hidden] float32 tensor
    chunked_growth = peak(long, chunk) - peak(short, chunk)
    default_growth = peak(long, None) - peak(short, None)
    assert default_growth > 3 * one_tensor
    assert chunked_growth < one_tensor


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_time_chunked_dsnn_static_input(target):
    # The study's DSNN with its static image: the first layer once per sequence, per device.
    batch, steps = target.pick((3, 9), (64, 200))
    hidden = target.pick(24, 1000)
    torch.manual_seed(6)
    model = training.set_backend(_exact(fs.DSNN(784, hidden, 10, num_steps=steps)).to(target.device), "triton")
    chunked = memory.memory_lean(copy.deepcopy(model), time_chunk=target.pick(4, 32))
    x = (torch.rand(batch, 784, device=target.device) * 8).floor() / 8
    y = torch.randint(0, 10, (batch,), device=target.device)
    ref, got = _step(model, x, y), _step(chunked, x, y)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-4, atol=1e-4 * ref[2][name].abs().max().item(),
                                   msg=name)


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_lean_packs_the_hidden_spikes_and_matches_default(target, monkeypatch):
    # memory_lean(model) without chunks: the two spike-fed Linear layers keep their input as
    # bits (on CUDA through the Triton pack and unpack kernels), and the outputs and gradients
    # are the default's bit for bit. How much that saves at the peak is the memory bench's
    # to measure (benchmarks/gpu/check.sh runs it on CUDA).
    hidden, B, T = target.pick((70, 3, 11), (512, 32, 500))
    torch.manual_seed(7)
    model = _ThreeLayer((64, hidden, hidden, 10)).to(target.device)
    lean = memory.memory_lean(copy.deepcopy(model))
    packed = []
    original = memory.pack_spikes
    monkeypatch.setattr(spike_layers, "pack_spikes", lambda x: packed.append(original(x)) or packed[-1])
    x = torch.rand(T, B, 64, device=target.device) * 2
    y = torch.randint(0, 10, (B,), device=target.device)
    ref, got = _step(model, x, y), _step(lean, x, y)
    assert [p is not None for p in packed] == [False, True, True]  # the input current, then spikes
    assert all(p.bits.device == x.device and p.bits.numel() == (T * B * hidden + 7) // 8 for p in packed[1:])
    assert torch.equal(got[0], ref[0]) and got[0].count_nonzero() > 0 and torch.equal(got[1], ref[1])
    for name in ref[2]:
        assert torch.equal(got[2][name], ref[2][name]), name
