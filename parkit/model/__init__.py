"""PromptPAR and its baselines: configs and presets, region geometry, the prompted CLIP encoders,
the global-local similarity branch, the fusion classifier, the factory and parameter counting.

Public API:
    list_presets, create_model, get_config, resolve_attributes     (parkit.model.factory)
    PromptPARConfig, ConfigError, OFFICIAL_FLAGS, PRESETS           (parkit.model.config)
    PARModel, PAROutput, StateDictMismatch                          (parkit.model.contract)
    PromptPAR                                                       (parkit.model.promptpar)
    count_parameters, format_count                                  (parkit.model.counting)
    stripe_rows, token_layout, visual_mask, mask_summary            (parkit.model.geometry)
    load_official_checkpoint, export_official_checkpoint            (parkit.model.official, lazily)

Importing this package loads no weights and touches no device.
"""
from importlib import import_module

from parkit.model.config import OFFICIAL_FLAGS, PRESETS, ConfigError, PromptPARConfig
from parkit.model.contract import PARModel, PAROutput, StateDictMismatch
from parkit.model.counting import count_parameters, format_count
from parkit.model.factory import create_model, get_config, list_presets, resolve_attributes
from parkit.model.geometry import (format_mask_summary, mask_summary, stripe_rows, token_layout,
                                   visual_mask)
from parkit.model.promptpar import PromptPAR

_LAZY = {
    "load_official_checkpoint": "parkit.model.official",
    "export_official_checkpoint": "parkit.model.official",
    "build_baseline": "parkit.model.baselines",
}

__all__ = [
    "ConfigError", "OFFICIAL_FLAGS", "PARModel", "PAROutput", "PRESETS", "PromptPAR", "PromptPARConfig",
    "StateDictMismatch", "count_parameters", "create_model", "format_count", "format_mask_summary",
    "get_config", "list_presets", "mask_summary", "resolve_attributes", "stripe_rows", "token_layout",
    "visual_mask", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parkit.model' has no attribute {name!r}")
