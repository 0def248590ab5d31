"""The command line: ``python -m parkit {train,eval,predict,pretrain-backbone,export,presets,datasets}``.

Each sub-command is a thin wrapper over the public API (`parkit.train.train`, `evaluate`,
`predict`, `parkit.backbone.main_pretrain`, `parkit.model.list_presets`,
`parkit.data.list_datasets`). Multi-GPU training runs the same command under torchrun:

    torchrun --nproc_per_node=4 -m parkit train --preset promptpar-vitl14 --dataset PETA \\
        --root /data/PETA --out runs/peta

Errors that come from bad input (a missing file, an unknown preset, a checkpoint of another
configuration, a diverged run) print one message and exit with status 2; set PARKIT_DEBUG=1 for
the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

COMMANDS = ("train", "eval", "predict", "pretrain-backbone", "export", "presets", "datasets")


def _key_values(pairs: Optional[Sequence[str]], flag: str) -> dict:
    """["a=1", "b=true", "c=ViT-B/16"] -> {"a": 1, "b": True, "c": "ViT-B/16"} (JSON values, else text)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"error: {flag} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m parkit",
                                description="PromptPAR reproduction toolkit (parkit).")
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    t = sub.add_parser("train", help="train a model on a dataset")
    t.add_argument("--preset", default="promptpar-micro", help="model preset (see `presets`)")
    t.add_argument("--dataset", required=True, help="dataset name (see `datasets`)")
    t.add_argument("--root", default=None, help="dataset root folder")
    t.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    t.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    t.add_argument("--batch-size", type=int, default=None, help="global batch size (default: the recipe's)")
    t.add_argument("--recipe", default=None, help="'paper' or 'compact' (default: the preset's)")
    t.add_argument("--recipe-set", action="append", metavar="KEY=VALUE",
                   help="override a recipe field, e.g. lr_fusion=0.004 (repeatable)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a model setting, e.g. vis_prompt=20 (repeatable)")
    t.add_argument("--dataset-option", action="append", metavar="KEY=VALUE",
                   help="option for the dataset loader, e.g. partition=1 (repeatable)")
    t.add_argument("--select-on", choices=("val", "test", "last"), default="val",
                   help="model selection split; 'test' reproduces the official (optimistic) reporting")
    t.add_argument("--device", default=None)
    t.add_argument("--seed", type=int, default=605)
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--num-workers", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps")
    t.add_argument("--eval-limit", type=int, default=None, help="evaluate at most N images per split")
    t.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    t.add_argument("--on-corrupt", choices=("raise", "skip"), default="raise")
    t.add_argument("--cache-images", action="store_true",
                   help="keep decoded, letterboxed images in memory between epochs")
    t.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    t.add_argument("--no-pretrained", action="store_true",
                   help="random (seeded) backbone weights instead of the pretrained ones")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    e.add_argument("--checkpoint", required=True, help="parkit checkpoint, or an official one with --official")
    e.add_argument("--dataset", required=True)
    e.add_argument("--root", default=None)
    e.add_argument("--split", default="test")
    e.add_argument("--official", action="store_true",
                   help="the checkpoint is a released PromptPAR file (loaded by parkit.model.load_official_checkpoint)")
    e.add_argument("--trust", action="store_true",
                   help="allow unpickling an official checkpoint (only for files you trust)")
    e.add_argument("--backbone", default=None, help="expected CLIP backbone of an official checkpoint")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--threshold", type=float, default=None, help="default 0.45 (the paper's)")
    e.add_argument("--limit", type=int, default=None, help="evaluate at most N images")
    e.add_argument("--raw-labels", action="store_true",
                   help="count unknown labels as the official function does (default: ignore them)")
    e.add_argument("--device", default=None)
    e.add_argument("--out", default=None, help="write metrics (.json) or the per-attribute table (.csv)")
    e.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("predict", help="predict attributes of image files or folders")
    r.add_argument("images", nargs="+", help="image files and/or folders")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--out", default=None, help="preds.csv or preds.json (default: print CSV)")
    r.add_argument("--threshold", type=float, default=0.45)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--device", default=None)
    r.add_argument("--compile", action="store_true",
                   help="compile the model with torch.compile (inductor, frozen weights) first: "
                        "faster on many images, tens of seconds to build")

    sub.add_parser("pretrain-backbone", add_help=False,
                   help="pretrain the compact micro CLIP (options: pretrain-backbone --help)")
    sub.add_parser("export", add_help=False, help="export a model (options: export --help)")
    sub.add_parser("presets", help="list model presets")
    sub.add_parser("datasets", help="list dataset loaders")
    return p


def _cmd_train(a) -> int:
    from parkit.train import train
    from parkit.train.distributed import cleanup_distributed
    from parkit.train.schedule import get_recipe

    recipe = a.recipe
    if a.recipe_set:
        recipe = get_recipe(a.recipe or a.preset).replace(**_key_values(a.recipe_set, "--recipe-set"))
    try:
        result = train(a.preset, a.dataset, root=a.root, epochs=a.epochs, batch_size=a.batch_size,
                       out_dir=a.out, device=a.device, seed=a.seed, recipe=recipe,
                       select_on=a.select_on, max_minutes=a.max_minutes, progress=not a.no_progress,
                       resume=not a.no_resume, num_workers=a.num_workers,
                       pretrained=not a.no_pretrained, model_options=_key_values(a.set, "--set") or None,
                       dataset_options=_key_values(a.dataset_option, "--dataset-option") or None,
                       checkpoint_every=a.checkpoint_every, eval_limit=a.eval_limit,
                       precision=a.precision, on_corrupt=a.on_corrupt,
                       cache_images=a.cache_images)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out_dir": result.paths["out_dir"], "best_epoch": result.best_epoch,
                          "test": result.test_metrics, "stopped_early": result.stopped_early}, indent=2))
    return 0


