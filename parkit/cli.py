"""The command line: ``python -m parkit {train,eval,predict,pretrain-backbone,export,presets,datasets}``.

Every argument parser of parkit lives here; the library modules keep only functions. Each
sub-command is a thin wrapper over the public API (`parkit.train.train`, `evaluate`, `predict`,
`parkit.backbone.pretrain.pretrain_micro_clip`, `parkit.export.export_onnx`,
`parkit.model.list_presets`, `parkit.data.list_datasets`). One function builds each sub-command's
parser (`add_train_parser`, ..., `add_pretrain_backbone_parser`) and stores the function that runs
it, so a new option is one `add_argument` line there plus its use in that runner. Multi-GPU
training runs the same command under torchrun:

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
from typing import Callable, Optional, Sequence

import torch

from parkit.backbone.checkfiles import CLIP_ENV, VIT_ENV, describe_check_weights, write_check_weights
from parkit.backbone.micro import MICRO_CHECKPOINT
from parkit.backbone.pretrain import CAPTION_MODES, DEFAULTS, SIZES, pretrain_micro_clip
from parkit.data import list_datasets
from parkit.export import compare_with_torch, export_onnx, read_onnx_metadata
from parkit.metrics import format_metrics
from parkit.model import list_presets, load_official_checkpoint
from parkit.model.config import preset_description
from parkit.train import evaluate, predict, train
from parkit.train.checkpoint import load_model
from parkit.train.distributed import cleanup_distributed
from parkit.train.inference import predictions_to_json
from parkit.train.schedule import get_recipe

COMMANDS = ("train", "eval", "predict", "pretrain-backbone", "export", "check-weights", "presets", "datasets")


def key_values(pairs: Optional[Sequence[str]], flag: str) -> dict:
    """Parse repeated KEY=VALUE options; values are read as JSON, else kept as text.

    Args:
        pairs: e.g. ["a=1", "b=true", "c=ViT-B/16"] -> {"a": 1, "b": True, "c": "ViT-B/16"}.
        flag: the option's name, for the error message.

    Raises:
        SystemExit: a pair without "=".
    """
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


# --- train ------------------------------------------------------------------------------------

def add_train_parser(sub) -> argparse.ArgumentParser:
    """The `train` sub-command's parser (runs `run_train`)."""
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
    t.set_defaults(run=run_train)
    return t


def run_train(a: argparse.Namespace) -> int:
    """`train`: `parkit.train.train` with the parsed options; prints the summary on rank 0."""
    recipe = a.recipe
    if a.recipe_set:
        recipe = get_recipe(a.recipe or a.preset).replace(**key_values(a.recipe_set, "--recipe-set"))
    try:
        result = train(a.preset, a.dataset, root=a.root, epochs=a.epochs, batch_size=a.batch_size,
                       out_dir=a.out, device=a.device, seed=a.seed, recipe=recipe,
                       select_on=a.select_on, max_minutes=a.max_minutes, progress=not a.no_progress,
                       resume=not a.no_resume, num_workers=a.num_workers,
                       pretrained=not a.no_pretrained, model_options=key_values(a.set, "--set") or None,
                       dataset_options=key_values(a.dataset_option, "--dataset-option") or None,
                       checkpoint_every=a.checkpoint_every, eval_limit=a.eval_limit,
                       precision=a.precision, on_corrupt=a.on_corrupt,
                       cache_images=a.cache_images)
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out_dir": result.paths["out_dir"], "best_epoch": result.best_epoch,
                          "test": result.test_metrics, "stopped_early": result.stopped_early}, indent=2))
    return 0


# --- eval -------------------------------------------------------------------------------------

def add_eval_parser(sub) -> argparse.ArgumentParser:
    """The `eval` sub-command's parser (runs `run_eval`)."""
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
    e.set_defaults(run=run_eval)
    return e


def run_eval(a: argparse.Namespace) -> int:
    """`eval`: `parkit.train.evaluate`, printed; written as JSON (metrics) or CSV (per attribute)."""
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


# --- predict ----------------------------------------------------------------------------------

def add_predict_parser(sub) -> argparse.ArgumentParser:
    """The `predict` sub-command's parser (runs `run_predict`)."""
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
    r.set_defaults(run=run_predict)
    return r


def run_predict(a: argparse.Namespace) -> int:
    """`predict`: `parkit.train.predict`, printed as CSV or written as CSV/JSON."""
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


