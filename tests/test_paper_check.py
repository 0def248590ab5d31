"""The paper and paper-check profiles: weight files, offline messages, datasets per table, plans.

The notebooks themselves run in the paper-check profile under `make test` (`make test-paper-check`,
against ../shared/realdata); these tests pin the pieces that profile is made of.
"""
import os
import urllib.error
from pathlib import Path

import pytest
import torch

from parkit import experiments, profiles
from parkit.backbone import load_clip
from parkit.backbone.checkfiles import (CHECK_LAYERS, CLIP_ENV, VIT_ENV, describe_check_weights,
                                        write_check_weights)
from parkit.backbone.loading import clip_config
from parkit.model import create_model
from parkit.model.fusion import VIT_B16_FILENAME, read_vit_weights

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(not (REALDATA / "peta" / "PETA.mat").is_file(),
                                    reason=f"real annotation files not found at {REALDATA}")


@pytest.fixture(scope="module")
def check_weights(tmp_path_factory):
    return write_check_weights(tmp_path_factory.mktemp("weights"), seed=0)


def test_seeded_clip_file_loads_through_the_real_loading_code_with_vit_l14_shapes(check_weights):
    model = load_clip(check_weights["clip"], device="cpu")
    want = clip_config("ViT-L/14")
    visual = model.visual
    assert visual.conv1.weight.shape == (want["vision_width"], 3, 14, 14)
    assert visual.positional_embedding.shape == (257, want["vision_width"])  # 224 px / 14 + CLS
    assert len(visual.transformer.resblocks) == CHECK_LAYERS == len(model.transformer.resblocks)
    assert model.token_embedding.weight.shape == (want["vocab_size"], want["transformer_width"])
    assert model.text_projection.shape == (want["transformer_width"], want["embed_dim"])


def test_seeded_timm_file_has_vit_b16_layout_and_feeds_the_mm_former(check_weights, monkeypatch):
    state = read_vit_weights(check_weights["vit"])
    assert len({k.split(".")[1] for k in state if k.startswith("blocks.")}) == 12
    assert state["blocks.11.attn.qkv.weight"].shape == (2304, 768) and state["head.weight"].shape == (1000, 768)
    monkeypatch.setenv(VIT_ENV, str(check_weights["vit"]))
    model = create_model("promptpar-vitl14", "PETA", backbone=str(check_weights["clip"]), seed=0, device="cpu")
    # the MM-former is the file's last block, copied exactly (mm_init="vit_b16_imagenet")
    weights = {k: v for k, v in model.state_dict().items() if k.endswith("attn.qkv.weight") or k.endswith("in_proj_weight")}
    assert any(v.shape == (2304, 768) and torch.equal(v, state["blocks.11.attn.qkv.weight"]) for v in weights.values()), \
        "the MM-former does not hold block 11 of the ViT-B/16 file"


def test_check_weights_are_reported_as_not_official(check_weights):
    text = describe_check_weights(check_weights["clip"], check_weights["vit"])
    assert text.count("NOT the official weights") == 2
    assert write_check_weights(check_weights["clip"].parent, seed=0)["clip"].stat().st_mtime == \
        check_weights["clip"].stat().st_mtime  # kept, not rewritten


def test_paper_profile_offline_names_both_weight_files_before_anything_runs(tmp_path, monkeypatch):
    import clip

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(clip.clip, "_download", offline)
    monkeypatch.setenv("PARKIT_CLIP_CACHE", str(tmp_path / "clip-cache"))
    monkeypatch.setenv(VIT_ENV, str(tmp_path / "absent" / VIT_B16_FILENAME))
    monkeypatch.setenv("PARKIT_DATA_ROOT", str(tmp_path))
    with pytest.raises(profiles.ProfileUnavailable) as err:
        profiles.require_profile(profiles.get_profile("paper"))
    message = str(err.value)
    assert "ViT-L-14.pt" in message and VIT_B16_FILENAME in message
    assert "b8cca3fd" in message  # where to put it and the checksum it must have
    assert "paper-check" in message  # and what can run here instead


def test_paper_check_without_its_files_says_how_to_write_them(tmp_path, monkeypatch):
    monkeypatch.delenv(CLIP_ENV, raising=False)
    monkeypatch.delenv(VIT_ENV, raising=False)
    monkeypatch.setenv("PARKIT_DATA_ROOT", str(tmp_path))
    with pytest.raises(profiles.ProfileUnavailable, match=r"(?s)PARKIT_CLIP_WEIGHTS.*PARKIT_VIT_B16.*check-weights"):
        profiles.require_profile(profiles.get_profile("paper-check"))


