"""Named, cached experiment runs for the notebooks.

A notebook asks for a run by name ("promptpar", "vis_prompt=20", ...) with a preset and config
overrides; `run_experiment` trains it with the profile's budget under `runs/<profile>/<name>-<hash>/`
and returns one table row. A finished run is read back instead of retrained, and an interrupted one
resumes from its last checkpoint, so re-running a notebook (or `make reproduce`) after a crash loses
nothing and notebooks 04-10 can reuse the model notebook 03 trained.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from parkit.profiles import Profile, repo_root

HEADLINE = ("mA", "Acc", "Prec", "Rec", "F1")


def runs_dir(profile: Profile) -> Path:
    """Where runs of `profile` live (smoke runs under .cache so they never mix with demo runs)."""
    base = repo_root() / (".cache/runs" if profile.name == "smoke" else "runs")
    return base / profile.name


def _key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _backbone_fingerprint(config: dict) -> str:
    """Checksum of the compact CLIP's committed weights, so a re-pretrained backbone never reuses
    runs trained on the old one; OpenAI backbones are identified by name alone."""
    if config.get("backbone") != "micro":
        return str(config.get("backbone"))
    from parkit.backbone.micro import MICRO_CHECKPOINT
    from parkit.backbone import sha256_file

    return sha256_file(MICRO_CHECKPOINT)[:16] if MICRO_CHECKPOINT.exists() else "missing"


@dataclass
class Experiment:
    """A finished run: its table row, where it lives, and (lazily) its model."""

    name: str
    row: dict
    out_dir: Path
    spec: dict

    def load_model(self, device=None):
        """The selected model of this run (best on validation)."""
        from parkit.train.checkpoint import load_model

        best = self.out_dir / "best.pt"
        return load_model(best if best.exists() else self.out_dir / "last.pt", device=device)


def run_experiment(name: str, profile: Profile, dataset, preset: Optional[str] = None,
                   overrides: Optional[dict] = None, epochs: Optional[int] = None, seed: int = 0,
                   force: bool = False, progress: bool = True, **train_kwargs) -> Experiment:
    """Train (or read back) one named run and return its row of test metrics.

    Args:
        name: label of the run in tables.
        profile: the notebook's profile (budget, batch size, evaluation limit).
        dataset: a `PARDataset`.
        preset: model preset (default: the profile's).
        overrides: config overrides for `create_model`.
        epochs: epochs (default: the profile's `epochs`).
        seed: run seed: the model's initialisation, the data order and the augmentation.
        force: retrain even when a finished run exists.
        progress: show progress bars.
        **train_kwargs: further `TrainConfig` settings (part of the run's key when they change
            its results).

    Returns:
        An `Experiment` whose `row` holds name, preset, test mA/Acc/Prec/Rec/F1 (percent) of the
        model selected on validation, trainable/total parameters and minutes.
    """
    from parkit.model import count_parameters, create_model
    from parkit.train import TrainConfig, train

    preset = preset or profile.preset
    overrides = dict(overrides or {})
    epochs = profile.epochs if epochs is None else epochs
    from parkit.model.config import preset_config

    # What the run computes and reports is its TrainConfig's key (the same settings a resumed
    # run must match); the model and the data are keyed on the effective configuration, not the
    # name: "vis_prompt=10" and the default run of a preset whose default is 10 are the same
    # run and are trained once.
    train_config = TrainConfig(epochs=epochs, batch_size=profile.batch_size, seed=seed,
                               max_minutes=profile.max_minutes, eval_limit=profile.eval_limit,
                               device=profile.device, progress=progress, verbose=False,
                               **train_kwargs)
    config = preset_config(preset).replace(**overrides).to_dict()
    spec = {"preset": preset, "config": config, "backbone_weights": _backbone_fingerprint(config),
            "dataset": dataset.name, "split_source": dataset.split_source, "n": len(dataset),
            "train": train_config.key()}
    out = runs_dir(profile) / f"{preset}-{_key(spec)}"
    done = out / "experiment.json"
    if done.exists() and not force:
        saved = json.loads(done.read_text())
        return Experiment(name, {**saved["row"], "run": name}, out, spec)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model = create_model(preset, attributes=list(dataset.attributes), sentences=list(dataset.sentences),
                         device=profile.device, seed=seed, **overrides)
    counts = count_parameters(model)
    if counts["trainable"] == 0:
        # Nothing to train (zero-shot CLIP): calibrate its decision offsets on the training
        # split when the model can, then evaluate; there is no epoch and no checkpoint.
        test, epochs_done, best_epoch = _evaluate_frozen(model, dataset, profile), 0, None
    else:
        result = train(model, dataset, train_config, out_dir=out)
        test = result.test_metrics.get("selected") or result.test_metrics.get("last") or {}
        epochs_done, best_epoch = result.epochs_done, result.best_epoch
    row = {"run": name, "preset": preset, **{k: test.get(k) for k in HEADLINE},
           "trainable": counts["trainable"], "total": counts["total"],
           "epochs": epochs_done, "best_epoch": best_epoch,
           "minutes": (time.perf_counter() - t0) / 60}
    done.write_text(json.dumps({"row": row, "spec": spec, "names": [name]}, indent=2, default=str))
    return Experiment(name, row, out, spec)


def _evaluate_frozen(model, dataset, profile: Profile) -> dict:
    """Test metrics (percent) of a model with nothing to train, calibrated on the train split."""
    from parkit.data.torchdata import make_loader
    from parkit.data.transforms import build_transform
    from parkit.train import evaluate

    if hasattr(model, "calibrate"):
        tf = build_transform(train=False, image_size=model.image_size, normalization=model.normalization)
        train_rows = dataset.split_indices("train")
        if profile.eval_limit:
            train_rows = train_rows[: 4 * profile.eval_limit]
        model.calibrate(make_loader(dataset, train_rows, tf, batch_size=64), method="prior")
    ev = evaluate(model, dataset, split="test", limit=profile.eval_limit, progress=False)
    return ev.summary()


def sweep(profile: Profile, dataset, setting: str, values, epochs: Optional[int] = None,
          metrics=("mA", "Acc", "F1")):
    """One run per value of a config `setting` (an ablation curve): a DataFrame with the setting,
    the test metrics and the trainable parameters of each run (epochs: the profile's ablation budget)."""
    import pandas as pd

    rows = []
    for value in values:
        exp = run_experiment(f"{setting}={value}", profile, dataset, overrides={setting: value},
                             epochs=profile.ablation_epochs if epochs is None else epochs)
        rows.append({setting: value, **{k: exp.row[k] for k in metrics}, "trainable": exp.row["trainable"]})
    return pd.DataFrame(rows)