def _cmd_eval(a) -> int:
    from parkit.metrics import format_metrics
    from parkit.train import evaluate

    res = evaluate(a.checkpoint, a.dataset, a.split, root=a.root, batch_size=a.batch_size,
                   device=a.device, threshold=a.threshold, ignore_unknown=not a.raw_labels,
                   progress=not a.no_progress, limit=a.limit, official=a.official,
                   backbone=a.backbone, trust=a.trust)
    print(f"{res.dataset} / {a.split} ({len(res.rows)} images, threshold {res.threshold}): "
          f"{format_metrics(res.metrics)}")
    print(f"  Rethinking variant (threshold 0.5, harmonic F1): {format_metrics(res.metrics_rethinking)}")
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            res.table.to_csv(out)
        else:
            out.write_text(json.dumps({
                "dataset": res.dataset, "split": a.split, "images": int(len(res.rows)),
                "checkpoint": str(a.checkpoint), "official": a.official,
                "paper": res.summary(), "rethinking": {k: 100 * res.metrics_rethinking[k]
                                                        for k in ("mA", "Acc", "Prec", "Rec", "F1")},
                "per_attribute_mA": dict(zip(res.table.index, 100 * res.table["mA"].astype(float)))},
                indent=2))
        print(f"wrote {out}")
    return 0


def _cmd_predict(a) -> int:
    from parkit.train import predict
    from parkit.train.inference import predictions_to_json

    df = predict(a.checkpoint, a.images, threshold=a.threshold, batch_size=a.batch_size, device=a.device,
                 compile=a.compile)
    for s in df.attrs["skipped"]:
        print(f"skipped {s['image']}: {s['error']}", file=sys.stderr)
    if a.out is None:
        df.to_csv(sys.stdout, index=False)
        return 0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(predictions_to_json(df), indent=2))
    else:
        df.to_csv(out, index=False)
    print(f"wrote {out}: {len(df)} images, {len(df.attrs['skipped'])} skipped")
    return 0


def _cmd_export(argv: List[str]) -> int:
    import importlib.util

    if importlib.util.find_spec("parkit.export") is None:
        print("`python -m parkit export` is not yet available in this version of parkit. To write "
              "a checkpoint in the official PromptPAR layout use "
              "parkit.model.export_official_checkpoint(model, path).", file=sys.stderr)
        return 2
    from parkit.export import main as export_main

    result = export_main(argv)
    return result if isinstance(result, int) else 0


def _cmd_presets() -> int:
    from parkit.model import list_presets
    from parkit.model.config import preset_description
    from parkit.train.schedule import get_recipe

    names = list_presets()
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  [{get_recipe(n).name} recipe]  {preset_description(n)}")
    return 0


def _cmd_datasets() -> int:
    from parkit.data import list_datasets

    for name in list_datasets():
        print(name)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pretrain-backbone":  # its own parser owns the remaining options
        from parkit.backbone import main_pretrain

        return _guarded(lambda: (main_pretrain(argv[1:]), 0)[1])
    if argv and argv[0] == "export":
        return _guarded(lambda: _cmd_export(argv[1:]))
    parser = _parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 1
    handlers = {"train": lambda: _cmd_train(a), "eval": lambda: _cmd_eval(a),
                "predict": lambda: _cmd_predict(a), "presets": _cmd_presets,
                "datasets": _cmd_datasets}
    return _guarded(handlers[a.command])


def _guarded(fn) -> int:
    """Run `fn`; input errors become one line on stderr and exit status 2."""
    if os.environ.get("PARKIT_DEBUG"):
        return fn()
    try:
        return fn()
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error ({type(exc).__name__}): {msg}\n(set PARKIT_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
