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

How it reads: `train` turns its keywords into a `TrainConfig` (`parkit.train.config`: every
setting, validated, and the record a resumed run must match); `_setup` builds what stays fixed
(a `_Run`: model, optimisers, datasets, settings record); `_resume` returns the run's position (a
`RunState`, fresh or from `last.pt`); each epoch is `_train_epoch` (steps, mid-epoch checkpoints,
the time budget) then `_end_epoch` (selection metrics, `best.pt`, `last.pt`, logs); `_finish` tests
the selected and the last model. Checkpoint records come from `checkpoint.checkpoint_record`,
predictions from `parkit.train.evaluation`.

Deliberate departures from the official loop (spec §14): every module is in eval mode during
evaluation (the official code leaves `agg_bn` in train mode, §14.18; predictions are unaffected);
bf16 autocast replaces the fp16 weight casts without loss scaling (§14.20); checkpoints hold the
trained tensors and both optimisers' states instead of a full CLIP copy and one optimiser (§14.15);
a last training batch too small for BatchNorm is dropped (the official loop keeps it, §9).
"""
from __future__ import annotations

import inspect
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from parkit.progress import tqdm

from parkit.data import load_dataset
from parkit.devices import resolve_device
from parkit.metrics import HEADLINE, format_metrics
from parkit.train import checkpoint as ckpt_io
from parkit.train.checkpoint import EpochTotals, RunState
from parkit.train.config import TrainConfig
from parkit.train.distributed import (DistContext, EpochBatchSampler, all_gather_objects, barrier,
                                      broadcast_object, init_distributed, sync_batchnorm,
                                      unsync_batchnorm)
from parkit.train.evaluation import (autocast, collate_skipping, evaluate_split, limit_indices,
                                     model_dataset, split_rows)
from parkit.train.loss import par_loss, positive_ratio
from parkit.train.schedule import build_optimizers, get_recipe, set_epoch_lr


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



# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------
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


def _write_history(history: List[dict], out_dir: Path) -> None:
    tmp = out_dir / ".history.csv.tmp"
    pd.DataFrame(history).to_csv(tmp, index=False)
    tmp.replace(out_dir / "history.csv")
    _write_json(history, out_dir / "history.json")


def _headline_percent(m: dict) -> dict:
    return {k: round(100.0 * float(m[k]), 4) for k in HEADLINE}


# --------------------------------------------------------------------------------------------
# train: the run's fixed parts, then resume -> epochs -> finish
# --------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What stays fixed while a run trains (its position is the `RunState`)."""

    config: TrainConfig  # resolved: recipe, epochs, batch sizes and splits filled in
    dataset: Any
    model: nn.Module
    net: nn.Module  # `model`, or its DistributedDataParallel wrapper
    ctx: DistContext
    device: torch.device
    settings: dict  # the checkpoints' "run" record: what a resumed run must match
    optimizers: Dict[str, torch.optim.Optimizer]
    pos_ratio: torch.Tensor  # (A,) spec §8, from the training split
    ds_train: Any  # SeededSamples over the training split
    ds_sel: Any  # the selection split (None with select_on="last")
    say: Callable[[str], None]
    started: float = 0.0  # time.monotonic() when the epochs began
    last_checkpoint: float = 0.0  # ... and when last.pt was last written

    @property
    def last_path(self) -> Path:
        return self.config.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.config.out_dir / "best.pt"

    def eval_options(self) -> dict:
        """Keywords of `evaluate_split` for this run."""
        c = self.config
        return dict(batch_size=c.eval_batch_size, device=self.device, ctx=self.ctx,
                    precision=c.precision, num_workers=c.num_workers, progress=c.progress,
                    threshold=c.recipe.threshold)


