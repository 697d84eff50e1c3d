"""Surrogate gradients of the spike nonlinearity, with snnTorch 1.0.0's names and defaults.

The table ``SURROGATES`` below is the one definition of every surrogate: the eager derivative
evaluates it, and ``python -m fusedsnn.surrogate --write`` renders it into the Triton kernels'
switches and csrc/kernels/surrogate.hpp (``--check`` fails when they are out of date).

Every surrogate's forward is the Heaviside step ``H(h) = [h > 0]`` of the shifted membrane
``h = mem - threshold``; only the backward differs. A :class:`Surrogate` is a small frozen value
(a name and up to two float parameters) so that a fused kernel can receive it as compile-time
constants; it is also callable on a tensor, like snnTorch's closures, for eager code.

Derivatives ``dS/dh`` as coded in snnTorch 1.0.0's ``surrogate.py``:

============================  =============================================================
``atan(alpha=2.0)``           ``alpha / 2 / (1 + (pi / 2 * alpha * h) ** 2)``
``fast_sigmoid(slope=25)``    ``1 / (slope * |h| + 1) ** 2``
``sigmoid(slope=25)``         ``slope * exp(-slope * h) / (exp(-slope * h) + 1) ** 2``
``straight_through_estimator``  ``1``
``triangular(threshold=1)``   ``-threshold`` where ``h >= 0``, ``+threshold`` elsewhere
``spike_rate_escape(beta=1, slope=25)``  ``slope * exp(-beta * |h - 1|)``
============================  =============================================================

Two documented differences from a naive reading:

* ``triangular`` is not a triangle in snnTorch 1.0.0: its backward multiplies the incoming
  gradient by ``threshold`` and flips the sign where ``h >= 0``. We reproduce that exactly,
  because the goal is the same numbers as snnTorch.
* ``sigmoid`` in snnTorch overflows ``exp(-slope * h)`` to ``inf`` for ``h < -88 / slope`` and
  returns NaN there (``inf / inf``). We evaluate the same function in the symmetric, overflow-free
  form ``slope * e / (1 + e) ** 2`` with ``e = exp(-slope * |h|)``, which equals snnTorch's value
  wherever snnTorch's is finite and gives the true limit (0) where snnTorch gives NaN.
"""

from __future__ import annotations

import argparse
import math
import operator
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import torch

__all__ = [
    "Surrogate",
    "atan",
    "fast_sigmoid",
    "sigmoid",
    "straight_through_estimator",
    "triangular",
    "spike_rate_escape",
    "disabled",
    "from_snntorch_closure",
    "SURROGATE_CODES",
    "SURROGATES",
]


# ---------------------------------------------------------------------------------------------
# A tiny expression language for dS/dh. A derivative is written once, as a Python function of the
# symbols h, c0, c1 (operator overloading builds a tree), and the tree renders to the Triton and
# C++ switches (`python -m fusedsnn.surrogate --write`) and evaluates in eager PyTorch. The tree
# keeps the written operation order, so every backend rounds the same operations in the same order.

Operand = Union["Expr", float, int]


class Expr:
    """A node: ``op`` is "sym", "const", "let", "neg", "add", "sub", "mul", "div", "abs", "exp",
    "ge" or "where"; ``args`` its operands (a symbol's or let's name, a constant's value)."""

    def __init__(self, op: str, *args) -> None:
        self.op, self.args = op, args

    def __add__(self, other: Operand) -> Expr: return Expr("add", self, _expr(other))
    def __radd__(self, other: Operand) -> Expr: return Expr("add", _expr(other), self)
    def __sub__(self, other: Operand) -> Expr: return Expr("sub", self, _expr(other))
    def __rsub__(self, other: Operand) -> Expr: return Expr("sub", _expr(other), self)
    def __mul__(self, other: Operand) -> Expr: return Expr("mul", self, _expr(other))
    def __rmul__(self, other: Operand) -> Expr: return Expr("mul", _expr(other), self)
    def __truediv__(self, other: Operand) -> Expr: return Expr("div", self, _expr(other))
    def __rtruediv__(self, other: Operand) -> Expr: return Expr("div", _expr(other), self)
    def __neg__(self) -> Expr: return Expr("neg", self)
    def __ge__(self, other: Operand) -> Expr: return Expr("ge", self, _expr(other))


