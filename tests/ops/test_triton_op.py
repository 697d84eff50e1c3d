"""The Triton LIF kernels as ``torch.library.triton_op`` (``FUSEDSNN_COMPILE_TRITON_OP=1``), on
a CPU: registration, the switch, and tracing with fake CUDA tensors through Python
functionalisation (what AOTAutograd does under torch.compile), which must record the Triton
kernels themselves, forward and backward, with each output taken from the slot its kernel writes.
Running the compiled graph needs a GPU (tests/cuda/test_capture.py)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch._subclasses.functional_tensor import dispatch_functionalize  # noqa: E402
from torch.fx.experimental.proxy_tensor import make_fx  # noqa: E402

from fusedsnn import surrogate as surrogate_mod  # noqa: E402
from fusedsnn.backends.registry import get_backend  # noqa: E402
from fusedsnn.ops import lif as lif_ops  # noqa: E402
from fusedsnn.spec import LIFSpec  # noqa: E402


def test_triton_backend_registers_its_triton_ops():
    fwd, bwd = get_backend("triton").compiled_lif
    assert torch.ops.fusedsnn.lif_forward_triton.default is not None
    assert torch.ops.fusedsnn.lif_backward_triton.default is not None
    assert get_backend("reference").compiled_lif is None
    assert fwd is not None and bwd is not None


def test_switch_is_off_by_default_and_only_on_cuda(monkeypatch):
    triton = get_backend("triton")
    fake = FakeTensorMode()
    with fake:
        x_cuda = torch.empty(2, 2, 2, device="cuda")
    x_cpu = torch.empty(2, 2, 2)
    monkeypatch.delenv("FUSEDSNN_COMPILE_TRITON_OP", raising=False)
    assert lif_ops.compiled_forward_op(triton, x_cuda) is lif_ops.lif_forward
    monkeypatch.setenv("FUSEDSNN_COMPILE_TRITON_OP", "1")
    assert lif_ops.compiled_forward_op(triton, x_cuda) is triton.compiled_lif[0]
    assert lif_ops.compiled_forward_op(triton, x_cpu) is lif_ops.lif_forward
    assert lif_ops.compiled_forward_op(get_backend("reference"), x_cuda) is lif_ops.lif_forward


def _flags(spec):
    return (spec.synaptic, spec.recurrence, spec.reset, spec.reset_delay, spec.surrogate.code,
            float(spec.surrogate.p0), float(spec.surrogate.p1), float(spec.graded_spikes_factor))


def _kernel_nodes(gm):
    return [n for n in gm.graph.nodes if n.target is torch.ops.higher_order.triton_kernel_wrapper_functional]


def _taken(gm, count):
    outs = gm.graph.output_node().args[0]
    return [o.args[1] if o.op == "call_function" and getattr(o.target, "__name__", "") == "getitem" else None
            for o in outs[:count]]


@pytest.mark.parametrize("synaptic", [False, True])
def test_traced_ops_record_the_triton_kernels(monkeypatch, synaptic):
    """Fake CUDA tensors through Python functionalisation: each op becomes its Triton kernel, and
    each output is the slot the kernel writes (an output also passed as a dummy argument would
    come back from the slot that never wrote it). Autograd cannot run on fake CUDA tensors in a
    CPU-only build (it aborts), so forward and backward are traced one at a time."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    spec = LIFSpec(synaptic, 0, 0, False, surrogate_mod.resolve(None, False))
    fwd, bwd = get_backend("triton").compiled_lif
    T, B, F = 4, 3, 5

    def forward(x, beta, thr, alpha):
        e = x.new_empty(0)
        spk, syn, mem, trace, state, pre = fwd(x, e, e, e, e, beta, thr, alpha if synaptic else e, e,
                                               *_flags(spec), False, "triton")
        return spk, mem, pre

    def backward(g, mem, pre, beta, thr, alpha):
        e = mem.new_empty(0)
        grads = bwd(g, e, g, e, mem, mem, mem, pre, e, e, e, beta, thr, alpha if synaptic else e, e,
                    *_flags(spec), torch.float32, True, False, synaptic, False, "triton")
        return grads[0], grads[4]

    with FakeTensorMode():
        big = [torch.empty(T, B, F, device="cuda") for _ in range(3)]
        small = [torch.empty(F, device="cuda") for _ in range(3)]
    gm = make_fx(dispatch_functionalize(forward), tracing_mode="fake")(big[0], *small)
    assert len(_kernel_nodes(gm)) == 1, gm.code
    assert not [n for n in gm.graph.nodes if "fusedsnn" in str(n.target)], gm.code
    assert _taken(gm, 3) == ["spk_ptr", "mem_ptr", "pre_ptr"], gm.code
    gm = make_fx(dispatch_functionalize(backward), tracing_mode="fake")(*big, *small)
    assert len(_kernel_nodes(gm)) == 1, gm.code
    assert _taken(gm, 1) == ["grad_x_ptr"], gm.code


@pytest.mark.parametrize("synaptic", [False, True])
def test_triton_op_autograd_equals_the_eager_function(monkeypatch, synaptic):
    """Eagerly (the kernels through the interpreter), the triton_op pair with its autograd glue
    gives the eager Function's outputs and gradients bit for bit."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("FUSEDSNN_COMPILE_TRITON_OP", "1")
    triton = get_backend("triton")
    with FakeTensorMode():
        fake_cuda = torch.empty(1, device="cuda")
    op = lif_ops.compiled_forward_op(triton, fake_cuda)  # wires the autograd glue
    assert op is triton.compiled_lif[0]
    spec = LIFSpec(synaptic, 0, 0, False, surrogate_mod.resolve(None, False))
    torch.manual_seed(0)
    T, B, F = 5, 3, 4
    x0 = torch.randn(T, B, F) * 2
    g = torch.randn(T, B, F)
    results = []
    for path in ("eager", "triton_op"):
        x = x0.clone().requires_grad_()
        beta = torch.full((F,), 0.9, requires_grad=True)
        thr, alpha = torch.ones(F), torch.full((F,), 0.8)
        if path == "eager":
            spk, _, mem = lif_ops.lif_apply(x, None, None, None, None, beta, thr,
                                            alpha if synaptic else None, None, spec, False, triton)
        else:
            e = x.new_empty(0)
            out = op(x, e, e, e, e, beta, thr, alpha if synaptic else e, e, *_flags(spec), False, "triton")
            spk, mem = out[0], out[2]
        gx, gb = torch.autograd.grad((mem * g).sum() + spk.sum(), (x, beta))
        results.append((spk, mem, gx, gb))
    for a, b in zip(*results):
        assert torch.equal(a, b)
