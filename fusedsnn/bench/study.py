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

from . import neurons
from .timing import copy_bandwidth


def environment(device: torch.device) -> dict:
    env = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
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
        shapes = [(25, 128, 1000)]
        kinds = ["Leaky", "Synaptic"]
        dtypes = [torch.float32]
    else:
        shapes = [(T, B, N) for T in (1, 4, 25, 100) for B in (8, 32, 128) for N in (1000, 10000)]
        kinds = list(neurons.NEURON_KINDS)
        dtypes = [torch.float32, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    # A plain copy as large as the largest case's input, measured in this run on this device.
    largest = max(T * B * N for T, B, N in shapes) * 4
    copy_bw = copy_bandwidth(largest, device)
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
                    for provider in providers:
                        progress(f"neurons {kind} {dtype} T={T} B={B} N={N} {mode} {provider}")
                        rows.append(neurons.run_case(case, provider, mode, repeats=args.repeats, copy_bytes_per_s=copy_bw))
    _add_speedups(rows)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """Speed-up of each row over snnTorch's step loop on the same case."""
    key = lambda r: (r["neuron"], r["T"], r["B"], r["N"], r["dtype"], r["mode"])  # noqa: E731
    baseline = {key(r): r["median_s"] for r in rows if r["provider"] == "snntorch"}
    for r in rows:
        base = baseline.get(key(r))
        r["speedup_vs_snntorch"] = base / r["median_s"] if base else None


SECTIONS = {"neurons": section_neurons}


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
        results[name] = rows
        write_outputs(out, name, rows)
        print(f"\n== {name} ({time.perf_counter() - start:.0f} s) ==")
        print(_format_table(rows, TABLE_COLUMNS.get(name, sorted(rows[0]) if rows else [])))
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    return 0


TABLE_COLUMNS = {
    "neurons": ["neuron", "dtype", "T", "B", "N", "mode", "provider", "median_s", "speedup_vs_snntorch",
                "fraction_of_copy_bandwidth"],
}
