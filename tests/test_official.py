"""Official checkpoints: key map, layout, loading, export, and function equality with the spec.

The central test writes an official-style checkpoint (seeded random tensors in the official
layout, small sizes) to disk, loads it with `load_official_checkpoint`, and compares the logits
with `tests/reference_promptpar.py`, a direct functional re-statement of the official forward
pass written from the spec (no parkit code). The full ViT-L/14 PETA layout is checked against
shared/spec/official_layout_peta_vitl14.json (on the meta device: no weights are allocated).
"""
import json
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_promptpar as ref  # noqa: E402

from parkit.model.official import (LEGACY_KEY_MAP, OfficialCheckpointError, UntrustedCheckpointWarning,  # noqa: E402
                                   export_official_checkpoint, load_official_checkpoint,
                                   parkit_to_official, read_official_checkpoint)

LAYOUT_JSON = Path(__file__).resolve().parents[2] / "shared" / "spec" / "official_layout_peta_vitl14.json"

SENTENCES = ["A pedestrian wearing a hat", "A pedestrian with long hair", "A male pedestrian",
             "A pedestrian in jeans", "A pedestrian with a backpack", "A pedestrian in sneakers"]

# Tiny official model: 16x16 patch grid (the official stripes are hard-coded for it), P = 10
# (2 prompts per group), 2 heads everywhere (widths 128), rectangular word/visual embeddings
# (64 -> 128) so a transposed weight would fail.
TINY = ref.OfficialDims(attributes=len(SENTENCES), embed_dim=64, vision_width=128, vision_layers=2,
                        patch_size=4, grid=16, text_width=128, text_layers=2, vis_prompt=10, vis_depth=2,
                        text_prompt=3, fusion_width=128, mm_layers=1, visual_embed="vis_embed")
HEADS = dict(vision_heads=2, text_heads=2, fusion_heads=2)


def _layout_json():
    if not LAYOUT_JSON.is_file():
        pytest.skip(f"{LAYOUT_JSON} not found")
    return json.loads(LAYOUT_JSON.read_text())


def _triples(layout):
    """[key, shape list, dtype string] rows, the JSON's form."""
    return [[k, list(s), str(t)] for k, s, t in layout]


def _tiny_states(dims=TINY, seed=0):
    clip_layout, cls_layout = ref.official_layout(dims)
    return ref.seeded_official_state(clip_layout, seed), ref.seeded_official_state(cls_layout, seed + 1)


def _reference(clip_sd, cls_sd, images):
    import clip  # the package's tokenizer, as the official code uses it

    with torch.no_grad():
        return ref.official_forward(clip_sd, cls_sd, images, clip.tokenize(SENTENCES), **HEADS)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def pickled_metrics_class():
    """A class, like the official EasyDict of metrics, whose module is gone when the file is read."""
    module = types.ModuleType("vanished_official_utils")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = module.__name__
    EasyDict.__qualname__ = "EasyDict"
    module.EasyDict = EasyDict
    sys.modules[module.__name__] = module
    yield EasyDict
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="module")
def released_file(tmp_path_factory, pickled_metrics_class):
    """A 'released' checkpoint: ViT_model key, vis_embed name, fp16 CLIP, pickled non-tensor objects."""
    clip_sd, cls_sd = _tiny_states()
    half = {k: v.half() if v.is_floating_point() else v for k, v in clip_sd.items()}
    result = pickled_metrics_class(ma=0.5)
    result.note = "metrics"
    path = tmp_path_factory.mktemp("official") / "PETA.pth"
    torch.save({"epoch": 41, "optimizer": {"state": {}, "param_groups": [{"lr": 0.008}]},
                "model_state_dict": cls_sd, "ViT_model": half, "result": result}, path)
    sys.modules.pop("vanished_official_utils")      # the file now names a module that cannot be imported
    # What the official code computes from these tensors (fp16 CLIP weights, upcast).
    upcast = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    return path, upcast, cls_sd


# ---------------------------------------------------------------------------------------------
# Layout and key map
# ---------------------------------------------------------------------------------------------
def test_reference_layout_is_the_official_json_layout():
    data = _layout_json()
    clip_layout, cls_layout = ref.official_layout(ref.OfficialDims())
    assert _triples(clip_layout) == data["clip"]
    assert _triples(cls_layout) == data["classifier"]


