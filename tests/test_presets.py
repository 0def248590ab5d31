"""Presets, config validation, backbone resolution and attribute resolution (spec §2, §14)."""
import pytest

from parkit.model import (OFFICIAL_FLAGS, ConfigError, PromptPARConfig, get_config, list_presets,
                          resolve_attributes)
from parkit.model.config import (BASELINE_KINDS, PRESETS, BackboneDims, field_names, preset_config,
                                 preset_description, resolve)

L14 = BackboneDims(embed_dim=768, vision_width=1024, vision_layers=24, vision_heads=16, patch_size=14,
                   image_size=224, text_width=768, text_layers=12, context_length=77)
B16 = BackboneDims(embed_dim=512, vision_width=768, vision_layers=12, vision_heads=12, patch_size=16,
                   image_size=224, text_width=512, text_layers=12, context_length=77)
MICRO = BackboneDims(embed_dim=128, vision_width=128, vision_layers=4, vision_heads=2, patch_size=8,
                     image_size=96, text_width=128, text_layers=4, context_length=77)

REQUIRED = ["promptpar-vitl14", "promptpar-vitb16", "promptpar-micro", "promptpar-official", "vpt-deep",
            "vpt-deep-micro", "zeroshot-clip", "linear-probe", "linear-probe-micro", "finetune", "vtb"]


def test_required_presets_are_listed_and_valid():
    names = list_presets()
    assert set(REQUIRED) <= set(names)
    for name in names:
        cfg = preset_config(name)
        assert isinstance(cfg, PromptPARConfig) and preset_description(name)
    assert set(list_presets(kind="promptpar")) == {n for n in names if n.startswith(("promptpar", "vpt"))}
    kinds = {preset_config(n).kind for n in names}
    assert kinds == {"promptpar", *BASELINE_KINDS}


def test_defaults_are_the_clean_behaviour():
    cfg = PromptPARConfig()
    assert (cfg.text_prompt_placement, cfg.ln_post, cfg.global_token, cfg.gl_aggregation) == (
        "effective", True, "cls", "per_sample")
    assert (cfg.vis_prompt, cfg.div_num, cfg.overlap_row, cfg.text_prompt, cfg.mm_layers) == (50, 4, 2, 3, 1)
    assert cfg.gl_softmax == "attributes" and cfg.normalization == "official"


def test_official_preset_sets_exactly_the_released_behaviour():
    official = preset_config("promptpar-official")
    assert official == PromptPARConfig.official()
    assert (official.text_prompt_placement, official.ln_post, official.global_token,
            official.gl_aggregation) == ("official", False, "first_prompt", "last_sample")
    assert official.visual_embed and not official.train_visual_embed and official.train_mm_norms
    differing = {k for k in field_names() if getattr(official, k) != getattr(PromptPARConfig(), k)}
    assert differing == {"text_prompt_placement", "ln_post", "global_token", "gl_aggregation",
                         "train_visual_embed"}


def test_compat_switch_keeps_the_presets_backbone():
    cfg = get_config("promptpar-vitb16", compat="official", vis_depth=24)
    assert cfg.backbone == "ViT-B/16" and cfg.vis_depth == 24
    assert all(getattr(cfg, k) == v for k, v in OFFICIAL_FLAGS.items() if k != "backbone")
    with pytest.raises(ConfigError, match="compat"):
        get_config("promptpar-vitb16", compat="2023")


def test_micro_preset_resolves_against_the_micro_backbone():
    cfg = resolve(preset_config("promptpar-micro"), MICRO)
    assert (cfg.image_size, cfg.fusion_width, cfg.vis_depth, cfg.vis_prompt) == (96, 128, 4, 10)
    assert cfg.mm_init == "backbone_last" and cfg.prompts_per_group == 2


def test_backbone_defaults_for_l14_and_b16():
    l14 = resolve(PromptPARConfig(), L14)
    assert (l14.vis_depth, l14.image_size, l14.fusion_width) == (24, 224, 768)
    b16 = resolve(preset_config("promptpar-vitb16"), B16)
    assert (b16.vis_depth, b16.fusion_width) == (12, 768)


