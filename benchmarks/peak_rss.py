"""Peak resident memory (VmHWM) and step times of one provider of the memory bench, in this
process over a few training steps (3-layer network, batch 32; see fusedsnn/bench/memory.py).

The memory bench's exact byte counts are what tensors hold; RSS adds what glibc keeps (freed
blocks the host backend asks it to keep, fragmentation: docs/design.md). Run each provider in a
fresh process. Example::

    PYTHONPATH=$PWD python benchmarks/peak_rss.py --steps 10000 --provider fused-chunked --repeats 3
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from fusedsnn.bench import memory as bench_memory


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10000, help="time steps T (default 10000)")
    parser.add_argument("--provider", choices=bench_memory.PROVIDERS, default="fused-chunked")
    parser.add_argument("--repeats", type=int, default=3, help="training steps to run (default 3)")
    args = parser.parse_args()
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    warnings.simplefilter("ignore")
    step = bench_memory.make_case("MLP3", args.provider, args.steps, 32, torch.device("cpu"))
    before = _status_mib("VmRSS")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(f"T={args.steps} {args.provider}: step times {' '.join(f'{t:.2f}' for t in times)} s; peak RSS "
          f"{_status_mib('VmHWM'):.0f} MiB (process before the first step {before:.0f} MiB)")


if __name__ == "__main__":
    main()
