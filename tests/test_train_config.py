"""TrainConfig (one validated description of a run), the engine's structure, and `parkit.train`."""
import ast
import inspect
import sys
from pathlib import Path

import pytest
import torch

from parkit.train import (RECIPES, Recipe, SettingsMismatch, TrainConfig, load_checkpoint,
                          train)
from test_engine import FAST, make_tiny_dataset, tiny_model
from test_engine import _one_thread, tiny_ds  # noqa: F401 (shared fixtures: one thread, the tiny dataset)

PARKIT = Path(__file__).resolve().parents[1] / "parkit"


# --- validation ----------------------------------------------------------------------------------

def test_unknown_setting_names_the_closest_one():
    with pytest.raises(TypeError, match=r"'epoch' \(did you mean 'epochs'\?\)"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(TypeError, match="'lr'"):
        TrainConfig().replace(lr=0.1)


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 2.5}, "epochs must be an int or None, got float"),
    ({"epochs": True}, "epochs must be an int"),            # bool is an int to Python, not here
    ({"seed": None}, "seed must not be None"),
    ({"verbose": "yes"}, "verbose must be True or False"),
    ({"recipe": 3}, "recipe must be a Recipe"),
    ({"select_on": "tset"}, r"select_on must be one of \('val', 'test', 'last'\)"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"on_corrupt": "ignore"}, "on_corrupt must be one of"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
])
def test_wrong_types_and_values_raise_at_once(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        TrainConfig(**bad)


def test_values_are_normalised():
    cfg = TrainConfig(recipe="compact", max_minutes=3, out_dir="runs/x", seed=torch.tensor(4).item())
    assert cfg.recipe == RECIPES["compact"] and isinstance(cfg.recipe, Recipe)
    assert isinstance(cfg.max_minutes, float) and cfg.out_dir == Path("runs/x")
    assert TrainConfig(recipe={**RECIPES["paper"].to_dict(), "lr_prompt": 1.0}).recipe.lr_prompt == 1.0
    with pytest.raises(ValueError, match="unknown Recipe fields"):
        TrainConfig(recipe={"learning_rate": 1.0})
    with pytest.raises(ValueError, match="neither a recipe"):
        TrainConfig(recipe="compcat")


def test_resolved_fills_the_recipe_defaults():
    cfg = TrainConfig(select_on="last").resolved(RECIPES["compact"])
    assert (cfg.epochs, cfg.batch_size, cfg.eval_batch_size) == (10, 32, 64)
    assert cfg.train_split == "trainval" and cfg.selection_split is None
    cfg = TrainConfig(epochs=2, batch_size=8, recipe="paper").resolved(RECIPES["compact"])
    assert (cfg.epochs, cfg.batch_size, cfg.recipe.name, cfg.train_split) == (2, 8, "paper", "train")


def test_settings_and_key_follow_the_roles():
    base = TrainConfig(epochs=3)
    # execution settings never change what a run is
    same = base.replace(device="cpu", out_dir="elsewhere", num_workers=2, checkpoint_every=1,
                        eval_batch_size=7, progress=False, verbose=False, cache_images=True)
    assert same.settings() == base.settings() and same.key() == base.key()
    # outcome settings key a finished result but may change when a run is continued
    budget = base.replace(max_minutes=5)
    assert budget.settings() == base.settings() and budget.key() != base.key()
    # run settings change both
    other = base.replace(seed=1)
    assert other.settings() != base.settings() and other.key() != base.key()
    assert set(base.settings()) == {"seed", "epochs", "batch_size", "recipe", "select_on",
                                    "train_split", "eval_limit", "precision", "pretrained"}


def test_train_limit_keys_a_run_only_when_set():
    # added after runs were cached: an unset train_limit leaves every older run's key as it was
    base = TrainConfig(epochs=3)
    assert "train_limit" not in base.key() and "train_limit" not in base.settings()
    limited = base.replace(train_limit=8)
    assert limited.settings()["train_limit"] == 8 and limited.key() != base.key()


def test_train_limit_trains_on_that_many_images(tiny_ds, tmp_path):
    train(tiny_model(), tiny_ds, TrainConfig(**FAST, train_limit=5, out_dir=tmp_path))
    assert load_checkpoint(tmp_path / "last.pt")["run"]["train_size"] == 5


def test_train_rejects_an_unknown_keyword_before_doing_anything(tiny_ds, tmp_path):
    with pytest.raises(TypeError, match="did you mean 'epochs'"):
        train(tiny_model(), tiny_ds, out_dir=tmp_path / "run", epoch=3)
    assert not (tmp_path / "run").exists()


# --- the engine records TrainConfig.settings() and resumes by them --------------------------------

def test_checkpoint_run_record_is_the_config_settings(tiny_ds, tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    res = train(tiny_model(), tiny_ds, cfg, out_dir=tmp_path)
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    expected = cfg.resolved(RECIPES["compact"]).settings()
    assert {k: last["run"][k] for k in expected} == expected
    assert last["run"]["dataset"] == "Tiny" and last["run"]["train_size"] == 40
    assert set(last["run"]) == set(expected) | {"model", "preset", "dataset", "train_size"}
    # one builder, two records: best.pt leaves out what only resuming needs
    assert last["kind"] == "epoch" and best["kind"] == "best"
    assert {"optimizers", "schedulers", "rng", "epoch_acc"} <= set(last)
    assert not {"optimizers", "schedulers", "rng", "epoch_acc"} & set(best)
    assert best["run"] == last["run"] and best["format"] == last["format"] == "parkit/1"
    assert res.epochs_done == 1


def test_resume_accepts_other_execution_settings_but_not_other_run_settings(tiny_ds, tmp_path):
    cfg = TrainConfig(**{**FAST, "epochs": 1})
    train(tiny_model(), tiny_ds, cfg, out_dir=tmp_path)
    again = train(tiny_model(), tiny_ds, cfg, out_dir=tmp_path, max_minutes=30.0,
                  checkpoint_every=2, eval_batch_size=5, num_workers=0)
    assert again.epochs_done == 1  # read back, nothing retrained
    with pytest.raises(SettingsMismatch, match="seed: 3 in the checkpoint, 4 here"):
        train(tiny_model(), tiny_ds, cfg, out_dir=tmp_path, seed=4)


# --- parkit.train is the function ------------------------------------------------------------------

def test_parkit_train_is_the_training_function_in_any_import_order():
    import parkit
    import parkit.train.engine  # noqa: F401 (imports the subpackage first)
    from parkit.train import evaluate  # noqa: F401 (the subpackage stays importable)

    assert inspect.isfunction(parkit.train)
    assert parkit.train is sys.modules["parkit.train.engine"].train
    assert "model_or_preset" in inspect.signature(parkit.train).parameters
    assert parkit.TrainConfig is TrainConfig


# --- structure ---------------------------------------------------------------------------------------

def _functions(path: Path):
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_of_the_training_package_is_longer_than_80_lines():
    long = [f"{p.name}:{f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in sorted((PARKIT / "train").glob("*.py")) for f in _functions(p)
            if f.end_lineno - f.lineno + 1 > 80]
    assert not long, long


@pytest.mark.parametrize("module", ["train/engine.py", "train/inference.py", "train/evaluation.py",
                                    "train/checkpoint.py", "train/config.py",
                                    "widgets/explorer.py", "experiments.py"])
def test_no_private_names_imported_from_other_modules(module):
    tree = ast.parse((PARKIT / module).read_text())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and (n.module or "").startswith("parkit") for a in n.names if a.name.startswith("_")]
    assert not private, private
