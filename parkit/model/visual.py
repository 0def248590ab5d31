"""The prompted visual encoder: a frozen CLIP ViT with part tokens, deep prompts and the stripe mask.

`PromptedVisualEncoder` takes over the modules of a `clip.model.CLIP` vision tower under their own
names (`conv1`, `class_embedding`, `positional_embedding`, `ln_pre`, `transformer.resblocks.N.*`,
`ln_post`, `proj`), so its state-dict keys are CLIP's, and adds

- `part_class_embedding` (div_num, width): the part tokens (spec §3.2 step 3);
- `prompt_deep` (vis_depth, P, width): deep visual prompts (spec §5). The official tensor is
  `visual.transformer.prompt_deep` of shape (vis_depth, P, 1, width): same values, one singleton
  axis more.

It runs its own layer loop over CLIP's blocks (same weights, same maths: pre-LN, QuickGELU MLP;
the block functions live in `parkit.model.clip_blocks`, shared with the text encoder) so that
attention can use `torch.nn.functional.scaled_dot_product_attention` with the stripe mask and, on
request, return the last layer's attention map. The sequence is batch-first (B, L, D).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from parkit.model.clip_blocks import clip_block_forward, clip_block_forward_discarding_prompts
from parkit.model.config import BackboneDims, PromptPARConfig
from parkit.model.geometry import (TokenLayout, prompt_init_bound, stripe_rows, token_layout,
                                   visual_mask)


@dataclass
class VisualOutput:
    """What the visual encoder returns.

    Attributes:
        tokens: (B, L, embed) every token after (optional) ln_post and `proj` (F_v, spec §3.2).
        regions: (B, 1 + div_num, embed) the global token then the part tokens (R, spec §3.2 step 7).
        attention: (B, L, L) last-layer attention averaged over heads, when requested.
    """

    tokens: torch.Tensor
    regions: torch.Tensor
    attention: Optional[torch.Tensor] = None


class PromptedVisualEncoder(nn.Module):
    """Frozen CLIP ViT + part tokens + deep visual prompts + stripe mask (spec §3.2, §4, §5).

    Args:
        clip_visual: the `visual` module of a ViT `clip.model.CLIP` (its submodules are reused).
        config: a resolved `PromptPARConfig` (vis_depth and image_size set).
        dims: the backbone's sizes.

    Attributes:
        layout: the `TokenLayout` of the prompted sequence.
        stripes: inclusive patch-row ranges of the stripes (empty without use_div).
        region_indices: rows read as region tokens (global first).
    """

    def __init__(self, clip_visual: nn.Module, config: PromptPARConfig, dims: BackboneDims):
        super().__init__()
        self.config = config
        self.dims = dims
        # CLIP's own modules and parameters, under CLIP's names (spec §3.1).
        self.conv1 = clip_visual.conv1
        self.class_embedding = clip_visual.class_embedding
        self.positional_embedding = clip_visual.positional_embedding
        self.ln_pre = clip_visual.ln_pre
        self.transformer = clip_visual.transformer
        self.ln_post = clip_visual.ln_post
        self.proj = clip_visual.proj

        width = dims.vision_width
        grid = dims.grid
        self.layout: TokenLayout = token_layout(config.vis_prompt, grid, grid, div_num=config.div_num,
                                                use_div=config.use_div)
        self.stripes = stripe_rows(grid, config.div_num, config.overlap_row) if config.use_div else ()
        self.region_indices = self.layout.region_indices(config.global_token)

        # New tensors are created on the device of the backbone (the meta device for counting).
        device = self.class_embedding.device
        if config.use_div:
            # N(0, 1) * width^-0.5, like CLIP's class embedding (spec §3.2 step 3).
            self.part_class_embedding = nn.Parameter(
                torch.randn(config.div_num, width, device=device) * width ** -0.5)
        else:
            self.register_parameter("part_class_embedding", None)
        if config.vis_prompt > 0:
            if config.vis_depth > dims.vision_layers:
                warnings.warn(
                    f"vis_depth={config.vis_depth} exceeds the backbone's {dims.vision_layers} layers: "
                    f"prompts of layers {dims.vision_layers}..{config.vis_depth - 1} are allocated but "
                    f"never used (the paper's ViT-B/16 parameter count, spec §7.4)", stacklevel=3)
            # VPT's Xavier-style init (spec §5). The official code hard-codes patch 14 (v = 0.0665 for
            # width 768 even on ViT-B/16); parkit uses the backbone's real patch size, which gives the
            # official value on ViT-L/14 and VPT's intended one elsewhere.
            bound = prompt_init_bound(width, dims.patch_size)
            self.prompt_deep = nn.Parameter(
                torch.empty(config.vis_depth, config.vis_prompt, width, device=device).uniform_(-bound, bound))
        else:
            self.register_parameter("prompt_deep", None)
        self._masks: Dict[Tuple[str, Optional[int]], torch.Tensor] = {}
        self._kept_masks: Dict[Tuple[str, Optional[int]], torch.Tensor] = {}
        # Layout positions of the tokens a prompted layer keeps (class tokens, then patches) and of
        # the prompts in the order of `prompt_deep`'s rows.
        self._kept_positions = list(self.layout.class_positions) + list(range(self.layout.patch_start,
                                                                             self.layout.length))
        self._prompt_positions = self.layout.prompt_positions()

    # -----------------------------------------------------------------------------------------
    @property
    def prompted_layers(self) -> int:
        """Number of layers that receive fresh prompts (min of vis_depth and the backbone depth)."""
        if self.prompt_deep is None:
            return 0
        return min(self.config.vis_depth, self.dims.vision_layers)

    def attention_mask(self, device: torch.device) -> Optional[torch.Tensor]:
        """The boolean stripe mask (L, L) on `device` (True = may attend), or None without use_vismask.

        Built from the additive mask of `parkit.model.geometry.visual_mask` once per device.
        """
        if not self.config.use_vismask:
            return None
        key = (device.type, device.index)
        if key not in self._masks:
            additive = visual_mask(self.config.vis_prompt, self.dims.grid, self.dims.grid,
                                   self.config.div_num, self.config.overlap_row)
            self._masks[key] = torch.isfinite(additive).to(device)
        return self._masks[key]

    def kept_attention_mask(self, device: torch.device) -> Optional[torch.Tensor]:
        """The stripe mask for `clip_block_forward_discarding_prompts`: rows are the kept tokens
        (class tokens, then patches), columns the kept tokens then the prompts. (M, M + P) bool."""
        full = self.attention_mask(device)
        if full is None:
            return None
        key = (device.type, device.index)
        if key not in self._kept_masks:
            rows = torch.tensor(self._kept_positions, device=device)
            cols = torch.tensor(self._kept_positions + self._prompt_positions, device=device)
            self._kept_masks[key] = full[rows][:, cols].contiguous()
        return self._kept_masks[key]

    def _interleave(self, class_tokens: torch.Tensor, prompts: Optional[torch.Tensor],
                    patches: torch.Tensor) -> torch.Tensor:
        """Assemble [class_0, prompts_0, class_1, prompts_1, ..., patches] (spec §3.2 step 5).

        Args:
            class_tokens: (B, K, D) CLS and part tokens.
            prompts: (P, D) this layer's prompts (shared by the batch), or None.
            patches: (B, N, D).

        Returns:
            (B, L, D).
        """
        if prompts is None:
            return torch.cat([class_tokens, patches], dim=1)
        b = class_tokens.shape[0]
        groups = prompts.to(class_tokens.dtype).view(class_tokens.shape[1], -1, prompts.shape[-1])  # (K, P/K, D)
        pieces = []
        for g in range(class_tokens.shape[1]):
            pieces.append(class_tokens[:, g:g + 1])
            pieces.append(groups[g].unsqueeze(0).expand(b, -1, -1))
        pieces.append(patches)
        return torch.cat(pieces, dim=1)

    def forward(self, images: torch.Tensor, return_attention: bool = False) -> VisualOutput:
        """Encode a batch of images.

        Args:
            images: (B, 3, H, W) normalised images, H = W = the backbone's resolution.
            return_attention: also return the last layer's head-averaged attention (B, L, L).

        Returns:
            A `VisualOutput` with tokens (B, L, embed) and regions (B, 1 + div_num, embed).
        """
        size = self.dims.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
            raise ValueError(
                f"expected images of shape (B, 3, {size}, {size}) for this backbone, got "
                f"{tuple(images.shape)}; resize/letterbox them to {size}x{size} (model.image_size)")
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        b, _, width = x.shape
        cls = self.class_embedding.to(x.dtype).expand(b, 1, width)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1 + N, D)
        class_tokens = x[:, :1]
        if self.part_class_embedding is not None:
            # Part tokens come after the positional embedding: they carry none (spec §3.2 step 3).
            parts = self.part_class_embedding.to(x.dtype).expand(b, -1, -1)  # (B, div_num, D)
            class_tokens = torch.cat([class_tokens, parts], dim=1)  # (B, K, D)
        class_tokens = self.ln_pre(class_tokens)
        patches = self.ln_pre(x[:, 1:])  # (B, N, D)

        mask = self.attention_mask(x.device)
        blocks = self.transformer.resblocks
        class_idx = list(self.layout.class_positions)
        start = self.layout.patch_start
        k = class_tokens.shape[1]
        attention = None
        # While the next layer overwrites the prompts, only the class tokens and patches are carried
        # (`kept`, (B, K + N, D)) and the prompts serve as keys and values; the full interleaved
        # sequence `x` is built at the first layer whose prompt outputs survive (the last
        # prompted layer) and run from there on.
        kept, x = torch.cat([class_tokens, patches], dim=1), None
        for layer, block in enumerate(blocks):
            prompts = self.prompt_deep[layer] if layer < self.prompted_layers else None  # (P, D)
            last = layer == len(blocks) - 1
            need_attention = return_attention and last
            if x is None:
                if prompts is not None and layer + 1 < self.prompted_layers and not need_attention:
                    kept = clip_block_forward_discarding_prompts(
                        block, kept, prompts.to(kept.dtype), self.kept_attention_mask(kept.device))
                    continue
                x = self._interleave(kept[:, :k], prompts, kept[:, k:])
            elif prompts is not None:
                # VPT-deep: overwrite the prompt slots with this layer's prompts (spec §5).
                x = self._interleave(x[:, class_idx], prompts, x[:, start:])
            x, probs = clip_block_forward(block, x, mask, need_attention=need_attention)
            if probs is not None:
                attention = probs
        if self.config.ln_post:
            x = self.ln_post(x)  # clean: CLIP's aligned space (spec §14.5); official skips it
        tokens = x @ self.proj.to(x.dtype)  # (B, L, embed)
        regions = tokens[:, list(self.region_indices)]  # (B, K, embed)
        return VisualOutput(tokens=tokens, regions=regions, attention=attention)
