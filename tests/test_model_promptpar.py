"""The PromptPAR module on tiny CLIPs: maths vs CLIP, text prompts, GL branch, fusion, heads,
trainable groups, checkpoints, and a forward/backward smoke test of every preset (spec §3-7, §15)."""
import warnings

import pytest
import torch
from torch import nn

from parkit.backbone import tokenize
from parkit.model import (ConfigError, PAROutput, PromptPAR, PromptPARConfig, StateDictMismatch,
                          create_model, list_presets)
from parkit.model.config import PRESETS
from parkit.model.fusion import AttributeHeads, MMBlock, _copy_clip_block
from parkit.model.similarity import GlobalLocalSimilarity
from parkit.model.clip_blocks import clip_block_forward

# A tiny ViT CLIP: 64 px / patch 8 = 8x8 grid, 2 vision layers of width 128 (2 heads), text width 64.
TINY = dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2,
            transformer_layers=2)
SENTENCES = ["A pedestrian wearing a hat", "A pedestrian in jeans", "A male pedestrian",
             "A pedestrian with a backpack", "A pedestrian in sneakers"]
# Small but complete PromptPAR settings for the tiny backbone.
SMALL = dict(vis_prompt=10, text_prompt=2, mm_init="backbone_last")


def tiny_clip(seed=0, **changes):
    import clip.model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clip.model.CLIP(**{**TINY, **changes}).eval()


def build(seed=0, sentences=SENTENCES, clip_changes=None, **overrides):
    cfg = PromptPARConfig(**{**SMALL, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 100)
        model = PromptPAR(tiny_clip(seed, **(clip_changes or {})), sentences, cfg)
    return model.eval()


def images(n=2, seed=1, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


# -- identical maths to CLIP ---------------------------------------------------------------------
def test_layer_loop_matches_clip_without_prompts():
    clip_model = tiny_clip()
    x = images()
    with torch.no_grad():
        expected_img = clip_model.encode_image(x)  # (B, E): ln_post(CLS) @ proj
        expected_txt = clip_model.encode_text(tokenize(SENTENCES))  # (A, E) at the EOT token
    cfg = PromptPARConfig(vis_prompt=0, use_div=False, use_vismask=False, use_gl=False,
                          use_textprompt=False, mm_init="backbone_last")
    model = PromptPAR(clip_model, SENTENCES, cfg).eval()
    with torch.no_grad():
        vis = model.visual(x)
        txt = model.text()
    assert vis.tokens.shape == (2, 1 + 64, 48)
    torch.testing.assert_close(vis.tokens[:, 0], expected_img, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(txt, expected_txt, rtol=1e-5, atol=1e-5)


def _interleaved_visual_forward(visual, x_images):
    """The straightforward layer loop: every token, prompts included, through every block."""
    x = visual.conv1(x_images).flatten(2).transpose(1, 2)
    b, _, width = x.shape
    x = torch.cat([visual.class_embedding.expand(b, 1, width), x], dim=1) + visual.positional_embedding
    cls = x[:, :1]
    if visual.part_class_embedding is not None:
        cls = torch.cat([cls, visual.part_class_embedding.expand(b, -1, -1)], dim=1)
    cls, patches = visual.ln_pre(cls), visual.ln_pre(x[:, 1:])
    mask = visual.attention_mask(x.device)
    idx, start = list(visual.layout.class_positions), visual.layout.patch_start
    for layer, block in enumerate(visual.transformer.resblocks):
        prompts = visual.prompt_deep[layer] if layer < visual.prompted_layers else None
        if layer == 0:
            x = visual._interleave(cls, prompts, patches)
        elif prompts is not None:
            x = visual._interleave(x[:, idx], prompts, x[:, start:])
        x, _ = clip_block_forward(block, x, mask)
    return (visual.ln_post(x) if visual.config.ln_post else x) @ visual.proj


@pytest.mark.parametrize("vis_depth,use_vismask,use_div", [(4, True, True), (2, True, True), (1, True, True),
                                                           (3, False, True), (4, False, False)])
def test_skipping_overwritten_prompt_outputs_is_the_same_function(vis_depth, use_vismask, use_div):
    # Prompt outputs of a layer whose successor overwrites them are not computed (visual.py);
    # tokens and prompt gradients must equal those of the loop that computes everything.
    model = build(clip_changes=dict(vision_layers=4), vis_depth=vis_depth, use_vismask=use_vismask,
                  use_div=use_div, use_gl=use_div, vis_prompt=10 if use_div else 8)
    x = images()
    fast = model.visual(x).tokens
    slow = _interleaved_visual_forward(model.visual, x)
    assert fast.shape == slow.shape
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * weights).sum(), model.visual.prompt_deep)[0]
    g_slow = torch.autograd.grad((slow * weights).sum(), model.visual.prompt_deep)[0]
    assert g_fast[:vis_depth].abs().sum() > 0
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-4, atol=1e-5 * g_slow.abs().max().item())


