"""The PopTorch path: call formation with a stand-in poptorch (runs everywhere), and the real op
on the IPU Model (runs only where the Poplar SDK and PopTorch are installed)."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

import fusedsnn as fs
import fusedsnn.functional as F
from fusedsnn import ipu
from fusedsnn.backends.reference.all_to_all import lif_all_to_all_forward_reference
from fusedsnn.backends.reference.lif import lif_forward_reference, surrogate_trace

from ...conftest import random_input

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake_poptorch(monkeypatch):
    """A stand-in ``poptorch`` whose custom_op records the call and computes the op's outputs
    with the reference backend, so the layer's results can be checked end to end."""
    calls = []

    def custom_op(inputs, name, domain, domain_version, example_outputs, attributes):
        calls.append(dict(inputs=inputs, name=name, domain=domain, version=domain_version,
                          example_outputs=example_outputs, attributes=attributes))
        if name in ipu.ALL_TO_ALL_OP_NAMES.values():
            return all_to_all_op(inputs, name, example_outputs, attributes)
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

    def all_to_all_op(inputs, name, example_outputs, attributes):
        # inputs in the op's documented order (csrc/popart/lif_all_to_all_op.cpp)
        synaptic = name == "RSynapticAllToAllFused"
        x, mem0, *rest = inputs
        syn0 = rest.pop(0) if synaptic else None
        spk0, weight, bias, beta, thr, *rest = rest
        alpha = rest.pop(0) if synaptic else torch.empty(0)
        assert rest == []
        spec = fs.functional.make_spec(
            synaptic=synaptic, recurrence=2, reset_mechanism=["subtract", "zero", "none"][attributes["reset"]],
            reset_delay=not attributes["immediate_reset"], spike_grad=None, surrogate_disable=False,
            graded_spikes_factor=attributes["gsf"], neuron="RSynaptic" if synaptic else "RLeaky")
        with torch.no_grad():
            spk, syn, mem, trace, pre = lif_all_to_all_forward_reference(x, mem0, syn0, spk0, weight, bias, beta, thr,
                                                                    alpha, spec)
        out = [spk, mem, trace] + ([syn] if synaptic else []) + ([pre] if spec.immediate_reset else [])
        assert len(out) == len(example_outputs)
        assert all(o.shape == e.shape and o.dtype == e.dtype for o, e in zip(out, example_outputs))
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


@pytest.mark.parametrize("states", [False, True], ids=["zero-init", "given-states"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
@pytest.mark.parametrize("kind, n_inputs", [("RLeaky", 7), ("RSynaptic", 9)])
def test_all_to_all_emits_the_dense_op_on_ipu(fake_poptorch, kind, n_inputs, reset_delay, states):
    """An nn.Linear(N, N) recurrence runs as one op for the whole sequence; its inputs, attributes
    and outputs are formed as csrc/popart/lif_all_to_all_op.cpp documents (checked by computing the op
    from them with the reference backend and comparing with the same layer off the IPU)."""
    kwargs = dict(alpha=torch.rand(6) * 0.8 + 0.1) if kind == "RSynaptic" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RSynaptic(reset_delay=False) warns that it is a no-op
        layer = getattr(fs, kind)(beta=torch.rand(6) * 1.2 - 0.1, threshold=torch.rand(6) + 0.5, linear_features=6,
                                  reset_mechanism="zero", reset_delay=reset_delay, learn_beta=True, **kwargs)
    with torch.no_grad():
        layer.recurrent.weight.mul_(3.0)
    x = random_input(4, 2, 6)
    given = {}
    if states:
        given = dict(spk=(torch.rand(2, 6) > 0.5).float(), mem=torch.randn(2, 6))
        if kind == "RSynaptic":
            given["syn"] = torch.randn(2, 6)
    on_ipu = layer(x, **given)
    (call,) = fake_poptorch
    assert call["name"] == f"{kind}AllToAllFused" and call["domain"] == "custom.fusedsnn" and call["version"] == 1
    assert len(call["inputs"]) == n_inputs
    assert call["inputs"][3 if kind == "RLeaky" else 4] is layer.recurrent.weight  # a graph input: PopART grads it
    # snnTorch 1.0.0's RSynaptic ignores reset_delay=False (fusedsnn reproduces that)
    immediate = not reset_delay and kind == "RLeaky"
    assert call["attributes"]["reset"] == 1 and call["attributes"]["immediate_reset"] == int(immediate)
    ipu._HAS_POPTORCH = False  # the same layer off the IPU, on the reference backend
    layer.backend = "reference"
    off_ipu = layer(x, **given)
    for a, e in zip(on_ipu, off_ipu):
        assert a.shape == x.shape and torch.equal(a, e)


def test_all_to_all_other_maps_are_traced_from_plain_ops_on_ipu(fake_poptorch):
    """A recurrent map that is not an nn.Linear(N, N) has no fused op: plain PyTorch ops."""
    weight = torch.randn(6, 6) * 0.5

    def recurrent(spk):
        return spk @ weight.t() * 0.5

    x = random_input(4, 2, 6)
    on_ipu = F.rleaky(x, 0.9, recurrent=recurrent)
    assert fake_poptorch == []
    ipu._HAS_POPTORCH = False
    for a, e in zip(on_ipu, F.rleaky(x, 0.9, recurrent=recurrent, backend="reference")):
        torch.testing.assert_close(a, e)


def test_all_to_all_empty_sequence_has_no_op_on_ipu(fake_poptorch):
    layer = fs.RLeaky(beta=0.9, linear_features=6)
    spk, mem = layer(random_input(0, 2, 6))
    assert fake_poptorch == [] and spk.shape == mem.shape == (0, 2, 6)


def test_poplar_backend_outside_ipu_is_a_clear_error():
    with pytest.raises(ValueError, match="only inside a PopTorch model"):
        F.leaky(torch.randn(3, 2, 4), 0.9, backend="poplar")


def test_missing_build_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(ipu, "_loaded", None)
    with pytest.raises(FileNotFoundError, match="make -C csrc/popart"):
        ipu.load_custom_op(tmp_path)
    for name in ("libfusedsnn_popart.so", "lif_codelets.gp"):  # the dense codelets are needed too
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="lif_all_to_all_codelets.gp"):
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


def test_all_to_all_on_ipu_model_with_the_sdk(tmp_path):
    """Runs only where PopTorch is installed: the all-to-all op on the IPU Model against the
    reference backend (the codelets sum W @ spk in their own order: states within float32
    tolerance, spikes wherever the membrane is clear of threshold)."""
    poptorch = pytest.importorskip("poptorch")
    build = tmp_path / "build"
    subprocess.run(["make", "-C", str(ROOT / "csrc" / "popart"), f"BUILD={build}"], check=True)
    ipu.load_custom_op(build)
    layer = fs.RLeaky(beta=0.9, linear_features=10, reset_mechanism="subtract")
    x = random_input(6, 4, 10)
    opts = poptorch.Options().useIpuModel(True)
    spk, mem = poptorch.inferenceModel(layer, opts)(x)
    layer.backend = "reference"
    expected_spk, expected_mem = layer(x)
    # reset_delay=True: each spike is decided on the returned membrane itself
    clear = (expected_mem - layer.threshold.detach()).abs() > 1e-4
    assert torch.equal(spk[clear], expected_spk[clear])
    torch.testing.assert_close(mem, expected_mem, rtol=1e-5, atol=1e-5)
