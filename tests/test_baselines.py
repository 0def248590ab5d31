"""Baselines: contract (PAROutput, groups, state dicts), what trains, zero-shot calibration, VTB, caching.

All on a tiny random CLIP (widths 64, 32x32 images, 4x4 patch grid): the behaviour checked here
does not depend on pretrained weights.
"""
import pytest
import torch

from parkit.backbone import tokenize
from parkit.backbone.loading import build_clip
from parkit.model.baselines import build_baseline, clip_image_features
from parkit.model.config import ConfigError, PromptPARConfig

TINY_CLIP = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=1)
SENTENCES = ["A pedestrian wearing a hat", "A male pedestrian", "A pedestrian in jeans",
             "A pedestrian with a backpack"]
A = len(SENTENCES)
KINDS = ("zeroshot", "linear_probe", "finetune", "vtb")


def _model(kind, seed=0, **fields):
    clip = build_clip(TINY_CLIP, seed=seed)
    fields = {"mm_init": "random", "fusion_width": 64, **fields}
    return build_baseline(kind, clip, SENTENCES, SENTENCES, PromptPARConfig(kind=kind, **fields))


def _images(n=6, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_forward_backward_and_exactly_the_listed_parameters_train(kind):
    model = _model(kind).train()
    out = model(_images())
    assert out.logits.shape == (6, A) and out.logits.dtype == torch.float32 and out.aux_logits is None
    groups = model.param_groups()
    assert set(groups) == {"prompt", "fusion"}
    listed = {id(p) for ps in groups.values() for p in ps}
    # requires_grad is set for the listed parameters and nothing else.
    assert listed == {id(p) for p in model.parameters() if p.requires_grad}
    if listed:
        out.logits.square().sum().backward()
        for p in (p for ps in groups.values() for p in ps):
            assert p.grad is not None and p.grad.abs().sum() > 0
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


def test_what_each_baseline_trains():
    e, w = TINY_CLIP["embed_dim"], 64
    zs, lp, ft, vtb = (_model(k) for k in KINDS)
    count = {k: sum(p.numel() for p in v) for k, v in lp.param_groups().items()}
    assert count == {"prompt": 0, "fusion": e * A + A + 2 * A}          # Linear(E, A) + BN(A)
    assert sum(p.numel() for ps in zs.param_groups().values() for p in ps) == 0
    vision = sum(p.numel() for p in ft.visual.parameters())
    count = {k: sum(p.numel() for p in v) for k, v in ft.param_groups().items()}
    assert count == {"prompt": vision, "fusion": e * A + A + 2 * A}
    # VTB: the fusion blocks train, CLIP (both towers) does not.
    assert {id(p) for p in vtb.blocks.parameters()} <= {id(p) for p in vtb.param_groups()["fusion"]}
    assert not any(p.requires_grad for p in vtb.clip.parameters())
    assert vtb.type_embed.shape == (2, w)


@pytest.mark.parametrize("kind", KINDS)
def test_trainable_state_round_trip_and_strict_errors(kind):
    source = _model(kind, seed=0).train()
    with torch.no_grad():
        source(_images(8, seed=3))          # move the BN running statistics
        if kind == "zeroshot":
            source.offset.fill_(0.05)
    state = source.trainable_state_dict()
    target = _model(kind, seed=0) if kind != "finetune" else _model(kind, seed=9)
    target.load_trainable_state_dict(state)
    source.eval(), target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(_images()).logits, source(_images()).logits, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="missing"):
        target.load_trainable_state_dict({k: v for k, v in list(state.items())[1:]})
    # A state dict saved for another attribute list names the cause.
    other = build_baseline(kind, build_clip(TINY_CLIP), SENTENCES[:3], SENTENCES[:3],
                           PromptPARConfig(kind=kind, mm_init="random", fusion_width=64))
    with pytest.raises(ValueError, match="attribute"):
        target.load_trainable_state_dict(other.trainable_state_dict())


def test_zeroshot_logits_are_scaled_cosines_minus_offsets():
    model = _model("zeroshot").eval()
    images = _images()
    with torch.no_grad():
        out = model(images)
        img = torch.nn.functional.normalize(clip_image_features(model.clip.visual, images), dim=-1)
        txt = torch.nn.functional.normalize(model.clip.encode_text(tokenize(SENTENCES)), dim=-1)
    cos = img @ txt.t()
    torch.testing.assert_close(out.extras["cosine"], cos, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, model.clip.logit_scale.exp() * cos, atol=1e-4, rtol=0)


