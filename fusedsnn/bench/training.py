"""Training-throughput experiments of the study: fused networks against the same networks stepped
the snnTorch way (snnTorch neurons, same Linear/Conv layers, same weights).

One training step = forward, rate-coded cross-entropy loss, BPTT backward, AdamW step.
Images per second = batch / median wall-clock per step after warm-up (synchronised on GPUs).

Providers: "fused", "fused-reference", "snntorch-tutorial" (alias "snntorch") and
"snntorch-hoisted", each eager, or with "-compiled" appended: then the one function of
:func:`forward_loss_fn` (the model's forward and the loss) runs under ``torch.compile``, the
same function for every provider; the backward runs through what AOTAutograd compiled, and the
optimizer step stays eager, the same AdamW for all.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from .. import layers, population
from ..backends.registry import resolve_backend
from .. import graph_step
from ..models import CSNN, DSNN
from .modes import base_provider, compile_budget_reason, execution_mode
from .timing import Timing, _sync, measure

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------
# the snnTorch twin of a fused model
# ---------------------------------------------------------------------------------------------

def _snn_neuron(layer: nn.Module) -> nn.Module:
    import snntorch as snn

    common = dict(beta=layer.beta.detach().clone(), threshold=layer.threshold.detach().clone(),
                  init_hidden=True, output=True)
    if isinstance(layer, layers.RSynaptic) or isinstance(layer, layers.RLeaky):
        cls = snn.RSynaptic if isinstance(layer, layers.RSynaptic) else snn.RLeaky
        extra = dict(alpha=layer.alpha.detach().clone()) if cls is snn.RSynaptic else {}
        if layer.all_to_all:
            neuron = cls(all_to_all=True, linear_features=layer.linear_features, **extra, **common)
            neuron.recurrent = layer.recurrent  # share the weights being trained
            return neuron
        return cls(all_to_all=False, V=layer.V.detach().clone(), **extra, **common)
    if isinstance(layer, layers.Synaptic):
        return snn.Synaptic(alpha=layer.alpha.detach().clone(), **common)
    return snn.Leaky(**common)


#: The snnTorch twins: "tutorial" runs the first (static-input) layer at every step, as
#: snnTorch's tutorials and the study do; "hoisted" runs it once and feeds its output to every
#: step, as a careful snnTorch user would. "snntorch" is the tutorial twin's older name.
TWIN_STYLES = ("tutorial", "hoisted")


#: The training providers before any mode suffix ("-compiled").
TRAINING_PROVIDERS = ("fused", "fused-reference", "snntorch", "snntorch-tutorial", "snntorch-hoisted")


def check_provider(provider: str) -> None:
    """Raise ValueError naming ``provider`` unless it is a training provider, eager or compiled."""
    if not isinstance(provider, str) or base_provider(provider) not in TRAINING_PROVIDERS \
            or execution_mode(provider) == "graph":
        raise ValueError(f"provider must be one of {TRAINING_PROVIDERS}, optionally with '-compiled' appended, "
                         f"got {provider!r}")


def twin_style(provider: str) -> Optional[str]:
    """"tutorial" / "hoisted" for the snnTorch providers (eager or compiled), None for the fused ones."""
    base = base_provider(provider)
    if base in ("snntorch", "snntorch-tutorial"):
        return "tutorial"
    if base == "snntorch-hoisted":
        return "hoisted"
    return None


class SnnTorchTwin(nn.Module):
    """``model``'s network stepped per time step with snnTorch neurons; the Linear/Conv layers
    are ``model``'s own, so both train the same weights. ``style``: "tutorial" (the first layer
    on the static input at every step, as the study ran it) or "hoisted" (that layer once)."""

    def __init__(self, model: nn.Module, style: str = "tutorial") -> None:
        super().__init__()
        if style not in TWIN_STYLES:
            raise ValueError(f"style must be one of {TWIN_STYLES}, got {style!r}")
        self.style = style
        self.model = model
        if isinstance(model, DSNN):
            self.neurons = nn.ModuleList(_snn_neuron(n) for n in model.neurons)
        elif isinstance(model, CSNN):
            self.neurons = nn.ModuleList([*(_snn_neuron(n) for n in model.conv_neurons), _snn_neuron(model.out_neuron)])
        else:
            raise TypeError(f"no snnTorch twin for {type(model).__name__}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: the model's static input ``[B, ...]``, or (DSNN) a sequence ``[T, B, features]``
        stepped over ``x.unbind(0)`` (never ``x[t]`` on a tensor that may need a gradient)."""
        # reset_mem on each neuron, not snntorch.utils.reset: in snnTorch 1.0.0 the latter leaves
        # RSynaptic's recurrent spike (with its graph) in place, so a second step fails.
        for neuron in self.neurons:
            neuron.reset_mem()
        m = self.model
        dsnn = isinstance(m, DSNN)
        sequence = dsnn and x.dim() == 3
        hoisted = self.style == "hoisted"
        # the first layer's input is the same image at every step: its output too; a sequence's
        # first layer runs once over all T * B rows
        first = (m.fcs[0](x) if dsnn else m.pool(m.convs[0](x))) if hoisted else None
        steps = x.unbind(0) if sequence else [x] * m.num_steps
        firsts = first.unbind(0) if sequence and hoisted else [first] * len(steps)
        spikes, mems = [], []
        for x_t, first_t in zip(steps, firsts):
            if dsnn:
                cur = x_t
                for i, (fc, lif) in enumerate(zip(m.fcs, self.neurons)):
                    out = lif(first_t if i == 0 and first_t is not None else fc(cur))
                    cur = out[0]
            else:
                cur = x_t
                for i, (conv, lif) in enumerate(zip(m.convs, self.neurons[:-1])):
                    cur = lif(first_t if i == 0 and first_t is not None else m.pool(conv(cur)))[0]
                out = self.neurons[-1](m.fc(cur.flatten(1)))
            spikes.append(out[0])
            mems.append(out[-1])
        return torch.stack(spikes), torch.stack(mems)


