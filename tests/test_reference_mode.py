"""Reference mode (parkit.model.reference): the official computation structure gives parkit's outputs
and gradients, really recomputes the text at every forward, really uses the unfused attention and
per-attribute heads, and its full checkpoint is what the official code saves (spec §3, §12, §14.15).

The reference shares parkit's weights, not its code: its stripes, mask, region rows, global-local
probabilities, MM-former blocks and heads are its own, so a mistake in parkit's geometry,
similarity or fusion code makes the outputs below disagree."""
import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from parkit.model import PromptPAR, PromptPARConfig, create_model
from parkit.model.reference import ReferencePromptPAR, official_gpu_dtype, tensor_bytes

TINY = dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2, transformer_layers=2)
SENTENCES = ["A pedestrian wearing a hat", "A pedestrian in jeans", "A male pedestrian",
             "A pedestrian with a backpack", "A pedestrian carrying a plastic bag today"]
OFFICIAL = {k: v for k, v in PromptPARConfig.official().to_dict().items() if k not in ("backbone", "mm_init")}

CONFIGS = {
    "clean": {},
    "official-flags": OFFICIAL,
    "vit-block-mm": dict(mm_init="random"),
    "linear-fusion": dict(use_mm_former=False),
    "plain-vpt": dict(use_div=False, use_vismask=False, use_gl=False, vis_depth=1),
    "no-prompts": dict(vis_prompt=0, use_textprompt=False, text_prompt=0),
    "sigmoid-gl-two-regions": dict(gl_softmax="sigmoid", div_num=2, vis_prompt=6),
}


def tiny(seed=0, **overrides):
    import clip.model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = PromptPARConfig(**{**dict(vis_prompt=10, text_prompt=2, mm_init="backbone_last"), **overrides})
        model = PromptPAR(clip.model.CLIP(**TINY), SENTENCES, cfg)
        model.fusion.bn.running_mean.uniform_(-0.5, 0.5)
        if model.gl is not None:
            model.gl.agg_bn.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():  # not the init value 1, under which sims / tau == sims * tau
                model.gl.temperature.fill_(0.8)
    return model.eval()


def images(n=3, seed=1):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("attention", ["explicit", "module"])
def test_eval_outputs_equal_parkit(name, attention):
    model = tiny(**CONFIGS[name])
    ref = ReferencePromptPAR(model, attention=attention)
    x = images()
    with torch.no_grad():
        a, b = model(x), ref(x)
    torch.testing.assert_close(b.logits, a.logits, atol=2e-5, rtol=1e-5)
    if a.aux_logits is None:
        assert b.aux_logits is None
    else:
        torch.testing.assert_close(b.aux_logits, a.aux_logits, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["clean", "official-flags"])
