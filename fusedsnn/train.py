"""Training the study's DSNN or CSNN: the library behind ``fusedsnn train`` (:mod:`fusedsnn.cli.train`).

The embedded default needs no download: scikit-learn's digits (8x8). The DSNN then takes 64
inputs; the CSNN takes the digits upsampled bilinearly to 1x28x28, so it keeps the study's
5C12-MP2-5C64-MP2 geometry (an 8x8 image is too small for two 5x5 convolutions with pooling).
MNIST and CIFAR-10 load from local files given with ``--data-root``; so do the event sets
(SHD/SSC, N-MNIST, DVS Gesture), which arrive as :class:`data.EventFrames` and are binned one
batch at a time into ``[T, B, ...]`` frames (too large to hold binned: SHD at T=100 is 2.3 GB).

Training = forward, BPTT backward through the fused neurons, AdamW step. :func:`population_study`
runs the study's population-code experiment (10 outputs over 25 steps against 10..1000 outputs
in one step). Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU,
nccl on GPU) and each process trains on its share of every global batch.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

from . import data as data_mod
from . import population
from .backends import resolve_backend
from .models import CSNN, DSNN

Tensor = torch.Tensor


def build_model(model: str, input_shape: tuple, num_classes: int, pop_size: int = 1, num_steps: int = 25,
                hidden: int = 1000, neuron: str = "leaky", neuron_kwargs: Optional[dict] = None,
                readout_neuron: Optional[str] = None) -> nn.Module:
    outputs = num_classes * pop_size
    if model == "dsnn":
        n_in = 1
        for d in input_shape:
            n_in *= d
        return DSNN(n_in, hidden, outputs, num_steps, neuron, neuron_kwargs, readout_neuron=readout_neuron)
    if model == "csnn":
        return CSNN(input_shape, num_outputs=outputs, num_steps=num_steps, neuron=neuron, neuron_kwargs=neuron_kwargs)
    raise ValueError(f"model must be 'dsnn' or 'csnn', got {model!r}")


def prepare_inputs(model: str, images):
    """Images ``[N, C, H, W]`` as the model takes them: flattened for the DSNN; for the CSNN,
    digits' 8x8 upsampled to 28x28 (see the module docstring). Event sets pass through: their
    batches are binned frames ``[T, B, *sample_shape]``, which both models take."""
    if isinstance(images, data_mod.EventFrames):
        return images
    if model == "dsnn":
        return images.flatten(1)
    if images.shape[-1] < 28:
        return data_mod.resize(images, 28)
    return images


def make_loss(name: str, num_classes: int, pop_size: int) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "ce_rate":
        return lambda spk, y: population.ce_rate_loss(spk, y, num_classes, pop_size)
    if name == "mse_count":
        return lambda spk, y: population.mse_count_loss(spk, y, num_classes, pop_size, 0.8, 0.2)
    raise ValueError(f"loss must be 'ce_rate' or 'mse_count', got {name!r}")


def train_step(model: nn.Module, x: Tensor, y: Tensor, loss_fn, optimizer: Optional[torch.optim.Optimizer] = None,
               autocast_dtype: Optional[torch.dtype] = None) -> tuple[float, Tensor]:
    """One minibatch: forward, loss, backward (and the optimizer step if given). Returns the loss
    and the output spikes ``[T, B, outputs]``."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        spk, _ = model(x)
        loss = loss_fn(spk.float(), y)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return loss.item(), spk.detach()


def rows(x, idx: Tensor, device: torch.device) -> Tensor:
    """Samples ``idx`` of ``x`` on ``device``: ``x[idx]`` of a tensor (already there), or an
    :class:`data.EventFrames`' binned batch ``[T, B, ...]``."""
    if isinstance(x, data_mod.EventFrames):
        return x.batch(idx.cpu()).to(device, non_blocking=True)
    return x[idx]


