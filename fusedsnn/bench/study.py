"""``fusedsnn bench``: measurements on whatever device is present, fused against snnTorch.

Sections run in order; each returns rows (dicts) that are printed as a table and written as
JSON and CSV into ``--out``. ``--quick`` is sized to finish in minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from . import neurons, plots, training
from .published import SOURCE, THROUGHPUT, TFLOPS
from .timing import copy_bandwidth


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    env = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    try:
        import snntorch

        env["snntorch"] = snntorch.__version__
    except ImportError:
        env["snntorch"] = None
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


def section_neurons(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """Each fused neuron (forward and forward+backward) vs snnTorch's step loop."""
    if args.quick:
        shapes = neurons.QUICK_SHAPES
        kinds = ["Leaky", "Synaptic"]
        dtypes = [torch.float32]
    else:
        shapes = neurons.SWEEP_SHAPES
        kinds = list(neurons.NEURON_KINDS)
        dtypes = [torch.float32, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    # A plain copy as large as the largest working set (out of cache), in this run on this device.
    copy_bw = copy_bandwidth(neurons.copy_bytes_for(shapes), device)
    progress(f"copy bandwidth {copy_bw / 1e9:.1f} GB/s")
    rows = []
    for kind in kinds:
        for dtype in dtypes:
            providers = neurons.fused_providers(device, dtype)
            if dtype == torch.float32:
                providers.append("snntorch")
            for T, B, N in shapes:
                case = neurons.NeuronCase(kind, T, B, N, dtype, device)
                for mode in ("forward", "forward+backward"):
                    progress(f"neurons {kind} {dtype} T={T} B={B} N={N} {mode}")
                    rows += neurons.run_interleaved(case, providers, mode, repeats=args.repeats,
                                                    copy_bytes_per_s=copy_bw)
    _add_speedups(rows)
    neurons.add_fixed_costs(rows)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """Speed-up of each row over snnTorch's step loop on the same case."""
    key = lambda r: (r["neuron"], r["T"], r["B"], r["N"], r["dtype"], r["mode"])  # noqa: E731
    baseline = {key(r): r["median_s"] for r in rows if r["provider"] == "snntorch"}
    for r in rows:
        base = baseline.get(key(r))
        r["speedup_vs_snntorch"] = base / r["median_s"] if base else None


def _providers(args) -> list[str]:
    return ["fused", "snntorch"] + ([] if args.quick else ["fused-reference"])


def _csnn_size(args, device) -> tuple[int, int]:
    """(batch, steps) for CSNN runs: the study's 128 x 25, shrunk in --quick on a CPU."""
    return (32, 10) if args.quick and device.type != "cuda" else (128, 25)


def section_throughput(args, device, progress) -> list[dict]:
    """1. Baseline DSNN and CSNN training throughput (batch 128, 25 steps), with achieved TFLOPS
    (8.) and, where NVML is available, power and images/s per watt (9.)."""
    rows = []
    csnn_batch, csnn_steps = _csnn_size(args, device)
    for kind, batch, steps in (("DSNN", 128, 25), ("CSNN", csnn_batch, csnn_steps)):
        for provider in _providers(args):
            progress(f"throughput {kind} {provider}")
            rows.append(training.run_training_case(kind, provider, batch, steps, device, args.repeats))
    return rows


def section_batch(args, device, progress) -> list[dict]:
    """2. Batch sweep 8..128."""
    rows = []
    batches = (8, 32, 128) if args.quick else (8, 16, 32, 64, 128)
    kinds = ("DSNN",) if args.quick else ("DSNN", "CSNN")
    for kind in kinds:
        for batch in batches:
            for provider in ("fused", "snntorch"):
                progress(f"batch {kind} {batch} {provider}")
                rows.append(training.run_training_case(kind, provider, batch, 25, device, args.repeats))
    return rows


def section_width(args, device, progress) -> list[dict]:
    """3. DSNN hidden-width sweep and CSNN kernel-depth (channel) sweep."""
    rows = []
    for hidden in ((100, 1000) if args.quick else (100, 300, 1000, 3000, 10000)):
        for provider in ("fused", "snntorch"):
            progress(f"width DSNN {hidden} {provider}")
            rows.append(training.run_training_case("DSNN", provider, 128, 25, device, args.repeats, hidden=hidden))
    batch, steps = _csnn_size(args, device)
    for channels in (((6, 32), (12, 64)) if args.quick else ((6, 32), (12, 64), (24, 128), (48, 256))):
        for provider in ("fused", "snntorch"):
            progress(f"depth CSNN {channels} {provider}")
            rows.append(training.run_training_case("CSNN", provider, batch, steps, device, args.repeats,
                                                   channels=channels))
    return rows


def section_neuron_models(args, device, progress) -> list[dict]:
    """4. Neuron models on the DSNN: Leaky, Synaptic, RLeaky (one-to-one, all-to-all), RSynaptic."""
    rows = []
    kinds = ("leaky", "synaptic", "rleaky", "rsynaptic") + (() if args.quick else ("rleaky_all_to_all",))
    for neuron in kinds:
        for provider in ("fused", "snntorch"):
            progress(f"neurons DSNN {neuron} {provider}")
            rows.append(training.run_training_case("DSNN", provider, 128, 25, device, args.repeats, neuron=neuron))
    return rows


def section_time_split(args, device, progress) -> list[dict]:
    """5. Share of time in neuron dynamics vs synaptic ops (torch.profiler)."""
    batch, steps = _csnn_size(args, device)
    progress("time split DSNN")
    rows = [training.time_split("DSNN", device, 128, 25)]
    progress("time split CSNN")
    rows.append(training.time_split("CSNN", device, batch, steps))
    return rows


def section_precision(args, device, progress) -> list[dict]:
    """6. float32 against float16/bfloat16 autocast."""
    rows = []
    dtypes = [None, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    for dtype in dtypes:
        for provider in ("fused", "snntorch"):
            progress(f"precision {dtype} {provider}")
            rows.append(training.run_training_case("DSNN", provider, 128, 25, device, args.repeats,
                                                   autocast_dtype=dtype))
    return rows


def section_population(args, device, progress) -> list[dict]:
    """7. Population codes: 1 time step with 10..1000 output neurons (10 outputs over 25 steps as
    the baseline). Throughput only; `fusedsnn train --population-study` measures accuracy."""
    rows = []
    for outputs, steps in [(10, 25)] + [(n, 1) for n in ((10, 100, 1000) if args.quick else (10, 50, 100, 500, 1000))]:
        for provider in ("fused", "snntorch"):
            progress(f"population {outputs} x {steps} {provider}")
            rows.append(training.run_training_case("DSNN", provider, 128, steps, device, args.repeats,
                                                   outputs=outputs))
    return rows


SECTIONS = {
    "neurons": section_neurons,
    "throughput": section_throughput,
    "batch": section_batch,
    "width": section_width,
    "neuron_models": section_neuron_models,
    "time_split": section_time_split,
    "precision": section_precision,
    "population": section_population,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="quick", action="store_true", default=None,
                       help="small sizes, minutes on a 2-core CPU (default on a CPU-only machine)")
    group.add_argument("--full", dest="quick", action="store_false", help="the full sweeps")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", default="bench-out", help="folder for JSON, CSV and plots")
    parser.add_argument("--sections", default=None, help=f"comma-separated subset of {list(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")


def _format_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_outputs(out: Path, name: str, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    if rows:
        columns = sorted({k for r in rows for k in r})
        with open(out / f"{name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.quick is None:
        args.quick = device.type != "cuda"
    if args.repeats is None:
        args.repeats = 5 if args.quick else 20
    names = list(SECTIONS) if args.sections is None else [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    out = Path(args.out)
    env = environment(device)
    print(f"fusedsnn bench on {env['device_name']} ({device}), torch {env['torch']}, "
          f"{'quick' if args.quick else 'full'} run -> {out}/")
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    results = {"environment": env}
    for name in names:
        bar = tqdm(desc=name, unit="run", leave=False) if tqdm else None

        def progress(msg: str) -> None:
            if bar is not None:
                bar.set_postfix_str(msg[-60:])
                bar.update(1)

        start = time.perf_counter()
        rows = SECTIONS[name](args, device, progress)
        if bar is not None:
            bar.close()
        if rows and "images_per_s" in rows[0]:
            _training_speedups(rows)
        results[name] = rows
        write_outputs(out, name, rows)
        plots.plot_section(name, rows, out)
        print(f"\n== {name} ({time.perf_counter() - start:.0f} s) ==")
        print(_format_table(rows, TABLE_COLUMNS.get(name, sorted(rows[0]) if rows else [])))
        if name == "throughput":
            print(published_table(rows))
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    return 0


_TRAIN_COLUMNS = ["network", "provider", "batch", "num_steps", "hidden", "channels", "neuron", "outputs",
                  "precision", "median_s", "images_per_s", "speedup_vs_snntorch", "achieved_tflops", "average_power_w"]
TABLE_COLUMNS = {
    "neurons": ["neuron", "dtype", "T", "B", "N", "mode", "provider", "median_s", "speedup_vs_snntorch",
                "fraction_of_copy_bandwidth"],
    "throughput": _TRAIN_COLUMNS, "batch": _TRAIN_COLUMNS, "width": _TRAIN_COLUMNS,
    "neuron_models": _TRAIN_COLUMNS, "precision": _TRAIN_COLUMNS, "population": _TRAIN_COLUMNS,
    "time_split": ["network", "device", "batch", "num_steps", "neuron_share", "synaptic_share", "other_share", "timer"],
}


def _training_speedups(rows: list[dict]) -> None:
    key = lambda r: (r["network"], r["batch"], r["num_steps"], r["hidden"], str(r["channels"]), r["neuron"],  # noqa: E731
                     r["outputs"], r["precision"])
    base = {key(r): r["median_s"] for r in rows if r["provider"] == "snntorch"}
    for r in rows:
        b = base.get(key(r))
        r["speedup_vs_snntorch"] = b / r["median_s"] if b else None


def published_table(rows: list[dict]) -> str:
    """Our baseline throughput beside the study's published figures (labelled as such)."""
    lines = [f"published figures: {SOURCE}"]
    for net in ("DSNN", "CSNN"):
        ours = [r for r in rows if r["network"] == net]
        mine = ", ".join(f"{r['provider']} {r['images_per_s']:.0f} img/s ({r['achieved_tflops']:.3g} TFLOPS, "
                         f"batch {r['batch']}, {r['num_steps']} steps)" for r in ours)
        theirs = ", ".join(f"{dev} {v:,} img/s ({TFLOPS[net][dev]} TFLOPS)" for dev, v in THROUGHPUT[net].items())
        lines.append(f"  {net} measured here [{rows[0]['device'] if rows else '?'}]: {mine}")
        lines.append(f"  {net} published: {theirs}")
    return "\n".join(lines)