# ---------------------------------------------------------------------------------------------
# FLOPs as the study counts them (one FLOP = one multiply-add, every layer at every step)
# ---------------------------------------------------------------------------------------------

def forward_macs_per_image(model: nn.Module, first_layer_once: bool = False) -> int:
    """Multiply-adds of the synaptic layers for one image over ``num_steps`` steps. The first
    layer counts at every step as the study's stepped model executes it, unless
    ``first_layer_once`` (a static input's first layer computed once, as the fused models and
    the hoisted snnTorch twin do)."""
    first = rest = 0
    if isinstance(model, DSNN):
        first = model.fcs[0].in_features * model.fcs[0].out_features
        rest = sum(fc.in_features * fc.out_features for fc in model.fcs[1:])
    elif isinstance(model, CSNN):
        c, h, w = model.input_shape
        for i, conv in enumerate(model.convs):
            k = conv.kernel_size[0]
            h, w = h - k + 1, w - k + 1
            macs = conv.out_channels * conv.in_channels * k * k * h * w
            first, rest = (macs, rest) if i == 0 else (first, rest + macs)
            h, w = h // model.pool.kernel_size, w // model.pool.kernel_size
        rest += model.fc.in_features * model.fc.out_features
    return first * (1 if first_layer_once else model.num_steps) + rest * model.num_steps


def training_macs_per_image(model: nn.Module, first_layer_once: bool = False) -> int:
    """Forward plus backward (gradient of inputs and of weights): 3x the forward, the usual count."""
    return 3 * forward_macs_per_image(model, first_layer_once)


def first_layer_once(model: nn.Module, provider: str) -> bool:
    """Whether ``provider`` runs ``model``'s static-input first layer once per sequence."""
    style = twin_style(provider)
    return style == "hoisted" if style is not None else bool(getattr(model, "static_input_once", False))


# ---------------------------------------------------------------------------------------------
# one training measurement
# ---------------------------------------------------------------------------------------------

def make_model(kind: str, batch: int, num_steps: int, hidden: int = 1000, channels=(12, 64),
               neuron: str = "leaky", outputs: int = 10) -> nn.Module:
    if kind == "DSNN":
        return DSNN(784, hidden, outputs, num_steps, neuron)
    return CSNN((1, 28, 28), channels, num_outputs=outputs, num_steps=num_steps, neuron=neuron)


