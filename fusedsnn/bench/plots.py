"""PNG plots of `fusedsnn bench` sections, mirroring the study's figures (matplotlib, no display).

Conventions, so that no plot misleads: bars start at zero on a linear axis and carry their
value; every measured point shows its median with whiskers from the 20% to the 80% quantile;
sweeps put one tick at each measured value (the x positions are the values' order, labelled
with the values); each provider has one colour in every plot; titles say what was measured,
on which device, at which sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .published import SOURCE, THROUGHPUT

#: One colour per provider in every plot (fused and snnTorch never share one).
PROVIDER_COLOURS = {
    "fused": "tab:blue", "fused-host": "tab:blue", "fused-triton": "tab:purple", "fused-poplar": "tab:cyan",
    "fused-reference": "tab:green", "snntorch": "tab:orange", "published": "0.55",
    "fused-lean": "tab:red", "snntorch-tutorial": "tab:orange", "snntorch-hoisted": "gold",
    "snntorch-compiled": "tab:red", "snntorch-graph": "peru", "spikingjelly": "tab:gray",
    # a fused provider's compiled and graph twins: its own colour family, darker
    "fused-host-compiled": "navy", "fused-reference-compiled": "darkgreen", "fused-triton-compiled": "indigo",
    "fused-triton-graph": "mediumorchid",
    # compiled training providers and the network sections' providers
    "fused-compiled": "navy", "snntorch-tutorial-compiled": "tab:red", "snntorch-hoisted-compiled": "darkgoldenrod",
    "fused-linear-leaky": "tab:cyan", "linear-only": "0.3",
}
_EXTRA_COLOURS = ["tab:red", "tab:brown", "tab:pink", "tab:olive"]


def _colour(provider: str) -> str:
    if provider not in PROVIDER_COLOURS:
        PROVIDER_COLOURS[provider] = _EXTRA_COLOURS[len(PROVIDER_COLOURS) % len(_EXTRA_COLOURS)]
    return PROVIDER_COLOURS[provider]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # long titles (the source citation) are not cut off
    _plt().close(fig)


def _images_per_s(row: dict) -> tuple[float, float, float]:
    """(median, low, high) images/s of a training row: low from the q80 time, high from the q20."""
    b = row["batch"]
    return b / row["median_s"], b / row["q80_s"], b / row["q20_s"]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _provider_order(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r["provider"] not in seen:
            seen.append(r["provider"])
    return seen


def _device_of(rows: list[dict]) -> str:
    """The GPU's name where the rows carry it (e.g. "NVIDIA H200"), else the device ("cpu")."""
    if not rows:
        return "?"
    return rows[0].get("device_name") or rows[0].get("device", "?")


# ---------------------------------------------------------------------------------------------
# horizontal bars from zero with values: throughput, neuron models, precision, neurons (one shape)
# ---------------------------------------------------------------------------------------------

