"""The Triton kernels on real CUDA tensors (and, as twins, in the interpreter on CPU).

Parity with the reference backend on the same device (every output and gradient; outputs
pre-filled with NaN; float32 spikes and states bit-identical), the snnTorch parity of the fused
layers, stride-0 and non-contiguous inputs, and the autotuned launch configuration. On the GPU
the sizes span many programs (B * F of 16,000 neurons and more); in the interpreter they are tiny.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

import fusedsnn as fs
import fusedsnn.functional as F
from fusedsnn import surrogate as S
from fusedsnn.backends.triton import lif as lif_triton

from ..conftest import NEURONS, RESETS, TOLERANCES, assert_close_scaled, dtype_id, random_input, snntorch_steps, weighted_loss
from ..backends.parity import compare_backends, make_params
from .conftest import TARGETS, cuda_param, interpreter_param, no_host_sync, to_target

pytest.importorskip("triton")

SURROGATES = {
    "atan": S.atan(alpha=3.0),
    "fast_sigmoid": S.fast_sigmoid(slope=5),
    "sigmoid": S.sigmoid(slope=25),
    "ste": S.straight_through_estimator(),
    "triangular": S.triangular(threshold=0.7),
    "sre": S.spike_rate_escape(beta=0.5, slope=3),
    "disabled": S.disabled(),
}

# The whole grid on the GPU; in the interpreter (where tests/backends/triton/test_lif.py already
# covers the grid) a rotation that still visits every neuron, reset, reset_delay and learn value.
_GRID = list(itertools.product(NEURONS, RESETS, [True, False], [True, False]))
_ROTATION = [(kind, RESETS[i % 3], i % 2 == 0, (i // 2) % 2 == 0) for i, kind in enumerate(NEURONS * 2)]


def _grid_id(kind, reset, delay, learn) -> str:
    return f"{kind}-{reset}-{'delay' if delay else 'immediate'}-{'learn' if learn else 'frozen'}"


GRID_CASES = ([interpreter_param(*c, id=f"interpreter-{_grid_id(*c)}") for c in _ROTATION]
              + [cuda_param(*c, id=f"cuda-{_grid_id(*c)}") for c in _GRID])


def _case(target, kind: str, learn: bool, with_states: bool, dtype=torch.float32, scale: float = 1.5):
    T, B, features = target.pick((5, 2, (13,)), (25, 16, (1000,)))
    x = random_input(T, B, *features, dtype=dtype, scale=scale).to(target.device)
    params, states = make_params(kind, features, learn=learn, with_states=with_states, B=B, dtype=dtype)
    return x, to_target(params, target.device), to_target(states, target.device)


@pytest.mark.parametrize("target,kind,reset,reset_delay,learn", GRID_CASES, indirect=["target"])
def test_parity_grid_fp32(target, poisoned_outputs, kind, reset, reset_delay, learn):
    x, params, states = _case(target, kind, learn, with_states=True)
    compare_backends("triton", kind, x, params, states, torch.float32, exact=True,
                     reset_mechanism=reset, reset_delay=reset_delay)


@pytest.mark.parametrize("surrogate", list(SURROGATES))
@pytest.mark.parametrize("kind", ["Leaky", "RSynaptic"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_surrogates(target, poisoned_outputs, kind, surrogate):
    x, params, states = _case(target, kind, learn=True, with_states=False, scale=0.8)
    compare_backends("triton", kind, x, params, states, torch.float32, exact=True, spike_grad=SURROGATES[surrogate])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_reduced_precision(target, poisoned_outputs, kind, dtype):
    x, params, states = _case(target, kind, learn=True, with_states=True, dtype=dtype)
    compare_backends("triton", kind, x, params, states, dtype, exact=False, reset_mechanism="subtract")


@pytest.mark.parametrize("layout", ["stride0-time", "transposed-features", "strided-batch", "time-slice"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_strided_inputs(target, poisoned_outputs, layout):
    """Inputs as models produce them: a static input expanded over time (stride 0, never copied
    T times), transposed features, every other batch row, every other time step."""
    T, B, N = target.pick((6, 3, 11), (25, 32, 999))
    dev = target.device
    if layout == "stride0-time":
        x = random_input(1, B, N)[0].to(dev).unsqueeze(0).expand(T, B, N)
    elif layout == "transposed-features":
        x = random_input(T, B, 7, N).to(dev).transpose(2, 3)
    elif layout == "strided-batch":
        x = random_input(T, 2 * B, N).to(dev)[:, ::2]
    else:
        x = random_input(2 * T, B, N).to(dev)[::2]
    assert not x.is_contiguous()
    params, states = make_params("Synaptic", tuple(x.shape[2:]), learn=True, with_states=True, B=B)
    compare_backends("triton", "Synaptic", x, to_target(params, dev), to_target(states, dev), torch.float32, exact=True)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_fused_layer_matches_snntorch_on_device(target, kind, reset):
    """snnTorch 1.0.0 stepped on the same device is the oracle: spikes and states bit-identical."""
    snn = pytest.importorskip("snntorch")
    T, B, N = target.pick((6, 3, 10), (25, 32, 500))
    kwargs = dict(beta=torch.rand(N) * 0.9 + 0.05, threshold=torch.rand(N) + 0.5, learn_beta=True,
                  learn_threshold=True, reset_mechanism=reset)
    if kind in ("Synaptic", "RSynaptic"):
        kwargs.update(alpha=torch.rand(N) * 0.9 + 0.05, learn_alpha=True)
    if kind in ("RLeaky", "RSynaptic"):
        kwargs.update(V=torch.randn(N) * 0.5, learn_recurrent=True, all_to_all=False)
    reference = getattr(snn, kind)(**kwargs).to(target.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = fs.from_snntorch(reference, backend="triton").to(target.device)
    x = random_input(T, B, N).to(target.device).requires_grad_()
    expected = snntorch_steps(reference, x, {})
    actual = fused(x)
    assert 0 < expected[0].count_nonzero() < expected[0].numel()
    for name, a, e in zip(["spk", "syn", "mem"] if len(actual) == 3 else ["spk", "mem"], actual, expected):
        assert torch.equal(a, e), f"{name} differs from snnTorch on {target.device}"
    ref_params = {n: p for n, p in reference.named_parameters() if p.requires_grad}
    fused_params = {n: p for n, p in fused.named_parameters() if p.requires_grad}
    names = sorted(ref_params)
    assert names and names == sorted(fused_params)
    expected_grads = torch.autograd.grad(weighted_loss([o.cpu() for o in expected]),
                                         [x, *(ref_params[n] for n in names)])
    actual_grads = torch.autograd.grad(weighted_loss([o.cpu() for o in actual]),
                                       [x, *(fused_params[n] for n in names)])
    for name, a, e in zip(["x", *names], actual_grads, expected_grads):
        assert_close_scaled(a.cpu(), e.cpu(), 2e-4, f"gradient of {name}")


@pytest.mark.parametrize("kind", NEURONS)
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_fused_op_never_syncs_with_the_host(target, kind):
    """Forward and backward of every neuron: no ``.item()``, no data-dependent shape (what CUDA
    graph capture forbids); on the GPU also under ``torch.cuda.set_sync_debug_mode("error")``."""
    x, params, states = _case(target, kind, learn=True, with_states=True)
    x.requires_grad_()
    from ..backends.parity import call_neuron

    with no_host_sync(target) as detector:
        outs = call_neuron(kind, x, params, states, "triton")
        loss = sum((o * (i + 1)).sum() for i, o in enumerate(outs))
        grads = torch.autograd.grad(loss, [x, *states.values(), *params.values()])
    assert detector.found == [], f"host synchronisation in the fused op: {detector.found}"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_launch_configuration_is_tuned_once_per_size_bucket(target, monkeypatch):
    """On CUDA the autotuner picks one candidate per (GPU, size bucket, dtype, flags) and reuses
    it for another T; in the interpreter one fixed configuration runs. Results are the
    reference's, bit for bit, whatever was picked."""
    if target.is_cuda:
        monkeypatch.setenv("FUSEDSNN_TRITON_AUTOTUNE", "1")
    lif_triton.clear_tuning_cache()
    used = []
    launch = lif_triton.launch

    def spy(kernel, candidates, M, *args, **kwargs):
        cfg = launch(kernel, candidates, M, *args, **kwargs)
        used.append((kernel.fn.__name__, M, cfg, candidates))
        return cfg

    monkeypatch.setattr(lif_triton, "launch", spy)
    B, N = target.pick((3, 40), (128, 1000))
    beta = (torch.rand(N) * 0.9 + 0.05).to(target.device).requires_grad_()
    for T in target.pick((3, 7), (10, 25)):
        x = random_input(T, B, N).to(target.device)
        out, ref = [], []
        for backend, sink in (("triton", out), ("reference", ref)):
            xi = x.clone().requires_grad_()
            spk, mem = F.leaky(xi, beta, 1.0, backend=backend)
            sink += [spk, mem, *torch.autograd.grad(weighted_loss([spk.cpu(), mem.cpu()]), [xi, beta])]
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        for a, e in zip(out[2:], ref[2:]):
            torch.testing.assert_close(a, e, **TOLERANCES[torch.float32])
    assert [u[0] for u in used] == ["lif_forward_kernel", "lif_backward_kernel"] * 2
    assert used[0][2] == used[2][2] and used[1][2] == used[3][2], "T must not change the configuration"
    if target.is_cuda:
        log = lif_triton.tuned_configs()
        assert [row["kernel"] for row in log] == ["lif_forward_kernel", "lif_backward_kernel"]
        for name, M, cfg, candidates in used:
            assert cfg in candidates
        assert all(row["size_bucket"] == lif_triton.size_bucket(B * N) for row in log)
    else:
        assert lif_triton.tuned_configs() == []
        expected = lif_triton.LaunchConfig(min(lif_triton.INTERPRETER_BLOCK, lif_triton.size_bucket(B * N)), 4)
        assert all(cfg == expected for _, _, cfg, _ in used)


@pytest.mark.parametrize("gsf", [0.7, 3.0])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_graded_spikes_with_immediate_reset(target, poisoned_outputs, reset, gsf):
    """The immediate reset divides the graded spike by its factor: on a GPU that division must be
    the IEEE one (as PyTorch's), or states drift from snnTorch's wherever spk / gsf != 1 exactly."""
    x, params, states = _case(target, "Leaky", learn=True, with_states=True)
    compare_backends("triton", "Leaky", x, params, states, torch.float32, exact=True,
                     reset_mechanism=reset, reset_delay=False, graded_spikes_factor=gsf)
