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


def savefig(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save a figure as PNG (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
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
