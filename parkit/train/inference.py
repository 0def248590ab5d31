"""Evaluation on a dataset split and prediction on image files (spec §10, §11.3, §12).

`evaluate` runs a model (or a parkit checkpoint, or a released official checkpoint) over a split
and computes the paper's metrics plus the Rethinking variant and a per-attribute table.

`predict` is the clean version of the official `test_in_custom.py` (spec §12): it reads image files
or folders, applies exactly the test transform of the model's configuration (letterbox -> resize ->
normalise with `model.normalization`; the official script forgot the normalisation and the
letterbox), and returns per-attribute probabilities and the attributes above the threshold.
Unreadable files are reported and skipped, never fatal.
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image

from parkit.data import load_dataset
from parkit.data.transforms import build_transform
from parkit.devices import resolve_device
from parkit.metrics import HEADLINE, pedestrian_metrics, per_attribute_table
from parkit.progress import tqdm
from parkit.train import checkpoint as ckpt_io
from parkit.train.evaluation import (autocast, forward_batches, limit_indices, model_dataset,
                                     predict_logits, sigmoid, split_rows)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class EvalResult:
    """What `evaluate` returns.

    Attributes:
        metrics: `pedestrian_metrics` with the paper protocol (threshold 0.45, mean per-sample F1).
        metrics_rethinking: the Rethinking-of-PAR variant (threshold 0.5, harmonic F1).
        table: per-attribute DataFrame (paper protocol).
        probs: (N, A) probabilities; labels: (N, A) raw labels; rows: (N,) dataset rows.
        split, dataset, threshold: what was evaluated and how.
    """

    metrics: dict
    metrics_rethinking: dict
    table: Any
    probs: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    rows: np.ndarray = field(repr=False)
    split: str = "test"
    dataset: str = ""
    threshold: float = 0.45

    def summary(self, percent: bool = True) -> dict:
        """The five headline numbers of the paper protocol (percent by default)."""
        s = 100.0 if percent else 1.0
        return {k: self.metrics[k] * s for k in HEADLINE}

    def __repr__(self) -> str:
        nums = ", ".join(f"{k}={v:.2f}" for k, v in self.summary().items())
        return f"EvalResult({self.dataset}/{self.split}, n={len(self.rows)}: {nums})"


def _resolve_model(model, device, official: bool, dataset=None, backbone: Optional[str] = None,
                   trust: bool = False):
    if isinstance(model, (str, Path)):
        if official:
            from parkit.model import load_official_checkpoint

            if dataset is None:
                raise ValueError("an official checkpoint needs the dataset (its attribute list)")
            # the dataset object carries names *and* the training sentences the text encoder needs
            return load_official_checkpoint(
                model, attributes=dataset,
                **({"backbone": backbone} if backbone else {}),
                device=device, allow_pickle=bool(trust)).eval()
        return ckpt_io.load_model(model, device)
    return model.to(device)


def evaluate(model, dataset, split: str = "test", *, root=None, batch_size: int = 64, device=None,
             threshold: Optional[float] = None, ignore_unknown: bool = True, num_workers: int = 0,
             progress: bool = True, limit: Optional[int] = None, official: bool = False,
             backbone: Optional[str] = None, trust: bool = False, precision: str = "auto",
             on_corrupt: str = "raise") -> EvalResult:
    """Evaluate a model on one split of a dataset with the paper's metrics (spec §10).

    Args:
        model: a model, a parkit checkpoint path, or (with official=True) a released PromptPAR
            checkpoint path.
        dataset: a `PARDataset` or a registered dataset name (with `root`).
        split: split to evaluate ("test", "val", ...).
        batch_size, num_workers, device, precision: inference settings.
        threshold: decision threshold (default 0.45, the paper's).
        ignore_unknown: leave unknown labels (raw values other than 0/1) out of every count; for
            binary datasets this changes nothing. False reproduces the official function on raw
            labels (see `parkit.metrics`).
        progress: tqdm progress bar.
        limit: evaluate at most this many evenly spaced images of the split.
        official, backbone, trust: load a released checkpoint through
            `parkit.model.load_official_checkpoint` (it is a pickle: trust=True allows the full
            unpickle without asking; pass it only for files you trust).
        on_corrupt: "raise" or "skip" unreadable images.

    Returns:
        An `EvalResult`.
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, root)
    device = resolve_device(device)
    model = _resolve_model(model, device, official, dataset, backbone, trust)
    if list(model.attributes) != list(dataset.attributes):
        diffs = ckpt_io.describe_differences({"attributes": list(model.attributes)},
                                             {"attributes": list(dataset.attributes)})
        raise ValueError(f"the model's attributes differ from {dataset.name}'s: {'; '.join(diffs)} "
                         f"('checkpoint' = the model, 'here' = the dataset)")
    indices = limit_indices(split_rows(dataset, split, "evaluation"), limit)
    tds = model_dataset(dataset, indices, model, on_corrupt=on_corrupt)
    logits, targets, ignore, rows = predict_logits(
        model, tds, batch_size=batch_size, device=device, precision=precision,
        num_workers=num_workers, progress=progress, desc=f"eval {split}")
    probs = sigmoid(logits)  # (N, A)
    labels = np.asarray(dataset.labels)[rows]  # raw labels of the rows actually evaluated
    ignore_arg = "auto" if ignore_unknown else None
    m = pedestrian_metrics(labels, probs, threshold=threshold, ignore=ignore_arg)
    m_r = pedestrian_metrics(labels, probs, variant="rethinking", ignore=ignore_arg)
    table = per_attribute_table(labels, probs, dataset.attributes, threshold=threshold,
                                ignore=ignore_arg)
    return EvalResult(m, m_r, table, probs, labels, rows, split, dataset.name, m["threshold"])


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------
def collect_images(images: Union[str, Path, Sequence], recursive: bool = True) -> List[Union[Path, Any]]:
    """Image files named by `images`: files, folders (searched for image suffixes), PIL images.

    Folders are listed in sorted order; a named file is kept whatever its suffix (so a broken or
    oddly named file is reported by `predict` rather than silently dropped).
    """
    if isinstance(images, (str, Path)) or hasattr(images, "convert"):
        images = [images]
    out: list = []
    for item in images:
        if hasattr(item, "convert"):  # a PIL image
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            out += sorted(f for f in found if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _read_image(item):
    if hasattr(item, "convert"):
        return item.convert("RGB")
    with Image.open(item) as im:
        im.load()  # decode now, so a truncated file fails here with its name
        return im.convert("RGB")


class CompileUnavailable(RuntimeError):
    """`torch.compile` could not build the model here (no C++ compiler, unsupported platform...)."""


def compile_for_inference(model: torch.nn.Module, example: torch.Tensor):
    """The model compiled with TorchInductor for inference, weights frozen into the graph.

    Inductor's "freezing" treats every parameter as a constant (they are frozen at inference) and
    pre-packs the linear layers for the CPU's matrix kernels; the text features, cached in
    inference mode, become constants too. The result is only valid while the weights do not
    change: build it after training, and call it under `torch.inference_mode()` (the mode it was
    built in; another grad mode compiles again).
    Shapes are static: each new batch size compiles again (tens of seconds), so callers should pad
    the last batch (see `predict`).

    Args:
        model: a parkit model in eval mode.
        example: one input batch; it is run here, eagerly and then compiled, so that compilation
            happens, and its errors surface, now.

    Returns:
        The compiled module (same call signature and outputs as `model`).

    Raises:
        CompileUnavailable: compilation failed; the message gives the cause. Eager inference
            works the same, only slower.
    """
    model.eval()
    with torch.inference_mode():
        model(example)  # eagerly: fills the text cache, so the compiled graph reads it as a constant
    compiled = torch.compile(model, dynamic=False, options={"freezing": True})
    try:
        with torch.inference_mode():
            compiled(example)
    except Exception as err:  # inductor raises many types (missing compiler, lowering errors...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CompileUnavailable(
            f"torch.compile could not build {type(model).__name__} on {example.device.type}: "
            f"{type(err).__name__}: {first[:300]}. Run without compile (eager inference gives the "
            f"same outputs); on CPU inductor needs a C++ compiler (g++) on PATH.") from err
    return compiled


