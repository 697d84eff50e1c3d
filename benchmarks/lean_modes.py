"""The neuron layers' saved state under memory_lean, side by side on this machine: fused default,
memory_lean with saved_state "auto" (the default), "recompute" and "default" (bits only), for the
memory section's networks. Peak tensor bytes above the step's start (exact: the profiler's
memory view on CPU, max_memory_allocated on CUDA) and step time, the contenders interleaved in
each round; median and q20/q80 of the rounds.

    PYTHONPATH=$PWD python benchmarks/lean_modes.py [--steps 500] [--batch 32] [--rounds 7] [--device cpu]
                                                    [--gpu-chunking]

``--gpu-chunking`` cuts the recompute into chunks as it would on a GPU (at least
``fusedsnn.ops.recompute.RECOMPUTE_MIN_CHUNK_ELEMENTS_GPU`` neuron-steps each) while running on the CPU: the
peak bytes are the GPU's (the same tensors are allocated; the CPU's exact count reproduced the
H100's 222.7 MiB for the DSNN at T=500), the times are not.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from fusedsnn import memory
from fusedsnn.ops import recompute
from fusedsnn.bench import memory as bench_memory
from fusedsnn.cli.args import device_name, positive_int

MODES = ("fused", "auto", "recompute", "default+bits")


def _case(network: str, mode: str, T: int, batch: int, device: torch.device):
    if mode == "fused":
        return bench_memory.make_case(network, "fused", T, batch, device)
    saved_state = {"default+bits": "default"}.get(mode, mode)
    return bench_memory.make_case(network, "fused-lean", T, batch, device, saved_state=saved_state)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=positive_int, default=500)
    p.add_argument("--batch", type=positive_int, default=32)
    p.add_argument("--rounds", type=positive_int, default=7)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--gpu-chunking", action="store_true", help="recompute chunks as on a GPU (see above)")
    args = p.parse_args()
    if args.rounds < 2:
        p.error(f"argument --rounds: expected at least 2 (q20/q80 need two samples), got {args.rounds}")
    if args.gpu_chunking:
        cpu_chunks = recompute._chunks
        recompute._chunks = lambda T, n, per_step=1, on_cpu=True: cpu_chunks(T, n, per_step, on_cpu=False)
    device = torch.device(args.device)
    print(f"T={args.steps} B={args.batch} rounds={args.rounds} device={device} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}" + (" recompute chunks as on a GPU" if args.gpu_chunking else ""))
    for network in bench_memory.NETWORKS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            steps = {m: _case(network, m, args.steps, args.batch, device) for m in MODES}
            peaks = {}
            for m, step in steps.items():
                step()
                peaks[m] = bench_memory.peak_bytes(step, device) / 2 ** 20
            times = {m: [] for m in MODES}
            for _ in range(args.rounds):
                for m, step in steps.items():
                    bench_memory._sync(device)
                    start = time.perf_counter()
                    step()
                    bench_memory._sync(device)
                    times[m].append(time.perf_counter() - start)
        for m in MODES:
            q = statistics.quantiles(times[m], n=5, method="inclusive")
            print(f"{network:5} {m:13} peak {peaks[m]:7.1f} MiB ({peaks[m] / peaks['fused']:.2f}x)  "
                  f"{statistics.median(times[m]) * 1e3:8.1f} ms (q20-q80 {q[0] * 1e3:.1f}-{q[3] * 1e3:.1f})  "
                  f"speed {statistics.median(times['fused']) / statistics.median(times[m]):.2f}x")


if __name__ == "__main__":
    main()