class _PowerSampler:
    """Average GPU power from NVML, sampled in a thread while a measurement runs."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # no NVML: power is simply not reported
            self._nvml = None

    def __enter__(self):
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append(self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._nvml is not None:
            self._thread.join()

    #: NVML's power reading is itself an average over about a second and changes about once a
    #: second: a window with fewer distinct readings than this says little about the step timed.
    MIN_DISTINCT_READINGS = 5

    @property
    def average_w(self) -> Optional[float]:
        """The mean reading, or None where the window held too few NVML updates to mean much."""
        if len(set(self.samples)) < self.MIN_DISTINCT_READINGS:
            return None
        return sum(self.samples) / len(self.samples)


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Every fused neuron of ``model`` runs through ``backend`` (returns ``model``)."""
    for module in model.modules():
        if isinstance(module, layers._FusedLIF):
            module.backend = backend
    return model


def make_optimizer(params, device: torch.device, capturable: bool = False) -> torch.optim.Optimizer:
    """The AdamW every provider trains with: the fused one-pass update on CUDA (the H200
    profile: the foreach update launches ~16 kernels and cost 0.1 ms of a 0.37 ms DSNN graph
    replay) and on the CPU (DSNN's parameters, 2 threads: 0.59 ms against 2.8 ms for the
    default per-tensor loop and 2.3 ms for foreach, about a tenth of a fused DSNN step),
    PyTorch's default form elsewhere. ``capturable``: the step count stays on the device, as a
    CUDA graph needs."""
    fused_adamw = {"fused": True} if torch.device(device).type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(params, lr=1e-3, capturable=capturable, **fused_adamw)


def forward_loss_fn(forward: Callable[[Tensor], tuple], num_classes: int = 10, pop_size: int = 1,
                    autocast_dtype: Optional[torch.dtype] = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss(x, y)``: ``forward(x)``'s output spikes ``[T, B, num_classes * pop_size]`` (the
    first of what it returns) scored by :func:`fusedsnn.population.ce_rate_loss` against the
    labels ``y: [B]``, under autocast when ``autocast_dtype`` is set. This is the function a
    compiled provider compiles, the same for every provider."""

    def forward_loss(x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            spk = forward(x)[0]
            return population.ce_rate_loss(spk.float(), y, num_classes, pop_size)

    return forward_loss


def compile_fresh(fn: Callable, backend: str = "inductor") -> Callable:
    """``torch.compile(fn, backend=backend)`` after ``torch._dynamo.reset()``.

    Dynamo keys its cache on the code object, which every case's function shares: without a
    reset, the cases' models, sizes and providers pile up to its recompile limit, after which
    the "compiled" provider silently runs eagerly. Each case compiles afresh; call this once per
    case (a reset also drops what other providers of the same case compiled)."""
    torch._dynamo.reset()
    return torch.compile(fn, backend=backend)


def training_step_fn(model: nn.Module, provider: str, x: Tensor, y: Tensor, num_classes: int = 10,
                     pop_size: int = 1, autocast_dtype: Optional[torch.dtype] = None,
                     compile_backend: Optional[str] = None, capturable: bool = False) -> Callable[[], None]:
    """A closure running one training step of ``model`` through ``provider``: "fused" (the
    model as built, backend auto), "fused-reference" (reference backend), "snntorch-tutorial"
    (alias "snntorch") or "snntorch-hoisted" (see :class:`SnnTorchTwin`); any of them with
    "-compiled" appended runs its :func:`forward_loss_fn` under ``torch.compile``.

    ``x``: the model's input (``[B, ...]`` static or ``[T, B, ...]``), ``y: [B]`` labels.
    ``compile_backend``: torch.compile's backend for a compiled provider (default "inductor"; given
    with an eager provider name, it compiles that provider too, as the step-modes section does).
    The optimizer step stays eager (:func:`make_optimizer`). ``capturable``: AdamW keeps its
    step count on the device, as a CUDA graph needs.
    """
    check_provider(provider)
    style = twin_style(provider)
    if style is not None:
        forward = SnnTorchTwin(model, style).to(x.device)
    else:
        if base_provider(provider) == "fused-reference":
            set_backend(model, "reference")
        forward = model
    if execution_mode(provider) == "compiled" and compile_backend is None:
        compile_backend = "inductor"
    forward_loss = forward_loss_fn(forward, num_classes, pop_size, autocast_dtype)
    if compile_backend is not None:
        forward_loss = compile_fresh(forward_loss, compile_backend)
    optimizer = make_optimizer(model.parameters(), x.device, capturable)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(x, y)
        loss.backward()
        optimizer.step()

    return step


def measure_compiled(step: Callable[[], object], device: torch.device, warmup: int = 2, repeats: int = 10,
                     min_time_s: float = 0.0, first_calls: int = 3) -> tuple[Timing, float]:
    """:func:`~fusedsnn.bench.timing.measure` of a compiled ``step``, and its compile time.

    The first ``max(warmup, first_calls)`` calls are timed one by one: the first compiles the
    forward (and, at its backward, the backward graph), a later one may compile again (a
    stateful snnTorch neuron's buffer requires grad from the second call on, which Dynamo
    guards). ``compile_s`` is what those calls took beyond as many steady steps (the median)."""
    firsts = []
    for _ in range(max(warmup, first_calls)):
        start = time.perf_counter()
        step()
        _sync(device)
        firsts.append(time.perf_counter() - start)
    timing = measure(step, device, warmup=0, repeats=repeats, min_time_s=min_time_s)
    return timing, max(0.0, sum(firsts) - len(firsts) * timing.median_s)


def cuda_graph_step(step: Callable[[], None], device: torch.device, warmup: int = 3) -> Callable[[], None]:
    """Capture ``step`` (a whole training step: forward, backward, optimizer) in a CUDA graph and
    return the graph's replay, which runs the same step on the same tensors.

    ``warmup`` eager steps run first on a side stream (they are real steps: the model moves), so
    that lazy state (AdamW's moments, cuBLAS workspaces, Triton's compiled kernels and tuned
    launch configurations) exists before capture. Capture fails loudly if anything in the step
    synchronises with the host or allocates by data.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"cuda_graph_step needs a CUDA device, got {device}")
    graph_step._side_stream_warmup(step, device, warmup)
    replay, _ = graph_step._capture(step, device)
    return replay


