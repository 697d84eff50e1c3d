"""The fused LIF op that keeps only its input and recomputes its forward inside the backward.

``saved_state="recompute"`` on a neuron call (:func:`fusedsnn.functional.lif`) keeps ``x`` (a
stride-0 static input stays one ``[B, *features]`` slice), the initial states, the tensor
parameters and the states at up to :data:`RECOMPUTE_CHUNKS` chunk boundaries, and re-runs the
forward chunk by chunk in the backward. "auto" recomputes only a static input's layer, and only
when it splits into at least :data:`AUTO_MIN_CHUNKS` chunks. ``fusedsnn.memory_lean`` sets the
option on layers; the functional API takes it directly.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

Tensor = torch.Tensor

__all__ = ["SAVED_STATES", "check_saved_state", "resolve_saved_state", "recompute_lif", "eager_only", "refuse_tracing"]

#: Per-layer choice of what a fused neuron layer keeps for its backward.
#: "default": what the fused op saves (see docs/design.md); "recompute": only the input and the
#: initial states, the forward is run again inside the backward (one more neuron forward);
#: "auto": "recompute" when the input is static (stride 0 over time: then the input costs
#: nothing per step while the membrane would cost 4 B) and the sequence splits into at least
#: :data:`AUTO_MIN_CHUNKS` recompute chunks, else "default" (an input is as large as the
#: membrane it would replace, so recomputing would only cost time: 3-layer network, T=500,
#: CPU, exact bytes: 142 MiB recomputing against 128 MiB with the default saves, 1.25x the time).
SAVED_STATES = ("default", "recompute", "auto")


def check_saved_state(value: object) -> str:
    """``value`` when it is one of :data:`SAVED_STATES`, else ``ValueError`` naming it."""
    if value not in SAVED_STATES:
        raise ValueError(f"saved_state must be one of {SAVED_STATES}, got {value!r}")
    return value


#: The recompute mode runs the time loop in this many chunks at most, so that what exists at
#: once in its forward and backward, besides the outputs and gradients, is one chunk's worth;
#: chunks are at least RECOMPUTE_MIN_STEPS long, so short sequences pay no per-chunk overhead.
RECOMPUTE_CHUNKS = 16
RECOMPUTE_MIN_STEPS = 32


#: Off the CPU, a recompute chunk holds at least this many neuron-steps (16 MiB per float32
#: state tensor): each chunk costs about 1 ms of host time (launches, autograd) on a GPU, where
#: the kernels of a whole T=500, B=32, 1000-neuron layer take a fraction of that (H100: 16
#: chunks made memory_lean's DSNN step 20x slower than the default's).
RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU = 1 << 22
#: "auto" recomputes a static input's layer only in at least this many chunks. The backward of
#: one chunk holds about four chunk-sized tensors (its recomputed spikes and membrane, its input
#: gradient, the carried gradient's buffer), so with n chunks it saves the membrane's
#: 4 B per neuron-step but spends about 16 / n B of transients: break-even near n = 4 (DSNN,
#: T=500, 4 chunks: 190 MiB against the default's 185; the H100 ran it at 0.38x the default's
#: speed), half the membrane saved at 8 (8 chunks: 159 MiB; both exact bytes on the CPU).
AUTO_MIN_CHUNKS = 8


def _chunks(T: int, n: int, per_step: int = 1, on_cpu: bool = True) -> list[tuple[int, int]]:
    size = max(RECOMPUTE_MIN_STEPS, -(-T // n), 1)
    if not on_cpu:
        size = max(size, -(-RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU // max(per_step, 1)))
    return [(t, min(T, t + size)) for t in range(0, T, size)]


def _recompute_spans(x: Tensor, n_chunks: int) -> list[tuple[int, int]]:
    """The time spans the recompute of ``x: [T, ...]`` runs in: one when its dtype is 16-bit
    (carrying a state between chunks is exact only when the outputs hold the float state)."""
    T = x.shape[0]
    if not T:
        return [(0, 0)]
    if x.dtype not in (torch.float32, torch.float64):
        n_chunks = 1
    return _chunks(T, n_chunks, x[0].numel(), x.device.type == "cpu")


class _RecomputeLIF(torch.autograd.Function):
    """Keeps only the input, the initial states, the parameters and the states at chunk
    boundaries; the backward walks the chunks last to first, re-running each chunk's fused
    forward with a graph from its boundary state and differentiating it, the gradients of a
    chunk's initial states carried into the previous chunk's last step.

    The per-step arithmetic is the fused op's, so outputs and the input/initial-state gradients
    are the default's bit for bit; a learnable parameter's gradient is summed per chunk, so it
    equals the default's to float rounding (exactly when there is one chunk).
    """

    @staticmethod
    def forward(ctx, run, layout, x, *tensors):
        synaptic, recurrent, n_chunks = layout
        T = x.shape[0]
        spans = _recompute_spans(x, n_chunks)
        states0 = list(tensors[:3])
        with torch.no_grad():
            if len(spans) == 1:
                outs = run(x, *states0, *tensors[3:])
                boundaries = []
            else:
                outs, boundaries, states = None, [], states0
                for t0, t1 in spans:
                    part = run(x[t0:t1], *states, *tensors[3:])
                    if outs is None:
                        outs = tuple(p.new_empty((T, *p.shape[1:])) for p in part)
                    for o, p in zip(outs, part):
                        o[t0:t1] = p
                    states = [part[-1][-1], part[1][-1] if synaptic else None, part[0][-1] if recurrent else None]
                    if t1 < T:
                        boundaries.append([None if s is None else s.clone() for s in states])
        # Gradients of unused outputs (a hidden layer's membrane) arrive as None, not as zeros.
        ctx.set_materialize_grads(False)
        ctx.run, ctx.spans, ctx.boundaries = run, spans, boundaries
        ctx.layout = (synaptic, recurrent)
        ctx.save_for_backward(x, *tensors)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        x, *tensors = ctx.saved_tensors
        synaptic, recurrent = ctx.layout
        needs = ctx.needs_input_grad[2:]
        params = [t.detach().requires_grad_(need) if t is not None else None for t, need in zip(tensors[3:], needs[4:])]
        spans = ctx.spans
        if synaptic and grads[1] is not None:
            # The fused backward adds the synaptic current's upstream gradient and its carry in
            # one order that a carry injected at a chunk boundary cannot reproduce bit for bit:
            # differentiate the whole sequence at once instead (bigger transient, same bits).
            spans = [(0, x.shape[0])]
        grad_x = torch.empty_like(x) if needs[0] and len(spans) > 1 else None
        grad_params = [None] * len(params)
        carry = [None, None, None]  # gradients of the next chunk's initial mem, syn, spk
        grad_states0 = [None, None, None]
        buffers: dict[int, Tensor] = {}
        for k in range(len(spans) - 1, -1, -1):
            t0, t1 = spans[k]
            starts = tensors[:3] if k == 0 else ctx.boundaries[k - 1]
            state_needs = needs[1:4] if k == 0 else [s is not None for s in starts]
            states = [None if s is None else s.detach().requires_grad_(n) for s, n in zip(starts, state_needs)]
            x_k = x[t0:t1].detach().requires_grad_(needs[0])
            with torch.enable_grad():
                outs = ctx.run(x_k, *states, *params)
            # Output order: (spk, mem) or (spk, syn, mem); the carries land on the last step.
            slots = [0, 1, 2] if synaptic else [0, 2]  # spk, syn, mem -> carry index 2, 1, 0
            carry_of = {0: 2, 1: 1, 2: 0}
            outputs, out_grads = [], []
            for o, slot, g in zip(outs, slots, (grads[i] for i in range(len(outs)))):
                g_k = None if g is None else g[t0:t1]
                c = carry[carry_of[slot]]
                if c is not None:
                    # One buffer per output for the whole backward, reused chunk after chunk:
                    # fresh memory costs page faults on every first touch.
                    if slot not in buffers:
                        buffers[slot] = o.new_empty((spans[-1][1] - spans[-1][0] if len(spans) == 1 else
                                                     max(b - a for a, b in spans), *o.shape[1:]))
                    buf = buffers[slot][: t1 - t0]
                    if g_k is None:
                        buf.zero_()
                        buf[-1] = c
                    else:
                        buf.copy_(g_k)
                        buf[-1] = g_k[-1] + c
                    g_k = buf
                if g_k is not None and o.requires_grad:
                    outputs.append(o)
                    out_grads.append(g_k)
            wanted = [(i, t) for i, t in enumerate([x_k, *states, *params]) if t is not None and t.requires_grad]
            found = (torch.autograd.grad(outputs, [t for _, t in wanted], out_grads, allow_unused=True)
                     if outputs and wanted else [None] * len(wanted))
            got = {i: g for (i, _), g in zip(wanted, found)}
            if needs[0]:
                g = got.get(0)
                if grad_x is None:
                    grad_x = g
                else:
                    grad_x[t0:t1] = 0 if g is None else g
            carry = [got.get(1), got.get(2), got.get(3)]
            if k == 0:
                grad_states0 = carry
            for j in range(len(params)):
                g = got.get(4 + j)
                if g is not None:
                    grad_params[j] = g if grad_params[j] is None else grad_params[j] + g
            # Drop this chunk's recomputed outputs and gradients now: held until the next
            # iteration reassigns them, they would coexist with the next chunk's (H100, DSNN
            # T=500 in 4 chunks: 82 MiB of recompute tensors at the peak instead of ~45).
            outs = outputs = out_grads = found = got = o = g = g_k = buf = None
        return (None, None, grad_x, *(g if n else None for g, n in zip(grad_states0, needs[1:4])),
                *(g if n else None for g, n in zip(grad_params, needs[4:])))


def resolve_saved_state(saved_state: str, x: Tensor) -> str:
    """"default" or "recompute": what ``saved_state`` ("auto" included) means for input ``x``."""
    if saved_state != "auto":
        return saved_state
    static = x.dim() >= 2 and x.shape[0] > 1 and x.stride(0) == 0
    enough = static and len(_recompute_spans(x, RECOMPUTE_CHUNKS)) >= AUTO_MIN_CHUNKS
    return "recompute" if enough else "default"


def eager_only(what: str):
    """Decorator: ``fn`` runs eagerly under torch.compile, and ``fullgraph=True`` is refused naming
    ``what`` and memory_lean.

    The memory-lean parts (recomputing neurons, spikes saved as bits, checkpointed time chunks)
    differentiate inside their own backward or keep Python state between calls, which Dynamo
    cannot put into one graph: traced, they failed deep inside fusedsnn. Without ``fullgraph``
    they are a graph break and run eagerly, where they work; with it, Dynamo's error carries
    this reason.
    """
    def wrap(fn):
        return torch.compiler.disable(fn, reason=_not_traceable(what))

    return wrap


def _not_traceable(what: str) -> str:
    return (f"fusedsnn.memory_lean: {what} cannot be traced by torch.compile(fullgraph=True). "
            "Compile the model without memory_lean, or without fullgraph=True (the memory-lean "
            "parts then run eagerly)")


def refuse_tracing(what: str) -> None:
    """Raise naming ``what`` and memory_lean while torch.compile traces the caller: for an entry
    point Dynamo reaches as a frame of its own (where a disabled function only reads as a
    skipped frame, without its reason). Without ``fullgraph`` the raise is a graph break and
    the caller runs eagerly."""
    if torch.compiler.is_compiling():
        raise RuntimeError(_not_traceable(what))


def recompute_lif(run: Callable[..., tuple[Tensor, ...]], synaptic: bool, recurrent: bool, x: Tensor,
                  mem: Optional[Tensor], syn: Optional[Tensor], spk: Optional[Tensor],
                  *params: Tensor) -> tuple[Tensor, ...]:
    """``run(x, mem, syn, spk, *params)`` (a fused neuron call returning ``(spk, mem)`` or
    ``(spk, syn, mem)``) with only ``x``, the initial states, ``params`` and the chunk
    boundary states saved; the backward re-runs it chunk by chunk (see :class:`_RecomputeLIF`)."""
    return _recompute_apply(run, (synaptic, recurrent, RECOMPUTE_CHUNKS), x, mem, syn, spk, *params)


@eager_only('a neuron layer with saved_state="recompute"')
def _recompute_apply(*args):
    return _RecomputeLIF.apply(*args)
