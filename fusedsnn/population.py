"""Population-coded outputs: decoding spike counts per class group, accuracy, and losses.

An output layer of ``num_classes * pop_size`` neurons is read as ``num_classes`` groups of
``pop_size`` consecutive neurons (neuron ``c * pop_size + p`` votes for class ``c``), as in
snnTorch's population codes. ``pop_size=1`` is the ordinary one-neuron-per-class output.

Losses follow snnTorch 1.0.0's ``ce_rate_loss`` and ``mse_count_loss`` (same formulas, same
integer rounding of target counts, same ``/ num_steps``). One deliberate difference:
snnTorch's ``ce_rate_loss(population_code=True)`` crashes (it indexes ``weight`` even when it is
None) and its per-class loop has no effect; here the population code means what it says: the
cross entropy is taken over the per-class group sums at each step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["class_counts", "class_step_counts", "predict", "accuracy", "ce_rate_loss", "mse_count_loss"]


def _check(spk: Tensor, num_classes: int, pop_size: int) -> None:
    if not isinstance(spk, torch.Tensor) or spk.dim() != 3:
        raise ValueError(f"spk must be a tensor of shape [T, B, num_classes * pop_size], got "
                         f"{tuple(spk.shape) if isinstance(spk, torch.Tensor) else type(spk).__name__}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(pop_size, int) or pop_size < 1:
        raise ValueError(f"pop_size must be a positive int, got {pop_size!r}")
    if spk.shape[-1] != num_classes * pop_size:
        raise ValueError(f"spk has {spk.shape[-1]} output neurons, expected num_classes * pop_size = "
                         f"{num_classes} * {pop_size}")


def class_step_counts(spk: Tensor, num_classes: int, pop_size: int = 1) -> Tensor:
    """Per-step spike counts per class group. ``spk: [T, B, C * P]`` -> ``[T, B, C]``."""
    _check(spk, num_classes, pop_size)
    T, B, _ = spk.shape
    return spk.reshape(T, B, num_classes, pop_size).sum(-1)


def class_counts(spk: Tensor, num_classes: int, pop_size: int = 1) -> Tensor:
    """Spike counts per class over all steps. ``[T, B, C * P]`` -> ``[B, C]``."""
    return class_step_counts(spk, num_classes, pop_size).sum(0)


def predict(spk: Tensor, num_classes: int, pop_size: int = 1) -> Tensor:
    """Class with the most spikes (ties go to the lowest index, as ``argmax`` does). ``[B]``."""
    return class_counts(spk, num_classes, pop_size).argmax(-1)


def accuracy(spk: Tensor, targets: Tensor, num_classes: int, pop_size: int = 1) -> float:
    """Fraction of samples whose most-spiking class group is the target."""
    return (predict(spk, num_classes, pop_size) == targets).float().mean().item()


def ce_rate_loss(spk: Tensor, targets: Tensor, num_classes: int, pop_size: int = 1) -> Tensor:
    """Cross entropy of each step's (group-summed) spikes, averaged over steps and batch.

    Equals ``snntorch.functional.ce_rate_loss()(spk, targets)`` for ``pop_size=1``.
    """
    logits = class_step_counts(spk, num_classes, pop_size)
    T, B, C = logits.shape
    if T == 0:
        raise ValueError("spk has no time steps")
    # Every step has the same B samples, so the mean over steps of the batch means is the mean
    # over all T * B: one call instead of snnTorch's loop over steps (2T + 1 kernel launches
    # fewer each way; on the H200 such a loop is a third of a DSNN step's graph replay). Equal to
    # snnTorch's value up to float summation order.
    return F.cross_entropy(logits.reshape(T * B, C), targets.repeat(T))


def mse_count_loss(spk: Tensor, targets: Tensor, num_classes: int, pop_size: int = 1,
                   correct_rate: float = 1.0, incorrect_rate: float = 0.0) -> Tensor:
    """MSE between class spike counts and target counts, divided by the number of steps.

    Target counts are ``int(T * rate * pop_size)`` for the correct and incorrect classes, exactly
    as snnTorch computes them (``snntorch.functional.mse_count_loss``).
    """
    counts = class_counts(spk, num_classes, pop_size)
    T = spk.shape[0]
    if T == 0:
        raise ValueError("spk has no time steps")
    on = int(T * correct_rate * pop_size)
    off = int(T * incorrect_rate * pop_size)
    target = torch.full_like(counts, float(off))
    target.scatter_(1, targets.reshape(-1, 1), float(on))
    return F.mse_loss(counts, target) / T
