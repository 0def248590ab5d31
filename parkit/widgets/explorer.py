"""The interactive attribute explorer: one pedestrian at a time, every attribute's verdict, and why.

`AttributeExplorer(model, dataset, split="test")` shows, for the chosen image,

- the letterboxed model input with a heat map of the chosen attribute (MM-former attention or
  Grad-CAM, `parkit.explain`) or the four part-token stripes (spec §4) overlaid;
- a bar chart of every attribute's probability against the decision threshold (spec §3.5 step 8:
  positive when p > threshold), ground truth marked, errors coloured (false positives and false
  negatives in distinct colours, unknown labels greyed out); it is HTML, so a threshold change
  redraws it at once (a matplotlib redraw took 0.2-0.6 s here); `probability_bar_figure` draws
  the same chart as a static figure;
- a threshold slider that re-colours instantly: probabilities are computed once and cached, so no
  control other than an upload re-runs the model;
- a filter that keeps only the images where the chosen attribute (or any attribute) is wrong;
- an upload box to explain an image of your own (no ground truth).

The callbacks only glue controls to the pure functions `classify_errors`, `filter_wrong`,
`bar_colors`, `summarize_errors` and `probability_bars_html`, which the tests check on hand-made
arrays. The picture is PNG bytes in an `ipywidgets.Image`, the bars and status line `HTML`
widgets (no Output widget: see the field notes on Output races).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from parkit.data import PARTorchDataset
from parkit.data.transforms import build_transform
from parkit.explain import attribute_attention_maps, gradcam
from parkit.explain.plotting import REGION_COLORS, array_to_png, draw_stripes, overlay, to_display_image
from parkit.model.config import PromptPARConfig
from parkit.model.contract import PARModel
from parkit.model.promptpar import PromptPAR
from parkit.model.geometry import stripe_rows
from parkit.train.evaluation import forward_batches, predict_logits

DEFAULT_THRESHOLD = 0.45  # spec §3.5 step 8 / §10: positive when p > 0.45

OUTCOMES = ("TP", "TN", "FP", "FN", "ignored")
OUTCOME_COLORS = {
    "TP": "#2ca02c",       # green: predicted positive, truly positive
    "TN": "#c7c7c7",       # light grey: predicted negative, truly negative
    "FP": "#d62728",       # red: predicted positive, truly negative
    "FN": "#ff7f0e",       # orange: predicted negative, truly positive
    "ignored": "#f0f0f0",  # near white: label unknown (RAP's 2), not scored
}
FILTERS = (
    ("all images", "all"),
    ("attribute wrong", "wrong"),
    ("attribute false positive", "FP"),
    ("attribute false negative", "FN"),
    ("any attribute wrong", "any"),
)
METHODS = (("attention", "attention"), ("Grad-CAM", "gradcam"), ("stripes", "stripes"), ("none", "none"))
METHOD_TIPS = {"attention": "MM-former attention from the attribute's text token to the patches",
               "gradcam": "Grad-CAM of the attribute's logit", "stripes": "the image band each part token sees",
               "none": "the image alone"}


# ---------------------------------------------------------------------------------------------
# Pure functions the callbacks use
# ---------------------------------------------------------------------------------------------

def classify_errors(gt, probs, threshold: float = DEFAULT_THRESHOLD, ignore=None) -> np.ndarray:
    """The outcome of every (image, attribute) prediction.

    Args:
        gt: ground truth in {0, 1}, any shape (e.g. (N, A) or (A,)).
        probs: probabilities of the same shape.
        threshold: an attribute is predicted positive when p > threshold (strict, as the metric code).
        ignore: optional bool mask of the same shape; True marks unknown labels.

    Returns:
        A str array of the same shape with "TP", "TN", "FP", "FN" or "ignored".
    """
    gt = np.asarray(gt)
    probs = np.asarray(probs, dtype=np.float64)
    if gt.shape != probs.shape:
        raise ValueError(f"ground truth {gt.shape} and probabilities {probs.shape} differ in shape")
    pred = probs > threshold
    pos = gt == 1
    out = np.where(pred, np.where(pos, "TP", "FP"), np.where(pos, "FN", "TN")).astype("<U7")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask {ignore.shape} does not match ground truth {gt.shape}")
        out[ignore] = "ignored"
    return out


def filter_wrong(gt, probs, attr: Optional[int], threshold: float = DEFAULT_THRESHOLD, kind: str = "wrong",
                 ignore=None) -> np.ndarray:
    """Positions (rows of `gt`) of the images that a filter keeps.

    Args:
        gt: (N, A) ground truth in {0, 1}.
        probs: (N, A) probabilities.
        attr: the attribute column the filter looks at (unused for "all" and "any").
        threshold: decision threshold (p > threshold is positive).
        kind: "all" (every image), "wrong" (FP or FN on `attr`), "FP", "FN" (on `attr`), or
            "any" (wrong on at least one attribute).
        ignore: optional (N, A) unknown-label mask; unknown labels are never wrong.

    Returns:
        int64 array of row positions, ascending.
    """
    outcomes = classify_errors(gt, probs, threshold, ignore)
    if outcomes.ndim != 2:
        raise ValueError(f"filter_wrong needs (N, A) arrays, got shape {outcomes.shape}")
    if kind == "all":
        keep = np.ones(outcomes.shape[0], dtype=bool)
    elif kind == "any":
        keep = np.isin(outcomes, ("FP", "FN")).any(axis=1)
    elif kind in ("wrong", "FP", "FN"):
        if attr is None or not 0 <= int(attr) < outcomes.shape[1]:
            raise ValueError(f"attribute index {attr} is outside 0..{outcomes.shape[1] - 1}")
        col = outcomes[:, int(attr)]
        keep = np.isin(col, ("FP", "FN")) if kind == "wrong" else col == kind
    else:
        raise ValueError(f"unknown filter kind {kind!r}; choose one of {[k for _, k in FILTERS]}")
    return np.flatnonzero(keep).astype(np.int64)


def bar_colors(gt, probs, threshold: float = DEFAULT_THRESHOLD, ignore=None,
               palette: Optional[Dict[str, str]] = None) -> list:
    """The bar colour of each attribute of one image: its outcome's colour (`OUTCOME_COLORS`).

    Args:
        gt: (A,) ground truth of one image, or None for an image without labels (then bars are
            coloured by the prediction alone: positive like TP, negative like TN).
        probs: (A,) probabilities.
        threshold: decision threshold.
        ignore: optional (A,) unknown-label mask.
        palette: outcome -> colour, default `OUTCOME_COLORS`.
    """
    palette = palette or OUTCOME_COLORS
    probs = np.asarray(probs)
    if gt is None:
        return [palette["TP"] if p > threshold else palette["TN"] for p in probs]
    return [palette[o] for o in classify_errors(gt, probs, threshold, ignore)]


def summarize_errors(outcomes: np.ndarray) -> Dict[str, int]:
    """Counts of each outcome in an outcome array (all of `OUTCOMES`, zeros included)."""
    values, counts = np.unique(np.asarray(outcomes), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    return {k: int(found.get(k, 0)) for k in OUTCOMES}


def probability_bar_figure(attribute_names: Sequence[str], probs, gt=None, threshold: float = DEFAULT_THRESHOLD,
                           ignore=None, highlight: Optional[int] = None, regions: Optional[Sequence[str]] = None,
                           title: str = "") -> Figure:
    """Horizontal bars of every attribute's probability, the threshold line, ground truth marked.

    Bars are coloured by outcome (`bar_colors`); a black diamond right of the bar marks a positive
    ground-truth label; the highlighted attribute's name is bold; names take their region colour.
    """
    fig = Figure(figsize=(4.2, max(2.0, 0.19 * len(attribute_names) + 0.9)), dpi=90)
    draw_probability_bars(fig.add_subplot(1, 1, 1), attribute_names, probs, gt, threshold, ignore, highlight,
                          regions, title)
    fig.tight_layout()
    return fig


def draw_probability_bars(ax, attribute_names: Sequence[str], probs, gt=None, threshold: float = DEFAULT_THRESHOLD,
                          ignore=None, highlight: Optional[int] = None, regions: Optional[Sequence[str]] = None,
                          title: str = ""):
    """Draw `probability_bar_figure`'s chart on an existing matplotlib axis."""
    n = len(attribute_names)
    probs = np.asarray(probs, dtype=np.float64)
    colours = bar_colors(gt, probs, threshold, ignore)
    y = np.arange(n)
    ax.barh(y, probs, color=colours, edgecolor="#555555", linewidth=0.4, height=0.75)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.0)
    if gt is not None:
        pos = np.flatnonzero(np.asarray(gt) == 1)
        ax.scatter(np.full(pos.shape, 1.03), pos, marker="D", s=14, color="black", clip_on=False, zorder=3)
    ax.set_yticks(y)
    ax.set_yticklabels(attribute_names, fontsize=7)
    for k, label in enumerate(ax.get_yticklabels()):
        if regions is not None:
            label.set_color(REGION_COLORS.get(regions[k], "black"))
        if highlight is not None and k == highlight:
            label.set_fontweight("bold")
    ax.set_xlim(0, 1)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel("probability", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title or f"threshold {threshold:.2f}", fontsize=9)
    handles = [Patch(color=OUTCOME_COLORS[k], label=k) for k in ("TP", "TN", "FP", "FN")]
    handles.append(Line2D([], [], color="black", marker="D", linestyle="", markersize=4, label="gt = 1"))
    ax.legend(handles=handles, fontsize=6, loc="lower right", framealpha=0.8)
    return ax


