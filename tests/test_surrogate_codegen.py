"""The surrogate table in fusedsnn/surrogate.py against what it generates and what it replaced.

The Triton switches (fusedsnn/backends/triton/*.py) and csrc/kernels/surrogate.hpp are rendered
from the table; the eager derivative evaluates the same tree. The kernels' own parity tests
(tests/backends/*) prove the generated code computes the old bits; here: the generated files are
current, and the eager derivative equals the hand-written formulas it replaced, bit for bit.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import pytest
import torch

from fusedsnn import surrogate as S
from fusedsnn.backends.layout import surrogate_constants
from fusedsnn.spec import LIFSpec


def test_generated_regions_are_up_to_date():
    assert S.stale() == [], "run: python -m fusedsnn.surrogate --write"


def test_check_fails_on_a_stale_region(tmp_path):
    # A copy of the generated files with one Triton region edited by hand: stale() must name it.
    for path, text in S.generated().items():
        target = tmp_path / path.relative_to(S._ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    lif = tmp_path / S.TRITON_FILES[0]
    lif.write_text(lif.read_text().replace("d = c1 * tl.exp(", "d = c0 * tl.exp(", 1))
    assert S.stale(tmp_path) == [lif]


def test_check_command_exits_zero_when_current():
    proc = subprocess.run([sys.executable, "-m", "fusedsnn.surrogate", "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_triton_file_has_its_regions():
    counts = {rel: (S._ROOT / rel).read_text().count(S.BEGIN) for rel in S.TRITON_FILES}
    # lif.py: forward kernel and the backward's RECOMPUTE_SURROGATE branch; all_to_all.py: the
    # persistent forward (N <= 64) and the per-step tiled forward (any N).
    assert counts == {"fusedsnn/backends/triton/lif.py": 2, "fusedsnn/backends/triton/all_to_all.py": 2}


def test_rendering_keeps_the_tree_order():
    # Non-associative float operations: the text must parse back to the same grouping.
    a, b, c = S.C0, S.C1, S.H
    cases = [(a - (b - c), "c0 - (c1 - h)"), ((a - b) - c, "c0 - c1 - h"), (a * (b * c), "c0 * (c1 * h)"),
             (-(-a), "-(-c0)"), (-(a + b), "-(c0 + c1)"), (a / (b * c), "c0 / (c1 * h)")]
    for expr, text in cases:
        assert S._render(expr, cpp=True, lets={})[0] == text
    # Two intermediates under one name would silently become one local in the kernels.
    with pytest.raises(ValueError, match="taken"):
        S._render(S.let("x", S.H) + S.let("x", S.C0), cpp=False, lets={})
    with pytest.raises(ValueError, match="taken"):
        S._render(S.let("h", S.C0), cpp=False, lets={})


def test_factories_match_the_table():
    factories = {"atan": S.atan, "fast_sigmoid": S.fast_sigmoid, "sigmoid": S.sigmoid,
                 "straight_through_estimator": S.straight_through_estimator, "triangular": S.triangular,
                 "spike_rate_escape": S.spike_rate_escape, "disabled": S.disabled}
    assert list(factories) == [row.name for row in S.SURROGATES]
    for row in S.SURROGATES:
        params = tuple((p.name, float(p.default)) for p in inspect.signature(factories[row.name]).parameters.values())
        assert params == row.params, row.name
        made = factories[row.name]()
        assert (made.name, made.code) == (row.name, row.code)
        assert (made.p0, made.p1) == tuple(v for _, v in row.params) + (0.0,) * (2 - len(row.params))


# The hand-written eager derivatives the table replaced (fusedsnn/surrogate.py before issue 22),
# the oracle for the table's eager evaluation.
def _old_derivative(h: torch.Tensor, code: int, p0: float, p1: float) -> torch.Tensor:
    if code == 0:
        scaled = (math.pi / 2 * p0) * h
        return torch.full_like(h, p0 / 2) / (1 + scaled * scaled)
    if code == 1:
        denom = p0 * h.abs() + 1.0
        return 1.0 / (denom * denom)
    if code == 2:
        e = torch.exp(-p0 * h.abs())
        return p0 * e / ((e + 1) * (e + 1))
    if code == 3:
        return torch.ones_like(h)
    if code == 4:
        return torch.where(h >= 0, -p0, p0).to(h.dtype)
    if code == 5:
        return p1 * torch.exp(-p0 * (h - 1).abs())
    if code == 6:
        return torch.zeros_like(h)
    raise ValueError(code)


def _old_constants(name: str, p0: float, p1: float) -> tuple[float, float]:
    if name == "atan":
        return math.pi / 2 * p0, p0 / 2
    return float(p0), float(p1)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits, so that -0.0 differs from 0.0 and a NaN equals the same NaN."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.dtype.itemsize])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(S.SURROGATE_CODES))
def test_eager_derivative_equals_the_old_formulas_bitwise(name, dtype):
    gen = torch.Generator().manual_seed(22)
    h = torch.randn(4096, generator=gen, dtype=torch.float64) * 4
    # Exact zeros (triangular's h >= 0 edge, sigmoid's |h|) and far tails (sigmoid's exp underflow).
    h = torch.cat([h, torch.tensor([0.0, -0.0, 1.0, 1e-30, -200.0, 200.0], dtype=torch.float64)]).to(dtype)
    code = S.SURROGATE_CODES[name]
    for p0, p1 in [(2.0, 3.0), (25.0, 1.0), (0.1, 0.7), (1.0 / 3, 7.5)]:
        new = S.surrogate_derivative(h, code, p0, p1)
        old = _old_derivative(h, code, p0, p1)
        assert new.dtype == old.dtype == dtype
        assert torch.equal(_bits(new), _bits(old)), (name, dtype, p0, p1)


@pytest.mark.parametrize("name", list(S.SURROGATE_CODES))
def test_host_constants_equal_the_old_ones(name):
    for p0, p1 in [(2.0, 3.0), (0.1, 0.7), (1.0 / 3, 7.5)]:
        surrogate = S.Surrogate(name, p0, p1)
        assert surrogate_constants(LIFSpec(False, 0, 0, True, surrogate)) == _old_constants(name, p0, p1)