def _expr(x: Operand) -> Expr:
    return x if isinstance(x, Expr) else Expr("const", float(x))


def let(name: str, value: Expr) -> Expr:
    """A named intermediate, computed once (a local in the kernels; also what reads as a step)."""
    return Expr("let", name, value)


def fabs(x: Expr) -> Expr:
    return Expr("abs", x)


def exp(x: Expr) -> Expr:
    return Expr("exp", x)


def where(cond: Expr, a: Operand, b: Operand) -> Expr:
    return Expr("where", cond, _expr(a), _expr(b))


H, C0, C1 = Expr("sym", "h"), Expr("sym", "c0"), Expr("sym", "c1")


@dataclass(frozen=True)
class SurrogateRow:
    """One surrogate: its kernel code (the order is part of the kernel ABI), its parameters with
    snnTorch's keyword names and defaults (``p0``, ``p1`` in that order), the host constants
    ``(c0, c1)`` the kernels receive, and ``dS/dh`` in terms of ``h``, ``c0``, ``c1``."""

    name: str
    code: int
    params: tuple[tuple[str, float], ...]
    constants: Callable[[float, float], tuple[float, float]]
    derivative: Callable[[Expr, Expr, Expr], Operand]
    note: str = ""

    @property
    def expr(self) -> Expr:
        return _expr(self.derivative(H, C0, C1))


def _atan(h, c0, c1):
    scaled = let("scaled", c0 * h)
    return c1 / (1.0 + scaled * scaled)


def _fast_sigmoid(h, c0, c1):
    denom = let("denom", c0 * fabs(h) + 1.0)
    return 1.0 / (denom * denom)


def _sigmoid(h, c0, c1):
    e = let("e", exp(-c0 * fabs(h)))
    return c0 * e / ((e + 1.0) * (e + 1.0))


def _params(p0: float, p1: float) -> tuple[float, float]:
    return float(p0), float(p1)


# The table every surrogate switch comes from. c0/c1 are formed on the host exactly as the
# eager code forms its scalars, so the kernels' float32 arithmetic starts from the same values.
SURROGATES: tuple[SurrogateRow, ...] = (
    SurrogateRow("atan", 0, (("alpha", 2.0),), lambda p0, p1: (math.pi / 2 * p0, p0 / 2), _atan,
                 "c0 = pi/2 * alpha, c1 = alpha / 2"),
    SurrogateRow("fast_sigmoid", 1, (("slope", 25.0),), _params, _fast_sigmoid, "c0 = slope"),
    SurrogateRow("sigmoid", 2, (("slope", 25.0),), _params, _sigmoid,
                 "c0 = slope, overflow-free symmetric form"),
    SurrogateRow("straight_through_estimator", 3, (), _params, lambda h, c0, c1: 1.0),
    SurrogateRow("triangular", 4, (("threshold", 1.0),), _params, lambda h, c0, c1: where(h >= 0.0, -c0, c0),
                 "snnTorch's sign: -c0 where h >= 0"),
    SurrogateRow("spike_rate_escape", 5, (("beta", 1.0), ("slope", 25.0)), _params,
                 lambda h, c0, c1: c1 * exp(-c0 * fabs(h - 1.0)), "c0 = beta, c1 = slope"),
    SurrogateRow("disabled", 6, (), _params, lambda h, c0, c1: 0.0),
)
assert [row.code for row in SURROGATES] == list(range(len(SURROGATES))), "codes must be 0..n-1 in order"

# Integer codes handed to kernels as compile-time constants. Order is part of the kernel ABI.
SURROGATE_CODES = {row.name: row.code for row in SURROGATES}
_ROWS = {row.name: row for row in SURROGATES}
_PARAM_NAMES = {row.name: tuple(name for name, _ in row.params) for row in SURROGATES}


