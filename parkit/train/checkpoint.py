"""parkit checkpoints: what a training run saves, atomic writes, strict and explained loading.

A checkpoint holds only what training changes (spec §12 "Re-implementation of inference", §14.15):
the model's `trainable_state_dict()` (trained tensors + BatchNorm running statistics), plus
everything needed to rebuild the model and to resume the run exactly:

=============  ============================================================================
key            content
=============  ============================================================================
format         "parkit/1"
preset         model preset name (e.g. "promptpar-micro"), None for a hand-built model
config         the model's resolved config as a plain dict
pretrained     whether the frozen backbone was pretrained (False: seeded random weights)
attributes     attribute names, in label order
sentences      the sentence fed to CLIP for each attribute
image_size     input side in pixels; normalization: "official" | "clip"
model          trainable_state_dict
epoch, step    completed epochs, and batches done in epoch `epoch` (0 = at an epoch boundary)
optimizers     {"prompt": state_dict, "fusion": state_dict}
schedulers     {"prompt": {"lr": ...}, ...} (the schedule is a pure function of the epoch)
rng            per-rank RNG states (torch, CUDA, numpy, python)
history        list of per-epoch records; best: {"epoch", "metric", "value", "split"}
epoch_acc      running sums of the epoch in progress (`EpochTotals`)
run            the run's settings: `TrainConfig.settings()` plus the model's and dataset's
               identity (what a resumed run must match)
kind           "epoch" or "mid-epoch" (`last.pt`), "best" (`best.pt`)
=============  ============================================================================

`checkpoint_record` builds every record; `best.pt` leaves out what only resuming needs
(optimizers, schedulers, rng, epoch_acc). `RunState.from_checkpoint` reads a run's position back.

Files are written to a temporary name in the same folder and moved into place with
`os.replace`, so a run killed while writing leaves the previous checkpoint intact. Everything
stored is tensors and plain Python values, so checkpoints load with `weights_only=True`.
"""
from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch

from parkit.model import ConfigError, PromptPARConfig, create_model
from parkit.devices import resolve_device

FORMAT = "parkit/1"
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint cannot be used here; the message names the file, the setting and the fix."""


def save_atomic(obj: Dict[str, Any], path: PathLike) -> Path:
    """`torch.save` to a temporary file next to `path`, then `os.replace` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a parkit checkpoint safely (`weights_only=True`) and check its format.

    Raises:
        CheckpointError: missing file, unreadable file, or not a parkit checkpoint (the message
            points released official checkpoints to `--official` /
            `parkit.model.load_official_checkpoint`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickles with arbitrary objects land here (weights_only refuses them)
        raise CheckpointError(
            f"cannot read {path} as a parkit checkpoint ({type(exc).__name__}: {str(exc)[:200]}). "
            f"If it is a released PromptPAR checkpoint, load it with "
            f"parkit.model.load_official_checkpoint (CLI: --official)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a parkit checkpoint (no format={FORMAT!r} entry). If it is a released "
            f"PromptPAR checkpoint, use parkit.model.load_official_checkpoint (CLI: --official)")
    return ckpt


def config_dict(config) -> Dict[str, Any]:
    """A model config as a plain dict (dataclass, `.to_dict()` or mapping)."""
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


def model_identity(model) -> Dict[str, Any]:
    """What defines a model's tensors: config, attributes, sentences, input handling."""
    return {
        "config": config_dict(model.config),
        "attributes": list(model.attributes),
        "sentences": list(model.sentences),
        "image_size": _plain(model.image_size),
        "normalization": model.normalization,
    }


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def describe_differences(saved: Dict[str, Any], current: Dict[str, Any], what: str = "") -> list:
    """Human-readable differences between two identity/settings dicts (one line per setting)."""
    lines = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += describe_differences(a, b, f"{what}{key}.")
        elif key in ("attributes", "sentences") and a != b:
            if isinstance(a, list) and isinstance(b, list) and len(a) != len(b):
                lines.append(f"{what}{key}: {len(a)} in the checkpoint, {len(b)} here")
            else:
                i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
                lines.append(f"{what}{key}[{i}]: {a[i]!r} in the checkpoint, {b[i]!r} here")
        elif _plain(a) != _plain(b):
            lines.append(f"{what}{key}: {a!r} in the checkpoint, {b!r} here")
    return lines


def check_model_matches(ckpt: Dict[str, Any], model, path: PathLike = "checkpoint") -> None:
    """Raise a `CheckpointError` naming every setting in which `model` differs from `ckpt`."""
    saved = {k: ckpt.get(k) for k in ("config", "attributes", "sentences")}
    here = {k: v for k, v in model_identity(model).items() if k in saved}
    diffs = describe_differences(saved, here)
    if diffs:
        raise CheckpointError(
            f"{path} was written for a different model configuration:\n  " + "\n  ".join(diffs)
            + "\nBuild the model with the checkpoint's settings (parkit.train.load_model(path)) "
              "or train a new checkpoint for this configuration")


def load_into(model, ckpt_or_path, strict_config: bool = True) -> Dict[str, Any]:
    """Load a checkpoint's trained tensors into `model` after checking it matches.

    Args:
        model: a parkit model (`load_trainable_state_dict`, `config`, `attributes`).
        ckpt_or_path: a loaded checkpoint dict or its path.
        strict_config: compare config, attributes and sentences first (clear error on mismatch).

    Returns:
        The checkpoint dict.
    """
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, dict) else load_checkpoint(ckpt_or_path)
    where = ckpt_or_path if not isinstance(ckpt_or_path, dict) else "checkpoint"
    if strict_config:
        check_model_matches(ckpt, model, where)
    model.load_trainable_state_dict(ckpt["model"])
    return ckpt


