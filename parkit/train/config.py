"""`TrainConfig`: every setting of a training run, in one frozen, validated dataclass.

The settings fall into three roles, written next to each field:

* **run** — what the run computes: seed, epochs, batch size, recipe, selection protocol,
  training split, evaluation limit, precision, pretrained backbone. A run continued from its
  checkpoint must match them (`settings()`, stored as the checkpoint's "run" record together
  with the model's and the dataset's identity).
* **outcome** — the time budget and what a finished run reports (`max_minutes`, `test_at_end`,
  `on_corrupt`, `sync_bn`): a continued run may change them, but two finished runs that differ
  in them are different results. `key()` (run + outcome) is what a cached experiment is looked
  up by (`parkit.experiments`).
* **execution** — where and how the work runs (folder, device, workers, checkpoint frequency,
  progress output): never part of the numbers.

Unknown keys and wrong types raise at once, with the list of valid settings.
"""
from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from parkit.train.schedule import Recipe, get_recipe

SELECT_ON = ("val", "test", "last")
PRECISIONS = ("auto", "bf16", "fp32")
ON_CORRUPT = ("raise", "skip")
DEFAULT_SEED = 605  # spec §9: the official set_seed value

RUN, OUTCOME, EXECUTION = "run", "outcome", "execution"


def _setting(default, kind: str, role: str, *, optional: bool = False, choices=None,
             minimum=None, keyed_when_set: bool = False):
    # keyed_when_set: a setting added after runs were cached; recorded in settings()/key() only
    # when it differs from its default, so every run made before it existed keeps its key.
    return field(default=default, metadata={"kind": kind, "role": role, "optional": optional,
                                            "choices": choices, "minimum": minimum,
                                            "keyed_when_set": keyed_when_set})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a `parkit.train.train` run (nanoGPT style: one frozen dataclass).

    Attributes:
        seed: seeds the model's initialisation, the data order and every augmentation.
        epochs, batch_size: default to the recipe's (batch_size is the global batch).
        recipe: a `Recipe`, its name ("paper", "compact"), a preset name, or a dict; None: the
            model's (by its backbone, `parkit.train.schedule.BACKBONE_RECIPES`).
        select_on: "val" (default), "test" (the official protocol: selects on the test split,
            optimistic) or "last".
        train_split: override the training split ("train" for select_on="val", else "trainval").
        eval_limit: evaluate at most this many (evenly spaced) images per split.
        train_limit: train on at most this many (evenly spaced) images of the training split per
            epoch (None: all; a dry run's budget, e.g. the paper-check profile).
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32".
        pretrained: the frozen backbone is pretrained (False: seeded random weights; tests).
        max_minutes: stop after this much training time (checked after every step); calling
            `train` again with the same settings continues the run.
        test_at_end: evaluate the selected and the last model on the test split at the end.
        on_corrupt: "raise" or "skip" unreadable training/evaluation images.
        sync_bn: synchronise BatchNorm statistics across processes under data parallelism.
        out_dir: folder for checkpoints and logs (required by `train`).
        device: "cpu", "cuda", ... (None: `parkit.devices.default_device()`). Under torchrun each
            process uses cuda:LOCAL_RANK when CUDA is used.
        resume: continue from `out_dir/last.pt` when it exists (False: start over there).
        num_workers: DataLoader workers.
        checkpoint_every: also write `last.pt` every this many steps inside an epoch.
        checkpoint_minutes: ... and at least every this many minutes (None: only at epoch ends
            and `checkpoint_every`).
        eval_batch_size: evaluation batch size (default 2 × batch_size).
        cache_images: keep decoded, letterboxed training/selection images in memory (uint8,
            about image_size² × 3 bytes each) so later epochs skip decoding; with
            num_workers > 0 every worker holds its own copy.
        progress: tqdm progress bars.
        verbose: print one line per epoch (rank 0).
    """

    seed: int = _setting(DEFAULT_SEED, "int", RUN)
    epochs: Optional[int] = _setting(None, "int", RUN, optional=True, minimum=1)
    batch_size: Optional[int] = _setting(None, "int", RUN, optional=True, minimum=1)
    recipe: Optional[Recipe] = _setting(None, "recipe", RUN, optional=True)
    select_on: str = _setting("val", "str", RUN, choices=SELECT_ON)
    train_split: Optional[str] = _setting(None, "str", RUN, optional=True)
    eval_limit: Optional[int] = _setting(None, "int", RUN, optional=True, minimum=1)
    train_limit: Optional[int] = _setting(None, "int", RUN, optional=True, minimum=1, keyed_when_set=True)
    precision: str = _setting("auto", "str", RUN, choices=PRECISIONS)
    pretrained: bool = _setting(True, "bool", RUN)

    max_minutes: Optional[float] = _setting(None, "float", OUTCOME, optional=True, minimum=0)
    test_at_end: bool = _setting(True, "bool", OUTCOME)
    on_corrupt: str = _setting("raise", "str", OUTCOME, choices=ON_CORRUPT)
    sync_bn: bool = _setting(True, "bool", OUTCOME)

    out_dir: Optional[Path] = _setting(None, "path", EXECUTION, optional=True)
    device: Union[str, torch.device, None] = _setting(None, "device", EXECUTION, optional=True)
    resume: bool = _setting(True, "bool", EXECUTION)
    num_workers: int = _setting(0, "int", EXECUTION, minimum=0)
    checkpoint_every: Optional[int] = _setting(None, "int", EXECUTION, optional=True, minimum=1)
    checkpoint_minutes: Optional[float] = _setting(10.0, "float", EXECUTION, optional=True,
                                                   minimum=0)
    eval_batch_size: Optional[int] = _setting(None, "int", EXECUTION, optional=True, minimum=1)
    cache_images: bool = _setting(False, "bool", EXECUTION)
    progress: bool = _setting(True, "bool", EXECUTION)
    verbose: bool = _setting(True, "bool", EXECUTION)

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _checked(f, getattr(self, f.name)))

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """A config from a mapping of settings; unknown keys raise `TypeError` naming them."""
        _check_known(values)
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with `changes` applied (validated like the constructor)."""
        _check_known(changes)
        return replace(self, **changes)

    def resolved(self, default_recipe: Recipe) -> "TrainConfig":
        """This config with every default filled in.

        Args:
            default_recipe: the recipe when `recipe` is None (the model's, see `get_recipe`).

        Returns:
            A config whose recipe, epochs, batch size, training split and evaluation batch size
            are set: the values a run actually uses and records.
        """
        recipe = self.recipe or default_recipe
        batch_size = self.batch_size or recipe.batch_size
        return self.replace(
            recipe=recipe, epochs=self.epochs or recipe.epochs, batch_size=batch_size,
            train_split=self.training_split,
            eval_batch_size=self.eval_batch_size or 2 * batch_size)

    # -- what identifies a run ------------------------------------------------------------------
    @property
    def training_split(self) -> str:
        """The split the run trains on: `train_split`, else "train" when selecting on val (the
        clean protocol) and "trainval" otherwise."""
        return self.train_split or ("train" if self.select_on == "val" else "trainval")

    @property
    def selection_split(self) -> Optional[str]:
        """The split the model is selected on: "val", "test" or None (select_on="last")."""
        return {"val": "val", "test": "test", "last": None}[self.select_on]

    def settings(self) -> Dict[str, Any]:
        """The "run" settings as plain values: what a resumed run must match."""
        return self._plain(RUN)

    def key(self) -> Dict[str, Any]:
        """The "run" and "outcome" settings as plain values: what a cached result is keyed on."""
        return {**self._plain(RUN), **self._plain(OUTCOME)}

    def _plain(self, role: str) -> Dict[str, Any]:
        out = {}
        for f in fields(self):
            if f.metadata["role"] == role:
                v = getattr(self, f.name)
                if f.metadata["keyed_when_set"] and v == f.default:
                    continue
                out[f.name] = v.to_dict() if isinstance(v, Recipe) else v
        return out


def _check_known(values: Mapping[str, Any]) -> None:
    known = [f.name for f in fields(TrainConfig)]
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), known, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"unknown training setting(s) {', '.join(hints)}; TrainConfig settings "
                        f"are: {', '.join(known)}")


