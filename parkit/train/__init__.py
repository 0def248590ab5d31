"""Training and evaluation of PAR models: loss, schedules, the engine, checkpoints, inference.

Public API:
    train, TrainResult, TrainingDiverged, SettingsMismatch      (parkit.train.engine)
    evaluate, EvalResult, predict                                (parkit.train.inference)
    weighted_bce, positive_ratio, par_loss                       (parkit.train.loss, spec §8)
    cosine_lr, Recipe, RECIPES, get_recipe, build_optimizers     (parkit.train.schedule, spec §9)
    load_model, load_checkpoint, CheckpointError                 (parkit.train.checkpoint)

The metrics themselves live in `parkit.metrics`.
"""
import sys as _sys
import types as _types

from parkit.train.checkpoint import CheckpointError, load_checkpoint, load_model
from parkit.train.engine import SettingsMismatch, TrainingDiverged, TrainResult, train
from parkit.train.inference import EvalResult, evaluate, predict
from parkit.train.loss import par_loss, positive_ratio, weighted_bce
from parkit.train.schedule import RECIPES, Recipe, build_optimizers, cosine_lr, get_recipe

__all__ = [
    "CheckpointError", "EvalResult", "RECIPES", "Recipe", "SettingsMismatch", "TrainResult",
    "TrainingDiverged", "build_optimizers", "cosine_lr", "evaluate", "get_recipe", "load_checkpoint",
    "load_model", "par_loss", "positive_ratio", "predict", "train", "weighted_bce",
]


class _CallableModule(_types.ModuleType):
    """`parkit.train` is both this subpackage and the training function.

    Python binds a subpackage as an attribute of its parent once imported, which would shadow a
    re-exported `parkit.train` function; making the module callable keeps `parkit.train(...)`
    working in every import order while `parkit.train.evaluate` etc. stay reachable.
    """

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