#: How a training step runs: eagerly, with the model under torch.compile, or replayed from a CUDA graph.
STEP_MODES = ("eager", "compile", "cuda_graph")


def step_mode_unavailable(mode: str, device: torch.device) -> Optional[str]:
    """None when ``mode`` can run on ``device``, else why not."""
    if mode not in STEP_MODES:
        raise ValueError(f"mode must be one of {STEP_MODES}, got {mode!r}")
    if mode == "cuda_graph" and torch.device(device).type != "cuda":
        return f"CUDA graphs need a CUDA device; this run is on {device}"
    return None


def _step_mode(provider: str, mode: str) -> str:
    """The step mode of ``provider`` run in ``mode``: a "-compiled" provider runs "compile"."""
    check_provider(provider)
    if execution_mode(provider) == "compiled":
        if mode not in ("eager", "compile"):
            raise ValueError(f"provider {provider!r} runs under torch.compile; mode={mode!r} contradicts it")
        return "compile"
    return mode


def _row_head(network: str, provider: str, batch: int, num_steps: int, device: torch.device, mode: str,
              compile_backend: Optional[str], **fields) -> dict:
    """The fields every training row starts with, timed or skipped."""
    return {"network": network, "provider": provider, "batch": batch, "num_steps": num_steps, **fields,
            "device": str(device), "mode": mode,
            "execution_mode": {"compile": "compiled", "cuda_graph": "graph"}.get(mode, "eager"),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "compile_backend": compile_backend if mode == "compile" else None}


def _skipped(head: dict, reason: str) -> dict:
    return {**head, "median_s": None, "q20_s": None, "q80_s": None, "repeats": 0, "peak_memory_bytes": None,
            "compile_s": None, "images_per_s": None, "skipped": reason}


def _time_step(step: Callable[[], None], device: torch.device, mode: str, warmup: int, repeats: int,
               min_time_s: float) -> tuple[Timing, Optional[float]]:
    """(timing, compile_s): compile_s for a compiled step (see :func:`measure_compiled`), else None."""
    if mode == "compile":
        return measure_compiled(step, device, warmup=warmup, repeats=repeats, min_time_s=min_time_s)
    return measure(step, device, warmup=warmup, repeats=repeats, min_time_s=min_time_s), None


