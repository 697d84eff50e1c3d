"""Whole models run a time chunk at a time under checkpointing (``memory_lean(time_chunk=n)``)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..ops.recompute import refuse_tracing
from ..ops.time_chunks import TimeChunk, running

Tensor = torch.Tensor

__all__ = ["ChunkedForward"]

class _Steps:
    """Temporarily sets a fusedsnn sequence model's ``num_steps`` to one chunk's length."""

    def __init__(self, model: nn.Module, steps: Optional[int]) -> None:
        self.model, self.steps = model, steps

    def __enter__(self):
        if self.steps is not None:
            self.saved, self.model.num_steps = self.model.num_steps, self.steps

    def __exit__(self, *exc):
        if self.steps is not None:
            self.model.num_steps = self.saved
        return False


def _time_major_outputs(out, name: str, steps: int) -> list:
    flat = list(out) if isinstance(out, (tuple, list)) else [out]
    for i, t in enumerate(flat):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != steps:
            raise ValueError(
                f"memory_lean(time_chunk=...) needs every output of {name}.forward to be a tensor with time first "
                f"([T, ...]); output {i} of a {steps}-step chunk is "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    return flat


class ChunkedForward:
    """``model.forward`` replaced by :func:`memory_lean` (``time_chunk=n``): the whole network
    runs ``n`` time steps at a time, each chunk under ``torch.utils.checkpoint`` (non-reentrant),
    so its forward keeps only each chunk's input and boundary states and the chunk's outputs; the
    backward re-runs one chunk at a time (last to first) and differentiates it. Every fused
    neuron call starts a chunk from the state the same call ended the previous chunk in (call
    order within the forward, so a layer called twice is two calls).

    The model's first argument is the sequence ``[T, B, ...]`` (sliced per chunk; other arguments
    are passed to every chunk unchanged), or a fusedsnn model's static ``[B, ...]`` input with
    ``num_steps`` steps. Every output must be time-first (``[T, ...]``); they are concatenated.
    The layers between the neurons must treat time steps independently (Linear, Conv2d, pooling,
    dropout: checkpoint replays its random state). A value that is the same for every chunk can
    be computed once per call with :func:`once_per_sequence` (the fusedsnn models do so for a
    static input's first layer).
    """

    def __init__(self, model: nn.Module, time_chunk: int) -> None:
        self.model = model
        self.time_chunk = time_chunk

    def __call__(self, x: Tensor, *args, **kwargs):
        refuse_tracing("the chunked forward of memory_lean(time_chunk=...)")
        model = self.model
        forward = type(model).forward
        static = False
        fusedsnn_model = hasattr(model, "_time_major") and hasattr(model, "num_steps")
        if fusedsnn_model:
            x, static = model._time_major(x)
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            raise ValueError(f"memory_lean(time_chunk=...) needs a time-first tensor input [T, B, ...], got "
                             f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
        T = model.num_steps if static else x.shape[0]
        if not torch.is_grad_enabled() or T <= self.time_chunk:
            return forward(model, x, *args, **kwargs)
        spans = [(t, min(T, t + self.time_chunk)) for t in range(0, T, self.time_chunk)]
        name = type(model).__name__
        pieces: list[list[Tensor]] = []
        shared: dict = {}
        carried: Optional[list[tuple]] = None
        structure = None

        def run(t0: int, t1: int, x_part: Tensor, *flat_states):
            states = None if t0 == 0 else [tuple(flat_states[i:i + 3]) for i in range(0, len(flat_states), 3)]
            chunk = TimeChunk(states, shared)
            # a fusedsnn model runs each chunk as a model of the chunk's length
            with running(chunk), _Steps(model, t1 - t0 if fusedsnn_model else None):
                out = forward(model, x_part, *args, **kwargs)
            if states is not None and len(chunk.final) != len(states):
                raise RuntimeError(
                    f"memory_lean(time_chunk=...): the model called {len(chunk.final)} fused neuron layers in one "
                    f"time chunk and {len(states)} in the first; chunked execution needs the same calls in every "
                    "chunk")
            return out, [s for final in chunk.final for s in final]

        for k, (t0, t1) in enumerate(spans):
            x_part = x if static else x[t0:t1]
            flat = [] if carried is None else [s for final in carried for s in final]
            if k == len(spans) - 1:
                # The last chunk is the first the backward needs: it keeps what it saves, which
                # spares recomputing it.
                out, final = run(t0, t1, x_part, *flat)
            else:
                out, final = checkpoint(run, t0, t1, x_part, *flat, use_reentrant=False)
            if structure is None:
                structure = type(out) if isinstance(out, (tuple, list)) else None
            pieces.append(_time_major_outputs(out, name, t1 - t0))
            carried = [tuple(final[i:i + 3]) for i in range(0, len(final), 3)]
        outs = [torch.cat(parts) for parts in zip(*pieces)]
        if structure is None:
            return outs[0]
        return structure(*outs) if hasattr(structure, "_fields") else structure(outs)