def test_ln_post_off_projects_the_raw_tokens():
    clip_model = tiny_clip()
    x = images()
    v = clip_model.visual
    with torch.no_grad():  # CLIP's own path up to the last block, then proj without ln_post
        h = v.conv1(x).flatten(2).transpose(1, 2)
        h = torch.cat([v.class_embedding.expand(2, 1, -1), h], 1) + v.positional_embedding
        h = v.transformer(v.ln_pre(h).permute(1, 0, 2)).permute(1, 0, 2)
        raw = h @ v.proj
    on = PromptPAR(tiny_clip(), SENTENCES, PromptPARConfig(vis_prompt=0, use_div=False, use_vismask=False,
                                                           use_gl=False, mm_init="backbone_last"))
    off = PromptPAR(clip_model, SENTENCES, PromptPARConfig(vis_prompt=0, use_div=False, use_vismask=False,
                                                           use_gl=False, mm_init="backbone_last",
                                                           ln_post=False))
    with torch.no_grad():
        torch.testing.assert_close(off.visual(x).tokens, raw, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(on.visual(x).tokens, raw, atol=1e-3)


# -- layout, regions, prompts in the sequence ------------------------------------------------------
def test_region_tokens_are_read_at_the_layout_indices():
    model = build()
    lay = model.layout
    assert lay.length == 1 + 4 + 10 + 64 and lay.part_positions == (3, 6, 9, 12)
    assert model.stripes == ((0, 2), (1, 4), (3, 6), (5, 7))
    with torch.no_grad():
        vis = model.visual(images())
    assert vis.tokens.shape == (2, lay.length, 48) and vis.regions.shape == (2, 5, 48)
    torch.testing.assert_close(vis.regions, vis.tokens[:, [0, 3, 6, 9, 12]])
    official = build(global_token="first_prompt")
    assert official.visual.region_indices == (1, 3, 6, 9, 12)


def test_stripe_mask_isolates_part_tokens_from_other_stripes():
    # In a one-layer ViT, part 1 sees only its group and patch rows 0-2 (deeper layers mix in the
    # patches' own full attention): changing the bottom rows must leave it unchanged, while the
    # CLS (which sees everything) changes.
    one_layer = dict(vision_layers=1)
    model = build(clip_changes=one_layer)
    x = images(1)
    y = x.clone()
    y[..., 48:, :] += 1.0  # patch rows 6-7 only
    with torch.no_grad():
        a, b = model.visual(x), model.visual(y)
    part1 = model.layout.part_positions[0]
    torch.testing.assert_close(a.tokens[:, part1], b.tokens[:, part1], rtol=0, atol=1e-6)
    assert not torch.allclose(a.tokens[:, 0], b.tokens[:, 0], atol=1e-4)
    # without the mask the part token sees the whole image
    free = build(clip_changes=one_layer, use_vismask=False)
    with torch.no_grad():
        assert not torch.allclose(free.visual(x).tokens[:, part1], free.visual(y).tokens[:, part1], atol=1e-4)


def test_every_prompt_layer_is_used_and_deeper_ones_are_not():
    model = build(vis_depth=3)  # 3 > the tiny backbone's 2 layers: allocated, unused
    model.train()
    out = model.visual(images())
    out.tokens.sum().backward()
    grad = model.visual.prompt_deep.grad
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    assert torch.count_nonzero(grad[2]) == 0
    report = {r["group"]: r for r in model.parameter_report()}
    assert report["visual prompts"]["inert"] == 10 * 128


# -- text prompts (spec §6, §15 check 4) ------------------------------------------------------------
def test_official_text_prompts_are_bit_identical_and_get_zero_gradient():
    model = build(text_prompt_placement="official", text_cache=False)
    model.train()
    with torch.no_grad():
        before = model.text().clone()
        model.text.prompt_text_deep.add_(torch.randn_like(model.text.prompt_text_deep))
    after = model.text()
    assert torch.equal(before, after)
    after.sum().backward()
    grad = model.text.prompt_text_deep.grad
    assert grad is not None and torch.count_nonzero(grad) == 0
    assert model.inert_parameter_names() == ["text.prompt_text_deep"]
    # the features are frozen CLIP's (up to kernel rounding: the sequence is 2 tokens longer)
    plain = build(use_textprompt=False)
    with torch.no_grad():
        torch.testing.assert_close(plain.text(), before, rtol=1e-5, atol=1e-5)


def test_effective_text_prompts_change_features_and_get_gradients():
    model = build(text_prompt_placement="effective", text_cache=False)
    model.train()
    with torch.no_grad():
        before = model.text().clone()
        model.text.prompt_text_deep.add_(0.5 * torch.randn_like(model.text.prompt_text_deep))
    after = model.text()
    assert not torch.allclose(before, after, atol=1e-4)
    after.square().sum().backward()
    grad = model.text.prompt_text_deep.grad
    assert grad[:, :, 0].abs().sum() > 0 and grad[-1].abs().sum() > 0  # every layer, every attribute
    assert model.inert_parameter_names() == []


def test_effective_prompts_need_free_token_slots():
    long_sentence = " ".join(["a"] * 74)  # 74 tokens + SOT + EOT = 76 of 77 slots: 1 free, 2 needed
    assert int(tokenize([long_sentence]).argmax()) == 75
    with pytest.raises(ValueError, match="text_prompt=2"):
        build(sentences=[long_sentence, "a hat"], text_prompt_placement="effective")
    build(sentences=[long_sentence, "a hat"], text_prompt_placement="official")  # fits without shifting
    build(sentences=[long_sentence, "a hat"], text_prompt_placement="effective", text_prompt=1)


def test_text_cache_is_reused_and_invalidated():
    model = build(text_prompt_placement="effective")
    with torch.no_grad():
        first = model.text()
        assert model.text() is first  # eval + no grad: cached
        model.text.prompt_text_deep.mul_(2.0)  # in-place change bumps the version counter
        second = model.text()
    assert second is not first and not torch.equal(first, second)
    model.train()  # under autograd with trainable effective prompts: never cached
    t1, t2 = model.text(), model.text()
    assert t1 is not t2 and t1.requires_grad
    official = build(text_prompt_placement="official")
    official.train()
    assert official.text() is official.text()  # inert prompts: always cacheable
    model.eval()
    assert model.text._cache is None  # train()/eval() clears it


# -- GL branch (spec §3.4, §14.3) -------------------------------------------------------------------
def test_gl_aggregation_per_sample_and_last_sample_by_hand():
    probs = torch.tensor([
        [[0.1, 0.9], [0.6, 0.4], [0.2, 0.8]],  # sample 0: global, part 1, part 2
        [[0.5, 0.5], [0.3, 0.7], [0.4, 0.6]],  # sample 1
    ])
    gl = GlobalLocalSimilarity(2, threshold=0.5)
    # sample 0: max over parts (0.6, 0.8) > 0.5 -> max; sample 1: (0.4, 0.7): attr 0 -> min 0.3, attr 1 -> 0.7
    expected = torch.tensor([[(0.6 + 0.1) / 2, (0.8 + 0.9) / 2], [(0.3 + 0.5) / 2, (0.7 + 0.5) / 2]])
    torch.testing.assert_close(gl.aggregate(probs), expected)
    last = GlobalLocalSimilarity(2, threshold=0.5, aggregation="last_sample")
    agg_last = torch.tensor([0.3, 0.7])  # sample 1's aggregate, broadcast to both
    torch.testing.assert_close(last.aggregate(probs), (agg_last + probs[:, 0]) / 2)


def test_gl_softmax_runs_over_attributes():
    gl = GlobalLocalSimilarity(3)
    p = gl.probabilities(torch.randn(2, 5, 8), torch.randn(3, 8), torch.tensor(100.0))
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 5))
    sig = GlobalLocalSimilarity(3, normalize="sigmoid")
    assert not torch.allclose(sig.probabilities(torch.randn(2, 5, 8), torch.randn(3, 8), torch.tensor(1.0)).sum(-1),
                              torch.ones(2, 5))


