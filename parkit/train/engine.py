"""The training engine: `train(...)` fits a PromptPAR model on a `PARDataset` (spec §8-§10).

One call does what the official `train.py` does, with the protocol fixed and the run made
resumable:

* **Loss / optimisation** (spec §8-§9): weighted BCE with positive ratios from the training split,
  + 0.5 × the global-local branch; one optimiser per parameter group ("prompt", "fusion") with the
  recipe's per-epoch cosine (see `parkit.train.schedule`), gradients clipped per group; bf16
  autocast on CUDA, fp32 on CPU. A NaN/inf loss or gradient stops the run with an error naming
  the epoch and step; the last good checkpoint is kept.
* **Model selection** (spec §10, §14.16): by default the model is trained on "train" and selected
  on "val" by mA, and the test split is evaluated once at the end, for the selected and the last
  model. `select_on="test"` reproduces the official reporting (train on "trainval", evaluate the
  test split every epoch, report the best epoch) and is labelled as test-set selection in every
  log; `select_on="last"` trains on "trainval" and reports the last epoch.
* **Checkpoints** (`parkit.train.checkpoint`): `last.pt` at every epoch end and every
  `checkpoint_every` steps / `checkpoint_minutes` minutes inside an epoch, `best.pt` when the
  selection metric improves; per-epoch logs in `history.csv` and `history.json`.
* **Exact resume.** A run killed at any point and started again with the same arguments continues
  from `last.pt` and ends with the same tensors and metrics as an uninterrupted run: each epoch's
  order is a function of (seed, epoch) (`EpochBatchSampler`), batches already done are skipped,
  each sample's augmentation is drawn from its own generator seeded with (seed, epoch, sample),
  and the model's own randomness (DropPath) continues from the saved RNG state.
* **Data parallel** (`parkit.train.distributed`): under `torchrun`, DistributedDataParallel with
  the same global batch as a single process, synchronised BatchNorm, rank-0 logging/checkpoints.

Deliberate departures from the official loop (spec §14): every module is in eval mode during
evaluation (the official code leaves `agg_bn` in train mode, §14.18; predictions are unaffected);
bf16 autocast replaces the fp16 weight casts without loss scaling (§14.20); checkpoints hold the
trained tensors and both optimisers' states instead of a full CLIP copy and one optimiser (§14.15);
a last training batch too small for BatchNorm is dropped (the official loop keeps it, §9).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from parkit.metrics import HEADLINE, format_metrics, pedestrian_metrics
from parkit.train import checkpoint as ckpt_io
from parkit.train.distributed import (DistContext, EpochBatchSampler, all_gather_objects, barrier,
                                      broadcast_object, init_distributed, sync_batchnorm,
                                      unsync_batchnorm)
from parkit.train.loss import par_loss, positive_ratio, weighted_bce
from parkit.train.schedule import Recipe, build_optimizers, get_recipe, set_epoch_lr

SELECT_ON = ("val", "test", "last")
DEFAULT_SEED = 605  # spec §9: the official set_seed value


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the epoch, step and checkpoint."""


