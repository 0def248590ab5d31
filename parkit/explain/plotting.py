"""Figures for explanations: heat-map overlays, the attribute grid, stripe bands (spec §13.2).

`plot_attention_grid` draws the paper's `featuremap_vis.png` layout: one row per pedestrian, an
"Image" column, then one column per attribute with a jet heat map over the letterboxed image.
Column titles are coloured by the attribute's body region with the colours every parkit figure
uses (`parkit.plots.REGION_COLORS`); the four part-token stripes take the colours of the head,
upper-body, lower-body and feet regions they mostly cover.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so they can be made inside
widget callbacks and tests without opening windows or leaking memory.
"""
from __future__ import annotations

import io
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from parkit.attributes import REGIONS
from parkit.data import PARTorchDataset
from parkit.data.transforms import build_transform
from parkit.explain.attention import ExplainError, attribute_attention_maps
from parkit.explain.gradcam import gradcam, stripe_bands
from parkit.model.config import NORMALIZATION_STATS
from parkit.plots import REGION_COLORS

# Part-token stripes top to bottom (spec §4.1): the colours of the body regions they mostly cover,
# so a stripe and the attributes of its region share a colour (REGION_COLORS: parkit.plots).
STRIPE_COLORS = tuple(REGION_COLORS[r] for r in ("head", "upper", "lower", "feet"))
# Body regions top to bottom, then the ones without a place on the body.
REGION_ORDER = REGIONS

# Per-channel (mean, std) of each input normalisation, as the model applies it (spec §3.2 step 1).
NORMALIZATIONS = NORMALIZATION_STATS


