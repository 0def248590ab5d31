"""Tests of parkit.widgets: the pure functions behind the explorer, then every control driven in pytest.

No browser and no kernel: ipywidgets observers fire when `.value` is set (field notes). A
counting wrapper around the model proves that the threshold, filter and image controls never
re-run the model over the split (probabilities are cached).
"""
import datetime
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from browser_helpers import OracleModel, StandInModel, make_tiny_dataset
from parkit.explain import attribute_attention_maps
from parkit.widgets import (OUTCOME_COLORS, AttributeExplorer, bar_colors, classify_errors, filter_wrong,
                            probability_bar_figure, probability_bars_html, summarize_errors)

ATTRS = ["Female", "Hat", "Backpack"]


# --- pure functions -----------------------------------------------------------------------------

def test_classify_errors_by_hand():
    gt = np.array([[1, 0, 1, 0, 1]])
    probs = np.array([[0.9, 0.9, 0.2, 0.1, 0.45]])
    out = classify_errors(gt, probs, 0.45)
    # p == threshold is negative: the rule is p > threshold (spec §3.5 step 8).
    assert out.tolist() == [["TP", "FP", "FN", "TN", "FN"]]
    ignore = np.array([[False, True, False, False, False]])
    assert classify_errors(gt, probs, 0.45, ignore)[0, 1] == "ignored"
    assert classify_errors(gt, probs, 0.05).tolist() == [["TP", "FP", "TP", "FP", "TP"]]
    with pytest.raises(ValueError, match="differ in shape"):
        classify_errors(gt, probs[:, :3])


def test_filter_wrong_every_kind():
    gt = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.8, 0.9], [0.2, 0.9], [0.1, 0.2]])
    # attribute 0: TP, FP, FN, TN; attribute 1: TN, FP, TP, FN
    assert filter_wrong(gt, probs, 0, 0.5, "wrong").tolist() == [1, 2]
    assert filter_wrong(gt, probs, 0, 0.5, "FP").tolist() == [1]
    assert filter_wrong(gt, probs, 0, 0.5, "FN").tolist() == [2]
    assert filter_wrong(gt, probs, 1, 0.5, "wrong").tolist() == [1, 3]
    assert filter_wrong(gt, probs, None, 0.5, "any").tolist() == [1, 2, 3]
    assert filter_wrong(gt, probs, None, 0.5, "all").tolist() == [0, 1, 2, 3]
    ignore = np.zeros_like(gt, dtype=bool)
    ignore[1, 0] = True  # an unknown label is never an error
    assert filter_wrong(gt, probs, 0, 0.5, "wrong", ignore).tolist() == [2]
    # Lower the threshold: row 3's attribute-0 prob 0.1 becomes positive -> FP.
    assert filter_wrong(gt, probs, 0, 0.05, "FP").tolist() == [1, 3]
    with pytest.raises(ValueError, match="unknown filter"):
        filter_wrong(gt, probs, 0, 0.5, "bogus")
    with pytest.raises(ValueError, match="outside"):
        filter_wrong(gt, probs, 5, 0.5, "wrong")


def test_bar_colors_and_summary():
    gt = np.array([1, 0, 1, 0])
    probs = np.array([0.9, 0.9, 0.2, 0.1])
    colours = bar_colors(gt, probs, 0.45)
    assert colours == [OUTCOME_COLORS[k] for k in ("TP", "FP", "FN", "TN")]
    assert len(set(OUTCOME_COLORS[k] for k in ("TP", "TN", "FP", "FN"))) == 4  # FP / FN distinct
    assert bar_colors(None, probs, 0.45) == [OUTCOME_COLORS["TP"]] * 2 + [OUTCOME_COLORS["TN"]] * 2
    counts = summarize_errors(classify_errors(gt, probs, 0.45))
    assert counts == {"TP": 1, "TN": 1, "FP": 1, "FN": 1, "ignored": 0}


def test_probability_bar_figure_draws_outcomes_and_threshold():
    fig = probability_bar_figure(ATTRS, [0.9, 0.2, 0.6], gt=[1, 1, 0], threshold=0.3, highlight=1,
                                 regions=["whole", "head", "carried"])
    ax = fig.axes[0]
    bars = ax.patches[:3]
    to_hex = lambda rgba: "#%02x%02x%02x" % tuple(int(round(v * 255)) for v in rgba[:3])  # noqa: E731
    assert [to_hex(b.get_facecolor()) for b in bars] == [OUTCOME_COLORS["TP"], OUTCOME_COLORS["FN"],
                                                        OUTCOME_COLORS["FP"]]
    assert [round(b.get_width(), 2) for b in bars] == [0.9, 0.2, 0.6]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(0.3)  # threshold line
    assert ax.get_yticklabels()[1].get_fontweight() == "bold"


