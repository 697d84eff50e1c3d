"""The study's networks, DSNN and CSNN, built from fused neurons and standard PyTorch layers.

Both run layer by layer over the whole sequence: each Linear/Conv2d sees all ``T * B`` samples
at once, then one fused neuron call covers all ``T`` steps. The same model code runs on CPU,
CUDA and (under PopTorch) the IPU, because the neurons pick their backend.

Static input (the study feeds the same image at every step): the first layer's output is then
the same at every step, so it is computed once and expanded over time with stride 0 into the
fused neuron, which reads it without copying (``static_input_once=True``, the default). Outputs
and gradients are those of computing it ``T`` times; set ``static_input_once=False`` to do that.

Spike products: every ``Linear`` after a neuron (DSNN's layers after the first, CSNN's output
layer) runs through :func:`fusedsnn.memory.linear_after_spikes`, which on the CPU may add the
weight columns of the inputs that spiked instead of multiplying by zeros where the measured rule
says that is faster. Off by default: these networks give their snnTorch twin's spikes bit for
bit, and the products sum in another order than BLAS. ``spike_products=True`` (or the global
``fusedsnn.memory.spike_products("on")`` / ``FUSEDSNN_SPIKE_PRODUCT=1``) turns them on; results
then equal the default's to float rounding. Convolutions have no spike product.
"""

from __future__ import annotations

from itertools import islice
from typing import Optional, Sequence

import torch
from torch import nn

from . import layers
from .memory.spike_layers import linear_after_spikes
from .ops.time_chunks import once_per_sequence

Tensor = torch.Tensor

NEURONS = ("leaky", "synaptic", "rleaky", "rleaky_all_to_all", "rsynaptic")


def make_neuron(neuron: str, features: int, neuron_kwargs: Optional[dict] = None, dense: bool = True) -> nn.Module:
    """A fused neuron layer of type ``neuron`` (one of ``NEURONS``) for ``features`` neurons.

    Defaults follow snnTorch's tutorials (``beta=0.95``, ``alpha=0.9``, ``V=0.5``); anything in
    ``neuron_kwargs`` overrides them. All-to-all recurrence needs a dense layer.
    """
    kw = dict(neuron_kwargs or {})
    kw.setdefault("beta", 0.95)
    if neuron == "leaky":
        return layers.Leaky(**kw)
    if neuron == "synaptic":
        kw.setdefault("alpha", 0.9)
        return layers.Synaptic(**kw)
    if neuron == "rleaky":
        kw.setdefault("V", 0.5)
        return layers.RLeaky(all_to_all=False, **kw)
    if neuron == "rleaky_all_to_all":
        if not dense:
            raise NotImplementedError(
                "neuron='rleaky_all_to_all' needs a dense layer; convolutional all-to-all recurrence is not supported"
            )
        return layers.RLeaky(all_to_all=True, linear_features=features, **kw)
    if neuron == "rsynaptic":
        kw.setdefault("alpha", 0.9)
        kw.setdefault("V", 0.5)
        return layers.RSynaptic(all_to_all=False, **kw)
    raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")


def _spikes_and_mem(out: tuple) -> tuple[Tensor, Tensor]:
    """(spk, mem) from a neuron's output, whether it has a synaptic current or not."""
    return out[0], out[-1]