def explorer_view_figure(explorer: "AttributeExplorer", pos: Optional[int] = None) -> Figure:
    """A static picture of what the explorer shows: the image with the current explanation drawn
    on it, and every attribute's probability bar against the threshold.

    For notebooks read without a kernel, where the live widget cannot render.

    Args:
        explorer: an `AttributeExplorer`.
        pos: browsed image to draw (default: the one the explorer shows).

    Returns:
        A matplotlib Figure.
    """
    pos = explorer.position if pos is None else int(pos)
    if pos is None:
        raise ValueError("no image passes the explorer's filter; choose another filter or attribute")
    t = float(explorer.threshold.value)
    attr = explorer.attribute.value
    counts = summarize_errors(classify_errors(explorer.gt[pos], explorer.probs[pos], t, explorer.ignore[pos]))
    n = len(explorer.attributes)
    fig = Figure(figsize=(7.6, max(3.2, 0.19 * n + 1.0)), dpi=90)
    grid = fig.add_gridspec(1, 2, width_ratios=(1, 1.5))
    ax_img = fig.add_subplot(grid[0, 0])
    ax_img.imshow(explorer.render_image(pos))
    ax_img.axis("off")
    ax_img.set_title(f"{explorer.attributes[attr]}: {explorer.method.label}\n"
                     f"(dataset row {explorer.rows[pos]})", fontsize=9)
    draw_probability_bars(fig.add_subplot(grid[0, 1]), explorer.attributes, explorer.probs[pos], explorer.gt[pos],
                          t, explorer.ignore[pos], highlight=attr, regions=explorer.regions,
                          title=f"threshold {t:.2f}: TP {counts['TP']}, FP {counts['FP']}, FN {counts['FN']}")
    fig.suptitle("Attribute explorer, static view", fontsize=10)
    fig.tight_layout()
    return fig


