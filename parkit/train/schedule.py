"""Optimisers, learning-rate schedules and training recipes (spec §9).

The official recipe trains two parameter sets with two SGD optimisers (momentum 0.9, weight decay
1e-4 on everything): the CLIP-side "prompt" set at 4e-3 and the fusion-side set at 8e-3. Each has
a timm-style cosine schedule **stepped once per epoch at the start of epochs e = 1..E**, with a
linear warmup that is *not* a prefix (the cosine uses e, not e − warmup): 10 warmup epochs for the
prompts, 5 for the fusion side, warmup start 0.01 × base, floor 0.002 × base. Gradients are
clipped to norm 10, separately per side. `cosine_lr` is that schedule as a pure function.

A `Recipe` bundles these choices; `get_recipe(preset)` returns the one for a model preset:

* ``"paper"`` — the official recipe above, for the CLIP ViT-L/14 and ViT-B/16 presets.
* ``"compact"`` — for the compact presets meant to train in minutes on a CPU. Why it differs: with
  a 5-20 epoch budget the paper's 10-epoch warmup would last about the whole run, so the model
  would train mostly at warmup learning rates, and the official stepping (epochs at e = 1..E)
  spends the last epoch at the floor. The compact recipe keeps the rest (two groups, per-epoch
  cosine, separate clipping, weighted BCE + 0.5 aux) with no warmup, epochs trained at
  lr(0..E-1), and AdamW, whose per-parameter step size suits the small backbone's feature scale
  without retuning SGD's learning rates per model width.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, List, Optional

import torch

from parkit.model import get_config

GROUPS = ("prompt", "fusion")  # spec §9: the two optimisers, in the order the official code steps them


def cosine_lr(epoch: float, base_lr: float, epochs: int, warmup_epochs: int,
              warmup_init_ratio: float = 0.01, min_ratio: float = 0.002) -> float:
    """Learning rate at the start of `epoch` under the official per-epoch cosine (spec §9).

    Args:
        epoch: the scheduler step e (the official loop trains epoch e = 1..E at lr(e)).
        base_lr: peak learning rate.
        epochs: E, the cosine length (timm `t_initial`).
        warmup_epochs: linear warmup length; not a prefix: for e ≥ warmup the cosine is
            evaluated at e itself, so it joins the cosine curve where it already is.
        warmup_init_ratio: warmup start as a fraction of `base_lr` (0.01).
        min_ratio: floor as a fraction of `base_lr` (0.002); reached at e = E and kept after.

    Returns:
        The learning rate. Paper values: epoch 1 gives 1.664e-3 for base 8e-3 / warmup 5 and
        4.36e-4 for base 4e-3 / warmup 10, both with E = 100.
    """
    if epochs <= 0:
        raise ValueError(f"cosine_lr: epochs must be positive, got {epochs}")
    init, floor = warmup_init_ratio * base_lr, min_ratio * base_lr
    if epoch < warmup_epochs:
        return init + epoch * (base_lr - init) / warmup_epochs
    if epoch >= epochs:
        return floor
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * epoch / epochs))


@dataclass(frozen=True)
class Recipe:
    """How a model is optimised. Every field is a plain value, so recipes round-trip through JSON.

    Attributes:
        name: "paper", "compact" or a user label.
        optimizer: "sgd" (spec §9) or "adamw".
        lr_prompt / lr_fusion: base learning rates of the two parameter groups.
        weight_decay: applied to every trained tensor, BN/LN included, as in the official code.
        momentum: SGD momentum (non-Nesterov); AdamW uses (0.9, 0.999) betas.
        warmup_prompt / warmup_fusion: warmup epochs of each group's cosine.
        warmup_init_ratio / min_ratio: see `cosine_lr`.
        grad_clip: max gradient norm, applied separately to each group (None: no clipping).
        aux_weight: weight of the global-local similarity loss (spec §8).
        batch_size / epochs: defaults used by `train` when the caller does not give them.
        threshold: decision threshold of the evaluation metrics (spec §10).
        first_step: scheduler step at which the first epoch trains. The official loop steps at
            e = 1..E (1), so its first epoch already follows one warmup increment and its last
            epoch trains at the floor; negligible over 100 epochs, but a tenth of a 10-epoch run.
            0 trains epoch i at lr(i), i = 0..E-1.
    """

    name: str = "paper"
    optimizer: str = "sgd"
    lr_prompt: float = 4e-3
    lr_fusion: float = 8e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_prompt: int = 10
    warmup_fusion: int = 5
    warmup_init_ratio: float = 0.01
    min_ratio: float = 0.002
    grad_clip: Optional[float] = 10.0
    aux_weight: float = 0.5
    batch_size: int = 16
    epochs: int = 100
    threshold: float = 0.45
    first_step: int = 1

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"Recipe.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        for f in ("lr_prompt", "lr_fusion", "batch_size", "epochs"):
            if not getattr(self, f) > 0:
                raise ValueError(f"Recipe.{f} must be positive, got {getattr(self, f)!r}")

    def lr(self, group: str) -> float:
        return {"prompt": self.lr_prompt, "fusion": self.lr_fusion}[group]

    def warmup(self, group: str) -> int:
        return {"prompt": self.warmup_prompt, "fusion": self.warmup_fusion}[group]

    def lr_at(self, group: str, epoch: float, epochs: int) -> float:
        """Learning rate of `group` for scheduler step `epoch` (1-based) of an `epochs`-long run."""
        return cosine_lr(epoch, self.lr(group), epochs, self.warmup(group),
                         self.warmup_init_ratio, self.min_ratio)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown Recipe fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "Recipe":
        return replace(self, **changes)


RECIPES: Dict[str, Recipe] = {
    "paper": Recipe(),
    "compact": Recipe(name="compact", optimizer="adamw", lr_prompt=1e-3, lr_fusion=2e-3,
                      weight_decay=1e-4, warmup_prompt=0, warmup_fusion=0, first_step=0,
                      batch_size=32, epochs=10),
}

# Which recipe a model trains with, by its CLIP backbone: an explicit table, no name matching.
# Backbones not listed (ViT-B/16, ViT-L/14, ...) use "paper", the official recipe.
BACKBONE_RECIPES: Dict[str, str] = {"micro": "compact"}


def recipe_for_backbone(backbone: Optional[str]) -> Recipe:
    """The recipe models on `backbone` train with by default."""
    return RECIPES[BACKBONE_RECIPES.get(str(backbone), "paper")]


def get_recipe(name_or_preset=None) -> Recipe:
    """A recipe by name ("paper", "compact"), or the default one of a model preset or model.

    Args:
        name_or_preset: a recipe name, a preset name (its config's backbone decides, see
            `BACKBONE_RECIPES`), a model (its `config.backbone`), or None ("paper").
    """
    if name_or_preset is None:
        return RECIPES["paper"]
    if not isinstance(name_or_preset, str):
        return recipe_for_backbone(getattr(getattr(name_or_preset, "config", None), "backbone", None))
    if name_or_preset in RECIPES:
        return RECIPES[name_or_preset]
    try:
        backbone = get_config(name_or_preset).backbone
    except KeyError:
        raise ValueError(f"{name_or_preset!r} is neither a recipe ({sorted(RECIPES)}) nor a "
                         f"model preset (see parkit.model.list_presets())") from None
    return recipe_for_backbone(backbone)


def build_optimizers(param_groups: Dict[str, List[torch.nn.Parameter]],
                     recipe: Recipe) -> Dict[str, torch.optim.Optimizer]:
    """One optimiser per non-empty parameter group, keyed "prompt" / "fusion" (spec §9).

    Args:
        param_groups: the model's `param_groups()` mapping.
        recipe: learning rates, weight decay, optimiser type.

    Returns:
        {"prompt": optimizer, "fusion": optimizer}, leaving out groups with no trainable tensor.
    """
    unknown = sorted(set(param_groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"model.param_groups() returned unknown groups {unknown}; expected {GROUPS}")
    optimizers = {}
    for group in GROUPS:
        params = [p for p in param_groups.get(group, []) if p.requires_grad]
        if not params:
            continue
        # lr is set per epoch by `set_epoch_lr`; the value here is only the initial one
        if recipe.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=recipe.lr(group), momentum=recipe.momentum,
                                  weight_decay=recipe.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=recipe.lr(group), weight_decay=recipe.weight_decay)
        optimizers[group] = opt
    if not optimizers:
        raise ValueError("the model has no trainable parameter in its 'prompt' or 'fusion' group")
    return optimizers


def set_epoch_lr(optimizers: Dict[str, torch.optim.Optimizer], recipe: Recipe, epoch_index: int,
                 epochs: int) -> Dict[str, float]:
    """Set every group's learning rate for 0-based `epoch_index` (scheduler step
    `epoch_index + recipe.first_step`).

    Returns:
        {group: lr} as set.
    """
    lrs = {}
    for group, opt in optimizers.items():
        lr = recipe.lr_at(group, epoch_index + recipe.first_step, epochs)
        for pg in opt.param_groups:
            pg["lr"] = lr
        lrs[group] = lr
    return lrs
