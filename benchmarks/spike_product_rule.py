"""The data behind the spike-product rule: one spike-fed Linear layer, dense BLAS against the spike products.

A ``Linear(K, N)`` whose input ``x: [rows, K]`` is the 0/1 output of a spiking layer can be
computed by BLAS (``F.linear``; weight gradient ``grad_out^T x``) or by the host library's spike
products (``fusedsnn.backends.host.all_to_all.spike_linear_forward``, which checks and packs the
input and then adds, per row, the weight columns of the inputs that spiked; and
``spike_linear_weight_gradient``, which sums, per input, the rows of ``grad_out`` where it
spiked). ``fusedsnn.memory.product_rule`` picks between them by the layer's sizes and the
input's firing rate; its thresholds come from this script's output.

Per case ``(rows, K, N)`` every contender runs once per round, in a shuffled order, so a slow
spell of a shared machine hits them alike: the dense forward, weight gradient and input gradient
(``grad_out @ W``, the same in both paths), and per spike rate the spike forward and the spike
weight gradient; plus the spike forward refused by its rate limit (what a wrong guess costs: one
checking pass over ``x``). Forward+backward of a path is the sum of its forward, weight gradient
and the shared input gradient within one round. Each ratio (spike time / dense time) is taken per
round; the JSON keeps the medians with their 20% and 80% quantiles (and the ratios' samples).
``--fit`` combines several runs: per case and rate the median of the runs' medians.

    PYTHONPATH=$PWD python benchmarks/spike_product_rule.py \\
        --out benchmarks/results/cpu-2026-12-03-spike-product/spike_product_rule.json
    PYTHONPATH=$PWD python benchmarks/spike_product_rule.py --fit FILE...   # the crossings the files imply

Float32 (``--dtype float64`` for a check of the other dtype), the machine's torch thread count (2 on
the development VM), a few minutes in all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from fusedsnn.backends.host import all_to_all as host
from fusedsnn.bench.study import environment
from fusedsnn.bench.timing import sample_quantiles

IN_FEATURES = (256, 512, 1000, 4096)
OUT_FEATURES = (10, 256, 512, 1000, 4096)
ROWS = (128, 800, 3200)  # 128: below the networks' sizes, where fixed costs decide
RATES = (0.02, 0.05, 0.1, 0.2, 0.4)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _quantiles(values: list[float]) -> dict:
    median, q20, q80 = sample_quantiles(values)
    return {"median": median, "q20": q20, "q80": q80}


def measure_case(rows: int, k: int, n: int, rates: tuple[float, ...], min_repeats: int, max_repeats: int,
                 round_budget_s: float, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Interleaved timings of one ``Linear(k, n)`` on ``rows`` input rows at every spike rate.

    Returns ``{"rows", "in_features", "out_features", "repeats", "dense": {...}, "spike": {rate:
    {...}}, "refused_check": {...}}`` with each time as ``{"median", "q20", "q80"}`` seconds and
    each ratio (spike / dense, per round) the same way."""
    gen = torch.Generator().manual_seed(seed)
    weight = (torch.randn(n, k, generator=gen) / math.sqrt(k)).to(dtype)
    bias = torch.randn(n, generator=gen).to(dtype)
    g = torch.randn(rows, n, generator=gen).to(dtype)
    wt, padded = host.spike_linear_operands(weight, bias)
    xs = {r: (torch.rand(rows, k, generator=gen) < r).to(dtype) for r in rates}
    x_dense = xs[rates[0]]  # BLAS's time does not depend on the values

    calls: dict[str, Callable[[], object]] = {
        "forward/dense": lambda: F.linear(x_dense, weight, bias),
        "weight_grad/dense": lambda: g.t().mm(x_dense),
        "input_grad": lambda: g.mm(weight),
        # the spike forward refused after its checking pass (the densest input, max_rate 0)
        "refused_check": lambda: host.spike_linear_forward(xs[rates[-1]], wt, padded, n, 0.0),
    }
    for r in rates:
        calls[f"forward/spike@{r}"] = lambda x=xs[r]: host.spike_linear_forward(x, wt, padded, n, 1.0)
        calls[f"weight_grad/spike@{r}"] = lambda x=xs[r]: host.spike_linear_weight_gradient(g, x, 1.0)
    assert host.spike_linear_forward(xs[rates[-1]], wt, padded, n, 0.0) is None

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # one warm-up round that also sizes the repeats
    round_s = sum(_timed(fn) for fn in calls.values())
    repeats = max(min_repeats, min(max_repeats, math.ceil(round_budget_s / max(round_s, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    shuffle = random.Random(seed)
    for _ in range(repeats):
        shuffle.shuffle(order)
        for name in order:
            samples[name].append(_timed(calls[name]))

    dense_fwd, dense_wg, gx = samples["forward/dense"], samples["weight_grad/dense"], samples["input_grad"]
    dense_fb = [a + b + c for a, b, c in zip(dense_fwd, dense_wg, gx)]
    out = {
        "rows": rows, "in_features": k, "out_features": n, "repeats": repeats, "load_average": load,
        "dense": {"forward_s": _quantiles(dense_fwd), "weight_grad_s": _quantiles(dense_wg),
                  "input_grad_s": _quantiles(gx), "forward_backward_s": _quantiles(dense_fb)},
        "refused_check": {"time_s": _quantiles(samples["refused_check"]),
                          "vs_dense_forward": _quantiles([a / b for a, b in zip(samples["refused_check"], dense_fwd)])},
        "spike": {},
    }
    for r in rates:
        fwd, wg = samples[f"forward/spike@{r}"], samples[f"weight_grad/spike@{r}"]
        fb = [a + b + c for a, b, c in zip(fwd, wg, gx)]
        out["spike"][str(r)] = {
            "measured_rate": float(xs[r].mean()),
            "forward_ratio_samples": [a / b for a, b in zip(fwd, dense_fwd)],
            "weight_grad_ratio_samples": [a / b for a, b in zip(wg, dense_wg)],
            "forward_s": _quantiles(fwd), "weight_grad_s": _quantiles(wg), "forward_backward_s": _quantiles(fb),
            "forward_ratio": _quantiles([a / b for a, b in zip(fwd, dense_fwd)]),
            "weight_grad_ratio": _quantiles([a / b for a, b in zip(wg, dense_wg)]),
            "forward_backward_ratio": _quantiles([a / b for a, b in zip(fb, dense_fb)]),
        }
    return out


def compact(value):
    """``value`` (nested dicts and lists) with every float rounded to 4 significant digits: the
    timings' noise is far above that, and the file stays small."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def crossing_rate(rates: list[float], ratios: list[float], level: float = 1.0) -> float:
    """The spike rate at which ``ratio`` (spike / dense time, measured at ``rates``, ascending)
    reaches ``level`` (1: as fast as BLAS; 0.9: 10% faster), by linear interpolation between the
    two measured rates around it; 0.0 when it is above ``level`` already at the lowest rate, the
    highest rate when it stays below."""
    if ratios[0] >= level:
        return 0.0
    for (r0, q0), (r1, q1) in zip(zip(rates, ratios), zip(rates[1:], ratios[1:])):
        if q1 >= level:
            return r0 + (level - q0) * (r1 - r0) / (q1 - q0)
    return rates[-1]


def combined_ratios(runs: list[dict]) -> dict[tuple, dict[str, list[float]]]:
    """Per case ``(rows, K, N)``: for each part (``forward``, ``weight_grad``, ``forward_backward``)
    the spike/dense ratio at each rate of :data:`RATES`, the median over the runs of each run's
    median (on a shared machine one run's slow spell then moves no case)."""
    per_case: dict[tuple, dict[str, list[list[float]]]] = {}
    for results in runs:
        for case in results["cases"]:
            key = (case["rows"], case["in_features"], case["out_features"])
            into = per_case.setdefault(key, {})
            for part in ("forward", "weight_grad", "forward_backward"):
                into.setdefault(part, []).append([case["spike"][str(r)][f"{part}_ratio"]["median"] for r in RATES])
    return {key: {part: [sample_quantiles(list(col))[0] for col in zip(*rows)] for part, rows in parts.items()}
            for key, parts in per_case.items()}


def fit(runs: list[dict]) -> list[dict]:
    """Per case ``(rows, K, N)``, the rate at which each spike product stops paying (forward,
    weight gradient), from :func:`combined_ratios` of the runs given."""
    lines = []
    for (rows, k, n), parts in sorted(combined_ratios(runs).items()):
        line = {"rows": rows, "in_features": k, "out_features": n, "runs": len(runs)}
        for part in ("forward", "weight_grad"):
            line[f"{part}_crossing"] = crossing_rate(list(RATES), parts[part])
            line[f"{part}_crossing_0.9"] = crossing_rate(list(RATES), parts[part], 0.9)
            line[f"{part}_ratios"] = [round(q, 3) for q in parts[part]]
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the measurements to this JSON file")
    parser.add_argument("--fit", type=Path, nargs="+",
                        help="print the crossing rates of JSON files written before (median over the files); "
                             "measure nothing")
    parser.add_argument("--min-repeats", type=int, default=5)
    parser.add_argument("--max-repeats", type=int, default=25)
    parser.add_argument("--round-budget", type=float, default=1.0, help="seconds of rounds per case (default 1)")
    parser.add_argument("--in-features", default=",".join(map(str, IN_FEATURES)))
    parser.add_argument("--out-features", default=",".join(map(str, OUT_FEATURES)))
    parser.add_argument("--rows", default=",".join(map(str, ROWS)))
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    if args.fit is not None:
        for line in fit([json.loads(path.read_text()) for path in args.fit]):
            print(f"rows {line['rows']:5d}  K {line['in_features']:5d}  N {line['out_features']:5d}  forward "
                  f"{line['forward_crossing']:.3f} / {line['forward_crossing_0.9']:.3f} {line['forward_ratios']}  "
                  f"dW {line['weight_grad_crossing']:.3f} / {line['weight_grad_crossing_0.9']:.3f} "
                  f"{line['weight_grad_ratios']}")
        return
    if args.out is None:
        parser.error("--out FILE is needed to measure (or --fit FILE to read a measurement)")
    try:
        ks, ns, rows_ = ([int(v) for v in s.split(",")] for s in (args.in_features, args.out_features, args.rows))
    except ValueError:
        parser.error("--in-features, --out-features and --rows must be comma-separated positive ints")
    if min(ks + ns + rows_) < 1 or args.min_repeats < 1 or args.max_repeats < args.min_repeats:
        parser.error("sizes must be positive and 1 <= --min-repeats <= --max-repeats")
    if not host.available():
        sys.exit("the host all-to-all library (spike products) is not available")
    env = environment(torch.device("cpu"))
    started = time.perf_counter()
    cases = []
    for rows in rows_:
        for k in ks:
            for n in ns:
                case = measure_case(rows, k, n, RATES, args.min_repeats, args.max_repeats, args.round_budget,
                                    getattr(torch, args.dtype))
                cases.append(case)
                fwd = " ".join(f"{case['spike'][str(r)]['forward_ratio']['median']:.2f}" for r in RATES)
                wg = " ".join(f"{case['spike'][str(r)]['weight_grad_ratio']['median']:.2f}" for r in RATES)
                print(f"rows {rows:5d} K {k:5d} N {n:5d} ({case['repeats']:2d} rounds, dense fwd "
                      f"{1e3 * case['dense']['forward_s']['median']:8.2f} ms): spike/dense forward {fwd} | dW {wg}",
                      flush=True)
    env["wall_s"] = time.perf_counter() - started
    try:
        env["load_average_at_end"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        env["load_average_at_end"] = None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {"what": f"one spike-fed Linear(K, N) on rows x K {args.dtype} 0/1 inputs: dense BLAS vs the host spike "
                       "products, interleaved rounds, times in seconds, ratios spike/dense per round",
               "dtype": args.dtype, "rates": list(RATES), "environment": env, "cases": cases}
    args.out.write_text(json.dumps(compact(results), indent=1) + "\n")
    print(f"wrote {args.out} ({env['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