def test_train_mode_outputs_and_gradients_equal_parkit(name):
    """Same seed -> same DropPath draws; batch-statistics BN; the gradients of every trained tensor agree
    (the per-attribute heads against the rows of parkit's stacked head)."""
    model = tiny(**CONFIGS[name]).train()
    ref = ReferencePromptPAR(model)
    x = images(4)
    target = torch.rand(4, len(SENTENCES), generator=torch.Generator().manual_seed(2)).round()

    def step(m):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        out = m(x)
        loss = F.binary_cross_entropy_with_logits(out.logits, target)
        if out.aux_logits is not None:
            loss = loss + 0.5 * F.binary_cross_entropy_with_logits(out.aux_logits, target)
        loss.backward()
        return out

    a = step(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    b = step(ref)
    torch.testing.assert_close(b.logits, a.logits, atol=2e-5, rtol=1e-5)
    assert "visual.prompt_deep" in grads and "fusion.heads.weight" in grads
    for n, p in model.named_parameters():
        if n in grads and not n.startswith("fusion.heads."):
            torch.testing.assert_close(p.grad, grads[n], atol=1e-5, rtol=1e-4, msg=n)
    head_w = torch.cat([h.weight.grad for h in ref.weight_layer])  # (A, W)
    head_b = torch.cat([h.bias.grad for h in ref.weight_layer])
    torch.testing.assert_close(head_w, grads["fusion.heads.weight"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(head_b, grads["fusion.heads.bias"], atol=1e-5, rtol=1e-4)
    if name == "official-flags":  # the inert text prompts get exactly zero gradient either way (spec §6)
        assert torch.count_nonzero(model.text.prompt_text_deep.grad) == 0


def test_text_is_recomputed_every_forward_and_heads_are_separate():
    model = tiny()
    ref = ReferencePromptPAR(model)
    calls = {"n": 0}
    model.text.ln_final.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    x = images(2)
    with torch.no_grad():
        model(x), model(x), model(x)
        parkit_calls = calls["n"]
        ref(x), ref(x), ref(x)
    assert parkit_calls == 1  # parkit's text cache
    assert calls["n"] - parkit_calls == 3  # the reference: no cache
    assert len(ref.weight_layer) == len(SENTENCES)
    assert all(tuple(h.weight.shape) == (1, 128) for h in ref.weight_layer)


def test_explicit_mode_never_calls_fused_attention(monkeypatch):
    model = tiny()
    ref = ReferencePromptPAR(model, attention="explicit")
    calls = {"n": 0}
    real = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        ref(images(2))
        assert calls["n"] == 0
        model.text.clear_cache()
        model(images(2))
    # parkit: 2 visual + 2 text layers + 1 MM block, all through SDPA
    assert calls["n"] == 5


def test_full_state_dict_is_the_official_content_and_sizes_add_up():
    model = tiny()
    ref = ReferencePromptPAR(model)
    full = ref.full_state_dict()
    trained = model.trainable_state_dict()
    # Every frozen CLIP tensor is in the official checkpoint, none in parkit's.
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in full
    assert "text.token_embedding.weight" in full
    assert not any(k.startswith(("visual.transformer.", "text.transformer.", "text.token_embedding")) for k in trained)
    expected = sum(t.numel() * t.element_size() for t in full.values())
    assert tensor_bytes(full) == expected
    assert tensor_bytes(trained) < tensor_bytes(full) / 10
    # The official GPU loader halves conv/linear/attention weights and the projections, not the rest.
    half = tensor_bytes(full, official_gpu_dtype)
    fp16_names = [k for k in full if official_gpu_dtype(k) == torch.float16]
    assert half == expected - sum(full[k].numel() * 2 for k in fp16_names)
    assert official_gpu_dtype("visual.proj") == torch.float16
    assert official_gpu_dtype("text.text_projection") == torch.float16
    assert official_gpu_dtype("visual.prompt_deep") == torch.float32
    assert official_gpu_dtype("text.token_embedding.weight") == torch.float32
    assert official_gpu_dtype("visual.ln_pre.weight") == torch.float32


def test_meta_model_sizes_without_memory():
    """Checkpoint sizes of big presets are computed on the meta device (no bytes allocated)."""
    model = create_model("promptpar-micro", SENTENCES, pretrained=False, device="meta")
    ref = ReferencePromptPAR(model)
    assert tensor_bytes(ref.full_state_dict()) > tensor_bytes(model.trainable_state_dict()) > 0


@pytest.mark.parametrize("name", ["clean", "official-flags"])
def test_reference_text_runs_the_full_context_parkit_cuts_after_the_last_eot(name):
    model = tiny(**CONFIGS[name])
    ref = ReferencePromptPAR(model)
    lengths = []
    model.text.transformer.resblocks[0].ln_1.register_forward_hook(lambda m, i, o: lengths.append(i[0].shape))
    with torch.no_grad():
        model.text.encode()
        ref.encode_text()
    n = model.text.num_prompts
    longest = int(model.text.eot_index.max()) + 1
    parkit_len = longest + n if name == "clean" else 77 + n  # official: inert prompts kept at 77.. (spec §6)
    assert lengths[0] == (len(SENTENCES), parkit_len, 64)  # parkit: batch-first
    assert lengths[1] == (77 + (n if name == "official-flags" else 0), len(SENTENCES), 64)  # official: seq-first


def test_wrapping_something_else_is_refused():
    with pytest.raises(ValueError, match="wraps a parkit PromptPAR"):
        ReferencePromptPAR(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="attention must be one of"):
        ReferencePromptPAR(tiny(), attention="flash")


def test_reference_computes_with_its_own_code():
    """The reference takes tensors and settings from parkit, never its geometry, similarity or
    fusion code: the only parkit names it imports are types (its output, and the model class it
    checks that it wraps)."""
    import parkit.model.reference as reference_module

    tree = ast.parse(Path(reference_module.__file__).read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names if (node.module or "").startswith("parkit") or node.level}
    assert imported == {("parkit.model.promptpar", "PAROutput"), ("parkit.model.promptpar", "PromptPAR")}
    assert not [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
                if a.name.startswith("parkit")]


def test_reference_geometry_matches_the_spec_tables():
    """Spec §4.1 / §3.2 step 5 for ViT-L/14 with P = 50, written out (the reference's own rule)."""
    from parkit.model.reference import reference_layout, reference_stripes, reference_visual_mask

    assert reference_stripes(16, 4, 2) == [(0, 4), (3, 8), (7, 12), (11, 15)]
    assert reference_layout(50, 4, True) == ([0, 11, 22, 33, 44], 10, 55)
    assert reference_layout(50, 4, False) == ([0], 50, 51)
    allowed = torch.isfinite(reference_visual_mask(50, 16, 4, 2))
    assert allowed.shape == (311, 311) and allowed[:11].all() and allowed[55:].all()
    for first, (a, b) in {11: (55, 134), 22: (103, 198), 33: (167, 262), 44: (231, 310)}.items():
        expect = torch.zeros(311, dtype=torch.bool)
        expect[first:first + 11] = True
        expect[a:b + 1] = True
        assert torch.equal(allowed[first], expect) and torch.equal(allowed[first + 10], expect), first
