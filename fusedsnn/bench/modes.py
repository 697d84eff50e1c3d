"""Execution modes of the benchmark's providers, the compile budget, and the one rule every
section compares by: a speed-up only between rows of the same execution mode, against the
fastest baseline of that mode.

A provider's name carries its mode: ``<base>`` runs eagerly, ``<base>-compiled`` under
``torch.compile`` and ``<base>-graph`` replayed from a CUDA graph (``fused-host-compiled``,
``snntorch-hoisted-compiled``, ``snntorch-graph``). Training rows may instead carry the step
mode in ``mode`` ("eager", "compile", "cuda_graph"); :func:`row_execution_mode` reads either.
"""

from __future__ import annotations

from typing import Callable, Optional

#: How a provider's call runs. Every speed-up compares providers of one execution mode.
EXECUTION_MODES = ("eager", "compiled", "graph")
#: torch.compile unrolls the T-step loop of a stepped provider; its compile time grows with T.
#: Compiled providers of cases with T above this are skipped (with the reason in the row),
#: unless raised (``--compile-max-t``).
COMPILE_MAX_T = 25
#: A row is flagged noisy when its q20-q80 range is wider than this fraction of its median.
NOISY_SPREAD = 0.5


def execution_mode(provider: str) -> str:
    """``snntorch-compiled`` -> "compiled", ``fused-triton-graph`` -> "graph", else "eager"."""
    if provider.endswith("-compiled"):
        return "compiled"
    if provider.endswith("-graph"):
        return "graph"
    return "eager"


def base_provider(provider: str) -> str:
    """The provider without its mode suffix: ``snntorch-hoisted-compiled`` -> ``snntorch-hoisted``."""
    return provider.removesuffix("-compiled").removesuffix("-graph")


def compile_budget_reason(num_steps: int, compile_max_t: int = COMPILE_MAX_T) -> Optional[str]:
    """None when a compiled provider may run ``num_steps`` steps, else the reason it is skipped.

    The budget holds for every compiled provider of a case, fused ones included (their compile
    time does not grow with T): a compiled row is only measured beside its compiled baseline."""
    if num_steps > compile_max_t:
        return (f"T={num_steps} above the compile budget T <= {compile_max_t} (--compile-max-t): torch.compile "
                "unrolls a stepped provider's loop over T")
    return None


# ---------------------------------------------------------------------------------------------
# speed-ups, each within one execution mode
# ---------------------------------------------------------------------------------------------

def spread(row: dict) -> Optional[float]:
    """(q80 - q20) / median of a timed row, None for rows without timings."""
    if not row.get("median_s") or row.get("q20_s") is None:
        return None
    return (row["q80_s"] - row["q20_s"]) / row["median_s"]


def row_execution_mode(row: dict) -> str:
    """The row's execution mode: its ``execution_mode`` where set; else training rows' step
    ``mode`` ("compile", "cuda_graph") mapped onto the same three; else the provider's suffix."""
    if row.get("execution_mode"):
        return row["execution_mode"]
    by_step_mode = {"compile": "compiled", "cuda_graph": "graph"}.get(row.get("mode"))
    return by_step_mode or execution_mode(str(row.get("provider", "")))


def is_baseline(row: dict) -> bool:
    """A baseline is any provider that is not ours (snnTorch's variants, SpikingJelly)."""
    return not str(row.get("provider", "")).startswith("fused")


def add_speedups(rows: list[dict], key: Callable[[dict], tuple],
                 baseline: Callable[[dict], bool] = is_baseline,
                 compared: Callable[[dict], bool] = lambda row: True) -> None:
    """Speed-up of each row over the FASTEST baseline (``baseline(row)``) of the same case
    (``key(row)``) in the same execution mode (eager against eager, compiled against compiled,
    graph against graph; never across modes), named in ``baseline``. Its range comes from the
    quantiles of both timings (low: our q80 against the baseline's q20; high: the other way).
    ``noisy`` when either timing's q20-q80 spread exceeds :data:`NOISY_SPREAD`. A row with no
    timed baseline of its mode (a skipped row, or one ``compared`` rejects, such as a reference
    that is no contender) gets no ratio (None)."""
    base: dict = {}
    for r in rows:
        if baseline(r) and r.get("median_s"):
            k = (key(r), row_execution_mode(r))
            if k not in base or r["median_s"] < base[k]["median_s"]:
                base[k] = r
    for r in rows:
        r.setdefault("execution_mode", row_execution_mode(r))
        s = spread(r)
        r["spread"] = s
        b = base.get((key(r), row_execution_mode(r)))
        if b is None or not r.get("median_s") or not compared(r):
            r["baseline"] = r["speedup_vs_baseline"] = r["speedup_low"] = r["speedup_high"] = None
            r["noisy"] = s is not None and s > NOISY_SPREAD
            continue
        r["baseline"] = b["provider"]
        r["speedup_vs_baseline"] = b["median_s"] / r["median_s"]
        if r is b:  # the baseline itself: 1 by definition, no range
            r["speedup_low"] = r["speedup_high"] = None
        else:
            r["speedup_low"] = b["q20_s"] / r["q80_s"]
            r["speedup_high"] = b["q80_s"] / r["q20_s"]
        spreads = [v for v in (s, spread(b)) if v is not None]
        r["noisy"] = any(v > NOISY_SPREAD for v in spreads)
