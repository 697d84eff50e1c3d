"""The autograd plumbing (fusedsnn/ops/lif.py): the eager Function against the torch.library op,
refusals for what the fused op cannot differentiate, and inference that saves nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import fusedsnn as fs
import fusedsnn.functional as F
from fusedsnn import ops
from fusedsnn.backends import available_backends, get_backend
from fusedsnn.spec import LIFSpec

from ..conftest import NEURONS, random_input
from ..backends.parity import call_neuron, make_params

CPU_BACKENDS = [b for b in ("reference", "host") if b in available_backends()]


def _loss(outs):
    return sum((o * torch.randn_like(o)).sum() for o in outs)


def _outputs_and_grads(kind, x, params, states, backend):
    leaves = [x, *params.values(), *states.values()]
    leaves = [t.detach().requires_grad_() for t in leaves]
    x_, rest = leaves[0], leaves[1:]
    p = dict(zip(params, rest[: len(params)]))
    st = dict(zip(states, rest[len(params):]))
    outs = call_neuron(kind, x_, p, st, backend)
    torch.manual_seed(7)
    grads = torch.autograd.grad(_loss(outs), leaves)
    return [o.detach() for o in outs] + list(grads)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", NEURONS)
def test_eager_path_equals_custom_op_path(kind, backend, monkeypatch):
    """The eager Function and the torch.library op (the path torch.compile traces) give the
    same outputs and gradients, bit for bit: they call the same launchers."""
    B, features = 3, (7,)
    x = random_input(5, B, *features)
    params, states = make_params(kind, features, learn=True, with_states=True, B=B)
    eager = _outputs_and_grads(kind, x, params, states, backend)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    traced = _outputs_and_grads(kind, x, params, states, backend)
    assert len(eager) == len(traced)
    for a, b in zip(eager, traced):
        assert torch.equal(a, b)


def _leaky_inputs():
    return random_input(4, 2, 5).requires_grad_()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_forward_ad_refused_with_clear_error(backend):
    x = _leaky_inputs().detach()
    tangent = torch.randn_like(x)
    with pytest.raises(NotImplementedError, match="forward-mode AD"):
        torch.func.jvp(lambda inp: F.leaky(inp, 0.9, backend=backend)[1], (x,), (tangent,))
    with pytest.raises(NotImplementedError, match="forward-mode AD"):
        with fwAD.dual_level():
            F.leaky(fwAD.make_dual(x, tangent), 0.9, backend=backend)


@pytest.mark.parametrize("transform", ["grad", "vmap"])
def test_torch_func_transforms_refused_with_clear_error(transform):
    x = random_input(3, 2, 4)

    def f(inp):
        return F.leaky(inp, 0.9)[1].sum()

    call = torch.func.grad(f) if transform == "grad" else torch.func.vmap(lambda inp: F.leaky(inp, 0.9)[1])
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        call(x)


def test_forward_ad_refused_for_layers():
    layer = fs.Synaptic(alpha=0.8, beta=0.9)
    x = random_input(3, 2, 4)
    with pytest.raises(NotImplementedError, match="forward-mode AD"):
        torch.func.jvp(lambda inp: layer(inp)[0], (x,), (torch.randn_like(x),))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_double_backward_refused_at_create_graph(backend):
    x = _leaky_inputs()
    spk, mem = F.leaky(x, 0.9, backend=backend)
    with pytest.raises(RuntimeError, match="double backward.*create_graph=True"):
        torch.autograd.grad(_loss((spk, mem)), x, create_graph=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_first_order_grad_unchanged_after_refusal(backend):
    """Refusing create_graph leaves ordinary backward working (no state is left behind)."""
    x = _leaky_inputs()
    spk, mem = F.leaky(x, 0.9, backend=backend)
    (g,) = torch.autograd.grad(mem.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def _size(t):
    """Elements of a backend output; an absent one is None (host) or empty (the others)."""
    return 0 if t is None else t.numel()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "no_input_requires_grad"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
def test_inference_writes_only_outputs(backend, mode, reset_delay, monkeypatch):
    """Without a backward to come, the backend is asked for no trace, state copy or pre-reset
    membrane, and the outputs are bit-identical to those of grad mode."""
    x = random_input(6, 3, 9)
    calls = []
    real = get_backend(backend)
    original = real.lif_forward

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out

    backend_obj = dataclasses.replace(real, lif_forward=spy)
    monkeypatch.setattr(F, "resolve_backend", lambda name, inp: backend_obj)
    xg = x.clone().requires_grad_()
    spk_g, mem_g = F.leaky(xg, 0.9, reset_delay=reset_delay, backend=backend)
    # float32 grad mode saves no trace (the backward recomputes the surrogate from mem or pre)
    assert _size(calls[-1][3]) == 0
    assert _size(calls[-1][5]) == (0 if reset_delay else x.numel())
    if mode == "no_grad":
        with torch.no_grad():
            spk, mem = F.leaky(xg, 0.9, reset_delay=reset_delay, backend=backend)
    elif mode == "inference_mode":
        with torch.inference_mode():
            spk, mem = F.leaky(x, 0.9, reset_delay=reset_delay, backend=backend)
    else:
        spk, mem = F.leaky(x, 0.9, reset_delay=reset_delay, backend=backend)
    _, _, _, trace, state, pre = calls[-1]
    assert _size(trace) == 0 and _size(state) == 0 and _size(pre) == 0
    assert torch.equal(spk, spk_g.detach()) and torch.equal(mem, mem_g.detach())


def test_unused_output_gradient_is_not_materialised(monkeypatch):
    """A loss on spikes only sends no zero-filled membrane gradient to the backend."""
    seen = {}
    real = get_backend("reference")

    def spy(grad_spk, grad_syn, grad_mem, *rest):
        seen["grad_mem"] = grad_mem
        return real.lif_backward(grad_spk, grad_syn, grad_mem, *rest)

    backend_obj = dataclasses.replace(real, lif_backward=spy)
    monkeypatch.setattr(F, "resolve_backend", lambda name, inp: backend_obj)
    x = _leaky_inputs()
    spk, _ = F.leaky(x, 0.9)
    spk.sum().backward()
    assert seen["grad_mem"] is None


def test_lif_apply_rejects_nothing_it_should_accept():
    """Empty tensors and None both mean "absent" for states and the recurrent input."""
    spec = LIFSpec(False, 0, 0, True, F.surrogate_mod.resolve(None, False))
    x = random_input(3, 2, 4)
    beta, thr, e = torch.full((4,), 0.9), torch.ones(4), torch.empty(0)
    backend = get_backend("reference")
    a = ops.lif_apply(x, None, None, None, None, beta, thr, e, e, spec, False, backend)
    b = ops.lif_apply(x, e, e, e, e, beta, thr, e, e, spec, False, backend)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@pytest.mark.parametrize("surrogate", ["atan", "sigmoid", "triangular", "spike_rate_escape"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "immediate"])
def test_recomputed_surrogate_matches_a_saved_trace(surrogate, reset_delay):
    """float32 writes no trace and the backward recomputes it from the saved membrane (or the
    pre-reset one); the gradients are bit-identical to a backward handed the trace explicitly,
    and a float16 input still writes the trace (its rounded membrane could not reproduce it)."""
    from fusedsnn.spec import LIFSpec
    from fusedsnn.surrogate import Surrogate

    spec = LIFSpec(True, 1, 0, reset_delay, Surrogate(surrogate, 2.0, 1.5))
    ref = get_backend("reference")
    T, B, Fn = 7, 3, 5
    x = random_input(T, B, Fn)
    beta, thr, alpha, V = (torch.rand(Fn) * 0.5 + 0.4 for _ in range(4))
    spk, syn, mem, trace, state, pre = ref.lif_forward(x, None, None, None, None, beta, thr, alpha, V, spec, True)
    assert trace.numel() == 0
    m_pre = pre if spec.immediate_reset else mem
    explicit = torch.stack([spec.surrogate.derivative(m_pre[t] - thr) for t in range(T)])
    grads = [random_input(T, B, Fn) for _ in range(3)]
    args = (mem, syn, spk, pre, None, None, None, beta, thr, alpha, V, spec, torch.float32, (True,) * 4)
    recomputed = ref.lif_backward(*grads, torch.empty(0), *args)
    given = ref.lif_backward(*grads, explicit, *args)
    for a, b in zip(recomputed, given):
        assert torch.equal(a, b)
    half = ref.lif_forward(x.half(), None, None, None, None, beta, thr, alpha, V, spec, False)
    assert half[3].shape == x.shape


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("synaptic, recurrence", [(False, 0), (True, 1)], ids=["leaky", "rsynaptic"])
def test_op_backward_leaves_absent_state_gradients_empty(synaptic, recurrence, backend):
    """The traced path's backward op: an initial state that was not given (an empty input, which
    cannot require grad) gets an empty gradient, not a [B, F] zero fill nobody reads; a given
    one gets its real gradient. opcheck holds the fake to the same shapes."""
    T, B, N = 5, 3, 7
    x = random_input(T, B, N)
    e = torch.empty(0)
    mem0 = torch.randn(B, N)
    beta, thr = torch.rand(N), torch.rand(N) + 0.5
    alpha = torch.rand(N) if synaptic else e
    V = torch.randn(N) if recurrence else e
    flags = (synaptic, recurrence, 0, True, 0, 3.14159, 1.0, 1.0)
    spk, syn, mem, trace, state, pre = ops.lif.lif_forward(
        x, mem0, e, e, e, beta, thr, alpha, V, *flags, True, backend)
    grads = (torch.randn_like(spk), syn.new_empty(0), torch.randn_like(mem))
    args = (*grads, trace, mem if state.numel() == 0 else state, syn, spk, pre, mem0, e, e,
            beta, thr, alpha, V, *flags, torch.float32, False, False, False, False, backend)
    out = ops.lif.lif_backward(*args)
    assert out[1].shape == (B, N) and torch.isfinite(out[1]).all()  # mem0 was given
    assert out[2].numel() == 0 and out[3].numel() == 0  # syn0, spk0 were not
    torch.library.opcheck(ops.lif.lif_backward, args)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compiled_backward_has_no_zero_gradient_for_an_unused_output(backend):
    """Only the spikes reach the loss: the compiled backward must hand the op no gradient for the
    membrane, not a [T, B, F] zero tensor written and then read in full (what AOTAutograd
    materialised before the op's context asked for None)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    T, B, N = 6, 5, 9
    backward_graphs = []

    def keep_backward(gm, example_inputs):
        backward_graphs.append(gm)
        return make_boxed_func(gm.forward)

    def forward_compiler(gm, example_inputs):
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    lin = torch.nn.Linear(7, N)

    def step(x):
        spk, mem = F.leaky(lin(x), 0.9, 1.0, backend=backend)
        return spk.sum()

    compiled = torch.compile(step, backend=aot_autograd(fw_compiler=forward_compiler, bw_compiler=keep_backward),
                             fullgraph=True)
    compiled(random_input(T, B, 7)).backward()
    assert backward_graphs, "no backward graph was compiled"
    full_size = []
    for gm in backward_graphs:
        for node in gm.graph.nodes:
            val = node.meta.get("val")
            if node.op == "call_function" and ("zeros" in str(node.target) or "full" in str(node.target)):
                if isinstance(val, torch.Tensor) and val.numel() >= T * B * N:
                    full_size.append(node.format_node())
    assert not full_size, full_size
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