def to_display_image(image, normalization: Optional[str] = "official") -> np.ndarray:
    """An image as (H, W, 3) uint8 for display.

    Args:
        image: a (3, H, W) tensor/array normalised with `normalization` (the model input), an
            (H, W, 3) uint8 array, or a PIL image.
        normalization: "official", "clip", or None when a (3, H, W) input is already in [0, 1].
    """
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        return arr
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ExplainError(f"expected a (3, H, W) image tensor or an (H, W, 3) uint8 array, got {arr.shape}")
    arr = arr.astype(np.float32)
    if normalization is not None:
        if normalization not in NORMALIZATIONS:
            raise ExplainError(f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZATIONS)}")
        mean, std = (np.asarray(v, dtype=np.float32)[:, None, None] for v in NORMALIZATIONS[normalization])
        arr = arr * std + mean
    return (np.clip(arr.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heat map, coloured with `cmap`, over an image.

    Args:
        image: (H, W, 3) uint8.
        heatmap: (H, W) values in [0, 1] (e.g. one map of `attribute_attention_maps`).
        alpha: weight of the heat map.
        cmap: matplotlib colormap name (jet as in the paper's figure).

    Returns:
        (H, W, 3) uint8 blend.
    """
    image = np.asarray(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.shape[:2] != heatmap.shape:
        raise ExplainError(f"heat map {heatmap.shape} does not match image {image.shape[:2]}; compute maps "
                           f"with size=image.shape[:2]")
    colour = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3]  # (H, W, 3) in [0, 1]
    blend = (1.0 - alpha) * image.astype(np.float32) / 255.0 + alpha * colour
    return (np.clip(blend, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def draw_stripes(ax, height: int, width: int, grid_rows: int = 16, div_num: int = 4, overlap_row: int = 2,
                 rows: Optional[Sequence[Tuple[int, int]]] = None, alpha: float = 0.12, legend: bool = True):
    """Draw each part token's stripe (spec §4.1) on `ax`, over an image `height` x `width` pixels.

    `rows` are inclusive (first_row, last_row) patch-row pairs; by default the official geometry
    for `grid_rows`, `div_num`, `overlap_row`. Each stripe is a faint band with an outline, inset a
    little more per part so that shared rows show both outlines, plus a solid bar at the left
    edge (side by side, one per part) that reads like a ruler; thin lines mark the patch rows.

    Returns:
        The pixel bands `[(y0, y1), ...]`.
    """
    bands = stripe_bands(height, grid_rows, div_num, overlap_row, rows)
    step = height / grid_rows
    for r in range(1, grid_rows):
        ax.axhline(r * step - 0.5, color="white", linewidth=0.4, alpha=0.35)
    handles = []
    bar = max(width * 0.035, 1.5)
    for k, (y0, y1) in enumerate(bands):
        colour = STRIPE_COLORS[k % len(STRIPE_COLORS)]
        inset = width * 0.015 * k
        top, span = y0 - 0.5, y1 - y0  # pixel edges: pixel i covers [i - 0.5, i + 0.5] in imshow
        ax.add_patch(Rectangle((inset - 0.5, top), width - 2 * inset, span, facecolor=colour, alpha=alpha,
                               edgecolor="none"))
        ax.add_patch(Rectangle((inset - 0.5, top), width - 2 * inset, span, facecolor="none", edgecolor=colour,
                               linewidth=1.6))
        ax.add_patch(Rectangle((k * bar * 1.15 - 0.5, top), bar, span, facecolor=colour, edgecolor="none"))
        first, last = int(round(y0 / step)), int(round(y1 / step)) - 1
        handles.append(Patch(facecolor=colour, label=f"part {k + 1}: patch rows {first}-{last}"))
    if legend:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False)
    return bands


def stripe_overlay(model_or_image, image=None, *, normalization: Optional[str] = None,
                   grid_rows: Optional[int] = None, div_num: int = 4, overlap_row: int = 2,
                   rows: Optional[Sequence[Tuple[int, int]]] = None, title: str = "part-token stripes") -> Figure:
    """A figure of the letterboxed image with the region each part token sees (spec §4.1 / §4.2).

    Call it as `stripe_overlay(model, image)` to draw the model's own stripes (`model.stripes`,
    `model.layout.grid_rows`, `model.normalization`), or as `stripe_overlay(image, ...)` with the
    geometry given explicitly (default: the official 16-row grid, 4 stripes, 2 shared rows).

    Args:
        model_or_image: a parkit PromptPAR model, or the image.
        image: the model input (see `to_display_image`) when the first argument is a model.
        normalization: how the image is normalised (default the model's, else "official").
        grid_rows, div_num, overlap_row: stripe geometry; or `rows`, inclusive (first, last) patch rows.
        title: axes title.
    """
    if isinstance(model_or_image, torch.nn.Module):
        model = model_or_image
        if image is None:
            raise ExplainError("stripe_overlay(model, image) needs the image as its second argument")
        normalization = normalization or model.normalization
        grid_rows = grid_rows or model.layout.grid_rows
        rows = rows if rows is not None else model.stripes
    else:
        image = model_or_image
    img = to_display_image(image, normalization or "official")
    h, w = img.shape[:2]
    fig = Figure(figsize=(2.8, 3.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(img)
    draw_stripes(ax, h, w, grid_rows or 16, div_num, overlap_row, rows)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_attention_grid(images, maps, attribute_names: Sequence[str], *, regions: Optional[Sequence[str]] = None,
                        probs: Optional[np.ndarray] = None, gt: Optional[np.ndarray] = None,
                        normalization: Optional[str] = "official", alpha: float = 0.5, cmap: str = "jet",
                        cell_size: Tuple[float, float] = (1.4, 1.65), title: Optional[str] = None) -> Figure:
    """The paper-style attribute grid: rows are images, columns "Image" then one per attribute.

    Args:
        images: (B, 3, H, W) model inputs, or a list of (H, W, 3) uint8 images.
        maps: (B, A, H, W) heat maps in [0, 1] for the A attributes to show (in column order).
        attribute_names: the A column titles.
        regions: body region of each column; titles take `REGION_COLORS`.
        probs: optional (B, A) probabilities, printed under each cell.
        gt: optional (B, A) ground truth in {0, 1}; a cell shows "gt" when the label is positive.
        normalization: how tensor images are normalised.
        alpha, cmap: overlay settings.
        cell_size: (width, height) of one cell in inches.
        title: optional figure title.

    Returns:
        A matplotlib Figure.
    """
    maps = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float32)
    if maps.ndim != 4:
        raise ExplainError(f"maps must be (B, A, H, W), got shape {maps.shape}")
    n_img, n_attr = maps.shape[:2]
    if len(attribute_names) != n_attr:
        raise ExplainError(f"{len(attribute_names)} attribute names for {n_attr} maps per image")
    if len(images) != n_img:
        raise ExplainError(f"{len(images)} images for {n_img} rows of maps")
    if regions is not None and len(regions) != n_attr:
        raise ExplainError(f"{len(regions)} regions for {n_attr} attributes")
    fig = Figure(figsize=(cell_size[0] * (n_attr + 1), cell_size[1] * n_img + (0.4 if title else 0)), dpi=100)
    axes = fig.subplots(n_img, n_attr + 1, squeeze=False)
    for i in range(n_img):
        img = to_display_image(images[i], normalization)
        axes[i, 0].imshow(img)
        if i == 0:
            axes[i, 0].set_title("Image", fontsize=9)
        for j in range(n_attr):
            ax = axes[i, j + 1]
            ax.imshow(overlay(img, maps[i, j], alpha=alpha, cmap=cmap))
            if i == 0:
                colour = REGION_COLORS.get(regions[j], "black") if regions is not None else "black"
                ax.set_title(attribute_names[j], fontsize=8, color=colour)
            notes = []
            if probs is not None:
                notes.append(f"p={float(probs[i, j]):.2f}")
            if gt is not None and gt[i, j] == 1:
                notes.append("gt")
            if notes:
                ax.text(0.5, -0.02, " ".join(notes), transform=ax.transAxes, ha="center", va="top", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    if regions is not None:
        shown = [r for r in REGION_COLORS if r in set(regions)]
        fig.legend(handles=[Patch(color=REGION_COLORS[r], label=r) for r in shown], loc="lower center",
                   ncol=len(shown), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if regions is not None else 0, 1, 1))
    return fig


def figure_to_png(fig: Figure, dpi: Optional[int] = None) -> bytes:
    """PNG bytes of a Figure (for `ipywidgets.Image` and tests)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def array_to_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def pick_attributes_by_region(attributes: Sequence[str], regions: Sequence[str], per_region: int = 1,
                              order: Sequence[str] = REGION_ORDER) -> list:
    """Column indices for a paper-style grid: the first `per_region` attributes of each body region.

    The paper's figure picks one attribute per body part (gender, hair, jacket, jeans, shoes,
    carried object, spec §13.2); this picks the same spread from any dataset's region table.
    """
    if len(attributes) != len(regions):
        raise ExplainError(f"{len(attributes)} attributes but {len(regions)} regions")
    picked = []
    for region in order:
        picked += [i for i, r in enumerate(regions) if r == region][:per_region]
    return picked


def model_inputs(model, dataset, rows: Sequence[int]) -> torch.Tensor:
    """(B, 3, H, W) model inputs of some dataset rows: letterboxed and normalised as `model` expects."""
    from parkit.data import PARTorchDataset
    transform = build_transform(train=False, image_size=model.image_size, normalization=model.normalization)
    images = PARTorchDataset(dataset, list(rows), transform)
    return torch.stack([images[i][0] for i in range(len(rows))])


def explain_rows(model, dataset, rows: Sequence[int], attributes: Optional[Sequence[int]] = None,
                 method: str = "attention", device=None, title: Optional[str] = None) -> Figure:
    """The paper's attention-map figure (spec §13.2) for some rows of a dataset.

    Args:
        model: a parkit PromptPAR model.
        dataset: the `PARDataset` the rows index (with image paths).
        rows: dataset rows, one figure row each.
        attributes: attribute column indices to show; default one per body region
            (`pick_attributes_by_region`).
        method: "attention" (MM-former text-to-patch attention) or "gradcam".
        device: where to run the model.
        title: figure title.

    Returns:
        A Figure with columns Image + one per attribute; cells show the probability and "gt".
    """
    if attributes is None:
        attributes = pick_attributes_by_region(dataset.attributes, dataset.regions)
    attributes = [int(a) for a in attributes]
    x = model_inputs(model, dataset, rows)  # (B, 3, H, W)
    maps, probs = attribute_attention_maps(model, x, device=device, return_probs=True)  # (B, A, H, W), (B, A)
    if method == "gradcam":
        maps = gradcam(model, x, attributes, device=device)  # (B, k, H, W), one forward pass
    elif method == "attention":
        maps = maps[:, attributes]
    else:
        raise ExplainError(f"method must be 'attention' or 'gradcam', got {method!r}")
    gt = dataset.binary_labels[np.asarray(rows)][:, attributes]
    return plot_attention_grid(x, maps, [dataset.attributes[a] for a in attributes],
                               regions=[dataset.regions[a] for a in attributes], probs=probs[:, attributes],
                               gt=gt, normalization=model.normalization, title=title)
