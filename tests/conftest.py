"""Shared helpers: snnTorch step loops, per-dtype tolerances, random inputs, Triton interpreter."""

from __future__ import annotations

import zlib

import pytest
import torch

# Per-dtype tolerances for states and gradients (spikes are compared exactly in float32).
TOLERANCES = {
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=4e-2, atol=4e-2),
}

NEURONS = ["Leaky", "Synaptic", "RLeaky", "RSynaptic"]
RESETS = ["subtract", "zero", "none"]


def dtype_id(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}[dtype]


@pytest.fixture
def interpret(monkeypatch):
    """Run Triton kernels on CPU tensors through Triton's interpreter, for this test only."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed(request):
    # Each test draws its own random inputs, reproducibly: the seed comes from the test's id.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    yield


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rtol: float, name: str) -> None:
    """Close within ``rtol`` of the tensor's own scale (gradients through time vary in size)."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(expected).all(), f"{name}: reference has non-finite values"
    scale = expected.abs().max().item() + 1e-6
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=rtol * scale, msg=name)


def random_input(T: int, B: int, *features: int, dtype=torch.float32, scale: float = 1.5) -> torch.Tensor:
    """Inputs large enough that neurons cross threshold often, never all zeros."""
    x = torch.randn(T, B, *features, dtype=torch.float64) * scale + 0.3
    return x.to(dtype)


def snntorch_steps(neuron: torch.nn.Module, x: torch.Tensor, states: dict) -> tuple[torch.Tensor, ...]:
    """snnTorch's step loop: call ``neuron`` per step, threading its returned states, and stack.

    States are passed explicitly every step after the first (as snnTorch's own tutorials do for
    recurrent neurons), so RSynaptic(reset_delay=False) runs too (snnTorch needs ``spk`` then).
    """
    kind = type(neuron).__name__
    names = {"Leaky": ["mem"], "Synaptic": ["syn", "mem"], "RLeaky": ["spk", "mem"],
             "RSynaptic": ["spk", "syn", "mem"]}[kind]
    current = {name: states.get(name) for name in names}
    if kind == "RSynaptic" and current["spk"] is None:
        zeros = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)
        current = {name: zeros if value is None else value for name, value in current.items()}
    outs = []
    for t in range(x.shape[0]):
        kwargs = {k: v for k, v in current.items() if v is not None}
        out = neuron(x[t], **kwargs)
        outs.append(out)
        if kind == "Leaky":
            current = {"mem": out[1]}
        elif kind == "Synaptic":
            current = {"syn": out[1], "mem": out[2]}
        elif kind == "RLeaky":
            current = {"spk": out[0], "mem": out[1]}
        else:
            current = {"spk": out[0], "syn": out[1], "mem": out[2]}
    return tuple(torch.stack(parts) for parts in zip(*outs))


def all_to_all_inputs(T: int, B: int, N: int, synaptic: bool) -> tuple[torch.Tensor, dict]:
    """``x: [T, B, N]`` and the all-to-all op's other inputs (states ``[B, N]``, ``weight: [N, N]``,
    bias and per-neuron parameters ``[N]``), every one a leaf that requires grad (absent syn0 and
    alpha are empty for RLeaky), in the order ``lif_all_to_all_forward`` takes them."""
    x = random_input(T, B, N).requires_grad_()
    tensors = dict(
        mem0=torch.randn(B, N).requires_grad_(),
        syn0=torch.randn(B, N).requires_grad_() if synaptic else x.new_empty(0),
        spk0=(torch.rand(B, N) > 0.5).float().requires_grad_(),
        weight=(torch.randn(N, N) * 2 / N**0.5).requires_grad_(),
        bias=(torch.randn(N) * 0.3).requires_grad_(),
        beta=torch.rand(N).requires_grad_(),
        threshold=(torch.rand(N) + 0.5).requires_grad_(),
        alpha=torch.rand(N).requires_grad_() if synaptic else x.new_empty(0),
    )
    return x, tensors


def ordered_spike_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` in the host spike product's order: bias (or zero), then ``+ x[..., j] *
    W[:, j]`` for each input j in ascending order, skipped where ``x[..., j]`` is zero. ``x: [*,
    in]`` -> ``[*, out]``."""
    x2 = x.reshape(-1, x.shape[-1])
    acc = x2.new_zeros(x2.shape[0], weight.shape[0]) if bias is None else bias.expand(x2.shape[0], -1).clone()
    for j in range(weight.shape[1]):
        s = x2[:, j : j + 1]
        acc = torch.where(s != 0, acc + s * weight[:, j][None, :], acc)
    return acc.reshape(*x.shape[:-1], weight.shape[0])


def weighted_loss(outputs) -> torch.Tensor:
    """A loss that gives every output element a different random weight (fixed by the seed)."""
    gen = torch.Generator().manual_seed(1234)
    total = 0
    for out in outputs:
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
        total = total + (out * w).sum()
    return total


@pytest.fixture
def evidence_table(request, tmp_path, capsys):
    """``write(name, lines)``: a table that is evidence, not noise (registers, spills,
    occupancy): written to the pytest cache folder (``tmp_path`` without the cache plugin) and
    printed only under ``-v``, never into every ``pytest -q``. Returns the file's path."""
    def write(name: str, lines: list[str]):
        folder = request.config.cache.mkdir("fusedsnn") if hasattr(request.config, "cache") else tmp_path
        path = folder / name
        path.write_text("\n".join(lines) + "\n")
        if request.config.get_verbosity() > 0:
            with capsys.disabled():
                print("\n" + "\n".join(lines) + f"\n(also in {path})")
        return path

    return write


@pytest.fixture
def spike_product_calls(monkeypatch):
    """What each host spike-product call of the layers did, in order: ``"product"`` or
    ``"declined"`` (its rate check refused), with the global mode read from a clean environment."""
    from fusedsnn.backends.host import all_to_all as host
    from fusedsnn.memory import product_rule

    monkeypatch.delenv(product_rule.ENV_VAR, raising=False)
    seen = []
    real = host.spike_linear_checked

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append("product" if result.out is not None else "declined")
        return result

    monkeypatch.setattr(host, "spike_linear_checked", recording)
    return seen
