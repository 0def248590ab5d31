"""`python -m parkit ...` end to end with the real micro PromptPAR (random backbone) on a tiny SynthPAR."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from parkit import cli
from parkit.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from parkit.data.synthpar import make_synthpar

    return make_synthpar(tmp_path_factory.mktemp("synth"), n_images=40, seed=1, progress=False)


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    """One CLI training run shared by the eval/predict tests (1 epoch, random backbone)."""
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(2)
    code = main(["train", "--preset", "promptpar-micro", "--dataset", "SynthPAR", "--root", str(synth),
                 "--epochs", "1", "--batch-size", "8", "--out", str(out), "--device", "cpu",
                 "--no-pretrained", "--no-progress", "--set", "vis_prompt=5"])
    assert code == 0
    return out


def test_train_command_writes_a_loadable_checkpoint(trained, capsys):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["run"]["preset"] == "promptpar-micro"
    ck = torch.load(trained / "best.pt", weights_only=True)
    assert ck["config"]["vis_prompt"] == 5  # the --set override reached the model
    assert ck["config"]["backbone"] == "micro" and ck["pretrained"] is False
    assert len(ck["attributes"]) == 26  # SynthPAR uses the PA100K attribute set


def test_eval_command_reproduces_the_training_test_numbers(trained, synth, capsys, tmp_path):
    out = tmp_path / "metrics.json"
    code = main(["eval", "--checkpoint", str(trained / "best.pt"), "--dataset", "SynthPAR",
                 "--root", str(synth), "--split", "test", "--device", "cpu", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    assert "Rethinking variant" in capsys.readouterr().out
    got = json.loads(out.read_text())
    summary = json.loads((trained / "summary.json").read_text())
    for k in ("mA", "F1"):
        assert got["paper"][k] == pytest.approx(summary["test_metrics"]["selected"][k], abs=1e-3)
    assert len(got["per_attribute_mA"]) == 26


def test_predict_command_csv_and_json(trained, synth, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    images = sorted((Path(synth) / "images").glob("*.png"))[:3]
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_broken.png").write_bytes(b"\x89PNG broken")
    csv_out, json_out = tmp_path / "preds.csv", tmp_path / "preds.json"
    with pytest.warns(RuntimeWarning, match="zz_broken.png"):
        assert main(["predict", str(folder), "--checkpoint", str(trained / "best.pt"), "--out",
                     str(csv_out), "--device", "cpu"]) == 0
    assert "skipped" in capsys.readouterr().err
    df = pd.read_csv(csv_out)
    assert len(df) == 3 and df.columns[0] == "image" and df.columns[-1] == "positive"
    assert ((df.iloc[:, 1:-1] >= 0) & (df.iloc[:, 1:-1] <= 1)).all().all()
    assert main(["predict", *map(str, images[:2]), "--checkpoint", str(trained / "best.pt"),
                 "--out", str(json_out), "--device", "cpu", "--threshold", "0.0"]) == 0
    preds = json.loads(json_out.read_text())
    assert preds["threshold"] == 0.0 and len(preds["predictions"]) == 2
    first = next(iter(preds["predictions"].values()))
    assert len(first["attributes"]) == 26  # threshold 0: every attribute is predicted


def test_predict_command_compile_gives_the_eager_probabilities(trained, synth, tmp_path):
    images = sorted((Path(synth) / "images").glob("*.png"))[:3]
    outs = {}
    for flags in ([], ["--compile"]):
        out = tmp_path / f"preds{len(flags)}.csv"
        assert main(["predict", *map(str, images), "--checkpoint", str(trained / "best.pt"), "--out",
                     str(out), "--device", "cpu", "--batch-size", "2", *flags]) == 0
        outs[bool(flags)] = pd.read_csv(out)
    assert list(outs[True]["image"]) == list(outs[False]["image"])
    np.testing.assert_allclose(outs[True].iloc[:, 1:-1].to_numpy(float), outs[False].iloc[:, 1:-1].to_numpy(float),
                               rtol=1e-4, atol=1e-6)


def test_errors_are_one_line_messages(tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--dataset", "SynthPAR",
                 "--root", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    bad = tmp_path / "x.pt"
    torch.save({"format": "parkit/1", "config": {"width": 3}, "attributes": [], "sentences": []}, bad)
    assert main(["predict", str(tmp_path), "--checkpoint", str(bad)]) == 2
    assert "hand-built model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0 and "usage: python -m parkit export" in capsys.readouterr().out


# Every option of every sub-command, as the command line has offered them: renaming or dropping
# one breaks scripts and the documented commands (parkit/assets/README.md, the notebooks).
FLAGS = {
    "train": {"--preset", "--dataset", "--root", "--out", "--epochs", "--batch-size", "--recipe",
              "--recipe-set", "--set", "--dataset-option", "--select-on", "--device", "--seed",
              "--max-minutes", "--num-workers", "--checkpoint-every", "--eval-limit", "--precision",
              "--on-corrupt", "--cache-images", "--no-resume", "--no-pretrained", "--no-progress"},
    "eval": {"--checkpoint", "--dataset", "--root", "--split", "--official", "--trust", "--backbone",
             "--batch-size", "--threshold", "--limit", "--raw-labels", "--device", "--out", "--no-progress"},
    "predict": {"images", "--checkpoint", "--out", "--threshold", "--batch-size", "--device", "--compile"},
    "pretrain-backbone": {"--data-root", "--out", "--n-images", "--data-seed", "--epochs", "--batch-size",
                          "--lr", "--weight-decay", "--warmup-epochs", "--seed", "--device", "--threads",
                          "--no-eval", "--eval-root", "--eval-n-images", "--eval-seed", "--captions",
                          "--clip-grad", "--monitor-every", "--init"},
    "export": {"checkpoint", "output", "--opset", "--static-batch", "--official", "--dataset", "--trust",
               "--check"},
    "check-weights": {"folder", "--seed", "--overwrite"},
    "presets": set(),
    "datasets": set(),
}


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_keeps_its_options():
    subs = _subparsers(build_parser())
    assert set(subs) == set(FLAGS)
    for command, parser in subs.items():
        got = {s for a in parser._actions if not isinstance(a, argparse._HelpAction)
               for s in (a.option_strings or [a.dest])}
        # At least the options listed; new ones may be added (FLAGS lists the long forms only).
        assert FLAGS[command] <= got, (command, sorted(FLAGS[command] - got))


def test_pretrain_backbone_options_reach_the_pretraining_with_its_defaults(monkeypatch):
    from parkit.backbone.pretrain import DEFAULTS

    seen = {}
    monkeypatch.setattr(cli, "pretrain_micro_clip", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    assert main(["pretrain-backbone", "--data-root", "d", "--out", "o.pt", "--captions", "attributes",
                 "--init", "stage1.pt", "--no-eval", "--lr", "0.5"]) == 0
    assert seen["args"] == ("d", "o.pt")
    kw = seen["kwargs"]
    assert kw["caption_mode"] == "attributes" and kw["init_from"] == "stage1.pt" and kw["evaluate"] is False
    assert kw["lr"] == 0.5
    for key in ("epochs", "batch_size", "seed", "n_images", "data_seed", "weight_decay", "warmup_epochs",
                "clip_grad", "monitor_every", "eval_n_images", "eval_seed"):
        assert kw[key] == DEFAULTS[key], key


def test_presets_and_datasets_listing_via_module_entry_point(capsys):
    run = subprocess.run([sys.executable, "-m", "parkit", "presets"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    line = next(l for l in run.stdout.splitlines() if l.startswith("promptpar-micro "))
    assert "[compact recipe]" in line
    assert "[paper recipe]" in next(l for l in run.stdout.splitlines() if l.startswith("promptpar-vitl14 "))
    assert main(["datasets"]) == 0
    names = capsys.readouterr().out.split()
    assert {"PETA", "PA100K", "SynthPAR"} <= set(names)


def test_evaluate_official_checkpoint_uses_the_dataset_sentences(tmp_path):
    """`evaluate(..., official=True)` loads a released-style file with the dataset's sentences."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    import reference_promptpar as ref

    from parkit.data.base import PARDataset
    from parkit.model import load_official_checkpoint
    from parkit.train import evaluate

    sentences = ["A pedestrian wearing a hat", "A pedestrian with long hair", "A male pedestrian",
                 "A pedestrian in jeans", "A pedestrian with a backpack", "A pedestrian in sneakers"]
    dims = ref.OfficialDims(attributes=6, embed_dim=64, vision_width=128, vision_layers=2, patch_size=4,
                            grid=16, text_width=128, text_layers=2, vis_prompt=10, vis_depth=2,
                            text_prompt=3, fusion_width=128, mm_layers=1, visual_embed="vis_embed")
    clip_layout, cls_layout = ref.official_layout(dims)
    path = tmp_path / "PETA.pth"
    torch.save({"epoch": 3, "ViT_model": ref.seeded_official_state(clip_layout, 0),
                "model_state_dict": ref.seeded_official_state(cls_layout, 1)}, path)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 20, 3)).astype(np.uint8)).save(p)
        paths.append(str(p))
    labels = rng.integers(0, 2, (6, 6))
    ds = PARDataset("Custom", ["hat", "hair", "male", "jeans", "backpack", "sneakers"], sentences,
                    ["whole"] * 6, labels, paths, {"test": np.arange(6)})
    res = evaluate(path, ds, "test", device="cpu", official=True, trust=True, progress=False)
    model = load_official_checkpoint(path, attributes=sentences, device="cpu", allow_pickle=True)
    from parkit.data.transforms import build_transform

    tf = build_transform(False, model.image_size, model.normalization)
    x = torch.stack([tf(Image.open(p)) for p in paths])
    with torch.no_grad():
        expected = torch.sigmoid(model(x).logits).numpy()
    np.testing.assert_allclose(res.probs, expected, rtol=1e-4, atol=1e-5)
    assert res.table.index.tolist() == ds.attributes


def test_check_weights_writes_both_files_and_prints_the_exports(tmp_path, capsys):
    assert main(["check-weights", str(tmp_path)]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert [line.split("=")[0] for line in lines] == ["export PARKIT_CLIP_WEIGHTS", "export PARKIT_VIT_B16"]
    assert all(Path(line.split("=", 1)[1]).is_file() for line in lines)
    assert out.err.count("NOT the official weights") == 2
