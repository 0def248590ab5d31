"""parkit's forward against the independent reference (`tests/reference_promptpar.py`), clean defaults.

`tests/test_official.py` proves that a model loaded with the official behaviour computes the
official logits. This file does the same for parkit's clean defaults (spec §14: effective text
prompts after SOT, CLS as global region token, per-sample global-local aggregation, ln_post, the
derived stripe rule of §4.4), on several small geometries: seeded random tensors in the official
layout are written to a file, loaded into parkit with `load_official_checkpoint(..., <clean
settings>)`, and the same tensors are run through the reference. It also checks that the
reference really is independent: it imports nothing from parkit.
"""
import ast
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_promptpar as ref  # noqa: E402

from parkit.model import PromptPARConfig  # noqa: E402
from parkit.model.official import load_official_checkpoint  # noqa: E402

REFERENCE_FILE = Path(__file__).resolve().parent / "reference_promptpar.py"
SENTENCES = ["A pedestrian wearing a hat", "A pedestrian with long hair", "A male pedestrian",
             "A pedestrian in jeans", "A pedestrian with a backpack", "A pedestrian in sneakers"]
HEADS = dict(vision_heads=2, text_heads=2, fusion_heads=2)
BASE = dict(attributes=len(SENTENCES), embed_dim=64, vision_width=128, vision_layers=2, text_width=128,
            text_layers=2, text_prompt=3, fusion_width=128, mm_layers=1, visual_embed="visual_embed")

# Geometries: (dims, div_num, overlap_row). Rectangular embeddings (64 -> 128) so a transposed
# weight fails; vis_depth 1 < 2 layers in one of them (the layer-0 prompts flow on).
GEOMETRIES = {
    "grid16-4regions": (ref.OfficialDims(**BASE, patch_size=4, grid=16, vis_prompt=10, vis_depth=2), 4, 2),
    "grid8-4regions-depth1": (ref.OfficialDims(**BASE, patch_size=8, grid=8, vis_prompt=10, vis_depth=1), 4, 2),
    "grid8-2regions": (ref.OfficialDims(**{**BASE, "attributes": len(SENTENCES), "mm_layers": 2},
                                        patch_size=8, grid=8, vis_prompt=6, vis_depth=2, div_num=2), 2, 2),
}
# parkit's names for the reference's clean behaviour.
CLEAN_SETTINGS = dict(text_prompt_placement="effective", ln_post=True, global_token="cls",
                      gl_aggregation="per_sample")
OFFICIAL_SETTINGS = dict(text_prompt_placement="official", ln_post=False, global_token="first_prompt",
                         gl_aggregation="last_sample")


def _write_checkpoint(tmp_path, dims, seed):
    clip_layout, cls_layout = ref.official_layout(dims)
    clip_sd = ref.seeded_official_state(clip_layout, seed)
    cls_sd = ref.seeded_official_state(cls_layout, seed + 1)
    path = tmp_path / "tiny.pth"
    torch.save({"epoch": 1, "model_state_dict": cls_sd, "clip_model": clip_sd}, path)
    return path, clip_sd, cls_sd


def _images(dims, n=4, seed=5):
    side = dims.grid * dims.patch_size
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _tokens():
    import clip  # the tokenizer the official code uses

    return clip.tokenize(SENTENCES)


# ---------------------------------------------------------------------------------------------
# The reference is independent
# ---------------------------------------------------------------------------------------------
def test_reference_imports_nothing_from_parkit():
    tree = ast.parse(REFERENCE_FILE.read_text(), filename=str(REFERENCE_FILE))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules.append(node.module or "." * node.level)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module"):
            modules.append("<dynamic import>")
    assert modules, "the parser found no import at all: the check would be vacuous"
    assert "torch" in modules
    offending = [m for m in modules if m.split(".")[0] == "parkit" or m.startswith(".") or m == "<dynamic import>"]
    assert offending == [], f"{REFERENCE_FILE.name} must not import parkit (found {offending})"


# ---------------------------------------------------------------------------------------------
# The reference's geometry against the spec's tables
# ---------------------------------------------------------------------------------------------
def test_derived_stripes_give_the_official_ones_and_hand_computed_small_grids():
    assert ref.derived_stripes(16, 4, 2) == (ref.OFFICIAL_STRIPE_STARTS, ref.OFFICIAL_STRIPE_ROWS)
    assert torch.equal(ref.derived_visual_mask(50, 16, 4, 2), ref.official_visual_mask(50))
    # grid 8, 4 regions, overlap 2: base = 8 // 4 + 1 = 3 rows; middle stripes 4; starts 0, 1, 3, 5.
    assert ref.derived_stripes(8, 4, 2) == ((0, 1, 3, 5), (3, 4, 4, 3))
    # grid 8, 2 regions, overlap 2: base = 4 + 1 = 5 rows; starts 0, 3.
    assert ref.derived_stripes(8, 2, 2) == ((0, 3), (5, 5))
    with pytest.raises(ValueError, match="does not end on the last row"):
        ref.derived_stripes(16, 3, 2)
    # The 2-region mask, P = 6 (2 prompts per group): part 1 = rows 3..5, sees itself and patch
    # rows 0-4 (tokens 9..48); part 2 = rows 6..8 sees itself and patch rows 3-7 (tokens 33..72).
    allowed = torch.isfinite(ref.derived_visual_mask(6, 8, 2, 2))
    assert allowed.shape == (73, 73)
    assert allowed[:3].all() and allowed[9:].all()
    for rows, (a, b) in ((range(3, 6), (9, 48)), (range(6, 9), (33, 72))):
        expect = torch.zeros(73, dtype=torch.bool)
        expect[rows.start:rows.stop] = True
        expect[a:b + 1] = True
        for r in rows:
            assert torch.equal(allowed[r], expect), r
    assert ref.region_rows(50, 4, "first_prompt") == [1, 11, 22, 33, 44]   # spec §3.2 step 7
    assert ref.region_rows(50, 4, "cls") == [0, 11, 22, 33, 44]