def test_last_sample_mode_leaks_across_the_batch_per_sample_does_not():
    x = images(3)
    y = x.clone()
    y[2] = torch.randn_like(y[2])  # change only the last image
    for mode, leaks in (("per_sample", False), ("last_sample", True)):
        model = build(gl_aggregation=mode)
        with torch.no_grad():
            a, b = model(x).aux_logits, model(y).aux_logits
        same = torch.allclose(a[0], b[0], atol=1e-6)
        assert same != leaks, mode


# -- fusion and heads (spec §3.5) ---------------------------------------------------------------------
def test_vectorised_heads_equal_a_loop_of_linear_heads():
    heads = AttributeHeads(7, 32)
    x = torch.randn(4, 7, 32)
    linears = heads.to_linear_heads()
    loop = torch.cat([linears[i](x[:, i]) for i in range(7)], dim=1)  # (B, A)
    torch.testing.assert_close(heads(x), loop)
    other = AttributeHeads(7, 32)
    other.load_linear_heads(linears)
    torch.testing.assert_close(other(x), loop)


def test_backbone_last_block_equals_the_clip_block():
    clip_model = tiny_clip()
    block = MMBlock(128, 2, eps=1e-5, quick_gelu=True)
    _copy_clip_block(block, clip_model.visual.transformer.resblocks[-1])
    x = torch.randn(2, 9, 128)
    with torch.no_grad():
        expected, _ = clip_block_forward(clip_model.visual.transformer.resblocks[-1], x)
        via_clip = clip_model.visual.transformer.resblocks[-1](x.transpose(0, 1)).transpose(0, 1)
        got, _ = block.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, via_clip, rtol=1e-5, atol=1e-5)