def _grouped_bars(groups: list[str], providers: list[str], value, title: str, xlabel: str, path: Path,
                  extra: Optional[list[tuple[str, float]]] = None, extra_label: str = "published") -> None:
    """One group of bars per entry of ``groups`` (top to bottom), one bar per provider in it.
    ``value(group, provider)`` -> (median, low, high) or None. ``extra``: (label, value) bars in
    grey after the groups (the study's published figures)."""
    plt = _plt()
    extra = extra or []
    height = 0.8 / max(len(providers), 1)
    n_rows = len(groups) * len(providers) + len(extra)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * n_rows))
    largest = 0.0
    labelled: set = set()
    for gi, group in enumerate(groups):
        for pi, provider in enumerate(providers):
            v = value(group, provider)
            if v is None:
                continue
            median, low, high = v
            y = gi + (pi - (len(providers) - 1) / 2) * height
            ax.barh(y, median, height=height * 0.9, color=_colour(provider),
                    label=None if provider in labelled else provider,
                    xerr=[[max(0.0, median - low)], [max(0.0, high - median)]], capsize=2, error_kw={"elinewidth": 0.8})
            labelled.add(provider)
            ax.text(high, y, f" {_fmt(median)}", va="center", fontsize=7)
            largest = max(largest, high)
    ticks = list(range(len(groups)))
    labels = list(groups)
    for i, (label, v) in enumerate(extra):
        y = len(groups) + i
        ax.barh(y, v, height=0.6, color=PROVIDER_COLOURS["published"],
                label=extra_label if i == 0 else None)
        ax.text(v, y, f" {_fmt(v)}", va="center", fontsize=7)
        ticks.append(y)
        labels.append(label)
        largest = max(largest, v)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, largest * 1.18 if largest else 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _throughput(rows: list[dict], net: str, path: Path) -> None:
    sub = [r for r in rows if r["network"] == net]
    if not sub:
        return
    providers = _provider_order(sub)
    by = {r["provider"]: r for r in sub}
    b, steps = sub[0]["batch"], sub[0]["num_steps"]
    group = f"measured here\n({_device_of(sub)},\nbatch {b}, {steps} steps)"
    published = [(f"{dev}", v) for dev, v in THROUGHPUT[net].items()]
    _grouped_bars([group], providers, lambda g, p: _images_per_s(by[p]) if p in by else None,
                  f"{net} training throughput, forward + BPTT + AdamW (published: batch 128, 25 steps)\n"
                  f"bars: median images/s, whiskers q20-q80; grey: published, {SOURCE}",
                  "training images/s (linear axis from 0)", path, extra=published, extra_label="published (GPUs, IPU)")


def _by_key(rows: list[dict], key: str) -> tuple[list[str], list[str], dict]:
    groups: list[str] = []
    for r in rows:
        if str(r[key]) not in groups:
            groups.append(str(r[key]))
    table = {(str(r[key]), r["provider"]): r for r in rows}
    return groups, _provider_order(rows), table


def _categories(rows: list[dict], key: str, title: str, ylabel: str, path: Path) -> None:
    groups, providers, table = _by_key(rows, key)
    _grouped_bars(groups, providers, lambda g, p: _images_per_s(table[g, p]) if (g, p) in table else None,
                  title, ylabel, path)


