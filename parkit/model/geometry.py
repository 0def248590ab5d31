"""Region geometry of the prompted ViT: stripes, token layout, the stripe attention mask.

Pure functions of integers (grid size, prompt count, region count): no module state, no weights.
They generalise the official code, which hard-codes a 16x16 grid, 4 regions and 2 overlapping rows
(spec §4.4), with the derived rule of spec §4.1, and reproduce it exactly for those values:

    ViT-L/14 (G=16), P=50, div_num=4, overlap_row=2
    stripes rows 0-4, 3-8, 7-12, 11-15; sequence 311 tokens; part tokens at 11, 22, 33, 44.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch


class GeometryError(ValueError):
    """Stripes or a token layout that cannot be built; the message names the setting to change."""


# ---------------------------------------------------------------------------------------------
# Stripes (spec §4.1)
# ---------------------------------------------------------------------------------------------
def stripe_rows(grid_rows: int, div_num: int, overlap_row: int) -> Tuple[Tuple[int, int], ...]:
    """Patch rows covered by each horizontal stripe, as inclusive (first, last) pairs.

    The derived rule of spec §4.1: base = G // div_num + overlap_row // 2 rows for the first and
    last stripe, base + overlap_row // 2 for the middle ones, and
    start_k = start_{k-1} + rows_{k-1} - overlap_row. When the rule does not end exactly on the
    last grid row (e.g. G=16, div_num=3) the last stripe is stretched or cut to end there, so the
    stripes always cover the whole image.

    Args:
        grid_rows: patch rows of the image, G (16 for ViT-L/14 at 224 px).
        div_num: number of stripes.
        overlap_row: rows shared by adjacent stripes.

    Returns:
        div_num pairs (first_row, last_row), e.g. ((0, 4), (3, 8), (7, 12), (11, 15)) for (16, 4, 2).

    Raises:
        GeometryError: the rule yields an empty stripe or a stripe that does not advance (grid too
            small for that many regions and that much overlap).
    """
    if grid_rows < 1 or div_num < 1 or overlap_row < 0:
        raise GeometryError(
            f"stripe_rows needs grid_rows >= 1, div_num >= 1, overlap_row >= 0; got "
            f"{grid_rows}, {div_num}, {overlap_row}")
    if div_num == 1:
        return ((0, grid_rows - 1),)
    base = grid_rows // div_num + overlap_row // 2
    rows = [base] + [base + overlap_row // 2] * (div_num - 2) + [base]
    starts = [0]
    for k in range(1, div_num):
        starts.append(starts[-1] + rows[k - 1] - overlap_row)
    problem = None
    if base < 1:
        problem = "stripes would be empty"
    elif any(b <= a for a, b in zip(starts, starts[1:])):
        problem = f"stripe starts {starts} do not advance (overlap_row >= stripe height)"
    elif starts[-1] > grid_rows - 1:
        problem = f"the last stripe would start at row {starts[-1]}, beyond the grid"
    if problem:
        raise GeometryError(
            f"cannot split a {grid_rows}-row patch grid into div_num={div_num} stripes with "
            f"overlap_row={overlap_row}: {problem}. Use fewer regions (div_num) or less overlap "
            f"(overlap_row), or a backbone with a finer grid.")
    stripes = [(s, min(s + r, grid_rows) - 1) for s, r in zip(starts, rows)]
    stripes[-1] = (starts[-1], grid_rows - 1)  # cover down to the last row (spec §4.1, generalised)
    return tuple(stripes)


# ---------------------------------------------------------------------------------------------
# Token layout (spec §3.2 step 5)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLayout:
    """Where every token sits in the prompted visual sequence (batch-first index along L).

    Layout: [CLS, group-0 prompts, part 1, group-1 prompts, ..., part D, group-D prompts, patches].
    Without use_div: [CLS, P prompts, patches] (plain VPT-deep, spec §5).

    Attributes:
        num_prompts: P, visual prompts per layer.
        num_parts: D, part class tokens (0 without use_div).
        grid_rows, grid_cols: patch grid.
        class_positions: indices of CLS and the part tokens, (D + 1,).
        prompt_spans: [start, stop) of each group's prompts, one per class token.
        patch_start: index of the first patch; patch (r, c) is at patch_start + r * grid_cols + c.
        length: total sequence length.
    """

    num_prompts: int
    num_parts: int
    grid_rows: int
    grid_cols: int
    class_positions: Tuple[int, ...]
    prompt_spans: Tuple[Tuple[int, int], ...]
    patch_start: int
    length: int

    @property
    def prompts_per_group(self) -> int:
        """Prompts after each class token."""
        return self.num_prompts // len(self.class_positions)

    @property
    def part_positions(self) -> Tuple[int, ...]:
        """Indices of the part tokens (empty without use_div)."""
        return self.class_positions[1:]

    @property
    def num_patches(self) -> int:
        return self.grid_rows * self.grid_cols

    def prompt_positions(self) -> List[int]:
        """Indices of all prompt tokens, group by group."""
        return [i for a, b in self.prompt_spans for i in range(a, b)]

    def patch_index(self, row: int, col: int) -> int:
        """Sequence index of patch (row, col)."""
        if not (0 <= row < self.grid_rows and 0 <= col < self.grid_cols):
            raise IndexError(f"patch ({row}, {col}) outside the {self.grid_rows}x{self.grid_cols} grid")
        return self.patch_start + row * self.grid_cols + col

    def region_indices(self, global_token: str = "cls") -> Tuple[int, ...]:
        """Rows read by the global-local branch: the global token then the part tokens.

        Args:
            global_token: "cls" (row 0, clean) or "first_prompt" (row 1, the official bug of
                spec §14.2; needs at least one prompt per group).
        """
        if global_token == "cls":
            first = 0
        elif global_token == "first_prompt":
            if self.prompts_per_group == 0:
                raise GeometryError("global_token='first_prompt' needs at least one prompt per group")
            first = self.prompt_spans[0][0]
        else:
            raise GeometryError(f"global_token must be 'cls' or 'first_prompt', got {global_token!r}")
        return (first, *self.part_positions)

    def describe(self) -> List[Tuple[str, int, int]]:
        """(name, first, last) inclusive index ranges of every block of the sequence."""
        rows = []
        for g, (cls_pos, (a, b)) in enumerate(zip(self.class_positions, self.prompt_spans)):
            rows.append(("CLS" if g == 0 else f"part {g}", cls_pos, cls_pos))
            if b > a:
                rows.append((f"group-{g} prompts", a, b - 1))
        rows.append(("patches", self.patch_start, self.length - 1))
        return rows


def token_layout(num_prompts: int, grid_rows: int, grid_cols: Optional[int] = None,
                 div_num: int = 4, use_div: bool = True) -> TokenLayout:
    """The token layout for P prompts, a patch grid and (optionally) div_num part tokens.

    Args:
        num_prompts: P, visual prompts per layer (0 allowed).
        grid_rows: patch rows.
        grid_cols: patch columns (default: square grid).
        div_num: number of part tokens with use_div.
        use_div: insert part tokens and split the prompts into div_num + 1 groups.

    Returns:
        A `TokenLayout`; for (50, 16, div_num=4) its length is 311 and its part tokens sit at
        11, 22, 33, 44.

    Raises:
        GeometryError: with use_div, P is not divisible by div_num + 1 (spec §4.4).
    """
    grid_cols = grid_rows if grid_cols is None else grid_cols
    if num_prompts < 0 or grid_rows < 1 or grid_cols < 1:
        raise GeometryError(f"bad layout sizes: P={num_prompts}, grid {grid_rows}x{grid_cols}")
    groups = div_num + 1 if use_div else 1
    if num_prompts % groups:
        raise GeometryError(
            f"vis_prompt={num_prompts} is not divisible by div_num + 1 = {groups}: with use_div the "
            f"prompts are split evenly after the CLS and the {div_num} part tokens (spec §5)")
    per_group = num_prompts // groups
    class_positions, spans = [], []
    pos = 0
    for _ in range(groups):
        class_positions.append(pos)
        spans.append((pos + 1, pos + 1 + per_group))
        pos += 1 + per_group
    return TokenLayout(
        num_prompts=num_prompts, num_parts=groups - 1, grid_rows=grid_rows, grid_cols=grid_cols,
        class_positions=tuple(class_positions), prompt_spans=tuple(spans), patch_start=pos,
        length=pos + grid_rows * grid_cols)


# ---------------------------------------------------------------------------------------------
# Stripe attention mask (spec §4.2)
# ---------------------------------------------------------------------------------------------
def stripe_token_spans(layout: TokenLayout, stripes: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Inclusive sequence-index span of the patches of each stripe (e.g. 55-134 for stripe 1 of L/14)."""
    return [(layout.patch_index(a, 0), layout.patch_index(b, layout.grid_cols - 1)) for a, b in stripes]


