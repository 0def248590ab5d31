"""CLIP residual attention blocks run batch-first through fused attention (shared by both towers).

The prompted visual encoder (`parkit.model.visual`) and the prompted text encoder
(`parkit.model.text`) both run their own layer loop over a frozen `clip.model.CLIP`'s
`ResidualAttentionBlock`s: same weights and maths as the block's own forward (pre-LN, QuickGELU
MLP), but batch-first and through `torch.nn.functional.scaled_dot_product_attention`, which takes
a boolean mask directly (the stripe mask of spec §4.2, the causal mask of spec §3.3).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def clip_block_forward(block: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                       need_attention: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One `clip.model.ResidualAttentionBlock` on a batch-first sequence, with SDPA.

    Same weights and maths as the block's own forward (x + attn(ln_1(x)); x + mlp(ln_2(x))), but
    batch-first and through `scaled_dot_product_attention`, which takes the boolean mask directly.

    Args:
        block: a CLIP residual attention block (`attn` is an nn.MultiheadAttention with a packed
            in-projection).
        x: (B, L, D) tokens.
        mask: (L, L) bool, True = the query (row) may attend to the key (column); None = full.
        need_attention: also return the attention probabilities averaged over heads.

    Returns:
        (x (B, L, D), attention (B, L, L) or None).
    """
    attn = block.attn
    b, length, width = x.shape
    heads = attn.num_heads
    h = block.ln_1(x)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (B, L, 3D)
    q, k, v = qkv.view(b, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)  # each (B, H, L, d)
    probs = None
    if need_attention:
        scores = (q @ k.transpose(-2, -1)) * (width // heads) ** -0.5  # (B, H, L, L)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        out = weights @ v
        probs = weights.mean(dim=1)  # (B, L, L)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, d)
    out = out.transpose(1, 2).reshape(b, length, width)
    x = x + attn.out_proj(out)
    x = x + block.mlp(block.ln_2(x))
    return x, probs


def clip_block_forward_discarding_prompts(block: nn.Module, x: torch.Tensor, prompts: torch.Tensor,
                                          mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One CLIP block in which the prompt tokens only serve as keys and values.

    In VPT-deep the next layer overwrites every prompt slot with its own prompts (spec §5), so a
    prompt token's query, attention output and MLP are computed only to be thrown away. This
    block skips them: the prompts enter attention as keys and values, and since they are shared
    by the whole batch, their LayerNorm and key/value projections are computed once, not once
    per image. The outputs of the other tokens are the same function as `clip_block_forward` on
    the interleaved sequence (attention does not depend on the order of its keys once the mask
    columns follow them), equal up to float rounding.

    Args:
        block: a CLIP residual attention block.
        x: (B, M, D) the tokens that are kept (class and part tokens, then the patches).
        prompts: (P, D) this layer's prompts.
        mask: (M, M + P) bool, True = may attend; columns are x's tokens then the prompts.
            None = full attention.

    Returns:
        (B, M, D): the kept tokens after the block.
    """
    attn = block.attn
    b, length, width = x.shape
    heads, head_dim = attn.num_heads, width // attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, M, 3D)
    q, k, v = qkv.view(b, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # each (B, H, M, d)
    kv_prompts = F.linear(block.ln_1(prompts), attn.in_proj_weight[width:], attn.in_proj_bias[width:])
    k_p, v_p = kv_prompts.view(-1, 2, heads, head_dim).permute(1, 2, 0, 3)  # each (H, P, d)
    k = torch.cat([k, k_p.unsqueeze(0).expand(b, -1, -1, -1)], dim=2)  # (B, H, M + P, d)
    v = torch.cat([v, v_p.unsqueeze(0).expand(b, -1, -1, -1)], dim=2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, M, d)
    x = x + attn.out_proj(out.transpose(1, 2).reshape(b, length, width))
    return x + block.mlp(block.ln_2(x))