def test_paper_check_declares_its_clip_file_by_path(check_weights, monkeypatch):
    monkeypatch.setenv(CLIP_ENV, str(check_weights["clip"]))
    profile = profiles.get_profile("paper-check")
    assert profile.is_paper and profile.is_check and profile.device is None
    assert profile.model_overrides == {"backbone": str(check_weights["clip"])}
    assert profile.train_settings["train_limit"] > 0 and profile.eval_limit
    paper = profiles.get_profile("paper")
    assert (paper.table_datasets, paper.ablation_dataset, paper.zero_shot_datasets) == \
        (profile.table_datasets, profile.ablation_dataset, profile.zero_shot_datasets)
    assert paper.table_datasets[:3] == ("PA100K", "PETA", "RAPv1") and "RAPv2" in paper.table_datasets
    monkeypatch.setenv(profiles.ABLATION_DATASET_ENV, "PETA")
    assert profiles.get_profile("paper").ablation_dataset == "PETA"


@needs_realdata
def test_each_table_gets_its_datasets_and_a_reason_for_each_one_it_cannot_use(monkeypatch):
    monkeypatch.setenv("PARKIT_DATA_ROOT", str(REALDATA))
    said = []
    got = profiles.profile_datasets(profiles.get_profile("paper-check"), "table", say=said.append)
    assert [d.name for d in got] == ["PETA"] and len(got[0]) == 4000
    text = "\n".join(said)
    assert "PA100K: no image of the val / test split" in text  # the shared copy holds train images only
    assert "RAPv1: no image of the val / test split" in text and "RAPv2: cannot be used" in text
    assert "WIDER: not found (expected the folder" in text
    # the paper profile itself needs every image: a partial copy is skipped, naming a missing one
    paper = profiles.load_real_dataset(profiles.get_profile("paper"), "PETA")
    assert not paper.usable and "not found" in paper.reason
    zero_shot = profiles.profile_datasets(profiles.get_profile("paper-check"), "zero-shot", say=None)
    assert [d.name for d in zero_shot] == ["PETA-ZS"]


@needs_realdata
def test_paper_check_uses_a_complete_copy_whole(tmp_path, monkeypatch):
    """A copy of PETA with all 19,000 image files (the ones absent here are links to present
    images: enough for the code path) is used whole, without any change of settings."""
    root = tmp_path / "PETA"
    (root / "images").mkdir(parents=True)
    os.symlink(REALDATA / "peta" / "PETA.mat", root / "PETA.mat")
    present = sorted((REALDATA / "peta" / "images").iterdir())
    by_index = {int(p.stem): p for p in present}
    for i in range(1, 19001):
        os.symlink(by_index.get(i, present[i % len(present)]), root / "images" / f"{i:05d}.png")
    monkeypatch.setenv("PARKIT_DATA_ROOT", str(tmp_path))
    choice = profiles.load_real_dataset(profiles.get_profile("paper-check"), "PETA")
    assert choice.usable and len(choice.dataset) == 19000 and "absent" not in choice.reason
    assert {k: len(v) for k, v in choice.dataset.splits.items() if k != "trainval"} == \
        {"train": 9500, "val": 1900, "test": 7600}


def test_plan_lists_cached_and_new_runs_with_an_estimate_from_measured_throughput(tmp_path, monkeypatch):
    from parkit.data import load_dataset
    from parkit.data.synthpar import make_synthpar
    import dataclasses

    monkeypatch.setenv("PARKIT_RUNS_DIR", str(tmp_path / "runs"))
    ds = load_dataset("SynthPAR", make_synthpar(tmp_path / "synth", n_images=40, seed=1, progress=False))
    profile = dataclasses.replace(profiles.get_profile("smoke"), max_minutes=None)
    specs = [("probe", dict(name="probe", preset="linear-probe-micro", epochs=1)),
             ("vpt", dict(name="vpt", preset="vpt-deep-micro", epochs=1))]
    before = experiments.plan(specs, profile, [ds])
    assert before["status"].tolist() == ["to train", "to train"] and before["estimated minutes"].isna().all()
    assert "no estimate yet" in before.attrs["note"]
    experiments.run_experiment("probe", profile, ds, preset="linear-probe-micro", epochs=1, progress=False)
    after = experiments.plan(specs, profile, [ds])
    assert after["status"].tolist() == ["cached", "to train"]
    assert after["estimated minutes"].iloc[1] > 0  # from the probe's measured seconds per image
    assert after["train images"].iloc[0] == len(ds.splits["train"])
    assert "1 cached, 1 to train" in after.attrs["note"] and "measured on 1 finished run" in after.attrs["note"]
