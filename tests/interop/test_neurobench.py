"""NeuroBench's workload metrics on a fused model equal those of its snnTorch twin under
NeuroBench's own SNNTorchModel (which steps the twin one time step at a time)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fusedsnn as fs

snn = pytest.importorskip("snntorch")
pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity, ClassificationAccuracy, MembraneUpdates, SynapticOperations)
from neurobench.models import SNNTorchModel  # noqa: E402

METRICS = [ActivationSparsity, MembraneUpdates, SynapticOperations, ClassificationAccuracy]


def _dense_twin() -> nn.Sequential:
    """SHD's shape in small: Linear -> all-to-all RLeaky -> Linear -> Leaky readout, plus a Leaky layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 16), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(16, 12), snn.RLeaky(beta=0.8, linear_features=12, init_hidden=True),
        nn.Linear(12, 5), snn.Leaky(beta=0.95, init_hidden=True, output=True))


def _conv_twin() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.MaxPool2d(2), snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5), snn.Leaky(beta=0.9, init_hidden=True, output=True))


def _loader(shape, binary: bool):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(12, 10, *shape, generator=g) * 2  # [B, T, ...]: NeuroBench's layout
    if binary:  # event-like input: binary steps make SynapticOperations count ACs
        x = (x > 1.4).float()
    y = torch.randint(0, 5, (12,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)


def _run(model, loader) -> dict:
    argmax = lambda spikes: spikes.sum(1).argmax(-1)  # noqa: E731 - rate-coded prediction
    return Benchmark(model, loader, [], [argmax], [[], METRICS]).run(quiet=True)


@pytest.mark.parametrize("twin,shape,binary", [(_dense_twin, (20,), False), (_dense_twin, (20,), True),
                                               (_conv_twin, (2, 10, 10), True)],
                         ids=["dense-float", "dense-binary", "conv-binary"])
def test_fused_metrics_equal_the_snntorch_twin(twin, shape, binary):
    net = twin()
    fused = fs.fuse(net)
    ref = _run(SNNTorchModel(net), _loader(shape, binary))
    got = _run(fs.neurobench_model(fused), _loader(shape, binary))
    # the metrics must not be trivially zero, or the comparison proves nothing
    assert 0 < ref["ActivationSparsity"] < 1 and ref["MembraneUpdates"] > 0
    assert ref["SynapticOperations"]["Dense"] > 0
    assert got.keys() == ref.keys()
    for key in ("ActivationSparsity", "MembraneUpdates", "ClassificationAccuracy"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9), key
    for key, value in ref["SynapticOperations"].items():
        assert got["SynapticOperations"][key] == pytest.approx(value, rel=1e-9), key


def test_fused_dsnn_reports_spikes_and_membrane_updates():
    """A fused DSNN on SHD's layout (all-to-all RLeaky hidden, Leaky readout): the same counts
    as stepping its layers by hand."""
    torch.manual_seed(0)
    model = fs.DSNN(20, 16, 5, 10, neuron="rleaky_all_to_all", readout_neuron="leaky")
    loader = _loader((20,), binary=False)
    got = _run(fs.neurobench_model(model), loader)
    spikes = nonzero = updates = 0
    with torch.no_grad():
        for x, _ in loader:
            h = model.neurons[0](model.fcs[0](x.transpose(0, 1)))
            o = model.neurons[1](model.fcs[1](h[0]))
            for spk, mem in (h, o):
                spikes += spk.numel()
                nonzero += spk.count_nonzero().item()
                updates += mem[0].numel() + (mem[1:] - mem[:-1]).count_nonzero().item()
    assert got["ActivationSparsity"] == pytest.approx(1 - nonzero / spikes)
    assert got["MembraneUpdates"] == pytest.approx(updates / 12)
    assert 0 < got["ActivationSparsity"] < 1


def test_neurobench_model_rejects_bad_input():
    adapter = fs.neurobench_model(fs.DSNN(4, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\[B, T, \.\.\.\]"):
        adapter(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        fs.neurobench_model("model")