class SettingsMismatch(ckpt_io.CheckpointError):
    """`out_dir` holds a run with other settings; the message names them."""


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        history: one row per completed epoch (losses, learning rates, selection-split metrics in
            percent, seconds).
        select_on: "val", "test" (official, optimistic) or "last".
        best_epoch: 1-based epoch of the selected model (None when nothing was selected).
        best_metrics: headline metrics (percent) of the selected epoch on the selection split.
        last_metrics: headline metrics (percent) of the last epoch on the selection split.
        test_metrics: {"selected": {...}, "last": {...}} headline test metrics (percent).
        official_running_max: with select_on="test", the per-metric maxima over epochs that the
            official script prints (they may come from different epochs, spec §10).
        paths: out_dir, best, last, history_csv, history_json, summary.
        model: the selected model (best epoch; the last one when nothing was selected), eval mode.
        stopped_early: True when `max_minutes` ended the run before `epochs`.
        epochs_done: completed epochs.
    """

    history: Any
    select_on: str
    best_epoch: Optional[int]
    best_metrics: dict
    last_metrics: dict
    test_metrics: dict
    official_running_max: Optional[dict]
    paths: dict
    model: Any = field(repr=False, default=None)
    stopped_early: bool = False
    epochs_done: int = 0

    def summary(self) -> dict:
        """Flat dict for tables: test mA/F1 of the selected and last model, epochs, selection."""
        out = {"select_on": self.select_on, "best_epoch": self.best_epoch,
               "epochs_done": self.epochs_done, "stopped_early": self.stopped_early}
        for which, m in self.test_metrics.items():
            for k, v in m.items():
                out[f"test_{k}_{which}"] = v
        return out


# --------------------------------------------------------------------------------------------
# Data plumbing
# --------------------------------------------------------------------------------------------
class SeededSamples(torch.utils.data.Dataset):
    """Wraps a map-style dataset so each sample's random augmentation depends only on its key.

    Keys are ``(epoch, position)``. The wrapped `__getitem__` runs with torch, numpy and python
    RNGs seeded from (seed, epoch, position) and restored afterwards, so augmentation neither
    depends on the order in which workers fetch samples nor disturbs the training loop's RNG
    (which drives DropPath). This is what makes a resumed run identical to an uninterrupted one.
    """

    def __init__(self, base, seed: int):
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, pos = key
        s = np.random.SeedSequence([self.seed, int(epoch), int(pos)]).generate_state(2)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(s[0]))
            random.seed(int(s[1]))
            np.random.seed(int(s[1]))
            try:
                return self.base[int(pos)]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def _collate(batch):
    """Default collation after dropping samples a skipping dataset returned as None."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)


def _make_torch_dataset(dataset, indices, train: bool, model, on_corrupt: str, cache: bool = False):
    from parkit.data import PARTorchDataset
    from parkit.data.transforms import build_transform

    transform = build_transform(train=train, image_size=model.image_size,
                                normalization=model.normalization)
    return PARTorchDataset(dataset, indices, transform, on_corrupt=on_corrupt, cache=cache)


def _split(dataset, name: str, role: str) -> np.ndarray:
    splits = getattr(dataset, "splits", {})
    if name not in splits:
        hint = ""
        if role == "selection" and name == "val":
            hint = (" Pass select_on='last' (train on trainval, report the last epoch) or "
                    "select_on='test' (the official protocol, which selects on the test split).")
        raise ValueError(f"{dataset.name} has no {name!r} split for {role}; it has "
                         f"{sorted(splits)}.{hint}")
    idx = np.asarray(splits[name], dtype=np.int64)
    if idx.size == 0:
        raise ValueError(f"{dataset.name}: the {name!r} split used for {role} is empty")
    return idx


