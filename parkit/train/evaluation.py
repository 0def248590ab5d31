"""Running a trained model over images: the one prediction loop and what evaluation shares.

`forward_batches` is the only place parkit runs a model to predict: the model in eval mode
(restored afterwards), autograd off, the precision's autocast, float32 logits back on the CPU.
Everything that predicts goes through it:

    training-time selection ──┐
    evaluate(model, split) ───┼─> predict_logits(model, torch dataset) ─┐
    AttributeExplorer (split) ┘                                          ├─> forward_batches
    predict(images), AttributeExplorer (an uploaded image) ─────────────┘

The other helpers name the dataset rows a split evaluates (`split_rows`, `limit_indices`) and
build the torch dataset with the model's own input transform (`model_dataset`).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from parkit.progress import tqdm

from parkit.data import PARTorchDataset
from parkit.data.transforms import build_transform
from parkit.metrics import pedestrian_metrics
from parkit.train.distributed import DistContext, all_gather_objects, unwrap_ddp
from parkit.train.loss import weighted_bce


def autocast(device: torch.device, precision: str):
    """The autocast context of `precision` on `device`: "auto" is bf16 on CUDA, fp32 elsewhere.

    Raises:
        ValueError: `precision` is not "auto", "bf16" or "fp32".
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def collate_skipping(batch):
    """Default collation after dropping samples a skipping dataset returned as None (None when
    nothing is left)."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)


def model_dataset(dataset, indices, model, *, train: bool = False, on_corrupt: str = "raise",
                  cache: bool = False):
    """A `PARTorchDataset` of `dataset`'s rows `indices` with `model`'s input transform.

    Args:
        dataset: a `PARDataset`.
        indices: dataset rows.
        model: supplies `image_size` and `normalization`.
        train: the training transform (augmentation) instead of the test transform.
        on_corrupt: "raise" or "skip" unreadable images.
        cache: keep decoded, letterboxed images in memory.
    """
    transform = build_transform(train=train, image_size=model.image_size,
                                normalization=model.normalization)
    return PARTorchDataset(dataset, indices, transform, on_corrupt=on_corrupt, cache=cache)


def split_rows(dataset, name: str, role: str) -> np.ndarray:
    """The rows of split `name`, or an error naming the splits there are.

    Args:
        dataset: a `PARDataset`.
        name: "train", "val", "test", "trainval", ...
        role: what the split is for ("training", "selection", "evaluation"), for the message.

    Raises:
        ValueError: the split is missing or empty.
    """
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Probabilities from logits (numpy)."""
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------------
# The prediction loop
# --------------------------------------------------------------------------------------------
def forward_batches(model: nn.Module, batches: Iterable[torch.Tensor], *, device: torch.device,
                    precision: str = "auto", inference_mode: bool = False,
                    runner: Optional[Callable] = None) -> List[torch.Tensor]:
    """Logits of `model` for each batch of images, in order.

    Args:
        model: the model; in eval mode during the loop, its own mode again afterwards.
        batches: (B, 3, H, W) image tensors, on any device.
        device: where the images are moved.
        precision: see `autocast`.
        inference_mode: run under `torch.inference_mode()` (what a compiled model was built
            under, see `compile_for_inference`) instead of `torch.no_grad()`; its tensors may not
            enter autograd later, so training-time evaluation keeps no_grad.
        runner: what to call instead of `model` (a compiled version of it).

    Returns:
        One (B, A) float32 CPU tensor of logits per batch.
    """
    run = model if runner is None else runner  # (a compiled module has no truth value)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode() if inference_mode else torch.no_grad():
            for images in batches:
                with autocast(device, precision):
                    logits = run(images.to(device, non_blocking=True)).logits
                out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return out


def predict_logits(model: nn.Module, torch_dataset, *, batch_size: int, device: torch.device,
                   ctx: DistContext = DistContext(), precision: str = "auto", num_workers: int = 0,
                   progress: bool = False, desc: str = "eval") -> Tuple[np.ndarray, ...]:
    """Logits (and targets, ignore masks) of every sample of `torch_dataset`, in order.

    Under data parallelism each rank predicts the positions rank, rank + W, ... and the results
    are gathered on every rank.

    Returns:
        (logits (N, A) float32, targets (N, A) float32, ignore (N, A) bool, kept (N,) rows) as
        numpy arrays; samples a skipping dataset dropped are absent.
    """
    net = unwrap_ddp(model)
    positions = list(range(ctx.rank, len(torch_dataset), ctx.world_size))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(torch_dataset, positions), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=collate_skipping, pin_memory=device.type == "cuda",
        # a private generator: creating the loader must not draw from the global RNG that the
        # training loop relies on
        generator=torch.Generator().manual_seed(0))
    targets, ignores, kept = [], [], []

    def images():
        for batch in tqdm(loader, desc=desc, leave=False, disable=not (progress and ctx.is_main)):
            if batch is None:
                continue
            x, target, ignore, index = batch
            targets.append(target.float())
            ignores.append(ignore.bool())
            kept.append(index)
            yield x

    logits = forward_batches(net, images(), device=device, precision=precision)
    a = len(getattr(net, "attributes", [])) or (logits[0].shape[1] if logits else 0)
    local = (torch.cat(logits).numpy() if logits else np.zeros((0, a), np.float32),
             torch.cat(targets).numpy() if targets else np.zeros((0, a), np.float32),
             torch.cat(ignores).numpy() if ignores else np.zeros((0, a), bool),
             torch.cat(kept).numpy() if kept else np.zeros((0,), np.int64))
    if not ctx.enabled:
        return local
    parts = all_gather_objects(local, ctx)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


def evaluate_split(model: nn.Module, torch_dataset, pos_ratio, *, threshold: float,
                   **predict_options) -> Tuple[dict, float]:
    """Paper metrics (spec §10) and the weighted BCE loss of `model` on a torch dataset.

    Args:
        model: the model (or its DDP wrapper).
        torch_dataset: e.g. `model_dataset(dataset, rows, model)`.
        pos_ratio: (A,) positive ratios of the training split (the loss weights, spec §8).
        threshold: decision threshold of the metrics.
        **predict_options: passed to `predict_logits` (batch_size, device, ctx, precision, ...).

    Returns:
        (`pedestrian_metrics` with unknown labels ignored, mean loss; NaN without samples).
    """
    logits, targets, ignore, _ = predict_logits(model, torch_dataset, **predict_options)
    labels = np.where(ignore, 2, targets).astype(np.int64)  # back to raw form: 2 = unknown
    metrics = pedestrian_metrics(labels, sigmoid(logits), threshold=threshold, ignore="auto")
    loss = weighted_bce(torch.from_numpy(logits), torch.from_numpy(targets), pos_ratio,
                        torch.from_numpy(ignore)).item() if len(logits) else float("nan")
    return metrics, loss