def host_constants(name: str, p0: float, p1: float) -> tuple[float, float]:
    """The constants ``(c0, c1)`` the kernels' surrogate switch expects for surrogate ``name``."""
    return _ROWS[name].constants(float(p0), float(p1))


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient: ``name`` plus parameters ``p0``, ``p1`` (meaning depends on name)."""

    name: str
    p0: float = 0.0
    p1: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SURROGATE_CODES:
            raise ValueError(
                f"surrogate name must be one of {sorted(SURROGATE_CODES)}, got {self.name!r}"
            )
        for field_name in ("p0", "p1"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"surrogate parameter {field_name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"surrogate parameter {field_name} must be finite, got {value!r}")

    @property
    def code(self) -> int:
        return SURROGATE_CODES[self.name]

    def derivative(self, h: torch.Tensor) -> torch.Tensor:
        """``dS/dh`` at the shifted membrane ``h = mem - threshold`` (same dtype as ``h``)."""
        return surrogate_derivative(h, self.code, float(self.p0), float(self.p1))

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Spike ``[h > 0]`` in ``h``'s dtype; its backward is this surrogate's derivative."""
        return _SpikeFunction.apply(h, self)

    def __repr__(self) -> str:
        names = _PARAM_NAMES[self.name]
        args = ", ".join(f"{n}={v!r}" for n, v in zip(names, (self.p0, self.p1)))
        return f"{self.name}({args})"


# The factories carry snnTorch's keyword names and defaults; tests/test_surrogate_codegen.py
# checks them against the table's params.
def atan(alpha: float = 2.0) -> Surrogate:
    """Arctangent surrogate (snnTorch's default): ``alpha / 2 / (1 + (pi/2 * alpha * h)^2)``."""
    return Surrogate("atan", float(alpha))


def fast_sigmoid(slope: float = 25) -> Surrogate:
    """Fast sigmoid: ``1 / (slope * |h| + 1)^2``."""
    return Surrogate("fast_sigmoid", float(slope))


def sigmoid(slope: float = 25) -> Surrogate:
    """Logistic sigmoid derivative with steepness ``slope`` (overflow-free form, see module doc)."""
    return Surrogate("sigmoid", float(slope))


def straight_through_estimator() -> Surrogate:
    """Passes the gradient through unchanged."""
    return Surrogate("straight_through_estimator")


def triangular(threshold: float = 1) -> Surrogate:
    """snnTorch's ``triangular``: ``-threshold`` where ``h >= 0``, ``+threshold`` elsewhere.

    This reproduces snnTorch 1.0.0 exactly, including its sign convention (the gradient is
    negative above threshold), which is an oddity of snnTorch rather than a triangle function.
    """
    return Surrogate("triangular", float(threshold))


def spike_rate_escape(beta: float = 1, slope: float = 25) -> Surrogate:
    """Escape-rate surrogate: ``slope * exp(-beta * |h - 1|)``."""
    return Surrogate("spike_rate_escape", float(beta), float(slope))


def disabled() -> Surrogate:
    """No gradient through spikes: what snnTorch's ``surrogate_disable=True`` does."""
    return Surrogate("disabled")


def surrogate_derivative(h: torch.Tensor, code: int, p0: float, p1: float) -> torch.Tensor:
    """Eager PyTorch ``dS/dh`` from the table; the Triton and C++ kernels evaluate the same tree."""
    if not 0 <= code < len(SURROGATES):
        raise ValueError(f"unknown surrogate code {code}")
    row = SURROGATES[code]
    c0, c1 = row.constants(float(p0), float(p1))
    value = _eval(row.expr, {"h": h, "c0": c0, "c1": c1}, {})
    return value if isinstance(value, torch.Tensor) else torch.full_like(h, value)


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "ge": operator.ge}