def probability_bars_html(attribute_names: Sequence[str], probs, gt=None, threshold: float = DEFAULT_THRESHOLD,
                          ignore=None, highlight: Optional[int] = None, regions: Optional[Sequence[str]] = None,
                          bar_width: int = 220) -> str:
    """The explorer's bar chart as HTML: one row per attribute, redrawn in microseconds.

    Each row shows the attribute name (region colour, bold when highlighted), a bar of length p
    coloured by outcome (`bar_colors`) with the threshold as a black vertical line, the value,
    a diamond where the ground truth is positive, and "FP"/"FN" spelled out on errors. Rows carry
    `data-outcome` attributes so tests and the browser can read the state back.

    Args:
        attribute_names: the A names.
        probs: (A,) probabilities.
        gt: (A,) ground truth in {0, 1}, or None for an image without labels.
        threshold: decision threshold (p > threshold is positive).
        ignore: optional (A,) unknown-label mask.
        highlight: index of the selected attribute.
        regions: body region of each attribute (name colour from `REGION_COLORS`).
        bar_width: pixel width of a full (p = 1) bar.
    """
    import html

    probs = np.asarray(probs, dtype=np.float64)
    colours = bar_colors(gt, probs, threshold, ignore)
    if gt is None:
        outcomes = np.where(probs > threshold, "pos", "neg")
    else:
        outcomes = classify_errors(gt, probs, threshold, ignore)
    t_px = int(round(threshold * bar_width))
    rows = []
    for i, name in enumerate(attribute_names):
        name_colour = REGION_COLORS.get(regions[i], "#000000") if regions is not None else "#000000"
        weight = "bold" if highlight is not None and i == highlight else "normal"
        width = int(round(float(np.clip(probs[i], 0.0, 1.0)) * bar_width))
        marker = "&#9670;" if gt is not None and int(gt[i]) == 1 else ""
        tag = outcomes[i] if outcomes[i] in ("FP", "FN") else ""
        rows.append(
            f"<tr data-outcome='{outcomes[i]}'>"
            f"<td style='color:{name_colour};font-weight:{weight};padding:0 6px 0 0;text-align:right;"
            f"white-space:nowrap'>{html.escape(str(name))}</td>"
            f"<td style='padding:0'><div style='position:relative;width:{bar_width}px;height:11px;"
            f"background:#fafafa;border:1px solid #dddddd'>"
            f"<div style='width:{width}px;height:11px;background:{colours[i]}'></div>"
            f"<div style='position:absolute;left:{t_px}px;top:-2px;width:1px;height:15px;background:#000'>"
            f"</div></div></td>"
            f"<td style='padding:0 4px;font-family:monospace'>{probs[i]:.2f}</td>"
            f"<td style='padding:0 2px'>{marker}</td>"
            f"<td style='padding:0 2px;color:{OUTCOME_COLORS.get(tag, '#000')};font-weight:bold'>{tag}</td></tr>")
    legend = " ".join(f"<span style='background:{OUTCOME_COLORS[k]};padding:0 5px'>{k}</span>"
                      for k in ("TP", "TN", "FP", "FN"))
    return (f"<div class='parkit-bars' style='font-size:11px;line-height:13px'>"
            f"<table style='border-collapse:collapse'>{''.join(rows)}</table>"
            f"<div style='margin-top:4px'>{legend} &#9670; = ground truth positive, "
            f"| = threshold {threshold:.2f}</div></div>")


