"""Weighted BCE (spec §8), the per-epoch cosine schedule (spec §9) and recipes."""
import math

import numpy as np
import pytest
import torch

from parkit.train.loss import par_loss, positive_ratio, weighted_bce
from parkit.train.schedule import (RECIPES, Recipe, build_optimizers, cosine_lr, get_recipe,
                                   set_epoch_lr)


def test_positive_ratio_excludes_unknown_labels():
    labels = np.array([[1, 2, 0], [0, 2, 1], [1, 1, 2]])
    np.testing.assert_allclose(positive_ratio(labels), [2 / 3, 1.0, 1 / 2])
    ignore = np.zeros_like(labels, dtype=bool)
    ignore[0, 0] = True
    assert positive_ratio(labels, ignore)[0] == pytest.approx(1 / 2)


def test_weighted_bce_matches_hand_computation():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    r = np.array([0.2, 0.7])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (math.exp(0.8) * bce(2.0, 1) + math.exp(0.7) * bce(-1.0, 0)
                + math.exp(0.2) * bce(0.5, 0) + math.exp(0.3) * bce(0.0, 1)) / 2  # mean over B
    assert weighted_bce(logits, targets, r).item() == pytest.approx(expected, rel=1e-6)
    assert weighted_bce(logits, targets, r, reduction="sum").item() == pytest.approx(2 * expected, rel=1e-6)
    ignore = torch.tensor([[False, False], [False, True]])
    masked = weighted_bce(logits, targets, r, ignore=ignore).item()
    assert masked == pytest.approx(expected - math.exp(0.3) * bce(0.0, 1) / 2, rel=1e-6)


def test_par_loss_adds_half_of_aux_branch():
    class Out:
        logits = torch.zeros(3, 2)
        aux_logits = torch.ones(3, 2)

    t = torch.tensor([[1.0, 0.0]] * 3)
    r = [0.5, 0.5]
    parts = par_loss(Out(), t, r)
    main, aux = weighted_bce(Out.logits, t, r), weighted_bce(Out.aux_logits, t, r)
    assert parts["loss"].item() == pytest.approx(main.item() + 0.5 * aux.item())
    Out.aux_logits = None
    assert par_loss(Out(), t, r)["aux"] is None


def test_weighted_bce_shape_errors_are_clear():
    with pytest.raises(ValueError, match="pos_ratio"):
        weighted_bce(torch.zeros(2, 3), torch.zeros(2, 3), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"\(B, A\)"):
        weighted_bce(torch.zeros(2, 3), torch.zeros(2, 4), [0.5] * 3)


@pytest.mark.parametrize("epoch,mm,prompt", [
    (1, 1.664e-3, 4.36e-4), (4, 6.416e-3, 1.624e-3), (5, 7.951e-3, 2.020e-3),
    (10, 7.805e-3, 3.902e-3), (25, 6.831e-3, 3.415e-3), (50, 4.008e-3, 2.004e-3),
    (75, 1.185e-3, 5.93e-4), (99, 1.80e-5, 8.99e-6), (100, 1.6e-5, 8e-6)])
def test_cosine_matches_spec_table(epoch, mm, prompt):
    assert cosine_lr(epoch, 8e-3, 100, 5) == pytest.approx(mm, rel=2e-3)
    assert cosine_lr(epoch, 4e-3, 100, 10) == pytest.approx(prompt, rel=2e-3)


def test_cosine_warmup_is_not_a_prefix():
    # at the end of warmup the curve joins the cosine at e=5, not the cosine's start (= base lr)
    assert cosine_lr(5, 8e-3, 100, 5) < 8e-3
    assert cosine_lr(0, 8e-3, 100, 5) == pytest.approx(8e-5)
    assert cosine_lr(150, 8e-3, 100, 5) == pytest.approx(1.6e-5)


def test_recipes_and_optimizers():
    assert get_recipe("promptpar-vitl14") == RECIPES["paper"]
    assert get_recipe("promptpar-micro").name == "compact"  # by backbone: the micro CLIP
    assert get_recipe("vpt-deep-micro").name == "compact"
    assert get_recipe("promptpar-vitb16").name == "paper"
    with pytest.raises(ValueError, match="neither a recipe"):
        get_recipe("no-such-thing")
    assert get_recipe("compact").optimizer == "adamw"
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="lion")
    with pytest.raises(ValueError, match="unknown Recipe fields"):
        Recipe.from_dict({"lr": 1})
    assert Recipe.from_dict(RECIPES["paper"].to_dict()) == RECIPES["paper"]

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opts = build_optimizers({"prompt": [a], "fusion": [b]}, RECIPES["paper"])
    assert isinstance(opts["prompt"], torch.optim.SGD)
    assert opts["fusion"].param_groups[0]["momentum"] == 0.9
    lrs = set_epoch_lr(opts, RECIPES["paper"], 0, 100)  # first epoch trains at lr(1)
    assert lrs["fusion"] == pytest.approx(1.664e-3) and lrs["prompt"] == pytest.approx(4.36e-4)
    assert opts["prompt"].param_groups[0]["lr"] == pytest.approx(4.36e-4)
    assert set(build_optimizers({"prompt": [], "fusion": [b]}, RECIPES["paper"])) == {"fusion"}


def test_compact_recipe_trains_first_epoch_at_base_lr_and_never_at_the_floor():
    compact = RECIPES["compact"]
    opts = build_optimizers({"prompt": [torch.nn.Parameter(torch.zeros(1))]}, compact)
    first = set_epoch_lr(opts, compact, 0, 10)["prompt"]
    last = set_epoch_lr(opts, compact, 9, 10)["prompt"]
    assert first == pytest.approx(compact.lr_prompt)
    assert last > compact.min_ratio * compact.lr_prompt * 5
