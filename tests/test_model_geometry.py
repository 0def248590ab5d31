"""Stripe rows, token layout, region indices and the stripe mask (spec §4, §15 checks 1-2)."""
import math

import pytest
import torch

from parkit.model.geometry import (GeometryError, format_mask_summary, mask_summary, prompt_init_bound,
                                   stripe_rows, stripe_token_spans, token_layout, visual_mask)


# -- stripes (spec §4.1) -----------------------------------------------------------------------
def test_stripes_vitl14_match_the_official_offsets():
    # Official: hard-coded offsets 0, 48, 112, 176 in the patch block = rows 0, 3, 7, 11; [5, 6, 6, 5] rows.
    assert stripe_rows(16, 4, 2) == ((0, 4), (3, 8), (7, 12), (11, 15))


def test_stripes_follow_the_derived_rule_on_other_grids():
    # micro CLIP (96 px / patch 8 = 12 rows): base 3 + 1 = 4 rows, middle 5, starts advance by rows - 2.
    assert stripe_rows(12, 4, 2) == ((0, 3), (2, 6), (5, 9), (8, 11))
    # No overlap: a plain partition.
    assert stripe_rows(16, 4, 0) == ((0, 3), (4, 7), (8, 11), (12, 15))
    # Two regions sharing 2 rows.
    assert stripe_rows(16, 2, 2) == ((0, 8), (7, 15))
    assert stripe_rows(16, 1, 2) == ((0, 15),)


def test_last_stripe_is_stretched_to_cover_the_grid():
    # The rule gives [6, 7, 6] rows from starts 0, 4, 9: ends at row 14 on a 16-row grid.
    stripes = stripe_rows(16, 3, 2)
    assert stripes[-1] == (9, 15)
    covered = set()
    for a, b in stripes:
        covered.update(range(a, b + 1))
    assert covered == set(range(16))


def test_degenerate_stripes_raise_naming_the_settings():
    with pytest.raises(GeometryError, match="div_num=4.*overlap_row=2"):
        stripe_rows(7, 4, 2)  # base 2 rows, overlap 2: stripes would not advance


# -- token layout (spec §3.2 step 5) -------------------------------------------------------------
def test_layout_vitl14_p50():
    lay = token_layout(50, 16, div_num=4, use_div=True)
    assert lay.length == 311
    assert lay.class_positions == (0, 11, 22, 33, 44)
    assert lay.prompt_spans == ((1, 11), (12, 22), (23, 33), (34, 44), (45, 55))
    assert lay.patch_start == 55
    assert lay.patch_index(0, 0) == 55 and lay.patch_index(15, 15) == 310
    assert lay.patch_index(3, 5) == 55 + 16 * 3 + 5
    assert lay.region_indices("cls") == (0, 11, 22, 33, 44)
    assert lay.region_indices("first_prompt") == (1, 11, 22, 33, 44)  # the official bug (§14.2)
    assert len(lay.prompt_positions()) == 50
    # every index appears exactly once
    assert sorted([*lay.class_positions, *lay.prompt_positions(), *range(55, 311)]) == list(range(311))


def test_layout_without_div_is_plain_vpt():
    lay = token_layout(50, 16, use_div=False)
    assert lay.length == 1 + 50 + 256 == 307
    assert lay.class_positions == (0,) and lay.part_positions == ()
    assert lay.prompt_spans == ((1, 51),)
    assert lay.region_indices("cls") == (0,)


def test_layout_other_sizes_and_no_prompts():
    lay = token_layout(10, 12, div_num=4)
    assert lay.prompts_per_group == 2 and lay.class_positions == (0, 3, 6, 9, 12)
    assert lay.length == 5 + 10 + 144
    empty = token_layout(0, 12, div_num=4)
    assert empty.class_positions == (0, 1, 2, 3, 4) and empty.patch_start == 5
    with pytest.raises(GeometryError):
        empty.region_indices("first_prompt")


def test_prompt_count_must_divide_into_groups():
    with pytest.raises(GeometryError, match="div_num \\+ 1 = 5"):
        token_layout(12, 16, div_num=4)


def test_describe_lists_every_block():
    names = [name for name, _, _ in token_layout(50, 16).describe()]
    assert names[:3] == ["CLS", "group-0 prompts", "part 1"] and names[-1] == "patches"


# -- mask (spec §4.2) ----------------------------------------------------------------------------
SPEC_TABLE = [  # query rows -> key ranges, spec §4.2
    {"queries": (0, 10), "keys": [(0, 310)]},
    {"queries": (11, 21), "keys": [(11, 21), (55, 134)]},
    {"queries": (22, 32), "keys": [(22, 32), (103, 198)]},
    {"queries": (33, 43), "keys": [(33, 43), (167, 262)]},
    {"queries": (44, 54), "keys": [(44, 54), (231, 310)]},
    {"queries": (55, 310), "keys": [(0, 310)]},
]


def test_mask_summary_equals_the_spec_table():
    mask = visual_mask(50, 16, div_num=4, overlap_row=2)
    assert mask.shape == (311, 311) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, float("-inf")}
    assert mask_summary(mask) == SPEC_TABLE
    # the same table from a boolean mask
    assert mask_summary(torch.isfinite(mask)) == SPEC_TABLE


def test_mask_is_asymmetric_patches_see_parts_but_parts_see_only_their_stripe():
    mask = visual_mask(50, 16)
    assert mask[100, 11] == 0  # a patch query sees part token 1
    assert mask[11, 0] == float("-inf")  # part 1 does not see CLS
    assert mask[11, 22] == float("-inf")  # nor part 2
    assert mask[11, 135] == float("-inf") and mask[11, 134] == 0  # stripe 1 ends at token 134


def test_stripe_token_spans_vitl14():
    lay = token_layout(50, 16)
    assert stripe_token_spans(lay, stripe_rows(16, 4, 2)) == [(55, 134), (103, 198), (167, 262), (231, 310)]


def test_mask_generalises_to_other_region_counts():
    # 2 regions, 12 prompts (3 groups of 4) on a 12x12 grid: stripes rows 0-6 and 5-11.
    mask = visual_mask(12, 12, div_num=2, overlap_row=2)
    lay = token_layout(12, 12, div_num=2)
    s1, s2 = stripe_token_spans(lay, stripe_rows(12, 2, 2))
    summary = mask_summary(mask)
    assert summary[1] == {"queries": (5, 9), "keys": [(5, 9), s1]}
    assert summary[2] == {"queries": (10, 14), "keys": [(10, 14), s2]}


def test_visual_mask_returns_a_copy_of_the_cached_mask():
    first = visual_mask(50, 16)
    first.fill_(0)
    assert mask_summary(visual_mask(50, 16)) == SPEC_TABLE


def test_format_mask_summary_mentions_the_stripes():
    text = format_mask_summary(SPEC_TABLE)
    assert "11-21" in text and "55-134" in text and "231-310" in text


def test_prompt_init_bound_matches_the_official_values():
    # spec §5: v = sqrt(6 / (3*14*14 + 1024)) = 0.0610; text prompts (width 768): 0.0665.
    assert prompt_init_bound(1024, 14) == pytest.approx(0.0610, abs=1e-4)
    assert prompt_init_bound(768, 14) == pytest.approx(0.0665, abs=1e-4)
    assert prompt_init_bound(768, 16) == pytest.approx(math.sqrt(6 / (768 + 768)))
