"""Where the GPU time goes, for the issue-11 targets that the first H200 run missed.

    python benchmarks/gpu/where_time_goes.py [--device cuda] [--out DIR]

1. Leaky float32 T=25, B=128, N=65,536: the bench's step (loss = sum of the outputs, whose
   upstream gradients are stride-0 scalars) against a backward fed materialised random upstream
   gradients (the bytes that ``bench.neurons.kernel_bytes`` counts), each with its kernel table.
2. DSNN and CSNN training step at B=128, T=25: kernel count and the heaviest kernels of one
   eager step (a CUDA graph replays exactly these), and graph replays of variants (loss written
   as one batched call instead of a Python loop over steps; AdamW fused instead of foreach).

Prints short tables; with ``--out`` also writes them as JSON. On a CPU it runs at tiny sizes as a
plumbing check (the dry run of benchmarks/gpu/check.sh does not call it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from fusedsnn import functional as FF
from fusedsnn import population
from fusedsnn.bench import neurons, timing, training


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(fn, device, repeats=20, warmup=3) -> dict:
    for _ in range(warmup):
        fn()
    sync(device)
    samples, issue = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        issue.append(time.perf_counter() - start)  # host time to launch everything
        sync(device)
        samples.append(time.perf_counter() - start)
    q = statistics.quantiles(samples, n=5, method="inclusive")
    return {"median_ms": statistics.median(samples) * 1e3, "q20_ms": q[0] * 1e3, "q80_ms": q[3] * 1e3,
            "issue_ms": statistics.median(issue) * 1e3}


def kernel_table(fn, device, top=8) -> dict:
    """GPU kernels of one call of ``fn``: count, total and the heaviest by total time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    fn()
    sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    kernels = {}
    count = 0
    for ev in prof.events():
        if device.type == "cuda" and ev.device_type == torch.autograd.DeviceType.CUDA:
            name = ev.name[:70]
            total, n = kernels.get(name, (0.0, 0))
            kernels[name] = (total + ev.time_range.elapsed_us(), n + 1)
            count += 1
    rows = sorted(kernels.items(), key=lambda kv: -kv[1][0])
    return {"kernels": count, "gpu_us": sum(t for t, _ in kernels.values()),
            "top": [{"name": k, "us": round(t, 1), "count": n} for k, (t, n) in rows[:top]]}


def leaky_section(device) -> dict:
    T, B, N = (25, 128, 65_536) if device.type == "cuda" else (4, 8, 256)
    case = neurons.NeuronCase("Leaky", T, B, N, torch.float32, device)
    copy = timing.copy_bandwidth(T * B * N * 4 * 4, device)
    out = {"shape": [T, B, N], "copy_GBps": copy / 1e9}
    x = (torch.randn(T, B, N, device=device) * 1.5).requires_grad_()
    g_spk, g_mem = torch.randn_like(x), torch.randn_like(x)

    def fwd_nograd():
        with torch.no_grad():
            FF.leaky(x, 0.9, 1.0)

    def fwd_grad():
        FF.leaky(x, 0.9, 1.0)

    def bench_step():  # what bench.neurons times: upstream gradients are stride-0 scalars
        spk, mem = FF.leaky(x, 0.9, 1.0)
        torch.autograd.grad(spk.sum() + mem.sum(), x)

    def real_grads():  # materialised upstream gradients, as a network's next layer gives
        spk, mem = FF.leaky(x, 0.9, 1.0)
        torch.autograd.grad((spk, mem), x, (g_spk, g_mem))

    def real_grads_graph():  # the same, replayed from a CUDA graph: no host launch cost
        replay()

    replay = training.cuda_graph_step(real_grads, device) if device.type == "cuda" else real_grads

    def copy_only():
        g_mem.copy_(g_spk)

    for name, fn, moved in (("forward no_grad", fwd_nograd, neurons.kernel_bytes(case, "forward")),
                            ("forward grad mode", fwd_grad, None),
                            ("bench step (sum loss)", bench_step, None),
                            ("fwd+bwd, real upstream grads", real_grads,
                             neurons.kernel_bytes(case, "forward+backward")),
                            ("same, CUDA graph replay", real_grads_graph, neurons.kernel_bytes(case, "forward+backward")),
                            ("copy of one [T,B,N] tensor", copy_only, 2 * T * B * N * 4)):
        row = wall(fn, device)
        if moved:
            row["fraction_of_copy"] = moved / (row["median_ms"] / 1e3) / copy
        row.update(kernel_table(fn, device, top=6))
        out[name] = row
        print(f"  {name:30s} {row['median_ms']:.3f} ms (issue {row['issue_ms']:.3f})  ({row['kernels']} kernels, {row['gpu_us']:.0f} us on GPU)"
              + (f"  {row['fraction_of_copy']:.2f} of copy" if moved else ""))
        for k in row["top"]:
            print(f"      {k['us']:9.1f} us  x{k['count']:<3d} {k['name']}")
    return out


def ce_rate_loss_loop(spk, y, num_classes):
    """snnTorch's way (and fusedsnn's before the first H200 run): one nll_loss per step."""
    log_p = F.log_softmax(spk, dim=-1)
    total = torch.zeros((), device=spk.device)
    for t in range(spk.shape[0]):
        total = total + F.nll_loss(log_p[t], y)
    return total / spk.shape[0]


