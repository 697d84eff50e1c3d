"""The DSNN/CSNN training step in the modes users run, each as a user writes it:

* ``eager``: ``zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()``
* ``cuda_graph_step``: ``step = fs.cuda_graph_step(model, loss_fn, optimizer, (x, y))``; ``step(x, y)``
* ``compile-<mode>[-triton_op]``: the eager step around ``torch.compile(model, mode=...)``, the
  fused neurons traced as the generic custom op or (``-triton_op``) as the Triton kernels'
  ``triton_op`` (``FUSEDSNN_COMPILE_TRITON_OP=1``)

    python benchmarks/gpu/step_modes.py [--device cuda] [--out DIR] [--compile default,reduce-overhead]

Prints one row per case (median of wall-clock samples, each synchronised; images/s) and, with
``--out``, writes ``step_modes.json`` after every case (a phase stopped by its timeout keeps the
rows it has). On a CPU (the check's dry run) it runs at tiny sizes through Triton's interpreter:
CUDA graphs are reported as skipped and ``torch.compile`` uses the ``aot_eager`` backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import torch

import fusedsnn as fs
from fusedsnn.bench import training


def _loss(out, y):
    return fs.population.ce_rate_loss(out[0], y, 10)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _case(network: str, mode: str, device: torch.device, batch: int, steps: int, size: dict, repeats: int) -> dict:
    row = {"network": network, "mode": mode, "batch": batch, "num_steps": steps}
    cuda = device.type == "cuda"
    if mode == "cuda_graph_step" and not cuda:
        return {**row, "skipped": "CUDA graphs need CUDA"}
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = training.make_model(network, batch, steps, **size).to(device)
    shape = (batch, 784) if network == "DSNN" else (batch, 1, 28, 28)
    x = torch.rand(shape, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    fused = {"fused": True} if cuda else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=cuda, **fused)
    os.environ["FUSEDSNN_COMPILE_TRITON_OP"] = "1" if mode.endswith("-triton_op") else "0"
    t0 = time.perf_counter()
    if mode == "cuda_graph_step":
        step = fs.cuda_graph_step(model, _loss, opt, (x, y))
        run = lambda: step(x, y)  # noqa: E731
    else:
        forward = model
        if mode.startswith("compile-"):
            compile_mode = mode.removeprefix("compile-").removesuffix("-triton_op")
            forward = torch.compile(model, **({"mode": compile_mode} if cuda else {"backend": "aot_eager"}))

        def run():
            opt.zero_grad(set_to_none=True)
            loss = _loss(forward(x), y)
            loss.backward()
            opt.step()
            return loss

    for _ in range(3):
        run()
    _sync(device)
    row["setup_s"] = round(time.perf_counter() - t0, 3)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        _sync(device)
        samples.append(time.perf_counter() - t)
    med = statistics.median(samples)
    return {**row, "median_s": med, "images_per_s": batch / med, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", default="default,reduce-overhead",
                        help="torch.compile modes for the DSNN, comma-separated ('' for none)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch, steps = (128, 25) if cuda else (2, 3)
    sizes = {"DSNN": {"hidden": 1000} if cuda else {"hidden": 16},
             "CSNN": {"channels": (12, 64)} if cuda else {"channels": (2, 4)}}
    cases = [(n, m) for n in ("DSNN", "CSNN") for m in ("eager", "cuda_graph_step")]
    for mode in filter(None, args.compile.split(",")):
        cases += [("DSNN", f"compile-{mode}"), ("DSNN", f"compile-{mode}-triton_op")]
    rows = []
    for network, mode in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = _case(network, mode, device, batch, steps, sizes[network], args.repeats if cuda else 2)
        except Exception as error:  # one failing mode must not hide the others
            row = {"network": network, "mode": mode, "error": f"{type(error).__name__}: {error}"[:500]}
        rows.append(row)
        shown = (f"{row['images_per_s']:12,.0f} img/s  {row['median_s'] * 1e3:8.3f} ms  (setup {row['setup_s']} s)"
                 if "median_s" in row else row.get("skipped") or row.get("error"))
        print(f"{network:5s} {mode:32s} {shown}", flush=True)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "step_modes.json").write_text(json.dumps({"device": str(device), "rows": rows}, indent=1))
    if any("error" in r for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
