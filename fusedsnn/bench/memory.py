"""``memory`` section of ``fusedsnn bench``: peak training memory and time against sequence length.

Networks: the study's DSNN (784-1000-10, Leaky, static image input) and a 3-layer Linear+Leaky
network (256-512-512-10, a fresh input every step). Providers: "fused-chunked" (the fused model
after ``memory_lean(model, time_chunk=CHUNK_STEPS)``: the whole network runs CHUNK_STEPS steps
at a time under checkpointing), "fused-lean" (after ``memory_lean(model)``: spikes kept as bits,
neurons recompute), "fused" (as built) and "snntorch" (the same layers stepped with snnTorch
neurons). One measured step = forward, rate-coded cross-entropy, backward
(gradients allocated inside the step; no optimizer, whose state does not grow with T).

Peak memory (``peak_mib``) is the most memory held by tensors at any moment of the step above
what was held when it started (the model, the input): exact byte counts, on CUDA
``max_memory_allocated``, on CPU the same quantity from the profiler's memory view (every
allocation and free, summed in order), so it does not depend on other processes. In the full
run, the CPU also reports the peak resident set size of a fresh process above its baseline
(``peak_rss_mib``), which includes the allocator's fragmentation and cached blocks and varies
with the allocator and the machine; the ratios the targets name are taken from the exact bytes.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .. import layers, population
from ..memory import memory_lean
from ..memory.spike_layers import linear_after_spikes
from ..models import DSNN
from .training import _profiler_chatter_dropped

Tensor = torch.Tensor

NETWORKS = ("DSNN", "MLP3")
PROVIDERS = ("fused-chunked", "fused-lean", "fused", "snntorch")
#: Time steps per chunk of the "fused-chunked" provider: memory is set by the chunk, not by T
#: (3-layer network, T=500, exact bytes: 32 steps keep 0.11 of fused default's peak, 64 steps
#: 0.18, at the same speed within this VM's noise; see docs/design.md).
CHUNK_STEPS = 32
MIB = 2.0 ** 20


class MLP3(nn.Module):
    """256-512-512-10 Linear+Leaky network over a sequence: ``x: [T, B, 256]`` -> ``(spk, mem)``,
    each ``[T, B, 10]``."""

    sizes = (256, 512, 512, 10)

    def __init__(self, beta: float = 0.95, spike_products: bool = False) -> None:
        """``spike_products``: every Linear is fed spikes (the input too), so each may take the
        host's spike products where :mod:`fusedsnn.memory.product_rule` finds them faster
        (sums in another order than BLAS: see that module's tolerance)."""
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.neurons = nn.ModuleList(layers.Leaky(beta=beta) for _ in self.sizes[1:])
        self.spike_products = spike_products
        for fc in self.fcs:
            fc.spike_product = True if spike_products else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Only the current layer's tensors are referenced: a hidden layer's membrane and the
        # previous spikes are dropped as soon as the next call no longer needs them.
        out = (x,)
        for fc, lif in zip(self.fcs, self.neurons):
            current = linear_after_spikes(fc, out[0]) if self.spike_products else fc(out[0])
            out = None
            out = lif(current)
            del current
        return out[0], out[-1]


class _SnnTorchStepped(nn.Module):
    """``model`` (DSNN or MLP3) stepped per time step with snnTorch Leaky neurons, sharing the
    Linear layers."""

    def __init__(self, model: nn.Module, num_steps: int) -> None:
        super().__init__()
        import snntorch as snn

        self.model = model
        self.num_steps = num_steps
        self.neurons = nn.ModuleList(
            snn.Leaky(beta=n.beta.detach().clone(), threshold=n.threshold.detach().clone(), init_hidden=True,
                      output=True) for n in model.neurons)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for neuron in self.neurons:
            neuron.reset_mem()
        spikes, mems = [], []
        for t in range(self.num_steps):
            cur = x if x.dim() == 2 else x[t]
            for fc, lif in zip(self.model.fcs, self.neurons):
                cur, mem = lif(fc(cur))
            spikes.append(cur)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)


def make_case(network: str, provider: str, num_steps: int, batch: int, device: torch.device,
              chunk_steps: int = CHUNK_STEPS, saved_state: str = "auto") -> Callable[[], None]:
    """A closure running one measured step (forward, loss, backward) of ``network`` via ``provider``
    (``chunk_steps``: time steps per chunk of "fused-chunked"; ``saved_state``: the neurons' of
    "fused-lean", see ``fusedsnn.memory.SAVED_STATES``)."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    torch.manual_seed(0)
    if network == "DSNN":
        model = DSNN(784, 1000, 10, num_steps).to(device)
        x = torch.rand(batch, 784, device=device) * 2
    else:
        model = MLP3().to(device)
        x = torch.rand(num_steps, batch, 256, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    if provider == "fused-lean":
        memory_lean(model, saved_state=saved_state)
    elif provider == "fused-chunked":
        memory_lean(model, time_chunk=chunk_steps)
    # The snnTorch neurons are built after model.to(device): move their buffers too.
    forward = _SnnTorchStepped(model, num_steps).to(device) if provider == "snntorch" else model
    params = list(model.parameters())

    def step() -> None:
        spk, _ = forward(x)
        population.ce_rate_loss(spk, y, 10, 1).backward()
        del spk
        # The gradients are counted in the step's peak; dropping them here (not at the start of
        # the next step) makes every step start from the same memory.
        for p in params:
            p.grad = None

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Most bytes held by tensors during ``step()`` above what was held when it started."""
    _sync(device)
    if device.type == "cuda":
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - start
    with warnings.catch_warnings(), _profiler_chatter_dropped():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    allocations = sorted((e for e in prof.profiler.kineto_results.events()
                          if e.name() == "[memory]" and e.device_type().name == "CPU"), key=lambda e: e.start_ns())
    live = peak = 0
    for e in allocations:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _rss_kib() -> tuple[int, int]:
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1])
    return values["VmRSS"], values["VmHWM"]


