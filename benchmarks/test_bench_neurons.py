"""Each fused neuron (forward, forward+backward) against the eager reference loop and snnTorch's
step loop, over the issue-8 sweep (T=1 and tiny calls included; the T=1, B=1, N=8 case is the
per-call fixed cost). Group with e.g. `--benchmark-group-by=param:case,param:mode` to compare providers side
by side; `--benchmark-save=NAME` / `--benchmark-compare` to track changes over time."""

import itertools
import warnings

import pytest
import torch

from fusedsnn.bench import neurons

from conftest import DEVICE, FULL

if FULL:
    SHAPES = neurons.SWEEP_SHAPES + list(itertools.product((1, 4, 25, 100), (8, 32, 128), (10000,)))
    DTYPES = [torch.float32, torch.float16, torch.bfloat16]
    KINDS = list(neurons.NEURON_KINDS)
else:
    SHAPES = neurons.QUICK_SHAPES + [(4, 8, 1000)]
    DTYPES = [torch.float32]
    KINDS = ["Leaky", "Synaptic"]

CASES = [neurons.NeuronCase(k, T, B, N, d, DEVICE) for k, (T, B, N), d in itertools.product(KINDS, SHAPES, DTYPES)]


def _case_id(c):
    return f"{c.kind}-T{c.T}-B{c.B}-N{c.N}-{str(c.dtype).removeprefix('torch.')}"


def _providers(case):
    providers = neurons.fused_providers(case.device, case.dtype)
    if case.dtype == torch.float32:
        providers.append("snntorch")
    return providers


# "forward-grad-mode" is the training forward alone: the no_grad "forward" must not be slower.
MODES = ("forward", "forward-grad-mode", "forward+backward")
PARAMS = [(c, p, m) for c in CASES for p in _providers(c) for m in MODES
          if m != "forward-grad-mode" or p.startswith("fused")]


@pytest.mark.parametrize("case, provider, mode", PARAMS,
                         ids=[f"{_case_id(c)}-{m}-{p}" for c, p, m in PARAMS])
def test_neuron(benchmark, case, provider, mode, copy_bandwidth):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = neurons.make_step(case, provider, mode)
    sync = (lambda: torch.cuda.synchronize()) if case.device.type == "cuda" else (lambda: None)

    def run():
        step()
        sync()

    run()  # warm-up (compilation, allocation)
    benchmark.group = f"{_case_id(case)}-{mode}"
    benchmark.extra_info.update(case=_case_id(case), mode=mode, provider=provider)
    benchmark.pedantic(run, rounds=5 if not FULL else 20, warmup_rounds=1)
    if provider.startswith("fused"):
        moved = neurons.kernel_bytes(case, mode)
        median = benchmark.stats.stats.median
        benchmark.extra_info["bytes_moved"] = moved
        benchmark.extra_info["achieved_bytes_per_s"] = moved / median
        benchmark.extra_info["fraction_of_copy_bandwidth"] = moved / median / copy_bandwidth
