"""parkit: a reproducibility companion for PromptPAR.

The public API is re-exported lazily, so `import parkit` is cheap and has no side effects
(no model loading, no argument parsing, no device work).
"""
import sys
import types
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "list_presets": "parkit.model",
    "create_model": "parkit.model",
    "count_parameters": "parkit.model",
    "load_official_checkpoint": "parkit.model",
    "export_official_checkpoint": "parkit.model",
    "train": "parkit.train",
    "TrainConfig": "parkit.train",
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


class _Package(types.ModuleType):
    """parkit's module type: a re-exported function keeps its name over a subpackage's.

    Python binds every imported subpackage as an attribute of its parent, so importing the
    subpackage `parkit.train` would replace the function `parkit.train`. This type ignores that
    one binding: `parkit.train(...)` stays the training function (found by `__getattr__`), while
    the subpackage is reached with `from parkit.train import evaluate` (not with
    `import parkit.train.engine as e`, which would look the subpackage up as an attribute).
    """

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