def test_timm_state_dict_loads_into_the_mm_former(tmp_path):
    # A fake timm ViT-B/16 state dict: 12 blocks with timm's names; the last one must be used.
    ref = [MMBlock(768, 12) for _ in range(12)]
    state = {f"blocks.{i}.{k}": v for i, b in enumerate(ref) for k, v in b.state_dict().items()}
    state.update({"norm.weight": torch.rand(768), "norm.bias": torch.rand(768),
                  "cls_token": torch.zeros(1, 1, 768)})
    path = tmp_path / "vit.pth"
    torch.save({"model": state}, path)
    model = create_model("promptpar-micro", SENTENCES, pretrained=False, device="cpu",
                         backbone_model=tiny_clip(), text_prompt=2, mm_init=str(path))
    assert model.mm_source == "vit" and model.config.fusion_width == 768
    blk = model.fusion.blocks[0]
    torch.testing.assert_close(blk.attn.qkv.weight, ref[11].attn.qkv.weight)
    torch.testing.assert_close(model.fusion.norm.weight, state["norm.weight"])
    assert isinstance(blk.mlp.act, nn.GELU) and blk.norm1.eps == 1e-6
    assert blk.drop_path1.rate == pytest.approx(0.1)  # linspace(0, 0.1, 12)[11]
    with torch.no_grad():
        assert model(images()).logits.shape == (2, 5)


def test_missing_vit_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PARKIT_VIT_B16", str(tmp_path / "absent.pth"))
    from parkit.model.factory import _vit_state
    from parkit.model.fusion import MMWeightsUnavailable

    with pytest.raises(MMWeightsUnavailable, match="backbone_last"):
        _vit_state(PromptPARConfig(), pretrained=True)
    assert _vit_state(PromptPARConfig(), pretrained=False) is None


def test_linear_fusion_counts_the_part_tokens():
    model = build(use_mm_former=False)
    assert model.fusion.token_mixer.in_features == 5 + model.layout.length  # A + 1 + 4 + P + patches
    with torch.no_grad():
        assert model(images()).logits.shape == (2, 5)


def test_drop_path_is_active_in_train_mode_only():
    model = build(mm_drop_path=0.5)
    x = images(4)
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x).logits, model(x).logits
    assert torch.equal(e1, e2)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        t1 = model(x).logits
        t2 = model(x).logits
    assert not torch.allclose(t1, t2)


