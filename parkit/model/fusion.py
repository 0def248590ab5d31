"""Vision-language fusion and the attribute heads (spec §3.5): the "MM-former" classifier.

    T (A, E) -> word_embed -> (B, A, W)  ┐
    F_v (B, L, E) -> [visual_embed] -----┴-> concat (B, A + L, W) -> mm blocks -> norm
        -> heads on the A text positions -> (B, A) -> bn -> logits

The MM-former blocks are timm-ViT style (pre-LN, fused qkv with bias, DropPath) and use timm's
parameter names (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`) so a timm
ViT-B/16 state dict (`jx_vit_base_p16_224`) loads directly. They can instead be copied from the
backbone's own last visual blocks ("backbone_last": CLIP's QuickGELU and eps 1e-5 kept) or drawn at
random. The A per-attribute Linear(W, 1) heads of the official code (`weight_layer.i`) are one
(A, W) weight and an (A,) bias here, applied with an einsum: the same function, one kernel.
Without `use_mm_former`, a Linear over the token axis maps the A + L tokens to A (spec §3.5, with
the part tokens counted: the fix of §14.11).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from parkit.model.config import (VIT_B16_DEPTH, BackboneDims, ConfigError, PromptPARConfig)

# timm's file name of the ImageNet ViT-B/16 whose last block is the official MM-former (spec §3.5).
VIT_B16_FILENAME = "jx_vit_base_p16_224-80ecf9dd.pth"
VIT_B16_URL = ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"
               + VIT_B16_FILENAME)


class MMWeightsUnavailable(FileNotFoundError):
    """The ViT-B/16 weights for the MM-former are not on this machine; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class QuickGELU(nn.Module):
    """CLIP's activation x * sigmoid(1.702 x) (used when the block comes from the CLIP backbone)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability `rate` (train mode).

    Active whenever the module is in train mode, even though the block's weights are frozen
    (spec §3.5 step 4: rate 0.1 at the official MM-former).
    """

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # (B, 1, 1)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class MMAttention(nn.Module):
    """Multi-head self-attention with timm's parameter names (`qkv`, `proj`)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ConfigError(f"MM-former width {width} is not divisible by {heads} heads")
        self.num_heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, need_attention: bool = False):
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        probs = None
        if need_attention:
            weights = ((q @ k.transpose(-2, -1)) * (width // self.num_heads) ** -0.5).softmax(-1)  # (B, H, L, L)
            out = weights @ v
            probs = weights.mean(1)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, d)
        return self.proj(out.transpose(1, 2).reshape(b, length, width)), probs


class MMMlp(nn.Module):
    """fc1 -> activation -> fc2 (timm names)."""

    def __init__(self, width: int, hidden: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = act
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MMBlock(nn.Module):
    """A pre-LN transformer block with timm ViT parameter names.

    Args:
        width: token width.
        heads: attention heads.
        eps: LayerNorm epsilon (1e-6 for timm ViT, 1e-5 for blocks copied from CLIP).
        quick_gelu: CLIP's QuickGELU instead of the exact GELU of timm's ViT.
        drop_path: stochastic-depth rate on both residual branches.
        mlp_ratio: hidden width / width.
    """

    def __init__(self, width: int, heads: int, eps: float = 1e-6, quick_gelu: bool = False,
                 drop_path: float = 0.0, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = MMAttention(width, heads)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MMMlp(width, int(width * mlp_ratio), QuickGELU() if quick_gelu else nn.GELU())
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, need_attention: bool = False):
        h, probs = self.attn(self.norm1(x), need_attention)
        x = x + self.drop_path1(h)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x, probs


class AttributeHeads(nn.Module):
    """A Linear(W, 1) head per attribute, vectorised: weight (A, W), bias (A).

    Equal to A separate `nn.Linear(W, 1)` heads, head i reading token i (spec §3.5 step 6), and
    initialised like them (U(-1/sqrt(W), 1/sqrt(W)) for weight and bias, PyTorch's default).
    """

    def __init__(self, num_attributes: int, width: int):
        super().__init__()
        bound = 1.0 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(num_attributes, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_attributes).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, A, W) one token per attribute -> (B, A) logits."""
        return torch.einsum("baw,aw->ba", x, self.weight.to(x.dtype)) + self.bias.to(x.dtype)

    @torch.no_grad()
    def load_linear_heads(self, heads: Sequence[nn.Linear]) -> None:
        """Copy A separate Linear(W, 1) heads (e.g. the official `weight_layer.i`) into this module."""
        if len(heads) != self.weight.shape[0]:
            raise ValueError(f"{len(heads)} heads for {self.weight.shape[0]} attributes")
        self.weight.copy_(torch.cat([h.weight for h in heads], dim=0))
        self.bias.copy_(torch.cat([h.bias for h in heads], dim=0))

    def to_linear_heads(self) -> nn.ModuleList:
        """The equivalent list of A `nn.Linear(W, 1)` heads (copies)."""
        out = nn.ModuleList()
        for w, b in zip(self.weight.detach(), self.bias.detach()):
            head = nn.Linear(w.shape[0], 1).to(w.device, w.dtype)
            with torch.no_grad():
                head.weight.copy_(w[None])
                head.bias.copy_(b[None])
            out.append(head)
        return out

    def extra_repr(self) -> str:
        return f"num_attributes={self.weight.shape[0]}, width={self.weight.shape[1]}"


# ---------------------------------------------------------------------------------------------
# MM-former initialisation
# ---------------------------------------------------------------------------------------------
def default_mm_weights_path() -> Path:
    """Where `mm_init="vit_b16_imagenet"` looks for the timm file.

    `$PARKIT_VIT_B16` (the file itself) if set, else `$PARKIT_CACHE` or `~/.cache/parkit`, joined with
    `jx_vit_base_p16_224-80ecf9dd.pth`.
    """
    if os.environ.get("PARKIT_VIT_B16"):
        return Path(os.environ["PARKIT_VIT_B16"]).expanduser()
    root = Path(os.environ.get("PARKIT_CACHE", "~/.cache/parkit")).expanduser()
    return root / VIT_B16_FILENAME


def read_vit_weights(path) -> dict:
    """Read a timm ViT state dict (a `torch.save` file, possibly wrapped in {"model"|"state_dict": ...}).

    Raises:
        MMWeightsUnavailable: the file does not exist (the message says how to get it).
        ValueError: the file is not a timm ViT state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MMWeightsUnavailable(
            f"MM-former weights not found at {path}. The official MM-former is the last block of timm's "
            f"ImageNet ViT-B/16: download {VIT_B16_URL} on a machine with internet access and put it at "
            f"{default_mm_weights_path()} (or set PARKIT_VIT_B16=/path/to/{VIT_B16_FILENAME}, or pass "
            f"mm_init='/path/to/file'). Without it use mm_init='backbone_last' (the CLIP backbone's own "
            f"last block) or mm_init='random'.")
    if path.suffix == ".npz":
        raise ValueError(f"{path}: JAX .npz checkpoints are not supported; use timm's PyTorch file "
                         f"{VIT_B16_FILENAME}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or "blocks.0.attn.qkv.weight" not in state:
        raise ValueError(
            f"{path} is not a timm ViT state dict (no 'blocks.0.attn.qkv.weight'); expected e.g. "
            f"{VIT_B16_FILENAME}")
    return dict(state)


def _vit_depth(state: Mapping) -> int:
    return len({k.split(".")[1] for k in state if k.startswith("blocks.")})


def _drop_rates(rate: float, source_depth: int, layers: int) -> List[float]:
    """Rates of the last `layers` blocks of a `source_depth`-deep stochastic-depth schedule.

    timm assigns linspace(0, rate, depth) over the whole ViT; the official MM-former is block 11
    of 12, hence exactly `rate` (spec §3.5 step 4).
    """
    depth = max(source_depth, layers)
    if depth == 1:
        return [rate]
    full = [rate * i / (depth - 1) for i in range(depth)]  # plain floats: safe under a meta-device build
    return full[depth - layers:]


def build_mm_blocks(config: PromptPARConfig, dims: BackboneDims, clip_visual: Optional[nn.Module] = None,
                    vit_state: Optional[Mapping] = None) -> Tuple[nn.ModuleList, nn.LayerNorm, str]:
    """The MM-former blocks and the final LayerNorm, initialised per `config.mm_init`.

    Args:
        config: resolved config (fusion_width set).
        dims: backbone sizes.
        clip_visual: the CLIP vision tower (for "backbone_last").
        vit_state: a timm ViT state dict (for "vit_b16_imagenet" or a path); None = random
            weights of that architecture (e.g. `pretrained=False`).

    Returns:
        (blocks, final norm, source) where source says where the weights came from:
        "vit" (loaded), "backbone" (copied from CLIP) or "random".
    """
    width, m = config.fusion_width, config.mm_layers
    if config.mm_init == "backbone_last":
        if clip_visual is None:
            raise ValueError("mm_init='backbone_last' needs the CLIP vision tower")
        sources = list(clip_visual.transformer.resblocks)[-m:]
        rates = _drop_rates(config.mm_drop_path, dims.vision_layers, m)
        blocks = nn.ModuleList(MMBlock(width, dims.vision_heads, eps=1e-5, quick_gelu=True, drop_path=r)
                               for r in rates)
        norm = nn.LayerNorm(width, eps=1e-5)
        with torch.no_grad():
            for block, src in zip(blocks, sources):
                _copy_clip_block(block, src)
            norm.weight.copy_(clip_visual.ln_post.weight)
            norm.bias.copy_(clip_visual.ln_post.bias)
        return blocks.to(clip_visual.proj.device), norm.to(clip_visual.proj.device), "backbone"

    heads = width // 64
    if vit_state is not None:
        depth = _vit_depth(vit_state)
        if m > depth:
            raise ConfigError(f"mm_layers={m} but the ViT file has only {depth} blocks")
        rates = _drop_rates(config.mm_drop_path, depth, m)
        blocks = nn.ModuleList(MMBlock(width, heads, eps=1e-6, drop_path=r) for r in rates)
        norm = nn.LayerNorm(width, eps=1e-6)
        first = depth - m
        for i, block in enumerate(blocks):
            prefix = f"blocks.{first + i}."
            sub = {k[len(prefix):]: v for k, v in vit_state.items() if k.startswith(prefix)}
            _load_strict(block, sub, f"ViT block {first + i}")
        _load_strict(norm, {k[5:]: v for k, v in vit_state.items() if k.startswith("norm.")}, "ViT final norm")
        return blocks, norm, "vit"

    rates = _drop_rates(config.mm_drop_path, max(VIT_B16_DEPTH, m), m)
    blocks = nn.ModuleList(MMBlock(width, heads, eps=1e-6, drop_path=r) for r in rates)
    for block in blocks:  # timm's ViT init: truncated normal(0.02) weights, zero biases
        for mod in block.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
    return blocks, nn.LayerNorm(width, eps=1e-6), "random"


def _load_strict(module: nn.Module, state: Mapping, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"cannot load the {what} into the MM-former: "
                         f"{str(exc).splitlines()[0]} ... (is it a ViT-B/16 state dict?)") from None


@torch.no_grad()
def _copy_clip_block(block: MMBlock, src: nn.Module) -> None:
    """CLIP ResidualAttentionBlock -> MMBlock: ln_1/ln_2 -> norm1/norm2, in_proj -> qkv,
    out_proj -> attn.proj, c_fc/c_proj -> mlp.fc1/fc2 (identical maths with QuickGELU, eps 1e-5)."""
    pairs = [
        (block.norm1.weight, src.ln_1.weight), (block.norm1.bias, src.ln_1.bias),
        (block.attn.qkv.weight, src.attn.in_proj_weight), (block.attn.qkv.bias, src.attn.in_proj_bias),
        (block.attn.proj.weight, src.attn.out_proj.weight), (block.attn.proj.bias, src.attn.out_proj.bias),
        (block.norm2.weight, src.ln_2.weight), (block.norm2.bias, src.ln_2.bias),
        (block.mlp.fc1.weight, src.mlp.c_fc.weight), (block.mlp.fc1.bias, src.mlp.c_fc.bias),
        (block.mlp.fc2.weight, src.mlp.c_proj.weight), (block.mlp.fc2.bias, src.mlp.c_proj.bias),
    ]
    for dst, value in pairs:
        if dst.device.type == "meta" or value.device.type == "meta":
            continue  # shapes-only build (parameter counting)
        dst.copy_(value.float())


# ---------------------------------------------------------------------------------------------
# The fusion classifier
# ---------------------------------------------------------------------------------------------
class FusionHead(nn.Module):
    """word_embed / visual_embed -> MM-former (or token-axis Linear) -> norm -> heads -> bn.

    Parameter names follow the official `TransformerClassifier` (word_embed, visual_embed, blocks.i,
    norm, bn) except the heads (`heads.weight` (A, W) = the stacked `weight_layer.i.weight`).

    Args:
        config: resolved config.
        dims: backbone sizes.
        num_attributes: A.
        num_visual_tokens: L, visual tokens per image (311 for ViT-L/14 with P=50).
        blocks, norm: from `build_mm_blocks` (ignored without use_mm_former).
    """

    def __init__(self, config: PromptPARConfig, dims: BackboneDims, num_attributes: int,
                 num_visual_tokens: int, blocks: Optional[nn.ModuleList] = None,
                 norm: Optional[nn.LayerNorm] = None):
        super().__init__()
        width = config.fusion_width
        self.num_attributes = num_attributes
        self.word_embed = nn.Linear(dims.embed_dim, width)  # PyTorch default init (spec §3.5 step 1)
        self.visual_embed = nn.Linear(dims.embed_dim, width) if config.visual_embed else None
        if config.use_mm_former:
            if blocks is None or norm is None:
                raise ValueError("use_mm_former=True needs the MM-former blocks and norm")
            self.blocks = blocks
            self.token_mixer = None
            self.norm = norm
        else:
            self.blocks = None
            # Linear over the token axis: (A + L) tokens -> A tokens; L counts the part tokens (§14.11).
            self.token_mixer = nn.Linear(num_attributes + num_visual_tokens, num_attributes)
            self.norm = nn.LayerNorm(width, eps=1e-6)
        self.heads = AttributeHeads(num_attributes, width)
        self.bn = nn.BatchNorm1d(num_attributes)

    def forward(self, text: torch.Tensor, visual: torch.Tensor, return_attention: bool = False):
        """Fuse and classify.

        Args:
            text: (A, E) text features.
            visual: (B, L, E) visual tokens.
            return_attention: also return the last MM-former block's attention (B, A+L, A+L).

        Returns:
            logits (B, A) float32, and the attention (or None) when requested.
        """
        dtype = self.word_embed.weight.dtype
        b = visual.shape[0]
        t = self.word_embed(text.to(dtype))  # (A, W)
        v = visual.to(dtype)
        if self.visual_embed is not None:
            v = self.visual_embed(v)  # (B, L, W)
        x = torch.cat([t.unsqueeze(0).expand(b, -1, -1), v], dim=1)  # (B, A + L, W), no pos. embedding (§14.23)
        probs = None
        if self.blocks is not None:
            for i, block in enumerate(self.blocks):
                x, p = block(x, need_attention=return_attention and i == len(self.blocks) - 1)
                probs = p if p is not None else probs
        else:
            x = self.token_mixer(x.transpose(1, 2)).transpose(1, 2)  # (B, A, W)
        x = self.norm(x)
        logits = self.heads(x[:, :self.num_attributes])  # (B, A)
        logits = self.bn(logits.float())
        return (logits, probs) if return_attention else logits
