"""Python time per call of the Triton LIF launchers up to the kernel launch, on a CPU.

The kernel launch itself (Triton's binding and the driver call) needs a GPU; here it is replaced
by a no-op, so what is timed is fusedsnn's own work per call: output allocation, flattening,
surrogate constants, flag dictionaries, launch configuration. Prints the microseconds per
forward and backward call (Leaky and RSynaptic with learnable parameters) and, with --profile,
cProfile's top entries. Results are printed, not committed:

    PYTHONPATH=. python benchmarks/gpu/launcher_host_cost.py [--calls 2000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

from fusedsnn import surrogate as surrogate_mod
from fusedsnn.backends.triton import launch as launch_mod
from fusedsnn.backends.triton import lif
from fusedsnn.spec import LIFSpec


class _NoLaunch:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kwargs)`` does nothing."""

    def __getitem__(self, grid):
        return _no_op


def _no_op(*args, **kwargs):
    return None


def _cases(T=4, B=2, F=8):  # host cost does not depend on size; tiny keeps CPU tensor ops out
    x = torch.randn(T, B, F)
    ones = torch.ones(F)
    leaky = LIFSpec(False, 0, 0, False, surrogate_mod.resolve(None, False))
    rsyn = LIFSpec(True, 1, 0, False, surrogate_mod.resolve(None, False))
    out = {}
    for name, spec in (("leaky", leaky), ("rsynaptic", rsyn)):
        beta = (ones * 0.9).requires_grad_()
        args = (x, None, None, None, None, beta, ones, ones * 0.8, ones * 0.5, spec, False)
        spk, syn, mem, trace, state, pre = lif.lif_forward_triton(*args)
        g = torch.randn_like(x)
        bwd = (g, None, g, trace, mem, syn if spec.synaptic else mem, spk, pre, None, None, None,
               beta, ones, ones * 0.8, ones * 0.5, spec, x.dtype, (True, False, False, False))
        out[name] = (args, bwd)
    return out


def _time(fn, calls: int, rounds: int = 15) -> float:
    """Microseconds per call: the fastest of ``rounds`` rounds (the CPU is shared; the minimum is
    the least disturbed)."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    return min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    launch_mod.launchable = lambda kernel, *a, **k: _NoLaunch()  # the launch is a no-op
    torch.set_grad_enabled(False)
    cases = _cases()
    for name, (fwd, bwd) in cases.items():
        f = _time(lambda: lif.lif_forward_triton(*fwd), args.calls)
        b = _time(lambda: lif.lif_backward_triton(*bwd), args.calls)
        print(f"{name:10s} forward {f:7.1f} us/call   backward {b:7.1f} us/call (launch stubbed)")
    if args.profile:
        fwd, bwd = cases["rsynaptic"]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            lif.lif_forward_triton(*fwd)
            lif.lif_backward_triton(*bwd)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
