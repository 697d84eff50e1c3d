"""The state a fused neuron call carries from one time chunk of a model's forward to the next.

``fusedsnn.memory_lean(model, time_chunk=n)`` runs a whole network ``n`` steps at a time
(:class:`fusedsnn.memory.chunking.ChunkedForward`). While a chunk runs, :func:`active_chunk`
returns it, and every fused neuron call (:func:`fusedsnn.functional.lif`) starts from the state
the same call ended the previous chunk in and records the state it ends in. Values the same for
every chunk (a static input's first layer) are computed once per sequence with
:func:`once_per_sequence`. Outside a chunked forward all of this is a no-op.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

import torch

from ..spec import RECURRENCE_NONE

__all__ = ["TimeChunk", "active_chunk", "running", "once_per_sequence"]

_chunk_local = threading.local()


def active_chunk() -> Optional["TimeChunk"]:
    """The time chunk whose forward is running in this thread, or None."""
    return getattr(_chunk_local, "chunk", None)


class TimeChunk:
    """The fused neuron calls of one time chunk of a model's forward, in call order: call ``k``
    starts from the states call ``k`` of the previous chunk ended in (``carried[k]``, None in the
    first chunk: the caller's own initial states) and records the states it ends in."""

    def __init__(self, carried: Optional[list[tuple]], shared: dict) -> None:
        self.carried = carried
        self.final: list[tuple] = []
        self.shared = shared  # one per ChunkedForward call: see once_per_sequence

    def initial_states(self, mem, syn, spk):
        k = len(self.final)
        if self.carried is None:
            return mem, syn, spk
        if k >= len(self.carried):
            raise RuntimeError(
                "memory_lean(time_chunk=...): the model called more fused neuron layers in this time chunk "
                f"({k + 1}) than in the first ({len(self.carried)}); chunked execution needs the same calls in "
                "every chunk")
        return self.carried[k]

    def record_final_states(self, out: tuple, spec) -> None:
        if out[0].shape[0] == 0:
            raise ValueError("memory_lean(time_chunk=...) needs at least one time step per chunk")
        # The last step's states, cloned: a view would keep the whole chunk's output alive.
        mem = out[-1][-1].clone()
        syn = out[1][-1].clone() if spec.synaptic else None
        spk = out[0][-1].clone() if spec.recurrence != RECURRENCE_NONE else None
        self.final.append((mem, syn, spk))



@contextlib.contextmanager
def running(chunk: TimeChunk) -> Iterator[TimeChunk]:
    """Make ``chunk`` the active one while a chunk's forward runs (nested calls restore the outer)."""
    previous, _chunk_local.chunk = active_chunk(), chunk
    try:
        yield chunk
    finally:
        _chunk_local.chunk = previous


def once_per_sequence(key: tuple, compute):
    """``compute()``, evaluated once per call of a chunked model (``memory_lean(time_chunk=n)``) and shared by all
    of its time chunks and their recomputes; outside one, simply ``compute()``.

    For values that do not depend on the time chunk, such as the first layer's output for a
    static input (``fusedsnn.models``): without this every chunk would compute it again, and
    again in its recompute. ``key`` names the value within the call (include what it depends
    on). The value keeps its own graph (its saved tensors are not the chunk's to drop), so its
    backward runs once, after every chunk has added its gradient.
    """
    chunk = active_chunk()
    if chunk is None:
        return compute()
    value = chunk.shared.get(key)
    if value is None:
        # Innermost saved-tensor hooks win: these keep what compute() saves as autograd would,
        # instead of the chunk's checkpoint dropping it (the recompute finds the value cached
        # and must save what the first run's checkpoint counted: nothing from here).
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            value = compute()
        chunk.shared[key] = value
    return value