def test_parkit_vitl14_peta_model_exports_exactly_the_official_layout():
    """Key names, order, shapes and dtypes of the official PETA ViT-L/14 model (455 + 93 tensors)."""
    from parkit.model import create_model

    data = _layout_json()
    model = create_model("promptpar-official", attributes="PETA", pretrained=False, device="meta")
    clip_sd, cls_sd = parkit_to_official(model.state_dict())
    assert [[k, list(v.shape), str(v.dtype)] for k, v in clip_sd.items()] == data["clip"]
    assert [[k, list(v.shape), str(v.dtype)] for k, v in cls_sd.items()] == data["classifier"]
    assert model.sentences == data["attributes"]
    # The released name of the visual embedding is the only difference with legacy names.
    _, legacy = parkit_to_official(model.state_dict(), legacy_names=True)
    assert [k for k in legacy if k.startswith("vis_embed.")] == ["vis_embed.weight", "vis_embed.bias"]
    assert not any(k.startswith("visual_embed.") for k in legacy)


def test_every_official_key_has_exactly_one_rule():
    data = _layout_json()
    for part, rows in (("clip", data["clip"]), ("classifier", data["classifier"])):
        for key, _, _ in rows:
            hits = [r for r in LEGACY_KEY_MAP if r.part == part and not r.legacy
                    and (key.startswith(r.official) if r.official.endswith(".") else key == r.official)]
            assert len(hits) == 1, (key, hits)
    legacy = [r for r in LEGACY_KEY_MAP if r.legacy]
    assert [(r.official, r.parkit) for r in legacy] == [("vis_embed.", "fusion.visual_embed.")]


def test_reference_mask_is_the_spec_table_and_parkit_builds_the_same():
    from parkit.model.geometry import visual_mask

    mask = ref.official_visual_mask(50)
    assert mask.shape == (311, 311)
    allowed = torch.isfinite(mask)
    assert allowed[0].all() and allowed[10].all() and allowed[55:].all()       # global group, patches
    spans = {11: (55, 134), 22: (103, 198), 33: (167, 262), 44: (231, 310)}   # spec §4.2
    for first, (a, b) in spans.items():
        expect = torch.zeros(311, dtype=torch.bool)
        expect[first:first + 11] = True
        expect[a:b + 1] = True
        for row in (first, first + 10):
            assert torch.equal(allowed[row], expect), row
    for p in (50, 10):
        assert torch.equal(visual_mask(p, 16, 16, 4, 2), ref.official_visual_mask(p))


def test_reference_text_branch_is_clip_and_its_prompts_are_inert():
    from parkit.backbone.loading import build_clip, clip_module

    clip = clip_module()
    cfg = dict(embed_dim=64, image_resolution=64, vision_layers=1, vision_width=64, vision_patch_size=8,
               context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2,
               transformer_layers=2)
    model = build_clip(cfg, seed=3)
    tokens = clip.tokenize(SENTENCES)
    sd = dict(model.state_dict())
    with torch.no_grad():
        expect = model.encode_text(tokens)
        sd["transformer.prompt_text_deep"] = torch.randn(2, 3, len(SENTENCES), 128)
        with_prompts = ref.official_text_features(sd, tokens, text_heads=2)
        sd["transformer.prompt_text_deep"] = torch.randn(2, 3, len(SENTENCES), 128) * 10
        other_prompts = ref.official_text_features(sd, tokens, text_heads=2)
    assert torch.allclose(with_prompts, expect, atol=1e-5)
    assert torch.equal(with_prompts, other_prompts)      # appended after EOT: no effect (spec §6)