def rss_worker(network: str, provider: str, num_steps: int, batch: int, chunk_steps: int = CHUNK_STEPS) -> dict:
    """In a fresh process: one warm-up step, then peak RSS of one step above the RSS before it."""
    torch.set_num_threads(torch.get_num_threads())
    step = make_case(network, provider, num_steps, batch, torch.device("cpu"), chunk_steps)
    step()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak RSS (Linux >= 4.0)
        fh.write("5")
    before, _ = _rss_kib()
    step()
    _, peak = _rss_kib()
    return {"peak_rss_mib": (peak - before) / 1024}


def _rss_in_subprocess(network: str, provider: str, num_steps: int, batch: int, chunk_steps: int) -> float | None:
    if not sys.platform.startswith("linux"):
        return None
    cmd = [sys.executable, "-m", "fusedsnn.bench.memory", network, provider, str(num_steps), str(batch),
           str(chunk_steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def run_memory(device: torch.device, steps: tuple[int, ...], batch: int, repeats: int, rss: bool,
               networks: tuple[str, ...] = NETWORKS, progress: Callable[[str], None] = lambda m: None,
               snntorch_max_steps: int | None = None, chunk_steps: int = CHUNK_STEPS) -> list[dict]:
    """Rows of peak memory and median time per (network, T, provider); providers interleaved in
    each timing round so load from other processes hits them alike."""
    rows = []
    for network in networks:
        for T in steps:
            providers = [p for p in PROVIDERS if p != "snntorch" or snntorch_max_steps is None or T <= snntorch_max_steps]
            cases = {}
            for provider in providers:
                progress(f"memory {network} T={T} {provider}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    step = make_case(network, provider, T, batch, device, chunk_steps)
                    step()  # warm-up (kernel build, allocator)
                    cases[provider] = (step, peak_bytes(step, device))
            samples: dict[str, list[float]] = {p: [] for p in providers}
            # Long sequences take seconds a step: fewer rounds, but never a single sample (one
            # noisy step once put the fused default behind the chunked mode in the plot).
            reps = repeats if T <= 500 else max(min(repeats, 3), repeats // 3)
            for _ in range(reps):
                for provider in providers:
                    start = time.perf_counter()
                    cases[provider][0]()
                    _sync(device)
                    samples[provider].append(time.perf_counter() - start)
            for provider in providers:
                row = {"network": network, "provider": provider, "num_steps": T, "batch": batch,
                       "device": str(device), "peak_mib": cases[provider][1] / MIB,
                       "chunk_steps": chunk_steps if provider == "fused-chunked" else None,
                       "median_s": statistics.median(samples[provider]), "repeats": reps}
                if rss and device.type == "cpu":
                    progress(f"memory rss {network} T={T} {provider}")
                    row["peak_rss_mib"] = _rss_in_subprocess(network, provider, T, batch, chunk_steps)
                rows.append(row)
            _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    """Memory and speed of each row relative to fused and snnTorch on the same case."""
    key = lambda r: (r["network"], r["num_steps"], r["batch"])  # noqa: E731
    by = {(key(r), r["provider"]): r for r in rows}
    for r in rows:
        fused, snn = by.get((key(r), "fused")), by.get((key(r), "snntorch"))
        r["peak_vs_fused"] = r["peak_mib"] / fused["peak_mib"] if fused and fused["peak_mib"] else None
        r["peak_vs_snntorch"] = r["peak_mib"] / snn["peak_mib"] if snn and snn["peak_mib"] else None
        r["speed_vs_fused"] = fused["median_s"] / r["median_s"] if fused else None
        if "peak_rss_mib" in r:
            ok = lambda o: o and o.get("peak_rss_mib")  # noqa: E731
            r["rss_vs_fused"] = r["peak_rss_mib"] / fused["peak_rss_mib"] if ok(fused) and r["peak_rss_mib"] else None
            r["rss_vs_snntorch"] = r["peak_rss_mib"] / snn["peak_rss_mib"] if ok(snn) and r["peak_rss_mib"] else None


def section_memory(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """Peak training memory and time, fused-chunked and fused-lean vs fused vs snnTorch, T in
    {25, 500, 2000}."""
    if args.quick:  # 10 steps in chunks of 4: the chunked path runs, in a few milliseconds
        return run_memory(device, (10,), 4, repeats=1, rss=False, progress=progress, chunk_steps=4)
    return run_memory(device, (25, 500, 2000), 32, repeats=args.repeats, rss=True, progress=progress)






if __name__ == "__main__":  # the fresh process of one peak-RSS measurement
    network, provider, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    chunk = int(sys.argv[5]) if len(sys.argv) > 5 else CHUNK_STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(json.dumps(rss_worker(network, provider, steps, batch, chunk)))
