"""The GPU sections of ``fusedsnn bench``: the issue's targets, and the training step run eager,
under ``torch.compile`` and replayed from a CUDA graph.

On a CUDA device they run at the study's sizes (B=128, T=25; the Leaky microbenchmark at
N=65,536). Elsewhere they run at tiny sizes, so that ``benchmarks/gpu/check.sh --dry-run`` walks
the same code on a CPU (through Triton's interpreter when ``TRITON_INTERPRET=1``); CUDA graphs
are then skipped, with the reason in the row, and ``torch.compile`` uses its ``aot_eager``
backend (Dynamo and AOTAutograd trace the fused op as on a GPU; inductor's C++ code generation
would take minutes on a small CPU). CPU rows are plumbing checks, not results.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..backends.triton import lif as lif_triton
from . import neurons, training
from .timing import copy_bandwidth, measure

#: The issue's GPU targets (float32).
LEAKY_COPY_FRACTION_TARGET = 0.80
LEAKY_SPEEDUP_TARGET = 20.0
TRAINING_TARGETS = {"DSNN": 460_000, "CSNN": 78_000}


def fused_backend(device: torch.device) -> str:
    """triton on CUDA, and on CPU under Triton's interpreter; the CPU default otherwise."""
    if device.type == "cuda" or lif_triton.interpreter_enabled():
        return "triton"
    return "host"


def _snntorch_available() -> bool:
    try:
        import snntorch  # noqa: F401
    except ImportError:
        return False
    return True