def run_training_case(kind: str, provider: str, batch: int, num_steps: int, device: torch.device,
                      repeats: int, hidden: int = 1000, channels=(12, 64), neuron: str = "leaky",
                      outputs: int = 10, autocast_dtype: Optional[torch.dtype] = None, warmup: int = 2,
                      mode: str = "eager", backend: Optional[str] = None,
                      compile_backend: str = "inductor", min_time_s: float = 0.0,
                      compile_max_t: Optional[int] = None) -> dict:
    """Time one training step (median, q20, q80 over at least ``repeats`` samples, more until
    ``min_time_s`` is spent) of ``kind`` through ``provider``; the row also carries images/s,
    the study's multiply-add count and achieved TFLOPS, and power where NVML is present.

    ``provider``: see :func:`training_step_fn`; a "-compiled" provider runs in ``mode="compile"``
    and its row carries ``compile_s``. ``mode``: one of :data:`STEP_MODES`. ``backend``: force
    the fused neurons' backend (default: auto). ``compile_backend``: torch.compile's backend in
    ``mode="compile"``. ``compile_max_t``: a compiled step of more than this many time steps is
    not run; its row says why (``skipped``)."""
    mode = _step_mode(provider, mode)
    reason = step_mode_unavailable(mode, device)
    if reason is not None:
        raise ValueError(f"mode={mode!r}: {reason}")
    head = _row_head(kind, provider, batch, num_steps, device, mode, compile_backend, hidden=hidden,
                     channels=list(channels) if kind == "CSNN" else None, neuron=neuron, outputs=outputs,
                     precision=str(autocast_dtype).removeprefix("torch.") if autocast_dtype else "float32")
    if mode == "compile" and compile_max_t is not None:
        if (reason := compile_budget_reason(num_steps, compile_max_t)) is not None:
            return _skipped(head, reason)
    torch.manual_seed(0)
    model = make_model(kind, batch, num_steps, hidden, channels, neuron, outputs).to(device)
    if backend is not None:
        set_backend(model, backend)
    shape = (batch, 784) if kind == "DSNN" else (batch, 1, 28, 28)
    x = torch.rand(shape, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = training_step_fn(model, provider, x, y, 10, outputs // 10, autocast_dtype,
                                compile_backend=compile_backend if mode == "compile" else None,
                                capturable=mode == "cuda_graph")
        if mode == "cuda_graph":
            step = cuda_graph_step(step, device)
        with _PowerSampler(device) as power:
            timing, compile_s = _time_step(step, device, mode, warmup, repeats, min_time_s)
    images_per_s = batch / timing.median_s
    # TFLOPS of the work executed: a first layer run once is counted once (the study's count,
    # which repeats it every step, is kept beside it for comparison with its Table II).
    macs = training_macs_per_image(model, first_layer_once(model, provider))
    study_macs = training_macs_per_image(model)
    row = {**head, **timing.as_dict(), "compile_s": compile_s, "images_per_s": images_per_s,
           "train_macs_per_image": macs, "achieved_tflops": macs * images_per_s / 1e12,
           "study_counted_tflops": study_macs * images_per_s / 1e12}
    if power.average_w is not None:
        row["average_power_w"] = power.average_w
        row["images_per_s_per_w"] = images_per_s / power.average_w
    return row


@contextlib.contextmanager
def _profiler_chatter_dropped():
    """Drop the lines the profiler's native code prints straight to file descriptor 2
    (``USDT:... SyncActivityProfilerHandler.cpp:52] profiler_start``); any other line written
    meanwhile (a warning, an error) is passed on to stderr afterwards."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not _PROFILER_CHATTER.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


# "gpuGetDeviceCount failed with code 35": kineto on a CUDA build of torch on a machine without a
# GPU (nothing a user can act on: the bench profiles the CPU there).
_PROFILER_CHATTER = re.compile(r"^USDT:|ActivityProfiler|profiler_(start|stop)|allocated before the profiling started"
                               r"|gpuGetDeviceCount failed")


def time_split(kind: str, device: torch.device, batch: int, num_steps: int, **kw) -> dict:
    """Share of profiled operator time in the fused neurons vs the synaptic layers (matmul/conv),
    everything else (loss, optimizer, copies, autograd bookkeeping) as ``other_share``."""
    torch.manual_seed(0)
    model = make_model(kind, batch, num_steps, **kw).to(device)
    shape = (batch, 784) if kind == "DSNN" else (batch, 1, 28, 28)
    x = torch.rand(shape, device=device) * 2
    y = torch.randint(0, 10, (batch,), device=device)
    step = training_step_fn(model, "fused", x, y)
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with _profiler_chatter_dropped(), torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    neuron = synaptic = other = 0.0
    use_cuda = device.type == "cuda"
    for evt in prof.key_averages():
        t = evt.self_device_time_total if use_cuda else evt.self_cpu_time_total
        name = evt.key.lower()
        if "fusedsnn" in name or "lif_" in name or "fusedlif" in name:  # FusedLIF(Backward): eager op
            neuron += t
        elif any(k in name for k in ("addmm", "aten::mm", "matmul", "linear", "conv", "mkldnn", "gemm", "bmm")):
            synaptic += t
        else:
            other += t
    total = neuron + synaptic + other
    backend = resolve_backend("auto", torch.empty(1, device=device)).name
    return {"network": kind, "device": str(device), "provider": "fused", "backend": backend, "batch": batch,
            "num_steps": num_steps, "neuron_share": neuron / total if total else None,
            "synaptic_share": synaptic / total if total else None, "other_share": other / total if total else None,
            "timer": "device" if use_cuda else "cpu"}


def shd_training_step(provider: str = "fused", batch: int = 128, num_steps: int = 100, hidden: int = 256,
                      spikes_per_sample: float = 8000.0, device: Optional[torch.device] = None,
                      seed: int = 0, compile_backend: Optional[str] = None
                      ) -> tuple[Callable[[], None], nn.Module, Tensor, Tensor]:
    """One training step of the recurrent SHD network (700 -> all-to-all RLeaky(``hidden``) -> 20
    Leaky readout, :class:`fusedsnn.models.DSNN` with ``readout_neuron="leaky"``) on synthetic
    input with SHD's shape: Poisson spike counts ``x: [T, B, 700]`` float32 averaging
    ``spikes_per_sample`` spikes per sample, labels ``y: [B]`` in 0..19.

    The default 8,000 spikes per 1 s sample (~11 Hz per channel, ~0.11 spikes per bin of 10 ms)
    is the order of SHD's recordings, not a measured mean: pass your files' figure (the sum of
    :meth:`fusedsnn.data.SpikingAudio.frames` over samples) when it matters. The input's sparsity
    is what the fused kernels' timing depends on, which is why this is not uniform noise.

    Returns ``(step, model, x, y)``: ``step()`` runs forward, loss, backward and the AdamW update
    of ``model`` through ``provider`` (see :func:`training_step_fn`; ``compile_backend`` too).
    """
    for name, value in (("batch", batch), ("num_steps", num_steps), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not spikes_per_sample >= 0:
        raise ValueError(f"spikes_per_sample must be >= 0, got {spikes_per_sample!r}")
    device = torch.device(device or "cpu")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DSNN(700, hidden, 20, num_steps, "rleaky_all_to_all", readout_neuron="leaky").to(device)
    rate = torch.full((num_steps, batch, 700), spikes_per_sample / (num_steps * 700))
    x = torch.poisson(rate, generator=gen).to(device)
    y = torch.randint(0, 20, (batch,), generator=gen).to(device)
    return training_step_fn(model, provider, x, y, num_classes=20, compile_backend=compile_backend), model, x, y


def run_shd_case(provider: str, batch: int, num_steps: int, device: torch.device, repeats: int,
                 hidden: int = 256, warmup: int = 2, min_time_s: float = 0.0,
                 compile_max_t: Optional[int] = None, compile_backend: str = "inductor") -> dict:
    """Time one training step of the recurrent SHD network (:func:`shd_training_step`) through
    ``provider`` ("fused", "snntorch-tutorial", "snntorch-hoisted", eager or with "-compiled"
    appended; a compiled step of more than ``compile_max_t`` time steps is skipped, with the
    reason in the row): the row has the training rows' fields (``network="SHD"``), so speed-ups
    follow the same rule."""
    mode = _step_mode(provider, "eager")
    head = _row_head("SHD", provider, batch, num_steps, device, mode, compile_backend, hidden=hidden, channels=None,
                     neuron="rleaky_all_to_all", outputs=20, precision="float32")
    if mode == "compile" and compile_max_t is not None:
        if (reason := compile_budget_reason(num_steps, compile_max_t)) is not None:
            return _skipped(head, reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step, model, x, _ = shd_training_step(provider, batch, num_steps, hidden, device=device,
                                              compile_backend=compile_backend if mode == "compile" else None)
        timing, compile_s = _time_step(step, device, mode, warmup, repeats, min_time_s)
    return {**head, **timing.as_dict(), "compile_s": compile_s, "images_per_s": batch / timing.median_s,
            "input_spike_fraction": float((x != 0).float().mean())}
