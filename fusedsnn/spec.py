"""The compile-time description of one fused LIF time loop, shared by every backend.

The four snnTorch neurons are one recurrence with two switches::

    Leaky      synaptic=False  recurrence=NONE
    Synaptic   synaptic=True   recurrence=NONE
    RLeaky     synaptic=False  recurrence=ONE_TO_ONE (V * spk) or INPUT (all-to-all, precomputed)
    RSynaptic  synaptic=True   recurrence=ONE_TO_ONE or INPUT

so every backend implements a single loop parametrised by a :class:`LIFSpec`; in Triton the
fields become ``tl.constexpr`` flags and dead branches vanish at compile time. One step, in
snnTorch 1.0.0's exact operation order (``r`` is the detached reset from the previous membrane)::

    r      = [mem_prev - thr > 0]
    s      = alpha * syn_prev + x (+ V * spk_prev | + rec)          # synaptic only
    base   = beta * mem_prev + s                                    # synaptic
    base   = beta * mem_prev + x (+ V * spk_prev | + rec)           # leaky
    base   = beta * ((1 - r) * mem_prev) + x                        # Leaky with reset "zero"
    m_pre  = base - r * thr        (subtract)
             base - base * r       (zero, all but Leaky)
             base                  (none; Leaky "zero", already applied)
    spk    = [m_pre - thr > 0] * gsf
    m      = m_pre - (spk / gsf - r) * thr      (reset_delay=False, subtract)
             m_pre - (spk / gsf - r) * m_pre    (reset_delay=False, zero)
             m_pre                              (otherwise)

``beta`` and ``alpha`` arrive already clamped to [0, 1] (the clamp is done by autograd above).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .surrogate import SURROGATE_CODES, Surrogate

RESET_SUBTRACT = 0
RESET_ZERO = 1
RESET_NONE = 2
RESET_CODES = {"subtract": RESET_SUBTRACT, "zero": RESET_ZERO, "none": RESET_NONE}

RECURRENCE_NONE = 0
RECURRENCE_ONE_TO_ONE = 1
RECURRENCE_ALL_TO_ALL = 2


@dataclass(frozen=True)
class LIFSpec:
    synaptic: bool
    recurrence: int
    reset: int
    reset_delay: bool
    surrogate: Surrogate
    graded_spikes_factor: float = 1.0

    @property
    def zero_before_decay(self) -> bool:
        """snnTorch's Leaky resets to zero before the decay; the other three after it."""
        return self.reset == RESET_ZERO and not self.synaptic and self.recurrence == RECURRENCE_NONE

    @property
    def immediate_reset(self) -> bool:
        """reset_delay=False with a reset that does something."""
        return (not self.reset_delay) and self.reset != RESET_NONE


_SURROGATE_NAMES = {code: name for name, code in SURROGATE_CODES.items()}


def spec_from_flags(synaptic: bool, recurrence: int, reset: int, reset_delay: bool, surrogate: int,
                    p0: float, p1: float, gsf: float) -> LIFSpec:
    """The :class:`LIFSpec` the custom ops' flat arguments describe (their schemas take numbers,
    not a spec)."""
    return LIFSpec(synaptic, recurrence, reset, reset_delay, Surrogate(_SURROGATE_NAMES[surrogate], p0, p1), gsf)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """State is kept in float32 for float32/16/bf16 inputs, float64 for float64 (reference only)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def needs_prev_mem(spec: LIFSpec, beta_grad: bool, thr_grad: bool) -> bool:
    """Whether the backward must read the membrane of the previous step."""
    if beta_grad or spec.reset == RESET_ZERO or spec.immediate_reset:
        return True
    return spec.reset == RESET_SUBTRACT and thr_grad


def recomputes_surrogate(io_dtype: torch.dtype) -> bool:
    """Whether the backward recomputes the surrogate derivative from a saved membrane instead
    of reading a float32 trace the forward wrote.

    The surrogate is evaluated at ``h = m_pre - thr``. With immediate reset the pre-reset
    membrane ``m_pre`` is saved anyway (``pre``); otherwise ``m_pre`` is the returned membrane
    itself. Either is exact when the input is float32/float64 (outputs in state precision).
    A float16/bfloat16 input keeps writing the trace: its membrane output is rounded, the
    float32 copy exists only when the backward needs the previous membrane, and recomputing
    from it costs the heaviest Triton backward a sixth of its occupancy (registers) for
    4 B of 10-12 per neuron-step.
    """
    return io_dtype in (torch.float32, torch.float64)


def bytes_per_neuron_step(
    spec: LIFSpec,
    io_bytes: int,
    *,
    backward: bool,
    need_param_grads: tuple[bool, bool, bool, bool] = (False, False, False, False),
    has_grad_spk: bool = True,
    has_grad_mem: bool = True,
    for_backward: bool = True,
) -> int:
    """DRAM bytes one fused kernel moves per neuron per time step (the model in docs/design.md).

    ``io_bytes`` is the element size of inputs/outputs (4 for float32, 2 for float16/bfloat16);
    the saved trace, float32 state copy and pre-reset membrane are always float32. The trace
    is written (and read back) only where :func:`recomputes_surrogate` says the backward cannot
    recompute it from a saved membrane. Per-neuron
    constants (parameters, initial and final states) are O(1/T) and left out.
    ``for_backward=False`` is the inference forward (no_grad): it writes only its outputs.
    """
    need_beta, need_thr, need_alpha, need_V = need_param_grads
    prev_mem = needs_prev_mem(spec, need_beta, need_thr)
    if not backward:
        total = io_bytes                      # x
        total += 2 * io_bytes                 # spk, mem out
        if spec.synaptic:
            total += io_bytes                 # syn out
        if spec.recurrence == RECURRENCE_ALL_TO_ALL:
            total += io_bytes                 # precomputed all-to-all recurrent input
        if not for_backward:
            return total                      # inference: nothing saved
        if prev_mem and io_bytes < 4:
            total += 4                        # float32 membrane copy for the backward
        if io_bytes < 4:                      # 16-bit: see recomputes_surrogate
            total += 4                        # saved surrogate-derivative trace (float32)
        if spec.immediate_reset:
            total += 4                        # pre-reset membrane
        return total
    total = io_bytes                          # grad_x out
    recompute = io_bytes >= 4                 # float32/float64: see recomputes_surrogate
    if not recompute:
        total += 4                            # trace in
    total += io_bytes * (int(has_grad_spk) + int(has_grad_mem))
    if spec.synaptic:
        total += io_bytes                     # grad_syn in
        if need_alpha:
            total += io_bytes                 # syn of the previous step
    if prev_mem or (recompute and not spec.immediate_reset):
        # The previous step's membrane (and/or this step's, for the surrogate): one stream,
        # each row is read twice in consecutive steps and stays in cache in between.
        total += 4 if io_bytes < 4 else io_bytes
    if spec.recurrence == RECURRENCE_ONE_TO_ONE and need_V:
        total += io_bytes                     # spikes of the previous step
    if spec.immediate_reset:
        total += 4
    return total
