"""The model contract (parkit.model.contract.PARModel), checked for every registered preset (timm's habit).

Every model `create_model` builds -- PromptPAR, VPT-deep, the official-compat preset and every
baseline -- is a `PARModel`; its trainable state round-trips strictly; a state dict from another
configuration raises `StateDictMismatch` whose message names the differing key or setting, for
PromptPAR and the baselines alike; its eval transform yields (3, image_size, image_size).

The presets are built on a tiny random CLIP (as the smoke test in test_model_promptpar.py does), so
the whole file runs in seconds; the micro presets are also built by name on the random micro CLIP.
"""
import warnings

import pytest
import torch
from PIL import Image
from torch import nn

from parkit.model import (PARModel, PAROutput, StateDictMismatch, count_parameters, create_model, get_config,
                          list_presets)
from parkit.model.contract import REPORT_FIELDS

# A tiny ViT CLIP: 64 px / patch 8 = 8x8 grid.
TINY = dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2,
            transformer_layers=2)
SENTENCES = ["A pedestrian wearing a hat", "A pedestrian in jeans", "A male pedestrian",
             "A pedestrian with a backpack", "A pedestrian in sneakers"]
NAMES = ["hat", "jeans", "male", "backpack", "sneakers"]
PRESETS = list_presets()


def tiny_clip(seed=0):
    import clip.model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clip.model.CLIP(**TINY).eval()


def build(preset, n_attributes=len(SENTENCES), seed=0, init_seed=100, **extra):
    """The preset on the tiny CLIP `seed`; `init_seed` draws the new (prompt, head) parameters."""
    base = get_config(preset)
    overrides = dict(vis_prompt=10 if base.use_div else 4, text_prompt=2) if base.kind == "promptpar" else {}
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        torch.manual_seed(init_seed)
        model = create_model(preset, NAMES[:n_attributes], sentences=SENTENCES[:n_attributes], pretrained=False,
                             device="cpu", backbone_model=tiny_clip(seed), **{**overrides, **extra})
    return model.eval()


def images(n=4, seed=1):
    return torch.randn(n, 3, TINY["image_resolution"], TINY["image_resolution"],
                       generator=torch.Generator().manual_seed(seed))


def _unique_parameters(model):
    return {id(p): p for p in model.parameters()}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_is_a_parmodel_with_the_contract(preset):
    model = build(preset)
    assert isinstance(model, PARModel)
    assert model.attributes == NAMES and model.sentences == SENTENCES and model.num_attributes == 5
    assert model.config.kind == get_config(preset).kind
    assert model.image_size == TINY["image_resolution"] and model.normalization in ("official", "clip")
    out = model(images(2))
    assert isinstance(out, PAROutput) and out.logits.shape == (2, 5)
    # param_groups lists exactly the parameters that require gradients, under the two optimiser keys.
    groups = model.param_groups()
    assert set(groups) == {"prompt", "fusion"}
    listed = {id(p) for ps in groups.values() for p in ps}
    assert listed == {i for i, p in _unique_parameters(model).items() if p.requires_grad}
    # parameter_report: the contract's fields, every parameter in exactly one group.
    report = model.parameter_report()
    assert all(tuple(row) == REPORT_FIELDS for row in report)
    assert sum(r["parameters"] for r in report) == sum(p.numel() for p in _unique_parameters(model).values())
    trained = sum(r["parameters"] for r in report if r["trainable"])
    assert trained == sum(p.numel() for ps in groups.values() for p in ps)
    assert count_parameters(model)["total"] == sum(r["parameters"] for r in report)


@pytest.mark.parametrize("preset", PRESETS)
def test_eval_transform_gives_the_model_input(preset):
    model = build(preset)
    x = model.eval_transform()(Image.new("RGB", (30, 70), (200, 10, 10)))  # a tall crop, letterboxed
    assert x.shape == (3, model.image_size, model.image_size) and x.dtype == torch.float32
    model(x.unsqueeze(0))  # and the model accepts it


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.endswith("-micro")])
def test_micro_presets_by_name(preset):
    from parkit.backbone import clip_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(preset, "PETA", pretrained=False, device="cpu")
    size = clip_config("micro")["image_resolution"]
    assert isinstance(model, PARModel) and model.image_size == size
    assert model.eval_transform()(Image.new("RGB", (50, 120))).shape == (3, size, size)


