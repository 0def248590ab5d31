"""A run's seed alone decides its initialisation: same seed, bit-identical runs on the CPU,
whatever ran before in the process."""
import random
import shutil

import numpy as np
import pytest
import torch

from parkit.experiments import run_experiment
from parkit.model import create_model
from parkit.profiles import Profile
from parkit.train import load_checkpoint, train
from test_engine import ATTRS, make_tiny_dataset
from test_engine import _one_thread, tiny_ds  # noqa: F401 (shared fixtures: one thread, the tiny dataset)

SENTENCES = [f"A pedestrian {a}" for a in ATTRS]
SMALL = dict(vis_prompt=5)  # the micro preset with short prompts: seconds per run


def _disturb(n: int) -> None:
    """Leave every global RNG in a state that depends on `n` (as earlier work in a notebook would)."""
    torch.manual_seed(n)
    torch.rand(n + 1)
    np.random.seed(n)
    random.seed(n)


def _micro(seed, **kw):
    return create_model("promptpar-micro", attributes=ATTRS, sentences=SENTENCES, pretrained=False,
                        device="cpu", seed=seed, **SMALL, **kw)


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_create_model_seed_fixes_the_init_and_leaves_the_callers_rng_alone():
    _disturb(1)
    a = _micro(7)
    _disturb(2)
    before = torch.get_rng_state()
    b = _micro(7)
    assert torch.equal(torch.get_rng_state(), before)  # the build drew from a forked RNG
    _assert_same_tensors(a.state_dict(), b.state_dict())
    c = _micro(8).trainable_state_dict()
    assert any(not torch.equal(v, c[k]) for k, v in a.trainable_state_dict().items())
    # without a seed the init follows the global RNG: what the seed protects against
    _disturb(1)
    u = _micro(None).trainable_state_dict()
    _disturb(2)
    v = _micro(None).trainable_state_dict()
    assert any(not torch.equal(u[k], v[k]) for k in u)


def _strip(history):
    return history.drop(columns=["seconds"]).to_dict("records")


@pytest.mark.slow
def test_same_seed_trains_bit_identically_whatever_ran_before(tiny_ds, tmp_path):
    """train() from a preset twice, and create_model + train() once: one result (DropPath on)."""
    common = dict(epochs=2, batch_size=8, device="cpu", progress=False, verbose=False, seed=11,
                  recipe="compact", eval_limit=8)
    _disturb(1)
    a = train("promptpar-micro", tiny_ds, out_dir=tmp_path / "a", pretrained=False,
              model_options=SMALL, **common)
    _disturb(2)
    b = train("promptpar-micro", tiny_ds, out_dir=tmp_path / "b", pretrained=False,
              model_options=SMALL, **common)
    _disturb(3)
    c = train(_micro(11), tiny_ds, out_dir=tmp_path / "c", pretrained=False, **common)
    assert a.model.config.mm_drop_path > 0  # the training draws random numbers too
    for other in (b, c):
        _assert_same_tensors(a.model.trainable_state_dict(), other.model.trainable_state_dict())
        assert _strip(a.history) == _strip(other.history)
        assert a.test_metrics == other.test_metrics
    # and the seed matters: another one ends elsewhere
    d = train("promptpar-micro", tiny_ds, out_dir=tmp_path / "d", pretrained=False,
              model_options=SMALL, **{**common, "seed": 12})
    assert _strip(d.history) != _strip(a.history)


@pytest.mark.slow
def test_run_experiment_passes_its_seed_to_the_model_and_the_run(tiny_ds, tmp_path, monkeypatch):
    import parkit.experiments as experiments

    monkeypatch.setattr(experiments, "runs_dir", lambda profile: tmp_path / profile.name)
    profile = Profile("test", "Tiny", 0, "promptpar-micro", epochs=1, ablation_epochs=1,
                      batch_size=8, max_minutes=None, eval_limit=8, device="cpu")
    _disturb(1)
    a = run_experiment("a", profile, tiny_ds, overrides=SMALL, seed=4, progress=False)
    first = load_checkpoint(a.out_dir / "last.pt")
    assert a.spec["train"]["seed"] == 4 and first["run"]["seed"] == 4
    shutil.rmtree(a.out_dir)  # train the same run again from scratch, after other work
    _disturb(2)
    b = run_experiment("b", profile, tiny_ds, overrides=SMALL, seed=4, progress=False)
    assert b.out_dir == a.out_dir  # same key
    _assert_same_tensors(first["model"], load_checkpoint(b.out_dir / "last.pt")["model"])
    assert {k: a.row[k] for k in ("mA", "F1")} == {k: b.row[k] for k in ("mA", "F1")}
    c = run_experiment("c", profile, tiny_ds, overrides=SMALL, seed=5, progress=False)
    assert c.out_dir != a.out_dir and c.spec["train"]["seed"] == 5