# -- trainable groups (spec §7, §9) -------------------------------------------------------------------
def test_param_groups_are_the_explicit_lists():
    model = build()
    names = model.trainable_parameter_names()
    assert names["prompt"] == ["visual.prompt_deep", "visual.part_class_embedding", "text.prompt_text_deep",
                               "gl.temperature", "gl.agg_bn.weight", "gl.agg_bn.bias"]
    assert names["fusion"] == ["fusion.word_embed.weight", "fusion.word_embed.bias",
                               "fusion.visual_embed.weight", "fusion.visual_embed.bias",
                               "fusion.blocks.0.norm1.weight", "fusion.blocks.0.norm1.bias",
                               "fusion.blocks.0.norm2.weight", "fusion.blocks.0.norm2.bias",
                               "fusion.norm.weight", "fusion.norm.bias", "fusion.heads.weight",
                               "fusion.heads.bias", "fusion.bn.weight", "fusion.bn.bias"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(names["prompt"]) | set(names["fusion"])
    groups = model.param_groups()
    assert [id(p) for p in groups["prompt"]] == [id(model.get_parameter(n)) for n in names["prompt"]]
    # CLIP's own LayerNorms stay frozen although their names contain "ln"/"norm"-like parts
    assert not model.visual.ln_post.weight.requires_grad and not model.text.ln_final.weight.requires_grad


def test_official_flags_freeze_visual_embed_and_keep_mm_norms():
    model = build(**{k: v for k, v in PromptPARConfig.official().to_dict().items()
                     if k in ("train_visual_embed", "train_mm_norms", "text_prompt_placement", "ln_post",
                              "global_token", "gl_aggregation")})
    names = model.trainable_parameter_names()["fusion"]
    assert "fusion.visual_embed.weight" not in names and "fusion.blocks.0.norm1.weight" in names
    assert not model.fusion.visual_embed.weight.requires_grad
    # the frozen random visual_embed is saved so a checkpoint restores the same model
    assert "fusion.visual_embed.weight" in model.trainable_state_dict()
    no_norms = build(train_mm_norms=False)
    assert "fusion.blocks.0.norm1.weight" not in no_norms.trainable_parameter_names()["fusion"]


# -- checkpoints ---------------------------------------------------------------------------------------
def test_trainable_state_roundtrip_restores_outputs():
    a = build(seed=0)
    with torch.no_grad():  # make the BN statistics non-trivial
        a.train()
        a(images(4))
        a.eval()
    sd = a.trainable_state_dict(include_config=True)
    assert "__config__" in sd and "fusion.bn.running_mean" in sd and "gl.agg_bn.running_var" in sd
    assert not any(k.startswith(("visual.transformer", "text.transformer")) for k in sd)
    b = build(seed=0)  # same CLIP weights, different new-parameter draws
    b.visual.prompt_deep.data.normal_()
    with torch.no_grad():
        assert not torch.allclose(a(images()).logits, b(images()).logits)
        assert b.load_trainable_state_dict(sd) == []
        torch.testing.assert_close(a(images()).logits, b(images()).logits)
        torch.testing.assert_close(a(images()).aux_logits, b(images()).aux_logits)


@pytest.mark.parametrize("other, setting", [
    (dict(sentences=SENTENCES[:3]), "attribute count"),
    (dict(vis_prompt=5), "vis_prompt"),
    (dict(vis_depth=1), "vis_depth"),
    (dict(clip_changes=dict(vision_width=64)), "backbone vision width"),
    (dict(text_prompt=3), "text_prompt"),
])
def test_checkpoint_from_another_configuration_names_the_setting(other, setting):
    source = build(**other)
    target = build()
    with pytest.raises(StateDictMismatch, match=setting):
        target.load_trainable_state_dict(source.trainable_state_dict())


def test_checkpoint_with_missing_or_extra_tensors_names_the_switch():
    with pytest.raises(StateDictMismatch, match="use_textprompt"):
        build().load_trainable_state_dict(build(use_textprompt=False).trainable_state_dict())
    with pytest.raises(StateDictMismatch, match="use_gl"):
        build(use_gl=False).load_trainable_state_dict(build().trainable_state_dict())


def test_check_compatible_names_settings_and_reports_behaviour_changes():
    model = build()
    cfg = build(vis_prompt=5).config_dict()
    with pytest.raises(StateDictMismatch, match="vis_prompt \\(checkpoint 5, model 10\\)"):
        model.check_compatible(cfg)
    notes = model.check_compatible(build(ln_post=False).config_dict())
    assert any(n.startswith("ln_post") for n in notes)


# -- output contract ------------------------------------------------------------------------------------
def test_forward_output_contract_and_attention_extras():
    model = build()
    with torch.no_grad():
        out = model(images())
    assert isinstance(out, PAROutput) and out.logits.shape == (2, 5) and out.aux_logits.shape == (2, 5)
    assert out.extras == {}
    model.return_attention = True
    with torch.no_grad():
        out = model(images())
    att = out.extras["visual_attention"]
    assert att.shape == (2, 79, 79)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 79))
    part1 = model.layout.part_positions[0]
    assert att[:, part1, 0].abs().max() == 0  # masked: part 1 never attends to CLS
    assert out.extras["cls_patch_attention"].shape == (2, 8, 8)
    assert out.extras["part_patch_attention"].shape == (2, 4, 8, 8)
    assert out.extras["fusion_attention"].shape == (2, 5 + 79, 5 + 79)
    assert model.image_size == 64 and model.normalization == "official"
    assert model.attributes == SENTENCES and model.sentences == SENTENCES


