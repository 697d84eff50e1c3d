"""Issue 13's speed check: training-step time of memory-lean modes against the fused default.

The ``memory`` section of ``fusedsnn bench`` measures peak memory with a few timed repeats; this
script times the speed target alone, with more repeats. One step = forward, rate-coded
cross-entropy, backward (``fusedsnn.bench.memory.make_case``), batch 32. Contenders, interleaved
step by step in one process so a shared machine slows them alike:

* ``fused``: the model as built (the baseline: BLAS products, nothing recomputed);
* ``chunked-N``: ``memory_lean(model, time_chunk=N)`` for each ``--chunks`` N (spike products on,
  as by default with ``time_chunk``);
* ``chunked-N-dense``: the same with ``spike_products=False`` (the recompute at BLAS cost);
* ``default+products``: ``memory_lean(model, saved_state="default", spike_products=True)``: spikes
  kept as bits, nothing recomputed, spike products: what the products alone are worth.

Prints, per contender, the median step time and its speed relative to ``fused`` as the median,
20% and 80% quantiles of the per-round ratios; ``--json`` writes the rows.

``--products`` instead times one Linear layer's products alone, the spike product against BLAS
(``F.linear`` and ``grad_out^T x``), over spike rates and layer shapes. Examples::

    PYTHONPATH=$PWD python benchmarks/memory_speed.py --steps 500 --repeats 15 --threads 2
    PYTHONPATH=$PWD python benchmarks/memory_speed.py --products --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from fusedsnn.bench import memory as bench_memory


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _case(network: str, steps: int, **lean) -> callable:
    """A step of ``network`` converted by ``memory_lean(model, **lean)`` (``lean`` empty: as built)."""
    if not lean:
        return bench_memory.make_case(network, "fused", steps, 32, torch.device("cpu"))
    real = bench_memory.memory_lean
    bench_memory.memory_lean = lambda model, **_: real(model, **lean)
    try:
        return bench_memory.make_case(network, "fused-lean", steps, 32, torch.device("cpu"))
    finally:
        bench_memory.memory_lean = real


def run(network: str, steps: int, chunks: list[int], repeats: int) -> list[dict]:
    cases = {"fused": _case(network, steps)}
    for n in chunks:
        cases[f"chunked-{n}"] = _case(network, steps, time_chunk=n)
    cases[f"chunked-{chunks[0]}-dense"] = _case(network, steps, time_chunk=chunks[0], spike_products=False)
    cases["default+products"] = _case(network, steps, saved_state="default", spike_products=True)
    for step in cases.values():  # warm-up: library load, allocator, cached operands
        step()
        step()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, step in cases.items():
            start = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - start)
    rows = []
    for name, times in samples.items():
        ratios = [f / t for f, t in zip(samples["fused"], times)]
        rows.append({"network": network, "num_steps": steps, "batch": 32, "provider": name,
                     "threads": torch.get_num_threads(), "repeats": repeats,
                     "median_s": statistics.median(times), "speed_vs_fused": statistics.median(ratios),
                     "speed_q20": _quantile(ratios, 0.2), "speed_q80": _quantile(ratios, 0.8)})
    return rows


# (rows, in, out, spike rates): the 3-layer network's hidden layer over the whole sequence and
# over one 32-step chunk, a 64- and a 32-wide layer, DSNN's hidden width.
PRODUCT_CASES = [(16000, 512, 512, (0.05, 0.22, 0.5, 0.7, 0.9)), (1024, 512, 512, (0.22,)), (1024, 512, 64, (0.22,)),
                 (1024, 512, 32, (0.22,)), (16000, 784, 1000, (0.22,))]


def products(repeats: int) -> list[dict]:
    from fusedsnn.backends.host import all_to_all as lif_all_to_all_host

    def median_ms(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    rows = []
    torch.manual_seed(0)
    for n_rows, n_in, n_out, rates in PRODUCT_CASES:
        weight, bias = torch.randn(n_out, n_in), torch.randn(n_out)
        wt, padded = lif_all_to_all_host.spike_linear_operands(weight, bias)
        g = torch.randn(n_rows, n_out)
        for rate in rates:
            x = (torch.rand(n_rows, n_in) < rate).float()
            row = {"rows": n_rows, "in": n_in, "out": n_out, "rate": rate, "threads": torch.get_num_threads(),
                   "forward_blas_ms": median_ms(lambda: torch.nn.functional.linear(x, weight, bias)),
                   "forward_spike_ms": median_ms(lambda: lif_all_to_all_host.spike_linear_forward(x, wt, padded, n_out, 1.0)),
                   "dW_blas_ms": median_ms(lambda: g.t().mm(x)),
                   "dW_spike_ms": median_ms(lambda: lif_all_to_all_host.spike_linear_weight_gradient(g, x, 1.0))}
            rows.append(row)
            print(f"  {n_rows:6d} x {n_in:4d} -> {n_out:4d}, rate {rate:.2f}: forward {row['forward_blas_ms']:7.2f} ms "
                  f"BLAS, {row['forward_spike_ms']:7.2f} ms spikes ({row['forward_spike_ms'] / row['forward_blas_ms']:.2f}x);"
                  f" dW {row['dW_blas_ms']:7.2f} ms BLAS, {row['dW_spike_ms']:7.2f} ms spikes "
                  f"({row['dW_spike_ms'] / row['dW_blas_ms']:.2f}x)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=bench_memory.NETWORKS, default="MLP3")
    parser.add_argument("--steps", type=int, default=500, help="time steps T (default 500)")
    parser.add_argument("--chunks", default="32,64", help="comma-separated time_chunk values (default 32,64)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--products", action="store_true", help="time one Linear layer's products instead")
    args = parser.parse_args()
    try:
        chunks = [int(c) for c in args.chunks.split(",")]
    except ValueError:
        parser.error(f"--chunks must be comma-separated positive ints, got {args.chunks!r}")
    if not chunks or min(chunks) < 1:
        parser.error(f"--chunks must be comma-separated positive ints, got {args.chunks!r}")
    for name in ("steps", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if args.products:
        print(f"one Linear layer, {torch.get_num_threads()} threads, median of {args.repeats} (time relative to BLAS)")
        rows = products(args.repeats)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        return
    rows = run(args.network, args.steps, chunks, args.repeats)
    print(f"{args.network} T={args.steps} B=32, {torch.get_num_threads()} threads, {args.repeats} interleaved rounds")
    for r in rows:
        print(f"  {r['provider']:18s} {1e3 * r['median_s']:8.1f} ms   speed vs fused {r['speed_vs_fused']:.3f} "
              f"(q20 {r['speed_q20']:.3f}, q80 {r['speed_q80']:.3f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