@functools.lru_cache(maxsize=32)
def _visual_mask_cached(num_prompts: int, grid_rows: int, grid_cols: int, div_num: int,
                        overlap_row: int) -> torch.Tensor:
    layout = token_layout(num_prompts, grid_rows, grid_cols, div_num=div_num, use_div=True)
    stripes = stripe_rows(grid_rows, div_num, overlap_row)
    allowed = torch.ones(layout.length, layout.length, dtype=torch.bool, device="cpu")  # (L, L) query x key
    for part, (first, last) in zip(range(1, div_num + 1), stripe_token_spans(layout, stripes)):
        q0 = layout.class_positions[part]
        q1 = layout.prompt_spans[part][1]  # part token + its prompts: rows [q0, q1)
        allowed[q0:q1] = False
        allowed[q0:q1, q0:q1] = True          # its own group
        allowed[q0:q1, first:last + 1] = True  # its own stripe of patches
    mask = torch.zeros(layout.length, layout.length, dtype=torch.float32, device="cpu")
    return mask.masked_fill_(~allowed, float("-inf"))


def visual_mask(num_prompts: int, grid_rows: int, grid_cols: Optional[int] = None, div_num: int = 4,
                overlap_row: int = 2) -> torch.Tensor:
    """The additive stripe mask of spec §4.2: (L, L) float32 on the CPU, 0 = may attend, -inf = not.

    Rows are queries, columns keys. CLS, global prompts and patches attend to everything; part
    token k and its prompts attend only to their own group and to the patches of stripe k. The
    same mask serves every layer and every sample; it is built once per geometry (cached) and a
    copy is returned.

    Args:
        num_prompts: P.
        grid_rows, grid_cols: patch grid (square by default).
        div_num: number of part tokens / stripes.
        overlap_row: rows shared by adjacent stripes.

    Returns:
        Tensor (L, L), L = 1 + div_num + P + grid_rows * grid_cols.
    """
    grid_cols = grid_rows if grid_cols is None else grid_cols
    return _visual_mask_cached(num_prompts, grid_rows, grid_cols, div_num, overlap_row).clone()


