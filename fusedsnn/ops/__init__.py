"""The autograd glue between the functional API and the backends: one place per op.

``lif.py``: the fused LIF op (eager ``autograd.Function`` and the ``torch.library`` custom op
that torch.compile traces, sharing what they save and how they hand gradients back);
``all_to_all.py``: the all-to-all recurrent op; ``recompute.py``: the LIF op that keeps only
its input and recomputes its forward in the backward; ``time_chunks.py``: the state a neuron
call carries from one time chunk of a model's forward to the next. Backends are reached only
through :mod:`fusedsnn.backends.registry`.
"""

from .lif import FusedLIF, lif_apply, lif_backward, lif_forward

__all__ = ["FusedLIF", "lif_apply", "lif_forward", "lif_backward"]