def train(model_or_preset, dataset=None, config: Optional[TrainConfig] = None, *, root=None,
          model_options: Optional[dict] = None, dataset_options: Optional[dict] = None,
          **settings) -> TrainResult:
    """Train a PromptPAR model (or any model honouring the parkit model contract).

    Args:
        model_or_preset: a model, or a preset name (built with the dataset's attributes and
            sentences, initialised from the run's seed).
        dataset: a `PARDataset`, or a registered dataset name loaded from `root`.
        config: a `TrainConfig`; None starts from the defaults.
        root: dataset root when `dataset` is a name.
        model_options: config overrides passed to `create_model` (preset only).
        dataset_options: options passed to `load_dataset` when `dataset` is a name.
        **settings: `TrainConfig` fields, applied on top of `config` (out_dir, epochs, seed,
            recipe, select_on, max_minutes, device, ...; see `TrainConfig` for all of them).

    Returns:
        A `TrainResult`.

    Raises:
        TypeError / ValueError: an unknown setting or a wrong type or value (at once).
        TrainingDiverged: NaN/inf loss or gradients (the last good checkpoint stays).
        SettingsMismatch: `out_dir` holds a run with other settings and `resume` is True.
    """
    config = (config or TrainConfig()).replace(**settings)
    run = _setup(model_or_preset, dataset, config, root, model_options, dataset_options)
    state = _resume(run)
    run.started = run.last_checkpoint = time.monotonic()  # the time budget counts training only
    run.net.train()
    while state.epoch < run.config.epochs and not state.stopped_early:
        _train_epoch(run, state)
        if not state.stopped_early:
            _end_epoch(run, state)
    result = _finish(run, state)
    if run.ctx.enabled and config.sync_bn and run.device.type == "cpu":
        unsync_batchnorm(run.model)
    return result


def _setup(model_or_preset, dataset, config: TrainConfig, root, model_options,
           dataset_options) -> _Run:
    """Build everything the run holds fixed, and prepare `out_dir`."""
    if config.out_dir is None:
        raise ValueError("train needs out_dir: the folder for checkpoints and logs")
    ctx = init_distributed(None if config.device is None else str(config.device))
    device = resolve_device(config.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    say = _logger(config, ctx)
    dataset = _resolve_dataset(dataset, root, dataset_options)
    ckpt_io.seed_everything(config.seed)  # the RNG the model's own randomness (DropPath) draws
    model, preset = _resolve_model(model_or_preset, dataset, config, device, model_options)
    config = config.resolved(get_recipe(model))  # by the model's backbone unless given
    if config.test_at_end and "test" not in dataset.splits:
        config = config.replace(test_at_end=False)
    if config.select_on == "test":
        say("NOTE: select_on='test' selects the model on the TEST split, as the official script "
            "reports its numbers (spec §10); these numbers are optimistic, not a clean protocol.")
    train_idx = limit_indices(split_rows(dataset, config.train_split, "training"), config.train_limit)
    sel = config.selection_split
    sel_idx = limit_indices(split_rows(dataset, sel, "selection"), config.eval_limit) if sel else None
    optimizers = build_optimizers(model.param_groups(), config.recipe)
    run = _Run(
        config=config, dataset=dataset, model=model, net=_parallel(model, config, ctx, device),
        ctx=ctx, device=device, optimizers=optimizers, say=say,
        settings={"model": ckpt_io.model_identity(model), "preset": preset,
                  "dataset": dataset.name, "train_size": int(len(train_idx)), **config.settings()},
        pos_ratio=positive_ratio(dataset.labels[train_idx]),  # unknowns excluded
        ds_train=SeededSamples(model_dataset(dataset, train_idx, model, train=True,
                                             on_corrupt=config.on_corrupt,
                                             cache=config.cache_images), config.seed),
        ds_sel=model_dataset(dataset, sel_idx, model, on_corrupt=config.on_corrupt,
                             cache=config.cache_images) if sel else None)
    if ctx.is_main:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:  # starting over: no file of an earlier run may pass for this one's
            for name in ("last.pt", "best.pt", "history.csv", "history.json", "summary.json"):
                (config.out_dir / name).unlink(missing_ok=True)
    barrier(ctx)
    return run


def _logger(config: TrainConfig, ctx: DistContext) -> Callable[[str], None]:
    if not (config.verbose and ctx.is_main):
        return lambda msg: None
    if config.progress:
        return tqdm.write  # keeps the progress bars intact
    return lambda msg: print(msg, flush=True)


def _resolve_dataset(dataset, root, dataset_options):
    if isinstance(dataset, str):
        return load_dataset(dataset, root, **(dataset_options or {}))
    if dataset is None:
        raise ValueError("train needs a dataset: a PARDataset or a registered name plus root")
    return dataset


def _resolve_model(model_or_preset, dataset, config: TrainConfig, device, model_options):
    if isinstance(model_or_preset, str):
        from parkit.model import create_model  # noqa: PLC0415 (the model package imports train's schedule)

        model = create_model(model_or_preset, attributes=list(dataset.attributes),
                             sentences=list(dataset.sentences), pretrained=config.pretrained,
                             device=device, seed=config.seed, **(model_options or {}))
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


def _parallel(model: nn.Module, config: TrainConfig, ctx: DistContext, device) -> nn.Module:
    """`model`, wrapped for data parallelism when the run has several processes."""
    if not ctx.enabled:
        return model
    net = sync_batchnorm(model, device) if config.sync_bn else model
    # DDP's per-forward buffer broadcast is off: BN statistics are synchronised by sync BN.
    # Newer torch renamed `broadcast_buffers` to `forward_sync_buffers`.
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    no_broadcast = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
                    else {"broadcast_buffers": False})
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None,
        # Not static_graph: its delayed first all-reduce interleaves with the synchronised
        # BN's backward collectives and corrupts the gradients (measured on the micro model).
        **no_broadcast)


