"""PromptPAR vs the linear probe and full fine-tuning on the compact CLIP, by training budget and seed.

Notebook 04 compares the methods once (seed 0) at the demo profile's budget (six epochs). A single
seed of a 1500-image dataset moves test mA by several points, so this script repeats the
comparison over seeds and at a longer budget, with the same data, recipe ("compact"), batch size
and model selection (best validation epoch) as the notebook:

- `promptpar-micro`, `linear-probe-micro` and `finetune-micro`,
- at `--epochs` (default 6, the demo budget, and 24),
- for `--seeds` (default 0 1 2),

and writes one table to `benchmarks/results/micro_budget.md` (test mA of every run, and the mean
per method and budget). Run time on 2 CPU cores: about 1.5 / 0.9 / 0.4 minutes per six epochs for
PromptPAR / fine-tuning / the probe, so the default grid takes about 35 minutes.

Usage:

    python benchmarks/micro_budget.py [--epochs 6 24] [--seeds 0 1 2]
    python benchmarks/micro_budget.py --presets promptpar-micro:use_mm_former=false \
        --output benchmarks/results/micro_budget_linear_fusion.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "micro_budget.md"
PRESETS = ("promptpar-micro", "linear-probe-micro", "finetune-micro")


def parse_preset(spec: str) -> tuple:
    """"name" or "name:key=value,key=value" (model overrides, values as JSON) -> (name, overrides)."""
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad preset override {item!r} in {spec!r}; write key=value")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def train_once(spec: str, dataset, epochs: int, seed: int, batch_size: int, backbone=None) -> tuple:
    """Train one model with parkit.train; returns (test mA in %, best epoch, seconds).

    The model's own initialisation (heads, prompts, embeddings) is seeded with `seed` here, so a
    run does not depend on what ran before it in the process. `backbone`: a packed compact-CLIP
    checkpoint to use instead of the committed one.
    """
    import torch

    from parkit.backbone.micro import load_micro_clip
    from parkit.model import create_model
    from parkit.train import train

    preset, overrides = parse_preset(spec)
    extra = {"backbone_model": load_micro_clip(backbone, sha256=None)} if backbone else {}
    torch.manual_seed(seed)
    model = create_model(preset, attributes=list(dataset.attributes), sentences=list(dataset.sentences),
                         device="cpu", **extra, **overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(model, dataset, epochs=epochs, batch_size=batch_size, seed=seed, out_dir=out,
                       progress=False, verbose=False)
    metrics = result.test_metrics.get("selected") or result.test_metrics["last"]
    return metrics["mA"], result.best_epoch, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[6, 24])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--presets", nargs="+", default=list(PRESETS),
                   help='presets, optionally with model overrides: "promptpar-micro:use_mm_former=false"')
    p.add_argument("--backbones", nargs="+", default=[None],
                   help="packed compact-CLIP checkpoints to compare (default: the committed one)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", default=str(OUT))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from parkit.profiles import get_profile, profile_dataset

    profile = get_profile("demo")
    dataset = profile_dataset(profile)
    results = {}  # (backbone, preset, epochs) -> [(seed, mA, best_epoch, seconds)]
    for backbone in args.backbones:
        label = Path(backbone).name if backbone else "committed"
        for epochs in args.epochs:
            for seed in args.seeds:
                for preset in args.presets:
                    ma, best, seconds = train_once(preset, dataset, epochs, seed, profile.batch_size, backbone)
                    results.setdefault((label, preset, epochs), []).append((seed, ma, best, seconds))
                    print(f"{label} {preset:20s} epochs {epochs:3d} seed {seed}: test mA {ma:.2f} "
                          f"(best epoch {best}, {seconds:.0f} s)", flush=True)

    seeds = " / ".join(str(s) for s in args.seeds)
    lines = ["# Compact CLIP on demo SynthPAR: PromptPAR vs linear probe vs fine-tuning, by budget and seed", "",
             f"Written by `benchmarks/micro_budget.py`. Data: SynthPAR of the demo profile ({len(dataset)} images, "
             f"{len(dataset.splits['train'])} train / {len(dataset.splits['val'])} val / "
             f"{len(dataset.splits['test'])} test); compact recipe, batch {profile.batch_size}, model selected on "
             "val, test mA at threshold 0.45. The demo budget is "
             f"{profile.epochs} epochs.", "",
             f"| backbone | preset | epochs | test mA, seeds {seeds} | mean | std | mean best epoch | mean minutes |",
             "|---|---|---|---|---|---|---|---|"]
    for (label, preset, epochs), rows in results.items():
        mas = [r[1] for r in rows]
        std = statistics.stdev(mas) if len(mas) > 1 else 0.0
        lines.append(f"| {label} | {preset} | {epochs} | {' / '.join(f'{m:.2f}' for m in mas)} | "
                     f"**{sum(mas) / len(mas):.2f}** | {std:.2f} | {sum(r[2] for r in rows) / len(rows):.1f} | "
                     f"{sum(r[3] for r in rows) / len(rows) / 60:.1f} |")
    lines += ["", "For the frozen embedding's own ceiling (a logistic regression fitted to convergence) see "
              "`micro_readout_ceiling.md`."]
    common.write_markdown(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
