"""Result tables of README.md and docs/*.md, written from the committed JSON under benchmarks/results.

A generated table lies between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; NAME is a key
of :data:`TABLES`. Everything between the markers is replaced, so edit this file, not the table.

    python benchmarks/report.py          # rewrite the tables in place
    python benchmarks/report.py --check  # exit 1 (with a diff) when a table and its JSON disagree

A table measured against baselines later found wrong says so in its text (see
benchmarks/results/NOTE-baselines.md), rather than being dropped.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: the newest CPU folder, measured against the strongest baselines mode against mode: every table
#: that states where the current code stands on a CPU reads it (README's, docs/host_performance.md's
#: targets, docs/simt_vs_mimd.md's study comparisons). A newer CPU run is committed as a folder and
#: named here; nothing else changes.
CPU_FOLDER = "cpu-2026-12-03"
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
    return f"{x:.0f}x" if x >= 100 else f"{float(f'{x:.2g}'):g}x"


def _against(row: dict, rows: list[dict], time_key: str = "median_s") -> str:
    """The fused row's fastest same-mode baseline and its time, from the row's own fields."""
    base = _one(rows, **{k: row[k] for k in row if k in ("neuron", "dtype", "mode", "T", "B", "N", "network",
                                                          "batch", "num_steps", "hidden", "precision")},
                provider=row["baseline"])
    compile_s = f", compile {base['compile_s']:.1f} s" if base.get("compile_s") else ""
    return f"{base['provider']} {_time(base[time_key])}{compile_s}"


def cpu_main() -> str:
    """README "On the development CPU": fused against the fastest baseline of the same execution
    mode (snnTorch eager with unbind, snnTorch compiled, SpikingJelly, the hoisted snnTorch twin)."""
    folder = CPU_FOLDER
    neurons = _load(f"{folder}/neurons-full/neurons.json")
    a2a = _load(f"{folder}/neurons-full/all_to_all.json")
    train = _load(f"{folder}/training-full/throughput.json")
    shd = _load(f"{folder}/training-full/shd.json")
    linear = _load(f"{folder}/training-full/linear_lif.json")
    lines = ["| case | mode | fused | fastest baseline, same mode | speed-up |", "| --- | --- | --- | --- | --- |"]
    for T, B, N, what in ((25, 128, 1000, ""), (1, 1, 8, " (per-call cost)")):
        for provider, mode in (("fused-host", "eager"), ("fused-host-compiled", "compiled")):
            f = _one(neurons, provider=provider, neuron="Leaky", dtype="float32", mode="forward+backward", T=T, B=B, N=N)
            lines.append(f"| Leaky forward+backward, T={T}, B={B}, N={N}{what} | {mode} | {_time(f['median_s'])} | "
                         f"{_against(f, neurons)} | {_ratio(f['speedup_vs_baseline'])} |")
    for net, rows, label in (("DSNN", train, "DSNN training step (784-1000-10, B=128, T=25, AdamW)"),
                             ("SHD", shd, "SHD-shaped training step (700-RLeaky(256, all-to-all)-20, B=64, T=100)")):
        f = _one(rows, provider="fused", network=net)
        base = _one(rows, provider=f["baseline"], network=net)
        lines.append(f"| {label} | eager | {f['images_per_s']:,.0f} img/s | {base['provider']} "
                     f"{base['images_per_s']:,.0f} img/s | {_ratio(f['speedup_vs_baseline'])} |")
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
            "the same execution mode. Compiled rows: the fused op under torch.compile against snnTorch's loop "
            "compiled whole. Training rows were measured eager only (no compiled or graph baseline on this CPU). "
            "The all-to-all and fused-Linear rows have snnTorch (eager, unbind) as their only baseline, "
            "SpikingJelly having no all-to-all recurrent LIF with snnTorch's reset order; the fused-Linear rows "
            "also give the ratio to `nn.Linear` followed by the fused Leaky (below 1: the one-op form loses on "
            "this CPU).\n")
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


TABLES: dict[str, Callable[[], str]] = {
    "cpu-main": cpu_main,
    "gpu-h200": lambda: gpu_check("h200-2026-11-26"),
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
