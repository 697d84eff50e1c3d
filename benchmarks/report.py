"""Result tables of README.md and docs/*.md, written from the committed JSON under benchmarks/results.

A generated table lies between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; NAME is a key
of :data:`TABLES`. Everything between the markers is replaced, so edit this file, not the table.

    python benchmarks/report.py          # rewrite the tables in place
    python benchmarks/report.py --check  # exit 1 (with a diff) when a table and its JSON disagree

One function per table; its docstring says what it shows and from which JSON. Where the current
code stands on a CPU is read from :data:`CPU_FOLDER` only, so a newer CPU run regenerates those
tables by changing that one name. A comparison names both providers and the execution mode, and a
ratio is only against the fastest baseline of the same mode ("not measured" where that mode had
none). A table measured against baselines later found wrong says so in its text (see
benchmarks/results/NOTE-baselines.md), rather than being dropped; its absolute fused figures are
labelled with their folder, device and date.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: the study's published figures (data only; read without importing the package)
PUBLISHED = ROOT / "fusedsnn" / "bench" / "published.py"

#: the newest CPU folder, measured against the strongest baselines mode against mode: every table
#: that states where the current code stands on a CPU reads it (README's, docs/host_performance.md's
#: targets, docs/simt_vs_mimd.md's study comparisons). A newer CPU run is committed as a folder and
#: named here; nothing else changes.
CPU_FOLDER = "cpu-2026-12-03b"
#: the files whose marked tables are generated
DOCUMENTS = ["README.md", "docs/*.md"]

MARKER = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.S)

#: what was wrong with the baselines of results measured before issue 18
OLD_BASELINES = ("measured against the old baselines: snnTorch stepped with `x[t]` (a full-size zero "
                 "gradient per step in the backward, O(T^2) work charged to snnTorch), eager snnTorch only "
                 "(no compiled, graph-captured, SpikingJelly or hoisted-layer baseline); the speed-ups "
                 "overstate ours. See benchmarks/results/NOTE-baselines.md")


def _load(path: str) -> list[dict]:
    return json.loads((RESULTS / path).read_text())


def _one(rows: list[dict], **match) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows match {match}")
    return found[0]


def _time(seconds: float) -> str:
    """3 significant figures in s, ms or us."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            return f"{float(f'{seconds / scale:.3g}'):g} {unit}"
    raise AssertionError


def _ratio(x: float) -> str:
    """Three significant figures below 10x (1.04x, not "1x", where a target sits at 1x or 2x),
    whole numbers above."""
    return f"{x:.0f}x" if x >= 10 else f"{x:.3g}x"


def _env(folder: str) -> dict:
    """environment.json of a result folder: its own, else its first subfolder's, else its parent's."""
    here = RESULTS / folder
    for path in [here / "environment.json", *sorted(here.glob("*/environment.json")),
                 here.parent / "environment.json"]:
        if path.exists():
            return json.loads(path.read_text())
    raise LookupError(f"no environment.json for {folder}")


def _source(folder: str, files: str) -> str:
    """Where a table's numbers come from: folder, files, device and date."""
    env = _env(folder)
    return f"`benchmarks/results/{folder}/` ({files}; {env['device_name']}, {env['date'][:10]})"


def _status(value: float | None, target: float) -> str:
    """A higher-is-better figure against its target."""
    if value is None:
        return "not measured"
    return "met" if value >= target else f"missed by {1 - value / target:.0%}"


def _against(row: dict, rows: list[dict], time_key: str = "median_s") -> str:
    """The fused row's fastest same-mode baseline and its time, from the row's own fields."""
    base = _one(rows, **{k: row[k] for k in row if k in ("neuron", "dtype", "mode", "T", "B", "N", "n", "network",
                                                          "batch", "num_steps", "hidden", "precision")},
                provider=row["baseline"])
    compile_s = f", compile {base['compile_s']:.1f} s" if base.get("compile_s") else ""
    return f"{base['provider']} {_time(base[time_key])}{compile_s}"


# ---------------------------------------------------------------------------------------------
# README.md
# ---------------------------------------------------------------------------------------------

def _training_line(label: str, rows: list[dict], provider: str, **match) -> str:
    """One training-step row: images/s of ``provider`` against its fastest same-mode baseline."""
    f = _one(rows, provider=provider, **match)
    mode = f["execution_mode"]
    if f.get("baseline") is None:
        return f"| {label} | {mode} | {f['images_per_s']:,.0f} img/s | not measured | - |"
    base = _one(rows, provider=f["baseline"], **match)
    compile_s = f", compile {base['compile_s']:.0f} s" if base.get("compile_s") else ""
    return (f"| {label} | {mode} | {f['images_per_s']:,.0f} img/s | {base['provider']} "
            f"{base['images_per_s']:,.0f} img/s{compile_s} | {_ratio(f['speedup_vs_baseline'])} |")


def _timed_line(label: str, rows: list[dict], provider: str, extra: str = "", **match) -> str:
    """One timed row: ``provider``'s median against its fastest same-mode baseline (or why not)."""
    f = _one(rows, provider=provider, **match)
    mode = f["execution_mode"]
    if f.get("median_s") is None:
        return f"| {label} | {mode} | skipped: {f['skipped']} | - | - |"
    if f.get("baseline") is None:
        return f"| {label} | {mode} | {_time(f['median_s'])}{extra} | not measured | - |"
    base = _one(rows, provider=f["baseline"], **match)
    compile_s = f", compile {base['compile_s']:.0f} s" if base.get("compile_s") else ""
    return (f"| {label} | {mode} | {_time(f['median_s'])}{extra} | {base['provider']} {_time(base['median_s'])}"
            f"{compile_s} | {_ratio(f['speedup_vs_baseline'])} |")


