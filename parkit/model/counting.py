"""Parameter counting: what parkit really trains, and what the official code would report (spec §7).

Two rules:

- "exact": trainable = parameters parkit's optimisers update, minus elements that provably never
  affect the output (text prompts in the official placement, prompts of layers beyond the
  backbone depth); total = every parameter of the model.
- "official": spec §7.4. Trainable = everything the official substring rule selects (prompts,
  part tokens, text prompts even when inert, agg_bn, tau, word_embed, visual_embed when trained,
  the MM-former norms, final norm, heads, bn), all prompt layers counted; total = classifier +
  all CLIP parameters + the new CLIP-side parameters (= every parameter of the model).

With random weights, ViT-L/14 on PETA (35 attributes) and the 2023 code's layout (no visual_embed)
gives 2,822,832 of 437,524,145 (0.645%), the number printed by the official training log.
"""
from __future__ import annotations

from typing import Dict

from torch import nn

from parkit.model.contract import PARModel

RULES = ("exact", "official")


def _unique_parameters(model: nn.Module):
    return list({id(p): p for p in model.parameters()}.values())


def count_parameters(model: nn.Module, rule: str = "exact") -> Dict[str, object]:
    """Count trainable and total parameters.

    Args:
        model: a parkit model (PromptPAR or a baseline); any nn.Module works with rule="exact".
        rule: "exact" or "official" (see the module docstring).

    Returns:
        {"trainable": int, "total": int, "percent": float (100 * trainable / total),
        "by_group": {group name: parameters}} — for a `PARModel` the groups of
        `model.parameter_report()`, otherwise the model's top-level children.

    Raises:
        ValueError: unknown rule.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    params = _unique_parameters(model)
    total = sum(p.numel() for p in params)
    if isinstance(model, PARModel):
        report = model.parameter_report()
        if rule == "official":
            trainable = sum(r["parameters"] for r in report if r["official"])
        else:
            trainable = sum(r["parameters"] - r["inert"] for r in report if r["trainable"])
        by_group = {r["group"]: r["parameters"] for r in report}
    else:
        # Plain modules: requires_grad is the whole truth under both rules. Split each child into
        # what trains and what stays frozen, named as the models' reports do, so tables and plots
        # never present frozen weights as trainable.
        trainable = sum(p.numel() for p in params if p.requires_grad)
        by_group = {}
        for name, child in model.named_children():
            n_train = sum(p.numel() for p in child.parameters() if p.requires_grad)
            n_frozen = sum(p.numel() for p in child.parameters() if not p.requires_grad)
            if n_train:
                by_group[name] = n_train
            if n_frozen:
                by_group[f"{name} (frozen)"] = n_frozen
    return {"trainable": int(trainable), "total": int(total),
            "percent": 100.0 * trainable / total if total else 0.0, "by_group": by_group}


def format_count(counts: Dict[str, object]) -> str:
    """One line in the official log's style: "trainable params: N || all params: M || trainable%: x"."""
    return (f"trainable params: {counts['trainable']:,} || all params: {counts['total']:,} || "
            f"trainable%: {counts['percent']:.4f}")