def _neurons(rows: list[dict], path: Path) -> None:
    shapes = sorted({(r["T"], r["B"], r["N"]) for r in rows}, key=lambda s: s[0] * s[1] * s[2])
    dtypes = sorted({r["dtype"] for r in rows})
    if len(shapes) == 1:
        T, B, N = shapes[0]
        groups = []
        table = {}
        for r in rows:
            g = f"{r['neuron']} {r['dtype']}\n{r['mode']}" if len(dtypes) > 1 else f"{r['neuron']}\n{r['mode']}"
            if g not in groups:
                groups.append(g)
            table[g, r["provider"]] = (1e3 * r["median_s"], 1e3 * r["q20_s"], 1e3 * r["q80_s"])
        _grouped_bars(groups, _provider_order(rows), lambda g, p: table.get((g, p)),
                      f"One neuron layer alone, T={T} steps, B={B}, N={N} neurons ({', '.join(dtypes)}, "
                      f"{_device_of(rows)})\nbars: median time per call, whiskers q20-q80", "milliseconds per call",
                      path)
        return
    # A grid of sizes: one panel per neuron, forward+backward in float32, throughput over the sizes.
    plt = _plt()
    sub = [r for r in rows if r["mode"] == "forward+backward" and r["dtype"] == "float32"] or rows
    kinds = list(dict.fromkeys(r["neuron"] for r in sub))
    cols = 2 if len(kinds) > 1 else 1
    fig, axes = plt.subplots((len(kinds) + 1) // 2, cols, figsize=(11, 3.2 * ((len(kinds) + 1) // 2)), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        # each panel its own sizes: the full sweep may cover one neuron at many sizes, others at few
        present = {(r["T"], r["B"], r["N"]) for r in sub if r["neuron"] == kind}
        kind_shapes = [shape for shape in shapes if shape in present]
        labels = [f"{T}x{B}x{N}" for T, B, N in kind_shapes]
        providers = _provider_order(sub)
        for k, provider in enumerate(providers):
            pts = [(kind_shapes.index((r["T"], r["B"], r["N"])), r) for r in sub
                   if r["neuron"] == kind and r["provider"] == provider and r.get("median_s")]
            if not pts:
                continue
            pts.sort(key=lambda p: p[0])
            # Sizes are categories, not a scale: points side by side per size, no joining lines.
            xs = [p[0] + (k - (len(providers) - 1) / 2) * 0.8 / max(len(providers), 1) for p in pts]
            steps = [p[1]["T"] * p[1]["B"] * p[1]["N"] for p in pts]
            med = [s / p[1]["median_s"] for s, p in zip(steps, pts)]
            low = [max(0.0, m - s / p[1]["q80_s"]) for m, s, p in zip(med, steps, pts)]
            high = [max(0.0, s / p[1]["q20_s"] - m) for m, s, p in zip(med, steps, pts)]
            # Execution mode as the marker's shape: compiled and graph twins stay apart from eager.
            shape = {"-compiled": "s", "-graph": "^"}.get(provider[provider.rfind("-"):], "o")
            ax.errorbar(xs, med, yerr=[low, high], marker=shape, ms=4, capsize=2, linestyle="none",
                        color=_colour(provider), label=provider)
        ax.set_yscale("log")
        ax.set_xticks(range(len(kind_shapes)), labels, rotation=90 if len(labels) > 4 else 0, fontsize=7)
        ax.set_xlabel("size: T steps x B samples x N neurons")
        ax.set_title(f"{kind}, forward+backward, float32", fontsize=9)
        ax.set_ylabel("neuron-steps / s")
    for ax in list(axes.flat)[len(kinds):]:
        ax.set_visible(False)
    # One legend for all panels, below them: inside a panel it covers the points.
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(4, len(legend)), fontsize=8,
               title="provider (marker: o eager, s compiled, ^ CUDA graph)", title_fontsize=8)
    fig.suptitle(f"One neuron layer alone over sizes T x B x N ({_device_of(rows)}); median, whiskers q20-q80",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(legend) + 3) // 4), 1, 1))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# sweeps: one tick per measured value
# ---------------------------------------------------------------------------------------------

