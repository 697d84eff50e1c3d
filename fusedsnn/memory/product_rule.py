"""When a spike-fed ``Linear`` uses the host spike products instead of BLAS: the measured rule and its switches.

A ``Linear(K, N)`` whose input ``x: [rows, K]`` is the 0/1 output of a spiking layer can add, per
row, the weight columns of the inputs that spiked (forward) and, per input, the output-gradient
rows where it spiked (weight gradient) instead of multiplying by every zero
(:mod:`fusedsnn.backends.host.all_to_all`). Whether that is faster depends on the layer's
sizes and on the input's firing rate. The rule:

* the forward takes the spike product when the input is binary spikes (every element ``+0.0``
  or ``1.0``: graded spikes and any other values take BLAS) at most :func:`forward_max_rate`
  of them non-zero; the rate is counted in the same pass over ``x`` that builds the spikes' bit
  words, so a refusal costs that one pass;
* the weight gradient is summed from the spike masks only after a spike forward, when the rate
  counted there is at most :func:`weight_grad_max_rate` (which never exceeds the forward's
  limit: on this CPU the forward's product pays over a wider range, so no second count is needed);
* the input gradient ``grad_out @ W`` stays dense (surrogate gradients are not sparse).

Both limits come from measurements on the development machine's CPU (2 threads, float32;
``benchmarks/spike_product_rule.py``, data in :data:`RULE_DATA`): see :data:`FORWARD_LIMITS` and
:data:`WEIGHT_GRAD_LIMITS` for the values and how they follow from it. float64 inputs take the
forward's limits and keep BLAS for the weight gradient (checked at 12 sizes, ``float64.json``
there: the forward took 0.32-0.87x of BLAS's time at the rates its limits allow; the weight
gradient from masks took 0.94-1.07x at 800 x 512 -> 512, so its float32 limits do not carry
over). A product the count refuses has cost one pass over ``x``: a median 0.16x of the dense
forward's time over the measured sizes with at least 256 outputs.

Switches, in order of precedence:

1. the global mode ``"off"`` (environment ``FUSEDSNN_SPIKE_PRODUCT=0``, or
   :func:`set_spike_products` / :func:`spike_products`): no spike product anywhere;
2. a layer's own ``spike_product`` attribute, ``True`` (the rule decides) or ``False`` (BLAS);
3. otherwise (``spike_product`` None, the default) the global mode: ``"on"``
   (``FUSEDSNN_SPIKE_PRODUCT=1``): the rule decides for every spike-fed layer; ``"auto"`` (the
   default): only inside the time chunks of ``memory_lean(model, time_chunk=n)``, whose results
   already equal the default's only to rounding. Everywhere else the default keeps BLAS, because
   the networks that feed spikes to a ``Linear`` (``DSNN``, ``CSNN``, ``fs.fuse``,
   ``fs.import_from_nir``) promise the same spikes as their snnTorch twins bit for bit, and a
   product summed in another order can move a membrane that sits within rounding of the
   threshold.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Union

import torch

from ..ops.time_chunks import active_chunk

__all__ = [
    "ENV_VAR", "MODES", "RULE_DATA", "SPIKE_PRODUCT_MIN_OUT", "FORWARD_LIMITS", "WEIGHT_GRAD_LIMITS",
    "spike_products_mode", "set_spike_products", "spike_products", "layer_uses_products",
    "forward_max_rate", "weight_grad_max_rate", "applies_to",
]

#: The environment variable of the global mode: ``0``/``off``, ``1``/``on``, ``auto`` (default).
ENV_VAR = "FUSEDSNN_SPIKE_PRODUCT"
MODES = ("auto", "on", "off")
_ENV_VALUES = {"0": "off", "off": "off", "false": "off", "1": "on", "on": "on", "true": "on", "auto": "auto", "": "auto"}

#: The measurements the limits below come from (repository folder): three float32 runs of the grid
#: (``run1.json`` .. ``run3.json``: in_features K in {256, 512, 1000, 4096}, out_features N in {10,
#: 256, 512, 1000, 4096}, rows in {128, 800, 3200}, spike rates {0.02, 0.05, 0.1, 0.2, 0.4}), the
#: per-case crossings they imply (``fit.txt``) and a float64 check (``float64.json``).
RULE_DATA = "benchmarks/results/cpu-2026-12-03-spike-product"

#: No spike product for fewer outputs than this: a 10-wide readout's forward took 1.1-6.2x BLAS's
#: time in every measured case but one at the lowest rates (RULE_DATA; its weight gradient from
#: masks is never reached, the forward deciding); 32- and 64-wide layers still gained (0.56x and
#: 0.45x at rate 0.22, 1024 x 512 inputs; benchmarks/results/cpu-2026-11-26c/spike_products.log),
#: so the floor sits between.
SPIKE_PRODUCT_MIN_OUT = 64

#: Nothing below this many multiply-adds (rows x in x out): the smallest measured case where the
#: product paid is 128 x 256 -> 256 (8.4M, forward 0.34-0.60x of BLAS's time); below it the call's
#: fixed cost (the check, the thread team) is not measured against BLAS, so BLAS keeps it.
MIN_WORK = 128 * 256 * 256

_ANY = float("inf")

#: Forward: ``(max in_features, max out_features, max spike rate)``; the first row whose sizes
#: hold the layer applies. Per measured case, the spike/BLAS time ratio at each rate is the median
#: over the three runs of each run's median; ``fit.txt`` lists, per case, the rates where it
#: reaches 1 and 0.9. A row's rate is at or below the rate where the ratio reaches 0.9 (the
#: product at least 10% faster) in every measured case of the row (rows 128, 800 and 3200),
#: rounded down to 0.05, except where a comment says otherwise. The inputs measured are 256-1000
#: wide (the rows up to 1024) and 4096 wide (the rows above 1024: the 4096 limits, lower, also
#: cover the unmeasured widths between).
FORWARD_LIMITS: tuple[tuple[float, float, float], ...] = (
    (1024, 512, 0.4),    # not reached by 0.4, the highest rate measured (ratios 0.48-0.77 there)
    # 0.24-0.40; left out: 128 x 1000 -> 1000 read 0.92 at rate 0.02 but 0.52-0.88 above it
    (1024, 1024, 0.2),
    (1024, _ANY, 0.25),  # 0.27-0.40
    # 0.33 (800 rows), 0.40 (3200); at 128 rows 0.06, but the ratio stays 0.67-0.97 up to 0.4
    (_ANY, 256, 0.2),
    (_ANY, 512, 0.15),   # 0.18-0.40
    (_ANY, 1024, 0.1),   # 0.15-0.25; the ratio is 0.79 at 0.1 and 1.0 at 0.2 (3200 rows)
    (_ANY, _ANY, 0.03),  # 0.04-0.08: 0.46-0.52 at rate 0.02, 0.67-1.02 at 0.05
)

#: Weight gradient from spike masks (after a spike forward, float32): ``(min rows, max
#: in_features, max out_features, max spike rate)``, the first row that holds applies, each rate
#: read as for :data:`FORWARD_LIMITS` from the cases with 3200 rows (first seven rows) or 800
#: rows (the others); the forward's limit caps it.
WEIGHT_GRAD_LIMITS: tuple[tuple[float, float, float, float], ...] = (
    (3200, 1024, 256, 0.1),    # 0.12-0.40
    (3200, 1024, 512, 0.25),   # 0.29-0.40
    (3200, 1024, 1024, 0.35),  # 0.39-0.40
    (3200, 1024, _ANY, 0.25),  # 0.27-0.40
    (3200, _ANY, 512, 0.4),    # 0.40 (-> 256 and -> 512)
    (3200, _ANY, 1024, 0.15),  # 0.16
    (3200, _ANY, _ANY, 0.05),  # 0.06
    (800, 1024, 256, 0.0),     # 0.03-0.05: ratios 0.83-0.88 at 0.02, 0.99-1.03 at 0.05
    (800, 1024, 512, 0.05),    # 0.10-0.27
    (800, 1024, 1024, 0.25),   # 0.30-0.40
    (800, 1024, _ANY, 0.15),   # 0.16-0.31
    (800, _ANY, 256, 0.05),    # 0.10
    (800, _ANY, 512, 0.2),     # 0.23
    (800, _ANY, _ANY, 0.0),    # 0.0 (-> 1000) and 0.03 (-> 4096)
)

#: The weight gradient from spike masks needs at least this many rows: at 128 rows it took
#: 0.89-3.6x BLAS's time, below 0.95x only for 128 x 256 -> 1000 (RULE_DATA); at 800 it paid.
WEIGHT_GRAD_MIN_ROWS = 800

_mode_override: Optional[str] = None


def _parse_mode(mode: Union[str, bool, None], what: str) -> Optional[str]:
    if mode is None:
        return None
    if isinstance(mode, bool):
        return "on" if mode else "off"
    if isinstance(mode, str) and mode.strip().lower() in _ENV_VALUES:
        return _ENV_VALUES[mode.strip().lower()]
    raise ValueError(f"{what} must be one of 'auto', 'on', 'off' (or True / False, '1' / '0'), got {mode!r}")


def spike_products_mode() -> str:
    """The global mode now: what :func:`set_spike_products` or :func:`spike_products` set, else
    the environment variable :data:`ENV_VAR` (read at each call), else ``"auto"``."""
    if _mode_override is not None:
        return _mode_override
    return _parse_mode(os.environ.get(ENV_VAR, "auto"), f"the environment variable {ENV_VAR}")


def set_spike_products(mode: Union[str, bool, None]) -> None:
    """Set the global mode for the whole process: ``"auto"``, ``"on"`` (or True), ``"off"`` (or
    False); None returns to the environment variable :data:`ENV_VAR`."""
    global _mode_override
    _mode_override = _parse_mode(mode, "mode")


@contextlib.contextmanager
def spike_products(mode: Union[str, bool]) -> Iterator[None]:
    """Context manager: the global mode is ``mode`` inside (see :func:`set_spike_products`),
    and what it was before afterwards. Process-wide, not per thread."""
    global _mode_override
    parsed = _parse_mode(mode, "mode")
    if parsed is None:
        raise ValueError("mode must be one of 'auto', 'on', 'off' (or True / False), got None")
    previous = _mode_override
    _mode_override = parsed
    try:
        yield
    finally:
        _mode_override = previous


def layer_uses_products(setting: Optional[bool]) -> bool:
    """Whether a layer whose ``spike_product`` attribute is ``setting`` (True, False or None)
    may take the spike products now (the rule then decides by sizes and rate)."""
    if setting is not None and not isinstance(setting, bool):
        raise ValueError(f"spike_product must be None, True or False, got {setting!r}")
    mode = spike_products_mode()
    if mode == "off":
        return False
    if setting is not None:
        return setting
    return mode == "on" or active_chunk() is not None


def _lookup(table: tuple[tuple[float, float, float], ...], in_features: int, out_features: int) -> float:
    for max_in, max_out, rate in table:
        if in_features <= max_in and out_features <= max_out:
            return rate
    return 0.0  # pragma: no cover - the last row holds any size


def _check_sizes(rows: int, in_features: int, out_features: int) -> None:
    for name, value in (("rows", rows), ("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def forward_max_rate(rows: int, in_features: int, out_features: int) -> float:
    """The highest fraction of non-zero inputs at which a ``Linear(in_features, out_features)``
    on ``rows`` rows of binary spikes takes the spike product in the forward (0.0: never)."""
    _check_sizes(rows, in_features, out_features)
    if out_features < SPIKE_PRODUCT_MIN_OUT or rows * in_features * out_features < MIN_WORK:
        return 0.0
    return _lookup(FORWARD_LIMITS, in_features, out_features)


def weight_grad_max_rate(rows: int, in_features: int, out_features: int, dtype: torch.dtype = torch.float32) -> float:
    """The highest fraction of non-zero inputs at which, after a spike forward, the weight
    gradient is summed from the spike masks (0.0: never; always for float64); never above
    :func:`forward_max_rate`."""
    forward = forward_max_rate(rows, in_features, out_features)
    if rows < WEIGHT_GRAD_MIN_ROWS or dtype != torch.float32:
        return 0.0
    for min_rows, max_in, max_out, rate in WEIGHT_GRAD_LIMITS:
        if rows >= min_rows and in_features <= max_in and out_features <= max_out:
            return min(forward, rate)
    return 0.0


def applies_to(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    """Whether the host spike product can run on these operands at all: CPU float32/float64
    tensors of one dtype, a 2-d weight matching ``x``'s last dimension, no autocast, not while
    torch.compile traces (the traced graph keeps ``F.linear``)."""
    if torch.compiler.is_compiling():
        return False
    return (isinstance(x, torch.Tensor) and x.device.type == "cpu" and weight.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype and weight.dim() == 2
            and x.dim() >= 1 and x.shape[-1] == weight.shape[1] and x.numel() > 0
            and (bias is None or (bias.dtype == x.dtype and bias.device.type == "cpu"))
            and not torch.is_autocast_enabled("cpu"))