# --- pretrain-backbone ------------------------------------------------------------------------

def add_pretrain_backbone_parser(sub) -> argparse.ArgumentParser:
    """The `pretrain-backbone` sub-command's parser (runs `run_pretrain_backbone`).

    Defaults come from `parkit.backbone.pretrain.DEFAULTS`, the settings of the committed
    checkpoint. A new pretraining option is one `add_argument` here plus its keyword in
    `run_pretrain_backbone`.
    """
    p = sub.add_parser("pretrain-backbone", help="pretrain the compact micro CLIP on SynthPAR captions",
                       description="Pretrain the compact micro CLIP on SynthPAR captions.")
    p.add_argument("--data-root", default=None,
                   help="pretraining SynthPAR folder (default: parkit's cache, synthpar-<n>-<seed>)")
    p.add_argument("--out", default=str(MICRO_CHECKPOINT), help="checkpoint to write (default: %(default)s)")
    p.add_argument("--n-images", type=int, default=DEFAULTS["n_images"],
                   help="size of the pretraining SynthPAR (default: %(default)s)")
    p.add_argument("--data-seed", type=int, default=DEFAULTS["data_seed"],
                   help="seed of the pretraining SynthPAR; keep it apart from the evaluation seed "
                        "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="image-caption pairs per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="AdamW peak rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"],
                   help="(default: %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=DEFAULTS["warmup_epochs"],
                   help="linear warm-up before the cosine decay (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seed of the weights, caption draws, flips and batch order (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads; on a busy shared CPU, 1 is several times faster than 2 "
                        "(default: torch's setting)")
    p.add_argument("--no-eval", action="store_true", help="skip the zero-shot evaluation")
    p.add_argument("--eval-root", default=None, help="SynthPAR folder of the zero-shot evaluation")
    p.add_argument("--eval-n-images", type=int, default=DEFAULTS["eval_n_images"],
                   help="size of the evaluation SynthPAR (default: %(default)s)")
    p.add_argument("--eval-seed", type=int, default=DEFAULTS["eval_seed"],
                   help="seed of the evaluation SynthPAR (default: %(default)s)")
    p.add_argument("--captions", choices=CAPTION_MODES, default=DEFAULTS["caption_mode"],
                   help="one: a random caption per image per epoch; all: its captions joined; "
                        "attributes: colour-free attribute lists (a second stage); alttext: SynthWorld "
                        "scenes with web-like alt-text (default: %(default)s)")
    p.add_argument("--clip-grad", type=float, default=DEFAULTS["clip_grad"],
                   help="clip the gradient norm at this value (default: no clipping)")
    p.add_argument("--monitor-every", type=int, default=DEFAULTS["monitor_every"],
                   help="log the zero-shot AUC on the evaluation split every N epochs (default: never)")
    p.add_argument("--size", choices=sorted(SIZES), default="micro",
                   help="architecture of the compact CLIP (default: %(default)s)")
    p.add_argument("--init", default=None,
                   help="start from this packed micro checkpoint (a second stage) instead of random weights")
    p.set_defaults(run=run_pretrain_backbone)
    return p


def run_pretrain_backbone(a: argparse.Namespace) -> int:
    """`pretrain-backbone`: `parkit.backbone.pretrain.pretrain_micro_clip` with the parsed options."""
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    pretrain_micro_clip(a.data_root, a.out, epochs=a.epochs, batch_size=a.batch_size, seed=a.seed,
                        device=a.device, n_images=a.n_images, data_seed=a.data_seed, lr=a.lr,
                        weight_decay=a.weight_decay, warmup_epochs=a.warmup_epochs,
                        caption_mode=a.captions, clip_grad=a.clip_grad, monitor_every=a.monitor_every,
                        init_from=a.init, config=SIZES[a.size],
                        evaluate=not a.no_eval, eval_root=a.eval_root,
                        eval_n_images=a.eval_n_images, eval_seed=a.eval_seed)
    return 0


# --- export -----------------------------------------------------------------------------------