def cpu_main() -> str:
    """README "On the development CPU": fused against the fastest baseline of the same execution
    mode (snnTorch eager with unbind, snnTorch compiled, SpikingJelly, the snnTorch twins running
    the static first layer at every step or once, each also compiled)."""
    folder = CPU_FOLDER
    neurons = _load(f"{folder}/neurons-full/neurons.json")
    a2a = _load(f"{folder}/neurons-full/all_to_all.json")
    train = _load(f"{folder}/training-full/throughput.json")
    shd = _load(f"{folder}/training-full/shd.json")
    linear = _load(f"{folder}/training-full/linear_lif.json")
    net3 = _load(f"{folder}/training-full/net3.json")
    on = _load(f"{folder}/training-full/open_neuromorphic.json")
    lines = ["| case | mode | fused | fastest baseline, same mode | speed-up |", "| --- | --- | --- | --- | --- |"]
    for T, B, N, what in ((25, 128, 1000, ""), (1, 1, 8, " (per-call cost)")):
        for provider, mode in (("fused-host", "eager"), ("fused-host-compiled", "compiled")):
            f = _one(neurons, provider=provider, neuron="Leaky", dtype="float32", mode="forward+backward", T=T, B=B, N=N)
            lines.append(f"| Leaky forward+backward, T={T}, B={B}, N={N}{what} | {mode} | {_time(f['median_s'])} | "
                         f"{_against(f, neurons)} | {_ratio(f['speedup_vs_baseline'])} |")
    for net, label in (("DSNN", "DSNN training step (784-1000-10, B=128, T=25, AdamW)"),
                       ("CSNN", "CSNN training step (12C5-MP2-64C5-MP2-10, B=128, T=25, AdamW)")):
        for provider in ("fused", "fused-compiled"):
            if any(r["provider"] == provider and r["network"] == net for r in train):
                lines.append(_training_line(label, train, provider, network=net))
    lines.append(_training_line("SHD-shaped training step (700-RLeaky(256, all-to-all)-20, B=64, T=100)", shd,
                                "fused", network="SHD"))
    for provider, what in (("fused", ""), ("fused-spike-products", ", spike products"), ("fused-compiled", "")):
        for r in net3:
            if r["provider"] == provider:
                lines.append(_timed_line(f"3-layer 256-512-512-10 Linear+Leaky training step{what}, T={r['T']}, "
                                         f"B={r['B']}, 20% input spikes", net3, provider, T=r["T"], B=r["B"]))
    for r in on:
        if r["provider"] != "fused" or r.get("median_s") is None:
            continue
        extra = (f"; the neuron adds {100 * r['neuron_overhead_vs_linear']:.0f}% to the Linear's own time"
                 if r.get("neuron_overhead_vs_linear") is not None else "")
        lines.append(_timed_line(f"Open Neuromorphic shape: Linear({r['n']}, {r['n']}) + LIF forward+backward, "
                                 f"B={r['B']}, T={r['T']}", on, "fused", extra, n=r["n"], T=r["T"], B=r["B"]))
    for N in sorted({r["N"] for r in linear}):
        f = _one(linear, provider="fused-linear-leaky", N=N)
        unfused = _one(linear, provider="linear+fused-leaky", N=N)
        s = _one(linear, provider="snntorch", N=N)
        lines.append(f"| Linear({f['K']}, {N}) + Leaky forward+backward, T={f['T']}, B={f['B']}, spike input | "
                     f"eager | {_time(f['median_s'])} | snntorch {_time(s['median_s'])}; "
                     f"nn.Linear + fused Leaky {_time(unfused['median_s'])} | "
                     f"{_ratio(s['median_s'] / f['median_s'])}; {_ratio(unfused['median_s'] / f['median_s'])} |")
    for T, B, N in ((100, 32, 256), (25, 128, 1000), (10000, 2, 8)):
        key = dict(neuron="RLeaky-all-to-all", T=T, B=B, N=N, mode="forward+backward")
        f, s = _one(a2a, provider="fused", **key), _one(a2a, provider="snntorch", **key)
        lines.append(f"| all-to-all RLeaky forward+backward, T={T}, B={B}, N={N} | eager | {_time(f['median_s'])} | "
                     f"snntorch {_time(s['median_s'])} | {_ratio(s['median_s'] / f['median_s'])} |")
    note = (f"\nFrom `benchmarks/results/{folder}/` (neurons-full/, training-full/): 2 threads, medians of 7 "
            "interleaved repeats (q20/q80 in the JSON). Every ratio is against the fastest baseline measured in "
            "the same execution mode. Compiled rows: the fused op or network under torch.compile against "
            "snnTorch's loop, or its twin network, compiled whole (compile time not counted in the step). "
            "Training baselines are snnTorch's twins running the static first layer at every step "
            "(`snntorch-tutorial`) or once (`snntorch-hoisted`), eager and compiled; the 3-layer net's are "
            "snnTorch stepped over `unbind` and SpikingJelly's multi-step LIF. Rows a compile budget skips say "
            "so (T above `--compile-max-t`). The all-to-all and fused-Linear rows have snnTorch (eager, unbind) "
            "as their only baseline, SpikingJelly having no all-to-all recurrent LIF with snnTorch's reset order; "
            "the fused-Linear rows also give the ratio to `nn.Linear` followed by the fused Leaky (below 1: the "
            "one-op form loses on this CPU). The spike-products row sums its products in another order than BLAS "
            "(docs/design.md gives the tolerance).\n")
    return "\n".join(lines) + "\n" + note


def gpu_check(folder: str) -> str:
    """README's GPU tables: each measurement with its execution mode; a speed-up only against
    snnTorch in the same mode (these runs measured snnTorch eager only, so graph and compiled
    rows have none)."""
    targets = _load(f"{folder}/gpu_targets.json")
    steps = _load(f"{folder}/step_modes.json")
    modes = {"cuda_graph": "graph (CUDA graph replay)", "compile": "compiled (torch.compile)", "eager": "eager"}
    lines = ["| case | execution mode | fused | snnTorch, same mode | speed-up, same mode |",
             "| --- | --- | --- | --- | --- |"]
    for r in targets:
        if not r["provider"].startswith("fused"):
            continue
        graph = "CUDA graph" in r["provider"]
        base = None if graph else _one(targets, provider="snntorch", mode=r["mode"], T=r["T"], B=r["B"], N=r["N"])
        frac = r.get("fraction_of_copy_bandwidth")
        fused = _time(r["median_s"]) + (f", {frac:.2f} of copy bandwidth (wall clock)" if frac else "")
        lines.append(f"| Leaky {r['mode']}, T={r['T']}, B={r['B']}, N={r['N']:,} | "
                     f"{modes['cuda_graph'] if graph else 'eager'} | {fused} | "
                     f"{'not measured' if base is None else _time(base['median_s'])} | "
                     f"{'-' if base is None else _ratio(base['median_s'] / r['median_s'])} |")
    for r in steps:
        if r["provider"] != "fused":
            continue
        base = [b for b in steps if b["provider"] == "snntorch" and b["network"] == r["network"]
                and b["mode"] == r["mode"]]
        baseline = f"{base[0]['images_per_s']:,.0f} img/s" if base else "not measured"
        ratio = _ratio(r["images_per_s"] / base[0]["images_per_s"]) if base else "-"
        lines.append(f"| {r['network']} training step, B={r['batch']}, T={r['num_steps']} | {modes[r['mode']]} | "
                     f"{r['images_per_s']:,.0f} img/s | {baseline} | {ratio} |")
    return ("\n".join(lines) + f"\n\nFrom `benchmarks/results/{folder}/` (gpu_targets.json, step_modes.json); "
            f"{OLD_BASELINES}. No snnTorch was compiled or graph-captured in that run, so those rows have "
            "no baseline; the study's published IPU/A100 figures are in `fusedsnn bench`'s throughput table.\n")


#: the memory section's networks (fusedsnn/bench/memory.py), as the tables name them
_MEMORY_NETS = {"MLP3": "3-layer 256-512-512-10", "DSNN": "DSNN 784-1000-10"}
#: what the memory section's snnTorch rows ran (fusedsnn/bench/memory.py's _SnnTorchStepped), and
#: which of the old baselines' faults reach them
_MEMORY_SNNTORCH = ("snnTorch here is snnTorch 1.0.0's Leaky neurons stepped eagerly one time step at a time, "
                    "sharing the fused model's Linear layers: the 3-layer network indexes its input with `x[t]`, "
                    "an input that does not require grad, so the full-size zero gradient of the old baselines "
                    "does not arise here; the DSNN runs its first (static-input) layer at every step, as "
                    "snnTorch's tutorial does (no hoisted twin), and nothing else (compiled, graph-captured, "
                    "SpikingJelly) was measured")


def _mib(mib: float) -> str:
    """3 significant figures in MiB."""
    return f"{float(f'{mib:.3g}'):g} MiB"


def _fraction(x: float) -> str:
    """A ratio of two fused modes, or of memory, to 2 significant figures (0.10x, 1.3x)."""
    return f"{x:#.2g}x"


def _memory_cases(rows: list[dict]):
    """(network, T, {provider: row}) of a memory section's rows, network by network, T ascending."""
    for net in _MEMORY_NETS:
        for T in sorted({r["num_steps"] for r in rows if r["network"] == net}):
            yield net, T, {r["provider"]: r for r in rows if r["network"] == net and r["num_steps"] == T}