def _eval(e: Expr, env: dict, done: dict):
    """Evaluate ``e`` with torch; c0, c1 stay Python floats, as the hand-written eager code had them."""
    if id(e) in done:
        return done[id(e)]
    op, a = e.op, e.args
    if op == "sym":
        return env[a[0]]
    if op == "const":
        return a[0]
    if op == "let":
        value = _eval(a[1], env, done)
    elif op == "neg":
        value = -_eval(a[0], env, done)
    elif op == "abs":
        value = _eval(a[0], env, done).abs()
    elif op == "exp":
        value = torch.exp(_eval(a[0], env, done))
    elif op == "where":
        # Scalar branches make a default-dtype tensor: cast to h's dtype after, as snnTorch does.
        value = torch.where(*(_eval(x, env, done) for x in a)).to(env["h"].dtype)
    else:
        x, y = _eval(a[0], env, done), _eval(a[1], env, done)
        if op == "div":
            # A true division of two tensors, as the kernels do: PyTorch's `scalar / tensor` is a
            # reciprocal times the scalar, which rounds twice and would make backends differ.
            full = lambda v: v if isinstance(v, torch.Tensor) else torch.full_like(env["h"], v)
            value = full(x) / full(y)
        else:
            value = _BINARY[op](x, y)
    done[id(e)] = value
    return value


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.surrogate = surrogate
        return (h > 0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (h,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(h), None


# snnTorch builds each surrogate as a closure named "<factory>.<locals>.inner"; its free
# variables hold the factory's arguments, in the factory's own keyword names.
_SNNTORCH_FACTORIES: dict[str, Callable[..., Surrogate]] = {
    "atan": atan,
    "fast_sigmoid": fast_sigmoid,
    "sigmoid": sigmoid,
    "straight_through_estimator": straight_through_estimator,
    "triangular": triangular,
    "spike_rate_escape": spike_rate_escape,
}


def from_snntorch_closure(fn: object) -> Surrogate:
    """Recognise an snnTorch 1.0.0 surrogate closure (e.g. ``snntorch.surrogate.atan(alpha=3)``).

    Raises ``ValueError`` naming the function when it is not one of snnTorch's fusable
    surrogates (a custom Python surrogate cannot run inside a fused kernel).
    """
    if isinstance(fn, Surrogate):
        return fn
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", "")
    factory_name = qualname.split(".<locals>.")[0] if ".<locals>." in qualname else None
    if module == "snntorch.surrogate" and factory_name in _SNNTORCH_FACTORIES:
        code = fn.__code__  # type: ignore[attr-defined]
        cells = fn.__closure__ or ()  # type: ignore[attr-defined]
        kwargs = {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)}
        # Closures capture only the names the inner function uses, which are the factory args.
        return _SNNTORCH_FACTORIES[factory_name](**kwargs)
    label = f"{module}.{qualname}" if module else repr(fn)
    raise ValueError(
        f"spike_grad={label} cannot be fused: fused kernels support snnTorch's atan, fast_sigmoid, "
        "sigmoid, straight_through_estimator, triangular and spike_rate_escape surrogates "
        "(or fusedsnn.surrogate equivalents). Use a fusedsnn.surrogate, or keep this neuron in snnTorch."
    )


def resolve(spike_grad: object, surrogate_disable: bool = False) -> Surrogate:
    """Turn a layer's ``spike_grad``/``surrogate_disable`` keywords into a :class:`Surrogate`."""
    if surrogate_disable:
        return disabled()
    if spike_grad is None:
        return atan()
    return from_snntorch_closure(spike_grad)


# ---------------------------------------------------------------------------------------------
# Rendering the table into the kernels' switches: `python -m fusedsnn.surrogate --write` rewrites
# the generated regions, `--check` fails when one differs (tests/test_surrogate_codegen.py runs it).

_ROOT = Path(__file__).resolve().parents[1]
#: Files holding the Triton switch between the markers below (the kernels cannot call a nested
#: @triton.jit helper, see backends/triton/launch.py, so the switch is pasted inline).
TRITON_FILES = ("fusedsnn/backends/triton/lif.py", "fusedsnn/backends/triton/all_to_all.py")
HEADER = "csrc/kernels/surrogate.hpp"
BEGIN = "# BEGIN GENERATED: surrogate derivative d of h (fusedsnn/surrogate.py)"
END = "# END GENERATED"

# Binding strength of each rendered form (Python and C++ agree on these): a child binding
# less tightly than its parent is parenthesised, so the text parses back into the same tree.
_ATOM, _UNARY, _PRODUCT, _SUM, _COMPARE, _TERNARY = 100, 90, 80, 70, 60, 50
_INFIX = {"add": ("+", _SUM), "sub": ("-", _SUM), "mul": ("*", _PRODUCT), "ge": (">=", _COMPARE)}


def _render(e: Expr, cpp: bool, lets: dict) -> tuple[str, int]:
    """``(text, binding)`` of ``e`` in C++ (``cpp``) or Triton; named intermediates go to ``lets``
    (name -> text, inner ones first) and render as their name."""
    op, a = e.op, e.args

    def child(x: Expr, weaker_than: int) -> str:
        text, binding = _render(x, cpp, lets)
        return f"({text})" if binding < weaker_than else text

    if op == "sym":
        return a[0], _ATOM
    if op == "const":
        value = a[0]
        text = (f"S({value:g})" if value == int(value) else f"S({value!r})") if cpp else repr(value)
        return text, _UNARY if value < 0 else _ATOM
    if op == "let":
        # A name is one local in the kernels: it must not shadow an input, the output, or another let.
        if a[0] in ("h", "c0", "c1", "d") or lets.get(a[0], (id(e),))[0] != id(e):
            raise ValueError(f"let name {a[0]!r} is taken")
        if a[0] not in lets:
            lets[a[0]] = (id(e), _render(a[1], cpp, lets)[0])
        return a[0], _ATOM
    if op in ("abs", "exp"):
        fn = {"abs": "std::fabs", "exp": "std::exp"}[op] if cpp else f"tl.{op}"
        return f"{fn}({_render(a[0], cpp, lets)[0]})", _ATOM
    if op == "neg":  # `--x` would be a decrement in C++: a negated negation keeps its parentheses
        return "-" + child(a[0], _UNARY + 1), _UNARY
    if op == "where":
        if cpp:
            return f"{child(a[0], _TERNARY + 1)} ? {child(a[1], _TERNARY + 1)} : {child(a[2], _TERNARY)}", _TERNARY
        return f"tl.where({', '.join(_render(x, cpp, lets)[0] for x in a)})", _ATOM
    if op == "div" and not cpp:  # round-to-nearest division: the compiler's `/` may approximate
        return f"tl.math.div_rn({_render(a[0], cpp, lets)[0]}, {_render(a[1], cpp, lets)[0]})", _ATOM
    symbol, binding = ("/", _PRODUCT) if op == "div" else _INFIX[op]
    # Left-associative: an equally binding right operand keeps its parentheses ((a - (b - c)).
    return f"{child(a[0], binding)} {symbol} {child(a[1], binding + 1)}", binding


def _body(row: SurrogateRow, cpp: bool) -> list[str]:
    """Statements that compute ``d`` (Triton) or return it (C++) for one surrogate."""
    lets: dict = {}
    e = row.expr
    text = _render(e, cpp, lets)[0]
    if e.op == "const" and not cpp:  # a constant derivative still needs a full block of h's shape
        text = f"tl.full(h.shape, {e.args[0]!r}, tl.float32)"
    if cpp:
        return [f"S {name} = {value};" for name, (_, value) in lets.items()] + [f"return {text};"]
    return [f"{name} = {value}" for name, (_, value) in lets.items()] + [f"d = {text}"]


def _comment(row: SurrogateRow) -> str:
    return f"  # {row.name}" + (f": {row.note}" if row.note else "")


def triton_switch() -> list[str]:
    """The Triton switch on the constexpr SURROGATE, unindented: assigns ``d`` from ``h``, ``c0``, ``c1``."""
    lines = []
    for row in SURROGATES:
        last = row is SURROGATES[-1]
        lines.append(("else:" if last else f"{'if' if row.code == 0 else 'elif'} SURROGATE == {row.code}:")
                     + _comment(row))
        lines += ["    " + line for line in _body(row, cpp=False)]
    return lines


def _enum(row: SurrogateRow) -> str:
    return "k" + "".join(part.capitalize() for part in row.name.split("_"))


def cpp_header() -> str:
    """csrc/kernels/surrogate.hpp: the SurrogateCode enum, surrogate_derivative and surrogate_row."""
    enum = ",\n".join(f"  {_enum(row)} = {row.code}" for row in SURROGATES)
    cases, rows = [], []
    for row in SURROGATES:
        label = "default" if row is SURROGATES[-1] else f"case {_enum(row)}"
        body = _body(row, cpp=True)
        if len(body) == 1:
            cases.append(f"    {label}:{_comment(row).replace('  #', '  //')}\n      {body[0]}")
        else:
            statements = "\n".join(f"      {line}" for line in body)
            cases.append(f"    {label}: {{{_comment(row).replace('  #', '  //')}\n{statements}\n    }}")
        rows.append(f"    {label}:\n      return surrogate_row_of<{_enum(row)}>(h, out, n, c0, c1);")
    newline = "\n"
    return f"""// Generated by `python -m fusedsnn.surrogate --write` from the table SURROGATES in
// fusedsnn/surrogate.py: edit the table and regenerate, not this file.
//
// Surrogate derivatives dS/dh at h = mem - threshold. c0, c1 are precomputed on the host exactly as
// the Python side forms them (fusedsnn.surrogate.host_constants). Included by lif.hpp, so the host
// library and the IPU codelets share it.
#pragma once

#include <cmath>
#include <cstdint>

namespace fusedsnn {{

enum SurrogateCode : int {{
{enum}
}};

template <typename S>
inline S surrogate_derivative(int code, S h, S c0, S c1) {{
  switch (code) {{
{newline.join(cases)}
  }}
}}

// One tight loop over a row for one surrogate: Code is a constant, so surrogate_derivative's
// switch folds away and the compiler vectorises the loop (a switch inside it would not be).
template <int Code, typename S>
inline void surrogate_row_of(const S* __restrict__ h, S* __restrict__ out, std::int64_t n, S c0, S c1) {{
  for (std::int64_t j = 0; j < n; ++j) out[j] = surrogate_derivative<S>(Code, h[j], c0, c1);
}}

// Over a row of h values: the loop of the row's surrogate.
template <typename S>
inline void surrogate_row(int code, const S* __restrict__ h, S* __restrict__ out, std::int64_t n, S c0, S c1) {{
  switch (code) {{
{newline.join(rows)}
  }}
}}

}}  // namespace fusedsnn
"""


def _with_regions(text: str, path: str) -> str:
    """``text`` with every region between BEGIN and END replaced by the switch, at the marker's indent."""
    out, lines, i, regions = [], text.split("\n"), 0, 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() == BEGIN:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == END), None)
            if end is None:
                raise ValueError(f"{path}:{i + 1}: {BEGIN!r} without {END!r}")
            out += [indent + line for line in triton_switch()]
            regions += 1
            i = end
            continue
        i += 1
    if regions == 0:
        raise ValueError(f"{path} has no generated surrogate region ({BEGIN!r})")
    return "\n".join(out)


def generated(root: Optional[Path] = None) -> dict[Path, str]:
    """Every generated file's path and the text it should have."""
    root = _ROOT if root is None else root
    files = {root / rel: _with_regions((root / rel).read_text(), rel) for rel in TRITON_FILES}
    files[root / HEADER] = cpp_header()
    return files


def stale(root: Optional[Path] = None) -> list[Path]:
    """Generated files whose text differs from what the table renders to."""
    return [path for path, text in generated(root).items() if not path.exists() or path.read_text() != text]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusedsnn.surrogate",
                                     description="Render the surrogate table into the Triton and C++ switches.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated regions and header")
    mode.add_argument("--check", action="store_true", help="exit 1 if any generated region is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"out of date: {path.relative_to(_ROOT)} (run python -m fusedsnn.surrogate --write)")
        return 1 if out_of_date else 0
    for path, text in generated().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