def _ranges(indices: Sequence[int]) -> List[Tuple[int, int]]:
    """Consecutive runs of sorted integers as inclusive (first, last) pairs."""
    out: List[Tuple[int, int]] = []
    for i in indices:
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def mask_summary(mask: torch.Tensor) -> List[dict]:
    """Group the query rows of an attention mask by the keys they may attend to.

    Args:
        mask: (L, L) additive (0 / -inf) or boolean (True = may attend) mask.

    Returns:
        One dict per run of consecutive query rows with the same allowed keys:
        {"queries": (first, last), "keys": [(first, last), ...]}, all ranges inclusive. For
        ViT-L/14 with P=50 this is the table of spec §4.2, e.g.
        {"queries": (11, 21), "keys": [(11, 21), (55, 134)]}.
    """
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask_summary expects a square (L, L) mask, got shape {tuple(mask.shape)}")
    allowed = mask if mask.dtype == torch.bool else torch.isfinite(mask)
    allowed = allowed.cpu()
    rows: List[dict] = []
    previous = None
    for q in range(allowed.shape[0]):
        keys = tuple(_ranges(torch.nonzero(allowed[q]).flatten().tolist()))
        if rows and keys == previous:
            rows[-1]["queries"] = (rows[-1]["queries"][0], q)
        else:
            rows.append({"queries": (q, q), "keys": list(keys)})
        previous = keys
    return rows


def format_mask_summary(summary: List[dict]) -> str:
    """A plain-text table of `mask_summary` output (for notebooks and error messages)."""
    lines = ["query rows  | may attend to"]
    for row in summary:
        q0, q1 = row["queries"]
        keys = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in row["keys"])
        lines.append(f"{q0:>4}-{q1:<6} | {keys}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Prompt initialisation (spec §5)
# ---------------------------------------------------------------------------------------------
def prompt_init_bound(width: int, patch_size: int = 14) -> float:
    """VPT's Xavier-style bound v = sqrt(6 / (3 * patch^2 + width)); prompts are drawn from U(-v, v).

    The official code hard-codes patch 14 for every backbone and for the text prompts (spec §5, §6):
    v = 0.0610 for width 1024 and 0.0665 for width 768.
    """
    return math.sqrt(6.0 / (3 * patch_size * patch_size + width))