def memory_gpu(folder: str) -> str:
    """README "On a GPU: memory-lean training": the memory section on CUDA. The two memory-lean modes
    relative to the fused default (peak and speed: ratios among fused modes only), the default's
    absolute figures, and snnTorch's absolute figures in a column of their own, an old baseline with no
    ratio drawn. From the folder's memory/memory.json."""
    rows = _load(f"{folder}/memory/memory.json")
    chunk, = {r["chunk_steps"] for r in rows if r["provider"] == "fused-chunked"}
    lines = [f"| network, T | `memory_lean(m)`: peak, speed | `memory_lean(m, time_chunk={chunk})`: peak, speed | "
             "fused default: peak, step time | snnTorch, eager (old baseline, no ratio): peak, step time |",
             "| --- | --- | --- | --- | --- |"]
    for net, T, case in _memory_cases(rows):
        lean, chunked, fused, snn = (case[p] for p in ("fused-lean", "fused-chunked", "fused", "snntorch"))
        lines.append(f"| {_MEMORY_NETS[net]}, T={T} | {_fraction(lean['peak_vs_fused'])}, "
                     f"{_fraction(lean['speed_vs_fused'])} | {_fraction(chunked['peak_vs_fused'])}, "
                     f"{_fraction(chunked['speed_vs_fused'])} | "
                     f"{_mib(fused['peak_mib'])}, {_time(fused['median_s'])} | "
                     f"{_mib(snn['peak_mib'])}, {_time(snn['median_s'])} |")
    long = [r for r in rows if r["provider"] == "fused-chunked" and r["num_steps"] > chunk]
    peak = sorted(r["peak_vs_fused"] for r in long)
    speed = sorted(r["speed_vs_fused"] for r in long)
    steps = " and ".join(str(T) for T in sorted({r["num_steps"] for r in long}))
    repeats = ", ".join(f"{n} at T={T}" for T, n in sorted({(r["num_steps"], r["repeats"]) for r in rows}))
    return ("\n".join(lines) + f"\n\nFrom {_source(f'{folder}/memory', 'memory.json')}; {OLD_BASELINES}. "
            f"{_MEMORY_SNNTORCH}. One training step (forward, rate-coded cross entropy, backward; no optimizer), "
            f"batch {rows[0]['batch']}, every provider eager. Peak: the most tensor memory held above the step's "
            "start (`max_memory_allocated`, exact). Step time: the median of the repeats "
            f"({repeats}). Memory-lean columns: the mode's peak over the fused default's, and its speed (the "
            "default's step time over the mode's); these are the only ratios, all between fused modes. At "
            f"T={steps} `time_chunk={chunk}` keeps {_fraction(peak[0])} to {_fraction(peak[-1])} of the default's "
            f"peak at {_fraction(speed[0])} to {_fraction(speed[-1])} of its speed; at T={chunk} or less one chunk "
            "covers the sequence.\n")


# ---------------------------------------------------------------------------------------------
# docs/host_performance.md
# ---------------------------------------------------------------------------------------------

#: issue 8's targets for the host backend (Leaky, float32, 2 threads): a ratio to snnTorch's step
#: loop (here: to the fastest baseline of the same execution mode) or a fraction of copy bandwidth;
#: issue 9's all-to-all targets travel in the JSON rows (``target_speedup``)
HOST_TARGETS = {"grid": 1.0, "large": 20.0, "copy": 0.5, "dsnn": 5.0}


def _grid_summary(rows: list[dict], key: str) -> str:
    """The lowest ratio over a Leaky grid (with its point) and the T=1 row's ratios."""
    timed = [r for r in rows if r.get(key) is not None]
    if not timed:
        return "not measured"
    low = min(timed, key=lambda r: r[key])
    t1 = ", ".join(_ratio(r[key]) for r in sorted(timed, key=lambda r: (r["B"], r["N"])) if r["T"] == 1)
    return (f"lowest {_ratio(low[key])} (T={low['T']}, B={low['B']}, N={low['N']}); "
            f"T=1 row (B x N = 1x8 ... 128x1000): {t1}")