# ---------------------------------------------------------------------------------------------
# Function equality
# ---------------------------------------------------------------------------------------------
def test_released_style_checkpoint_gives_the_official_logits(released_file, images):
    path, clip_sd, cls_sd = released_file
    with pytest.raises(OfficialCheckpointError, match=r"PETA.pth.*allow_pickle=True"):
        load_official_checkpoint(path, attributes=SENTENCES, device="cpu")  # never unpickled by default
    with pytest.warns(UntrustedCheckpointWarning, match="PETA.pth"):
        model = load_official_checkpoint(path, attributes=SENTENCES, device="cpu", allow_pickle=True)
    info = model.official_checkpoint
    assert info["clip_key"] == "ViT_model" and info["epoch"] == 41
    assert info["legacy_names"] == ["vis_embed."]
    assert info["stubbed_classes"] == ["vanished_official_utils.EasyDict"]
    cfg = model.config
    assert (cfg.text_prompt_placement, cfg.ln_post, cfg.global_token, cfg.gl_aggregation, cfg.normalization) == \
        ("official", False, "first_prompt", "last_sample", "official")
    assert (cfg.vis_prompt, cfg.vis_depth, cfg.div_num, cfg.text_prompt, cfg.fusion_width) == (10, 2, 4, 3, 128)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())

    expect_logits, expect_aux = _reference(clip_sd, cls_sd, images)
    with torch.no_grad():
        out = model(images)
    assert out.logits.shape == (3, len(SENTENCES))
    torch.testing.assert_close(out.logits, expect_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.aux_logits, expect_aux, atol=1e-5, rtol=0)
    # The comparison is sensitive: the logits vary across samples and the quirks matter.
    assert expect_logits.std(0).min() > 1e-3


def test_the_official_quirks_change_the_logits(released_file, images):
    """Each compatibility setting is load-bearing: switching it off moves the logits away from the
    official ones, so the equality above could not hold with a clean model."""
    path, clip_sd, cls_sd = released_file
    expect_logits, expect_aux = _reference(clip_sd, cls_sd, images)
    for override, which in ((dict(gl_aggregation="per_sample"), "aux"), (dict(global_token="cls"), "aux"),
                            (dict(ln_post=True), "logits"), (dict(use_vismask=False), "logits"),
                            (dict(text_prompt_placement="effective"), "logits")):
        model = load_official_checkpoint(path, attributes=SENTENCES, device="cpu", allow_pickle=True,
                                         **override)
        with torch.no_grad():
            out = model(images)
        got, expect = (out.aux_logits, expect_aux) if which == "aux" else (out.logits, expect_logits)
        assert (got - expect).abs().max() > 1e-3, override


def test_train_script_checkpoint_with_partial_depth_and_two_blocks(tmp_path, images):
    """train.py layout: clip_model key, visual_embed name, fp32, plain tensors (no pickle needed);
    prompts in the first layer only (vis_depth 1 < 2 layers) and a 2-block MM-former."""
    dims = ref.OfficialDims(**{**TINY.__dict__, "vis_depth": 1, "mm_layers": 2, "visual_embed": "visual_embed"})
    clip_sd, cls_sd = _tiny_states(dims, seed=10)
    path = tmp_path / "train_style.pth"
    torch.save({"epoch": 2, "model_state_dict": cls_sd, "clip_model": clip_sd}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrustedCheckpointWarning)     # weights_only=True suffices
        model = load_official_checkpoint(path, attributes=SENTENCES, device="cpu")
    assert model.official_checkpoint["clip_key"] == "clip_model"
    assert (model.config.vis_depth, model.config.mm_layers) == (1, 2)
    expect_logits, expect_aux = _reference(clip_sd, cls_sd, images)
    with torch.no_grad():
        out = model(images)
    torch.testing.assert_close(out.logits, expect_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.aux_logits, expect_aux, atol=1e-5, rtol=0)


