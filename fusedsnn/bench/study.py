"""``fusedsnn bench``: measurements on whatever device is present, fused against snnTorch.

Sections run in order; each returns rows (dicts) that are printed as a table and written as
JSON, CSV and a PNG plot into ``--out``. Every timing is a median with its 20% and 80%
quantiles; a row whose q20-q80 spread is large is flagged as noisy.
"""

from __future__ import annotations

import csv
import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch

from . import all_to_all, gpu, linear_lif, memory, modes, net3, neurons, open_neuromorphic, training
from .published import SOURCE, TFLOPS, THROUGHPUT
from .timing import copy_bandwidth

#: What ``--quick`` costs, as README and ``--help`` state it (a test keeps the three in step).
#: Measured on the shared 2-core development machine (AMD EPYC, load average 4-7 from other
#: jobs), with OMP_NUM_THREADS=1 so that the others' load could not stretch it: 29 s wall,
#: 18 s CPU, against 98 s wall, 36 s CPU for the quick mode before (5 repeats, no shared cases).
#: With PyTorch's default 2 threads on cores that other jobs keep busy, the same run took 9 min.
#: With the net3 and open_neuromorphic sections (2026-12-03, Intel Xeon, load average 3.6, one
#: thread): 31 s wall, of which the two took about 1 s; 38 s for the whole process, imports included.
QUICK_CLAIM = "under 40 s on an idle 2-core CPU, well under a minute"

