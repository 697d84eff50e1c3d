"""``fusedsnn bench``: reproduce the study's experiments, fused against the other providers.

The sections, their providers and the result tables are :mod:`fusedsnn.bench.study`; this
module reads the command line, checks it, runs the chosen sections with a progress bar and
writes JSON, CSV, plots and the printed tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..bench import gpu, open_neuromorphic, plots
from ..bench.study import (
    NOISY_SPREAD,
    QUICK_CLAIM,
    SECTIONS,
    TABLE_COLUMNS,
    environment,
    format_table,
    published_table,
    write_outputs,
    _TRAINING_SECTIONS,
    _training_speedups,
)
from .args import UsageError, device_name, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="quick", action="store_true", default=None,
                       help=f"small sizes: {QUICK_CLAIM}; far longer while other jobs share the cores "
                       "(default on a CPU-only machine)")
    group.add_argument("--full", dest="quick", action="store_false",
                       help="the full sweeps (default with a GPU; hours on a CPU)")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--out", default="bench-out", help="folder for JSON, CSV and plots")
    parser.add_argument("--sections", default=None,
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed repeats per measurement, at least (default: 3 quick, 20 full)")
    parser.add_argument("--compile-max-t", type=positive_int, default=None,
                        help="torch.compile'd providers (neurons, throughput, shd, net3, open_neuromorphic; "
                        "full runs) are skipped, the row says why, above this many time steps, as compiling "
                        "a stepped provider's unrolled loop takes longer (default: 25; net3: 50)")


def _check_arguments(args: argparse.Namespace) -> list[str]:
    """The sections to run; raises cli.UsageError for a bad device, an unknown section or an
    unusable --out (run() may be called without the parser, from scripts and tests)."""
    if getattr(args, "device", None) is not None:
        try:
            device_name(args.device)
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"--device: {err}") from None
    if args.sections is None:
        on_cuda = (getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        # the GPU proof's sections run by default only on CUDA (benchmarks/gpu/check.sh names them)
        names = [n for n in SECTIONS if on_cuda or n not in gpu.SECTIONS]
    else:
        names = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = [n for n in names if n not in SECTIONS]
        if unknown or not names:
            raise UsageError(f"--sections: unknown {', '.join(unknown) or '(empty list)'}; "
                             f"choose from {','.join(SECTIONS)}")
    if args.repeats is not None and (not isinstance(args.repeats, int) or args.repeats < 1):
        raise UsageError(f"--repeats must be a positive integer, got {args.repeats!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file; expected a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {args.out!r}: cannot create the folder ({err.strerror})") from None
    return names


class _Progress:
    """One progress line for the whole bench: runs done / planned, elapsed and estimated time
    left (tqdm on a terminal; otherwise one plain line per finished section, for logs).

    The total is fixed when the bench starts: a section with a ``plan`` counts its runs; one
    without (memory, all_to_all, the GPU sections) counts as one run, whose inner steps only
    change the label (:meth:`label`). It never grows, so "about N s left" never lies upward."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        self._running = False
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=total, unit="run", desc="bench", dynamic_ncols=True, leave=False)

    def start_run(self, label: str) -> None:
        self._finish_run()
        self._running = True
        self.label(label)

    def label(self, label: str) -> None:
        """What is running now, without counting a run."""
        if self.bar is not None:
            self.bar.set_postfix_str(label[-60:], refresh=True)

    def _finish_run(self) -> None:
        if self._running:
            self.done += 1
            self._running = False
            if self.bar is not None:
                self.bar.update(1)

    def end_section(self) -> str:
        """Closes the section's last run; returns the status line (runs, elapsed, left)."""
        self._finish_run()
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return f"[{self.done}/{self.total} runs, {elapsed:.0f} s elapsed, about {left:.0f} s left]"

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(text, flush=True)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    names = _check_arguments(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.quick is None:
        args.quick = device.type != "cuda"
    if args.repeats is None:
        args.repeats = 3 if args.quick else 20
    out = Path(args.out)
    env = environment(device)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    print(f"fusedsnn bench on {env['device_name']} ({device}), torch {env['torch']}, "
          f"{'quick' if args.quick else 'full'} run, {args.repeats} repeats -> {out}/", flush=True)
    cores = os.cpu_count() or 1
    if env["load_average_at_start"] is not None and env["load_average_at_start"] > cores / 2:
        # PyTorch's CPU threads wait for each other by spinning; on cores that other jobs keep
        # busy a step can take 10-100x longer (measured: the quick run, 29 s with one thread,
        # took 9 min with two at load average 9 on 2 cores).
        print(f"note: this machine is busy (load average {env['load_average_at_start']:.1f} on {cores} cores): "
              f"timings will be slow and noisy; OMP_NUM_THREADS=1 steadies them, a quiet machine is better",
              flush=True)
    planned = {name: getattr(SECTIONS[name], "plan", None) for name in names}
    total = sum(len(plan(args, device)) if plan is not None else 1 for plan in planned.values())
    progress = _Progress(total)
    results = {"environment": env}
    try:
        for name in names:
            start = time.perf_counter()
            if planned[name] is not None:
                rows = SECTIONS[name](args, device, progress.start_run)
            else:  # one run in the total: its steps relabel the bar
                progress.start_run(name)
                rows = SECTIONS[name](args, device, progress.label)
            status = progress.end_section()
            if name in _TRAINING_SECTIONS:
                _training_speedups(rows)
            # (neurons, all_to_all, memory and the GPU sections compute their own comparisons)
            results[name] = rows
            write_outputs(out, name, rows)
            plots.plot_section(name, rows, out)
            text = [f"\n== {name} ({time.perf_counter() - start:.0f} s) {status} =="]
            text.append(format_table(rows, TABLE_COLUMNS.get(name, sorted(rows[0]) if rows else [])))
            if any(r.get("noisy") for r in rows):
                text.append(f"noisy: the q20-q80 range of this row (or of its snnTorch baseline) is wider than "
                            f"{NOISY_SPREAD:.0%} of the median; rerun on a quiet machine or with more --repeats")
            if name == "throughput":
                text.append(published_table(rows))
            if name == "open_neuromorphic" and (published := open_neuromorphic.published_table(rows)):
                text.append(published)  # beside CUDA rows only
            progress.write("\n".join(text))
    finally:
        progress.close()
    env["wall_s"] = time.perf_counter() - wall0
    env["process_cpu_s"] = time.process_time() - cpu0
    try:
        env["load_average_at_end"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        env["load_average_at_end"] = None
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    print(f"\ndone in {env['wall_s']:.0f} s wall, {env['process_cpu_s']:.0f} s CPU of this process "
          f"(load average {env['load_average_at_start']} at start, {env['load_average_at_end']} at end); "
          f"results in {out}/")
    return 0
