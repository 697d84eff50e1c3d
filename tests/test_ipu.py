"""The PopTorch path: call formation with a stand-in poptorch (runs everywhere), and the real op
on the IPU Model (runs only where the Poplar SDK and PopTorch are installed)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import fusedsnn as fs
import fusedsnn.functional as F
from fusedsnn import ipu
from fusedsnn.kernels.lif_reference import lif_forward_reference, surrogate_trace

from .conftest import random_input

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_poptorch(monkeypatch):
    """A stand-in ``poptorch`` whose custom_op records the call and computes the op's outputs
    with the reference backend, so the layer's results can be checked end to end."""
    calls = []

    def custom_op(inputs, name, domain, domain_version, example_outputs, attributes):
        calls.append(dict(inputs=inputs, name=name, domain=domain, version=domain_version,
                          example_outputs=example_outputs, attributes=attributes))
        synaptic = name in ("SynapticFused", "RSynapticFused")
        recurrent = name in ("RLeakyFused", "RSynapticFused")
        x, mem0, *rest = inputs
        syn0 = rest.pop(0) if synaptic else None
        spk0 = rest.pop(0) if recurrent else None
        beta, thr, *rest = rest
        alpha = rest.pop(0) if synaptic else torch.empty(0)
        V = rest.pop(0) if recurrent else torch.empty(0)
        spec = fs.functional.make_spec(
            synaptic=synaptic, recurrence=1 if recurrent else 0,
            reset_mechanism=["subtract", "zero", "none"][attributes["reset"]],
            reset_delay=not attributes["immediate_reset"], spike_grad=None, surrogate_disable=False,
            graded_spikes_factor=attributes["gsf"], neuron="Synaptic" if synaptic else "Leaky")
        ref = lif_forward_reference(x, mem0, syn0, spk0, None, beta, thr, alpha, V, spec, False)
        spk, syn, mem, _, _, pre = ref
        trace = surrogate_trace(spec, ref, thr)  # the PopART op still writes the trace
        out = [spk, mem, trace] + ([syn] if synaptic else []) + ([pre] if spec.immediate_reset else [])
        assert len(out) == len(example_outputs)
        return out

    module = types.SimpleNamespace(custom_op=custom_op, isRunningOnIpu=lambda: True)
    monkeypatch.setitem(sys.modules, "poptorch", module)
    monkeypatch.setattr(ipu, "_HAS_POPTORCH", True)
    monkeypatch.setattr(ipu, "_loaded", Path("libfusedsnn_popart.so"))
    return calls


@pytest.mark.parametrize("kind, op_name, n_inputs", [
    ("Leaky", "LeakyFused", 4), ("Synaptic", "SynapticFused", 6),
    ("RLeaky", "RLeakyFused", 6), ("RSynaptic", "RSynapticFused", 8)])
def test_layers_emit_the_custom_op_under_poptorch(fake_poptorch, kind, op_name, n_inputs):
    kwargs = {"Leaky": dict(beta=0.9), "Synaptic": dict(alpha=0.7, beta=0.9),
              "RLeaky": dict(beta=0.9, V=0.4, all_to_all=False),
              "RSynaptic": dict(alpha=0.7, beta=0.9, V=0.4, all_to_all=False)}[kind]
    layer = getattr(fs, kind)(reset_mechanism="zero", **kwargs)
    x = random_input(5, 3, 2, 4)
    on_ipu = layer(x)
    (call,) = fake_poptorch
    assert call["name"] == op_name and call["domain"] == "custom.fusedsnn" and call["version"] == 1
    assert len(call["inputs"]) == n_inputs
    assert call["attributes"]["reset"] == 1 and call["attributes"]["surrogate"] == 0
    assert call["inputs"][0].shape == (5, 3, 8)  # features flattened, params per feature
    ipu._HAS_POPTORCH = False  # the same layer off the IPU
    on_cpu = layer(x)
    for a, e in zip(on_ipu, on_cpu):
        assert a.shape == x.shape and torch.equal(a, e)


def test_all_to_all_is_traced_from_plain_ops_on_ipu(fake_poptorch):
    layer = fs.RLeaky(beta=0.9, linear_features=6)
    x = random_input(4, 2, 6)
    on_ipu = layer(x)
    assert fake_poptorch == []  # no custom op: W @ spk couples neurons
    ipu._HAS_POPTORCH = False
    layer.backend = "reference"  # bit-identical to nn.Linear's order (the host sums in its own)
    for a, e in zip(on_ipu, layer(x)):
        assert torch.equal(a, e)


def test_poplar_backend_outside_ipu_is_a_clear_error():
    with pytest.raises(ValueError, match="only inside a PopTorch model"):
        F.leaky(torch.randn(3, 2, 4), 0.9, backend="poplar")


def test_missing_build_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(ipu, "_loaded", None)
    with pytest.raises(FileNotFoundError, match="make -C csrc/popart"):
        ipu.load_custom_op(tmp_path)


def test_on_ipu_model_with_the_sdk(tmp_path):
    """Runs only where PopTorch is installed: builds the op and compares with the reference."""
    poptorch = pytest.importorskip("poptorch")
    build = tmp_path / "build"
    subprocess.run(["make", "-C", str(ROOT / "csrc" / "popart"), f"BUILD={build}"], check=True)
    ipu.load_custom_op(build)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = fs.Synaptic(alpha=0.7, beta=0.9, learn_beta=True)

        def forward(self, x):
            spk, syn, mem = self.lif(x)
            return spk, mem, (mem ** 2).sum()

    model = Model()
    x = random_input(6, 4, 10)
    opts = poptorch.Options().useIpuModel(True)
    spk, mem, _ = poptorch.inferenceModel(model, opts)(x)
    expected = fs.functional.synaptic(x, 0.7, 0.9, backend="reference")
    assert torch.equal(spk, expected[0])
    torch.testing.assert_close(mem, expected[2])