#: A row is flagged noisy when its q20-q80 range is wider than this fraction of its median.
NOISY_SPREAD = modes.NOISY_SPREAD


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state() -> dict:
    """The commit the library was imported from and whether its tree had uncommitted changes
    (None for both outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def _version(module: str) -> Optional[str]:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    """What a result needs beside it: when, where, on what code (commit and whether the tree was
    dirty), the load on the machine, and the versions of everything compared."""
    env = {
        **_git_state(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        env["load_average_at_start"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        env["load_average_at_start"] = None
    # versions from the installed metadata: no import (spikingjelly's import alone takes seconds)
    for name in ("fusedsnn", "triton", "snntorch", "spikingjelly", "numpy"):
        env[name] = _version(name)
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


# ---------------------------------------------------------------------------------------------
# sections: each is planned as a list of runs (so the progress bar knows its total), then run
# ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    """One measurement of a section: ``label`` for the progress bar, ``measure()`` -> a row
    (the neurons section's interleaved runs return one row per provider)."""

    label: str
    measure: Callable[[], dict]


def _warmup(args) -> int:
    return 1 if getattr(args, "quick", False) else 2


def _compile_max_t(args) -> int:
    """--compile-max-t, or the default budget: compiled providers are skipped above it."""
    return getattr(args, "compile_max_t", None) or modes.COMPILE_MAX_T


def _min_time_s(args) -> float:
    """Cheap cases repeat until this much time is spent, so their quantiles rest on more samples."""
    return 0.1 if getattr(args, "quick", False) else 1.0


def _training_run(args, label: str, kind: str, provider: str, batch: int, num_steps: int, device: torch.device,
                  **kw) -> Run:
    """A training measurement, shared between sections: the same configuration (say DSNN 128 x 25
    fused, which the throughput, batch, width, neuron-model, precision and population sections
    all contain) is measured once per bench run, so the sections agree and no time is spent
    measuring it six times."""
    cache = args.__dict__.setdefault("_training_cache", {})

    def measure() -> dict:
        call = inspect.signature(training.run_training_case).bind(
            kind, provider, batch, num_steps, device, args.repeats, warmup=_warmup(args),
            min_time_s=_min_time_s(args), **kw)
        call.apply_defaults()  # so that neuron="leaky" given and left out are one case
        key = tuple((name, repr(value)) for name, value in call.arguments.items())
        if key not in cache:
            cache[key] = training.run_training_case(*call.args, **call.kwargs)
        return dict(cache[key])

    return Run(label, measure)


def plan_neurons(args, device: torch.device) -> list[Run]:
    """Each fused neuron (forward and forward+backward) vs the baselines of the same execution
    mode: snnTorch's step loop eager (and SpikingJelly's LIF for Leaky, where importable);
    in a full run also both under torch.compile (T <= --compile-max-t); on CUDA also both
    captured in a CUDA graph.

    Quick: Leaky and Synaptic, float32, at the tiny per-call case and the study's shapes. Full:
    Leaky float32 over the whole T x B x N sweep (the per-call and bandwidth targets), and every
    neuron in every dtype at the study's shapes. At the study's shape (T=25, B=128, N=1000)
    Leaky's forward is also timed in grad mode, beside the inference forward."""
    study_shapes = [s for s in neurons.QUICK_SHAPES if s != neurons.TINY_SHAPE]
    float_only = [torch.float32]
    if args.quick:
        plan = [(kind, dtype, neurons.QUICK_SHAPES) for kind in ("Leaky", "Synaptic") for dtype in float_only]
    else:
        dtypes = [torch.float32, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
        plan = [("Leaky", torch.float32, neurons.SWEEP_SHAPES)]
        plan += [(kind, dtype, study_shapes) for kind in neurons.NEURON_KINDS for dtype in dtypes
                 if (kind, dtype) != ("Leaky", torch.float32)]
    shapes_used = sorted({shape for _, _, shapes in plan for shape in shapes})
    # A plain copy as large as the largest working set (out of cache), measured once in this run
    # on this device, when the first case needs it.
    copy_bw: dict = {}

    def copy_bytes_per_s() -> float:
        if "value" not in copy_bw:
            copy_bw["value"] = copy_bandwidth(neurons.copy_bytes_for(shapes_used), device)
        return copy_bw["value"]

    compile_max_t = _compile_max_t(args)
    runs = []
    for kind, dtype, shapes in plan:
        fused = neurons.fused_providers(device, dtype)
        # Each execution mode fused and baseline alike, so that every ratio is within one mode.
        # --quick times eager only (compiling would cost more than the whole quick run).
        compiled = not args.quick
        providers = list(fused) + (["snntorch"] if dtype == torch.float32 else [])
        if dtype == torch.float32 and kind == "Leaky" and "spikingjelly" in neurons.baseline_providers(
                device, dtype, compiled=False):
            providers.append("spikingjelly")
        if compiled:
            providers += [f"{p}-compiled" for p in fused] + (["snntorch-compiled"] if dtype == torch.float32 else [])
        if device.type == "cuda":
            providers += [f"{p}-graph" for p in fused] + (["snntorch-graph"] if dtype == torch.float32 else [])
        for T, B, N in shapes:
            case = neurons.NeuronCase(kind, T, B, N, dtype, device)
            modes = ["forward", "forward+backward"]
            if kind == "Leaky" and dtype == torch.float32 and (T, B, N) == (25, 128, 1000):
                modes.insert(1, "forward-grad-mode")
            for mode in modes:
                # One run times every provider of the case interleaved, sample by sample.
                runs.append(Run(
                    f"neurons {kind} {str(dtype).removeprefix('torch.')} T={T} B={B} N={N} {mode}",
                    lambda case=case, mode=mode, providers=tuple(providers): neurons.run_interleaved(
                        case, list(providers), mode, repeats=args.repeats, warmup=_warmup(args),
                        copy_bytes_per_s=copy_bytes_per_s(), compile_max_t=compile_max_t),
                ))
    return runs


def section_neurons(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """Each fused neuron (forward and forward+backward) vs snnTorch's step loop, with the
    per-call fixed cost (the tiny case) on every row."""
    rows = []
    for run in plan_neurons(args, device):
        progress(run.label)
        rows += run.measure()
    _add_speedups(rows)
    neurons.add_fixed_costs(rows)
    return rows


section_neurons.plan = plan_neurons


#: every training comparison: the fused model against both snnTorch twins (the tutorial's
#: stepping and the hoisted first layer); ratios are against the faster twin
_TWINS = ("fused", "snntorch-tutorial", "snntorch-hoisted")
#: the same under torch.compile (forward and loss compiled, the same function for every provider)
_COMPILED_TWINS = tuple(f"{p}-compiled" for p in _TWINS)


def _providers(args) -> list[str]:
    """The throughput and SHD sections' providers: the eager twins; in a full run also the fused
    model on the reference backend and every twin compiled (--quick times eager only: compiling
    would cost more than the whole quick run)."""
    return list(_TWINS) + ([] if args.quick else ["fused-reference", *_COMPILED_TWINS])


def _budget(args, provider: str) -> dict:
    """A compiled provider's compile budget, as run_training_case's keyword (none for eager ones)."""
    return {"compile_max_t": _compile_max_t(args)} if modes.execution_mode(provider) == "compiled" else {}


def _csnn_size(args, device) -> tuple[int, int]:
    """(batch, steps) for CSNN runs: the study's 128 x 25, shrunk in --quick on a CPU."""
    return (32, 10) if args.quick and device.type != "cuda" else (128, 25)


def plan_throughput(args, device) -> list[Run]:
    """1. Baseline DSNN and CSNN training throughput (batch 128, 25 steps), with achieved TFLOPS
    (8.) and, where NVML is available, power and images/s per watt (9.). Eager, and in a full run
    also compiled: every twin's forward and loss under torch.compile (compile time in
    ``compile_s``; skipped above --compile-max-t steps), each compared within its mode."""
    csnn_batch, csnn_steps = _csnn_size(args, device)
    return [_training_run(args, f"throughput {kind} {provider}", kind, provider, batch, steps, device,
                          **_budget(args, provider))
            for kind, batch, steps in (("DSNN", 128, 25), ("CSNN", csnn_batch, csnn_steps))
            for provider in _providers(args)]


def plan_batch(args, device) -> list[Run]:
    """2. Batch sweep 8..128."""
    batches = (8, 32, 128) if args.quick else (8, 16, 32, 64, 128)
    kinds = ("DSNN",) if args.quick else ("DSNN", "CSNN")
    return [_training_run(args, f"batch {kind} {batch} {provider}", kind, provider, batch, 25, device)
            for kind in kinds for batch in batches for provider in _TWINS]


def plan_width(args, device) -> list[Run]:
    """3. DSNN hidden-width sweep and CSNN kernel-depth (channel) sweep."""
    runs = [_training_run(args, f"width DSNN {hidden} {provider}", "DSNN", provider, 128, 25, device, hidden=hidden)
            for hidden in ((100, 1000) if args.quick else (100, 300, 1000, 3000, 10000))
            for provider in _TWINS]
    batch, steps = _csnn_size(args, device)
    runs += [_training_run(args, f"depth CSNN {channels} {provider}", "CSNN", provider, batch, steps, device,
                           channels=channels)
             for channels in (((6, 32), (12, 64)) if args.quick else ((6, 32), (12, 64), (24, 128), (48, 256)))
             for provider in _TWINS]
    return runs


def plan_neuron_models(args, device) -> list[Run]:
    """4. Neuron models on the DSNN: Leaky, Synaptic, RLeaky (one-to-one, all-to-all), RSynaptic."""
    kinds = ("leaky", "synaptic", "rleaky", "rsynaptic") + (() if args.quick else ("rleaky_all_to_all",))
    return [_training_run(args, f"neuron models DSNN {neuron} {provider}", "DSNN", provider, 128, 25, device,
                          neuron=neuron)
            for neuron in kinds for provider in _TWINS]


def plan_time_split(args, device) -> list[Run]:
    """5. Share of time in neuron dynamics vs synaptic ops (torch.profiler)."""
    batch, steps = _csnn_size(args, device)
    return [Run("time split DSNN", lambda: training.time_split("DSNN", device, 128, 25)),
            Run("time split CSNN", lambda: training.time_split("CSNN", device, batch, steps))]


def plan_precision(args, device) -> list[Run]:
    """6. float32 against float16/bfloat16 autocast."""
    dtypes = [None, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    return [_training_run(args, f"precision {str(dtype).removeprefix('torch.') if dtype else 'float32'} {provider}",
                          "DSNN", provider, 128, 25, device, autocast_dtype=dtype)
            for dtype in dtypes for provider in _TWINS]


def plan_population(args, device) -> list[Run]:
    """7. Population codes: 1 time step with 10..1000 output neurons (10 outputs over 25 steps as
    the baseline). Throughput only; `fusedsnn train --population-study` measures accuracy."""
    sizes = [(10, 25)] + [(n, 1) for n in ((10, 100, 1000) if args.quick else (10, 50, 100, 500, 1000))]
    return [_training_run(args, f"population {outputs} outputs x {steps} steps {provider}", "DSNN", provider, 128,
                          steps, device, outputs=outputs)
            for outputs, steps in sizes for provider in _TWINS]


def plan_shd(args, device) -> list[Run]:
    """8. The recurrent SHD network's training step (700 -> all-to-all RLeaky(256) -> 20 Leaky,
    T=100, B=64 on Poisson input of SHD's shape and rate; --quick on a CPU: T=20, B=8), fused against
    snnTorch's stepped twins, eager and (full run) compiled, where T is within --compile-max-t.
    SpikingJelly has no all-to-all recurrent LIF with snnTorch's reset order, so it is not a
    provider here."""
    batch, steps = (8, 20) if args.quick and device.type == "cpu" else (64, 100)

    def run(provider: str) -> Run:
        return Run(f"shd {provider}", lambda: training.run_shd_case(
            provider, batch, steps, device, args.repeats, warmup=_warmup(args), min_time_s=_min_time_s(args),
            **_budget(args, provider)))

    return [run(provider) for provider in _providers(args) if provider != "fused-reference"]


def _as_section(plan: Callable[..., list[Run]]) -> Callable:
    """The section function ``(args, device, progress) -> rows`` of a plan. ``progress(label)`` is
    called as each run starts; ``section.plan`` lets the runner count the runs up front."""

    def section(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
        rows = []
        for run in plan(args, device):
            progress(run.label)
            rows.append(run.measure())
        return rows

    section.plan = plan
    section.__doc__ = plan.__doc__
    section.__name__ = plan.__name__.replace("plan_", "section_")
    return section


section_throughput = _as_section(plan_throughput)
section_batch = _as_section(plan_batch)
section_width = _as_section(plan_width)
section_neuron_models = _as_section(plan_neuron_models)
section_time_split = _as_section(plan_time_split)
section_precision = _as_section(plan_precision)
section_population = _as_section(plan_population)
section_shd = _as_section(plan_shd)

SECTIONS = {
    "neurons": section_neurons,
    "throughput": section_throughput,
    "batch": section_batch,
    "width": section_width,
    "neuron_models": section_neuron_models,
    "time_split": section_time_split,
    "precision": section_precision,
    "population": section_population,
    "shd": section_shd,
    "memory": memory.section_memory,
    "all_to_all": all_to_all.section_all_to_all,
    "linear_lif": linear_lif.section_linear_lif,
    "net3": net3.section_net3,
    "open_neuromorphic": open_neuromorphic.section_open_neuromorphic,
    **gpu.SECTIONS,  # GPU proof (benchmarks/gpu/check.sh); in the default list only on CUDA
}


# ---------------------------------------------------------------------------------------------
# speed-ups and dispersion
# ---------------------------------------------------------------------------------------------

# The comparison rule is one for every section (fusedsnn/bench/modes.py); the older names stay.
_spread = modes.spread
_execution_mode = modes.row_execution_mode
_is_baseline = modes.is_baseline
_speedups = modes.add_speedups


def _add_speedups(rows: list[dict]) -> None:
    """Neuron rows: speed-up over the fastest baseline of the same case and execution mode."""
    _speedups(rows, lambda r: (r["neuron"], r["T"], r["B"], r["N"], r["dtype"], r["mode"]))


#: the study's training sections, whose rows are compared with snnTorch by network and sizes
_TRAINING_SECTIONS = ("throughput", "batch", "width", "neuron_models", "precision", "population", "shd")


def _training_speedups(rows: list[dict]) -> None:
    """Training rows: speed-up over the fastest baseline twin (tutorial or hoisted snnTorch
    stepping) of the same network, sizes and execution mode."""
    _speedups(rows, lambda r: (r["network"], r["batch"], r["num_steps"], r["hidden"], str(r["channels"]),
                               r["neuron"], r["outputs"], r["precision"]))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _cell(row: dict, column: str) -> str:
    """Table cells; a few columns combine fields (a value with its range)."""
    if column == "median_s (q20-q80)":
        if row.get("median_s") is None:
            return "-"
        return f"{row['median_s']:.4g} ({row['q20_s']:.3g}-{row['q80_s']:.3g})"
    if column == "speedup (range)":
        if row.get("speedup_vs_baseline") is None:
            return "-"
        if row.get("speedup_low") is None:
            return "1 (baseline)"
        return f"{row['speedup_vs_baseline']:.3g}x ({row['speedup_low']:.2g}-{row['speedup_high']:.2g})"
    if column == "spread":
        return "-" if row.get("spread") is None else f"{row['spread']:.0%}"
    if column == "noisy":
        return "NOISY" if row.get("noisy") else ""
    return _fmt(row.get(column))


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table; columns whose cells are all empty ("-") are left out."""
    cells = [[_cell(r, c) for c in columns] for r in rows]
    keep = [i for i in range(len(columns)) if not cells or any(row[i] not in ("-", "") for row in cells)]
    columns = [columns[i] for i in keep]
    cells = [[row[i] for i in keep] for row in cells]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


_format_table = format_table  # an older name, kept for scripts outside this repository; nothing here uses it


def write_outputs(out: Path, name: str, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    if rows:
        columns = sorted({k for r in rows for k in r})
        with open(out / f"{name}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


_TIMING = ["median_s (q20-q80)", "spread", "speedup (range)", "noisy"]
_TRAIN_COLUMNS = ["network", "provider", "execution_mode", "batch", "num_steps", "hidden", "channels", "neuron",
                  "outputs", "precision", *_TIMING[:2], "images_per_s", *_TIMING[2:], "baseline", "achieved_tflops",
                  "average_power_w", "compile_s", "skipped"]
TABLE_COLUMNS = {
    "neurons": ["neuron", "dtype", "T", "B", "N", "mode", "execution_mode", "provider", *_TIMING, "baseline",
                "fraction_of_copy_bandwidth", "compile_s", "skipped"],
    "throughput": _TRAIN_COLUMNS, "batch": _TRAIN_COLUMNS, "width": _TRAIN_COLUMNS,
    "neuron_models": _TRAIN_COLUMNS, "precision": _TRAIN_COLUMNS, "population": _TRAIN_COLUMNS, "shd": _TRAIN_COLUMNS,
    "time_split": ["network", "device", "provider", "backend", "batch", "num_steps", "neuron_share", "synaptic_share",
                   "other_share", "timer"],
    "gpu_targets": ["neuron", "T", "B", "N", "mode", "execution_mode", "provider", "median_s",
                    "fraction_of_copy_bandwidth", "target_fraction_of_copy_bandwidth", "speedup_vs_snntorch",
                    "target_speedup_vs_snntorch", "baseline", "speedup_vs_baseline"],
    "step_modes": ["network", "provider", "mode", "batch", "num_steps", "median_s", "images_per_s",
                   "target_images_per_s", "speedup_vs_baseline", "baseline", "speedup_vs_fused_eager", "skipped"],
    "all_to_all": ["neuron", "T", "B", "N", "provider", "median_s", "q20_s", "q80_s", "speedup_vs_snntorch",
                   "target_speedup", "spike_rate", "threads"],
    "memory": ["network", "provider", "num_steps", "batch", "peak_mib", "peak_vs_fused", "peak_vs_snntorch",
               "peak_rss_mib", "median_s", "speed_vs_fused"],
    "net3": ["network", "T", "B", "provider", "execution_mode", "ms_per_step", *_TIMING, "baseline", "compile_s",
             "skipped"],
    "open_neuromorphic": ["n", "T", "B", "provider", "execution_mode", "backend", *_TIMING, "baseline",
                          "neuron_overhead_vs_linear", "speedup_vs_spikingjelly", "peak_memory_bytes", "compile_s",
                          "skipped"],
}


def published_table(rows: list[dict]) -> str:
    """Our baseline throughput beside the study's published figures (labelled as such)."""
    lines = [f"published figures: {SOURCE}"]
    for net in ("DSNN", "CSNN"):
        ours = [r for r in rows if r["network"] == net and r.get("median_s")]
        mine = ", ".join(f"{r['provider']} {r['images_per_s']:.0f} img/s ({r['achieved_tflops']:.3g} TFLOPS, "
                         f"batch {r['batch']}, {r['num_steps']} steps)" for r in ours)
        theirs = ", ".join(f"{dev} {v:,} img/s ({TFLOPS[net][dev]} TFLOPS)" for dev, v in THROUGHPUT[net].items())
        lines.append(f"  {net} measured here [{rows[0]['device'] if rows else '?'}]: {mine}")
        lines.append(f"  {net} published: {theirs}")
    return "\n".join(lines)
