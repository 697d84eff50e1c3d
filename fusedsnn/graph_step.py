"""One call that makes an eager training step run from a CUDA graph: :func:`cuda_graph_step`.

On a GPU, an eager step of a small spiking network spends most of its time issuing kernels
(docs/gpu.md: the H200 DSNN step ran at 36,800 img/s eager and 507,000 img/s replayed from a
graph). A user replaces their step with::

    step = fs.cuda_graph_step(model, loss_fn, optimizer, (x, y))
    for x, y in loader:
        loss = step(x, y)

The step (``optimizer.zero_grad``, forward, ``loss_fn``, backward, ``optimizer.step``) is
captured once, after warm-up steps on a side stream; each call copies the batch into static
buffers and replays the graph. The warm-up steps are undone before capture (parameters,
buffers and optimizer state get their values back), so the first call is the first training
step, as in eager.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

Tensor = torch.Tensor

_NAMES = ("x", "y")


def _check_batch(batch, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2 or not all(isinstance(t, Tensor) for t in batch):
        raise ValueError(f"{what} must be a pair of tensors (x, y): the model's input and the loss target, "
                         f"got {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    return batch[0], batch[1]


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _capture(run: Callable[[], Tensor], device: torch.device) -> tuple[Callable[[], None], Tensor]:
    """Capture ``run`` in a CUDA graph on ``device``; returns ``(replay, static loss)``.

    The one place that touches the CUDA graph API (CPU tests replace it with ``run`` itself)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = run()
    return graph.replay, loss


def _side_stream_warmup(run: Callable[[], Tensor], device: torch.device, steps: int) -> None:
    """``steps`` eager steps on a side stream, as capture needs (lazy state, cuBLAS workspaces,
    Triton compilation and autotuning all happen here, never during capture)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(steps):
            run()
    torch.cuda.current_stream(device).wait_stream(side)


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list, dict]:
    tensors = [t.detach().clone() for t in (*model.parameters(), *model.buffers())]
    state = {id(p): {k: (v.detach().clone() if isinstance(v, Tensor) else v) for k, v in s.items()}
             for p, s in optimizer.state.items()}
    return tensors, state


@torch.no_grad()
def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, snapshot: tuple[list, dict]) -> None:
    """Undo the warm-up in place (the tensors keep their storage: the graph will use it).

    Optimizer state that the warm-up created is zeroed, which is the fresh state of Adam, AdamW,
    and SGD with momentum (capturable step counts are tensors starting at 0)."""
    tensors, state = snapshot
    for t, saved in zip((*model.parameters(), *model.buffers()), tensors):
        t.copy_(saved)
    for p, s in optimizer.state.items():
        before = state.get(id(p), {})
        for k, v in list(s.items()):
            if isinstance(v, Tensor):
                if k in before:
                    v.copy_(before[k])
                else:
                    v.zero_()
            elif k in before:
                s[k] = before[k]


def cuda_graph_step(model: nn.Module, loss_fn: Callable[[object, Tensor], Tensor],
                    optimizer: torch.optim.Optimizer, example_batch: Sequence[Tensor],
                    warmup: int = 3) -> Callable[[Tensor, Tensor], Tensor]:
    """A training step of ``model`` captured in a CUDA graph: ``step = cuda_graph_step(...)``,
    then ``loss = step(x, y)`` per batch, in place of the eager step.

    ``loss_fn(model(x), y)`` returns the scalar loss (``model(x)`` as the model returns it: for
    :class:`fusedsnn.DSNN` the pair ``(spk, mem)``). ``optimizer`` updates ``model``'s
    parameters; one with a ``capturable`` option (Adam, AdamW, ...) must be built with
    ``capturable=True``, as graph capture needs its step count on the GPU. ``example_batch``:
    ``(x, y)`` of the shapes, dtypes and device of every later batch; each ``step(x, y)``
    copies into static buffers of those, and refuses a batch that differs (a graph replays
    fixed shapes: drop the last short batch, e.g. ``DataLoader(drop_last=True)``).
    ``warmup`` eager steps run on a side stream before capture and are then undone.

    The returned loss is the graph's static output tensor: the next call overwrites it
    (``loss.item()`` or ``loss.clone()`` to keep it). The step sets gradients itself, so
    nothing else may call ``zero_grad``/``backward`` on the model between calls; a learning-rate
    scheduler that writes ``param_group["lr"]`` as a Python float does not reach the graph.

    What runs in the step must not synchronise with the host or allocate by data (the fused
    neurons, :func:`fusedsnn.memory_lean` models, ``fs.population`` losses do not); capture
    fails loudly where it does. Needs CUDA: refuses CPU tensors.
    """
    x, y = _check_batch(example_batch, "example_batch")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(model(x), y), got {type(loss_fn).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be a positive int (eager steps before capture), got {warmup!r}")
    uncapturable = [i for i, g in enumerate(optimizer.param_groups) if g.get("capturable") is False]
    if uncapturable:
        raise ValueError(
            f"optimizer: {type(optimizer).__name__} has capturable=False (param_groups {uncapturable}); "
            f"expected capturable=True, e.g. torch.optim.{type(optimizer).__name__}(..., capturable=True): "
            "a CUDA graph needs the optimizer's step count on the GPU")
    if x.device.type != "cuda" or y.device.type != "cuda":
        raise ValueError(
            f"example_batch: expected CUDA tensors, got x on {x.device} and y on {y.device}: CUDA graphs "
            "need CUDA (on a CPU, call the eager step: optimizer.zero_grad(); loss_fn(model(x), y).backward(); "
            "optimizer.step())")
    device = x.device
    elsewhere = sorted({str(p.device) for p in model.parameters() if p.device != device})
    if elsewhere:
        raise ValueError(f"model: expected its parameters on {device} (the device of example_batch), "
                         f"got parameters on {', '.join(elsewhere)}")
    return _build(model, loss_fn, optimizer, x, y, device, warmup, _capture, _side_stream_warmup)


def _build(model, loss_fn, optimizer, x: Tensor, y: Tensor, device: torch.device, warmup: int,
           capture, warm) -> Callable[[Tensor, Tensor], Tensor]:
    static = (x.detach().clone(), y.detach().clone())

    def run() -> Tensor:
        loss = loss_fn(model(static[0]), static[1])
        loss.backward()
        optimizer.step()
        return loss

    def warm_step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        return run()

    snapshot = _snapshot(model, optimizer)
    warm(warm_step, device, warmup)
    _restore(model, optimizer, snapshot)
    # None before capture: backward then allocates the gradients from the graph's pool and every
    # replay writes them afresh (nothing accumulates across replays).
    optimizer.zero_grad(set_to_none=True)
    replay, loss = capture(run, device)

    def step(x: Tensor, y: Tensor) -> Tensor:
        for name, new, buf in zip(_NAMES, (x, y), static):
            if not isinstance(new, Tensor):
                raise ValueError(f"step: {name} must be a tensor, got {type(new).__name__}")
            if new.shape != buf.shape or new.dtype != buf.dtype or new.device != buf.device:
                raise ValueError(
                    f"step: {name} has {_describe(new)}; expected {_describe(buf)} as in example_batch "
                    "(a CUDA graph replays fixed shapes: drop the short last batch, e.g. "
                    "DataLoader(drop_last=True), or build another step for this shape)")
        static[0].copy_(x)
        static[1].copy_(y)
        replay()
        return loss

    step.static_inputs = static  # type: ignore[attr-defined]
    return step