def load_model(path: PathLike, device: Optional[Union[str, torch.device]] = None):
    """Rebuild the model a checkpoint was trained as and load its trained tensors.

    The model is built from the checkpoint's full (resolved) config with `create_model`; the frozen
    backbone comes from its usual source (pretrained weights, or the same seeded random weights
    when the run used `pretrained=False`); only trained tensors come from the file.

    Args:
        path: a parkit checkpoint (`best.pt` / `last.pt`).
        device: where to put the model (default: CUDA if available, else CPU).

    Returns:
        The model in eval mode.
    """
    ckpt = load_checkpoint(path)
    try:
        config = PromptPARConfig.from_dict(ckpt["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} was written for a hand-built model whose config is not a PromptPARConfig "
            f"({str(exc)[:160]}); build that model yourself and call "
            f"parkit.train.checkpoint.load_into(model, path)") from None
    device = resolve_device(device)
    model = create_model(config, attributes=ckpt["attributes"], sentences=ckpt["sentences"],
                         pretrained=ckpt.get("pretrained", True), device=device)
    load_into(model, ckpt, strict_config=True)
    return model.eval()


# --------------------------------------------------------------------------------------------
# A run's position, and the one builder of checkpoint records
# --------------------------------------------------------------------------------------------
@dataclass
class EpochTotals:
    """Running sums of the epoch in progress (over this process's samples); saved mid-epoch so a
    resumed epoch reports the same mean loss and time as an uninterrupted one."""

    loss: float = 0.0
    main: float = 0.0
    aux: float = 0.0
    samples: int = 0
    seconds: float = 0.0


@dataclass
class RunState:
    """Where a training run stands: what `last.pt` saves and a resumed run starts from.

    Attributes:
        epoch: completed epochs.
        step: batches done in epoch `epoch` (0 at an epoch boundary).
        history: one row per completed epoch (losses, learning rates, selection metrics).
        best: {"epoch", "metric", "value", "split", "metrics"} of the selected epoch, or None.
        totals: running sums of the epoch in progress.
        stopped_early: the time budget ended the run (not saved: a continued run clears it).
    """

    epoch: int = 0
    step: int = 0
    history: List[dict] = field(default_factory=list)
    best: Optional[dict] = None
    totals: EpochTotals = field(default_factory=EpochTotals)
    stopped_early: bool = False

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> "RunState":
        """The position a `last.pt` record holds."""
        return cls(epoch=int(ckpt["epoch"]), step=int(ckpt["step"]), history=list(ckpt["history"]),
                   best=ckpt["best"], totals=EpochTotals(**ckpt["epoch_acc"]))


def checkpoint_record(kind: str, model, run: Mapping[str, Any], state: RunState, *,
                      optimizers: Optional[Mapping[str, torch.optim.Optimizer]] = None,
                      rngs: Optional[list] = None) -> Dict[str, Any]:
    """The checkpoint dict of a run at `state` (the table at the top of this module).

    Args:
        kind: "epoch" or "mid-epoch" for `last.pt`, "best" for `best.pt`.
        model: the trained model; its `trainable_state_dict()` is stored.
        run: the run's settings record; its "model" entry (`model_identity`), "preset" and
            "pretrained" are also stored at the top level, where `load_model` reads them.
        state: the run's position.
        optimizers: the optimisers to resume with; None leaves out everything only resuming
            needs (optimizers, schedulers, rng, epoch_acc), as `best.pt` does.
        rngs: per-rank RNG states (`rng_state()` of every rank), with `optimizers`.

    Returns:
        A dict of tensors and plain values (loadable with `weights_only=True`).
    """
    record = {"format": FORMAT, **run["model"], "preset": run["preset"],
              "pretrained": run["pretrained"], "model": model.trainable_state_dict(),
              "epoch": state.epoch, "step": state.step, "history": state.history,
              "best": state.best, "run": dict(run), "kind": kind}
    if optimizers is not None:
        record.update(
            optimizers={g: o.state_dict() for g, o in optimizers.items()},
            schedulers={g: {"lr": o.param_groups[0]["lr"], "epoch": state.epoch + 1}
                        for g, o in optimizers.items()},
            rng=rngs, epoch_acc=dataclasses.asdict(state.totals))
    return record


# --------------------------------------------------------------------------------------------
# RNG state, as tensors and plain values (loadable with weights_only=True)
# --------------------------------------------------------------------------------------------
def rng_state() -> Dict[str, Any]:
    """Every RNG a training step may draw from: torch CPU/CUDA, numpy's global, python's."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": _plain_random_state(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _plain_random_state(s):
    version, internal, gauss = s
    return [version, list(internal), gauss]


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and python's `random`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