def network_section(device) -> dict:
    out = {}
    cuda = device.type == "cuda"
    for kind in ("DSNN", "CSNN"):
        batch, steps = (128, 25) if cuda else (8, 4)
        size = {} if cuda else ({"hidden": 32} if kind == "DSNN" else {"channels": (2, 4)})
        torch.manual_seed(0)
        shape = (batch, 784) if kind == "DSNN" else (batch, 1, 28, 28)
        x = torch.rand(shape, device=device) * 2
        y = torch.randint(0, 10, (batch,), device=device)
        res = {}
        for loss_name, loss_fn in (("loop loss", lambda s: ce_rate_loss_loop(s, y, 10)),
                                   ("batched loss", lambda s: population.ce_rate_loss(s, y, 10))):
            for fused_adam in (False, True):
                model = training.make_model(kind, batch, steps, **size).to(device)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=cuda,
                                        **({"fused": True} if fused_adam else {"foreach": True}))

                def step():
                    opt.zero_grad(set_to_none=True)
                    spk, _ = model(x)
                    loss_fn(spk.float()).backward()
                    opt.step()

                label = f"{loss_name}, AdamW {'fused' if fused_adam else 'foreach'}"
                row = {"eager": wall(step, device, repeats=10)}
                if (loss_name, fused_adam) in (("loop loss", False), ("batched loss", True)):
                    row.update(kernel_table(step, device, top=8))
                if cuda:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        replay = training.cuda_graph_step(step, device)
                    row["graph"] = wall(replay, device, repeats=30)
                    row["graph_images_per_s"] = batch / (row["graph"]["median_ms"] / 1e3)
                res[label] = row
                g = row.get("graph", {}).get("median_ms", float("nan"))
                print(f"  {kind} {label:32s} eager {row['eager']['median_ms']:.3f} ms (issue {row['eager']['issue_ms']:.3f})  graph {g:.3f} ms"
                      + (f"  ({row['kernels']} kernels, {row['gpu_us']:.0f} us on GPU)" if "kernels" in row else ""))
                for k in row.get("top", []):
                    print(f"      {k['us']:9.1f} us  x{k['count']:<3d} {k['name']}")
        out[kind] = res
    return out


def host_section(device) -> dict:
    """cProfile of the host side of one fused Leaky fwd+bwd at a size where the GPU work is
    negligible: what Python and the launchers cost per call."""
    import cProfile
    import io
    import pstats

    x = (torch.randn(25, 1, 1000, device=device) * 1.5).requires_grad_()
    gs = (torch.randn_like(x), torch.randn_like(x))

    def fwd():
        with torch.no_grad():
            FF.leaky(x, 0.9, 1.0)

    def fwd_bwd():
        spk, mem = FF.leaky(x, 0.9, 1.0)
        torch.autograd.grad((spk, mem), x, gs)

    out = {}
    for name, fn in (("forward no_grad", fwd), ("forward+backward", fwd_bwd)):
        row = wall(fn, device, repeats=50)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200):
            fn()
        prof.disable()
        sync(device)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(22)
        out[name] = {**row, "cprofile_tottime": text.getvalue()}
        print(f"  host {name}: {row['median_ms'] * 1e3:.0f} us per call, issue {row['issue_ms'] * 1e3:.0f} us")
        print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))
    return out


def cudnn_section(device) -> dict:
    """CSNN graph step with cuDNN's heuristics against cudnn.benchmark (timed algorithm choice)."""
    out = {}
    if device.type != "cuda":
        return out
    x = torch.rand(128, 1, 28, 28, device=device) * 2
    y = torch.randint(0, 10, (128,), device=device)
    for bench_mode, layout in ((False, torch.contiguous_format), (True, torch.contiguous_format),
                               (False, torch.channels_last), (True, torch.channels_last)):
        torch.backends.cudnn.benchmark = bench_mode
        torch.manual_seed(0)
        model = training.make_model("CSNN", 128, 25).to(device).to(memory_format=layout)
        x = x.contiguous(memory_format=layout)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=True, fused=True)

        def step():
            opt.zero_grad(set_to_none=True)
            spk, _ = model(x)
            population.ce_rate_loss(spk.float(), y, 10).backward()
            opt.step()

        replay = training.cuda_graph_step(step, device)
        row = wall(replay, device, repeats=30)
        row.update(kernel_table(step, device, top=8))
        label = f"cudnn.benchmark={bench_mode}, {'channels_last' if layout == torch.channels_last else 'NCHW'}"
        out[label] = row
        print(f"  CSNN graph, {label}: {row['median_ms']:.3f} ms "
              f"({128 / row['median_ms'] * 1e3:.0f} img/s)")
        for k in row["top"]:
            print(f"      {k['us']:9.1f} us  x{k['count']:<3d} {k['name']}")
    torch.backends.cudnn.benchmark = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--sections", default="leaky,networks,host,cudnn")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"profile on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    parser_sections = args.sections.split(",")
    sections = {"leaky": leaky_section, "networks": network_section, "host": host_section, "cudnn": cudnn_section}
    result = {name: sections[name](device) for name in parser_sections}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "profile.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
