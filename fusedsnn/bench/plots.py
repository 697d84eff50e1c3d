"""PNG plots of `fusedsnn bench` sections, mirroring the study's figures (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

from .published import SOURCE, THROUGHPUT


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _lines(rows, x_key, title, xlabel, path, log_x=False, y_key="images_per_s", group=("network", "provider")):
    if not rows:
        return
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict = {}
    for r in rows:
        label = " ".join(str(r[g]) for g in group)
        x = r[x_key] if not isinstance(r[x_key], list) else "x".join(map(str, r[x_key]))
        series.setdefault(label, []).append((x, r[y_key]))
    for label, pts in series.items():
        xs, ys = zip(*pts)
        ax.plot([str(x) for x in xs] if isinstance(xs[0], str) else xs, ys, marker="o", label=label)
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(y_key.replace("_", " "))
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(rows, label_keys, title, path, published=None):
    plt = _plt()
    labels = [" ".join(str(r[k]) for k in label_keys) for r in rows]
    values = [r["images_per_s"] for r in rows]
    colors = ["tab:blue"] * len(rows)
    if published:
        for name, value in published.items():
            labels.append(f"{name} (published)")
            values.append(value)
            colors.append("tab:gray")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(labels, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("training images/s")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_section(name: str, rows: list[dict], out: Path) -> None:
    if not rows:
        return
    path = Path(out) / f"{name}.png"
    if name == "throughput":
        for net in ("DSNN", "CSNN"):
            sub = [r for r in rows if r["network"] == net]
            published = {f"{net} {dev}": v for dev, v in THROUGHPUT[net].items()}
            _bars(sub, ("network", "provider", "device"), f"{net} training throughput (blue: measured here)\n"
                  f"grey: {SOURCE}",
                  Path(out) / f"throughput_{net}.png", published)
    elif name == "batch":
        _lines(rows, "batch", "Batch sweep (25 steps)", "batch size", path, log_x=True)
    elif name == "width":
        _lines([r for r in rows if r["network"] == "DSNN"], "hidden", "DSNN width sweep", "hidden neurons",
               Path(out) / "width_DSNN.png", log_x=True)
        _lines([r for r in rows if r["network"] == "CSNN"], "channels", "CSNN kernel-depth sweep", "channels",
               Path(out) / "depth_CSNN.png")
    elif name == "neuron_models":
        _bars(rows, ("neuron", "provider"), "Neuron models (DSNN, batch 128, 25 steps)", path)
    elif name == "precision":
        _bars(rows, ("precision", "provider"), "Precision (DSNN)", path)
    elif name == "population":
        _lines(rows, "outputs", "Population codes (DSNN; 1 step except the 25-step baseline)", "output neurons",
               path, log_x=True, group=("num_steps", "provider"))
    elif name == "time_split":
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3))
        labels = [r["network"] for r in rows]
        ax.barh(labels, [r["neuron_share"] or 0 for r in rows], label="neuron dynamics")
        ax.barh(labels, [r["synaptic_share"] or 0 for r in rows], left=[r["neuron_share"] or 0 for r in rows],
                label="matmul / conv")
        ax.set_xlabel("share of profiled time")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    elif name == "memory":
        from .memory import plot_memory

        plot_memory(rows, out)
    elif name == "neurons":
        _lines([r for r in rows if r["mode"] == "forward+backward"], "N", "Neuron layer, forward+backward",
               "neurons", path, y_key="median_s", group=("neuron", "provider", "dtype"))
