"""Tests of parkit.backbone: configs, loading from files and the cache, checksums, the offline
message, the tokenizer, the packed micro checkpoint, zero-shot scoring and a tiny pretraining run."""
import urllib.error
import urllib.request

import pytest
import torch

from parkit.backbone import (
    MICRO_CONFIG, BackboneFileError, BackboneUnavailable, clip_config, count_clip_parameters,
    list_backbones, load_clip, sha256_file, tokenize)
from parkit.backbone import loading, micro
from parkit.backbone.loading import build_clip, cast_clip, clip_module

# A CLIP small enough to build in milliseconds: 32 px, patch 8 (4x4 grid), 1+1 layers, width 64.
TINY = dict(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
            transformer_layers=1)
SENTENCES = ["A pedestrian wearing a hat", "A female pedestrian", "A pedestrian in shorts"]


@pytest.fixture(scope="module")
def tiny():
    return build_clip(TINY, seed=3)


def _outputs(model):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, model.visual.input_resolution, model.visual.input_resolution, generator=g)
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokenize(SENTENCES))


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# --- configurations ---------------------------------------------------------------------------

def test_configs_names_and_aliases():
    assert list_backbones() == ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "micro"]
    assert clip_config("vit-b-16") == clip_config("ViT-B/16")
    assert clip_config("ViT-L/14")["vision_width"] == 1024  # spec §3.1
    assert clip_config("ViT-L/14@336px")["image_resolution"] == 336
    cfg = clip_config("ViT-B/16")
    cfg["vision_width"] = 1  # a copy: the registry must not change
    assert clip_config("ViT-B/16")["vision_width"] == 768
    with pytest.raises(KeyError, match="ViT-B/16"):
        clip_config("ViT-H/14")


def test_micro_config_grid_supports_four_stripes():
    grid = MICRO_CONFIG["image_resolution"] // MICRO_CONFIG["vision_patch_size"]
    assert grid >= 8 and grid * MICRO_CONFIG["vision_patch_size"] == MICRO_CONFIG["image_resolution"]
    assert clip_config("micro") == MICRO_CONFIG


def test_parameter_counts_match_openai():
    # Reference counts of the released models (FIELD-NOTES: ViT-B/16 149.6 M, ViT-L/14 427.6 M).
    assert count_clip_parameters("ViT-B/16") == 149_620_737
    assert count_clip_parameters("ViT-L/14") == 427_616_513
    assert count_clip_parameters("ViT-B/32") == 151_277_313


def test_random_vitb16_is_real_fp32_and_counts_149_6m():
    model = load_clip("ViT-B/16", pretrained=False, device="cpu")
    n = sum(p.numel() for p in model.parameters())
    assert n == 149_620_737
    assert model.visual.conv1.weight.dtype == torch.float32
    assert model.visual.conv1.weight.device.type == "cpu"
    assert model.visual.conv1.weight.abs().sum() > 0


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_clip(TINY, seed=7)
    assert torch.equal(torch.rand(1), expected_next)  # the global stream was not consumed
    b = build_clip(TINY, seed=7)
    c = build_clip(TINY, seed=8)
    assert torch.equal(a.visual.proj, b.visual.proj)
    assert not torch.equal(a.visual.proj, c.visual.proj)


# --- tokenizer --------------------------------------------------------------------------------

def test_tokenize_matches_clip_and_names_long_sentences():
    clip = clip_module()
    assert torch.equal(tokenize(SENTENCES), clip.tokenize(SENTENCES))
    assert tokenize("A Female Pedestrian").shape == (1, 77)
    long = "a pedestrian " + "wearing a very long coat " * 15
    with pytest.raises(ValueError, match=r"#1 'a pedestrian wearing.*\(\d+ tokens\)"):
        tokenize(["fine", long])
    with pytest.raises(ValueError, match="not a string"):
        tokenize(["fine", 3])


# --- local files ------------------------------------------------------------------------------

def test_state_dict_file_loads_exactly_in_fp32(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    model = load_clip(path, device="cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for got, want in zip(_outputs(model), _outputs(tiny)):
        assert torch.equal(got, want)


def test_fp16_file_is_loaded_as_fp32(tiny, tmp_path):
    # OpenAI's released files hold fp16 weights; they must come back fp32 (not left in fp16).
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in tiny.state_dict().items()}, path)
    model = load_clip(str(path), device="cpu")
    assert model.visual.conv1.weight.dtype == torch.float32
    assert torch.equal(model.visual.conv1.weight, tiny.visual.conv1.weight.half().float())


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning")
def test_torchscript_archive_loads(tiny, tmp_path):
    # OpenAI distributes TorchScript archives; a traced tiny CLIP has the same layout.
    images = torch.randn(2, 3, 32, 32)
    archive = torch.jit.trace(tiny, (images, tokenize(SENTENCES[:2])))
    path = tmp_path / "tiny_jit.pt"
    archive.save(str(path))
    model = load_clip(path, device="cpu")
    for got, want in zip(_outputs(model), _outputs(tiny)):
        assert torch.equal(got, want)