def test_after_sot_text_prompts_change_the_features_and_appended_ones_do_not():
    dims = GEOMETRIES["grid16-4regions"][0]
    clip_sd, _ = (ref.seeded_official_state(part, 3) for part in ref.official_layout(dims))
    tokens = _tokens()
    other = dict(clip_sd)
    # Other values, not a rescaling: every block's LayerNorm would undo a scale factor.
    other["transformer.prompt_text_deep"] = torch.randn(clip_sd["transformer.prompt_text_deep"].shape,
                                                        generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        appended = [ref.text_features(sd, tokens, 2, "appended") for sd in (clip_sd, other)]
        after_sot = [ref.text_features(sd, tokens, 2, "after_sot") for sd in (clip_sd, other)]
    assert torch.equal(appended[0], appended[1])                          # inert (spec §6)
    assert (after_sot[0] - after_sot[1]).abs().max() > 1e-3               # effective
    assert (after_sot[0] - appended[0]).abs().max() > 1e-3


def test_each_clean_setting_changes_the_reference_output(tmp_path):
    """The comparison below is sensitive: with the same tensors, switching any one of the four
    settings back to the official one moves the reference's logits or aux logits."""
    dims, div_num, overlap = GEOMETRIES["grid16-4regions"]
    _, clip_sd, cls_sd = _write_checkpoint(tmp_path, dims, seed=30)
    x, tokens = _images(dims), _tokens()
    kw = dict(**HEADS, div_num=div_num, overlap_row=overlap)
    with torch.no_grad():
        clean = ref.promptpar_forward(clip_sd, cls_sd, x, tokens, behaviour=ref.CLEAN, **kw)
        for field, which in (("text_prompts", 0), ("ln_post", 0), ("global_row", 1), ("aggregation", 1)):
            mixed = ref.Behaviour(**{**ref.CLEAN.__dict__, field: getattr(ref.OFFICIAL, field)})
            out = ref.promptpar_forward(clip_sd, cls_sd, x, tokens, behaviour=mixed, **kw)
            assert (out[which] - clean[which]).abs().max() > 1e-3, field


# ---------------------------------------------------------------------------------------------
# parkit == reference
# ---------------------------------------------------------------------------------------------
def _parkit_and_reference(tmp_path, name, behaviour, settings, seed=40):
    dims, div_num, overlap = GEOMETRIES[name]
    path, clip_sd, cls_sd = _write_checkpoint(tmp_path, dims, seed)
    model = load_official_checkpoint(path, attributes=SENTENCES, device="cpu", **settings)
    x = _images(dims)
    with torch.no_grad():
        got = model(x)
        expect = ref.promptpar_forward(clip_sd, cls_sd, x, _tokens(), behaviour=behaviour, div_num=div_num,
                                       overlap_row=overlap, **HEADS)
    return model, got, expect


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_parkit_clean_defaults_equal_the_reference(tmp_path, name):
    model, got, (logits, aux) = _parkit_and_reference(tmp_path, name, ref.CLEAN, CLEAN_SETTINGS)
    # The settings compared are parkit's defaults: a change of default must be a conscious one.
    defaults = PromptPARConfig()
    for field in (*CLEAN_SETTINGS, "gl_softmax", "use_vismask", "use_gl", "overlap_row", "ag_threshold"):
        assert getattr(model.config, field) == getattr(defaults, field), field
    torch.testing.assert_close(got.logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.aux_logits, aux, atol=1e-5, rtol=0)
    # Sensitive: outputs differ across samples (per-sample aggregation shows in the aux logits).
    assert logits.std(0).min() > 1e-3 and aux.std(0).max() > 1e-3


def test_parkit_official_settings_equal_the_reference(tmp_path):
    """The official behaviour through the same path (and `promptpar_forward(OFFICIAL)` ==
    `official_forward`, which tests/test_official.py uses)."""
    model, got, (logits, aux) = _parkit_and_reference(tmp_path, "grid16-4regions", ref.OFFICIAL, OFFICIAL_SETTINGS)
    torch.testing.assert_close(got.logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.aux_logits, aux, atol=1e-5, rtol=0)
    assert (aux[0] - aux[1]).abs().max() > 1e-3
