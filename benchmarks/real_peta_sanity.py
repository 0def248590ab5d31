"""Real-data sanity check: does a compact PromptPAR learn from real PETA photographs?

On the real PETA subset kept beside the project (2000 train / 400 val / 1600 test images of the
official partition 0, see ../shared/realdata/peta/README.md), the script trains the same compact
model twice with the same seed, time budget and recipe:

1. on the real labels;
2. on labels shuffled across the training and validation images (each image gets another image's
   whole label vector), which destroys the image-label relation but keeps every label statistic.

Both are evaluated on the untouched test labels. The check passes when the real-label model's test
mA is at least 3 points above the shuffled-label model's, and the shuffled-label model stays within
2 points of 50 (chance for mA). Results go to `benchmarks/results/real_peta_sanity.md`.

Usage (about 2 × `--minutes` of training plus evaluation; the machine is shared, keep it small):

    python benchmarks/real_peta_sanity.py --minutes 10
    python benchmarks/real_peta_sanity.py --root /path/to/peta --minutes 10 --epochs 15 --batch-size 16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "realdata" / "peta"


def shuffled_labels(dataset, seed: int):
    """A copy of `dataset` whose train and val rows carry the label vectors of other train/val rows."""
    rows = np.concatenate([dataset.splits["train"], dataset.splits["val"]])
    perm = np.random.default_rng(seed).permutation(rows)
    labels = dataset.labels.copy()
    labels[rows] = dataset.labels[perm]
    return replace(dataset, labels=labels, info={**dataset.info, "labels": "shuffled train/val"})


def backbone_is_pretrained(preset: str) -> bool:
    """Whether the preset's pretrained backbone can be loaded here (the micro CLIP asset exists)."""
    from parkit.model import get_config

    backbone = get_config(preset).backbone
    if backbone != "micro":
        return True
    from parkit.backbone.micro import MICRO_CHECKPOINT

    return MICRO_CHECKPOINT.exists()


def run(args) -> dict:
    import torch

    from parkit.data import load_dataset
    from parkit.train import get_recipe, train

    torch.set_num_threads(args.threads)
    load_start = list(os.getloadavg())  # the budget is wall-clock: record how busy the machine was
    ds = load_dataset("PETA", args.root, skip_missing=True)
    pretrained = bool(args.backbone_file) or (backbone_is_pretrained(args.preset) and not args.no_pretrained)
    if not pretrained and not args.no_pretrained:
        warnings.warn(f"{args.preset}: the pretrained backbone file is missing; using a seeded random "
                      f"(frozen) backbone. Run `python -m parkit pretrain-backbone` first for the real setting.")
    recipe = get_recipe(args.preset)
    if args.lr_scale != 1.0:
        recipe = recipe.replace(lr_prompt=recipe.lr_prompt * args.lr_scale,
                                lr_fusion=recipe.lr_fusion * args.lr_scale)
    options = dict(mm_drop_path=0.0) if args.no_drop_path else {}
    common = dict(epochs=args.epochs, batch_size=args.batch_size, device="cpu", seed=args.seed,
                  recipe=recipe, select_on="val", max_minutes=args.minutes, progress=args.progress,
                  cache_images=True, resume=True)
    out = Path(args.out)
    results = {}
    for name, data in (("real", ds), ("shuffled", shuffled_labels(ds, args.seed))):
        t0 = time.monotonic()
        if args.backbone_file:  # a freshly pretrained micro CLIP that is not installed yet
            from parkit.backbone import load_clip
            from parkit.model import create_model

            torch.manual_seed(args.seed)
            model = create_model(args.preset, attributes=data, device="cpu",
                                 backbone_model=load_clip(args.backbone_file, device="cpu"), **options)
            res = train(model, data, out_dir=out / name, **common)
        else:
            res = train(args.preset, data, out_dir=out / name, pretrained=pretrained,
                        model_options=options or None, **common)
        results[name] = {"test_selected": res.test_metrics["selected"],
                         "test_last": res.test_metrics["last"], "best_epoch": res.best_epoch,
                         "epochs_done": res.epochs_done, "stopped_early": res.stopped_early,
                         "history": res.history.to_dict(orient="records"),
                         "wall_minutes": (time.monotonic() - t0) / 60}
        print(f"[{name}] test mA {res.test_metrics['selected']['mA']:.2f} "
              f"(selected on val, epoch {res.best_epoch}); last {res.test_metrics['last']['mA']:.2f}",
              flush=True)
    from parkit.data.discovery import peta_source_prior_mA

    results["source_prior"] = peta_source_prior_mA(args.root)  # labels only: no training, seconds
    real = results["real"]["test_selected"]["mA"]
    shuf = results["shuffled"]["test_selected"]["mA"]
    verdict = {"real_mA": real, "shuffled_mA": shuf, "margin": real - shuf,
               "margin_ok": real - shuf >= 3.0, "shuffled_near_chance": abs(shuf - 50.0) <= 2.0}
    verdict["passed"] = verdict["margin_ok"] and verdict["shuffled_near_chance"]
    settings = {"load_average_start": load_start, "load_average_end": list(os.getloadavg()),
                "preset": args.preset, "pretrained_backbone": pretrained,
                "backbone_file": args.backbone_file, "recipe": recipe.to_dict(),
                "epochs": args.epochs, "batch_size": args.batch_size, "minutes_per_run": args.minutes,
                "seed": args.seed, "threads": args.threads, "dataset": ds.summary()}
    write_report(Path(args.report), settings, results, verdict)
    record = json.dumps({"settings": settings, "results": results, "verdict": verdict}, indent=2, default=str)
    (out / "results.json").write_text(record)
    # Kept beside the report so `--from-results` can rewrite it from the measured record alone.
    Path(args.report).with_suffix(".json").write_text(record)
    print(json.dumps(verdict, indent=2))
    return verdict


