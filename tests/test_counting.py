"""Parameter counts against the official log and spec §7.4.

One really built ViT-L/14 model (random weights, ~2 GB, built once for the module); every other
count uses shapes-only models on the meta device, built by the same code path.
"""
import warnings

import pytest
import torch
from torch import nn

from parkit.model import count_parameters, create_model, format_count

CLIP_L14 = 427_616_513  # 303,966,208 visual + 123,650,305 text (spec §7.3)
VIT_B_BLOCK = 7_087_872


@pytest.fixture(scope="module")
def vitl14_peta():
    """PromptPAR ViT-L/14 on PETA as the 2023 code counted it: no visual_embed, random MM-former."""
    model = create_model("promptpar-vitl14", "PETA", pretrained=False, device="cpu", mm_init="random",
                         visual_embed=False)
    yield model
    del model


def meta_model(preset, attributes, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vis_depth > depth warns by design
        return create_model(preset, attributes, pretrained=False, device="meta", **overrides)


def test_real_vitl14_peta_matches_the_official_log(vitl14_peta):
    counts = count_parameters(vitl14_peta, rule="official")
    # screenshot_002: "trainable params: 2822832 || all params: 437524145 || trainable%: 0.645183136122"
    assert counts["trainable"] == 2_822_832
    assert counts["total"] == 437_524_145
    assert counts["percent"] == pytest.approx(0.645183136122, abs=1e-9)
    groups = counts["by_group"]
    assert groups["visual prompts"] == 24 * 50 * 1024
    assert groups["text prompts"] == 12 * 3 * 35 * 768
    assert groups["heads"] == 769 * 35
    assert groups["MM-former norms"] + groups["MM-former (frozen)"] == VIT_B_BLOCK
    clip_groups = ("CLIP visual (frozen)", "CLIP text (frozen)", "CLIP logit_scale (frozen)")
    assert sum(groups[g] for g in clip_groups) == CLIP_L14
    assert sum(groups.values()) == counts["total"]
    # the official log splits it as MM-former 622,185 + prompt 2,200,647
    report = vitl14_peta.parameter_report()
    assert sum(r["parameters"] for r in report if r["side"] == "fusion") == 622_185
    assert sum(r["parameters"] for r in report if r["side"] == "prompt") == 2_200_647
    # parkit's clean text prompts are effective, so the exact count is the same
    assert count_parameters(vitl14_peta, rule="exact")["trainable"] == 2_822_832
    assert format_count(counts).startswith("trainable params: 2,822,832 || all params: 437,524,145")


def test_real_vitl14_forward_has_the_spec_sequence_lengths(vitl14_peta):
    # The image branch and the fusion at full size; the text encoder (35 sentences x 12 layers,
    # the expensive part on a CPU) is exercised on small backbones in test_model_promptpar.py.
    model = vitl14_peta.eval()
    with torch.no_grad():
        vis = model.visual(torch.zeros(1, 3, 224, 224))
        logits, attention = model.fusion(torch.zeros(35, 768), vis.tokens, return_attention=True)
    assert vis.tokens.shape == (1, 311, 768) and vis.regions.shape == (1, 5, 768)  # spec §3.2
    assert attention.shape == (1, 346, 346)  # A + 311 for PETA (spec §3.5)
    assert logits.shape == (1, 35)
    assert model.visual.region_indices == (0, 11, 22, 33, 44)


@pytest.mark.parametrize("dataset, a, code2023, code2025", [
    ("PA100K", 26, 2_567_043, 3_157_635),
    ("RAPv1", 51, 3_277_568, 3_868_160),
    ("RAPv2", 54, 3_362_831, 3_953_423),
])
def test_spec_table_74(dataset, a, code2023, code2025):
    m2023 = meta_model("promptpar-vitl14", dataset, visual_embed=False)
    counts = count_parameters(m2023, rule="official")
    assert m2023.num_attributes == a and counts["trainable"] == code2023
    if dataset == "RAPv1":
        assert round(counts["percent"], 3) == 0.748  # the abstract's "0.75%"
    m2025 = meta_model("promptpar-vitl14", dataset)  # trainable visual_embed (2025 code, parkit default)
    assert count_parameters(m2025, rule="official")["trainable"] == code2025


def test_official_preset_counts_inert_text_prompts_only_under_the_official_rule():
    model = meta_model("promptpar-official", "PETA")
    official = count_parameters(model, rule="official")
    exact = count_parameters(model, rule="exact")
    assert official["trainable"] == 2_822_832
    assert official["total"] == 437_524_145 + 768 * 768 + 768  # + the frozen vis_embed
    assert exact["trainable"] == 2_822_832 - 12 * 3 * 35 * 768  # text prompts are inert (spec §6)


def test_vitb16_rapv1_paper_count_and_the_clean_one():
    # Table V "CLIP ViT-B/16, 2.30M": 24 prompt layers on a 12-layer model, no trained visual_embed.
    paper = meta_model("promptpar-vitb16", "RAPv1", vis_depth=24, train_visual_embed=False)
    assert count_parameters(paper, rule="official")["trainable"] == 2_302_720
    assert count_parameters(paper, rule="exact")["trainable"] == 2_302_720 - 12 * 50 * 768  # unused layers
    depth12 = meta_model("promptpar-vitb16", "RAPv1", train_visual_embed=False)
    assert count_parameters(depth12, rule="official")["trainable"] == 1_841_920  # spec: "1.84M"
    clean = meta_model("promptpar-vitb16", "RAPv1")
    assert count_parameters(clean, rule="exact")["trainable"] == 1_841_920 + 512 * 768 + 768


def test_count_parameters_on_plain_modules_and_bad_rules():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
    net[0].weight.requires_grad_(False)
    counts = count_parameters(net)
    assert (counts["trainable"], counts["total"]) == (3 + 3 + 1, 12 + 3 + 3 + 1)
    assert counts["by_group"] == {"0": 3, "0 (frozen)": 12, "1": 4}  # frozen weights listed apart
    with pytest.raises(ValueError, match="rule"):
        count_parameters(net, rule="paper")