class _SequenceModel(nn.Module):
    input_shape: tuple
    _other_input_forms = ""  # named in the shape error, for models that take more than one form

    def _time_major(self, x: Tensor) -> tuple[Tensor, bool]:
        """``x`` as ``[B, *input]`` (static, returns is_static=True) or ``[T, B, *input]``;
        integer or bool ``x`` as float32."""
        n = len(self.input_shape)
        if not isinstance(x, torch.Tensor) or x.dim() not in (n + 1, n + 2):
            raise ValueError(
                f"x must be a static batch [B, {', '.join(map(str, self.input_shape))}] or a sequence "
                f"[T, B, {', '.join(map(str, self.input_shape))}]{self._other_input_forms}, got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if tuple(x.shape[-n:]) != tuple(self.input_shape):
            raise ValueError(f"x's trailing shape must be {tuple(self.input_shape)}{self._other_input_forms}, "
                             f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            # Event frames come as integer counts (tonic's ToFrame gives int16) or bool spikes;
            # Linear/Conv2d need the weights' float type.
            x = x.to(torch.float32)
        static = x.dim() == n + 1
        if not static and x.shape[0] != self.num_steps:
            # A sequence that set T silently would run another network than the one configured
            # (and trained): refuse instead.
            raise ValueError(
                f"x is a sequence of {x.shape[0]} steps, but this {type(self).__name__} has num_steps="
                f"{self.num_steps}: pass {self.num_steps} steps, or set model.num_steps = {x.shape[0]}"
            )
        return x, static

    def _first_layer_over_time(self, first: nn.Module, x: Tensor) -> Tensor:
        """Apply ``first`` to every step: once and expanded (static input) or over T * B samples."""
        x, static = self._time_major(x)
        if static and self.static_input_once:
            # memory_lean(time_chunk=...) runs this per chunk: once per sequence is enough. The
            # key names the layers (a container built per call, as CSNN's, by its children).
            layers_ = tuple(id(m) for m in (list(first.children()) or [first]))
            key = ("static input", layers_, x.data_ptr(), tuple(x.shape), x.stride(), x.dtype)
            out = once_per_sequence(key, lambda: first(x))
            return out.unsqueeze(0).expand(self.num_steps, *out.shape)
        if static:
            x = x.unsqueeze(0).expand(self.num_steps, *x.shape)
        T, B = x.shape[:2]
        out = first(x.reshape(T * B, *x.shape[2:]))
        return out.reshape(T, B, *out.shape[1:])


def _set_spike_products(layers_: Sequence[nn.Module], spike_products: Optional[bool]) -> None:
    """Set the ``spike_product`` override of the Linear layers a neuron feeds (None: leave them
    on the global mode)."""
    if spike_products is not None and not isinstance(spike_products, bool):
        raise ValueError(f"spike_products must be None, True or False, got {spike_products!r}")
    if spike_products is not None:
        for layer in layers_:
            layer.spike_product = spike_products


def _over_time(layer: nn.Module, x: Tensor) -> Tensor:
    """A stateless layer applied to all T * B samples at once. ``x: [T, B, ...]``."""
    T, B = x.shape[:2]
    out = layer(x.reshape(T * B, *x.shape[2:]))
    return out.reshape(T, B, *out.shape[1:])


class DSNN(_SequenceModel):
    """Dense SNN of the study: ``num_inputs - hidden... - num_outputs`` with a neuron after each
    Linear (default 784-1000-10, Leaky, 25 steps); ``readout_neuron`` (default: ``neuron``) sets
    the output layer's type alone, e.g. ``DSNN(700, 256, 20, 100, "rleaky_all_to_all",
    readout_neuron="leaky")`` is the recurrent SHD network. ``spike_products``: the
    ``spike_product`` override of the Linear layers after the first (None: the global mode, off by
    default; see the module docstring).

    ``forward(x)``: ``x: [B, num_inputs]`` (static) or ``[T, B, num_inputs]`` -> the output
    layer's ``(spk, mem)``, each ``[T, B, num_outputs]``. Images ``[B, C, H, W]`` (static) and
    ``[T, B, C, H, W]`` are flattened to ``C * H * W`` inputs, which must equal ``num_inputs``
    (MNIST's ``[B, 1, 28, 28]`` for the default 784). A sequence must have ``num_steps`` steps;
    another length raises ``ValueError`` (set ``model.num_steps`` to run another length).
    """

    _other_input_forms = ", or images [B, C, H, W] / [T, B, C, H, W] with C * H * W = num_inputs"

    def __init__(
        self,
        num_inputs: int = 784,
        num_hidden: int | Sequence[int] = 1000,
        num_outputs: int = 10,
        num_steps: int = 25,
        neuron: str = "leaky",
        neuron_kwargs: Optional[dict] = None,
        static_input_once: bool = True,
        readout_neuron: Optional[str] = None,
        spike_products: Optional[bool] = None,
    ) -> None:
        super().__init__()
        hidden = [num_hidden] if isinstance(num_hidden, int) else list(num_hidden)
        for name, value in (("num_inputs", num_inputs), ("num_outputs", num_outputs), ("num_steps", num_steps)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"num_hidden must be a positive int or a list of them, got {num_hidden!r}")
        self.input_shape = (num_inputs,)
        self.num_steps = num_steps
        self.static_input_once = static_input_once
        sizes = [num_inputs, *hidden, num_outputs]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        # The readout may differ from the hidden neurons: SHD's recurrent network reads its
        # all-to-all RLeaky layer out through plain Leaky neurons.
        kinds = [neuron] * len(hidden) + [readout_neuron or neuron]
        self.neurons = nn.ModuleList(make_neuron(k, b, neuron_kwargs) for k, b in zip(kinds, sizes[1:]))
        _set_spike_products(self.fcs[1:], spike_products)

    def _flatten_images(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C*H*W]`` and ``[T, B, C, H, W] -> [T, B, C*H*W]``; other shapes
        pass through (a 3-d ``x`` is a sequence ``[T, B, num_inputs]``, never ``[B, H, W]``)."""
        if not isinstance(x, torch.Tensor) or x.dim() not in (4, 5):
            return x
        pixels = x.shape[-3:].numel()
        if pixels != self.input_shape[0]:
            raise ValueError(
                f"x holds images of shape {tuple(x.shape[-3:])} ({pixels} values each), but this DSNN takes "
                f"num_inputs={self.input_shape[0]}"
            )
        return x.flatten(-3)

    def _time_major(self, x: Tensor) -> tuple[Tensor, bool]:
        # Images are flattened first: memory_lean(time_chunk=n) reads the time layout through
        # this method before the forward runs, so it must accept every form the forward does.
        return super()._time_major(self._flatten_images(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, num_inputs]``, ``[T, B, num_inputs]``, ``[B, C, H, W]`` or ``[T, B, C, H, W]``
        -> ``(spk, mem)`` of the output layer, each ``[T, B, num_outputs]``."""
        x = self._flatten_images(x)
        out = self.neurons[0](self._first_layer_over_time(self.fcs[0], x))
        # islice, not self.fcs[1:]: slicing a ModuleList builds a new module on every call.
        for fc, lif in islice(zip(self.fcs, self.neurons), 1, None):
            # Linear on [T, B, F] covers all T * B at once. Only the spikes are held while the
            # next layer runs: a hidden membrane nobody needs is freed before its successor's
            # outputs are allocated (with memory_lean nothing else keeps it).
            spk = out[0]
            out = None
            out = lif(linear_after_spikes(fc, spk))
            del spk
        return _spikes_and_mem(out)


class CSNN(_SequenceModel):
    """Convolutional SNN of the study: 5C12-MP2-5C64-MP2-10 on ``input_shape`` (default 1x28x28),
    in snnTorch's idiom conv -> max-pool -> neuron, then a dense output layer with a neuron.

    ``forward(x)``: ``x: [B, C, H, W]`` (static) or ``[T, B, C, H, W]`` -> ``(spk, mem)``, each
    ``[T, B, num_outputs]``. A sequence must have ``num_steps`` steps; another length raises
    ``ValueError`` (set ``model.num_steps`` to run another length). ``spike_products``: the
    ``spike_product`` override of the output Linear ``fc`` (None: the global mode, off by
    default; see the module docstring).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (12, 64),
        kernel_size: int = 5,
        pool: int = 2,
        num_outputs: int = 10,
        num_steps: int = 25,
        neuron: str = "leaky",
        neuron_kwargs: Optional[dict] = None,
        static_input_once: bool = True,
        spike_products: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)!r}")
        if not channels:
            raise ValueError("channels must name at least one convolution")
        self.input_shape = tuple(input_shape)
        self.num_steps = num_steps
        self.static_input_once = static_input_once
        c, h, w = self.input_shape
        convs, neurons = [], []
        for out_c in channels:
            h, w = (h - kernel_size + 1) // pool, (w - kernel_size + 1) // pool
            if h < 1 or w < 1:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} is too small for {len(channels)} conv({kernel_size})+pool({pool}) stages"
                )
            convs.append(nn.Conv2d(c, out_c, kernel_size))
            neurons.append(make_neuron(neuron, out_c * h * w, neuron_kwargs, dense=False))
            c = out_c
        self.convs = nn.ModuleList(convs)
        self.pool = nn.MaxPool2d(pool)
        self.conv_neurons = nn.ModuleList(neurons)
        self.fc = nn.Linear(c * h * w, num_outputs)
        self.out_neuron = make_neuron(neuron, num_outputs, neuron_kwargs)
        _set_spike_products([self.fc], spike_products)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, C, H, W]`` (static) or ``[T, B, C, H, W]`` -> ``(spk, mem)`` of the output
        layer, each ``[T, B, num_outputs]``."""
        first = nn.Sequential(self.convs[0], self.pool)
        spk = self.conv_neurons[0](self._first_layer_over_time(first, x))[0]
        for conv, lif in islice(zip(self.convs, self.conv_neurons), 1, None):
            # [0]: the hidden membrane is dropped at once (see DSNN.forward).
            spk = lif(_over_time(lambda s, conv=conv: self.pool(conv(s)), spk))[0]
        return _spikes_and_mem(self.out_neuron(linear_after_spikes(self.fc, spk.flatten(2))))