def predict(model, images, threshold: float = 0.45, *, batch_size: int = 32, device=None,
            recursive: bool = True, progress: bool = False, precision: str = "auto",
            compile: bool = False):
    """Attribute probabilities for image files (the clean `test_in_custom.py`, spec §12).

    Args:
        model: a model or a parkit checkpoint path.
        images: a file, a folder, a PIL image, or a list of them.
        threshold: an attribute is predicted when its probability is > threshold (0.45).
        batch_size, device, precision: inference settings.
        recursive: search sub-folders of folders.
        progress: tqdm progress bar.
        compile: run the model through `compile_for_inference` (faster on many images; the
            compilation itself takes tens of seconds). The last batch is padded to `batch_size`
            so one compiled graph serves every batch. If compilation fails, a RuntimeWarning
            gives the cause and prediction continues eagerly.

    Returns:
        A pandas DataFrame with one row per readable image: "image" (path, or "<PIL image i>"),
        one probability column per attribute, and "positive" (the attributes above the
        threshold, joined by ";"). `df.attrs["skipped"]` lists {"image", "error"} for unreadable
        files (each also raises a RuntimeWarning) and `df.attrs["threshold"]` the threshold.
    """
    device = resolve_device(device)
    model = _resolve_model(model, device, official=False).eval()
    transform = build_transform(train=False, image_size=model.image_size,
                                normalization=model.normalization)
    attributes = list(model.attributes)
    names, sizes, skipped = [], [], []
    batches = _image_batches(collect_images(images, recursive=recursive), transform, batch_size,
                             pad=compile, names=names, sizes=sizes, skipped=skipped,
                             progress=progress)
    runner = None
    if compile:  # built on the first (padded) batch, so one static shape serves every batch
        first = next(batches, None)
        if first is not None:
            runner = _compiled(model, first.to(device), device, precision)
            batches = itertools.chain([first], batches)
    logits = forward_batches(model, batches, device=device, precision=precision,
                             inference_mode=True, runner=runner)
    probs = [torch.sigmoid(x[:n]).numpy() for x, n in zip(logits, sizes)]
    p = np.concatenate(probs) if probs else np.zeros((0, len(attributes)), np.float32)  # (N, A)
    df = pd.DataFrame(p, columns=attributes)
    df.insert(0, "image", names)
    df["positive"] = [";".join(a for a, v in zip(attributes, row) if v > threshold) for row in p]
    df.attrs["skipped"] = skipped
    df.attrs["threshold"] = threshold
    return df