def test_wrong_image_size_raises_a_clear_error():
    with pytest.raises(ValueError, match="64x64"):
        build()(images(size=32))


def test_autocast_bfloat16_runs_and_returns_float32_logits():
    model = build()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images())
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()


# -- every preset: forward + backward, gradients where (and only where) meant (timm-style) ------------
def _check_gradients(model):
    inert = set(getattr(model, "inert_parameter_names", lambda: [])())
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {name} received a gradient"
        elif name not in inert:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name} got no gradient"
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_smoke_forward_backward(preset):
    if PRESETS[preset][1].get("kind", "promptpar") != "promptpar":
        pytest.importorskip("parkit.model.baselines", reason="baselines are built by parkit.model.baselines")
    overrides = {}
    base = PromptPARConfig(**PRESETS[preset][1])
    if base.kind == "promptpar":
        overrides = dict(vis_prompt=10 if base.use_div else 4, text_prompt=2)  # small, tiny-backbone sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(preset, SENTENCES, pretrained=False, device="cpu", backbone_model=tiny_clip(),
                             **overrides)
    x = images(3)
    model.eval()  # eval: BatchNorm uses running statistics, so every head bias matters
    out = model(x)
    assert isinstance(out, PAROutput) and out.logits.shape == (3, 5)
    loss = nn.functional.binary_cross_entropy_with_logits(out.logits, torch.ones_like(out.logits))
    if out.aux_logits is not None:
        loss = loss + 0.5 * out.aux_logits.sigmoid().sum()
    if any(p.requires_grad for p in model.parameters()):  # zero-shot CLIP trains nothing
        loss.backward()
    _check_gradients(model)
    assert set(model.param_groups()) == {"prompt", "fusion"}
    model.train()  # and a train-mode step runs (DropPath, BN batch statistics)
    model.zero_grad()
    out = model(x)
    assert out.logits.shape == (3, 5)
    if out.logits.requires_grad:
        out.logits.sum().backward()


def test_micro_backbone_preset_builds_and_trains():
    from parkit.backbone import clip_config

    cfg = clip_config("micro")
    model = create_model("promptpar-micro", SENTENCES, pretrained=False, device="cpu")
    assert model.image_size == cfg["image_resolution"]
    assert model.config.fusion_width == cfg["vision_width"] and model.mm_source == "backbone"
    assert model.layout.length == 1 + 4 + 10 + (cfg["image_resolution"] // cfg["vision_patch_size"]) ** 2
    model.train()
    out = model(images(2, size=model.image_size))
    (out.logits.sum() + out.aux_logits.sum()).backward()
    assert model.visual.prompt_deep.grad.abs().sum() > 0


def test_create_model_rejects_unknown_and_ill_typed_overrides():
    with pytest.raises(ConfigError, match="valid settings are:.*vis_prompt"):
        create_model("promptpar-micro", SENTENCES, pretrained=False, device="cpu", vis_prompts=10)
    with pytest.raises(ConfigError, match="vis_prompt must be int"):
        create_model("promptpar-micro", SENTENCES, pretrained=False, device="cpu", vis_prompt="10")
    assert "promptpar-micro" in list_presets()


def test_compiled_inference_model_gives_the_eager_outputs():
    # torch.compile with inductor freezing (parkit.train.inference.compile_for_inference): the
    # text cache, stripe mask, prompt-skipping layers and BN must all survive compilation.
    from parkit.train.inference import compile_for_inference

    model = build(seed=3).eval()
    with torch.no_grad():
        model.fusion.bn.running_mean.uniform_(-0.5, 0.5)
        model.fusion.bn.running_var.uniform_(0.5, 2.0)
    x = images(4, seed=2)
    with torch.inference_mode():
        eager = model(x).logits
        compiled = compile_for_inference(model, x)
        out = compiled(x).logits
        other = images(4, seed=5)
        torch.testing.assert_close(compiled(other).logits, model(other).logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