def test_zeroshot_calibration_sets_the_operating_point():
    model = _model("zeroshot")
    images = _images(10, seed=4)
    loader = [(images[:5],), (images[5:],)]
    with torch.no_grad():
        cos = model(images).extras["cosine"]
    offsets = model.calibrate(loader)                                   # median of the cosines
    torch.testing.assert_close(offsets, cos.median(dim=0).values)
    with torch.no_grad():
        positive = (model(images).logits > 0).float().mean(0)
    assert torch.equal(positive, torch.full((A,), 0.5))                 # 5 of 10 above the median

    # "prior": predicted as often as the attribute occurs in the labels (ignored labels skipped).
    targets = torch.zeros(10, A)
    targets[:2, 0] = 1                                                  # 20 %
    targets[:8, 1] = 1                                                  # 80 %
    targets[:5, 2:] = 1
    ignore = torch.zeros(10, A, dtype=torch.bool)
    ignore[9, 3] = True
    model.calibrate([(images, targets, ignore)], method="prior")
    with torch.no_grad():
        positive = (model(images).logits > 0).float().mean(0)
    assert positive[0] == pytest.approx(0.2, abs=0.11) and positive[1] == pytest.approx(0.8, abs=0.11)
    # The calibration travels with the trainable state.
    fresh = _model("zeroshot")
    fresh.load_trainable_state_dict(model.trainable_state_dict())
    assert torch.equal(fresh.offset, model.offset)


def test_linear_probe_feature_cache():
    model = _model("linear_probe", seed=0)
    cached = build_baseline("linear_probe", build_clip(TINY_CLIP, seed=0), SENTENCES, SENTENCES,
                            PromptPARConfig(kind="linear_probe"), cache_features=True, cache_size=8)
    cached.head.load_state_dict(model.head.state_dict())
    images = _images(6)
    model.eval(), cached.eval()
    with torch.no_grad():
        first = cached(images).logits
        second = cached(images).logits
        plain = model(images).logits
    assert (cached.cache.misses, cached.cache.hits) == (6, 6)
    torch.testing.assert_close(first, plain, atol=1e-6, rtol=0)
    assert torch.equal(first, second)
    with torch.no_grad():
        cached(_images(6, seed=2))                                      # 12 distinct images, room for 8
    assert len(cached.cache) == 8
    # With autograd on in eval mode (Grad-CAM) the cache is bypassed so gradients reach the input.
    x = images.clone().requires_grad_(True)
    cached(x).logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vtb_explain_extras_and_backbone_last_init():
    model = _model("vtb", mm_init="backbone_last", fusion_width=None, mm_layers=2).eval()
    assert model.mm_source == "backbone"
    last = model.clip.visual.transformer.resblocks[-1]
    assert torch.equal(model.blocks[-1].attn.qkv.weight, last.attn.in_proj_weight)
    assert model.blocks[-1].attn.qkv.weight.data_ptr() != last.attn.in_proj_weight.data_ptr()  # a copy
    out = model(_images(2), return_attention=True)
    grid = TINY_CLIP["image_resolution"] // TINY_CLIP["vision_patch_size"]
    length = A + 1 + grid * grid
    assert out.extras["mm_attention"].shape == (2, length, length)
    assert out.extras["mm_input"].shape == (2, length, 64)
    assert list(out.extras["token_layout"]["patches"]) == list(range(A + 1, length))
    assert out.extras["patch_grid"] == (grid, grid)
    assert model(_images(2)).extras == {}


def test_bad_inputs_raise_clear_errors():
    model = _model("linear_probe")
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="4 attributes but 3 sentences"):
        build_baseline("zeroshot", build_clip(TINY_CLIP), SENTENCES, SENTENCES[:3])
    with pytest.raises(ConfigError, match="unknown baseline kind"):
        build_baseline("promptpar", build_clip(TINY_CLIP), SENTENCES, SENTENCES)
    with pytest.raises(ConfigError, match="image_size"):
        _model("finetune", image_size=64)
    with pytest.raises(TypeError, match="cache_features"):
        build_baseline("vtb", build_clip(TINY_CLIP), SENTENCES, SENTENCES,
                       PromptPARConfig(kind="vtb", mm_init="random", fusion_width=64), cache_features=True)


def test_factory_builds_baselines_with_the_contract():
    from parkit.model import count_parameters, create_model

    model = create_model("linear-probe", attributes=SENTENCES, pretrained=False, device="cpu",
                         backbone_model=build_clip(TINY_CLIP))
    assert model.config.kind == "linear_probe" and model.attributes == SENTENCES
    assert model.image_size == 32 and model.normalization == model.config.normalization
    counts = count_parameters(model)
    assert counts["trainable"] == TINY_CLIP["embed_dim"] * A + 3 * A