def test_sha256_checked_before_loading(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    good = sha256_file(path)
    assert load_clip(path, sha256=good.upper(), device="cpu") is not None
    with pytest.raises(BackboneFileError, match="SHA-256 mismatch.*tiny.pt"):
        load_clip(path, sha256="0" * 64, device="cpu")


def test_corrupt_and_mismatching_files_raise_clear_errors(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(BackboneFileError, match="truncated.pt.*corrupt"):
        load_clip(truncated, device="cpu")
    sd = tiny.state_dict()
    del sd["visual.proj"]
    torch.save(sd, tmp_path / "noproj.pt")
    with pytest.raises(BackboneFileError, match=r"not a ViT CLIP state dict.*visual\.proj"):
        load_clip(tmp_path / "noproj.pt", device="cpu")
    sd = tiny.state_dict()
    sd["ln_final.bias"] = torch.zeros(5)
    torch.save(sd, tmp_path / "badshape.pt")
    with pytest.raises(BackboneFileError, match="does not fit the CLIP architecture"):
        load_clip(tmp_path / "badshape.pt", device="cpu")
    with pytest.raises(BackboneFileError, match="does not exist"):
        load_clip(tmp_path / "missing.pt", device="cpu")


def test_half_precision_keeps_layernorm_fp32(tiny):
    model = cast_clip(build_clip(TINY), torch.float16)
    assert model.visual.conv1.weight.dtype == torch.float16
    assert model.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16
    assert model.text_projection.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32  # spec §3.1
    assert model.visual.ln_pre.weight.dtype == torch.float32


# --- named backbones: cache and offline -------------------------------------------------------

def test_offline_error_says_what_to_download_and_where(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    with pytest.raises(BackboneUnavailable) as info:
        load_clip("ViT-B/16", cache_dir=tmp_path, device="cpu")
    msg = str(info.value)
    url = clip_module().clip._MODELS["ViT-B/16"]
    assert url in msg
    assert str(tmp_path / "ViT-B-16.pt") in msg
    assert url.split("/")[-2] in msg  # OpenAI's checksum
    assert "load_clip('/path/to/ViT-B-16.pt')" in msg
    assert "URLError" in msg


def test_cache_dir_defaults_to_env(monkeypatch, tmp_path):
    _no_network(monkeypatch)
    monkeypatch.setenv("PARKIT_CLIP_CACHE", str(tmp_path / "envcache"))
    with pytest.raises(BackboneUnavailable, match="envcache/ViT-L-14.pt"):
        load_clip("ViT-L/14", device="cpu")
    # A cache under the home folder is shown as ~/..., so notebook outputs carry no user paths.
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackboneUnavailable, match=r"~/envcache/ViT-L-14\.pt"):
        load_clip("ViT-L/14", device="cpu")


def test_cached_file_is_used_offline_and_checked(monkeypatch, tiny, tmp_path):
    # Register the tiny model under a fake OpenAI URL whose checksum segment is its SHA-256.
    _no_network(monkeypatch)
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    digest = sha256_file(tmp_path / "tiny.pt")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "Tiny.pt").write_bytes((tmp_path / "tiny.pt").read_bytes())
    models = dict(clip_module().clip._MODELS, **{"ViT-B/16": f"https://example.invalid/{digest}/Tiny.pt"})
    monkeypatch.setattr(clip_module().clip, "_MODELS", models)
    assert loading.fetch_openai_clip("ViT-B/16", tmp_path / "cache") == tmp_path / "cache" / "Tiny.pt"
    (tmp_path / "cache" / "Tiny.pt").write_bytes(b"not the model")
    with pytest.raises(BackboneUnavailable, match="wrong SHA-256"):
        loading.fetch_openai_clip("ViT-B/16", tmp_path / "cache")


def test_bad_arguments():
    with pytest.raises(KeyError, match="unknown CLIP backbone"):
        load_clip("ViT-X/99")
    with pytest.raises(ValueError, match="sha256"):
        load_clip("ViT-B/16", pretrained=False, sha256="0" * 64)
    with pytest.raises(ValueError, match="floating"):
        load_clip("micro", dtype=torch.int8)


# --- the packed micro checkpoint --------------------------------------------------------------

def test_pack_unpack_roundtrip_keeps_only_listed_tokens(tmp_path):
    cfg = dict(TINY, transformer_heads=2)  # not width // 64: the stored config must be used
    model = build_clip(cfg, seed=5)
    keep = micro.token_ids_of(SENTENCES)
    path = tmp_path / "packed.pt"
    digest = micro.save_micro_clip(model, path, keep, config=cfg, meta={"epochs": 1})
    assert (tmp_path / "packed.sha256").read_text().split() == [digest, "packed.pt"]
    loaded = micro.load_micro_clip(path)
    assert loaded.parkit_meta == {"epochs": 1}
    table = loaded.token_embedding.weight
    outside = torch.ones(table.shape[0], dtype=torch.bool)
    outside[keep] = False
    assert table[outside].abs().sum() == 0 and table[keep].abs().sum() > 0
    # Inside the kept vocabulary the model equals the fp16-rounded original.
    rounded = build_clip(cfg, seed=5)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    for got, want in zip(_outputs(loaded), _outputs(rounded)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert micro.unknown_words(loaded, ["A pedestrian wearing a hat"]) == {}
    assert micro.unknown_words(loaded, ["A pedestrian riding a bicycle"]) == {
        "A pedestrian riding a bicycle": ["riding</w>", "bicycle</w>"]}
    # Loading through load_clip by path also understands the packed format.
    for got, want in zip(_outputs(load_clip(path, device="cpu")), _outputs(loaded)):
        assert torch.equal(got, want)
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(BackboneFileError, match="SHA-256 mismatch"):
        micro.load_micro_clip(path)



# --- zero-shot scoring and pretraining --------------------------------------------------------

def test_zero_shot_scores_are_cosines(tiny):
    from parkit.backbone.pretrain import zero_shot_scores
    images = torch.randn(5, 3, 32, 32)
    scores = zero_shot_scores(tiny, images, SENTENCES, batch_size=2)
    assert scores.shape == (5, 3)
    with torch.no_grad():
        img = torch.nn.functional.normalize(tiny.encode_image(images), dim=-1)
        txt = torch.nn.functional.normalize(tiny.encode_text(tokenize(SENTENCES)), dim=-1)
    torch.testing.assert_close(scores, img @ txt.T, rtol=0, atol=1e-5)
    # uint8 input is normalised with mean = std = 0.5: 255 -> +1, 0 -> -1.
    u8 = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    u8[1] = 255
    as_float = torch.stack([-torch.ones(3, 32, 32), torch.ones(3, 32, 32)])
    torch.testing.assert_close(zero_shot_scores(tiny, u8, SENTENCES), zero_shot_scores(tiny, as_float, SENTENCES))


def test_fit_thresholds_maximise_balanced_accuracy():
    import numpy as np
    from parkit.metrics import fit_thresholds, mean_auc
    scores = np.array([[0.1, 0.5, 0.3], [0.2, 0.6, 0.9], [0.3, 0.7, 0.1], [0.4, 0.8, 0.2]])
    labels = np.array([[0, 0, 2], [0, 0, 1], [1, 0, 0], [1, 0, 2]])
    th = fit_thresholds(scores, labels)
    assert th[0] == pytest.approx(0.25)          # separates 0.1, 0.2 | 0.3, 0.4
    assert th[1] > 0.8                           # no positive: predict all negative
    assert 0.1 <= th[2] < 0.9                    # label 2 ignored: 0.9 positive vs 0.1 negative
    assert mean_auc(scores[:, :1], labels[:, :1]) == 1.0
    assert mean_auc(-scores[:, :1], labels[:, :1]) == 0.0


def test_contrastive_loss_matches_hand_computation():
    from parkit.backbone.pretrain import contrastive_loss
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    scale = torch.tensor(2.0)
    logits = scale.exp() * torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    plain = (torch.nn.functional.cross_entropy(logits, torch.arange(4))
             + torch.nn.functional.cross_entropy(logits.T, torch.arange(4))) / 2
    torch.testing.assert_close(contrastive_loss(img, txt, scale), plain)
    # Rows 0 and 1 share a caption: each gets half the target mass on both.
    same = torch.eye(4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    target = same.float() / same.float().sum(1, keepdim=True)
    logp_i, logp_t = logits.log_softmax(1), logits.T.log_softmax(1)
    soft = (-(target * logp_i).sum(1).mean() - (target * logp_t).sum(1).mean()) / 2
    torch.testing.assert_close(contrastive_loss(img, txt, scale, same), soft)


def test_pretrain_tiny_run_writes_a_checkpoint_that_loads_identically(tmp_path):
    from parkit.backbone.pretrain import pretrain_micro_clip
    cfg = dict(TINY, vision_layers=1, transformer_layers=1)
    logs = []
    # Pretraining and evaluation on the same folder: only its train split (24 of 40) is used.
    result = pretrain_micro_clip(tmp_path / "synthpar", tmp_path / "micro.pt", epochs=2, batch_size=8,
                                 seed=0, device="cpu", n_images=40, data_seed=0, config=cfg,
                                 eval_root=tmp_path / "synthpar", eval_n_images=40, eval_seed=0,
                                 progress=False, log=logs.append)
    assert result["meta"]["pretrain_images"] == 24
    assert len(result["history"]) == 2 and all(h["loss"] > 0 for h in result["history"])
    assert (tmp_path / "micro.sha256").read_text().split()[0] == result["sha256"]
    zs = result["meta"]["zero_shot"]
    assert len(zs["attributes"]) == 26 and 0 <= zs["sentences"]["mA"] <= 100
    assert any("zero-shot" in line for line in logs)
    loaded = micro.load_micro_clip(tmp_path / "micro.pt")
    assert loaded.parkit_meta["epochs"] == 2 and loaded.parkit_meta["n_images"] == 40
    for got, want in zip(_outputs(loaded), _outputs(result["model"])):
        assert torch.equal(got, want)
    # Every PA100K sentence is covered by the packed vocabulary.
    from parkit.attributes import get_schema
    assert micro.unknown_words(loaded, get_schema("PA100K").sentences) == {}


def test_joined_captions_fit_the_context_and_keep_their_order():
    from parkit.backbone.pretrain import join_captions
    assert join_captions(["a man", "a hat", "a bag"]) == "a man, a hat, a bag"
    long = ["a person wearing " + " and ".join(["a red hat"] * 6)] * 4
    joined = join_captions(long)
    assert joined.startswith(long[0]) and joined.count(long[0]) < 4
    tokenize([joined])  # fits CLIP's 77-token context: no ContextLengthError


def test_attribute_caption_lists_exactly_the_positive_attributes_in_label_order():
    import numpy as np
    from parkit.backbone.pretrain import attribute_caption, without_colours
    from parkit.data.synthpar import SYNTHPAR_ATTRIBUTES
    row = np.zeros(len(SYNTHPAR_ATTRIBUTES), dtype=int)
    for name in ("boots", "Back", "Female", "Age18-60"):
        row[SYNTHPAR_ATTRIBUTES.index(name)] = 1
    assert attribute_caption(row, SYNTHPAR_ATTRIBUTES) == "a pedestrian: female, age 18 to 60, back, boots"
    assert attribute_caption(row * 0, SYNTHPAR_ATTRIBUTES) == "a pedestrian"
    assert without_colours("an old man with grey hair wearing a grey coat and navy blue trousers") == \
        "an old man with grey hair wearing a coat and trousers"


def test_pretrain_attribute_captions_with_clipping_and_monitoring(tmp_path):
    from parkit.backbone.pretrain import pretrain_micro_clip
    cfg = dict(TINY, vision_layers=1, transformer_layers=1)
    logs = []
    result = pretrain_micro_clip(tmp_path / "synthpar", "", epochs=2, batch_size=8, seed=0, device="cpu",
                                 n_images=40, data_seed=0, config=cfg, caption_mode="attributes", clip_grad=1.0,
                                 monitor_every=1, evaluate=False, eval_root=tmp_path / "synthpar",
                                 eval_n_images=40, eval_seed=0, progress=False, log=logs.append)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(0 <= h["zero_shot_auc"] <= 100 for h in result["history"])
    assert all("zero-shot AUC" in line for line in logs if line.startswith("epoch"))
    assert result["meta"]["caption_mode"] == "attributes" and result["meta"]["clip_grad"] == 1.0
    with pytest.raises(ValueError, match="caption_mode"):
        pretrain_micro_clip(tmp_path / "synthpar", "", caption_mode="some", config=cfg, n_images=40,
                            data_seed=0, progress=False)


# --- the committed micro checkpoint -----------------------------------------------------------

def test_pretrain_second_stage_starts_from_a_checkpoint(tmp_path):
    from parkit.backbone.pretrain import pretrain_micro_clip
    cfg = dict(TINY, vision_layers=1, transformer_layers=1)
    common = dict(batch_size=8, seed=0, device="cpu", n_images=40, data_seed=0, evaluate=False,
                  progress=False)
    first = pretrain_micro_clip(tmp_path / "synthpar", tmp_path / "stage1.pt", epochs=1, config=cfg, **common)
    logs = []
    second = pretrain_micro_clip(tmp_path / "synthpar", tmp_path / "stage2.pt", epochs=1, caption_mode="attributes",
                                 config=cfg, init_from=tmp_path / "stage1.pt", lr=0.0, log=logs.append, **common)
    assert any(line.startswith("starting from") for line in logs)
    assert second["meta"]["init_from_sha256"] == first["sha256"]
    # lr 0: the second stage changes nothing, so its model equals the first one.
    for got, want in zip(_outputs(second["model"]), _outputs(first["model"])):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="another configuration"):
        pretrain_micro_clip(tmp_path / "synthpar", "", epochs=1, config=dict(cfg, embed_dim=48),
                            init_from=tmp_path / "stage1.pt", **common)


def test_committed_micro_clip_is_small_verified_and_fp32():
    assert micro.MICRO_CHECKPOINT.stat().st_size < 4e6  # a few MB at most, committed in git
    model = load_clip("micro", device="cpu")
    assert model.visual.conv1.weight.dtype == torch.float32
    assert model.visual.input_resolution == MICRO_CONFIG["image_resolution"]
    assert sum(p.numel() for p in model.parameters()) == count_clip_parameters("micro")
    from parkit.attributes import get_schema, list_schemas
    for name in list_schemas():  # every built-in sentence has trained embedding rows
        assert micro.unknown_words(model, get_schema(name).sentences) == {}, name


def test_tampered_micro_clip_is_refused(tmp_path):
    copy = tmp_path / "micro_clip.pt"
    data = bytearray(micro.MICRO_CHECKPOINT.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    (tmp_path / "micro_clip.sha256").write_text(micro.MICRO_SHA256.read_text())
    with pytest.raises(BackboneFileError, match="SHA-256 mismatch.*restore it"):
        micro.load_micro_clip(copy)
    (tmp_path / "micro_clip.sha256").unlink()
    with pytest.raises(BackboneFileError, match="no checksum"):
        micro.load_micro_clip(copy)
    with pytest.raises(BackboneUnavailable, match="missing"):
        micro.load_micro_clip(tmp_path / "absent.pt")


def test_committed_micro_clip_zero_shot_is_clearly_above_chance():
    # Recompute the stored zero-shot figures of the committed checkpoint on the evaluation SynthPAR
    # (2000 images, seed 0: thresholds on its train split, mA on its 600 test images).
    from parkit.backbone.pretrain import _synthpar, evaluate_zero_shot_pa100k
    meta = micro.read_micro_checkpoint()["meta"]
    stored = meta["zero_shot"]
    dataset = _synthpar(micro_eval_root(stored), stored["n_images"], stored["data_seed"], False)
    got = evaluate_zero_shot_pa100k(load_clip("micro", device="cpu"), dataset, MICRO_CONFIG["image_resolution"],
                                    log=lambda line: None)
    for kind in ("sentences", "phrases"):
        assert got[kind]["mA"] == pytest.approx(stored[kind]["mA"], abs=0.02), kind
        assert got[kind]["auc"] == pytest.approx(stored[kind]["auc"], abs=0.02), kind
    s = got["sentences"]
    # Clearly above chance: the shuffled-label mA sits at 50 and the observed one far beyond it.
    assert abs(s["chance_mA"] - 50) < 1.0
    assert s["mA"] - s["chance_mA"] > 5 * s["chance_std"] and s["p_value"] <= 0.005
    assert s["auc"] > 55


def micro_eval_root(stored):
    from parkit.data.synthpar import default_synthpar_root
    return default_synthpar_root(stored["n_images"], stored["data_seed"])


def test_assets_readme_matches_the_checkpoint():
    readme = (micro.ASSETS / "README.md").read_text()
    digest = micro.MICRO_SHA256.read_text().split()[0]
    assert digest in readme and sha256_file(micro.MICRO_CHECKPOINT) == digest
    meta = micro.read_micro_checkpoint()["meta"]
    assert f"{meta['zero_shot']['sentences']['mA']:.2f}" in readme
    assert f"--epochs {meta['epochs']} " in readme and f"--n-images {meta['n_images']} " in readme