def write_report(path: Path, settings: dict, results: dict, verdict: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    r, s = results["real"], results["shuffled"]
    lines = [
        "# Real-data sanity check: PETA (real photographs)",
        "",
        "Written by `benchmarks/real_peta_sanity.py`. The same compact model, seed, recipe and time",
        "budget, trained on the real PETA subset (2000 train / 400 val / 1600 test of partition 0) with",
        "real labels and with train/val labels shuffled across images; both evaluated on the real test",
        "labels (paper protocol: threshold 0.45, mA in percent; model selected on val).",
        "",
        "| run | test mA (val-selected) | test mA (last) | test F1 (val-selected) | epochs done | best epoch | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in (("real labels", r), ("shuffled labels", s)):
        lines.append(f"| {name} | {res['test_selected']['mA']:.2f} | {res['test_last']['mA']:.2f} | "
                     f"{res['test_selected']['F1']:.2f} | {res['epochs_done']} | {res['best_epoch']} | "
                     f"{res['wall_minutes']:.1f} |")
    lines += [
        "",
        f"- margin real − shuffled: **{verdict['margin']:.2f}** points (required ≥ 3): "
        f"{'ok' if verdict['margin_ok'] else 'NOT MET'}",
        f"- shuffled-label mA within 2 points of 50: {'ok' if verdict['shuffled_near_chance'] else 'NOT MET'}",
        f"- verdict: **{'PASSED' if verdict['passed'] else 'FAILED'}**",
        "",
        "Settings:",
        "",
        "```json",
        json.dumps(settings, indent=2, default=str),
        "```",
        "",
        "The budget is wall-clock time on a shared machine, so the number of optimiser steps depends on",
        "the load (recorded above). Measured in this run:",
        "",
    ]
    for name, res in (("real labels", r), ("shuffled labels", s)):
        seconds = [row["seconds"] for row in res.get("history", []) if row.get("seconds") is not None]
        if seconds:
            lines.append(f"- {name}: {len(seconds)} epochs, {np.mean(seconds):.1f} s per epoch on average "
                         f"(min {np.min(seconds):.1f}, max {np.max(seconds):.1f})")
    bias = results.get("source_prior")
    if bias:
        lines += ["", f"Dataset bias, for scale: a predictor that knows only each image's PETA source collection "
                      f"(its per-attribute positive rate on the {bias['train']} partition-{bias['partition']} "
                      f"trainval images) reaches {bias['mA']:.2f} test mA on the {bias['test']} test images "
                      f"(`parkit.data.discovery.peta_source_prior_mA`, labels only)."]
    lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="PETA folder (PETA.mat + images/)")
    p.add_argument("--preset", default="promptpar-micro")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget per run")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply the recipe's learning rates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-pretrained", action="store_true", help="random frozen backbone")
    p.add_argument("--backbone-file", default=None,
                   help="CLIP checkpoint to use as the frozen backbone instead of the preset's")
    p.add_argument("--no-drop-path", action="store_true", help="mm_drop_path=0")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "parkit_real_peta_sanity"),
                   help="run folder (checkpoints; resumed when rerun with the same settings)")
    p.add_argument("--report", default=str(REPO / "benchmarks" / "results" / "real_peta_sanity.md"))
    p.add_argument("--from-results", default=None,
                   help="rewrite the report from a results.json of an earlier run (no training)")
    args = p.parse_args(argv)
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        write_report(Path(args.report), saved["settings"], saved["results"], saved["verdict"])
        return 0 if saved["verdict"]["passed"] else 1
    if not Path(args.root).is_dir():
        print(f"PETA folder {args.root} not found: pass --root", file=sys.stderr)
        return 2
    verdict = run(args)
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