# ---------------------------------------------------------------------------------------------
# The widget
# ---------------------------------------------------------------------------------------------

class AttributeExplorer:
    """Browse a split image by image: attribute probabilities, errors and heat maps.

    Args:
        model: a parkit model (PromptPAR for attention maps; any parkit model for probabilities and
            Grad-CAM needs the explain hook). May be None when `probs` is given; then only the
            image, bars and stripes are shown.
        dataset: the `PARDataset` the images and labels come from.
        split: the split to browse ("test", "val", "train", "trainval", or "all" after `subset`).
        probs: optional precomputed (N, A) probabilities of the split's images (in split order,
            after `max_images`); skips running the model over the split.
        threshold: initial decision threshold.
        device: where the model runs; default its current device.
        max_images: browse only the first `max_images` images of the split.
        batch_size: batch size when computing the split's probabilities.
        image_size: side of the square input when there is no model (else `model.image_size`).
        normalization: input normalisation when there is no model (else `model.normalization`).
        method: initial explanation: "attention", "gradcam", "stripes" or "none".
        cache_size: heat maps kept in memory (least recently used are dropped).

    Attributes:
        widget: the `ipywidgets.VBox` to display (the explorer also displays itself).
        probs, gt, ignore: (N, A) cached arrays for the browsed images.
        visible: positions (into the browsed images) the current filter keeps.
    """

    def __init__(self, model=None, dataset=None, split: str = "test", *, probs=None,
                 threshold: float = DEFAULT_THRESHOLD, device: Union[str, torch.device, None] = None,
                 max_images: Optional[int] = None, batch_size: int = 32, image_size=None,
                 normalization: Optional[str] = None, method: str = "attention", cache_size: int = 16):
        import ipywidgets as W

        if dataset is None:
            raise ValueError("AttributeExplorer needs a dataset (a PARDataset from parkit.load_dataset)")
        if model is None and probs is None:
            raise ValueError("AttributeExplorer needs a model, or precomputed probs=(N, A) probabilities")
        self.model = model
        self.dataset = dataset
        self.split = split
        self.attributes = list(dataset.attributes)
        self.regions = list(getattr(dataset, "regions", []) or []) or None
        model_attrs = list(model.attributes) if model is not None else []
        if model_attrs and model_attrs != self.attributes:
            raise ValueError(f"the model predicts {len(model_attrs)} attributes that differ from the dataset's "
                             f"{len(self.attributes)} ({dataset.name}); build the model with "
                             f"create_model(..., attributes=dataset.attributes, sentences=dataset.sentences)")
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.image_size = _side(image_size or (model.image_size if model is not None else 224))
        self.normalization = normalization or (model.normalization if model is not None else "official")

        rows = dataset.split_indices(split)
        if max_images is not None:
            rows = rows[: int(max_images)]
        if len(rows) == 0:
            raise ValueError(f"split {split!r} of {dataset.name} is empty; choose another split")
        self.rows = np.asarray(rows, dtype=np.int64)  # dataset rows of the browsed images
        self.gt = dataset.binary_labels[self.rows]  # (N, A) float32 in {0, 1}
        self.ignore = dataset.ignore_mask[self.rows]  # (N, A) bool
        self._images = None  # PARTorchDataset, built on first use
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float32)
            if probs.shape != self.gt.shape:
                raise ValueError(f"probs has shape {probs.shape} but the browsed split has {self.gt.shape} "
                                 f"(images x attributes); compute probs for the same split and max_images")
            self.probs = probs
        else:
            self.probs = self._predict_split(batch_size)
        self._maps: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._cache_size = int(cache_size)
        self._upload = None  # (model input (3, H, W), probs (A,)) of an uploaded image, while one is shown
        self._busy = False

        self._build_widgets(W, threshold, method)
        self.visible = filter_wrong(self.gt, self.probs, 0, self.threshold.value, "all", self.ignore)

        self.image_slider.observe(self._on_image, names="value")
        self.attribute.observe(self._on_attribute, names="value")
        self.threshold.observe(self._on_threshold, names="value")
        self.filter.observe(self._on_filter, names="value")
        self.method.observe(self._on_method, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.refresh()

    def _build_widgets(self, W, threshold: float, method: str) -> None:
        """The controls, the views and their layout (`self.widget`), each with a CSS class."""
        # Controls.
        # 1-based, like the status line: "image k/n" of the images the filter keeps.
        self.image_slider = W.IntSlider(value=1, min=1, max=len(self.rows), description="image",
                                        continuous_update=False, layout=W.Layout(width="360px"))
        self.attribute = W.Dropdown(options=[(name, i) for i, name in enumerate(self.attributes)], value=0,
                                    description="attribute", layout=W.Layout(width="360px"))
        self.threshold = W.FloatSlider(value=float(threshold), min=0.0, max=1.0, step=0.01,
                                       description="threshold", readout_format=".2f", continuous_update=True,
                                       layout=W.Layout(width="360px"))
        self.filter = W.Dropdown(options=FILTERS, value="all", description="show", layout=W.Layout(width="360px"))
        methods = METHODS if self.model is not None else tuple(m for m in METHODS if m[1] in ("stripes", "none"))
        if method not in [m[1] for m in methods]:
            method = methods[0][1]
        self.method = W.ToggleButtons(options=methods, value=method, description="explain",
                                      style={"button_width": "92px"},
                                      tooltips=[METHOD_TIPS[v] for _, v in methods])
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="your image",
                                   disabled=self.model is None)
        # Views.
        self.image_view = W.Image(format="png", layout=W.Layout(width="224px"))
        self.bars_view = W.HTML()
        self.status = W.HTML()
        self.widget = W.VBox([
            W.HBox([W.VBox([self.image_slider, self.filter, self.attribute, self.threshold]),
                    W.VBox([self.method, self.upload])]),
            self.status,
            W.HBox([self.image_view, self.bars_view]),
        ])
        # CSS classes let the browser test (and users' styles) find each part.
        self.widget.add_class("parkit-explorer")
        for w, name in ((self.image_slider, "image"), (self.attribute, "attribute"), (self.threshold, "threshold"),
                        (self.filter, "filter"), (self.method, "method"), (self.upload, "upload"),
                        (self.image_view, "picture"), (self.bars_view, "bars"), (self.status, "status")):
            w.add_class(f"parkit-{name}")

    # -- state ----------------------------------------------------------------------------------

    @property
    def position(self) -> Optional[int]:
        """Position (into the browsed images) of the shown image, None when the filter keeps none."""
        if len(self.visible) == 0:
            return None
        return int(self.visible[min(self.image_slider.value, len(self.visible)) - 1])

    @property
    def current_row(self) -> Optional[int]:
        """Dataset row of the shown image (None for an uploaded image or an empty filter)."""
        pos = self.position
        return None if pos is None or self._upload is not None else int(self.rows[pos])

    def outcomes(self) -> Optional[np.ndarray]:
        """(A,) outcome of every attribute for the shown image at the current threshold."""
        pos = self.position
        if pos is None or self._upload is not None:
            return None
        return classify_errors(self.gt[pos], self.probs[pos], self.threshold.value, self.ignore[pos])

    # -- callbacks (thin: state changes, then one redraw) --------------------------------------

    def _on_image(self, change):
        if not self._busy:
            self._upload = None
            self.refresh()

    def _on_attribute(self, change):
        if not self._busy:
            self._refilter()

    def _on_threshold(self, change):
        if not self._busy:
            self._refilter(redraw_image=False)

    def _on_filter(self, change):
        if not self._busy:
            self._refilter()

    def _on_method(self, change):
        if not self._busy:
            self.refresh(bars=False)

    def _on_upload(self, change):
        files = _uploaded_files(change["new"])
        if not files:
            return
        try:
            self.explain_image(files[0])
        except Exception as err:  # show the reason in the widget instead of a lost traceback
            self.status.value = f"<span style='color:#d62728'>could not explain the upload: {_html(err)}</span>"

    def _refilter(self, redraw_image: bool = True):
        """Recompute the kept images; stay on the shown image when the filter still keeps it."""
        keep_pos = self.position
        self.visible = filter_wrong(self.gt, self.probs, self.attribute.value, self.threshold.value,
                                    self.filter.value, self.ignore)
        self._busy = True
        try:
            hit = np.flatnonzero(self.visible == keep_pos) if keep_pos is not None else []
            new_value = int(hit[0]) + 1 if len(hit) else 1
            changed_image = len(hit) == 0
            self.image_slider.max = max(len(self.visible), 1)
            self.image_slider.value = new_value
            self.image_slider.disabled = len(self.visible) <= 1
        finally:
            self._busy = False
        if self._upload is not None:
            self.refresh(image=redraw_image)
        else:
            self.refresh(image=redraw_image or changed_image)

    # -- rendering ------------------------------------------------------------------------------

    def refresh(self, image: bool = True, bars: bool = True):
        """Redraw the picture, the bar chart and the status line from the current state."""
        if self._upload is not None:
            self._render_upload(image, bars)
            return
        pos = self.position
        t = self.threshold.value
        name = self.attributes[self.attribute.value]
        total_wrong = len(filter_wrong(self.gt, self.probs, self.attribute.value, t, "wrong", self.ignore))
        if pos is None:
            self.status.value = (f"<b>no image</b> passes the filter '{self.filter.label}' for "
                                 f"<i>{_html(name)}</i> at threshold {t:.2f}")
            self.image_view.value = b""
            self.bars_view.value = ""
            return
        outcomes = self.outcomes()
        counts = summarize_errors(outcomes)
        self.status.value = (
            f"<b>image {self.image_slider.value}/{len(self.visible)}</b> (dataset row {self.rows[pos]}) "
            f"&middot; threshold {t:.2f} &middot; this image: "
            f"<span style='color:{OUTCOME_COLORS['FP']}'>FP {counts['FP']}</span>, "
            f"<span style='color:{OUTCOME_COLORS['FN']}'>FN {counts['FN']}</span> &middot; "
            f"<i>{_html(name)}</i>: p={self.probs[pos, self.attribute.value]:.2f}, "
            f"gt={_gt_text(self.gt[pos, self.attribute.value], self.ignore[pos, self.attribute.value])}, "
            f"wrong on {total_wrong}/{len(self.rows)} images")
        if bars:
            self.bars_view.value = probability_bars_html(self.attributes, self.probs[pos], self.gt[pos], t,
                                                         self.ignore[pos], highlight=self.attribute.value,
                                                         regions=self.regions)
        if image:
            self.image_view.value = array_to_png(self.render_image(pos))

    def render_image(self, pos: int) -> np.ndarray:
        """(H, W, 3) uint8 picture of browsed image `pos` with the current explanation drawn on it."""
        return self._explained(self.model_input(pos), ("row", pos))

    def _explained(self, x: torch.Tensor, key: tuple) -> np.ndarray:
        """The model input `x` (3, H, W) as a picture with the selected explanation drawn on it."""
        img = to_display_image(x, self.normalization)
        method = self.method.value
        if method in ("attention", "gradcam"):
            return overlay(img, self._heatmap(key, x, method))
        if method == "stripes":
            return _stripes_image(img, self.grid_rows, self.stripes)
        return img

    def _heatmap(self, key: tuple, x: torch.Tensor, method: str) -> np.ndarray:
        """(H, W) map of the selected attribute; every attribute's map is computed on an image's first
        view (one forward pass) and cached under (*key, method), so switching attributes is instant."""
        cache_key = (*key, method)
        if cache_key not in self._maps:
            batch = x.unsqueeze(0)  # (1, 3, H, W)
            if method == "attention":
                maps = attribute_attention_maps(self.model, batch, device=self.device)[0]  # (A, H, W)
            else:
                maps = gradcam(self.model, batch, list(range(len(self.attributes))), device=self.device)[0]
            # Stored as uint8: a ViT-L/14 PETA image's 35 maps at 224 px take 1.7 MB, not 7 MB.
            self._maps[cache_key] = np.round(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)
            while len(self._maps) > self._cache_size:
                self._maps.popitem(last=False)
        self._maps.move_to_end(cache_key)
        return self._maps[cache_key][self.attribute.value].astype(np.float32) / 255.0

    # -- uploads --------------------------------------------------------------------------------

    def explain_image(self, image) -> np.ndarray:
        """Show an image of your own (path, bytes, or PIL image): probabilities and heat maps, no ground truth.

        Returns:
            (A,) probabilities of the image.
        """
        import io

        from PIL import Image

        if self.model is None:
            raise ValueError("explaining a new image needs a model; this explorer only has precomputed probs")
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(image)))
        elif not hasattr(image, "convert"):
            image = Image.open(image)
        x = self._transform()(image.convert("RGB"))  # (3, H, W)
        logits, = forward_batches(self.model, [x.unsqueeze(0)], device=self.device)
        probs = torch.sigmoid(logits)[0].numpy()  # (A,)
        self._maps = OrderedDict((k, v) for k, v in self._maps.items() if k[0] != "upload")
        self._upload = (x, probs)
        self.refresh()
        return probs

    def _render_upload(self, image: bool, bars: bool):
        x, probs = self._upload
        t = self.threshold.value
        name = self.attributes[self.attribute.value]
        n_pos = int((probs > t).sum())
        self.status.value = (f"<b>your image</b> (no ground truth) &middot; threshold {t:.2f} &middot; "
                             f"{n_pos} attributes predicted positive &middot; <i>{_html(name)}</i>: "
                             f"p={probs[self.attribute.value]:.2f} &middot; move the image slider to go back")
        if bars:
            self.bars_view.value = probability_bars_html(self.attributes, probs, None, t,
                                                         highlight=self.attribute.value, regions=self.regions)
        if image:
            self.image_view.value = array_to_png(self._explained(x, ("upload",)))

    # -- data and model -------------------------------------------------------------------------

    def _transform(self):
        return build_transform(train=False, image_size=self.image_size, normalization=self.normalization)

    def model_input(self, pos: int) -> torch.Tensor:
        """(3, H, W) model input of browsed image `pos` (letterboxed and normalised)."""
        return self._image_dataset()[pos][0]

    def _image_dataset(self):
        """The browsed images as a `PARTorchDataset` with the model's test transform (built once)."""
        if self._images is None:
            if not any(p for p in self.dataset.image_paths):
                raise ValueError(f"{self.dataset.name} has no image paths (annotations only); load it with its "
                                 f"images to browse pictures")
            self._images = PARTorchDataset(self.dataset, self.rows, self._transform())
        return self._images

    def _predict_split(self, batch_size: int) -> np.ndarray:
        """(N, A) probabilities of the browsed images, computed once (the sliders never re-run the model)."""
        logits, *_ = predict_logits(self.model, self._image_dataset(), batch_size=batch_size, device=self.device)
        return torch.sigmoid(torch.from_numpy(logits)).numpy()  # (N, A)

    @property
    def grid_rows(self) -> int:
        """Patch rows of the model's grid (`model.layout`), else the official 16 (spec §3.1)."""
        return int(self.model.layout.grid_rows) if isinstance(self.model, PromptPAR) else 16

    @property
    def stripes(self):
        """Inclusive (first, last) patch rows of each part token's stripe: the model's own
        (`model.stripes`), else the official geometry on `grid_rows` (spec §4.1)."""
        if isinstance(self.model, PromptPAR) and self.model.stripes:
            return [tuple(r) for r in self.model.stripes]
        cfg = self.model.config if isinstance(self.model, PARModel) else PromptPARConfig()  # official geometry
        return list(stripe_rows(self.grid_rows, cfg.div_num, cfg.overlap_row))

    # -- display --------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _stripes_image(img: np.ndarray, grid_rows: int, rows) -> np.ndarray:
    """The image with the part-token stripes drawn on it, as an array (same size as `img`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    h, w = img.shape[:2]
    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img)
    draw_stripes(ax, h, w, grid_rows=grid_rows, rows=rows, legend=False)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _uploaded_files(value) -> list:
    """Contents (bytes) of the files in a FileUpload value (ipywidgets 8 tuple, or 7's dict)."""
    items = value.values() if isinstance(value, dict) else (value or ())
    return [bytes(item["content"]) for item in items]


def _model_device(model) -> torch.device:
    if model is not None:
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _side(size) -> int:
    """The side of the square letterboxed input (spec §11.3), from an int or an (H, W) pair."""
    if isinstance(size, (int, np.integer)):
        return int(size)
    h, w = (int(v) for v in size)
    if h != w:
        raise ValueError(f"image_size {size} is not square; parkit letterboxes images to squares")
    return h


def _gt_text(value, ignored) -> str:
    return "unknown" if ignored else str(int(value))


def _html(text) -> str:
    import html

    return html.escape(str(text))
