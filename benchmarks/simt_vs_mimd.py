"""Measure the SIMT / MIMD mapping figures, and write docs/simt_vs_mimd.md from committed results.

    python benchmarks/simt_vs_mimd.py --results benchmarks/results/NAME   # measure: NAME/simt_vs_mimd.json
    python benchmarks/simt_vs_mimd.py --render-only                        # rewrite the doc, no measuring

Measures: (1) the MIMD mapping, emulated by the host backend's tiles x workers partition, on the
fused Leaky forward+backward; (2) the SIMT mapping's compiled resources (registers and spills per
BLOCK size, from ptxas, no GPU needed); (3) the study's comparisons that a CPU can speak to (batch
sweep, neuron models, population codes), fused against snnTorch's twins, each ratio against the
fastest twin of the same execution mode (the rows' ``baseline`` / ``speedup_vs_baseline``); (4) the
all-to-all op's host partition against snnTorch.

The doc is rendered from committed JSON only. Its tables are benchmarks/report.py's (between report
markers, so ``report.py --check`` keeps them honest): this script's measurements come from
``report.SIMT_FOLDER``, the study's comparisons from ``report.CPU_FOLDER`` (``fusedsnn bench
--quick``, the same sections), the GPU figures from the GPU check's folders. After a new
measurement, commit its folder, point SIMT_FOLDER at it and run ``--render-only``. Numbers from the
study are labelled as published.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever is installed

from fusedsnn.bench.all_to_all import bytes_per_step  # noqa: E402
from fusedsnn.bench.published import FINDINGS, SOURCE  # noqa: E402


def _report():
    """benchmarks/report.py, which renders every table of the doc."""
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------

def host_partition_sweep(repeats: int) -> list[dict]:
    import torch

    import fusedsnn.functional as F
    from fusedsnn.backends.host import lif as lif_host
    from fusedsnn.bench.timing import measure

    rows = []
    for B in (8, 128):
        x = (torch.randn(25, B, 1000) * 1.5).requires_grad_()
        for tiles, workers in ((1, 1), (2, 1), (2, 6), (64, 6), (1472, 6)):
            def step():
                with lif_host.partition(tiles=tiles, workers_per_tile=workers):
                    spk, mem = F.leaky(x, 0.9, backend="host")
                    torch.autograd.grad(spk.sum() + mem.sum(), x)

            t = measure(step, "cpu", warmup=2, repeats=repeats)
            rows.append({"B": B, "tiles": tiles, "workers_per_tile": workers, "threads": torch.get_num_threads(),
                         "median_ms": t.median_s * 1e3})
    return rows


def simt_registers() -> list[dict]:
    """Registers/spills per BLOCK for the Leaky kernels on sm_90 (compiled in a clean process)."""
    rows = []
    for block, warps in ((128, 1), (256, 2), (512, 4), (1024, 4), (1024, 8)):
        code = ("import json,sys,torch;from fusedsnn.backends.triton.aot import compile_lif_kernels;"
                "from fusedsnn.spec import LIFSpec;from fusedsnn.surrogate import atan;"
                f"infos=compile_lif_kernels(LIFSpec(False,0,0,True,atan()),torch.float32,90,(False,)*4,{block},{warps});"
                "print(json.dumps([[i.name,i.registers,i.spill_stores] for i in infos]))")
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for name, regs, spills in json.loads(out.stdout.strip().splitlines()[-1]):
            rows.append({"BLOCK": block, "num_warps": warps, "neurons_per_thread": block // (32 * warps),
                         "kernel": name, "registers": regs, "spill_bytes": spills})
    return rows


def study_sections(repeats: int) -> dict:
    """The study's training sections at quick sizes, each row with its execution mode and its ratio to
    the fastest baseline twin of that mode (``study._training_speedups``)."""
    import torch

    from fusedsnn.bench import study

    args = SimpleNamespace(quick=True, repeats=repeats)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {}
    for name in ("batch", "neuron_models", "population"):
        rows = study.SECTIONS[name](args, device, lambda m: None)
        study._training_speedups(rows)
        check_same_mode(rows)
        out[name] = rows
    return out


def check_same_mode(rows: list[dict]) -> None:
    """Refuse a ratio across execution modes: every row's ``baseline`` must name a row of the same
    case in the same ``execution_mode`` (a graph or compiled fused step is never set against an
    eager baseline)."""
    case = ("network", "batch", "num_steps", "hidden", "channels", "neuron", "outputs", "precision")
    for r in rows:
        if not r.get("baseline"):
            continue
        same = [b for b in rows if b["provider"] == r["baseline"] and all(b.get(k) == r.get(k) for k in case)
                and b["execution_mode"] == r["execution_mode"]]
        if not same:
            raise ValueError(f"{r['provider']} ({r['execution_mode']}) has no {r['baseline']} row of its own "
                             f"execution mode: its speed-up would cross modes")


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------

def _marker(name: str) -> str:
    """An empty report region; benchmarks/report.py fills it."""
    return f"<!-- report:{name} -->\n<!-- /report:{name} -->"


def bytes_table(spike_rate: float) -> str:
    """Bytes per forward step of the all-to-all neuron under each mapping (a model, from
    ``bench.all_to_all.bytes_per_step``) at the issue's shapes and a measured spike rate."""
    lines = ["| B | N | neuron I/O | MIMD exchange per tile (float / bits) | SIMT W re-read | host W rows (cache) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for b, n in ((32, 256), (128, 1000), (2, 8)):
        m = bytes_per_step(b, n, spike_rate)
        lines.append(f"| {b} | {n} | {m['neuron_io']:,} | {m['mimd_exchange_per_tile_float']:,} / "
                     f"{m['mimd_exchange_per_tile_bits']:,} | {m['simt_weight_reread']:,} | {m['host_weight_rows']:,} |")
    return "\n".join(lines)


def render_doc() -> str:
    """docs/simt_vs_mimd.md from committed results: this text, with report.py's tables filled in."""
    report = _report()
    simt = json.loads((report.RESULTS / report.SIMT_FOLDER / "simt_vs_mimd.json").read_text())
    rate = simt["all_to_all_host_tiles"][0]["spike_rate"]
    text = f"""# SIMT vs MIMD for fused SNN training

Written by `benchmarks/simt_vs_mimd.py --render-only` from committed results: every table below is
generated by `benchmarks/report.py` from the JSON its caption names, and every figure not measured
by this project says **published**, from the study: {SOURCE}.
**No IPU was available** for any of it: the MIMD side is shown through the host backend, which
runs the IPU codelets' loops with the IPU's tiles x workers partition on CPU threads; the SIMT
side through compiled resources (ptxas) and the GPU check's committed runs, which predate the
strongest baselines (their captions say so).

## How the fused neuron maps onto each machine

**SIMT (GPU, Triton).** One program per block of `BLOCK` neurons; each thread owns
`BLOCK / (32 * num_warps)` neurons and walks all T steps with their state in registers. Every
neuron executes the same instruction stream; the only data-dependent choices (spike or not,
reset or not) are computed as selects, so warps never diverge. Per step each thread issues
coalesced loads/stores for its neurons: the loop is memory-bound and its speed is set by how
many bytes per neuron-step it moves (docs/design.md) and by occupancy (registers per thread).

**MIMD (IPU, Poplar).** Whole neurons per tile, one MultiVertex per tile, six worker threads per
tile each walking time over a contiguous share of the tile's neurons. State lives in tile SRAM;
no exchange inside the time loop. On the IPU the synaptic layers and the neurons alternate
between bulk-synchronous compute and exchange phases; the neuron phase itself is exchange-free.

## MIMD mapping, emulated on the host (fused Leaky forward+backward, T=25, N=1000)

{_marker("simt-partition")}

Any partition gives identical results (tested). On the CPU threads of that run the split
matters little once there are at least as many pieces as threads; very fine splits (1472 x 6 =
8,832 pieces, an IPU Mk2's thread count) cost scheduling overhead on a CPU that the IPU's
hardware workers do not pay.

## SIMT mapping: compiled resources (sm_90, Leaky, no learnable parameters)

{_marker("simt-registers")}

These are compiler outputs, not timings. More neurons per thread raises registers per thread
(fewer resident warps) but gives each thread independent loads in flight. On the H200 the
autotuner chose 256 neurons per 4 warps (2 per thread) for both kernels at N=65,536, with the
other candidates' times beside it in `launch_configs.json` (docs/gpu.md).

## The study's comparisons, as far as a CPU can speak to them

The study's training sections (DSNN, 25 steps unless stated), fused against snnTorch's twins,
each ratio against the fastest twin measured in the same execution mode.

Batch sweep:

{_marker("simt-batch")}

Published: {FINDINGS['batch_sweep']}.

Neuron models (batch 128):

{_marker("simt-neuron-models")}

Population codes (batch 128; 1 time step except the 25-step baseline):

{_marker("simt-population")}

Published: {FINDINGS['population']}.

The study's published training throughput beside what the fused networks reached here:

{_marker("simt-published")}

## Where each wins, and what is not known yet

{_marker("simt-fusion")}
- **IPU about 14x an A100 at batch 8** (published): not answered here. The answer needs the
  fused training step at batch 8 on a GPU, timed against the strongest GPU baselines (snnTorch
  compiled and captured in a CUDA graph, mode against mode), and on an IPU. The committed GPU
  runs measured batch 128 only, against eager snnTorch only; no IPU was available. The GPU half
  waits for a new GPU measurement with the strongest baselines (no GPU is available now), the
  IPU half for an IPU. What the mapping predicts, unmeasured: on SIMT hardware the fused kernel's
  parallelism is B * N neurons; at batch 8 and N=1000 that is 8,000 neurons, i.e. 16 programs of
  512, far too few to fill an H100's 132 SMs, while the IPU's MIMD tiles stay busy.
- **Population codes at one time step, best IPU about 2x the best GPU** (published): not
  answered here either. The CPU rows above show what fusion gives at one step (there is no time
  loop to fuse), but the claim is about a GPU and an IPU; the GPU side waits for a GPU run of the
  population section with the strongest baselines (no GPU is available now).
- **IPU vs GPU for the same fused op**: not measured (no IPU). The host emulation shows the
  MIMD mapping is correct and gives the same numbers; it does not show IPU speed.

## Measured on a GPU (NVIDIA H200)

The GPU check on one H200 (analysis: docs/gpu.md, which also has the H100 run), each row in its
execution mode with a ratio only against snnTorch run the same way:

{_marker("gpu-h200")}

On SIMT hardware the fused neuron is a streaming kernel at the memory wall (the table's fraction
of copy bandwidth), so what decides a small network's training speed is everything around it:
kernel launches, the host's Python and autograd time, and the layers' own kernels (for CSNN,
cuDNN's convolutions). A CUDA graph removes the host from the step; the MIMD machine gets the
same effect from its compiled, statically scheduled program.

## All-to-all recurrence (RLeaky/RSynaptic with `nn.Linear(N, N)`)

Here the neurons are coupled: step t needs every spike of step t-1 (`rec = W @ spk[t-1] + b`).
The fused op (fusedsnn/ops/all_to_all.py) runs the whole sequence in one call on each backend.

**MIMD mapping (host, csrc/host/fusedsnn_all_to_all.cpp).** Each tile (a thread) owns a contiguous
range of neurons, i.e. their rows of W, for the whole sequence. Per step it computes its
neurons' recurrent input from all of last step's spikes, skipping silent ones (spikes are 0 or
`graded_spikes_factor`), updates them, then waits at a barrier until every tile has written its
spikes: the IPU's compute / exchange / sync pattern, with the exchange being the shared spike row.
The host runs this neuron-tile mapping only when there are fewer batch rows than threads; with
at least as many rows, each thread owns whole batch rows for all neurons (rows are independent,
so no barrier), which measured faster on a 2-core CPU, where every thread sees all of W in
shared memory anyway. An IPU cannot do that: W must be split across tile memories, so the tile
mapping with a per-step exchange is the one that carries over.
The backward's per-step spike gradient `G_t @ W` is dense (surrogate gradients are not sparse)
and goes to BLAS; `dW` and `db` are one product over all T steps after the loop.

Measured (forward+backward, fused and snnTorch interleaved; the machine was shared with other
jobs, so compare within a row pair, not across runs):

{_marker("simt-all-to-all-tiles")}

When the two cores are already oversubscribed by other work (as in that run), every
OpenMP-threaded op, snnTorch's `nn.Linear` included, slows by an order of magnitude with two
threads: the two-thread rows say more about that than about either code.
On a CPU the barrier per step is a real cost (a few microseconds, far more when the cores are
oversubscribed) against a few hundred microseconds of work per step at this size; the host
therefore keeps one tile when a step has fewer than 2^16 multiply-adds (T=10000, B=2, N=8 runs
single-threaded). An IPU tile pays a hardware sync of well under a microsecond per step, so the
MIMD mapping of this neuron is sync-bound only at much smaller steps.

**MIMD mapping on the IPU (csrc/codelets/lif_all_to_all_codelets.cpp, csrc/popart/lif_all_to_all_op.cpp).**
The same forward partition with W split across tile memories: a tile owns its neurons' rows of W
(and, where the plan also splits the batch, a block of batch rows) for the whole sequence; each
step is one compute set (the tile's rows of `W @ spk + b`, then the neuron update), then one
exchange of the step's spikes to every tile of its batch block. The backward keeps that per-step
pattern instead of a BLAS call: a tile holds its neurons' columns of W, receives every neuron's
`G_t` by exchange, and forms its block of `G_t @ W` and its rows of `dW^T` from its own spike
history, so no partial sums cross tiles (receiving `G_t` costs a tile Bt * N values per step, as
receiving every tile's partial sums for its neurons would, without the extra reduction). Verified
on the host with the exchange emulated (tests/backends/poplar/test_all_to_all_codelets.py), not on an IPU.

**SIMT mapping (Triton, fusedsnn/backends/triton/all_to_all.py).** Step t+1 needs all of step t's
spikes of the same batch row and nothing of other rows, so one program owns a block of 16 batch
rows and all N neurons and loops over t: spikes never leave the SM, no grid-wide barrier is
needed, and W is read once per program and held in registers (N <= 64; `tl.dot` per step).
For larger N a GPU must either re-read W every step (from L2 when it fits: 4 MB at N=1000) or
split neurons across CTAs with a grid-wide barrier per step; neither is implemented, so wider
layers run the per-step path on a GPU.

Bytes per forward step, a model (`fusedsnn.bench.all_to_all.bytes_per_step`; float32, at the
spike rate {rate:.2f} measured above, `benchmarks/results/{report.SIMT_FOLDER}/simt_vs_mimd.json`):

{bytes_table(rate)}

What this predicts: on the IPU, W stays in tile SRAM and only spikes move (B * N values per step
to each tile, or B * N bits packed), so the exchange is small next to the neuron I/O; on a GPU
the same layer is either register-resident (small N, the persistent kernel) or pays a full W read
per step, which at N=1000 and small B exceeds the neuron I/O several times over. Neither IPU nor
GPU timings exist for this neuron yet; the numbers above are the host's.
"""
    return report.render(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "simt_vs_mimd.md"))
    parser.add_argument("--results", default=None, help="measure, and write simt_vs_mimd.json to this folder")
    parser.add_argument("--render-only", action="store_true", help="no measuring: rewrite the doc from committed JSON")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.render_only:
        Path(args.out).write_text(render_doc())
        print(f"wrote {args.out}")
        return 0
    if not args.results:
        parser.error("measuring needs --results FOLDER (or --render-only)")
    import torch

    from fusedsnn.bench import all_to_all, study

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = study.environment(device)
    sections = study_sections(args.repeats)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    (res / "simt_vs_mimd.json").write_text(json.dumps(
        {"environment": env, "host_partition": host_partition_sweep(args.repeats), "simt_registers": simt_registers(),
         **sections, "all_to_all_host_tiles": all_to_all.host_tile_sweep(repeats=args.repeats)}, indent=1))
    report = _report()
    for name, rows in sections.items():
        print(f"\n{name}:\n" + report._training_table(rows, report._STUDY[name]))
    print(f"\nwrote {res / 'simt_vs_mimd.json'}; commit it under benchmarks/results/, set SIMT_FOLDER in "
          "benchmarks/report.py, then run this script with --render-only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
