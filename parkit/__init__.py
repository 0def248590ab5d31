"""parkit: a reproducibility companion for PromptPAR.

The public API is re-exported lazily, so `import parkit` is cheap and has no side effects
(no model loading, no argument parsing, no device work).
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "list_presets": "parkit.model",
    "create_model": "parkit.model",
    "count_parameters": "parkit.model",
    "load_official_checkpoint": "parkit.model",
    "export_official_checkpoint": "parkit.model",
    "train": "parkit.train",
    "evaluate": "parkit.train",
    "predict": "parkit.train",
    "load_dataset": "parkit.data",
    "list_datasets": "parkit.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'parkit' has no attribute {name!r}")