def test_vpt_deep_is_plain_vpt():
    cfg = preset_config("vpt-deep")
    assert not (cfg.use_div or cfg.use_vismask or cfg.use_gl) and cfg.vis_prompt == 50


@pytest.mark.parametrize("overrides, message", [
    (dict(vis_prompts=5), "valid settings are"),
    (dict(vis_prompt="50"), "vis_prompt must be int"),
    (dict(use_div=1), "use_div must be bool"),
    (dict(text_prompt_placement="after_eot"), "one of 'effective', 'official'"),
    (dict(vis_prompt=12), "divisible by div_num \\+ 1 = 5"),
    (dict(use_div=False), "use_vismask=True needs use_div=True"),
    (dict(use_div=False, use_vismask=False), "use_gl=True needs use_div=True"),
    (dict(mm_drop_path=1.5), "mm_drop_path"),
    (dict(mm_init="imagenet"), "mm_init must be one of"),
    (dict(global_token="first_prompt", vis_prompt=0), "first_prompt"),
])
def test_bad_settings_raise_at_once(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config("promptpar-vitl14", **overrides)


def test_float_fields_accept_ints_and_ints_reject_bools():
    assert get_config("promptpar-vitl14", ag_threshold=1).ag_threshold == 1
    with pytest.raises(ConfigError):
        get_config("promptpar-vitl14", div_num=True)


@pytest.mark.parametrize("cfg, dims, message", [
    (PromptPARConfig(image_size=256), L14, "image_size=256"),
    (PromptPARConfig(backbone="ViT-B/16", visual_embed=False), B16, "visual_embed=False needs fusion_width"),
    (PromptPARConfig(mm_init="backbone_last", fusion_width=768), L14, "backbone_last"),
    (PromptPARConfig(mm_init="vit_b16_imagenet", fusion_width=1024), L14, "fusion_width=768"),
    (PromptPARConfig(), BackboneDims(512, 768, 12, 12, 32, 224, 512, 12, 77), "grid"),  # 7x7: 4 stripes fail
])
def test_resolve_rejects_settings_that_do_not_fit_the_backbone(cfg, dims, message):
    with pytest.raises(ValueError, match=message):
        resolve(cfg, dims)


def test_config_roundtrips_through_a_dict():
    cfg = PromptPARConfig.official(vis_prompt=25)
    assert PromptPARConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        PromptPARConfig.from_dict({**cfg.to_dict(), "prompt_len": 3})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="promptpar-vitl14"):
        get_config("promptpar-vitl16")


def test_attributes_by_schema_name_object_or_lists():
    names, sents = resolve_attributes("PETA")
    assert len(names) == len(sents) == 35 and sents[-1] == "A male pedestrian"
    from parkit.attributes import get_schema

    names2, _ = resolve_attributes(get_schema("RAPv1"))
    assert len(names2) == 51
    assert resolve_attributes(["A hat", "A bag"]) == (["A hat", "A bag"], ["A hat", "A bag"])
    assert resolve_attributes(["hat"], ["A pedestrian wearing a hat"]) == (["hat"], ["A pedestrian wearing a hat"])
    assert len(resolve_attributes(None, default_dataset="PA100K")[0]) == 26
    with pytest.raises(ValueError, match="2 attribute names but 1 sentences"):
        resolve_attributes(["hat", "bag"], ["A hat"])
    with pytest.raises(ValueError, match="empty"):
        resolve_attributes([])


def test_every_preset_field_is_a_config_field():
    valid = set(field_names())
    for name, (_, fields) in PRESETS.items():
        assert set(fields) <= valid, name


def test_every_micro_preset_uses_the_normalisation_the_micro_clip_was_pretrained_with():
    from parkit.backbone import pretrain

    micro = [name for name in PRESETS if preset_config(name).backbone == "micro"]
    assert "zeroshot-clip-micro" in micro and "promptpar-micro" in micro
    for name in micro:
        assert preset_config(name).normalization_stats == (pretrain.MEAN, pretrain.STD), name