def _resume(run: _Run) -> RunState:
    """The run's position: read from `last.pt` when resuming, else a fresh start."""
    config, ctx = run.config, run.ctx
    if not (config.resume and run.last_path.exists()):
        if ctx.enabled:
            ckpt_io.seed_everything(config.seed + 1000 * ctx.rank)  # per-rank DropPath streams
        return RunState()
    saved = ckpt_io.load_checkpoint(run.last_path, map_location="cpu")
    diffs = ckpt_io.describe_differences(saved.get("run", {}), run.settings)
    if diffs:
        raise SettingsMismatch(
            f"{run.last_path} belongs to a run with other settings:\n  " + "\n  ".join(diffs)
            + "\nResume with the same settings, choose another out_dir, or pass resume=False "
              "to start over in this folder")
    run.model.load_trainable_state_dict(saved["model"])
    for g, opt in run.optimizers.items():
        opt.load_state_dict(saved["optimizers"][g])
    rngs = saved["rng"]
    if len(rngs) != ctx.world_size:
        warnings.warn(f"{run.last_path} was written by {len(rngs)} process(es), this run has "
                      f"{ctx.world_size}: the continued run will not be bit-identical")
    ckpt_io.set_rng_state(rngs[ctx.rank % len(rngs)])
    state = RunState.from_checkpoint(saved)
    run.say(f"resuming {config.out_dir} at epoch {state.epoch + 1}, step {state.step}")
    return state


# --------------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------------
def _train_epoch(run: _Run, state: RunState) -> None:
    """Train the batches of epoch `state.epoch` not done yet; when the time budget runs out
    inside the epoch, save `last.pt` and set `state.stopped_early`."""
    config, ctx = run.config, run.ctx
    lrs = set_epoch_lr(run.optimizers, config.recipe, state.epoch, config.epochs)
    sampler = EpochBatchSampler(len(run.ds_train), config.batch_size, config.seed, state.epoch,
                                ctx.rank, ctx.world_size, start_batch=state.step)
    if sampler.num_batches == 0:
        raise ValueError(f"{run.dataset.name}: the {config.train_split!r} split has "
                         f"{len(run.ds_train)} samples, too few for one batch (need at least 2 "
                         f"and one per process)")
    loader = torch.utils.data.DataLoader(
        run.ds_train, batch_sampler=sampler, num_workers=config.num_workers,
        collate_fn=collate_skipping, pin_memory=run.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed))
    global_sizes = [len(b) for b in sampler.global_batches()]
    bar = tqdm(loader, total=len(sampler), initial=0, leave=False,
               desc=f"epoch {state.epoch + 1}/{config.epochs}",
               disable=not (config.progress and ctx.is_main))
    clock = time.monotonic()  # start of the training time not yet in state.totals.seconds
    for batch in bar:
        if batch is None:  # every image of this batch was unreadable and skipped
            state.step += 1
            continue
        loss = _train_step(run, state, batch, global_sizes[state.step] if ctx.enabled else None)
        if config.progress and ctx.is_main:
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lrs.get('fusion', lrs.get('prompt')):.2e}")
        clock = _checkpoint_if_due(run, state, clock, state.step >= sampler.num_batches)
        if state.stopped_early:
            break
    bar.close()
    state.totals.seconds += time.monotonic() - clock