def _checked(f, value):
    """`value` for field `f`, normalised (ints, floats, paths, recipes), or a clear error."""
    meta = f.metadata
    if value is None:
        if meta["optional"]:
            return None
        raise TypeError(f"TrainConfig.{f.name} must not be None")
    kind = meta["kind"]
    if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    elif kind == "float" and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
    elif kind == "bool" and isinstance(value, bool):
        pass
    elif kind == "str" and isinstance(value, str):
        pass
    elif kind == "path" and isinstance(value, (str, os.PathLike)):
        value = Path(value)
    elif kind == "device" and isinstance(value, (str, torch.device)):
        pass
    elif kind == "recipe" and isinstance(value, (str, Mapping, Recipe)):
        value = _recipe(value)
    else:
        raise TypeError(f"TrainConfig.{f.name} must be {_KIND_NAMES[kind]}"
                        f"{' or None' if meta['optional'] else ''}, got {type(value).__name__} "
                        f"{value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"TrainConfig.{f.name} must be one of {meta['choices']}, got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ValueError(f"TrainConfig.{f.name} must be at least {meta['minimum']}, got {value!r}")
    return value


_KIND_NAMES = {"int": "an int", "float": "a number", "bool": "True or False", "str": "a string",
               "path": "a folder path", "device": "a device ('cpu', 'cuda', torch.device)",
               "recipe": "a Recipe, a recipe or preset name, or a dict of Recipe fields"}


def _recipe(value) -> Recipe:
    if isinstance(value, Recipe):
        return value
    if isinstance(value, str):
        return get_recipe(value)
    return Recipe.from_dict(dict(value))
