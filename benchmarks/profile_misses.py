"""Profiles behind issue 19's CPU misses: where a fused training step and the fused Leaky spend
their time, eager and compiled, written as JSON (and the profiler's tables as text).

    python benchmarks/profile_misses.py --out benchmarks/results/cpu-2026-12-03b/profiles

Three cases, each after warm-up, under ``torch.profiler`` (CPU activity; self time per op,
summed over ``--steps`` steps and divided by them):

- ``leaky``: Leaky forward+backward at T=25, B=128, N=1000 with random upstream gradients for
  spikes and membrane, on the host backend, eager and compiled. Besides the profile, the two C
  calls are timed on their own (the ctypes entry points wrapped), so the rows say how much of
  the step the kernels are and how much is around them.
- ``dsnn``: the DSNN training step (784-1000-10, B=128, T=25, AdamW), fused, eager and compiled.
- ``net3``: the 3-layer 256-512-512-10 Linear+Leaky step (T=50, B=32), fused, eager.

Ops are grouped into what they are (matrix products, fused neuron forward/backward, optimizer,
compiled graph code, the rest), so the JSON answers "what would have to shrink" directly. The
profiler's own threads slow the two-thread OpenMP regions of the fused kernels (a fused call
takes several times longer under it), so its group times are shares, not durations: the
``median_ms`` of each case is timed without the profiler, and ``kernel_ms_per_step`` is the
host library's forward and backward entry points timed on their own, unprofiled, over the same
steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

import fusedsnn.functional as Fn
from fusedsnn.backends.host import lif as host_lif
from fusedsnn.bench.net3 import Net3Case, make_step as net3_step
from fusedsnn.bench.training import make_model, training_step_fn

GROUPS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul")),
    ("fused neuron backward", ("FusedLIFBackward", "fusedsnn::lif_backward")),  # before "FusedLIF"
    ("fused neuron forward", ("FusedLIF", "fusedsnn::lif_forward")),
    ("optimizer", ("Optimizer.step", "aten::_fused_adamw", "_fused_adamw")),
    ("compiled graph code", ("CompiledFxGraph", "Torch-Compiled Region", "CompiledFunction")),
)


def _group(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other"


def _profile(step: Callable[[], None], steps: int) -> dict:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    table = prof.key_averages()
    groups: dict[str, float] = {}
    for event in table:
        groups[_group(event.key)] = groups.get(_group(event.key), 0.0) + event.self_cpu_time_total / 1e3 / steps
    top = sorted(table, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {"self_ms_per_step_by_group": {k: round(v, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops_self_ms_per_step": {e.key: round(e.self_cpu_time_total / 1e3 / steps, 3) for e in top},
            "table": table.table(sort_by="self_cpu_time_total", row_limit=20)}


def _median_ms(step: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


class _KernelClock:
    """Times the host library's two LIF entry points by wrapping them on the loaded library."""

    def __init__(self) -> None:
        self.lib = host_lif.load_library()
        self.samples: dict[str, list[float]] = {"fusedsnn_lif_forward": [], "fusedsnn_lif_backward": []}
        for name in self.samples:
            real = getattr(self.lib, name)

            def timed(desc, real=real, name=name):
                start = time.perf_counter()
                rc = real(desc)
                self.samples[name].append(time.perf_counter() - start)
                return rc

            setattr(self.lib, name, timed)

    def reset(self) -> None:
        for v in self.samples.values():
            v.clear()

    def per_step_ms(self, steps: int) -> dict[str, float]:
        """Each entry point's total time over the last ``steps`` steps, per step."""
        return {k.removeprefix("fusedsnn_lif_"): round(1e3 * sum(v) / steps, 3) for k, v in self.samples.items() if v}


_CLOCK: "_KernelClock | None" = None


def _measure(case: str, mode: str, step: Callable[[], object], steps: int, repeats: int) -> dict:
    """Warm-up, the unprofiled median with the kernels' share, then the profile."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = _KernelClock()
    for _ in range(3):
        step()
    _CLOCK.reset()
    median = _median_ms(step, repeats)
    kernels = _CLOCK.per_step_ms(repeats)
    return {"case": case, "mode": mode, "median_ms": round(median, 3), "kernel_ms_per_step": kernels,
            "outside_kernels_ms": round(median - sum(kernels.values()), 3), **_profile(step, steps)}


def leaky_case(steps: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    x = (torch.randn(25, 128, 1000) * 1.5).requires_grad_()
    upstream = [torch.randn_like(x), torch.randn_like(x)]
    rows = []
    for mode in ("eager", "compiled"):
        call = lambda x: Fn.leaky(x, 0.9, 1.0, backend="host")  # noqa: E731
        if mode == "compiled":
            torch._dynamo.reset()
            call = torch.compile(call)

        def step(call=call):
            torch.autograd.grad(call(x), x, upstream)

        rows.append(_measure("Leaky forward+backward, T=25, B=128, N=1000", mode, step, steps, repeats))
    return rows


def dsnn_case(steps: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    rows = []
    for mode in ("eager", "compiled"):
        torch._dynamo.reset()
        step = training_step_fn(make_model("DSNN", 128, 25), "fused", x, y,
                                compile_backend="inductor" if mode == "compiled" else None)
        rows.append(_measure("DSNN training step, 784-1000-10, B=128, T=25, AdamW", mode, step, steps, repeats))
    return rows


def net3_case(steps: int, repeats: int) -> list[dict]:
    rows = []
    for provider in ("fused", "fused-spike-products"):
        step = net3_step(Net3Case(T=50, B=32), provider)
        rows.append(_measure(f"3-layer 256-512-512-10 training step, T=50, B=32 ({provider})", "eager", step, steps,
                             repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for profiles.json and profiles.txt")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per case (default 10)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per case (default 20)")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    rows = leaky_case(args.steps, args.repeats) + dsnn_case(args.steps, args.repeats) \
        + net3_case(args.steps, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profiles.txt").write_text("\n\n".join(f"== {r['case']} ({r['mode']}): {r['median_ms']} ms median\n"
                                                      f"{r['table']}" for r in rows))
    (args.out / "profiles.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "table"} for r in rows], indent=1) + "\n")
    for r in rows:
        print(f"{r['case']} ({r['mode']}): {r['median_ms']} ms; {r['self_ms_per_step_by_group']}"
              + f"; host kernels per step {r['kernel_ms_per_step']}")


if __name__ == "__main__":
    main()