def _train_step(run: _Run, state: RunState, batch, global_batch: Optional[int]) -> float:
    """One optimisation step; returns the batch's mean loss."""
    images, target, ignore, _ = batch
    images = images.to(run.device, non_blocking=True)
    target, ignore = target.to(run.device), ignore.to(run.device)
    b_local = images.shape[0]
    with autocast(run.device, run.config.precision):
        out = run.net(images)
    # world size / global batch: the per-rank loss is the sum over local samples times this, so
    # DDP's mean of the rank gradients is the gradient of the global batch mean (as the official
    # loss averages over the batch)
    scale = run.ctx.world_size / (global_batch or b_local)
    parts = _optimizer_step(run, out, target, ignore, scale)
    if parts is None:
        good = (f"the last good checkpoint is {run.last_path} ({_ckpt_pos(run.last_path)})"
                if run.last_path.exists() else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"training diverged at epoch {state.epoch + 1}, step {state.step + 1}: the loss or a "
            f"gradient is NaN/inf; {good}. Lower the learning rates (recipe), use "
            f"precision='fp32', or check the inputs of that batch")
    state.step += 1
    t = state.totals
    t.loss += parts["loss"].item()
    t.main += parts["main"].item()
    t.aux += parts["aux"].item() if parts["aux"] is not None else 0.0
    t.samples += b_local
    return parts["loss"].item() / b_local


def _optimizer_step(run: _Run, out, target, ignore, scale: float) -> Optional[dict]:
    """Loss, backward, per-group clipping and optimiser steps for one batch (spec §8-§9).

    Returns:
        The loss parts (summed over local samples), or None when the loss or a gradient is not
        finite; then no optimiser stepped, and every rank returns None together.
    """
    recipe = run.config.recipe
    parts = par_loss(out, target, run.pos_ratio, ignore, aux_weight=recipe.aux_weight,
                     reduction="sum")
    groups = {g: [p for pg in opt.param_groups for p in pg["params"]]
              for g, opt in run.optimizers.items()}
    # "+ 0 × Σ params" gives every trained tensor a gradient (0 for one the forward pass did not
    # use, e.g. cached inert text prompts, spec §6), as in the official code where such tensors
    # get zero gradients and weight decay; it also spares DDP the find_unused_parameters pass
    loss = parts["loss"] * scale + 0.0 * sum(p.sum() for ps in groups.values() for p in ps)
    bad = not bool(torch.isfinite(parts["loss"]))
    if run.ctx.enabled:  # agree before backward: a rank skipping it would hang DDP's all-reduce
        flag = torch.tensor([float(bad)], device=parts["loss"].device)
        torch.distributed.all_reduce(flag)
        bad = flag.item() > 0
    if bad:
        return None
    for opt in run.optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = recipe.grad_clip if recipe.grad_clip is not None else float("inf")
    for params in groups.values():  # spec §9: each side clipped separately
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not bool(torch.isfinite(norm)):  # gradients are all-reduced: every rank agrees
            return None
    for opt in run.optimizers.values():
        opt.step()
    return parts


def _checkpoint_if_due(run: _Run, state: RunState, clock: float, last_in_epoch: bool) -> float:
    """Write `last.pt` inside the epoch when `checkpoint_every` / `checkpoint_minutes` ask for
    it or the time budget is used up (which also stops the run). Returns the new clock."""
    config = run.config
    now = time.monotonic()
    time_up = config.max_minutes is not None and now - run.started > 60.0 * config.max_minutes
    due = bool((config.checkpoint_every and state.step % config.checkpoint_every == 0)
               or (config.checkpoint_minutes is not None
                   and now - run.last_checkpoint > 60 * config.checkpoint_minutes))
    if config.max_minutes is not None or config.checkpoint_minutes is not None:
        time_up, due = broadcast_object((time_up, due), run.ctx)  # clocks differ per rank
    if last_in_epoch or not (due or time_up):
        return clock  # the epoch's end writes last.pt anyway
    state.totals.seconds += time.monotonic() - clock
    clock = time.monotonic()
    _save_last(run, state, "mid-epoch")
    if time_up:
        state.stopped_early = True
        run.say(f"time budget of {config.max_minutes} min used up at epoch {state.epoch + 1}, "
                f"step {state.step}; {run.last_path} holds the state to continue from")
    return clock