def limit_indices(indices: np.ndarray, limit: Optional[int]) -> np.ndarray:
    """At most `limit` evenly spaced entries of `indices` (all of them when limit is None)."""
    if limit is None or limit >= len(indices):
        return indices
    pick = np.linspace(0, len(indices) - 1, int(limit)).round().astype(np.int64)
    return indices[np.unique(pick)]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _autocast(device: torch.device, precision: str):
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if precision not in ("auto", "bf16"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _no_buffer_broadcast() -> dict:
    """DDP keyword that stops the per-forward buffer broadcast (BN statistics are synchronised
    by sync BN instead); newer torch renamed `broadcast_buffers` to `forward_sync_buffers`."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {
        "broadcast_buffers": False}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_jsonable(v):
    if isinstance(v, dict):
        return {str(k): _to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_to_jsonable(obj), indent=2))
    tmp.replace(path)


def _history_frame(history: List[dict]):
    import pandas as pd

    return pd.DataFrame(history)


def _write_history(history: List[dict], out_dir: Path) -> None:
    frame = _history_frame(history)
    tmp = out_dir / ".history.csv.tmp"
    frame.to_csv(tmp, index=False)
    tmp.replace(out_dir / "history.csv")
    _write_json(history, out_dir / "history.json")


def _headline_percent(m: dict) -> dict:
    return {k: round(100.0 * float(m[k]), 4) for k in HEADLINE}


# --------------------------------------------------------------------------------------------
# Prediction over a torch dataset (shared by training-time evaluation and `evaluate`)
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_logits(model: nn.Module, torch_dataset, *, batch_size: int, device: torch.device,
                   ctx: DistContext = DistContext(), precision: str = "auto", num_workers: int = 0,
                   progress: bool = False, desc: str = "eval"):
    """Logits (and targets, ignore masks) of every sample of `torch_dataset`, in order.

    Under data parallelism each rank predicts the positions rank, rank + W, ... and the results
    are gathered on every rank.

    Returns:
        (logits (N, A) float32, targets (N, A) float32, ignore (N, A) bool, kept (N,) positions)
        as numpy arrays; samples a skipping dataset dropped are absent from `kept`.
    """
    from parkit.progress import tqdm

    net = _unwrap(model)
    was_training = net.training
    net.eval()
    positions = list(range(ctx.rank, len(torch_dataset), ctx.world_size))
    subset = torch.utils.data.Subset(torch_dataset, positions)
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=_collate,
                                         pin_memory=device.type == "cuda",
                                         # a private generator: creating the loader must not draw
                                         # from the global RNG that the training loop relies on
                                         generator=torch.Generator().manual_seed(0))
    logits, targets, ignores, kept = [], [], [], []
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and ctx.is_main))
    for batch in bar:
        if batch is None:
            continue
        images, target, ignore, index = batch
        with _autocast(device, precision):
            out = net(images.to(device, non_blocking=True))
        logits.append(out.logits.float().cpu())
        targets.append(target.float())
        ignores.append(ignore.bool())
        kept.append(index)
    net.train(was_training)
    a = len(getattr(net, "attributes", [])) or (logits[0].shape[1] if logits else 0)
    local = (torch.cat(logits).numpy() if logits else np.zeros((0, a), np.float32),
             torch.cat(targets).numpy() if targets else np.zeros((0, a), np.float32),
             torch.cat(ignores).numpy() if ignores else np.zeros((0, a), bool),
             torch.cat(kept).numpy() if kept else np.zeros((0,), np.int64))
    if not ctx.enabled:
        return local
    parts = all_gather_objects(local, ctx)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _evaluate_split(model, torch_dataset, pos_ratio, *, batch_size, device, ctx, precision,
                    num_workers, progress, threshold, desc):
    logits, targets, ignore, _ = predict_logits(
        model, torch_dataset, batch_size=batch_size, device=device, ctx=ctx, precision=precision,
        num_workers=num_workers, progress=progress, desc=desc)
    labels = np.where(ignore, 2, targets).astype(np.int64)  # back to raw form: 2 = unknown
    metrics = pedestrian_metrics(labels, _sigmoid(logits), threshold=threshold, ignore="auto")
    loss = weighted_bce(torch.from_numpy(logits), torch.from_numpy(targets), pos_ratio,
                        torch.from_numpy(ignore)).item() if len(logits) else float("nan")
    return metrics, loss


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
def _resolve_dataset(dataset, root, dataset_options):
    if isinstance(dataset, str):
        from parkit.data import load_dataset

        return load_dataset(dataset, root, **(dataset_options or {}))
    if dataset is None:
        raise ValueError("train needs a dataset: a PARDataset or a registered name plus root")
    return dataset


def _resolve_model(model_or_preset, dataset, pretrained, device, model_options):
    if isinstance(model_or_preset, str):
        from parkit.model import create_model

        model = create_model(model_or_preset, attributes=list(dataset.attributes),
                             sentences=list(dataset.sentences), pretrained=pretrained,
                             device=device, **(model_options or {}))
        return model, model_or_preset
    model = model_or_preset
    if model_options:
        raise ValueError("model_options only apply when train() builds the model from a preset")
    attrs = list(model.attributes)
    if attrs != list(dataset.attributes):
        diff = ckpt_io.describe_differences({"attributes": attrs},
                                            {"attributes": list(dataset.attributes)})
        raise ValueError(f"the model's attributes do not match {dataset.name}'s: "
                         f"{'; '.join(diff)} ('checkpoint' = the model, 'here' = the dataset)")
    return model.to(device), getattr(model, "preset", None)


def _resolve_recipe(recipe, model) -> Recipe:
    if recipe is None:
        return get_recipe(model)  # by the model's backbone (compact for the micro CLIP)
    if isinstance(recipe, str):
        return get_recipe(recipe)
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, Recipe):
        return recipe
    raise TypeError(f"recipe must be None, a name, a dict or a Recipe, got {type(recipe).__name__}")


def _check_resume_settings(saved: dict, current: dict, path: Path) -> None:
    diffs = ckpt_io.describe_differences(saved, current)
    if diffs:
        raise SettingsMismatch(
            f"{path} belongs to a run with other settings:\n  " + "\n  ".join(diffs)
            + "\nResume with the same settings, choose another out_dir, or pass resume=False "
              "to start over in this folder")


def train(model_or_preset, dataset=None, *, root=None, epochs: Optional[int] = None,
          batch_size: Optional[int] = None, out_dir=None, device=None, seed: int = DEFAULT_SEED,
          recipe=None, select_on: str = "val", max_minutes: Optional[float] = None,
          progress: bool = True, resume: bool = True, num_workers: int = 0,
          pretrained: bool = True, model_options: Optional[dict] = None,
          dataset_options: Optional[dict] = None, train_split: Optional[str] = None,
          checkpoint_every: Optional[int] = None, checkpoint_minutes: Optional[float] = 10.0,
          eval_batch_size: Optional[int] = None, eval_limit: Optional[int] = None,
          precision: str = "auto", on_corrupt: str = "raise", test_at_end: bool = True,
          sync_bn: bool = True, cache_images: bool = False, verbose: bool = True) -> TrainResult:
    """Train a PromptPAR model (or any model honouring the parkit model contract).

    Args:
        model_or_preset: a preset name (built with the dataset's attributes and sentences) or a
            model.
        dataset: a `PARDataset`, or a registered dataset name loaded from `root`.
        root: dataset root when `dataset` is a name.
        epochs, batch_size: default to the recipe's (batch_size is the global batch).
        out_dir: folder for checkpoints and logs (required).
        device: "cpu", "cuda", ... (default CUDA when available). Under torchrun each process
            uses cuda:LOCAL_RANK when CUDA is used.
        seed: seeds parameter init of the run, the data order and the augmentation.
        recipe: a `Recipe`, its name ("paper", "compact") or dict; default: the preset's.
        select_on: "val" (default), "test" (official, optimistic) or "last".
        max_minutes: stop after this much training time (checked after every step); the run
            can be continued later by calling `train` again with the same arguments.
        progress: tqdm progress bars and per-epoch log lines.
        resume: continue from `out_dir/last.pt` when it exists (otherwise start over there).
        num_workers: DataLoader workers.
        pretrained: load the pretrained backbone (False: seeded random weights; tests).
        model_options: config overrides passed to `create_model`.
        dataset_options: options passed to `load_dataset` when `dataset` is a name.
        train_split: override the training split ("train" for select_on="val", else "trainval").
        checkpoint_every: also write `last.pt` every this many steps inside an epoch.
        checkpoint_minutes: ... and at least every this many minutes (None: only at epoch ends
            and `checkpoint_every`).
        eval_batch_size: evaluation batch size (default 2 × batch_size).
        eval_limit: evaluate at most this many (evenly spaced) images per split.
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32".
        on_corrupt: "raise" or "skip" unreadable training/evaluation images.
        test_at_end: evaluate the selected and the last model on the test split at the end.
        sync_bn: synchronise BatchNorm statistics across processes under data parallelism.
        cache_images: keep decoded, letterboxed training/selection images in memory (uint8,
            about image_size² × 3 bytes each) so later epochs skip decoding; with
            num_workers > 0 every worker holds its own copy.
        verbose: print one line per epoch (rank 0).

    Returns:
        A `TrainResult`.

    Raises:
        TrainingDiverged: NaN/inf loss or gradients (the last good checkpoint stays).
        SettingsMismatch: `out_dir` holds a run with other settings and `resume` is True.
    """
    from parkit.progress import tqdm

    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {select_on!r}")
    if out_dir is None:
        raise ValueError("train needs out_dir: the folder for checkpoints and logs")
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    out_dir = Path(out_dir)
    ctx = init_distributed(None if device is None else str(device))
    device = ckpt_io.resolve_device(device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    say = (lambda msg: (tqdm.write(msg) if progress else print(msg, flush=True))) \
        if (verbose and ctx.is_main) else (lambda msg: None)

    dataset = _resolve_dataset(dataset, root, dataset_options)
    # the model is built under the run's seed so its random initialisation is reproducible
    ckpt_io.seed_everything(seed)
    model, preset = _resolve_model(model_or_preset, dataset, pretrained, device, model_options)
    recipe = _resolve_recipe(recipe, model)
    epochs = int(epochs or recipe.epochs)
    batch_size = int(batch_size or recipe.batch_size)
    eval_batch_size = int(eval_batch_size or 2 * batch_size)
    train_split = train_split or ("train" if select_on == "val" else "trainval")
    sel_split = {"val": "val", "test": "test", "last": None}[select_on]
    train_idx = _split(dataset, train_split, "training")
    sel_idx = limit_indices(_split(dataset, sel_split, "selection"), eval_limit) if sel_split else None
    if test_at_end and "test" not in dataset.splits:
        test_at_end = False
    if select_on == "test":
        say("NOTE: select_on='test' selects the model on the TEST split, as the official script "
            "reports its numbers (spec §10); these numbers are optimistic, not a clean protocol.")

    labels_train = dataset.labels[train_idx]
    pos_ratio = positive_ratio(labels_train)  # (A,) spec §8, unknowns excluded
    ds_train = SeededSamples(
        _make_torch_dataset(dataset, train_idx, True, model, on_corrupt, cache_images), seed)
    ds_sel = (_make_torch_dataset(dataset, sel_idx, False, model, on_corrupt, cache_images)
              if sel_split else None)

    optimizers = build_optimizers(model.param_groups(), recipe)
    clip_groups = {g: [p for pg in opt.param_groups for p in pg["params"]]
                   for g, opt in optimizers.items()}
    trained = [p for params in clip_groups.values() for p in params]
    net: nn.Module = model
    if ctx.enabled:
        if sync_bn:
            net = sync_batchnorm(model, device)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            # Not static_graph: its delayed first all-reduce interleaves with the synchronised
            # BN's backward collectives and corrupts the gradients (measured on the micro model).
            **_no_buffer_broadcast())

    settings = {
        "model": ckpt_io.model_identity(model), "preset": preset, "pretrained": bool(pretrained),
        "seed": int(seed), "epochs": epochs, "batch_size": batch_size, "recipe": recipe.to_dict(),
        "select_on": select_on, "train_split": train_split, "dataset": dataset.name,
        "train_size": int(len(train_idx)), "eval_limit": eval_limit, "precision": precision,
    }
    state = {"epoch": 0, "step": 0, "history": [], "best": None,
             "epoch_acc": {"loss": 0.0, "main": 0.0, "aux": 0.0, "samples": 0, "seconds": 0.0}}
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # starting over: no file of an earlier run may be mistaken for this one's
            for name in ("last.pt", "best.pt", "history.csv", "history.json", "summary.json"):
                (out_dir / name).unlink(missing_ok=True)
    barrier(ctx)

    # ---- resume --------------------------------------------------------------------------
    if resume and last_path.exists():
        saved = ckpt_io.load_checkpoint(last_path, map_location="cpu")
        _check_resume_settings(saved.get("run", {}), settings, last_path)
        model.load_trainable_state_dict(saved["model"])
        for g, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][g])
        state.update(epoch=saved["epoch"], step=saved["step"], history=list(saved["history"]),
                     best=saved["best"], epoch_acc=dict(saved["epoch_acc"]))
        rngs = saved["rng"]
        if len(rngs) != ctx.world_size:
            warnings.warn(f"{last_path} was written by {len(rngs)} process(es), this run has "
                          f"{ctx.world_size}: the continued run will not be bit-identical")
        ckpt_io.set_rng_state(rngs[ctx.rank % len(rngs)])
        say(f"resuming {out_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    elif ctx.enabled:
        ckpt_io.seed_everything(seed + 1000 * ctx.rank)  # per-rank DropPath streams

    def snapshot(kind: str) -> None:
        """Write last.pt (every rank takes part: RNG states are gathered from all ranks)."""
        rngs = all_gather_objects(ckpt_io.rng_state(), ctx)
        if not ctx.is_main:
            return
        ckpt_io.save_atomic({
            "format": ckpt_io.FORMAT, **settings["model"], "preset": settings["preset"],
            "pretrained": settings["pretrained"],
            "model": model.trainable_state_dict(), "epoch": state["epoch"], "step": state["step"],
            "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
            "schedulers": {g: {"lr": o.param_groups[0]["lr"], "epoch": state["epoch"] + 1}
                           for g, o in optimizers.items()},
            "rng": rngs, "history": state["history"], "best": state["best"],
            "epoch_acc": state["epoch_acc"], "run": settings, "kind": kind,
        }, last_path)

    # ---- epochs --------------------------------------------------------------------------
    start_time = time.monotonic()
    last_ckpt_time = start_time
    stopped_early = False
    n_train = len(ds_train)
    eval_kw = dict(batch_size=eval_batch_size, device=device, ctx=ctx, precision=precision,
                   num_workers=num_workers, progress=progress, threshold=recipe.threshold)
    net.train()
    while state["epoch"] < epochs and not stopped_early:
        e = state["epoch"]
        lrs = set_epoch_lr(optimizers, recipe, e, epochs)
        sampler = EpochBatchSampler(n_train, batch_size, seed, e, ctx.rank, ctx.world_size,
                                    start_batch=state["step"])
        if sampler.num_batches == 0:
            raise ValueError(f"{dataset.name}: the {train_split!r} split has {n_train} samples, "
                             f"too few for one batch (need at least 2 and one per process)")
        loader = torch.utils.data.DataLoader(
            ds_train, batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate,
            pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
        acc = state["epoch_acc"]
        bar = tqdm(loader, total=len(sampler), initial=0, leave=False,
                   desc=f"epoch {e + 1}/{epochs}", disable=not (progress and ctx.is_main))
        epoch_start = time.monotonic()
        global_sizes = [len(b) for b in sampler.global_batches()]
        for batch in bar:
            step = state["step"]
            global_bs = global_sizes[step] if ctx.enabled else None
            if batch is None:  # every image of this batch was unreadable and skipped
                state["step"] += 1
                continue
            images, target, ignore, _ = batch
            images, target = images.to(device, non_blocking=True), target.to(device)
            ignore = ignore.to(device)
            b_local = images.shape[0]
            b_global = global_bs if global_bs is not None else b_local
            with _autocast(device, precision):
                out = net(images)
            parts = _optimizer_step(out, target, ignore, pos_ratio, recipe, optimizers, clip_groups,
                                    trained, ctx.world_size / b_global, ctx)
            if parts is None:
                good = (f"the last good checkpoint is {last_path} ({_ckpt_pos(last_path)})"
                        if last_path.exists() else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"training diverged at epoch {e + 1}, step {step + 1}: the loss or a gradient "
                    f"is NaN/inf; {good}. Lower the learning rates (recipe), use "
                    f"precision='fp32', or check the inputs of that batch")
            state["step"] += 1
            acc["loss"] += parts["loss"].item()
            acc["main"] += parts["main"].item()
            acc["aux"] += parts["aux"].item() if parts["aux"] is not None else 0.0
            acc["samples"] += b_local
            if progress and ctx.is_main:
                bar.set_postfix(loss=f"{parts['loss'].item() / b_local:.3f}",
                                lr=f"{lrs.get('fusion', lrs.get('prompt')):.2e}")
            now = time.monotonic()
            time_up = max_minutes is not None and (now - start_time) > 60.0 * max_minutes
            due = bool((checkpoint_every and state["step"] % checkpoint_every == 0)
                       or (checkpoint_minutes is not None
                           and now - last_ckpt_time > 60 * checkpoint_minutes))
            if max_minutes is not None or checkpoint_minutes is not None:
                time_up, due = broadcast_object((time_up, due), ctx)  # clocks differ per rank
            last_in_epoch = state["step"] >= sampler.num_batches
            if (due or time_up) and not last_in_epoch:
                acc["seconds"] += time.monotonic() - epoch_start
                epoch_start = time.monotonic()
                snapshot("mid-epoch")
                last_ckpt_time = time.monotonic()
            if time_up and not last_in_epoch:
                stopped_early = True
                say(f"time budget of {max_minutes} min used up at epoch {e + 1}, step "
                    f"{state['step']}; {last_path} holds the state to continue from")
                break
        bar.close()
        if stopped_early:
            break

        # ---- end of epoch: losses, selection metrics, checkpoints, logs ------------------
        acc["seconds"] += time.monotonic() - epoch_start
        totals = all_gather_objects((acc["loss"], acc["main"], acc["aux"], acc["samples"]), ctx)
        n_seen = max(sum(t[3] for t in totals), 1)
        row = {"epoch": e + 1, "lr_prompt": lrs.get("prompt"), "lr_fusion": lrs.get("fusion"),
               "train_loss": sum(t[0] for t in totals) / n_seen,
               "train_loss_main": sum(t[1] for t in totals) / n_seen,
               "train_loss_aux": sum(t[2] for t in totals) / n_seen}
        if ds_sel is not None:
            metrics, sel_loss = _evaluate_split(net, ds_sel, pos_ratio, desc=f"{sel_split}", **eval_kw)
            row[f"{sel_split}_loss"] = sel_loss
            row.update({f"{sel_split}_{k}": v for k, v in _headline_percent(metrics).items()})
            value = 100.0 * metrics["mA"]
            if state["best"] is None or value > state["best"]["value"]:
                state["best"] = {"epoch": e + 1, "metric": "mA", "value": value, "split": sel_split,
                                 "metrics": _headline_percent(metrics)}
                improved = True
            else:
                improved = False
        else:
            improved = False
        row["seconds"] = acc["seconds"]
        state["history"].append(row)
        state["epoch"], state["step"] = e + 1, 0
        state["epoch_acc"] = {"loss": 0.0, "main": 0.0, "aux": 0.0, "samples": 0, "seconds": 0.0}
        if improved:
            # best.pt first: a kill between the two writes resumes from the older last.pt and
            # rewrites the same best.pt
            snapshot_best(model, settings, state, best_path, ctx)
        snapshot("epoch")
        last_ckpt_time = time.monotonic()
        if ctx.is_main:
            _write_history(state["history"], out_dir)
        label = {"val": "val", "test": "TEST (official selection)", "last": ""}[select_on]
        msg = (f"epoch {e + 1}/{epochs}  loss {row['train_loss']:.4f}  "
               f"lr {row['lr_prompt'] or 0:.2e}/{row['lr_fusion'] or 0:.2e}  {row['seconds']:.0f}s")
        if ds_sel is not None:
            msg += f"  | {label}: " + format_metrics(metrics) + (" *" if improved else "")
        say(msg)
        if max_minutes is not None and state["epoch"] < epochs:
            over = (time.monotonic() - start_time) > 60.0 * max_minutes
            if broadcast_object(over, ctx):
                stopped_early = True
                say(f"time budget of {max_minutes} min used up after epoch {e + 1}")

    # ---- end of run: test evaluation of the selected and the last model -----------------
    result = _finish(model, net, dataset, state, settings, pos_ratio, out_dir, best_path, ctx,
                     select_on, test_at_end, eval_limit, on_corrupt, eval_kw, stopped_early, say)
    if ctx.enabled and sync_bn and device.type == "cpu":
        unsync_batchnorm(model)
    return result


def _optimizer_step(out, target, ignore, pos_ratio, recipe: Recipe, optimizers, clip_groups,
                    trained, scale: float, ctx: DistContext) -> Optional[dict]:
    """Loss, backward, per-group clipping and optimiser steps for one batch (spec §8-§9).

    Args:
        out: the model output for the local batch.
        scale: world size / global batch size: the per-rank loss is the sum over local samples
            times `scale`, so DDP's mean of the rank gradients is the gradient of the global
            batch mean (the official loss averages over the batch).

    Returns:
        The loss parts (summed over local samples), or None when the loss or a gradient is not
        finite; then no optimiser stepped, and every rank returns None together.
    """
    parts = par_loss(out, target, pos_ratio, ignore, aux_weight=recipe.aux_weight, reduction="sum")
    # "+ 0 × Σ params" gives every trained tensor a gradient (0 for one the forward pass did not
    # use, e.g. cached inert text prompts, spec §6), as in the official code where such tensors
    # get zero gradients and weight decay; it also spares DDP the find_unused_parameters pass
    loss = parts["loss"] * scale + 0.0 * sum(p.sum() for p in trained)
    bad = not bool(torch.isfinite(parts["loss"]))
    if ctx.enabled:  # agree before backward: a rank skipping it would hang DDP's all-reduce
        flag = torch.tensor([float(bad)], device=parts["loss"].device)
        torch.distributed.all_reduce(flag)
        bad = flag.item() > 0
    if bad:
        return None
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for params in clip_groups.values():  # spec §9: each side clipped separately
        max_norm = recipe.grad_clip if recipe.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not bool(torch.isfinite(norm)):  # gradients are all-reduced: every rank agrees
            return None
    for opt in optimizers.values():
        opt.step()
    return parts


def _ckpt_pos(path: Path) -> str:
    try:
        c = ckpt_io.load_checkpoint(path)
        return f"{c['epoch']} epochs done, then {c['step']} steps"
    except Exception:  # only used inside an error message
        return "?"


def snapshot_best(model, settings, state, best_path, ctx) -> None:
    if not ctx.is_main:
        return
    ckpt_io.save_atomic({
        "format": ckpt_io.FORMAT, **settings["model"], "preset": settings["preset"],
            "pretrained": settings["pretrained"],
        "model": model.trainable_state_dict(), "epoch": state["epoch"], "step": 0,
        "history": state["history"], "best": state["best"], "run": settings, "kind": "best",
    }, best_path)


def _finish(model, net, dataset, state, settings, pos_ratio, out_dir, best_path, ctx, select_on,
            test_at_end, eval_limit, on_corrupt, eval_kw, stopped_early, say) -> TrainResult:
    test_metrics: Dict[str, dict] = {}
    history = state["history"]
    last_metrics = {}
    sel = {"val": "val", "test": "test", "last": None}[select_on]
    if history and sel:
        last_metrics = {k: history[-1].get(f"{sel}_{k}") for k in HEADLINE}
    best = state["best"]
    selected_is_best = best is not None and best_path.exists() and (
        best["epoch"] != len(history) or state["step"] != 0 or stopped_early)
    # with select_on="test" the last epoch's and the best epoch's test numbers are in the history
    reuse = select_on == "test" and history and state["step"] == 0 and not stopped_early
    if test_at_end and reuse:
        test_metrics = {"last": {k: history[-1][f"test_{k}"] for k in HEADLINE},
                        "selected": dict(best["metrics"])}
    elif test_at_end:
        test_idx = limit_indices(_split(dataset, "test", "testing"), eval_limit)
        ds_test = _make_torch_dataset(dataset, test_idx, False, model, on_corrupt)
        m, _ = _evaluate_split(net, ds_test, pos_ratio, desc="test (last)", **eval_kw)
        test_metrics["last"] = _headline_percent(m)
    if selected_is_best:
        barrier(ctx)
        model.load_trainable_state_dict(ckpt_io.load_checkpoint(best_path)["model"])
        if test_at_end and not reuse:
            m, _ = _evaluate_split(net, ds_test, pos_ratio, desc="test (selected)", **eval_kw)
            test_metrics["selected"] = _headline_percent(m)
    elif test_at_end and not reuse:
        test_metrics["selected"] = dict(test_metrics["last"])
    official_max = None
    if select_on == "test" and history:
        official_max = {k: max(r[f"test_{k}"] for r in history) for k in ("mA", "Acc", "F1")}
    if test_at_end:
        tag = {"val": f"selected on val (epoch {best['epoch'] if best else '-'})",
               "test": f"selected on TEST (epoch {best['epoch'] if best else '-'}; official, optimistic)",
               "last": "last epoch"}[select_on]
        say(f"test, {tag}: " + " | ".join(f"{k} {v:6.2f}" for k, v in test_metrics["selected"].items()))
        if selected_is_best:
            say("test, last epoch: " + " | ".join(f"{k} {v:6.2f}" for k, v in test_metrics["last"].items()))
    paths = {"out_dir": str(out_dir), "last": str(out_dir / "last.pt"),
             "best": str(best_path) if best_path.exists() else None,
             "history_csv": str(out_dir / "history.csv"), "history_json": str(out_dir / "history.json"),
             "summary": str(out_dir / "summary.json")}
    result = TrainResult(
        history=_history_frame(history), select_on=select_on,
        best_epoch=best["epoch"] if best else None,
        best_metrics=dict(best["metrics"]) if best else {}, last_metrics=last_metrics,
        test_metrics=test_metrics, official_running_max=official_max, paths=paths,
        model=model.eval(), stopped_early=stopped_early, epochs_done=len(history))
    if ctx.is_main:
        _write_json({**result.summary(), "best_metrics": result.best_metrics,
                     "last_metrics": last_metrics, "test_metrics": test_metrics,
                     "official_running_max": official_max,
                     "selection_note": "selected on the TEST split (official protocol, optimistic)"
                     if select_on == "test" else f"selected on {select_on}",
                     "run": settings}, out_dir / "summary.json")
    barrier(ctx)
    return result