def test_export_round_trip(released_file, tmp_path, images):
    path, clip_sd, cls_sd = released_file
    model = load_official_checkpoint(path, attributes=SENTENCES, device="cpu", allow_pickle=True)
    out_path = export_official_checkpoint(model, tmp_path / "export.pth", legacy_names=True)
    data = torch.load(out_path, map_location="cpu", weights_only=True)   # no pickled objects
    assert set(data) == {"epoch", "model_state_dict", "ViT_model", "clip_model", "parkit"}
    assert data["parkit"]["sentences"] == SENTENCES
    # Same keys, in the same order, with the same values as the file we read.
    assert list(data["ViT_model"]) == list(clip_sd) and list(data["model_state_dict"]) == list(cls_sd)
    for key, value in clip_sd.items():
        assert torch.equal(data["ViT_model"][key], value), key
    for key, value in cls_sd.items():
        assert torch.equal(data["model_state_dict"][key], value), key
    # ... and it loads back to the same function.
    again = load_official_checkpoint(out_path, attributes=SENTENCES, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(again(images).logits, model(images).logits, atol=0, rtol=0)
    # HEAD-code names by default.
    head = torch.load(export_official_checkpoint(model, tmp_path / "head.pth"), weights_only=True)
    assert "visual_embed.weight" in head["model_state_dict"] and "vis_embed.weight" not in head["model_state_dict"]


def test_export_warns_for_clean_behaviour_and_refuses_linear_fusion(tmp_path):
    from parkit.model import create_model

    clean = create_model("promptpar-micro", attributes=SENTENCES, pretrained=False, device="cpu")
    with pytest.warns(UserWarning, match="ln_post=True"):
        export_official_checkpoint(clean, tmp_path / "clean.pth")
    linear = create_model("promptpar-micro", attributes=SENTENCES, pretrained=False, device="cpu",
                          use_mm_former=False)
    with pytest.raises(OfficialCheckpointError, match="use_mm_former=False"):
        export_official_checkpoint(linear, tmp_path / "linear.pth")


# ---------------------------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------------------------
def test_refuses_to_unpickle_when_told(released_file):
    path = released_file[0]
    with pytest.raises(OfficialCheckpointError, match="allow_pickle=True"):
        read_official_checkpoint(path, allow_pickle=False)
    with pytest.raises(OfficialCheckpointError, match="allow_pickle=True"):
        read_official_checkpoint(path)  # the default: never unpickle
    with pytest.warns(UntrustedCheckpointWarning, match="trust"):  # the opt-in still names the risk
        assert "model_state_dict" in read_official_checkpoint(path, allow_pickle=True)


def test_attribute_count_and_backbone_mismatches_are_named(released_file):
    path = released_file[0]
    with pytest.raises(OfficialCheckpointError, match="trained with 6 attributes, but 35"):
        load_official_checkpoint(path, attributes="PETA", allow_pickle=True)
    with pytest.raises(OfficialCheckpointError, match="pass attributes="):
        load_official_checkpoint(path, allow_pickle=True)
    with pytest.raises(OfficialCheckpointError, match=r"not hold a ViT-L/14 CLIP.*vision_width: checkpoint 128"):
        load_official_checkpoint(path, attributes=SENTENCES, backbone="ViT-L/14", allow_pickle=True)


def test_missing_unexpected_and_foreign_files_are_listed(tmp_path):
    clip_sd, cls_sd = _tiny_states(seed=20)
    broken = dict(cls_sd)
    broken.pop("norm.bias")
    broken["extra_head.weight"] = torch.zeros(3)
    torch.save({"model_state_dict": broken, "ViT_model": clip_sd}, tmp_path / "broken.pth")
    with pytest.raises(OfficialCheckpointError) as info:
        load_official_checkpoint(tmp_path / "broken.pth", attributes=SENTENCES)
    assert "extra_head.weight" in str(info.value) and "fusion.norm.bias" in str(info.value)

    bad_heads = dict(cls_sd)
    bad_heads["bn.weight"] = torch.ones(7)
    torch.save({"model_state_dict": bad_heads, "ViT_model": clip_sd}, tmp_path / "counts.pth")
    with pytest.raises(OfficialCheckpointError, match="disagree on the number of attributes"):
        load_official_checkpoint(tmp_path / "counts.pth", attributes=SENTENCES)

    odd = dict(clip_sd)
    odd["visual.part_class_embedding"] = torch.zeros(4, 96)            # vision width is 128
    torch.save({"model_state_dict": cls_sd, "ViT_model": odd}, tmp_path / "shape.pth")
    with pytest.raises(OfficialCheckpointError, match=r"part_class_embedding.*\(4, 96\).*div_num / backbone vision"):
        load_official_checkpoint(tmp_path / "shape.pth", attributes=SENTENCES)

    torch.save({"model_state_dict": cls_sd, "ViT_model": clip_sd}, tmp_path / "good.pth")
    with pytest.raises(OfficialCheckpointError, match="vis_prompt=20 but the checkpoint has 10"):
        load_official_checkpoint(tmp_path / "good.pth", attributes=SENTENCES, vis_prompt=20)

    torch.save({"format": "parkit/1", "model": {}}, tmp_path / "parkit.pth")
    with pytest.raises(OfficialCheckpointError, match=r"found keys \['format', 'model'\]"):
        load_official_checkpoint(tmp_path / "parkit.pth", attributes=SENTENCES)
    with pytest.raises(OfficialCheckpointError, match="does not exist"):
        load_official_checkpoint(tmp_path / "nope.pth", attributes=SENTENCES)
