"""Dataset and results figures shared by the notebooks.

Colours are consistent across every figure: one colour per body region (head, upper, lower, feet,
carried, whole) and attributes inherit their region's colour, so a reader can follow an
attribute from the frequency plot to the ablation tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

REGION_COLORS = {
    "head": "#1f77b4",
    "upper": "#ff7f0e",
    "lower": "#2ca02c",
    "feet": "#8c564b",
    "carried": "#9467bd",
    "whole": "#7f7f7f",
}


def region_colors(regions: Sequence[str]) -> list:
    """Colour of each attribute from its body region."""
    return [REGION_COLORS.get(r, "#333333") for r in regions]


def _region_legend(ax, regions):
    from matplotlib.patches import Patch

    present = [r for r in REGION_COLORS if r in set(regions)]
    ax.legend(handles=[Patch(color=REGION_COLORS[r], label=r) for r in present], title="body region",
              loc="best", fontsize=8, title_fontsize=8)


MAX_PNG_BYTES = 150_000  # committed notebooks carry every figure; keep each one light
_MIN_DPI = 40


def savefig(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save a figure as PNG (parents created) and return the path; nothing is displayed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def in_kernel() -> bool:
    """Whether the code runs inside a Jupyter kernel (where `display` reaches a notebook)."""
    try:
        from IPython import get_ipython  # noqa: PLC0415 (optional: parkit runs without IPython)
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _quantize_png(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (a third of the size for photographs)."""
    from PIL import Image  # noqa: PLC0415 (Pillow comes with matplotlib)

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def save_figure(fig, path: Path | str, dpi: int = 110, max_bytes: int = MAX_PNG_BYTES,
                show: bool | None = None) -> Path:
    """Save a figure under `path` as PNG and show the same picture inline in a notebook.

    The figure is saved at `dpi`, lowered step by step while the file is larger than `max_bytes`
    (so committed notebooks stay small; at the lowest dpi the colours are reduced to a palette),
    then closed: the displayed PNG is the saved file, so the
    notebook and `figures/` show the same picture and the backend never draws it a second time.

    Args:
        fig: a matplotlib Figure.
        path: where to write the PNG (parents are created).
        dpi: the preferred resolution.
        max_bytes: largest acceptable file size.
        show: display inline (default: only inside a Jupyter kernel).

    Returns:
        The path of the PNG.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib is imported on first plot)

    path = savefig(fig, path, dpi=dpi)
    while path.stat().st_size > max_bytes and dpi > _MIN_DPI:
        # PNG size grows about with the pixel count, i.e. with dpi squared
        dpi = max(_MIN_DPI, int(dpi * 0.9 * (max_bytes / path.stat().st_size) ** 0.5))
        savefig(fig, path, dpi=dpi)
    if path.stat().st_size > max_bytes:
        _quantize_png(path)  # still too large at the lowest dpi (photographs): 256 colours
    plt.close(fig)
    if in_kernel() if show is None else show:
        from IPython.display import Image, display  # noqa: PLC0415

        display(Image(filename=str(path)))
    return path


def image_grid(dataset, indices: Sequence[int], ncols: int = 6, max_labels: int = 6, title: str | None = None):
    """Images of `dataset` rows with their positive attributes written underneath."""
    import matplotlib.pyplot as plt
    from PIL import Image

    indices = list(indices)
    nrows = int(np.ceil(len(indices) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        path = dataset.image_paths[i]
        if path is not None:
            with Image.open(path) as im:
                ax.imshow(im.convert("RGB"))
        pos = [dataset.attributes[j] for j in np.flatnonzero(dataset.labels[i] == 1)]
        text = "\n".join(pos[:max_labels] + (["..."] if len(pos) > max_labels else []))
        ax.set_title(f"#{i}", fontsize=8)
        ax.text(0.5, -0.02, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def attribute_frequency(dataset, split: str | None = None, title: str | None = None):
    """Bar chart of each attribute's positive ratio, coloured by body region."""
    import matplotlib.pyplot as plt

    rows = dataset.split_indices(split) if split else np.arange(len(dataset))
    lab = dataset.labels[rows]
    known = lab <= 1
    ratio = (lab == 1).sum(0) / np.maximum(known.sum(0), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(ratio)), 3.6))
    ax.bar(range(len(ratio)), ratio * 100, color=region_colors(dataset.regions))
    ax.set_xticks(range(len(ratio)))
    ax.set_xticklabels(dataset.attributes, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("positive images (%)")
    ax.set_title(title or f"{dataset.name}: attribute frequencies" + (f" ({split})" if split else ""))
    _region_legend(ax, dataset.regions)
    fig.tight_layout()
    return fig


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """P(attribute j positive | attribute i positive), an (A, A) matrix; rows of absent attributes are 0."""
    pos = (np.asarray(labels) == 1).astype(np.float64)
    counts = pos.T @ pos  # (A, A) joint positives
    diag = np.diag(counts).copy()
    return np.divide(counts, diag[:, None], out=np.zeros_like(counts), where=diag[:, None] > 0)


def cooccurrence_heatmap(dataset, title: str | None = None):
    """Heatmap of P(column | row) over the whole dataset."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    mat = cooccurrence(dataset.labels)
    size = max(6, 0.3 * dataset.num_attributes)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    sns.heatmap(mat, vmin=0, vmax=1, cmap="viridis", square=True, ax=ax,
                xticklabels=dataset.attributes, yticklabels=dataset.attributes,
                cbar_kws={"label": "P(column positive | row positive)"})
    ax.tick_params(labelsize=7)
    ax.set_title(title or f"{dataset.name}: attribute co-occurrence")
    fig.tight_layout()
    return fig


def metric_curve(df, x: str, y: str = "mA", hue: str | None = None, xlabel: str | None = None,
                 title: str | None = None, paper: dict | None = None, ax=None):
    """Line plot of a metric against a swept setting (ablations); optional paper reference points."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    else:
        fig = ax.figure
    groups = [(None, df)] if hue is None else list(df.groupby(hue))
    for name, g in groups:
        g = g.sort_values(x)
        ax.plot(g[x], g[y], marker="o", label=str(name) if name is not None else "this run")
    if paper:
        ax.scatter(list(paper), list(paper.values()), marker="*", s=120, color="black", label="paper", zorder=5)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(y if y != "mA" else "mA (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def training_curves(history, title: str | None = None):
    """Loss and mA per epoch of one run, side by side, from its `history.csv` frame."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    panels = ((axes[0], [c for c in history.columns if "loss" in c], "loss", "Training loss"),
              (axes[1], [c for c in history.columns if c.endswith("mA")], "mA (%)", "mA per epoch"))
    for ax, cols, ylabel, name in panels:
        if history.empty:
            ax.text(0.5, 0.5, "no epoch finished\n(time budget reached first)", ha="center", va="center",
                    transform=ax.transAxes)
        for c in cols:
            ax.plot(history["epoch"], history[c], marker="o", label=c)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if cols:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_attribute_bars(attributes: Sequence[str], values, regions: Sequence[str], ylabel: str = "mA (%)",
                       title: str | None = None, chance: float | None = 50.0, ax=None):
    """One bar per attribute coloured by body region, with an optional chance line."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 3.6))
    else:
        fig = ax.figure
    ax.bar(range(len(attributes)), np.asarray(values, dtype=float), color=region_colors(regions))
    if chance is not None:
        ax.axhline(chance, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(attributes)))
    ax.set_xticklabels(attributes, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def accuracy_vs_parameters(table, label: str = "run", x: str = "trainable", y: str = "mA",
                           title: str | None = None, yerr: str | None = None):
    """Scatter of a metric against trainable parameters (log axis), one labelled point per row.

    Args:
        table: a DataFrame with columns `label`, `x` and `y` (and `yerr` when given).
        label: column naming each point.
        x, y: columns of the axes.
        title: figure title.
        yerr: optional column of error bars (e.g. the standard deviation over seeds).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = table[x].clip(lower=1)  # zero-shot trains nothing: draw it at 1 on the log axis
    if yerr is not None and yerr in table:
        ax.errorbar(xs, table[y], yerr=table[yerr].fillna(0), fmt="o", capsize=3)
    else:
        ax.scatter(xs, table[y], s=50)
    for xv, yv, name in zip(xs, table[y], table[label]):
        ax.annotate(str(name), (xv, yv), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel("test mA (%)" if y == "mA" else y)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def ablation_bars(table, label: str = "variant", y: str = "mA", title: str | None = None):
    """Horizontal bars of an ablation table (first row: the full model, in blue; removals that lose
    in red, that gain in green), with the standard deviation over seeds as error bars when present."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    delta = table[y] - table[y].iloc[0]
    colors = ["#1f77b4"] + ["#d62728" if d < 0 else "#2ca02c" for d in delta.iloc[1:]]
    err = table[f"{y} sd"].fillna(0)[::-1] if f"{y} sd" in table else None
    ax.barh(table[label][::-1], table[y][::-1], xerr=err, color=colors[::-1], capsize=3)
    ax.set_xlabel("test mA (%)" if y == "mA" else y)
    ax.set_xlim(max(0, table[y].min() - 5), table[y].max() + 2)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def parameter_groups_bars(table, xlabel: str = "trainable parameters", title: str | None = None):
    """Stacked horizontal bars of trainable parameters by group, one bar per row of `table`
    (columns named "[group]", as `count_parameters`' by_group; frozen and empty groups left out)."""
    groups = [c for c in table.columns if c.startswith("[") and "frozen" not in c and table[c].sum() > 0]
    ax = table[groups].plot.barh(stacked=True, figsize=(8, 0.5 * len(table) + 1.5), colormap="tab20")
    ax.set_xlabel(xlabel)
    ax.set_title(title or "Where the trainable parameters are, by group")
    ax.legend(fontsize=7, loc="lower right")
    ax.figure.tight_layout()
    return ax.figure


def metric_bars(table, label: str, metrics: Sequence[str] = ("mA", "Acc", "F1"), title: str | None = None):
    """Grouped bars: one group per metric, one bar per row of `table` (named by its `label` column)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / max(len(table), 1)
    x = np.arange(len(metrics))
    for k, (_, row) in enumerate(table.iterrows()):
        ax.bar(x + (k - (len(table) - 1) / 2) * width, [row[m] for m in metrics], width, label=str(row[label]))
    ax.set_xticks(x)
    ax.set_xticklabels(metrics)
    ax.set_ylabel("test score (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


VERDICT_COLORS = {"holds": "#2ca02c", "does not hold": "#d62728", "not measurable in this profile": "#bbbbbb"}


def verdict_bars(ledger, title: str | None = None):
    """Stacked bars of a claims ledger: per notebook, how many claims hold, do not hold, or cannot
    be measured in this profile (colours in `VERDICT_COLORS`)."""
    import matplotlib.pyplot as plt

    counts = ledger.groupby(["notebook", "verdict"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=list(VERDICT_COLORS), fill_value=0)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(counts) + 1.4))
    left = np.zeros(len(counts))
    names = [f"notebook {n}" for n in counts.index][::-1]
    for verdict, color in VERDICT_COLORS.items():
        values = counts[verdict].to_numpy()[::-1]
        ax.barh(names, values, left=left, color=color, label=verdict)
        left += values
    ax.set_xlabel("claims")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, pad=24)
    fig.tight_layout()
    return fig