def _image_batches(items, transform, batch_size: int, *, pad: bool, names: list, sizes: list,
                   skipped: list, progress: bool) -> Iterator[torch.Tensor]:
    """(B, 3, S, S) batches of the readable images among `items`.

    Appends each readable image's name to `names`, each batch's number of real images to `sizes`
    (with `pad`, a short last batch is filled up with blank images to `batch_size`), and
    {"image", "error"} of each unreadable one to `skipped` (with a RuntimeWarning).
    """
    batch = []
    for i, item in enumerate(tqdm(items, desc="predict", disable=not progress)):
        name = f"<PIL image {i}>" if hasattr(item, "convert") else str(item)
        try:
            batch.append(transform(_read_image(item)))
        except Exception as err:  # any reading/decoding failure: report, skip, go on
            skipped.append({"image": name, "error": f"{type(err).__name__}: {err}"})
            warnings.warn(f"predict: skipping unreadable image {name}: {type(err).__name__}: {err}",
                          RuntimeWarning, stacklevel=2)
            continue
        names.append(name)
        if len(batch) == batch_size:
            sizes.append(len(batch))
            yield torch.stack(batch)
            batch = []
    if batch:
        sizes.append(len(batch))
        x = torch.stack(batch)  # (n, 3, S, S)
        if pad:  # eval mode treats every sample independently: blanks change no other row
            x = torch.cat([x, x.new_zeros((batch_size - len(batch),) + x.shape[1:])])
        yield x


def _compiled(model, example: torch.Tensor, device: torch.device, precision: str):
    """`compile_for_inference(model, example)`, or None (with a RuntimeWarning) when it fails."""
    with torch.inference_mode(), autocast(device, precision):
        try:
            return compile_for_inference(model, example)
        except CompileUnavailable as err:
            warnings.warn(f"predict: {err}", RuntimeWarning, stacklevel=3)
            return None


def predictions_to_json(df) -> dict:
    """`predict`'s DataFrame as {"threshold", "predictions": {image: {...}}, "skipped": [...]}."""
    attributes = [c for c in df.columns if c not in ("image", "positive")]
    preds = {}
    for _, row in df.iterrows():
        preds[row["image"]] = {
            "attributes": [a for a in row["positive"].split(";") if a],
            "probabilities": {a: round(float(row[a]), 6) for a in attributes},
        }
    return {"threshold": df.attrs.get("threshold"), "predictions": preds,
            "skipped": df.attrs.get("skipped", [])}