def _sweep(rows: list[dict], x_key: str, title: str, xlabel: str, path: Path,
           series=lambda r: r["provider"], colour=lambda r: _colour(r["provider"]),
           marker=lambda r: "o", legend_title: Optional[str] = None) -> None:
    """Images/s against ``x_key``: x positions are the measured values in increasing order,
    each tick labelled with its value; fused points carry their speed-up over the fastest baseline
    of the same execution mode."""
    if not rows:
        return
    plt = _plt()

    def x_value(r):
        v = r[x_key]
        return tuple(v) if isinstance(v, list) else v

    values = sorted({x_value(r) for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    groups: dict = {}
    for r in rows:
        groups.setdefault(series(r), []).append(r)
    spans = []
    for label, pts in groups.items():
        pts = sorted(pts, key=x_value)
        xs = [values.index(x_value(r)) for r in pts]
        ys = [_images_per_s(r) for r in pts]
        med = [y[0] for y in ys]
        ax.errorbar(xs, med, yerr=[[max(0.0, y[0] - y[1]) for y in ys], [max(0.0, y[2] - y[0]) for y in ys]],
                    marker=marker(pts[0]),
                    capsize=3, color=colour(pts[0]), label=label, linestyle="-" if len(pts) > 1 else "none")
        spans += [y[1] for y in ys] + [y[2] for y in ys]
        for x, r, m in zip(xs, pts, med):
            # Only fused points: a baseline's ratio to the fastest baseline is not a comparison
            # with fusedsnn, and labels on every line overlap.
            if r.get("speedup_vs_baseline") and r["provider"].startswith("fused"):
                ax.annotate(f"{r['speedup_vs_baseline']:.2g}x", (x, m), textcoords="offset points", xytext=(6, -11),
                            fontsize=7, color=colour(r))
    if spans and max(spans) / max(min(spans), 1e-12) > 20:
        ax.set_yscale("log")
        ylabel = "training images/s (log axis)"
    else:
        ax.set_ylim(0, max(spans) * 1.15 if spans else 1)
        ylabel = "training images/s"
    ax.set_xticks(range(len(values)), ["-".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values])
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + f"\n{_device_of(rows)}; median, whiskers q20-q80; labels: fused speed-up over the fastest baseline, same mode",
                 fontsize=9)
    ax.legend(fontsize=7, title=legend_title, title_fontsize=7)
    _save(fig, path)


def _time_split(rows: list[dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.6 * len(rows)))
    parts = [("neuron_share", "neuron dynamics (fused op)", "tab:blue"),
             ("synaptic_share", "matmul / conv", "tab:gray"),
             ("other_share", "other (loss, optimizer, autograd, copies)", "tab:olive")]
    labels = [f"{r['network']} (batch {r['batch']}, {r['num_steps']} steps)" for r in rows]
    left = [0.0] * len(rows)
    for key, name, colour in parts:
        shares = [r.get(key) or 0.0 for r in rows]
        ax.barh(labels, shares, left=left, color=colour, label=name)
        for i, (s, l0) in enumerate(zip(shares, left)):
            if s >= 0.04:
                ax.text(l0 + s / 2, i, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of profiled {rows[0].get('timer', 'cpu')} time in one training step")
    r0 = rows[0]
    ax.set_title(f"Where a fused training step's time goes (torch.profiler)\nprovider {r0.get('provider', 'fused')}, "
                 f"backend {r0.get('backend', '?')}, device {r0.get('device', '?')}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.2), ncol=3)
    _save(fig, path)


def plot_section(name: str, rows: list[dict], out: Path) -> None:
    """The section's PNG(s) in ``out``; sections without a plot (or no rows) draw nothing.
    Skipped rows (no timing, a ``skipped`` reason) are tabulated, not plotted."""
    rows = [r for r in rows if not r.get("skipped")]
    if not rows:
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    if name == "throughput":
        for net in ("DSNN", "CSNN"):
            _throughput(rows, net, out / f"throughput_{net}.png")
    elif name == "batch":
        first = rows[0]
        _sweep(rows, "batch", f"Batch sweep: training throughput ({first['num_steps']} steps)", "batch size", path,
               series=lambda r: f"{r['network']} {r['provider']}")
    elif name == "width":
        dsnn = [r for r in rows if r["network"] == "DSNN"]
        csnn = [r for r in rows if r["network"] == "CSNN"]
        if dsnn:
            _sweep(dsnn, "hidden", f"DSNN width sweep (batch {dsnn[0]['batch']}, {dsnn[0]['num_steps']} steps)",
                   "hidden neurons", out / "width_DSNN.png")
        if csnn:
            _sweep(csnn, "channels", f"CSNN kernel-depth sweep (batch {csnn[0]['batch']}, "
                   f"{csnn[0]['num_steps']} steps)", "channels of conv 1 - conv 2", out / "depth_CSNN.png")
    elif name == "neuron_models":
        r0 = rows[0]
        _categories(rows, "neuron", f"Neuron models on the DSNN (batch {r0['batch']}, {r0['num_steps']} steps, "
                    f"{_device_of(rows)})\nbars: median training images/s, whiskers q20-q80", "training images/s",
                    path)
    elif name == "precision":
        r0 = rows[0]
        _categories(rows, "precision", f"Precision (autocast) on the DSNN (batch {r0['batch']}, {r0['num_steps']} "
                    f"steps, {_device_of(rows)})\nbars: median training images/s, whiskers q20-q80",
                    "training images/s", path)
    elif name == "population":
        def series(r):
            steps = r["num_steps"]
            plural = "s" if steps != 1 else ""
            return f"{r['provider']}, {steps} time step{plural}" + (" (baseline)" if steps > 1 else "")

        _sweep(rows, "outputs", f"Population codes on the DSNN (batch {rows[0]['batch']}): one time step with "
               "10..1000 outputs\nagainst the 10-output baseline over many time steps", "output neurons", path,
               series=series, marker=lambda r: "o" if r["num_steps"] == 1 else "s",
               legend_title="provider, time steps per image")
    elif name == "time_split":
        _time_split(rows, path)
    elif name == "memory":
        plot_memory(rows, out)
    elif name == "neurons":
        _neurons(rows, path)
    elif name in ("net3", "open_neuromorphic"):
        _network_times(name, rows, path)


def _network_times(name: str, rows: list[dict], path: Path) -> None:
    """net3 and open_neuromorphic: one group of bars per case, one bar per provider, the median
    time per step (ms) with q20-q80 whiskers; compiled rows carry the mode in their names."""

    def size(r: dict) -> str:
        return f"T={r['T']}, B={r['B']}" if name == "net3" else f"n={r['n']:,}, T={r['T']}, B={r['B']}"

    groups: list[str] = []
    for r in rows:
        if size(r) not in groups:
            groups.append(size(r))
    table = {(size(r), r["provider"]): r for r in rows}

    def value(group, provider):
        r = table.get((group, provider))
        return None if r is None else (1e3 * r["median_s"], 1e3 * r["q20_s"], 1e3 * r["q80_s"])

    what = ("3-layer 256-512-512-10 Linear+Leaky training step (forward, loss, backward, AdamW)" if name == "net3"
            else "Linear(n, n) + LIF forward+backward (Open Neuromorphic's workload)")
    _grouped_bars(groups, _provider_order(rows), value,
                  f"{what}, {_device_of(rows)}\nbars: median ms per step, whiskers q20-q80; "
                  "ratios only within one execution mode", "ms per step (linear axis from 0)", path)


_LOCAL_COLOURS = {"fused-chunked": "tab:brown"}


def plot_memory(rows: list[dict], out) -> None:
    """``memory.png``: peak memory (left) and step time (right), one panel row per network:
    against T (log-log) where several T were measured, else one bar per provider (a single T is
    no axis)."""
    if not rows:
        return
    plt = _plt()
    from matplotlib.ticker import FormatStrFormatter

    networks = list(dict.fromkeys(r["network"] for r in rows))
    fig, axes = plt.subplots(len(networks), 2, figsize=(9, 3.2 * len(networks)), squeeze=False)
    for i, net in enumerate(networks):
        net_rows = [r for r in rows if r["network"] == net]
        steps = sorted({r["num_steps"] for r in net_rows})
        providers = list(dict.fromkeys(r["provider"] for r in net_rows))

        def label(provider: str) -> str:
            chunk = next((r.get("chunk_steps") for r in net_rows if r["provider"] == provider and r.get("chunk_steps")),
                         None)
            return f"{provider} ({chunk} steps)" if chunk else provider

        for j, (key, unit) in enumerate((("peak_mib", "MiB above start of step"), ("median_s", "seconds"))):
            ax = axes[i][j]
            if len(steps) == 1:
                values = [next(r[key] for r in net_rows if r["provider"] == p) for p in providers]
                bars = ax.barh(range(len(providers)), values,
                               color=[_LOCAL_COLOURS.get(p) or _colour(p) for p in providers])
                ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
                ax.set_yticks(range(len(providers)), [label(p) for p in providers], fontsize=7)
                ax.invert_yaxis()
                ax.set_xlabel(unit)
                ax.margins(x=0.2)
            else:
                for provider in providers:
                    pts = sorted((r["num_steps"], r[key]) for r in net_rows if r["provider"] == provider)
                    ax.plot(*zip(*pts), marker="o", label=label(provider),
                            color=_LOCAL_COLOURS.get(provider) or _colour(provider))
                ax.set_xlabel("time steps T")
                ax.set_ylabel(unit)
                ax.set_xscale("log")
                ax.set_yscale("log")
                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_major_formatter(FormatStrFormatter("%g"))
                ax.legend(fontsize=7)
        batch = net_rows[0]["batch"]
        when = f", T={steps[0]}" if len(steps) == 1 else ""
        axes[i][0].set_title(f"{net}, batch {batch}{when}: peak training memory", fontsize=9)
        axes[i][1].set_title(f"{net}, batch {batch}{when}: forward+backward time", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out) / "memory.png", dpi=120)
    plt.close(fig)