def add_export_parser(sub) -> argparse.ArgumentParser:
    """The `export` sub-command's parser (runs `run_export`): CHECKPOINT OUT.onnx."""
    p = sub.add_parser(
        "export", help="export a model to ONNX",
        description="Export a trained parkit model to ONNX (images -> probabilities, logits); the "
                    "attribute text features are baked in as constants.")
    p.add_argument("checkpoint", help="a parkit checkpoint (best.pt / last.pt) or, with --official, a "
                                      "released PromptPAR checkpoint")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch axis to 1")
    p.add_argument("--official", action="store_true", help="the checkpoint is a released PromptPAR file")
    p.add_argument("--dataset", default=None,
                   help="with --official: the attribute schema (PETA, PA100K, RAPv1, ...)")
    p.add_argument("--trust", action="store_true",
                   help="with --official: allow a full unpickle of the file (only for trusted files)")
    p.add_argument("--check", action="store_true",
                   help="run the file with onnxruntime and compare with PyTorch on random images")
    p.set_defaults(run=run_export)
    return p


def run_export(a: argparse.Namespace) -> int:
    """`export`: rebuild the model from a checkpoint and write the ONNX file (`parkit.export`)."""
    if a.official:
        if not a.dataset:
            raise SystemExit("--official needs --dataset (the checkpoint's attribute list), e.g. --dataset PETA")
        model = load_official_checkpoint(a.checkpoint, attributes=a.dataset, device="cpu",
                                         allow_pickle=bool(a.trust))
    else:
        model = load_model(a.checkpoint, device="cpu")
    path = export_onnx(model, a.output, opset=a.opset, dynamic_batch=not a.static_batch)
    meta = read_onnx_metadata(path)
    print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.1f} MiB): {len(meta['attributes'])} attributes, "
          f"input (B, 3, {meta['image_size']}, {meta['image_size']})")
    if a.check:
        diff = compare_with_torch(model, path)
        print(f"onnxruntime vs PyTorch: max |probability difference| = {diff:.2e}")
    return 0


# --- check-weights ----------------------------------------------------------------------------

def add_check_weights_parser(sub) -> argparse.ArgumentParser:
    """`check-weights`: seeded stand-ins for the paper profile's two weight files."""
    c = sub.add_parser("check-weights", help="write seeded stand-ins of the paper profile's two weight files "
                                             "(for PROFILE=paper-check)")
    c.add_argument("folder", help="where to write them (kept when already there)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--overwrite", action="store_true", help="rewrite files that exist")
    c.set_defaults(run=run_check_weights)
    return c


def run_check_weights(a: argparse.Namespace) -> int:
    """Write both files, say they are not the official ones, and print the two lines to export."""
    paths = write_check_weights(a.folder, seed=a.seed, overwrite=a.overwrite)
    print(describe_check_weights(paths["clip"], paths["vit"]), file=sys.stderr)
    print(f"export {CLIP_ENV}={paths['clip'].resolve()}")
    print(f"export {VIT_ENV}={paths['vit'].resolve()}")
    return 0


# --- listings ---------------------------------------------------------------------------------

def run_presets(a: argparse.Namespace) -> int:
    """`presets`: one line per model preset with its recipe and description."""
    names = list_presets()
    width = max(len(n) for n in names)
    for n in names:
        print(f"{n:<{width}}  [{get_recipe(n).name} recipe]  {preset_description(n)}")
    return 0


def run_datasets(a: argparse.Namespace) -> int:
    """`datasets`: the names `load_dataset` accepts."""
    for name in list_datasets():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one sub-parser per command, each storing its runner as `run`."""
    p = argparse.ArgumentParser(prog="python -m parkit",
                                description="PromptPAR reproduction toolkit (parkit).")
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    add_train_parser(sub)
    add_eval_parser(sub)
    add_predict_parser(sub)
    add_pretrain_backbone_parser(sub)
    add_export_parser(sub)
    add_check_weights_parser(sub)
    sub.add_parser("presets", help="list model presets").set_defaults(run=run_presets)
    sub.add_parser("datasets", help="list dataset loaders").set_defaults(run=run_datasets)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after `python -m parkit` (default: sys.argv[1:]).

    Returns:
        The exit status: 0 on success, 1 without a command, 2 on bad input.
    """
    parser = build_parser()
    a = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if a.command is None:
        parser.print_help()
        return 1
    return guarded(lambda: a.run(a))


def guarded(fn: Callable[[], int]) -> int:
    """Run `fn`; input errors become one line on stderr and exit status 2 (PARKIT_DEBUG=1: raise)."""
    if os.environ.get("PARKIT_DEBUG"):
        return fn()
    try:
        return fn()
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error ({type(exc).__name__}): {msg}\n(set PARKIT_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2
