"""How far can a linear classifier get on the compact CLIP's frozen image embedding (demo SynthPAR)?

Notebook 04 (demo profile) trains every method with the same compact recipe for the same six
epochs. This script measures the ceiling the linear probe is approaching: a class-balanced
logistic regression fitted to convergence (L-BFGS, L2 penalty) on the frozen CLS embedding
(ln_post + proj) of the training split, evaluated on the test split with the paper's metrics.
Beside it, the demo runs already on disk (`runs/demo/*/experiment.json`, written by the notebooks)
are listed, so the gap between the frozen embedding's ceiling and what each method reaches in the
demo budget is visible in one table. Results go to `benchmarks/results/micro_readout_ceiling.md`.

Usage (about a minute on 2 CPU cores):

    python benchmarks/micro_readout_ceiling.py
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "micro_readout_ceiling.md"


def frozen_features(model, dataset, split: str, batch_size: int = 128) -> np.ndarray:
    """The linear probe's frozen CLS embeddings (N, embed) of one split, in split order."""
    import torch

    from parkit.data import PARTorchDataset
    from parkit.data.transforms import build_transform

    tds = PARTorchDataset(dataset, split, build_transform(False, model.image_size, model.normalization))
    out = []
    with torch.inference_mode():
        for start in range(0, len(tds), batch_size):
            x = torch.stack([tds[i][0] for i in range(start, min(start + batch_size, len(tds)))])
            out.append(model.features(x).float())
    return torch.cat(out).numpy()


def fit_balanced_logistic(x_train: np.ndarray, y_train: np.ndarray, l2: float = 1e-3,
                          iterations: int = 300):
    """One class-balanced logistic regression per attribute (jointly, L-BFGS) on standardised features.

    Returns:
        A function features (N, D) -> probabilities (N, A).
    """
    import torch

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x = torch.from_numpy((x_train - mean) / std).float()
    y = torch.from_numpy(y_train).float()
    pos = y.mean(0).clamp(1e-3, 1 - 1e-3)
    linear = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(x), y, pos_weight=(1 - pos) / pos)
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.from_numpy((features - mean) / std).float()
            return torch.sigmoid(linear(z)).numpy()

    return predict


def demo_runs(dataset, epochs: int) -> list:
    """(preset, test mA) of notebook 04's demo runs on disk: each preset's current configuration,
    the profile's epochs and this dataset's split; best first."""
    from parkit.model.config import preset_config

    rows = []
    for path in sorted((REPO / "runs" / "demo").glob("*/experiment.json")):
        saved = json.loads(path.read_text())
        row, spec = saved["row"], saved["spec"]
        try:
            current = preset_config(spec["preset"]).to_dict()
        except KeyError:
            continue
        run = spec.get("train", spec)  # the TrainConfig key; runs keyed before it kept epochs on top
        if (row.get("mA") is None or spec["config"] != current or run["epochs"] != epochs
                or spec.get("split_source") != dataset.split_source):
            continue
        rows.append((spec["preset"], row["mA"]))
    return sorted(rows, key=lambda r: -r[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default=str(OUT))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO))
    from parkit.metrics import pedestrian_metrics
    from parkit.model import create_model
    from parkit.profiles import get_profile, profile_dataset

    dataset = profile_dataset(get_profile("demo"))
    model = create_model("linear-probe-micro", attributes=list(dataset.attributes),
                         sentences=list(dataset.sentences), device="cpu").eval()
    train = frozen_features(model, dataset, "train")
    test = frozen_features(model, dataset, "test")
    y_train = dataset.labels[dataset.splits["train"]].clip(0, 1)
    y_test = dataset.labels[dataset.splits["test"]]
    probs = fit_balanced_logistic(train, y_train)(test)
    m = pedestrian_metrics(y_test, probs, threshold=0.5, ignore="auto")
    ceiling = 100 * m["mA"]
    print(f"logistic regression on the frozen CLS embedding: test mA {ceiling:.2f}")

    lines = ["# Compact CLIP: the frozen embedding's linear ceiling on demo SynthPAR", "",
             f"Written by `benchmarks/micro_readout_ceiling.py`. Data: SynthPAR of the demo profile "
             f"({len(dataset)} images; fitted on the {len(train)} train images, evaluated on the {len(test)} test images). Features: the compact CLIP's "
             f"frozen CLS embedding (ln_post + proj, {train.shape[1]} dims), the linear probe's input.", "",
             "| readout | test mA | Acc | F1 |", "|---|---|---|---|",
             f"| class-balanced logistic regression, L-BFGS to convergence (threshold 0.5) | {ceiling:.2f} | "
             f"{100 * m['Acc']:.2f} | {100 * m['F1']:.2f} |", ""]
    profile = get_profile("demo")
    runs = demo_runs(dataset, profile.epochs)
    if runs:
        lines += [f"Notebook 04's demo runs on disk (compact recipe, {profile.epochs} epochs, model selected on "
                  "val, threshold 0.45):", "", "| preset | test mA |", "|---|---|"]
        lines += [f"| {preset} | {ma:.2f} |" for preset, ma in runs]
        lines.append("")
    lines += ["The compact CLIP was pretrained contrastively on SynthPAR captions that name these attributes, so "
              "its frozen embedding already carries them; the demo budget's methods are compared against "
              "this ceiling, not only against each other."]
    common.write_markdown(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
