"""Training and evaluation of PAR models: loss, schedules, the engine, checkpoints, inference.

Public API:
    train, TrainConfig, TrainResult, TrainingDiverged, SettingsMismatch
                                            (parkit.train.engine, parkit.train.config)
    evaluate, EvalResult, predict           (parkit.train.inference)
    predict_logits, forward_batches         (parkit.train.evaluation: the one prediction loop)
    weighted_bce, positive_ratio, par_loss  (parkit.train.loss, spec §8)
    cosine_lr, Recipe, RECIPES, get_recipe, build_optimizers     (parkit.train.schedule, spec §9)
    load_model, load_checkpoint, CheckpointError, RunState       (parkit.train.checkpoint)

`parkit.train` at the package level is the function `train` (see `parkit/__init__.py`); this
subpackage is reached with `from parkit.train import ...`. The metrics live in `parkit.metrics`.
"""
from parkit.train.checkpoint import CheckpointError, RunState, load_checkpoint, load_model
from parkit.train.config import TrainConfig
from parkit.train.engine import SettingsMismatch, TrainingDiverged, TrainResult, train
from parkit.train.evaluation import forward_batches, predict_logits
from parkit.train.inference import EvalResult, evaluate, predict
from parkit.train.loss import par_loss, positive_ratio, weighted_bce
from parkit.train.schedule import RECIPES, Recipe, build_optimizers, cosine_lr, get_recipe

__all__ = [
    "CheckpointError", "EvalResult", "RECIPES", "Recipe", "RunState", "SettingsMismatch",
    "TrainConfig", "TrainResult", "TrainingDiverged", "build_optimizers", "cosine_lr", "evaluate",
    "forward_batches", "get_recipe", "load_checkpoint", "load_model", "par_loss",
    "positive_ratio", "predict", "predict_logits", "train", "weighted_bce",
]