def _end_epoch(run: _Run, state: RunState) -> None:
    """Epoch losses, selection metrics, checkpoints and logs; then the next epoch's position."""
    config, ctx = run.config, run.ctx
    totals = all_gather_objects((state.totals.loss, state.totals.main, state.totals.aux,
                                 state.totals.samples), ctx)
    n_seen = max(sum(t[3] for t in totals), 1)
    lrs = {g: opt.param_groups[0]["lr"] for g, opt in run.optimizers.items()}
    row = {"epoch": state.epoch + 1, "lr_prompt": lrs.get("prompt"), "lr_fusion": lrs.get("fusion"),
           "train_loss": sum(t[0] for t in totals) / n_seen,
           "train_loss_main": sum(t[1] for t in totals) / n_seen,
           "train_loss_aux": sum(t[2] for t in totals) / n_seen}
    metrics, improved = None, False
    if run.ds_sel is not None:
        sel = config.selection_split
        metrics, sel_loss = evaluate_split(run.net, run.ds_sel, run.pos_ratio, desc=sel,
                                           **run.eval_options())
        row[f"{sel}_loss"] = sel_loss
        row.update({f"{sel}_{k}": v for k, v in _headline_percent(metrics).items()})
        value = 100.0 * metrics["mA"]
        improved = state.best is None or value > state.best["value"]
        if improved:
            state.best = {"epoch": state.epoch + 1, "metric": "mA", "value": value, "split": sel,
                          "metrics": _headline_percent(metrics)}
    row["seconds"] = state.totals.seconds
    state.history.append(row)
    state.epoch, state.step, state.totals = state.epoch + 1, 0, EpochTotals()
    if improved:
        # best.pt first: a kill between the two writes resumes from the older last.pt and
        # rewrites the same best.pt
        _save_best(run, state)
    _save_last(run, state, "epoch")
    if ctx.is_main:
        _write_history(state.history, config.out_dir)
    label = {"val": "val", "test": "TEST (official selection)", "last": ""}[config.select_on]
    msg = (f"epoch {state.epoch}/{config.epochs}  loss {row['train_loss']:.4f}  "
           f"lr {row['lr_prompt'] or 0:.2e}/{row['lr_fusion'] or 0:.2e}  {row['seconds']:.0f}s")
    if metrics is not None:
        msg += f"  | {label}: " + format_metrics(metrics) + (" *" if improved else "")
    run.say(msg)
    if config.max_minutes is not None and state.epoch < config.epochs:
        over = (time.monotonic() - run.started) > 60.0 * config.max_minutes
        if broadcast_object(over, ctx):
            state.stopped_early = True
            run.say(f"time budget of {config.max_minutes} min used up after epoch {state.epoch}")


# --------------------------------------------------------------------------------------------
# Checkpoints (records built by `checkpoint.checkpoint_record`)
# --------------------------------------------------------------------------------------------
def _save_last(run: _Run, state: RunState, kind: str) -> None:
    """Write last.pt (every rank takes part: RNG states are gathered from all ranks)."""
    rngs = all_gather_objects(ckpt_io.rng_state(), run.ctx)
    if run.ctx.is_main:
        ckpt_io.save_atomic(ckpt_io.checkpoint_record(kind, run.model, run.settings, state,
                                                      optimizers=run.optimizers, rngs=rngs),
                            run.last_path)
    run.last_checkpoint = time.monotonic()


def _save_best(run: _Run, state: RunState) -> None:
    if run.ctx.is_main:
        ckpt_io.save_atomic(ckpt_io.checkpoint_record("best", run.model, run.settings, state),
                            run.best_path)


def _ckpt_pos(path: Path) -> str:
    try:
        c = ckpt_io.load_checkpoint(path)
        return f"{c['epoch']} epochs done, then {c['step']} steps"
    except Exception:  # only used inside an error message
        return "?"


