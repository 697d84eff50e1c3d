"""What the spike-product rule is worth for whole training steps: the same step with it on and off.

Two networks, each one training step (forward, rate-coded cross-entropy, backward, AdamW):

* ``DSNN``: the study's 784-1000-10 Leaky network, B=128, T=25, static image input
  (``fusedsnn.bench.training.training_step_fn``); its only spike-fed layer is the 10-wide readout;
* ``3-layer``: 256-512-512-10 Linear+Leaky, T=50, B=32, input spikes at 20% (every Linear takes
  spikes, so all three run through ``fusedsnn.memory.linear_after_spikes``).

"on" is the global mode ``fusedsnn.memory.spike_products("on")`` (the rule decides per layer and
call), "off" is BLAS everywhere. The two run one step each in turn, ``--repeats`` rounds after
``--warmup`` rounds. Every timed step starts from the same weights (restored outside the timing),
so both modes do the same work: the spike rates of the hidden layers are those of the network
as built, or after ``--settle`` training steps on the batch (rates rise as it trains; both are
measured, and each row names its rates). Prints and (``--json``) writes median step times with
20%/80% quantiles and the per-round speed-up (off time / on time)::

    PYTHONPATH=$PWD python benchmarks/spike_product_networks.py --repeats 15 --json FILE
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import fusedsnn as fs
from fusedsnn import memory, population
from fusedsnn.bench.study import environment
from fusedsnn.bench.timing import sample_quantiles
from fusedsnn.bench.training import training_step_fn


class ThreeLayer(nn.Module):
    """256-512-512-10 Linear + Leaky over a spike sequence ``x: [T, B, 256]`` -> ``(spk, mem)``,
    each ``[T, B, 10]``; every Linear through :func:`fusedsnn.memory.linear_after_spikes`."""

    sizes = (256, 512, 512, 10)

    def __init__(self) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.neurons = nn.ModuleList(fs.Leaky(beta=0.95) for _ in self.sizes[1:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = (x,)
        for fc, lif in zip(self.fcs, self.neurons):
            out = lif(memory.linear_after_spikes(fc, out[0]))
        return out[0], out[-1]


def three_layer_step(num_steps: int = 50, batch: int = 32, rate: float = 0.2):
    """``(step, model, x)``: one AdamW training step of :class:`ThreeLayer` on a fixed batch of
    ``[num_steps, batch, 256]`` spikes at ``rate``."""
    torch.manual_seed(0)
    model = ThreeLayer()
    x = (torch.rand(num_steps, batch, 256) < rate).float()
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        spk, _ = model(x)
        population.ce_rate_loss(spk, y, 10, 1).backward()
        optimizer.step()

    return step, model, x


def dsnn_step(num_steps: int = 25, batch: int = 128):
    """``(step, model, x)``: the bench's DSNN training step (AdamW) on a fixed batch of images."""
    torch.manual_seed(0)
    model = fs.DSNN(784, 1000, 10, num_steps)
    x = torch.rand(batch, 784) * 2
    y = torch.randint(0, 10, (batch,))
    return training_step_fn(model, "fused", x, y), model, x


def spike_rates(layers: list[nn.Module], model: nn.Module, x: torch.Tensor) -> list[float]:
    """The firing rate of the input of each of ``layers`` in one forward of ``model`` on ``x``."""
    rates = []
    handles = [m.register_forward_pre_hook(lambda m, args: rates.append(float(args[0].ne(0).float().mean())))
               for m in layers]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return rates


def on_off(step: Callable[[], None], model: nn.Module, warmup: int, repeats: int) -> dict:
    """Interleaved step times with the rule on and off, each from the weights ``model`` has now,
    and the per-round speed-up."""
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    samples = {"on": [], "off": []}
    for round_ in range(warmup + repeats):
        for mode in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            model.load_state_dict(start_state)
            with memory.spike_products(mode):
                start = time.perf_counter()
                step()
                elapsed = time.perf_counter() - start
            if round_ >= warmup:
                samples[mode].append(elapsed)
    model.load_state_dict(start_state)
    speedup = [off / on for on, off in zip(samples["on"], samples["off"])]
    row = {"repeats": repeats}
    for name, values in (("on_s", samples["on"]), ("off_s", samples["off"]), ("speedup", speedup)):
        median, q20, q80 = sample_quantiles(values)
        row[name] = {"median": median, "q20": q20, "q80": q80}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--settle", type=int, default=30, help="training steps before the second measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.settle < 0:
        parser.error("--repeats must be at least 1, --warmup and --settle at least 0")
    warnings.simplefilter("ignore")
    env = environment(torch.device("cpu"))
    rows = []
    # (name, the step's maker, the Linear layers fed by spikes)
    for name, make, fed in (("3-layer 256-512-512-10, T=50, B=32, 20% input spikes", three_layer_step,
                             lambda m: list(m.fcs)),
                            ("DSNN 784-1000-10, T=25, B=128", dsnn_step, lambda m: list(m.fcs[1:]))):
        step, model, x = make()
        for settled in (0, args.settle):
            with memory.spike_products("off"):
                for _ in range(settled):
                    step()
            rates = spike_rates(fed(model), model, x)
            row = {"network": name, "settle_steps": settled, "spike_fed_input_rates": rates,
                   **on_off(step, model, args.warmup, args.repeats)}
            rows.append(row)
            print(f"{name}, after {settled} steps (spike-fed inputs at {', '.join(f'{r:.3f}' for r in rates)}): "
                  f"on {1e3 * row['on_s']['median']:.1f} ms, off {1e3 * row['off_s']['median']:.1f} ms, speed-up "
                  f"{row['speedup']['median']:.3f}x (q20 {row['speedup']['q20']:.3f}, q80 {row['speedup']['q80']:.3f}), "
                  f"{args.repeats} interleaved rounds", flush=True)
    env["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
