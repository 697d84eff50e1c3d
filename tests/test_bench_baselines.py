"""Issue 18: the benchmark's baselines are the strongest ones, compared mode with mode, and its
statistics cannot lie."""

from __future__ import annotations

import pytest
import torch

from fusedsnn.bench import neurons

pytest.importorskip("snntorch")


def _graph_nodes(tensors) -> list[str]:
    seen, names, todo = set(), [], [t.grad_fn for t in tensors if t.grad_fn is not None]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("kind", neurons.NEURON_KINDS)
def test_snntorch_provider_steps_unbound_inputs_not_selects(kind):
    """x[t] on an x that requires grad puts a SelectBackward per step in the graph, each of which
    allocates a zero tensor of x's full size in the backward (O(T^2)); unbind puts one node."""
    case = neurons.NeuronCase(kind, 6, 2, 4, torch.float32, torch.device("cpu"))
    x = torch.randn(6, 2, 4, requires_grad=True)
    names = _graph_nodes(neurons._snntorch_call(case)(x))
    assert not any(n.startswith("SelectBackward") for n in names), names
    assert sum(n.startswith("UnbindBackward") for n in names) == 1