def evaluate(model: nn.Module, x, y: Tensor, num_classes: int, pop_size: int, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            spk, _ = model(rows(x, torch.arange(i, min(i + batch_size, len(y)), device=y.device), y.device))
            correct += (population.predict(spk, num_classes, pop_size) == y[i:i + batch_size]).sum().item()
    model.train()
    return correct / max(1, len(y))


# ---------------------------------------------------------------------------------------------
# distributed
# ---------------------------------------------------------------------------------------------

def distributed_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world = distributed_env()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


def wrap_distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when running under torchrun with more than one process."""
    _, world = distributed_env()
    if world <= 1:
        return model
    ids = [device.index or 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(n: int, rank: int, world: int) -> slice:
    """Rank's contiguous share of a global batch of n samples."""
    per = n // world
    return slice(rank * per, (rank + 1) * per)


# ---------------------------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------------------------

def describe_model(model_name: str, model: nn.Module, neuron: str, num_steps: int) -> str:
    """One phrase naming the network: ``DSNN 64-1000-10`` or ``CSNN 5C12-MP2-5C64-MP2-10 on 1x28x28``."""
    if isinstance(model, DSNN):
        sizes = [model.fcs[0].in_features, *(fc.out_features for fc in model.fcs)]
        shape = "-".join(map(str, sizes))
        readout = type(model.neurons[-1]).__name__
        kinds = {type(n).__name__ for n in model.neurons[:-1]}
        readout = f" ({readout} readout)" if kinds != {readout} else ""
        return f"DSNN {shape}, {neuron} neurons{readout}, {num_steps} steps"
    convs = "-".join(f"{c.kernel_size[0]}C{c.out_channels}-MP{model.pool.kernel_size}" for c in model.convs)
    shape = "x".join(map(str, model.input_shape))
    return f"CSNN {convs}-{model.fc.out_features} on {shape}, {neuron} neurons, {num_steps} steps"


def fused_backend_name(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The backend ``backend="auto"`` picks for the neurons' input on ``device`` in ``dtype``."""
    return resolve_backend("auto", torch.empty(1, dtype=dtype, device=device)).name


def fit(model_name: str = "dsnn", dataset: str = "digits", data_root: Optional[str] = None, epochs: int = 5,
        batch_size: int = 128, num_steps: int = 25, lr: float = 2e-3, hidden: int = 1000, neuron: str = "leaky",
        pop_size: int = 1, loss: str = "ce_rate", device: Optional[str] = None, seed: int = 0,
        progress: bool = True, autocast_dtype: Optional[torch.dtype] = None, log: Callable[[str], None] = print,
        data: Optional[tuple] = None, readout_neuron: Optional[str] = None) -> dict:
    """Train and evaluate; returns the configuration and a per-epoch history.

    ``data``: ``(x_train, y_train, x_test, y_test)`` already loaded (images ``[N, C, H, W]`` or
    :class:`data.EventFrames`), else ``dataset`` is loaded from ``data_root`` (event sets binned
    to ``num_steps``). ``readout_neuron``: the DSNN output layer's neuron (default ``neuron``). ``log`` receives one line naming what is
    trained (model, dataset, backend, device), one per epoch, and a closing summary line."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("num_steps", num_steps),
                        ("hidden", hidden), ("pop_size", pop_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world = init_distributed(dev)
    torch.manual_seed(seed)
    if data is None:
        x_train, y_train = data_mod.load(dataset, data_root, train=True, num_steps=num_steps)
        x_test, y_test = data_mod.load(dataset, data_root, train=False, num_steps=num_steps)
    else:
        x_train, y_train, x_test, y_test = data
    events = isinstance(x_train, data_mod.EventFrames)
    x_train, x_test = prepare_inputs(model_name, x_train), prepare_inputs(model_name, x_test)
    if not events:
        x_train, x_test = x_train.to(dev), x_test.to(dev)
    y_train, y_test = y_train.to(dev), y_test.to(dev)
    if batch_size > len(y_train):
        # said, not silent: a batch larger than the data set is the whole set, once per epoch
        if rank == 0:
            log(f"warning: batch size {batch_size} is larger than the {len(y_train)} training images; "
                f"using batch size {len(y_train)} (the whole training set, one step per epoch)")
        batch_size = len(y_train)
    num_classes = x_train.num_classes if events else 10
    input_shape = x_train.sample_shape if events else tuple(x_train.shape[1:])
    model = build_model(model_name, input_shape, num_classes, pop_size, num_steps, hidden, neuron,
                        readout_neuron=readout_neuron).to(dev)
    net = wrap_distributed(model, dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    loss_fn = make_loss(loss, num_classes, pop_size)
    backend = fused_backend_name(dev, autocast_dtype or torch.float32)
    precision = str(autocast_dtype).removeprefix("torch.") if autocast_dtype else "float32"
    if rank == 0:
        log(f"training {describe_model(model_name, model, neuron, num_steps)} on {dataset} "
            f"({len(y_train)} train / {len(y_test)} test {'samples' if events else 'images'}) | backend {backend} | device {dev}"
            f"{f' x {world} processes' if world > 1 else ''} | {epochs} epoch(s), batch {batch_size}, "
            f"AdamW lr {lr:g}, loss {loss}, {precision}")
    history = []
    gen = torch.Generator().manual_seed(seed)
    start_all = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y_train), generator=gen).to(dev)
        batches = range(0, len(y_train) - batch_size + 1, batch_size) if len(y_train) >= batch_size else [0]
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False,
                   disable=not progress or rank != 0)
        total_loss, correct, seen, busy = 0.0, 0, 0, 0.0
        for start in bar:
            idx = order[start:start + batch_size]
            idx = idx[shard(len(idx), rank, world)]
            t0 = time.perf_counter()
            value, spk = train_step(net, rows(x_train, idx, dev), y_train[idx], loss_fn, optimizer, autocast_dtype)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            busy += time.perf_counter() - t0
            total_loss += value * len(idx)
            correct += (population.predict(spk, num_classes, pop_size) == y_train[idx]).sum().item()
            seen += len(idx)
        row = {"epoch": epoch, "loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
               "test_acc": evaluate(model, x_test, y_test, num_classes, pop_size),
               "images_per_s": seen * world / busy if busy else None}
        history.append(row)
        if rank == 0:
            log(f"epoch {epoch}: loss {row['loss']:.4f}  train acc {row['train_acc']:.3f}  "
                f"test acc {row['test_acc']:.3f}  {row['images_per_s']:.0f} images/s")
    elapsed = time.perf_counter() - start_all
    last = history[-1]
    best = max(history, key=lambda r: r["test_acc"])
    if rank == 0:
        log(f"done: {model_name.upper()} on {dataset}, {epochs} epoch(s) in {elapsed:.1f} s: "
            f"test acc {last['test_acc']:.3f} (best {best['test_acc']:.3f} at epoch {best['epoch']}), "
            f"loss {last['loss']:.4f}, {last['images_per_s']:.0f} training images/s")
    config = dict(model=model_name, dataset=dataset, epochs=epochs, batch_size=batch_size, num_steps=num_steps,
                  lr=lr, hidden=hidden, neuron=neuron, readout_neuron=readout_neuron or neuron, pop_size=pop_size, loss=loss, device=str(dev), world=world,
                  backend=backend, precision=precision)
    return {"config": config, "history": history, "seconds": elapsed}


def population_study(output_sizes=(10, 50, 100, 500, 1000), epochs: int = 5, model_name: str = "dsnn",
                     dataset: str = "digits", data_root: Optional[str] = None, hidden: int = 1000,
                     lr: float = 1e-2, device: Optional[str] = None, progress: bool = True,
                     log: Callable[[str], None] = print, batch_size: int = 128, baseline_steps: int = 25,
                     neuron: str = "leaky", loss: str = "ce_rate", seed: int = 0,
                     autocast_dtype: Optional[torch.dtype] = None,
                     data: Optional[tuple[Tensor, Tensor, Tensor, Tensor]] = None) -> list[dict]:
    """The study's population-code experiment: the baseline (10 outputs, ``baseline_steps``
    steps) against population outputs (``output_sizes`` neurons, a multiple of 10) in a single
    time step.

    The learning rate is higher than ``fit``'s default because a single step gives each
    output neuron one chance to fire: at 2e-3 the one-step networks start silent and stay so for
    several epochs on the digits, at 1e-2 they train (measured while writing this)."""
    rows = []
    configs = [(10, baseline_steps)] + [(n, 1) for n in output_sizes]
    for outputs, _ in configs:
        if outputs % 10:
            raise ValueError(f"output sizes must be multiples of the 10 classes, got {outputs}")
    for outputs, steps in configs:
        log(f"-- {outputs} outputs, {steps} step(s)")
        result = fit(model_name, dataset, data_root, epochs=epochs, batch_size=batch_size, num_steps=steps,
                     hidden=hidden, pop_size=outputs // 10, lr=lr, device=device, progress=progress, log=log,
                     neuron=neuron, loss=loss, seed=seed, autocast_dtype=autocast_dtype, data=data)
        last = result["history"][-1]
        rows.append({"outputs": outputs, "num_steps": steps, "test_acc": last["test_acc"],
                     "images_per_s": last["images_per_s"]})
    return rows