def _perturb(model, seed=7):
    """Move every tensor of the trainable state away from its initial value."""
    g = torch.Generator().manual_seed(seed)
    own = model.state_dict()
    with torch.no_grad():
        for key in model.trainable_state_keys():
            t = own[key]
            if key.endswith("running_var"):
                t.mul_(1.5)
            elif t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape, generator=g))
            else:
                t.add_(3)  # num_batches_tracked


@pytest.mark.parametrize("preset", PRESETS)
def test_trainable_state_round_trips_strictly(preset):
    # Built alike (frozen tensors a pretrained file would restore are equal), then the trainable
    # state of each moved differently.
    source, target = build(preset), build(preset)
    _perturb(source)
    _perturb(target, seed=8)
    state = source.trainable_state_dict(include_config=True)
    x = images()
    with torch.no_grad():
        want = source(x).logits
        assert not torch.allclose(target(x).logits, want)
        assert target.load_trainable_state_dict(state) == []        # nothing differs in behaviour
        torch.testing.assert_close(target(x).logits, want, atol=1e-6, rtol=0)
    mine = target.trainable_state_dict()
    assert list(mine) == target.trainable_state_keys() == [k for k in state if k != "__config__"]
    for key, value in mine.items():
        assert torch.equal(value, state[key]), key
    # The state dict is a snapshot: later changes of the model do not reach it.
    _perturb(target, seed=9)
    assert all(torch.equal(v, state[k]) for k, v in mine.items())


def _mismatch(model, state) -> str:
    with pytest.raises(StateDictMismatch) as info:
        model.load_trainable_state_dict(state)
    assert type(info.value) is StateDictMismatch  # the same type for every model
    return str(info.value)


@pytest.mark.parametrize("preset", PRESETS)
def test_mismatched_state_dict_names_the_key_or_setting(preset):
    model = build(preset)
    state = model.trainable_state_dict()
    dropped = next(iter(state))
    message = _mismatch(model, {k: v for k, v in state.items() if k != dropped})
    assert "missing" in message and repr(dropped) in message
    extra = {**state, "surplus.weight": torch.zeros(1)}
    assert "unexpected 'surplus.weight'" in _mismatch(model, extra)

    # Another attribute list: the shapes differ, and the message says it is the attribute count.
    fewer = build(preset, n_attributes=3)
    assert "attribute count differs (checkpoint 3, model 5)" in _mismatch(model, fewer.trainable_state_dict())
    # With the saved config the setting is named before any tensor is compared.
    message = _mismatch(model, fewer.trainable_state_dict(include_config=True))
    assert "num_attributes (checkpoint 3, model 5)" in message

    # Another model kind: its keys are named (without config) or its kind is (with config).
    other = build("linear-probe" if model.config.kind != "linear_probe" else "promptpar-vitb16")
    message = _mismatch(model, other.trainable_state_dict())
    assert ("unexpected" in message or "missing" in message) and "kind" in message
    message = _mismatch(model, other.trainable_state_dict(include_config=True))
    assert f"kind (checkpoint {other.config.kind!r}, model {model.config.kind!r})" in message


def test_non_strict_loading_skips_missing_keys_but_not_shapes():
    model, source = build("vtb"), build("vtb")
    _perturb(source)
    state = source.trainable_state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith("heads.")}
    model.load_trainable_state_dict(kept, strict=False)
    assert torch.equal(model.word_embed.weight, source.word_embed.weight)
    assert not torch.equal(model.heads.weight, source.heads.weight)
    fewer = build("vtb", n_attributes=3).trainable_state_dict()
    with pytest.raises(StateDictMismatch, match="heads.weight: attribute count differs"):
        model.load_trainable_state_dict(fewer, strict=False)


def test_a_model_missing_part_of_the_contract_cannot_be_built():
    class Incomplete(PARModel):
        def forward(self, images, return_attention=None):
            return PAROutput(images.mean((1, 2, 3))[:, None])

        def param_groups(self):
            return {"prompt": [], "fusion": []}

    with pytest.raises(TypeError, match="parameter_report|trainable_state_keys"):
        Incomplete()
    assert issubclass(PARModel, nn.Module)
