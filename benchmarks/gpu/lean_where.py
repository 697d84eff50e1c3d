"""Where the memory-lean modes' time and memory go on a GPU (the first H100 run of the memory
section found fused-lean heavier than fused default and both lean modes 10-40x slower).

    python benchmarks/gpu/lean_where.py [--device cuda] [--steps 500] [--out DIR]

For the bench's MLP3 and DSNN (batch 32) and the providers fused, fused-lean, fused-chunked:
1. time: median wall and host-issue time of one training step, the host-device synchronisations
   it makes (``aten::_local_scalar_dense``, i.e. ``.item()``), and the heaviest host operators;
2. memory (CUDA only): the tensors alive at the step's peak, grouped by the innermost fusedsnn
   (else torch) source line that allocated them, from the caching allocator's history.
On a CPU it runs at tiny sizes as a plumbing check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

from fusedsnn.bench import memory as bench_memory
from fusedsnn.cli.args import device_name, positive_int

PROVIDERS = ("fused", "fused-lean", "fused-chunked")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing(step, device, repeats: int) -> dict:
    samples, issue = [], []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        issue.append(time.perf_counter() - start)
        sync(device)
        samples.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(samples) * 1e3, "issue_ms": statistics.median(issue) * 1e3}


def host_profile(step, device, top: int = 12) -> dict:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.key_averages()
    syncs = sum(e.count for e in events if e.key in ("aten::_local_scalar_dense", "cudaStreamSynchronize"))
    ops = sorted((e for e in events if e.key.startswith(("aten::", "autograd::", "LIF", "Fused", "_"))
                  or "Backward" in e.key), key=lambda e: -e.self_cpu_time_total)
    return {"host_syncs": syncs,
            "top_self_cpu": [(e.key, e.count, round(e.self_cpu_time_total / 1e3, 3)) for e in ops[:top]]}


def _site(frames: list[dict]) -> str:
    for want in ("fusedsnn", "torch"):
        for f in frames:
            name = f.get("filename", "")
            if want in name and "torch/utils" not in name:
                return f"{name.split('site-packages/')[-1].split('main/')[-1]}:{f.get('line')} {f.get('name')}"
    return "?"


def peak_owners(step, device, top: int = 10) -> dict:
    """Tensors alive at the step's peak, by allocating source line (CUDA allocator history)."""
    torch.cuda.memory._record_memory_history(stacks="python", max_entries=500000)
    sync(device)
    step()
    sync(device)
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    trace = snap["device_traces"][0]
    live: dict[int, tuple[int, str]] = {}
    cur = peak = 0
    at_peak: dict[int, tuple[int, str]] = {}
    for e in trace:
        if e["action"] == "alloc":
            live[e["addr"]] = (e["size"], _site(e.get("frames", [])))
            cur += e["size"]
            if cur > peak:
                peak, at_peak = cur, dict(live)
        elif e["action"] == "free_completed" and e["addr"] in live:
            cur -= live.pop(e["addr"])[0]
    by_site: dict[str, int] = defaultdict(int)
    for size, site in at_peak.values():
        by_site[site] += size
    rows = sorted(by_site.items(), key=lambda kv: -kv[1])[:top]
    return {"peak_mib_in_step": peak / 2**20,
            "owners_mib": [(site, round(size / 2**20, 2)) for site, size in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", type=device_name, default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=positive_int, default=None, help="time steps (default 500 on CUDA, 24 on CPU)")
    p.add_argument("--chunks", type=lambda text: tuple(positive_int(c) for c in text.split(",")), default=None, help="time chunks of fused-chunked, comma-separated (default: the bench's "
                   "CHUNK_STEPS and 4x that on CUDA, 8 on CPU)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    T = args.steps or (500 if cuda else 24)
    batch = 32 if cuda else 4
    default_chunks = (bench_memory.CHUNK_STEPS, 4 * bench_memory.CHUNK_STEPS) if cuda else (8,)
    chunks = args.chunks or default_chunks
    result = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "num_steps": T, "batch": batch,
              "torch": torch.__version__, "cases": []}
    cases = [(p, None) for p in PROVIDERS if p != "fused-chunked"] + [("fused-chunked", c) for c in chunks]
    for network in bench_memory.NETWORKS:
        for provider, chunk in cases:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step = bench_memory.make_case(network, provider, T, batch, device, chunk or bench_memory.CHUNK_STEPS)
                step()
                step()
                case = {"network": network, "provider": provider, "chunk_steps": chunk,
                        **timing(step, device, 10 if cuda else 2), **host_profile(step, device)}
                if cuda:
                    try:
                        case.update(peak_owners(step, device))
                    except Exception as error:  # noqa: BLE001 - a diagnostic reports and goes on
                        # The first H100 run: SystemError from autograd.Function.apply inside a
                        # checkpoint's recompute while the allocator history recorded stacks.
                        torch.cuda.memory._record_memory_history(enabled=None)
                        case["peak_owners_error"] = f"{type(error).__name__}: {error}"
            result["cases"].append(case)
            label = provider + (f" ({chunk} steps)" if chunk else "")
            print(f"\n== {network} {label} T={T} B={batch}: {case['median_ms']:.2f} ms "
                  f"(issue {case['issue_ms']:.2f} ms), {case['host_syncs']} host syncs")
            for key, count, ms in case["top_self_cpu"]:
                print(f"   {ms:9.3f} ms  x{count:<5d} {key}")
            if "peak_owners_error" in case:
                print(f"   peak owners not recorded: {case['peak_owners_error']}")
            elif cuda:
                print(f"   peak {case['peak_mib_in_step']:.1f} MiB in the step; alive at the peak:")
                for site, mib in case["owners_mib"]:
                    print(f"   {mib:9.2f} MiB  {site}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "lean_where.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
