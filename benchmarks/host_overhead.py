"""Issue 8's per-call and memory-floor checks for the host backend, as plain timing loops.

Two measurements, each with its contenders interleaved sample by sample in one process (so a
shared machine slows them alike; compare the ratios):

* ``calls``: Leaky forward+backward (``F.leaky(x, 0.9, 1.0)`` then ``torch.autograd.grad`` with
  materialised random upstream gradients on spk and mem) against snnTorch 1.0.0's step loop and
  a bare ``torch.autograd.Function`` computing ``(2x, 3x)`` with the same upstream gradients:
  the floor of any custom op here. ``--shapes 1x1x8`` is the per-call cost target (within 2x
  of the bare Function), the T=1 row of the grid the ">= 1.0x snnTorch, aim 2x" target.
* ``floor``: T=25, B=128, N=1000 (or ``--shapes``): the fused forward+backward, each host kernel
  alone, snnTorch, and a 64 MiB copy; prints the bytes the fused op must move (28 B per
  neuron-step for Leaky float32, docs/design.md) over the copy's bandwidth, i.e. the fastest the
  op could be, and the speed-up over snnTorch that this allows.

``--cpu-time`` times with ``time.process_time`` (use with ``--threads 1`` on a loaded machine:
waiting for a core is then not counted). Example::

    PYTHONPATH=$PWD python benchmarks/host_overhead.py calls --shapes 1x1x8,1x128x1000 --threads 2
    PYTHONPATH=$PWD python benchmarks/host_overhead.py floor --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import fusedsnn.functional as F
from fusedsnn.backends.host import lif as lif_host


class _Bare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, g1, g2):
        return g1 * 2 + g2 * 3


def _snntorch_step(x: torch.Tensor, upstream: list) -> callable:
    import snntorch as snn

    neuron = snn.Leaky(beta=0.9)

    def step():
        neuron.reset_mem()
        outs = [neuron(x_t) for x_t in x.unbind(0)]  # not x[t]: O(T^2) select-backward zeros
        torch.autograd.grad(tuple(torch.stack(p) for p in zip(*outs)), x, upstream)

    return step


def _interleaved(steps: dict, clock, repeats: int, min_sample_s: float) -> dict:
    """Median and q20/q80 seconds per call of each step, sampled round-robin."""
    for step in steps.values():
        for _ in range(2):
            step()
    calls = {}
    for name, step in steps.items():
        start = clock()
        step()
        calls[name] = max(1, min(500, int(min_sample_s / max(clock() - start, 1e-7))))
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = clock()
            for _ in range(calls[name]):
                step()
            samples[name].append((clock() - start) / calls[name])
    out = {}
    for name, v in samples.items():
        q = statistics.quantiles(v, n=5)
        out[name] = (statistics.median(v), q[0], q[3])
    return out


def _fmt(r: tuple) -> str:
    median, lo, hi = r
    return f"{median * 1e6:10.1f} us [{lo * 1e6:.1f}-{hi * 1e6:.1f}]"


def run_calls(shape: tuple, clock, repeats: int) -> None:
    T, B, N = shape
    x = (torch.randn(T, B, N) * 1.5).requires_grad_()
    upstream = [torch.randn(T, B, N) for _ in range(2)]
    steps = {
        "fused": lambda: torch.autograd.grad(F.leaky(x, 0.9, 1.0), x, upstream),
        "snntorch": _snntorch_step(x, upstream),
        "bare": lambda: torch.autograd.grad(_Bare.apply(x), x, upstream),
    }
    r = _interleaved(steps, clock, repeats, min_sample_s=5e-3)
    fused, snn, bare = r["fused"][0], r["snntorch"][0], r["bare"][0]
    print(f"T={T} B={B} N={N}: fused {_fmt(r['fused'])}  snnTorch {_fmt(r['snntorch'])}  bare {_fmt(r['bare'])}"
          f"  | fused {snn / fused:.2f}x snnTorch, {fused / bare:.2f}x the bare Function's time")


def run_floor(shape: tuple, clock, repeats: int) -> None:
    T, B, N = shape
    x = (torch.randn(T, B, N) * 1.5).requires_grad_()
    upstream = [torch.randn(T, B, N) for _ in range(2)]
    src = torch.randn(16 << 20)  # 64 MiB: out of cache
    dst = torch.empty_like(src)
    spec = F.make_spec(synaptic=False, recurrence=0, reset_mechanism="subtract", reset_delay=True, spike_grad=None,
                       surrogate_disable=False, graded_spikes_factor=1.0, neuron="Leaky")
    beta, thr = torch.full((N,), 0.9), torch.ones(N)
    xd = x.detach()
    spk, _, mem, *_ = lif_host.lif_forward_host(xd, None, None, None, None, beta, thr, None, None, spec, False)
    steps = {
        "copy 64 MiB": lambda: dst.copy_(src),
        "fused fwd+bwd": lambda: torch.autograd.grad(F.leaky(x, 0.9, 1.0), x, upstream),
        "host forward kernel": lambda: lif_host.lif_forward_host(xd, None, None, None, None, beta, thr, None, None,
                                                                 spec, False),
        "host backward kernel": lambda: lif_host.lif_backward_host(
            upstream[0], None, upstream[1], None, mem, None, spk, None, None, None, None, beta, thr, None, None,
            spec, torch.float32, (False,) * 4),
        "snntorch": _snntorch_step(x, upstream),
    }
    r = _interleaved(steps, clock, repeats, min_sample_s=0.0)
    copy_bw = 2 * src.numel() * 4 / r["copy 64 MiB"][0]  # read + write, as fusedsnn.bench.timing
    neuron_steps = T * B * N
    moved = 28 * neuron_steps  # Leaky float32 forward 12 B + backward 16 B (docs/design.md)
    floor = moved / copy_bw
    snn = r["snntorch"][0]
    print(f"T={T} B={B} N={N}")
    for name, timing in r.items():
        print(f"  {name:22s} {_fmt(timing)}")
    print(f"  copy bandwidth {copy_bw / 1e9:.1f} GB/s; the fused op moves {moved / 1e6:.1f} MB: floor {floor * 1e3:.2f} ms")
    print(f"  fused {snn / r['fused fwd+bwd'][0]:.2f}x snnTorch; at the floor {snn / floor:.1f}x;"
          f" 20x needs {snn / 20 * 1e3:.2f} ms")
    print(f"  fraction of copy bandwidth: fwd+bwd {moved / r['fused fwd+bwd'][0] / copy_bw:.0%},"
          f" forward kernel {12 * neuron_steps / r['host forward kernel'][0] / copy_bw:.0%},"
          f" backward kernel {16 * neuron_steps / r['host backward kernel'][0] / copy_bw:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("calls", "floor"))
    parser.add_argument("--shapes", default=None, help="comma-separated TxBxN (default: calls: the T=1 row and "
                        "1x1x8; floor: 25x128x1000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cpu-time", action="store_true", help="time.process_time instead of wall clock")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    default = "1x1x8,1x1x100,1x1x1000,1x32x100,1x32x1000,1x128x100,1x128x1000" if args.what == "calls" else "25x128x1000"
    shapes = [tuple(int(v) for v in s.split("x")) for s in (args.shapes or default).split(",")]
    print(f"threads={args.threads} clock={'cpu' if args.cpu_time else 'wall'} torch={torch.__version__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for shape in shapes:
            (run_calls if args.what == "calls" else run_floor)(shape, clock, args.repeats)


if __name__ == "__main__":
    main()