def host_targets() -> str:
    """docs/host_performance.md, the current standing: issue 8's and 9's targets for the host backend,
    each judged against the fastest baseline measured in the same execution mode. From CPU_FOLDER:
    neurons-full/neurons.json, neurons-full/all_to_all.json, training-full/throughput.json."""
    neurons = _load(f"{CPU_FOLDER}/neurons-full/neurons.json")
    a2a = _load(f"{CPU_FOLDER}/neurons-full/all_to_all.json")
    train = _load(f"{CPU_FOLDER}/training-full/throughput.json")
    leaky = dict(neuron="Leaky", dtype="float32")
    big = dict(T=25, B=128, N=1000, **leaky)
    lines = ["| target | mode | fused | fastest baseline, same mode | ratio | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    for provider, mode in (("fused-host", "eager"), ("fused-host-compiled", "compiled")):
        grid = [r for r in neurons if r["provider"] == provider and r["mode"] == "forward+backward"
                and all(r[k] == v for k, v in leaky.items())]
        timed = [r for r in grid if r["speedup_vs_baseline"] is not None]
        summary = _grid_summary(timed, "speedup_vs_baseline")
        below = sum(r["speedup_vs_baseline"] < HOST_TARGETS["grid"] for r in timed)
        untimed = sorted({r["T"] for r in grid} - {r["T"] for r in timed})
        fused = f"{len(timed)} points" + (f"; T={', '.join(map(str, untimed))} not measured (above the compile "
                                          "budget)" if untimed else "")
        names = sorted({r["baseline"] for r in timed})
        count = {n: sum(r["baseline"] == n for r in timed) for n in names}
        lines.append(f"| Leaky fwd+bwd >= {HOST_TARGETS['grid']:g}x at every T x B x N point | {mode} | {fused} | "
                     f"fastest per point: {', '.join(f'{n} at {count[n]}' for n in names)} | {summary} | "
                     f"{'met' if not below else f'missed at {below} of {len(timed)} points'} |")
    for provider, mode in (("fused-host", "eager"), ("fused-host-compiled", "compiled")):
        f = _one(neurons, provider=provider, mode="forward+backward", **big)
        frac = f.get("fraction_of_copy_bandwidth")
        lines.append(f"| Leaky fwd+bwd at T=25, B=128, N=1000 >= {HOST_TARGETS['large']:g}x | {mode} | "
                     f"{_time(f['median_s'])}{f', {frac:.0%} of copy bandwidth' if frac else ''} | "
                     f"{_against(f, neurons)} | {_ratio(f['speedup_vs_baseline'])} | "
                     f"{_status(f['speedup_vs_baseline'], HOST_TARGETS['large'])} |")
    fwd = _one(neurons, provider="fused-host", mode="forward", **big)
    grad = _one(neurons, provider="fused-host", mode="forward-grad-mode", **big)
    slower = fwd["median_s"] / grad["median_s"]
    lines.append(f"| no_grad forward <= grad-mode forward (T=25, B=128, N=1000) | eager | {_time(fwd['median_s'])} "
                 f"no_grad, {_time(grad['median_s'])} grad mode | - | - | "
                 f"{'met' if slower <= 1 else f'missed: no_grad takes {slower:.2f}x the grad-mode time'} |")
    lines.append(f"| no_grad forward >= {HOST_TARGETS['copy']:.0%} of copy bandwidth | eager | "
                 f"{fwd['fraction_of_copy_bandwidth']:.0%} | - | - | "
                 f"{_status(fwd['fraction_of_copy_bandwidth'], HOST_TARGETS['copy'])} |")
    f = _one(train, provider="fused", network="DSNN")
    base = _one(train, provider=f["baseline"], network="DSNN")
    lines.append(f"| DSNN training step (B={f['batch']}, T={f['num_steps']}) >= {HOST_TARGETS['dsnn']:g}x | eager | "
                 f"{f['images_per_s']:,.0f} img/s | {base['provider']} {base['images_per_s']:,.0f} img/s | "
                 f"{_ratio(f['speedup_vs_baseline'])} | {_status(f['speedup_vs_baseline'], HOST_TARGETS['dsnn'])} |")
    for T, B, N in ((100, 32, 256), (25, 128, 1000), (10000, 2, 8)):
        key = dict(neuron="RLeaky-all-to-all", T=T, B=B, N=N, mode="forward+backward")
        f, s = _one(a2a, provider="fused", **key), _one(a2a, provider="snntorch", **key)
        ratio = s["median_s"] / f["median_s"]
        lines.append(f"| all-to-all RLeaky fwd+bwd, T={T}, B={B}, N={N} >= {f['target_speedup']:g}x | eager | "
                     f"{_time(f['median_s'])} | snntorch {_time(s['median_s'])} | {_ratio(ratio)} | "
                     f"{_status(ratio, f['target_speedup'])} |")
    lines.append("| tiny fwd+bwd (T=1, B=1, N=8) within 2x of a bare `autograd.Function` | eager | not measured | "
                 "- | - | not measured |")
    note = (f"\nFrom {_source(CPU_FOLDER, 'neurons-full/, training-full/')}: 2 threads, medians of 7 interleaved "
            "repeats (q20/q80 in the JSON). Every ratio is against the fastest baseline measured in the same "
            "execution mode: eager, snnTorch 1.0.0 stepped over `x.unbind(0)` or SpikingJelly's multi-step LIF "
            "(training: snnTorch's twin running the static first layer once, `snntorch-hoisted`, or at every step, "
            "`snntorch-tutorial`); compiled, snnTorch's loop under `torch.compile` (compile time not counted). "
            "The training rows here are eager (issue 19's table below has the compiled ones); the all-to-all op "
            "was measured eager only, and the all-to-all's one baseline is snnTorch "
            "(eager, unbind), SpikingJelly having no all-to-all recurrent LIF with snnTorch's reset order. The bare "
            "`autograd.Function` of the per-call target is timed only by `benchmarks/host_overhead.py calls`, "
            "whose last log is from before issue 18 (below).\n")
    return "\n".join(lines) + "\n" + note


#: where each pre-issue-18 CPU folder keeps the files the targets read
_OLD_HOST = {"cpu-2026-11-26": ("neurons-full/neurons.json", "neurons-full/all_to_all.json", "quick/throughput.json"),
             "cpu-2026-11-26b": ("neurons/neurons.json", "all_to_all/all_to_all.json", "quick/throughput.json")}


def host_targets_old(folder: str) -> str:
    """docs/host_performance.md, history: the fused figures of a pre-issue-18 CPU folder at issue 8's
    and 9's target shapes, with the ratio to the one baseline it measured (snnTorch stepped with
    ``x[t]``, eager), labelled as old. From the folder's neurons, all_to_all and quick/throughput JSON."""
    paths = _OLD_HOST[folder]
    neurons, a2a, train = (_load(f"{folder}/{p}") for p in paths)
    leaky = dict(neuron="Leaky", dtype="float32", provider="fused-host")
    big = dict(T=25, B=128, N=1000, **leaky)
    lines = ["| target shape | fused | snnTorch, eager only (old baseline) | ratio to that baseline |",
             "| --- | --- | --- | --- |"]
    grid = [r for r in neurons if r["mode"] == "forward+backward" and all(r[k] == v for k, v in leaky.items())]
    summary = _grid_summary(grid, "speedup_vs_snntorch")
    lines.append(f"| Leaky fwd+bwd, every T x B x N point | {len(grid)} points | snntorch at each point | {summary} |")
    f = _one(neurons, mode="forward+backward", **big)
    s = _one(neurons, mode="forward+backward", **{**big, "provider": "snntorch"})
    lines.append(f"| Leaky fwd+bwd, T=25, B=128, N=1000 | {_time(f['median_s'])}, "
                 f"{f['fraction_of_copy_bandwidth']:.0%} of copy bandwidth | {_time(s['median_s'])} | "
                 f"{_ratio(s['median_s'] / f['median_s'])} |")
    fwd = _one(neurons, mode="forward", **big)
    grad = _one(neurons, mode="forward-grad-mode", **big)
    lines.append(f"| Leaky forward, T=25, B=128, N=1000: no_grad / grad mode | {_time(fwd['median_s'])} / "
                 f"{_time(grad['median_s'])}; no_grad at {fwd['fraction_of_copy_bandwidth']:.0%} of copy "
                 "bandwidth | - | - |")
    f, s = _one(train, provider="fused", network="DSNN"), _one(train, provider="snntorch", network="DSNN")
    lines.append(f"| DSNN training step, B={f['batch']}, T={f['num_steps']} "
                 "(snnTorch's twin: first layer at every step) | "
                 f"{f['images_per_s']:,.0f} img/s | {s['images_per_s']:,.0f} img/s | "
                 f"{_ratio(f['images_per_s'] / s['images_per_s'])} |")
    for T, B, N in ((100, 32, 256), (25, 128, 1000), (10000, 2, 8)):
        key = dict(neuron="RLeaky-all-to-all", T=T, B=B, N=N, mode="forward+backward")
        f, s = _one(a2a, provider="fused", **key), _one(a2a, provider="snntorch", **key)
        lines.append(f"| all-to-all RLeaky fwd+bwd, T={T}, B={B}, N={N} | {_time(f['median_s'])} | "
                     f"{_time(s['median_s'])} | {_ratio(s['median_s'] / f['median_s'])} |")
    note = (f"\nFrom {_source(folder, ', '.join(paths))}; {OLD_BASELINES}. The fused figures stand as measured on "
            "that machine and commit; the ratios are not comparisons with the strongest baseline, and whether a "
            "target is met is judged by the first table of this page.\n")
    return "\n".join(lines) + "\n" + note


def all_to_all_old(folder: str, path: str) -> str:
    """docs/host_performance.md, history: every fused all-to-all row of a pre-issue-18 folder with the
    snnTorch it was compared with (stepped with ``x[t]``, eager), labelled as old. From ``path``."""
    rows = _load(f"{folder}/{path}")
    lines = ["| neuron, fwd+bwd | fused | snnTorch stepped with `x[t]`, eager (old baseline) "
             "| ratio to that baseline |",
             "| --- | --- | --- | --- |"]
    for f in rows:
        if f["provider"] != "fused":
            continue
        s = _one(rows, provider="snntorch", **{k: f[k] for k in ("neuron", "T", "B", "N", "mode")})
        lines.append(f"| {f['neuron'].replace('-all-to-all', '')}, T={f['T']}, B={f['B']}, N={f['N']} | "
                     f"{_time(f['median_s'])} | {_time(s['median_s'])} | {_ratio(s['median_s'] / f['median_s'])} |")
    return "\n".join(lines) + f"\n\nFrom {_source(folder, path)}, {rows[0]['threads']} threads; {OLD_BASELINES}.\n"


# ---------------------------------------------------------------------------------------------
# docs/gpu.md
# ---------------------------------------------------------------------------------------------

#: the H200 run of the GPU check that README and the docs analyse (measured before issue 18)
H200_FOLDER = "h200-2026-11-26"
#: the H100 run of the GPU check, with its memory phase (measured before issue 18)
H100_FOLDER = "h100-2026-11-26"
#: the GPU check's runs, in order; all measured before issue 18 (snnTorch eager only)
GPU_RUNS = (("H200, first run", f"{H200_FOLDER}/first-run"), ("H200, final run", H200_FOLDER),
            ("H100, later commit", H100_FOLDER))
_STEP_MODES = {"eager": "eager", "compile": "compiled (torch.compile)", "cuda_graph": "graph (CUDA graph replay)"}
#: bytes each kernel moves per neuron-step (docs/design.md: Leaky float32, nothing learnable; the
#: backward with materialised upstream gradients; a copy reads and writes 4 B)
_KERNEL_BYTES = {"lif_forward_kernel": 12, "lif_backward_kernel": 16, "Memcpy DtoD (Device -> Device)": 8}


def gpu_targets() -> str:
    """docs/gpu.md: every GPU check run (GPU_RUNS) against the GPU targets, each row in its execution
    mode with a ratio only against snnTorch run the same way. From each run's gpu_targets.json and
    step_modes.json; targets from the rows' ``target_*`` fields."""
    runs = [(label, folder, _load(f"{folder}/gpu_targets.json"), _load(f"{folder}/step_modes.json"))
            for label, folder in GPU_RUNS]
    lines = ["| case | execution mode | run | fused | snnTorch, same mode | speed-up, same mode | target | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, graph in (("forward", False), ("forward+backward", False), ("forward+backward", True)):
        for label, _, targets, _ in runs:
            found = [r for r in targets if r["provider"].startswith("fused") and r["mode"] == mode
                     and ("CUDA graph" in r["provider"]) == graph]
            if not found:
                continue
            r = found[0]
            base = None if graph else _one(targets, provider="snntorch", mode=mode)
            ratio = None if base is None else base["median_s"] / r["median_s"]
            copy, speed = r.get("target_fraction_of_copy_bandwidth"), r.get("target_speedup_vs_snntorch")
            target = status = "-"
            if copy and speed:
                target = f">= {copy:.2f} of copy bandwidth; >= {speed:g}x snnTorch, same mode"
                speed_status = (f"{_status(ratio, speed)} (old baseline)" if ratio is not None
                                else "no same-mode baseline measured")
                status = f"copy: {_status(r['fraction_of_copy_bandwidth'], copy)}; {speed:g}x: {speed_status}"
            lines.append(f"| Leaky {mode}, T={r['T']}, B={r['B']}, N={r['N']:,} | "
                         f"{_STEP_MODES['cuda_graph' if graph else 'eager']} | {label} | {_time(r['median_s'])}, "
                         f"{r['fraction_of_copy_bandwidth']:.2f} of copy bandwidth | "
                         f"{'not measured' if base is None else _time(base['median_s'])} | "
                         f"{'-' if ratio is None else _ratio(ratio)} | {target} | {status} |")
    for network in ("DSNN", "CSNN"):
        for mode in _STEP_MODES:
            for label, _, _, steps in runs:
                r = _one(steps, provider="fused", network=network, mode=mode)
                base = [b for b in steps if b["provider"] == "snntorch" and b["network"] == network
                        and b["mode"] == mode]
                target = r.get("target_images_per_s")
                baseline = f"{base[0]['images_per_s']:,.0f} img/s" if base else "not measured"
                ratio = _ratio(r["images_per_s"] / base[0]["images_per_s"]) if base else "-"
                lines.append(f"| {network} training step, B={r['batch']}, T={r['num_steps']} | {_STEP_MODES[mode]} | "
                             f"{label} | {r['images_per_s']:,.0f} img/s | {baseline} | {ratio} | "
                             f"{f'>= {target:,} img/s' if target else '-'} | "
                             f"{_status(r['images_per_s'], target) if target else '-'} |")
    sources = "; ".join(f"{label}: {_source(folder, 'gpu_targets.json, step_modes.json')}"
                        for label, folder in GPU_RUNS)
    return ("\n".join(lines) + f"\n\nFrom {sources}. All {OLD_BASELINES}. Only eager snnTorch was measured "
            "in these runs, so compiled and graph rows have no baseline: their speed-up waits for a GPU run of "
            "the current bench, which times snnTorch compiled and captured in a CUDA graph. Medians of 20 "
            "synchronised wall-clock samples; copy bandwidth is a device-to-device copy of one `[T, B, N]` "
            "float32 tensor timed the same way in the same run.\n")


def gpu_kernels(folder: str) -> str:
    """docs/gpu.md: the Leaky kernels' profiler times at the target shape against a copy kernel timed in
    the same run, with the bytes each must move (_KERNEL_BYTES). From the folder's profile.json
    ("fwd+bwd, real upstream grads" and "copy of one [T,B,N] tensor")."""
    leaky = _load(f"{folder}/profile.json")["leaky"]
    T, B, N = leaky["shape"]
    kernels = {k["name"]: k["us"] * 1e-6 for k in leaky["fwd+bwd, real upstream grads"]["top"]}
    kernels.update({k["name"]: k["us"] * 1e-6 for k in leaky["copy of one [T,B,N] tensor"]["top"]})
    rate = {name: _KERNEL_BYTES[name] * T * B * N / kernels[name] for name in _KERNEL_BYTES}
    copy = rate["Memcpy DtoD (Device -> Device)"]
    lines = ["| kernel | GPU time | bytes per neuron-step | achieved | share of the copy kernel's bandwidth |",
             "| --- | --- | --- | --- | --- |"]
    for name, size in _KERNEL_BYTES.items():
        lines.append(f"| `{name}` | {_time(kernels[name])} | {size} B | {rate[name] / 1e12:.2f} TB/s | "
                     f"{rate[name] / copy:.2f} |")
    return ("\n".join(lines) + f"\n\nFrom {_source(folder, 'profile.json')}: profiler kernel times of one "
            f"forward+backward with materialised upstream gradients, Leaky float32, T={T}, B={B}, N={N:,}. The "
            "bytes are the kernels' model (docs/design.md), not counters.\n")


def gpu_step_variants(folder: str) -> str:
    """docs/gpu.md: one training step per loss and optimizer variant, eager and replayed from a CUDA
    graph, with the kernel count where it was profiled. From the folder's profile.json ("networks")."""
    nets = _load(f"{folder}/profile.json")["networks"]
    lines = ["| network | loss | AdamW | eager step (host issue time) | graph replay | kernels per step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for network, variants in nets.items():
        for name, v in variants.items():
            loss, adamw = name.split(", AdamW ")
            eager = f"{v['eager']['median_ms']:.2f} ms ({v['eager']['issue_ms']:.2f} ms)"
            lines.append(f"| {network} | {loss.replace(' loss', '')} | {adamw} | {eager} | "
                         f"{v['graph']['median_ms']:.3f} ms | {v.get('kernels', '-')} |")
    return ("\n".join(lines) + f"\n\nFrom {_source(folder, 'profile.json')}: the fused models, B=128, T=25, "
            "medians. \"loop\": the rate-coded cross entropy as one `nll_loss` per time step, as snnTorch's; "
            "\"batched\": one `cross_entropy` over all T x B rows (`population.ce_rate_loss` now). Both "
            "columns are the fused model in two execution modes; no baseline is compared here.\n")


#: what the CSNN step's heaviest kernels do (patterns of their profiler names)
_CSNN_KERNELS = (("fft2d_r2c", "FFT convolution path: forward FFT"),
                 ("gemm_cf32", "FFT convolution path: complex GEMM"),
                 ("fft2d_c2r", "FFT convolution path: inverse FFT"), ("wgrad", "weight gradient, implicit GEMM (TF32)"),
                 ("max_pool_backward", "max-pool backward"), ("nchwToNhwc", "NCHW to NHWC conversion"),
                 ("Optimizer.step", "AdamW step (profiler range)"), ("fprop", "forward convolution"))


def gpu_csnn_kernels(folder: str) -> str:
    """docs/gpu.md: the CSNN graph step's heaviest kernels (batched loss, fused AdamW). From the
    folder's profile.json (networks.CSNN)."""
    v = _load(f"{folder}/profile.json")["networks"]["CSNN"]["batched loss, AdamW fused"]
    lines = ["| part | kernel (profiler name, cut) | calls | GPU time, all calls |", "| --- | --- | --- | --- |"]
    for k in v["top"]:
        part = next((label for pattern, label in _CSNN_KERNELS if pattern in k["name"]), "")
        lines.append(f"| {part} | `{k['name'].strip()}` | {k['count']} | {_time(k['us'] * 1e-6)} |")
    lines.append(f"| all kernels of the step | | {v['kernels']} | {_time(v['gpu_us'] * 1e-6)} |")
    neurons = "" if any("lif_" in k["name"] for k in v["top"]) else " No fused neuron kernel is among these."
    return ("\n".join(lines) + f"\n\nFrom {_source(folder, 'profile.json')}: one CSNN training step, B=128, "
            f"T=25; the step replays from a CUDA graph in {v['graph']['median_ms']:.2f} ms.{neurons}\n")


_LAYOUT_LINE = re.compile(r"CSNN graph, cudnn\.benchmark=(\w+), (\w+): ([\d.]+) ms \((\d+) img/s\)")


def gpu_csnn_layouts(folder: str) -> str:
    """docs/gpu.md: the CSNN graph step in NCHW and channels-last, with and without cudnn.benchmark. The
    run wrote no JSON: parsed from the folder's csnn_layout.log, one line per variant."""
    found = _LAYOUT_LINE.findall((RESULTS / folder / "csnn_layout.log").read_text())
    if not found:
        raise LookupError(f"no variant lines in {folder}/csnn_layout.log")
    lines = ["| layout | `cudnn.benchmark` | graph step | images/s |", "| --- | --- | --- | --- |"]
    for bench, layout, ms, ips in found:
        lines.append(f"| {layout} | {bench} | {ms} ms | {int(ips):,} |")
    return ("\n".join(lines) + f"\n\nFrom {_source(folder, 'csnn_layout.log')}: the fused CSNN, B=128, T=25, "
            "replayed from a CUDA graph.\n")


# ---------------------------------------------------------------------------------------------
# docs/design.md
# ---------------------------------------------------------------------------------------------

#: the CPU folder of the memory-lean modes' last session (measured before issue 18): the spike
#: products and the speed runs (ratios between fusedsnn's own paths, no baseline library) and the
#: memory section (snnTorch in it an old baseline)
LEAN_CPU_FOLDER = "cpu-2026-11-26c"
#: what the products' shapes are, where they are a network's
_SPIKE_SHAPES = {(16000, 512, 512): " (the 3-layer network's hidden layer, T=500, B=32, whole sequence)",
                 (1024, 512, 512): " (the same, one 32-step chunk)"}


def spike_products() -> str:
    """docs/design.md: one spike-fed Linear layer, the spike product's forward and weight gradient
    against BLAS's (``F.linear`` and its ``grad_output^T @ input``) on the same input. From
    LEAN_CPU_FOLDER's spike_products.json (``benchmarks/memory_speed.py --products``)."""
    rows = _load(f"{LEAN_CPU_FOLDER}/spike_products.json")
    lines = ["| rows x in -> out | spike rate | forward: BLAS, spike product | spike / BLAS time "
             "| weight gradient: BLAS, spike product | spike / BLAS time |", "| --- | --- | --- | --- | --- | --- |"]
    seen = set()
    for r in rows:
        shape = (r["rows"], r["in"], r["out"])
        name = "same" if shape in seen else f"{r['rows']} x {r['in']} -> {r['out']}{_SPIKE_SHAPES.get(shape, '')}"
        seen.add(shape)
        lines.append(f"| {name} | {r['rate']:.2f} | "
                     f"{_time(r['forward_blas_ms'] * 1e-3)}, {_time(r['forward_spike_ms'] * 1e-3)} | "
                     f"{r['forward_spike_ms'] / r['forward_blas_ms']:.2f}x | "
                     f"{_time(r['dW_blas_ms'] * 1e-3)}, {_time(r['dW_spike_ms'] * 1e-3)} | "
                     f"{r['dW_spike_ms'] / r['dW_blas_ms']:.2f}x |")
    threads = ", ".join(str(n) for n in sorted({r["threads"] for r in rows}))
    return ("\n".join(lines) + f"\n\nFrom {_source(LEAN_CPU_FOLDER, 'spike_products.json')}: float32, {threads} "
            "threads, medians (the command, its repeats and the load are in spike_products.log). Both columns "
            "are fusedsnn's own layer in one execution mode (eager) on the same spikes; below 1x the spike "
            "product is faster. No baseline library is compared.\n")


#: the runs of benchmarks/memory_speed.py in LEAN_CPU_FOLDER, in the table's order
_MEMORY_SPEED = ("memory_speed_T500_2threads.json", "memory_speed_T500_1thread.json",
                 "memory_speed_T2000_2threads.json", "memory_speed_DSNN_T500_2threads.json")
#: benchmarks/memory_speed.py's providers other than the fused default, as the table names them
_SPEED_MODES = {"chunked-32": "`time_chunk=32`", "chunked-64": "`time_chunk=64`",
                "chunked-32-dense": "`time_chunk=32`, BLAS products",
                "default+products": "`saved_state=\"default\"` + spike products (no chunking)"}


def memory_speed() -> str:
    """docs/design.md: the chunked mode's speed (and the spike products' share of it) relative to the
    fused default, as the median of per-round ratios over interleaved rounds. From LEAN_CPU_FOLDER's
    memory_speed_*.json (``benchmarks/memory_speed.py``)."""
    lines = ["| network, T, threads, rounds | fused default, step time | "
             + " | ".join(_SPEED_MODES.values()) + " |", "|" + " --- |" * (2 + len(_SPEED_MODES))]
    batches = set()
    for path in _MEMORY_SPEED:
        rows = _load(f"{LEAN_CPU_FOLDER}/{path}")
        fused = _one(rows, provider="fused")
        batches.add(fused["batch"])
        cells = [f"{_MEMORY_NETS[fused['network']]}, T={fused['num_steps']}, {fused['threads']} "
                 f"thread{'s' if fused['threads'] > 1 else ''}, {fused['repeats']} rounds", _time(fused["median_s"])]
        for provider in _SPEED_MODES:
            r = _one(rows, provider=provider)
            cells.append(f"{r['speed_vs_fused']:.2f}x ({r['speed_q20']:.2f}-{r['speed_q80']:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    batch = ", ".join(str(b) for b in sorted(batches))
    return ("\n".join(lines) + f"\n\nFrom {_source(LEAN_CPU_FOLDER, ', '.join(_MEMORY_SPEED))}: one training step, "
            f"batch {batch}, the modes timed in interleaved rounds; speed relative to fused default (its step "
            "time over the mode's) as the median of the per-round ratios, q20-q80 in brackets. Every column is "
            "a fusedsnn mode, eager; no baseline library is compared. The DSNN row is the run after its static "
            "first layer moved to once per sequence (memory_speed.log's last block).\n")


def memory_cpu() -> str:
    """docs/design.md: the memory section's exact bytes and RSS on the CPU, the memory-lean modes against
    fused default and against snnTorch (an old baseline, labelled). From LEAN_CPU_FOLDER's memory/memory.json."""
    folder = f"{LEAN_CPU_FOLDER}/memory"
    rows = _load(f"{folder}/memory.json")
    chunk, = {r["chunk_steps"] for r in rows if r["provider"] == "fused-chunked"}
    lines = [f"| network, T | `time_chunk={chunk}` peak | `memory_lean(m)` peak | fused default peak | snnTorch peak "
             "(old baseline) | chunked / fused | chunked / snnTorch | lean / fused | lean / snnTorch "
             "| RSS: chunked, lean, fused, snnTorch |", "|" + " --- |" * 10]
    for net, T, case in _memory_cases(rows):
        chunked, lean, fused, snn = (case[p] for p in ("fused-chunked", "fused-lean", "fused", "snntorch"))
        rss = ", ".join(f"{r['peak_rss_mib']:.0f}" for r in (chunked, lean, fused, snn))
        lines.append(f"| {_MEMORY_NETS[net]}, T={T} | "
                     + " | ".join(_mib(r["peak_mib"]) for r in (chunked, lean, fused, snn)) + " | "
                     + " | ".join(_fraction(r[k]) for r in (chunked, lean)
                                  for k in ("peak_vs_fused", "peak_vs_snntorch"))
                     + f" | {rss} MiB |")
    return ("\n".join(lines) + f"\n\nFrom {_source(folder, 'memory.json')}; {OLD_BASELINES}. {_MEMORY_SNNTORCH}. "
            f"`fusedsnn bench --full --sections memory`: one training step, batch {rows[0]['batch']}, every provider "
            "eager. Peak: the most tensor memory held above the step's start, exact bytes from the profiler's "
            "memory view. RSS: the peak resident set of a fresh process above its baseline (allocator caching and "
            f"fragmentation included). At T={chunk} or less one chunk covers the sequence. The ratios are of "
            "memory, not speed.\n")


# ---------------------------------------------------------------------------------------------
# docs/simt_vs_mimd.md
# ---------------------------------------------------------------------------------------------

#: the newest run of benchmarks/simt_vs_mimd.py (its simt_vs_mimd.json: the host partition sweep, the
#: compiled registers, the all-to-all tile sweep); measured before issue 18
SIMT_FOLDER = "cpu-2026-11-26b"


def _simt() -> tuple[dict, str]:
    data = json.loads((RESULTS / SIMT_FOLDER / "simt_vs_mimd.json").read_text())
    env = data["environment"]
    return data, (f"`benchmarks/results/{SIMT_FOLDER}/simt_vs_mimd.json` ({env['device_name']}, "
                  f"{env['cpu_threads']} threads, {env['date'][:10]})")


def simt_partition() -> str:
    """docs/simt_vs_mimd.md: the host backend's fused Leaky forward+backward under the IPU's tiles x
    workers partitions. From SIMT_FOLDER's simt_vs_mimd.json ("host_partition")."""
    data, source = _simt()
    lines = ["| B | tiles | workers per tile | threads | fused Leaky fwd+bwd, T=25, N=1000 |",
             "| --- | --- | --- | --- | --- |"]
    for r in data["host_partition"]:
        lines.append(f"| {r['B']} | {r['tiles']} | {r['workers_per_tile']} | {r['threads']} | "
                     f"{_time(r['median_ms'] * 1e-3)} |")
    return "\n".join(lines) + f"\n\nFrom {source}: medians; the fused op alone, no baseline.\n"


def simt_registers() -> str:
    """docs/simt_vs_mimd.md: registers and spills of the Leaky Triton kernels per BLOCK and num_warps,
    compiled for sm_90 (ptxas output, not timings). From SIMT_FOLDER's simt_vs_mimd.json."""
    data, source = _simt()
    lines = ["| BLOCK | num_warps | neurons per thread | kernel | registers | spill bytes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in data["simt_registers"]:
        lines.append(f"| {r['BLOCK']} | {r['num_warps']} | {r['neurons_per_thread']} | `{r['kernel']}` | "
                     f"{r['registers']} | {r['spill_bytes']} |")
    return "\n".join(lines) + f"\n\nFrom {source}: ptxas's report for sm_90, Leaky, nothing learnable.\n"


def simt_all_to_all_tiles() -> str:
    """docs/simt_vs_mimd.md: the host all-to-all op's forward partition on 1 and 2 threads, with the
    snnTorch loop it was timed against (stepped with ``x[t]``: an old baseline). From SIMT_FOLDER's
    simt_vs_mimd.json ("all_to_all_host_tiles")."""
    data, source = _simt()
    rows = data["all_to_all_host_tiles"]
    lines = ["| provider | threads | forward partition | fwd+bwd | ratio to snnTorch stepped with `x[t]` (old baseline) "
             "| spike rate |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "-" if r["provider"] != "fused" else _ratio(r["speedup_vs_snntorch"])
        lines.append(f"| {r['provider']} | {r['threads']} | {r['tiles'] or '-'} | {_time(r['median_s'])} | {ratio} | "
                     f"{r['spike_rate']:.2f} |")
    r = rows[0]
    return ("\n".join(lines) + f"\n\nFrom {source}: RLeaky all-to-all, T={r['T']}, B={r['B']}, N={r['N']}, "
            f"medians; {OLD_BASELINES}.\n")


def _training_table(rows: list[dict], case: list[tuple[str, str]]) -> str:
    """One line per case, execution mode and fused provider: the fused images/s, every baseline's
    images/s in that case and mode, and the fused row's ratio to the fastest of them (its own
    ``baseline`` and ``speedup_vs_baseline``); "not measured" where that mode had no baseline."""
    def key(r: dict) -> tuple:
        return tuple(r[k] for k, _ in case) + (r["execution_mode"],)

    bases = sorted({r["provider"] for r in rows if not r["provider"].startswith("fused")})
    lines = ["| " + " | ".join([label for _, label in case] + ["execution mode", "fused provider", "fused"]
                               + [f"{b}, same mode" for b in bases] + ["speed-up over the fastest, same mode"]) + " |",
             "|" + " --- |" * (len(case) + 4 + len(bases))]
    for f in rows:
        if not f["provider"].startswith("fused"):
            continue
        same = {b["provider"]: b for b in rows if b["provider"] in bases and key(b) == key(f)}
        cells = [str(f[k]) for k, _ in case] + [f["execution_mode"], f["provider"], f"{f['images_per_s']:,.0f} img/s"]
        cells += [f"{same[b]['images_per_s']:,.0f} img/s" if b in same else "not measured" for b in bases]
        cells.append(f"{_ratio(f['speedup_vs_baseline'])} ({f['baseline']})" if f.get("baseline") else "not measured")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the study's training comparisons in docs/simt_vs_mimd.md: section -> the columns naming a case
_STUDY = {"batch": [("batch", "batch")], "neuron_models": [("neuron", "neuron")],
          "population": [("outputs", "outputs"), ("num_steps", "time steps")]}


def simt_study(section: str) -> str:
    """docs/simt_vs_mimd.md: one of the study's training comparisons (DSNN, _STUDY[section]) measured by
    ``fusedsnn bench --quick``, fused against snnTorch's twins in the same execution mode. From
    CPU_FOLDER/quick/<section>.json."""
    rows = _load(f"{CPU_FOLDER}/quick/{section}.json")
    return (_training_table(rows, _STUDY[section]) + f"\n\nFrom {_source(CPU_FOLDER, f'quick/{section}.json')}: "
            "quick sizes, 3 repeats. `snntorch-hoisted` runs the static first layer once, `snntorch-tutorial` at "
            "every step, as snnTorch's tutorial does.\n")


def simt_fusion() -> str:
    """docs/simt_vs_mimd.md: the range of the fused DSNN's speed-up over the fastest same-mode twin across
    neuron models, batch sizes and (at one time step) population outputs. From CPU_FOLDER/quick."""
    def span(section: str, keep=lambda r: True) -> str:
        vals = [r["speedup_vs_baseline"] for r in _load(f"{CPU_FOLDER}/quick/{section}.json")
                if r["provider"] == "fused" and r.get("speedup_vs_baseline") and keep(r)]
        modes = sorted({r["execution_mode"] for r in _load(f"{CPU_FOLDER}/quick/{section}.json")
                        if r["provider"] == "fused" and keep(r)})
        return f"{_ratio(min(vals))} to {_ratio(max(vals))} ({', '.join(modes)})"

    return (f"- **Fusion vs the step loop** (`benchmarks/results/{CPU_FOLDER}/quick/`, each ratio against the "
            "fastest snnTorch twin of the same execution mode): across neuron models the fused DSNN trains "
            f"{span('neuron_models')}, across batch sizes {span('batch')}; at one time step (population rows) "
            f"{span('population', lambda r: r['num_steps'] == 1)}: there is no time loop to fuse and the custom "
            "op's fixed cost shows. The quick run measures training eager only (compiled training rows: "
            "README's CPU table).\n")


def _published() -> dict:
    """fusedsnn/bench/published.py's tables, read without importing the package (and torch)."""
    spec = importlib.util.spec_from_file_location("published", PUBLISHED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"THROUGHPUT": module.THROUGHPUT, "SOURCE": module.SOURCE}


def simt_published() -> str:
    """docs/simt_vs_mimd.md: the study's published training throughput beside what the fused networks
    reached here, each in its own execution mode and with no ratio between systems. From
    fusedsnn/bench/published.py, the H200 step_modes.json and CPU_FOLDER/training-full/throughput.json."""
    pub = _published()
    steps = _load(f"{H200_FOLDER}/step_modes.json")
    cpu = _load(f"{CPU_FOLDER}/training-full/throughput.json")
    lines = ["| network | IPU Mk2 (published) | A100 (published) | fused, H200 eager | fused, H200 graph "
             "| fused, CPU eager |",
             "| --- | --- | --- | --- | --- | --- |"]
    for net in ("DSNN", "CSNN"):
        h200 = {m: _one(steps, provider="fused", network=net, mode=m)["images_per_s"] for m in ("eager", "cuda_graph")}
        c = _one(cpu, provider="fused", network=net)
        lines.append(f"| {net} | {pub['THROUGHPUT'][net]['IPU Mk2']:,} | {pub['THROUGHPUT'][net]['A100']:,} | "
                     f"{h200['eager']:,.0f} | {h200['cuda_graph']:,.0f} | {c['images_per_s']:,.0f} |")
    return ("\n".join(lines) + f"\n\nImages/s, training at batch 128, 25 steps. Published: {pub['SOURCE']} "
            f"(other hardware generations and implementations). Measured: {_source(H200_FOLDER, 'step_modes.json')} "
            f"and {_source(CPU_FOLDER, 'training-full/throughput.json')}. A comparison of systems, not of "
            "architectures, so no ratio is drawn between columns.\n")


def training_step_targets() -> str:
    """docs/host_performance.md, issue 19's CPU targets: each against the fastest baseline of the
    same execution mode, from ``CPU_FOLDER``'s neurons-full/neurons.json and training-full's
    throughput.json, net3.json and open_neuromorphic.json. A mode with no same-mode baseline says
    "not measured"; the status says by how much a target is missed."""
    folder = CPU_FOLDER
    neurons = _load(f"{folder}/neurons-full/neurons.json")
    train = _load(f"{folder}/training-full/throughput.json")
    net3 = _load(f"{folder}/training-full/net3.json")
    on = _load(f"{folder}/training-full/open_neuromorphic.json")

    def status(ratio: float, target: float) -> str:
        return "met" if ratio >= target else f"missed by {100 * (1 - ratio / target):.0f}%"

    lines = ["| target | mode | fused | fastest baseline, same mode | ratio | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    for provider in ("fused", "fused-compiled"):
        f = _one(train, provider=provider, network="DSNN")
        base = _one(train, provider=f["baseline"], network="DSNN")
        lines.append(f"| DSNN training step (B=128, T=25) >= 2x | {f['execution_mode']} | {f['images_per_s']:,.0f} img/s | "
                     f"{base['provider']} {base['images_per_s']:,.0f} img/s | {_ratio(f['speedup_vs_baseline'])} | "
                     f"{status(f['speedup_vs_baseline'], 2.0)} |")
    for provider in ("fused", "fused-spike-products", "fused-compiled"):
        for f in (r for r in net3 if r["provider"] == provider and r.get("median_s")):
            base = _one(net3, provider=f["baseline"], T=f["T"], B=f["B"])
            lines.append(f"| 3-layer net, T={f['T']}, B={f['B']} >= 2x ({provider}) | {f['execution_mode']} | "
                         f"{_time(f['median_s'])} | {base['provider']} {_time(base['median_s'])} | "
                         f"{_ratio(f['speedup_vs_baseline'])} | {status(f['speedup_vs_baseline'], 2.0)} |")
    for provider in ("fused-host", "fused-host-compiled"):
        f = _one(neurons, provider=provider, neuron="Leaky", dtype="float32", mode="forward+backward", T=25, B=128,
                 N=1000)
        lines.append(f"| Leaky fwd+bwd, T=25, B=128, N=1000 >= 2x | {f['execution_mode']} | {_time(f['median_s'])} | "
                     f"{_against(f, neurons)} | {_ratio(f['speedup_vs_baseline'])} | "
                     f"{status(f['speedup_vs_baseline'], 2.0)} |")
    for f in (r for r in on if r["provider"] == "fused" and r.get("median_s")):
        sj = f.get("speedup_vs_spikingjelly")
        added = f.get("neuron_overhead_vs_linear")
        lines.append(f"| Open Neuromorphic shape (n={f['n']}, B={f['B']}, T={f['T']}) >= 2x SpikingJelly | eager | "
                     f"{_time(f['median_s'])} | spikingjelly {_time(f['median_s'] * sj)} | {_ratio(sj)} | "
                     f"{status(sj, 2.0)} |")
        lines.append(f"| same, the neuron adds <= 10% to the Linear's own time | eager | "
                     f"+{100 * added:.0f}% over the Linear alone | - | - | "
                     f"{'met' if added <= 0.10 else f'missed: {100 * added:.0f}% against 10%'} |")
    note = (f"\nFrom `benchmarks/results/{folder}/` (2 threads, medians of 7 interleaved repeats). Profiles of "
            f"the misses: `benchmarks/results/{folder}/profiles/` (`benchmarks/profile_misses.py`).\n")
    return "\n".join(lines) + "\n" + note


TABLES: dict[str, Callable[[], str]] = {
    "cpu-main": cpu_main,
    "gpu-h200": lambda: gpu_check(H200_FOLDER),
    "gpu-h100-memory": lambda: memory_gpu(H100_FOLDER),
    "host-targets": host_targets,
    "training-step-targets": training_step_targets,
    "host-targets-2026-11-26b": lambda: host_targets_old("cpu-2026-11-26b"),
    "host-targets-2026-11-26": lambda: host_targets_old("cpu-2026-11-26"),
    "host-all-to-all-2026-11-26": lambda: all_to_all_old("cpu-2026-11-26", "neurons-full/all_to_all.json"),
    "gpu-targets": gpu_targets,
    "gpu-h200-kernels": lambda: gpu_kernels(H200_FOLDER),
    "gpu-h200-step-variants": lambda: gpu_step_variants(H200_FOLDER),
    "gpu-h200-csnn-kernels": lambda: gpu_csnn_kernels(H200_FOLDER),
    "gpu-h200-csnn-layouts": lambda: gpu_csnn_layouts(H200_FOLDER),
    "design-spike-products": spike_products,
    "design-memory-cpu": memory_cpu,
    "design-memory-speed": memory_speed,
    "simt-partition": simt_partition,
    "simt-registers": simt_registers,
    "simt-all-to-all-tiles": simt_all_to_all_tiles,
    "simt-batch": lambda: simt_study("batch"),
    "simt-neuron-models": lambda: simt_study("neuron_models"),
    "simt-population": lambda: simt_study("population"),
    "simt-fusion": simt_fusion,
    "simt-published": simt_published,
}


def render(text: str, tables: dict[str, Callable[[], str]] = TABLES) -> str:
    """``text`` with every marked table regenerated; an unknown NAME is an error."""
    def replace(m: re.Match) -> str:
        name = m.group("name")
        if name not in tables:
            raise KeyError(f"no table named {name!r} in benchmarks/report.py (known: {', '.join(tables)})")
        return m.group(1) + tables[name]() + m.group(4)

    return MARKER.sub(replace, text)


def documents(root: Path = ROOT) -> list[Path]:
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        new = render(text)
        if new == text:
            continue
        stale.append(path)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       str(path.relative_to(ROOT)), "generated from JSON"))
        else:
            path.write_text(new)
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print(f"\n{len(stale)} file(s) disagree with benchmarks/results: run python benchmarks/report.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