def section_gpu_targets(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """Leaky forward and forward+backward, float32, T=25, B=128, N=65,536 (tiny off-GPU): the
    fraction of a device copy's bandwidth measured in the same run, and the speed-up over
    snnTorch's step loop on the same device."""
    T, B, N = (25, 128, 65_536) if device.type == "cuda" else (4, 8, 256)
    fused = f"fused-{fused_backend(device)}"
    copy_bw = copy_bandwidth(T * B * N * 4, device)
    progress(f"copy bandwidth {copy_bw / 1e9:.1f} GB/s")
    rows = []
    case = neurons.NeuronCase("Leaky", T, B, N, torch.float32, device)
    providers = [fused] + (["snntorch"] if _snntorch_available() else [])
    if neurons.unavailable(case, "spikingjelly", "forward") is None:
        providers.append("spikingjelly")  # eager too: where its wheel was installed (check.sh)
    for mode in ("forward", "forward+backward"):
        by_provider = {}
        for provider in providers:
            progress(f"targets Leaky {mode} {provider}")
            by_provider[provider] = neurons.run_case(case, provider, mode, repeats=args.repeats,
                                                     copy_bytes_per_s=copy_bw)
        base = by_provider.get("snntorch")
        fastest = min((r for p, r in by_provider.items() if not p.startswith("fused")),
                      key=lambda r: r["median_s"], default=None)
        for provider, row in by_provider.items():
            row["copy_bytes_per_s"] = copy_bw
            row["speedup_vs_snntorch"] = base["median_s"] / row["median_s"] if base else None
            row["baseline"] = fastest["provider"] if fastest else None  # eager, as every row here
            row["speedup_vs_baseline"] = fastest["median_s"] / row["median_s"] if fastest else None
            if provider == fused and mode == "forward+backward":
                row["target_fraction_of_copy_bandwidth"] = LEAKY_COPY_FRACTION_TARGET
                row["target_speedup_vs_snntorch"] = LEAKY_SPEEDUP_TARGET
            rows.append(row)
    if device.type == "cuda":
        # The same fused forward+backward replayed from a CUDA graph: the kernels alone, without
        # the host's launch and autograd cost (on the first H200 run, ~0.5 ms of host time per
        # call left the GPU idle between the forward and the backward kernels).
        progress(f"targets Leaky forward+backward {fused} CUDA graph")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            replay = training.cuda_graph_step(neurons.make_step(case, fused, "forward+backward"), device)
            timing = measure(replay, device, warmup=2, repeats=args.repeats)
        moved = neurons.kernel_bytes(case, "forward+backward")
        # Graph against graph: snnTorch's stepped forward+backward captured the same way (a ratio
        # against its eager row would credit the fused side with the launch cost the graph removes).
        base = None
        if _snntorch_available():
            progress("targets Leaky forward+backward snntorch-graph")
            base = neurons.run_case(case, "snntorch-graph", "forward+backward", repeats=args.repeats)
            base["copy_bytes_per_s"] = copy_bw
            base["speedup_vs_snntorch"] = 1.0
            rows.append(base)
        rows.append({
            "neuron": "Leaky", "T": T, "B": B, "N": N, "dtype": "float32", "device": str(device),
            "provider": f"{fused} (CUDA graph)", "mode": "forward+backward", "execution_mode": "graph",
            **timing.as_dict(),
            "neuron_steps_per_s": T * B * N / timing.median_s, "bytes_moved": moved,
            "achieved_bytes_per_s": moved / timing.median_s,
            "fraction_of_copy_bandwidth": moved / timing.median_s / copy_bw, "copy_bytes_per_s": copy_bw,
            "speedup_vs_snntorch": base["median_s"] / timing.median_s if base and base.get("median_s") else None,
            "target_fraction_of_copy_bandwidth": LEAKY_COPY_FRACTION_TARGET,
            "target_speedup_vs_snntorch": LEAKY_SPEEDUP_TARGET,
        })
    return rows


def section_step_modes(args, device: torch.device, progress: Callable[[str], None]) -> list[dict]:
    """DSNN and CSNN training step (forward, loss, BPTT backward, AdamW) at B=128, T=25: snnTorch
    eager, and fused eager, under torch.compile, and replayed from a CUDA graph. Also writes the
    launch configurations the Triton autotuner chose to ``launch_configs.json``."""
    cuda = device.type == "cuda"
    backend = fused_backend(device)
    rows = []
    for kind in ("DSNN", "CSNN"):
        batch, steps = (128, 25) if cuda else (8, 4)
        size = {} if cuda else ({"hidden": 32} if kind == "DSNN" else {"channels": (2, 4)})
        # every mode has its own baselines (both snnTorch twins run the same way), so that each
        # speed-up is within one mode
        twins = ("snntorch-tutorial", "snntorch-hoisted") if _snntorch_available() else ()
        cases = [(provider, mode) for mode in training.STEP_MODES for provider in (*twins, "fused")]
        for provider, mode in cases:
            progress(f"step modes {kind} {provider} {mode}")
            reason = training.step_mode_unavailable(mode, device)
            if reason is not None:
                rows.append({"network": kind, "provider": provider, "mode": mode, "batch": batch,
                             "num_steps": steps, "hidden": size.get("hidden", 1000),
                             "channels": list(size.get("channels", (12, 64))) if kind == "CSNN" else None,
                             "neuron": "leaky", "outputs": 10, "precision": "float32", "device": str(device),
                             "median_s": math.nan, "images_per_s": math.nan, "skipped": reason,
                             "execution_mode": {"compile": "compiled", "cuda_graph": "graph"}.get(mode, "eager")})
                continue
            row = training.run_training_case(kind, provider, batch, steps, device, args.repeats, mode=mode,
                                             backend=None if provider.startswith("snntorch") else backend,
                                             compile_backend="inductor" if cuda else "aot_eager", **size)
            row["backend"] = None if provider.startswith("snntorch") else backend
            if cuda:
                row["target_images_per_s"] = TRAINING_TARGETS[kind]
            rows.append(row)
        eager = next((r for r in rows if r["network"] == kind and r["provider"] == "fused" and r["mode"] == "eager"), None)
        for r in rows:
            if r["network"] != kind:
                continue
            if eager is not None and r["provider"] == "fused":  # the fused model's own gain per mode
                r["speedup_vs_fused_eager"] = eager["median_s"] / r["median_s"]
            timed = [b for b in rows if b["network"] == kind and b["mode"] == r["mode"]
                     and b["provider"].startswith("snntorch") and not b.get("skipped")]
            fastest = min(timed, key=lambda b: b["median_s"], default=None)
            r["baseline"] = fastest["provider"] if fastest else None
            r["speedup_vs_baseline"] = (fastest["median_s"] / r["median_s"]
                                        if fastest and not r.get("skipped") else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "launch_configs.json").write_text(json.dumps(lif_triton.tuned_configs(), indent=1))
    return rows


SECTIONS = {"gpu_targets": section_gpu_targets, "step_modes": section_step_modes}