# --------------------------------------------------------------------------------------------
# End of run: test evaluation of the selected and the last model
# --------------------------------------------------------------------------------------------
def _finish(run: _Run, state: RunState) -> TrainResult:
    """Test metrics, the result and `summary.json`; the model ends with the selected tensors."""
    config, history, best = run.config, state.history, state.best
    test_metrics, selected_is_best = _test_metrics(run, state)
    sel = config.selection_split
    last_metrics = {k: history[-1].get(f"{sel}_{k}") for k in HEADLINE} if history and sel else {}
    official_max = None
    if config.select_on == "test" and history:
        official_max = {k: max(r[f"test_{k}"] for r in history) for k in ("mA", "Acc", "F1")}
    if config.test_at_end:
        chosen = f"epoch {best['epoch'] if best else '-'}"
        tag = {"val": f"selected on val ({chosen})", "last": "last epoch",
               "test": f"selected on TEST ({chosen}; official, optimistic)"}[config.select_on]
        show = lambda m: " | ".join(f"{k} {v:6.2f}" for k, v in m.items())  # noqa: E731
        run.say(f"test, {tag}: " + show(test_metrics["selected"]))
        if selected_is_best:
            run.say("test, last epoch: " + show(test_metrics["last"]))
    out = config.out_dir
    paths = {"out_dir": str(out), "last": str(run.last_path),
             "best": str(run.best_path) if run.best_path.exists() else None,
             "history_csv": str(out / "history.csv"), "history_json": str(out / "history.json"),
             "summary": str(out / "summary.json")}
    result = TrainResult(
        history=pd.DataFrame(history), select_on=config.select_on,
        best_epoch=best["epoch"] if best else None,
        best_metrics=dict(best["metrics"]) if best else {}, last_metrics=last_metrics,
        test_metrics=test_metrics, official_running_max=official_max, paths=paths,
        model=run.model.eval(), stopped_early=state.stopped_early, epochs_done=len(history))
    if run.ctx.is_main:
        note = ("selected on the TEST split (official protocol, optimistic)"
                if config.select_on == "test" else f"selected on {config.select_on}")
        _write_json({**result.summary(), "best_metrics": result.best_metrics,
                     "last_metrics": last_metrics, "test_metrics": test_metrics,
                     "official_running_max": official_max, "selection_note": note,
                     "run": run.settings}, out / "summary.json")
    barrier(run.ctx)
    return result


def _test_metrics(run: _Run, state: RunState) -> Tuple[Dict[str, dict], bool]:
    """Headline test metrics {"selected", "last"} (empty without `test_at_end`), and whether the
    selected model is an earlier one than the last (its tensors are then loaded into the model)."""
    config, history, best = run.config, state.history, state.best
    selected_is_best = best is not None and run.best_path.exists() and (
        best["epoch"] != len(history) or state.step != 0 or state.stopped_early)
    # with select_on="test" the last epoch's and the best epoch's test numbers are in the history
    reuse = (config.select_on == "test" and bool(history) and state.step == 0
             and not state.stopped_early)
    test: Dict[str, dict] = {}
    if config.test_at_end and reuse:
        test = {"last": {k: history[-1][f"test_{k}"] for k in HEADLINE},
                "selected": dict(best["metrics"])}
    elif config.test_at_end:
        rows = limit_indices(split_rows(run.dataset, "test", "testing"), config.eval_limit)
        ds_test = model_dataset(run.dataset, rows, run.model, on_corrupt=config.on_corrupt)
        m, _ = evaluate_split(run.net, ds_test, run.pos_ratio, desc="test (last)",
                              **run.eval_options())
        test["last"] = _headline_percent(m)
    if selected_is_best:
        barrier(run.ctx)
        run.model.load_trainable_state_dict(ckpt_io.load_checkpoint(run.best_path)["model"])
        if config.test_at_end and not reuse:
            m, _ = evaluate_split(run.net, ds_test, run.pos_ratio, desc="test (selected)",
                                  **run.eval_options())
            test["selected"] = _headline_percent(m)
    elif config.test_at_end and not reuse:
        test["selected"] = dict(test["last"])
    return test, selected_is_best