def _outcomes_in(html):
    return re.findall(r"data-outcome='(\w+)'", html)


def test_probability_bars_html_encodes_outcomes_threshold_and_truth():
    html = probability_bars_html(ATTRS, [0.9, 0.2, 0.6], gt=[1, 1, 0], threshold=0.3, highlight=1,
                                 regions=["whole", "head", "carried"], bar_width=200)
    assert _outcomes_in(html) == ["TP", "FN", "FP"]
    assert html.count("&#9670;") == 2 + 1  # two positive labels + the legend's diamond
    assert "left:60px" in html  # threshold 0.3 of a 200-px bar
    assert "width:180px;height:11px;background:" + OUTCOME_COLORS["TP"] in html  # p = 0.9 bar
    assert "font-weight:bold" in html.split("</tr>")[1].split("</td>")[0]  # the highlighted name
    unlabeled = probability_bars_html(ATTRS, [0.9, 0.2, 0.6], gt=None, threshold=0.5)
    assert _outcomes_in(unlabeled) == ["pos", "neg", "pos"]
    assert "&#9670;" not in unlabeled.split("<div style='margin-top")[0]


# --- the widget ---------------------------------------------------------------------------------

class CountingModel(torch.nn.Module):
    """Wraps a model and counts forward calls (to prove the sliders do not re-run it)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.attributes = inner.attributes
        self.image_size = inner.image_size
        self.normalization = inner.normalization
        self.config = inner.config
        self.calls = 0

    def forward(self, images, **kw):
        self.calls += 1
        return self.inner(images, **kw)


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path / "tiny", n=12, attributes=ATTRS)


@pytest.fixture()
def explorer(tiny):
    torch.manual_seed(0)
    model = CountingModel(StandInModel(ATTRS, image_size=(32, 32), patch=8))
    return AttributeExplorer(model, tiny, split="test", threshold=0.45)


def test_probabilities_are_the_models(explorer, tiny):
    rows = tiny.split_indices("test")
    assert explorer.rows.tolist() == rows.tolist()
    assert explorer.probs.shape == (len(rows), len(ATTRS))
    x = torch.stack([explorer.model_input(i) for i in range(len(rows))])
    assert x.shape == (len(rows), 3, 32, 32)
    explorer.model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(explorer.model.inner(x).logits).numpy()
    np.testing.assert_allclose(explorer.probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(explorer.gt, tiny.binary_labels[rows])


def test_threshold_slider_recolours_without_running_the_model(explorer):
    explorer.threshold.value = 0.45
    calls = explorer.model.calls
    image_png = explorer.image_view.value
    seen_bars = set()
    for t in np.round(np.linspace(0.0, 1.0, 11), 2):
        explorer.threshold.value = float(t)
        pos = explorer.position
        expected = summarize_errors(
            classify_errors(explorer.gt[pos], explorer.probs[pos], t, explorer.ignore[pos]))
        assert f"threshold {t:.2f}" in explorer.status.value
        assert f"FP {expected['FP']}</span>" in explorer.status.value
        assert f"FN {expected['FN']}</span>" in explorer.status.value
        assert summarize_errors(explorer.outcomes()) == expected
        assert _outcomes_in(explorer.bars_view.value) == explorer.outcomes().tolist()
        seen_bars.add(explorer.bars_view.value)
    assert explorer.model.calls == calls, "the threshold must not re-run the model"
    assert explorer.image_view.value == image_png, "the picture does not depend on the threshold"
    assert len(seen_bars) > 1, "the bar chart must change as the threshold moves"
    # At threshold 0 every labelled negative is a false positive; at 1 every positive is missed.
    explorer.threshold.value = 0.0
    assert set(explorer.outcomes()) <= {"TP", "FP", "ignored"}
    explorer.threshold.value = 1.0
    assert set(explorer.outcomes()) <= {"TN", "FN", "ignored"}


def test_image_slider_walks_every_image(explorer):
    pngs = []
    assert (explorer.image_slider.min, explorer.image_slider.max) == (1, len(explorer.rows))
    for v in range(1, explorer.image_slider.max + 1):
        explorer.image_slider.value = v
        assert explorer.current_row == explorer.rows[v - 1]
        assert f"image {v}/{len(explorer.rows)}</b> (dataset row {explorer.rows[v - 1]})" in explorer.status.value
        pngs.append(explorer.image_view.value)
    assert len(set(pngs)) == len(pngs), "each image must render differently"


def test_attribute_dropdown_changes_the_heat_map(explorer):
    explorer.method.value = "attention"
    pngs = []
    for i, name in enumerate(ATTRS):
        explorer.attribute.value = i
        assert f"<i>{name}</i>" in explorer.status.value
        assert f"p={explorer.probs[explorer.position, i]:.2f}" in explorer.status.value
        pngs.append(explorer.image_view.value)
    assert len(set(pngs)) == len(ATTRS)


def test_attention_overlay_follows_the_attribute(tiny):
    # With the oracle, attribute i's attention is on one patch: the red channel of the overlay peaks there.
    targets = [0, 15, 9]  # top-left, bottom-right, (2, 1) of the 4x4 grid
    model = OracleModel(ATTRS, targets, image_size=(32, 32), patch=8)
    ex = AttributeExplorer(model, tiny, split="test", method="attention")
    for i, t in enumerate(targets):
        ex.attribute.value = i
        img = np.asarray(Image.open(io.BytesIO(ex.image_view.value)).convert("RGB")).astype(int)
        red_excess = img[..., 0] - img[..., 2]  # jet's red end is the hot spot
        r, c = np.unravel_index(np.argmax(red_excess), red_excess.shape)
        assert (r // 8, c // 8) == divmod(t, 4)


def test_filter_keeps_only_wrong_images(explorer):
    for kind in ("wrong", "FP", "FN", "any", "all"):
        for attr in range(len(ATTRS)):
            explorer.attribute.value = attr
            explorer.filter.value = kind
            expected = filter_wrong(explorer.gt, explorer.probs, attr, explorer.threshold.value, kind,
                                    explorer.ignore)
            np.testing.assert_array_equal(explorer.visible, expected)
            if len(expected):
                assert explorer.image_slider.max == len(expected)
                assert explorer.position in expected.tolist()
                outcome = classify_errors(explorer.gt[explorer.position], explorer.probs[explorer.position],
                                          explorer.threshold.value, explorer.ignore[explorer.position])
                if kind in ("FP", "FN"):
                    assert outcome[attr] == kind
                elif kind == "wrong":
                    assert outcome[attr] in ("FP", "FN")
            else:
                assert "no image" in explorer.status.value
                assert explorer.image_view.value == b"" and explorer.bars_view.value == ""
    # The filter follows the threshold: at 0 every labelled negative is a false positive.
    explorer.filter.value = "FP"
    explorer.attribute.value = 0
    explorer.threshold.value = 0.0
    negatives = np.flatnonzero((explorer.gt[:, 0] == 0) & ~explorer.ignore[:, 0])
    np.testing.assert_array_equal(explorer.visible, negatives)


def test_method_toggle_renders_each_explanation(explorer):
    pngs = {}
    for method in ("attention", "gradcam", "stripes", "none"):
        explorer.method.value = method
        pngs[method] = explorer.image_view.value
        assert Image.open(io.BytesIO(pngs[method])).size == (32, 32)
    assert len(set(pngs.values())) == 4


def _upload_value(image_array=None, raw=None, name="me.png"):
    if raw is None:
        buf = io.BytesIO()
        Image.fromarray(image_array).save(buf, format="PNG")
        raw = buf.getvalue()
    return ({"name": name, "type": "image/png", "size": len(raw), "content": memoryview(raw),
             "last_modified": datetime.datetime(2024, 1, 1)},)


def test_upload_explains_a_new_image(explorer):
    explorer.method.value = "attention"
    calls = explorer.model.calls
    explorer.upload.value = _upload_value(np.full((40, 20, 3), 120, dtype=np.uint8))
    assert "your image" in explorer.status.value
    assert explorer.current_row is None and explorer.outcomes() is None
    assert explorer.model.calls > calls  # an upload is the one control that runs the model
    assert set(_outcomes_in(explorer.bars_view.value)) <= {"pos", "neg"}  # no ground truth
    first_png = explorer.image_view.value
    explorer.threshold.value = 0.2
    assert "threshold 0.20" in explorer.status.value and "your image" in explorer.status.value
    # A second, different upload gets its own heat map, not the first upload's cached one.
    other = np.random.default_rng(1).integers(0, 256, (40, 20, 3), dtype=np.uint8)
    explorer.upload.value = _upload_value(other, name="other.png")
    assert explorer.image_view.value != first_png
    assert [k for k in explorer._maps if k[0] == "upload"] == [("upload", "attention")]
    x = explorer._transform()(Image.fromarray(other))
    np.testing.assert_allclose(explorer._maps[("upload", "attention")][0] / 255.0,
                               attribute_attention_maps(explorer.model.inner, x[None])[0, 0], atol=1 / 255)
    explorer.image_slider.value = 2  # back to the dataset
    assert "your image" not in explorer.status.value and explorer.current_row == explorer.rows[1]
    explorer.upload.value = _upload_value(raw=b"abc", name="bad.png")
    assert "could not explain the upload" in explorer.status.value


def test_precomputed_probs_without_a_model(tiny):
    rows = tiny.split_indices("test")
    probs = np.linspace(0, 1, len(rows) * len(ATTRS)).reshape(len(rows), len(ATTRS))
    ex = AttributeExplorer(None, tiny, split="test", probs=probs, image_size=32)
    np.testing.assert_allclose(ex.probs, probs.astype(np.float32))
    assert [v for _, v in ex.method.options] == ["stripes", "none"]
    assert ex.upload.disabled
    ex.threshold.value = 0.5
    assert summarize_errors(ex.outcomes()) == summarize_errors(
        classify_errors(ex.gt[0], probs[0], 0.5, ex.ignore[0]))
    with pytest.raises(ValueError, match="probs has shape"):
        AttributeExplorer(None, tiny, split="test", probs=probs[:2])
    with pytest.raises(ValueError, match="needs a model"):
        AttributeExplorer(None, tiny)


def test_mismatched_model_is_rejected(tiny):
    with pytest.raises(ValueError, match="differ from the dataset"):
        AttributeExplorer(StandInModel(["Male", "Hat", "Backpack"], image_size=(32, 32)), tiny)
    with pytest.raises(Exception, match="split"):
        AttributeExplorer(StandInModel(ATTRS, image_size=(32, 32)), tiny, split="holdout")


def test_max_images_limits_the_browsed_split(tiny):
    ex = AttributeExplorer(StandInModel(ATTRS, image_size=(32, 32)), tiny, split="train", max_images=3)
    assert ex.rows.tolist() == tiny.split_indices("train")[:3].tolist()
    assert ex.image_slider.max == 3


def test_heat_maps_are_cached_per_image_and_bounded(tiny):
    model = CountingModel(StandInModel(ATTRS, image_size=(32, 32), patch=8))
    ex = AttributeExplorer(model, tiny, split="test", method="attention", cache_size=2)
    calls = model.calls
    for attr in range(len(ATTRS)):  # one attention pass serves every attribute of the image
        ex.attribute.value = attr
    assert model.calls == calls
    for v in range(1, ex.image_slider.max + 1):
        ex.image_slider.value = v
    assert model.calls == calls + ex.image_slider.max - 1
    assert len(ex._maps) == 2
    calls = model.calls
    ex.method.value = "gradcam"  # Grad-CAM: every attribute from one forward pass too
    for attr in range(len(ATTRS)):
        ex.attribute.value = attr
    assert model.calls == calls + 1


def test_explorer_view_figure_is_the_widgets_view(explorer):
    from parkit.widgets import explorer_view_figure

    explorer.threshold.value = 0.3
    fig = explorer_view_figure(explorer)
    picture, bars = fig.axes[:2]
    # the left panel is exactly the picture the widget shows (image with the current explanation)
    np.testing.assert_array_equal(picture.get_images()[0].get_array(), explorer.render_image(explorer.position))
    counts = summarize_errors(explorer.outcomes())
    assert f"threshold 0.30: TP {counts['TP']}, FP {counts['FP']}, FN {counts['FN']}" == bars.get_title()
    assert [t.get_text() for t in bars.get_yticklabels()] == explorer.attributes
    assert len(bars.patches) >= len(explorer.attributes)  # one bar per attribute
