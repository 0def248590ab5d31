"""Attention localization, measured: does each attribute's map fall where SynthPAR draws it?

The paper's attention-map figure (spec §13.2) claims attribute-specific attention: the hat's
map on the head, the trousers' on the legs. SynthPAR's renderer knows where every attribute is
drawn (`parkit.data.synthpar.body_regions`), so the claim can be measured instead of eyeballed.
For each attribute with a body region (head, upper -> torso box, lower -> legs box, feet) and
each image that shows it, `localization` reads the attribute's map on the patch grid (MM-former
text-token -> patch attention, or Grad-CAM) and reports:

- **share**: the fraction of the map's mass inside the region, against its **chance** level,
  the region's area share of the grid (what a uniform map would put there);
- **pointing game**: whether the map's peak falls inside the region; its chance is the same
  area share (a peak at a uniformly random patch);
- **pairwise correlation**: how alike one image's attribute maps are (1.0: one blob for all);
- **ratio_body**: the share against the region's share of the person's whole-body box. Grid
  chance is a low bar: a map spread evenly over the person scores about 3x it in every region,
  and only `ratio_body` > 1 shows a map that prefers the attribute's part of the person.

Regions are boxes in the original image; the model sees the image letterboxed into a square
(`parkit.data.transforms.letterbox`), so each box is mapped through the same scale and offset,
then projected onto the patch grid as the exact fraction of each patch it covers. A patch half
inside the box counts half, for the mass, the chance and the pointing game alike, so a uniform
map scores exactly chance on all three.

The pieces (`letterbox_geometry`, `box_to_grid`, `mass_share`, `pointing_hit`,
`mean_pairwise_correlation`) are pure functions tested on hand-computed cases.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from parkit.data.transforms import build_transform
from parkit.explain.attention import ExplainError, eval_mode, forward_with_attention, text_to_patch_attention
from parkit.explain.gradcam import gradcam

# Dataset region names (parkit.attributes schemas) -> SynthPAR body_regions boxes. "whole" and
# "carried" attributes have no box of their own and are not measured.
BODY_REGION_OF = {"head": "head", "upper": "torso", "lower": "legs", "feet": "feet"}
BODY_REGIONS = ("head", "torso", "legs", "feet")
METHODS = ("attention", "gradcam")
TARGET_RATIO = 1.5  # issue 13's bar: a region's attributes put >= 1.5x chance inside it
DISTINCT_CORRELATION = 0.9  # and one image's maps are not copies (mean pairwise correlation below this)

Box = Tuple[float, float, float, float]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------

def letterbox_geometry(width: int, height: int, size: int) -> Tuple[float, float, int, int]:
    """How `letterbox` places a `width` x `height` image in a `size` x `size` square.

    Mirrors the arithmetic of `parkit.data.transforms.letterbox` (a test checks both agree on
    real images): the image is resized to (nw, nh) and pasted at ((size - nw) // 2, (size - nh) // 2).

    Returns:
        (scale_x, scale_y, offset_x, offset_y): an original pixel coordinate x maps to
        offset_x + x * scale_x in the square (likewise y).
    """
    w, h, size = int(width), int(height), int(size)
    if w < 1 or h < 1 or size < 1:
        raise ExplainError(f"letterbox_geometry needs positive sizes, got {width}x{height} into {size}")
    if h >= w:
        nw, nh = max(1, min(size, round(w * size / h))), size
    else:
        nw, nh = size, max(1, min(size, round(h * size / w)))
    return nw / w, nh / h, (size - nw) // 2, (size - nh) // 2


def box_to_grid(box: Box, image_size: Sequence[int], input_size: int, grid: Sequence[int]) -> np.ndarray:
    """The fraction of each patch that a box of the original image covers, after letterboxing.

    Args:
        box: (x0, y0, x1, y1) in original-image pixels, x1/y1 exclusive (as `body_regions`).
        image_size: (width, height) of the original image.
        input_size: side of the square model input.
        grid: (rows, cols) patch grid over the square input.

    Returns:
        (rows, cols) float64 in [0, 1]; its mean is the box's area share of the grid.
    """
    sx, sy, ox, oy = letterbox_geometry(image_size[0], image_size[1], input_size)
    rows, cols = (int(v) for v in grid)
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ExplainError(f"box {box} has x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1)")
    cover_x = _interval_cover(ox + x0 * sx, ox + x1 * sx, input_size / cols, cols)  # (cols,)
    cover_y = _interval_cover(oy + y0 * sy, oy + y1 * sy, input_size / rows, rows)  # (rows,)
    return np.outer(cover_y, cover_x)  # separable: a box is an interval in x times one in y


def _interval_cover(lo: float, hi: float, step: float, n: int) -> np.ndarray:
    """Fraction of each cell [k * step, (k + 1) * step) covered by [lo, hi)."""
    edges = np.arange(n + 1) * step
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return overlap / step


def mass_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside a (soft) mask.

    Args:
        maps: (..., rows, cols) non-negative maps.
        mask: (rows, cols) coverage in [0, 1], or (..., rows, cols) one per map.

    Returns:
        (...) sum(map * mask) / sum(map); NaN where a map has no mass (e.g. an all-zero Grad-CAM).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if (maps < 0).any():
        raise ExplainError("mass_share needs non-negative maps (attention or ReLU'd Grad-CAM)")
    total = maps.sum(axis=(-2, -1))
    inside = (maps * np.asarray(mask, dtype=np.float64)).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def pointing_hit(maps: np.ndarray, mask: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Pointing game: how far each map's peak lies inside a (soft) mask.

    The score is the mask's coverage of the peak patch (1 inside, 0 outside, the covered fraction
    on the box edge). Where several patches tie for the peak (within `rtol` of the maximum) their
    coverages are averaged, so a flat map scores the mask's mean, i.e. exactly chance.

    Args:
        maps: (..., rows, cols).
        mask: (rows, cols) or (..., rows, cols) coverage in [0, 1].
        rtol: relative tolerance for ties.

    Returns:
        (...) scores in [0, 1]; NaN where a map is all zero.
    """
    maps = np.asarray(maps, dtype=np.float64)
    mask = np.broadcast_to(np.asarray(mask, dtype=np.float64), maps.shape)
    peak = maps.max(axis=(-2, -1), keepdims=True)
    ties = maps >= peak - rtol * np.abs(peak)
    score = (ties * mask).sum(axis=(-2, -1)) / ties.sum(axis=(-2, -1))
    return np.where(np.abs(peak[..., 0, 0]) > 0, score, np.nan)


def mean_pairwise_correlation(maps: np.ndarray) -> float:
    """Mean Pearson correlation over all pairs of one image's maps.

    Args:
        maps: (A, rows, cols) the attribute maps of one image.

    Returns:
        The mean over the A * (A - 1) / 2 pairs of the correlation across patches; constant maps
        (no defined correlation) are left out; NaN when fewer than two maps are left.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    flat = flat[flat.std(axis=1) > 1e-12]
    if len(flat) < 2:
        return float("nan")
    corr = np.corrcoef(flat)  # (A', A')
    upper = np.triu_indices(len(flat), k=1)
    return float(corr[upper].mean())


# ---------------------------------------------------------------------------------------------
# Regions of SynthPAR images
# ---------------------------------------------------------------------------------------------

def synthpar_boxes(dataset, rows: Sequence[int], labels: Optional[np.ndarray] = None) -> list:
    """The `body_regions` boxes of SynthPAR images, re-derived from the generator's seeds.

    `make_synthpar` renders image `i` of identity `k` with scene seed `(seed, 19, i)` and
    appearance seed `(seed, 18, k)`; the same arguments to `body_regions` give its boxes.

    Args:
        dataset: a SynthPAR `PARDataset` (from `load_synthpar` / `profile_dataset`).
        rows: row indices into `dataset`.
        labels: (len(dataset), A) the drawn labels; default `dataset.labels` (pass the clean
            labels when the dataset has label noise: boxes depend on what was drawn).

    Returns:
        One dict per row: {"head", "torso", "legs", "feet", "body"} -> (x0, y0, x1, y1).
    """
    from parkit.data.synthpar import body_regions

    info = getattr(dataset, "info", None) or {}
    if not str(getattr(dataset, "name", "")).startswith("SynthPAR") or "seed" not in info:
        raise ExplainError(
            f"localization needs SynthPAR, whose renderer knows where each attribute is drawn; got "
            f"{getattr(dataset, 'name', type(dataset).__name__)}. Load one with "
            f"parkit.profiles.profile_dataset(get_profile('demo')) or parkit.data.load_synthpar(folder)")
    if dataset.identities is None:
        raise ExplainError(f"{dataset.name} at {dataset.root} has no identities; regenerate it with make_synthpar")
    labels = dataset.labels if labels is None else labels
    seed, size = int(info["seed"]), tuple(int(v) for v in info["image_size"])
    out = []
    for row in rows:
        stem = Path(dataset.image_paths[row]).stem
        if not stem.isdigit():
            raise ExplainError(f"{dataset.image_paths[row]} is not a SynthPAR image name (NNNNNN.png); "
                               f"regenerate the folder with make_synthpar")
        attrs = {a: int(v) for a, v in zip(dataset.attributes, labels[row])}
        out.append(body_regions(attrs, seed=(seed, 19, int(stem)), image_size=size,
                                appearance_seed=(seed, 18, int(dataset.identities[row]))))
    return out


def _drawn_labels(dataset) -> np.ndarray:
    """The labels that were drawn: the clean ones when the folder has label noise."""
    info = dataset.info or {}
    if float(info.get("label_noise", 0) or 0) > 0 and info.get("labels") != "clean":
        from parkit.data.synthpar import load_synthpar

        clean = load_synthpar(dataset.root, labels="clean", require_images=False)
        if len(clean) != len(dataset):
            raise ExplainError(f"{dataset.name} has {len(dataset)} rows but {dataset.root} has {len(clean)}: "
                               f"pass the full SynthPAR dataset, not a subset, when it has label noise")
        return clean.labels
    return dataset.labels


# ---------------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------------

def _grid_maps(model: nn.Module, images: torch.Tensor, method: str, attributes: Sequence[int]) -> np.ndarray:
    """(B, k, rows, cols) maps of the attributes `attributes` on the patch grid, unnormalised."""
    with eval_mode(model), torch.no_grad():
        view = forward_with_attention(model, images)
    grid = tuple(int(v) for v in view.patch_grid)
    if method == "attention":
        if view.attention is None:
            raise ExplainError(f"{type(model).__name__} has no MM-former attention (built with "
                               f"use_mm_former=False?); use method='gradcam'")
        maps = text_to_patch_attention(view.attention, view.layout, grid)  # (B, A, rows, cols)
        if maps.shape[1] != view.logits.shape[1]:
            raise ExplainError(f"token_layout['text'] has {maps.shape[1]} tokens but the model predicts "
                               f"{view.logits.shape[1]} attributes")
        return maps[:, list(attributes)].cpu().numpy()
    # Grad-CAM at the grid's own size: bilinear resampling to the same size is the identity.
    return gradcam(model, images, list(attributes), size=grid, normalize=False)


def _attribute_record(dataset, j: int, maps: np.ndarray, masks: dict, keep: Optional[np.ndarray]) -> dict:
    """One row of `localization`: attribute `j`'s maps (N, rows, cols) against its region's masks."""
    region = dataset.regions[j]
    name = BODY_REGION_OF[region]
    keep = np.ones(len(maps), dtype=bool) if keep is None else keep
    share = mass_share(maps[keep], masks[name][keep])  # (n,)
    hit = pointing_hit(maps[keep], masks[name][keep])
    chance = masks[name][keep].mean(axis=(-2, -1))
    # What a map spread evenly over the person (and nothing else) would put in the region.
    body_chance = masks[name][keep].sum(axis=(-2, -1)) / masks["body"][keep].sum(axis=(-2, -1))
    ok = ~np.isnan(share)  # an all-zero Grad-CAM has no mass to place
    mean_share, mean_chance, mean_body = _mean(share[ok]), _mean(chance[ok]), _mean(body_chance[ok])
    return {"attribute": dataset.attributes[j], "region": region, "body_region": name, "n": int(ok.sum()),
            "share": mean_share, "chance": mean_chance, "ratio": _ratio(mean_share, mean_chance),
            "hit_rate": _mean(hit[ok]), "hit_chance": mean_chance,
            "body_chance": mean_body, "ratio_body": _ratio(mean_share, mean_body)}


def localization(model: nn.Module, dataset, split: str = "test", method: str = "attention", limit: Optional[int] = 120,
                 positives_only: bool = True, device: Union[str, torch.device, None] = None,
                 batch_size: int = 32) -> pd.DataFrame:
    """Per attribute with a body region: how much of its map falls inside that region, vs chance.

    Args:
        model: a parkit PromptPAR (or a model with the generic explain hook, see
            `parkit.explain.attention`) with `image_size` and `normalization`, in its final state.
        dataset: a SynthPAR `PARDataset` (the renderer's boxes say where each attribute is).
        split: split whose first `limit` images are measured.
        method: "attention" (MM-former text-token -> patch attention, head-averaged, last block)
            or "gradcam" (Grad-CAM of the attribute logit on the patch tokens).
        limit: at most this many images of the split (None: all).
        positives_only: measure an attribute only on images that show it (drawn label 1); False
            measures it on every image.
        device: where the images go; the model must already be there (default: its device).
        batch_size: images per forward pass.

    Returns:
        DataFrame, one row per attribute with a body region, in dataset order, columns:
        attribute, region (the dataset's name: head/upper/lower/feet), body_region (the SynthPAR
        box: head/torso/legs/feet), n (images measured), share (mean mass share inside the
        region), chance (the region's mean area share of the grid over the same images), ratio
        (share / chance), hit_rate (pointing game), hit_chance (= chance), body_chance (the
        region's area share of the person's whole-body box) and ratio_body (share / body_chance).
        Most of the grid is letterbox bar and background (on the 64 x 128 SynthPAR the body box
        covers about 32 % of it), so a map spread evenly over the person, the same for every
        attribute, already scores a ratio of about 3.1-3.3 for every region; its ratio_body is
        about 1, which tells attribute-specific maps from one blob for all. `df.attrs` holds
        method, split, n_images and mean_pairwise_correlation: the per-image mean pairwise
        correlation of the maps of all attributes in the table, averaged over images.
    """
    if method not in METHODS:
        raise ExplainError(f"method must be one of {METHODS}, got {method!r}")
    try:  # the model contract's input description (parkit.model.contract.PARModel)
        input_size, normalization = int(model.image_size), model.normalization
    except AttributeError as exc:
        raise ExplainError(f"{type(model).__name__} has no {exc.name!r}; localization builds the model's "
                           f"evaluation transform from model.image_size and model.normalization") from None
    regions = list(dataset.regions)
    measured = [j for j, r in enumerate(regions) if r in BODY_REGION_OF]
    if not measured:
        raise ExplainError(f"{dataset.name}'s attributes have no body region among {sorted(BODY_REGION_OF)}")
    rows = np.asarray(dataset.split_indices(split))
    rows = rows[:limit] if limit is not None else rows
    if len(rows) == 0:
        raise ExplainError(f"split {split!r} of {dataset.name} is empty")
    labels = _drawn_labels(dataset)
    boxes = synthpar_boxes(dataset, rows, labels)
    image_size = tuple(int(v) for v in dataset.info["image_size"])
    tf = build_transform(train=False, image_size=input_size, normalization=normalization)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))

    maps = []
    for start in range(0, len(rows), int(batch_size)):
        batch = rows[start:start + int(batch_size)]
        images = torch.stack([tf(Image.open(dataset.image_paths[i]).convert("RGB")) for i in batch])
        maps.append(_grid_maps(model, images.to(device), method, measured))
    maps = np.concatenate(maps).astype(np.float64)  # (N, k, rows, cols)
    grid = maps.shape[-2:]
    masks = {name: np.stack([box_to_grid(b[name], image_size, input_size, grid) for b in boxes])
             for name in (*BODY_REGIONS, "body")}  # name -> (N, rows, cols)

    records = [_attribute_record(dataset, j, maps[:, k], masks, labels[rows, j] == 1 if positives_only else None)
               for k, j in enumerate(measured)]
    df = pd.DataFrame.from_records(records)
    correlations = np.array([mean_pairwise_correlation(m) for m in maps])
    df.attrs.update(method=method, split=split, n_images=int(len(rows)), positives_only=bool(positives_only),
                    mean_pairwise_correlation=_mean(correlations[~np.isnan(correlations)]))
    return df


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _ratio(share: float, chance: float) -> float:
    return share / chance if chance > 0 else float("nan")


def region_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per body region: the mean ratio to chance of its attributes, and whether it reaches 1.5x.

    Args:
        df: a `localization` table.

    Returns:
        DataFrame with one row per body region present (head, torso, legs, feet order): method,
        body_region, attributes (names), mean_ratio (mean of the attributes' ratios), min_ratio,
        reaches_1_5x, mean_ratio_body (mean of ratio_body, when the table has it), hit_rate and
        hit_chance (means over the attributes), and
        mean_pairwise_correlation: the table's image-level value (all attributes of an image,
        not per region), repeated so the frame stands alone as a CSV.
    """
    missing = {"attribute", "body_region", "ratio", "hit_rate", "hit_chance"} - set(df.columns)
    if missing:
        raise ExplainError(f"region_summary needs a localization() table; this one lacks {sorted(missing)}")
    out = []
    for name in BODY_REGIONS:
        part = df[(df["body_region"] == name) & (df["n"] > 0)] if "n" in df else df[df["body_region"] == name]
        if part.empty:
            continue
        mean_ratio = float(part["ratio"].mean())
        out.append({
            "method": df.attrs.get("method"), "body_region": name, "attributes": ", ".join(part["attribute"]),
            "mean_ratio": mean_ratio, "min_ratio": float(part["ratio"].min()),
            "reaches_1_5x": bool(mean_ratio >= TARGET_RATIO),
            "mean_ratio_body": float(part["ratio_body"].mean()) if "ratio_body" in part else float("nan"),
            "hit_rate": float(part["hit_rate"].mean()), "hit_chance": float(part["hit_chance"].mean()),
            "mean_pairwise_correlation": df.attrs.get("mean_pairwise_correlation", float("nan")),
        })
    summary = pd.DataFrame.from_records(out)
    summary.attrs.update(df.attrs)
    return summary


def plot_localization(tables, title: Optional[str] = None):
    """Bar chart of each attribute's ratio to chance, one panel per method, with the 1.0 and 1.5 lines.

    Args:
        tables: a `localization` table, or a {method: table} mapping (e.g. attention and Grad-CAM).
        title: figure title.

    Returns:
        A matplotlib Figure; bars are coloured by body region (`parkit.plots.REGION_COLORS`),
        attributes with no image measured are left blank.
    """
    import matplotlib.pyplot as plt

    from parkit.plots import REGION_COLORS

    if isinstance(tables, pd.DataFrame):
        tables = {tables.attrs.get("method", "map"): tables}
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.6), squeeze=False, sharey=True)
    for ax, (method, df) in zip(axes[0], tables.items()):
        x = np.arange(len(df))
        ratio = df["ratio"].to_numpy(dtype=float)
        ax.bar(x, np.nan_to_num(ratio), color=[REGION_COLORS.get(r, "grey") for r in df["region"]])
        if "body_chance" in df:  # what one even blob over the whole person would score
            blob = (df["body_chance"] / df["chance"]).to_numpy(dtype=float)
            ax.scatter(x, blob, marker="_", s=160, color="black", zorder=3, label="even blob over the person")
        ax.axhline(1.0, color="black", lw=1, ls="--", label="chance (1.0x)")
        ax.axhline(TARGET_RATIO, color="tab:red", lw=1, ls=":", label=f"target ({TARGET_RATIO}x)")
        ax.set_xticks(x)
        ax.set_xticklabels(df["attribute"], rotation=60, ha="right", fontsize=8)
        corr = df.attrs.get("mean_pairwise_correlation", float("nan"))
        ax.set_title(f"{method}: mean pairwise corr. {corr:.3f}", fontsize=10)
        ax.set_ylabel("share inside region / chance")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below the panels
    return fig
