"""Strict loading of trainable state dicts, with errors that name the setting responsible.

Every parkit model (`parkit.model.contract.PARModel`) saves only its trainable state and loads it
strictly. When a state dict does not fit, the user wants to know *which setting* differs (attribute
count, prompt length, backbone width, ...), not which tensor. Each model class therefore declares
two small tables, and the functions here turn a mismatch into a message from them:

    key settings        [(key pattern, setting)]: which setting decides whether a key exists at all
                        (for missing and unexpected keys)
    dimension settings  [(key pattern, (setting of dim 0, setting of dim 1, ...))]: which setting
                        decides each dimension of a tensor (for shape mismatches)

Patterns are `fnmatch` patterns over state-dict keys; the first match wins. A checkpoint may carry
the model's `config_dict()` under `CONFIG_KEY`; `check_compatible` then names the differing
settings directly, before any tensor is compared.
"""
from __future__ import annotations

import fnmatch
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

CONFIG_KEY = "__config__"

KeySettings = Sequence[Tuple[str, str]]
DimensionSettings = Sequence[Tuple[str, Tuple[str, ...]]]

_MAX_LINES = 12  # longer lists end in "..." (a whole other model kind can differ in hundreds of keys)


class StateDictMismatch(ValueError):
    """A trainable state dict from another configuration; the message names the differing setting."""


def explain_key(key: str, key_settings: KeySettings) -> str:
    """The setting that decides whether `key` exists (first matching pattern), else the model kind."""
    for pattern, setting in key_settings:
        if fnmatch.fnmatchcase(key, pattern):
            return setting
    return "the model kind or backbone"


def explain_shape(key: str, model_shape: Tuple[int, ...], ckpt_shape: Tuple[int, ...],
                  dimension_settings: DimensionSettings) -> str:
    """Which dimensions of `key` differ, each named by the setting that decides it.

    Returns:
        E.g. "attribute count differs (checkpoint 3, model 5)"; dimensions without a named setting
        are called "dimension i".
    """
    names: Tuple[str, ...] = ()
    for pattern, dims in dimension_settings:
        if fnmatch.fnmatchcase(key, pattern):
            names = dims
            break
    if len(model_shape) != len(ckpt_shape):
        return f"the tensors have different ranks (checkpoint {ckpt_shape}, model {model_shape})"
    parts = []
    for i, (m, c) in enumerate(zip(model_shape, ckpt_shape)):
        if m != c:
            label = names[i] if i < len(names) else f"dimension {i}"
            parts.append(f"{label} differs (checkpoint {c}, model {m})")
    return "; ".join(parts)


def check_compatible(saved: Mapping, mine: Mapping, shape_settings: Sequence[str],
                     behaviour_settings: Sequence[str], who: str) -> List[str]:
    """Compare a checkpoint's `config_dict()` with the model's.

    Args:
        saved: the config dict stored with the checkpoint.
        mine: the model's own `config_dict()`.
        shape_settings: settings that change tensor shapes or the set of saved tensors.
        behaviour_settings: settings that only change what the model computes.
        who: the model's name for messages (e.g. "PromptPAR (promptpar)").

    Returns:
        Human-readable behaviour differences ("ln_post: checkpoint False, model True").

    Raises:
        StateDictMismatch: a shape setting differs; every differing one is named.
    """
    shape_diffs = [f"{k} (checkpoint {saved[k]!r}, model {mine[k]!r})"
                   for k in shape_settings if k in saved and k in mine and saved[k] != mine[k]]
    if shape_diffs:
        raise StateDictMismatch(
            f"{who}: the checkpoint was trained with another configuration; these settings differ: "
            + "; ".join(shape_diffs)
            + ". Build the model with the checkpoint's settings (create_model(..., **overrides)).")
    return [f"{k}: checkpoint {saved[k]!r}, model {mine[k]!r}"
            for k in behaviour_settings if k in saved and k in mine and saved[k] != mine[k]]


def _key_lines(missing: Sequence[str], unexpected: Sequence[str], key_settings: KeySettings) -> List[str]:
    lines = [f"unexpected {k!r}: the checkpoint has it, this model does not (setting: "
             f"{explain_key(k, key_settings)})" for k in unexpected]
    lines += [f"missing {k!r}: this model needs it, the checkpoint lacks it (setting: "
              f"{explain_key(k, key_settings)})" for k in missing]
    return lines


def _listing(lines: Sequence[str]) -> str:
    return "\n  " + "\n  ".join(lines[:_MAX_LINES]) + ("\n  ..." if len(lines) > _MAX_LINES else "")


@torch.no_grad()
def load_strict(own: Mapping[str, torch.Tensor], expected: Sequence[str], state: Mapping[str, torch.Tensor],
                key_settings: KeySettings, dimension_settings: DimensionSettings, who: str,
                strict: bool = True) -> None:
    """Copy `state` into the model's tensors after checking keys and shapes.

    Args:
        own: the model's `state_dict()` (tensors sharing storage with the live ones).
        expected: the keys of the model's trainable state.
        state: the state dict to load (without `CONFIG_KEY`).
        key_settings, dimension_settings: the model's tables (module docstring).
        who: the model's name for messages.
        strict: refuse missing or unexpected keys (shape mismatches are always refused).

    Raises:
        StateDictMismatch: keys or shapes differ; the message names the responsible setting.
    """
    expected_set = set(expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected_set]
    if strict and (missing or unexpected):
        raise StateDictMismatch(f"{who}: the checkpoint comes from another configuration:"
                                + _listing(_key_lines(missing, unexpected, key_settings)))
    problems = [f"{k}: {explain_shape(k, tuple(own[k].shape), tuple(state[k].shape), dimension_settings)}"
                for k in expected if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if problems:
        raise StateDictMismatch(f"{who}: the checkpoint's tensors do not fit this model:" + _listing(problems))
    for k in expected:
        if k in state:
            own[k].copy_(state[k])  # copy_ converts device and dtype


def tensor_state(own: Mapping[str, torch.Tensor], keys: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Detached copies of `own[k]` for every key (a snapshot that later training does not change)."""
    return {k: own[k].detach().clone() for k in keys}
