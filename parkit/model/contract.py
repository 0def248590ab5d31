"""The parkit model contract, written down once: `PARModel`.

Every model `create_model` returns (PromptPAR, VPT-deep, the released-checkpoint compat model and
every baseline) is a `PARModel`. The trainer, evaluation, explanation, export and the widgets rely on
this and nothing else:

    forward(images (B, 3, S, S)) -> PAROutput(logits (B, A), aux_logits (B, A) | None, extras)
    attributes, sentences         the A attribute names and CLIP sentences, in logit order
    num_attributes                A
    config                        the resolved, frozen `PromptPARConfig`
    image_size, normalization     S and "official" | "clip": how images must be prepared
    eval_transform()              the PIL -> (3, S, S) evaluation transform built from those two
    param_groups()                {"prompt": [...], "fusion": [...]}: the two optimisers (spec §9)
    trainable_state_keys()        the keys of the trainable state (in `state_dict()` naming)
    trainable_state_dict(include_config=False) / load_trainable_state_dict(sd, strict=True)
                                  save / load that state; loading is strict and raises
                                  `StateDictMismatch` naming the differing setting
    config_dict(), check_compatible(saved_config)
    parameter_report()            parameter counts by named group (see `parameter_report`)

A subclass stores `config`, `_attributes` and `_sentences` in its constructor, implements the
abstract methods, and declares its strict-loading tables (`SHAPE_SETTINGS`, `BEHAVIOUR_SETTINGS`,
`KEY_SETTINGS`, `DIMENSION_SETTINGS`; see `parkit.model.strict_load`). Saving and loading are
implemented here, once, so every model has the same signatures, the same exception type and the
same style of message.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from parkit.data.transforms import PARTransform, build_transform
from parkit.model import strict_load
from parkit.model.strict_load import CONFIG_KEY, StateDictMismatch

__all__ = ["PARModel", "PAROutput", "StateDictMismatch", "CONFIG_KEY", "REPORT_FIELDS"]

# The keys of every `parameter_report()` row.
REPORT_FIELDS = ("group", "side", "parameters", "trainable", "official", "inert", "note")


@dataclass
class PAROutput:
    """What every parkit model returns.

    Attributes:
        logits: (B, A) main attribute logits (sigmoid -> probability).
        aux_logits: (B, A) logits of the global-local similarity branch, or None.
        extras: optional tensors, e.g. attention maps when `return_attention` is set.
    """

    logits: torch.Tensor
    aux_logits: Optional[torch.Tensor] = None
    extras: dict = field(default_factory=dict)


class PARModel(nn.Module, metaclass=ABCMeta):
    """Base class of every parkit model: the contract of the module docstring.

    Class attributes (the strict-loading tables; subclasses extend them):
        SHAPE_SETTINGS: config_dict() keys that change tensor shapes or the set of saved tensors;
            a checkpoint must agree on them.
        BEHAVIOUR_SETTINGS: keys that only change behaviour; differences are reported, not refused.
        KEY_SETTINGS: [(key pattern, setting)] deciding whether a key exists.
        DIMENSION_SETTINGS: [(key pattern, (setting per dimension))] deciding tensor shapes.
    """

    SHAPE_SETTINGS: Tuple[str, ...] = ("kind", "backbone", "num_attributes")
    BEHAVIOUR_SETTINGS: Tuple[str, ...] = ("normalization", "sentences")
    KEY_SETTINGS: Sequence[Tuple[str, str]] = ()
    DIMENSION_SETTINGS: Sequence[Tuple[str, Tuple[str, ...]]] = ()

    config: object  # the resolved `PromptPARConfig`, set by the subclass
    _attributes: List[str]
    _sentences: List[str]

    # -- facts ------------------------------------------------------------------------------
    @property
    def attributes(self) -> List[str]:
        """Attribute names, in logit order."""
        return list(self._attributes)

    @property
    def sentences(self) -> List[str]:
        """One CLIP sentence per attribute, in logit order."""
        return list(self._sentences)

    @property
    def num_attributes(self) -> int:
        return len(self._attributes)

    @property
    def image_size(self) -> int:
        """Side S of the square (B, 3, S, S) input."""
        return self.config.image_size

    @property
    def normalization(self) -> str:
        """"official" (mean = std = 0.5) or "clip"; see `config.normalization_stats`."""
        return self.config.normalization

    def eval_transform(self) -> PARTransform:
        """The evaluation transform: letterbox to `image_size`, to tensor, normalise (spec §11.3).

        Returns:
            A `PARTransform` mapping a PIL image to a (3, image_size, image_size) float32 tensor.
        """
        return build_transform(train=False, image_size=self.image_size, normalization=self.normalization)

    # -- what each model provides -------------------------------------------------------------
    @abstractmethod
    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """(B, 3, S, S) normalised images -> `PAROutput`."""

    @abstractmethod
    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """Parameters per optimiser: {"prompt": [...], "fusion": [...]} (either may be empty)."""

    @abstractmethod
    def trainable_state_keys(self) -> List[str]:
        """Keys (of `state_dict()`) that make up the trainable state: trained tensors, BatchNorm
        statistics, and any other tensor no pretrained file restores (e.g. calibration offsets)."""

    @abstractmethod
    def parameter_report(self) -> List[dict]:
        """Parameter counts by named group.

        Returns:
            One dict per group with the keys of `REPORT_FIELDS`: "group", "side" ("prompt" |
            "fusion" | "frozen"), "parameters", "trainable" (bool), "official" (would the official
            substring rule train it, spec §7.1), "inert" (trained elements that never affect the
            output), "note". Every parameter of the model is in exactly one group.
        """

    def _after_load(self) -> None:
        """Hook run after `load_trainable_state_dict` (e.g. to drop caches derived from the state)."""

    # -- checkpoints ----------------------------------------------------------------------------
    def _who(self) -> str:
        return f"{type(self).__name__} ({self.config.kind})"

    def config_dict(self) -> dict:
        """The config as a plain dict plus the attribute facts (for checkpoints)."""
        return {**self.config.to_dict(), "num_attributes": self.num_attributes,
                "attributes": self.attributes, "sentences": self.sentences}

    def check_compatible(self, config_dict: Mapping) -> List[str]:
        """Check that a checkpoint's `config_dict()` fits this model.

        Args:
            config_dict: the dict saved with the checkpoint.

        Returns:
            Human-readable differences that do not prevent loading (behaviour settings, sentences).

        Raises:
            StateDictMismatch: a setting that changes tensor shapes differs; all of them are named.
        """
        return strict_load.check_compatible(config_dict, self.config_dict(), self.SHAPE_SETTINGS,
                                            self.BEHAVIOUR_SETTINGS, self._who())

    def trainable_state_dict(self, include_config: bool = False) -> Dict[str, torch.Tensor]:
        """The trainable state, as detached copies (a snapshot later training does not change).

        Args:
            include_config: also store `config_dict()` under the key "__config__", so that
                `load_trainable_state_dict` can name differing settings directly.

        Returns:
            {name: tensor} for every key of `trainable_state_keys()` (+ "__config__").
        """
        out: Dict = strict_load.tensor_state(self.state_dict(), self.trainable_state_keys())
        if include_config:
            out[CONFIG_KEY] = self.config_dict()
        return out

    def load_trainable_state_dict(self, state_dict: Mapping, strict: bool = True) -> List[str]:
        """Load a `trainable_state_dict()`, strictly.

        Args:
            state_dict: as saved; may carry "__config__".
            strict: refuse missing or unexpected keys (shape mismatches are always refused).

        Returns:
            Behavioural differences reported by `check_compatible` (empty when none or unknown).

        Raises:
            StateDictMismatch: keys or shapes differ; the message names the responsible setting
                (attribute count, prompt length, backbone width, ...).
        """
        state = dict(state_dict)
        notes: List[str] = []
        if CONFIG_KEY in state:
            notes = self.check_compatible(state.pop(CONFIG_KEY))
        strict_load.load_strict(self.state_dict(), self.trainable_state_keys(), state, self.KEY_SETTINGS,
                                self.DIMENSION_SETTINGS, self._who(), strict=strict)
        self._after_load()
        return notes
