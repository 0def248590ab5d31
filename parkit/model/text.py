"""The prompted text encoder: frozen CLIP text transformer with per-attribute deep text prompts.

`PromptedTextEncoder` reuses CLIP's text modules under CLIP's names (`token_embedding`,
`positional_embedding`, `transformer.resblocks.N.*`, `ln_final`, `text_projection`) and adds
`prompt_text_deep` (text layers, n, A, width), the official shape (spec §6): n prompt tokens per
layer and per attribute.

Two placements (spec §6, §14.1):

- "official": the prompts are appended at positions 77..77+n-1 under an extended causal mask.
  No real token can attend to them and the EOT token is pooled, so the text features are
  bit-identical to frozen CLIP's and the prompts get exactly zero gradient: they are inert.
- "effective" (parkit's default): the prompts are inserted right after SOT (positions 1..n), so
  every real token, EOT included, attends to them. The real tokens keep their own positional
  embeddings (prompts carry none, like the visual prompts); the sequence keeps 77 slots by
  dropping the last n padding slots, so a sentence must leave n free slots.

The features are cached whenever they cannot change (see `PromptedTextEncoder.forward`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from parkit.backbone import tokenize
from parkit.model.config import BackboneDims, PromptPARConfig
from parkit.model.geometry import prompt_init_bound
from parkit.model.clip_blocks import clip_block_forward

# The official code draws the text prompts from U(-v, v) with the patch-14 bound of the visual
# prompts (v = 0.0665 for width 768, spec §6); parkit keeps that constant.
TEXT_PROMPT_PATCH = 14


def tokenize_sentences(sentences: Sequence[str], context_length: int) -> torch.Tensor:
    """CLIP tokens of the attribute sentences on the CPU: (A, context_length) int64.

    Uses `parkit.backbone.tokenize`, which names any sentence that does not fit the context.
    """
    with torch.device("cpu"):  # even when the model itself is built on the meta device
        return tokenize(list(sentences), context_length=context_length)


class PromptedTextEncoder(nn.Module):
    """Frozen CLIP text transformer + deep text prompts + EOT pooling (spec §3.3, §6).

    Args:
        clip_model: a `clip.model.CLIP` (its text modules are reused).
        sentences: one sentence per attribute.
        config: a resolved `PromptPARConfig`.
        dims: the backbone's sizes.

    Raises:
        ValueError: a sentence is too long for the context (with "effective" prompts: for the
            context minus text_prompt slots).
    """

    def __init__(self, clip_model: nn.Module, sentences: Sequence[str], config: PromptPARConfig,
                 dims: BackboneDims):
        super().__init__()
        self.config = config
        self.dims = dims
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

        tokens = tokenize_sentences(sentences, dims.context_length)  # (A, 77)
        eot = tokens.argmax(dim=-1)  # EOT has the largest id (spec §3.3)
        self.num_prompts = config.text_prompt if config.use_textprompt else 0
        self.placement = config.text_prompt_placement
        if self.num_prompts and self.placement == "effective":
            free = dims.context_length - 1 - int(eot.max())
            if free < self.num_prompts:
                worst = int(eot.argmax())
                raise ValueError(
                    f"with text_prompt={self.num_prompts} prompts inserted after SOT, a sentence may "
                    f"use at most {dims.context_length - self.num_prompts} of the "
                    f"{dims.context_length} token slots; attribute {worst} "
                    f"({list(sentences)[worst]!r}) uses {int(eot.max()) + 1}. Shorten it, lower "
                    f"text_prompt, or use text_prompt_placement='official'")
        # Non-persistent buffers: they follow .to(device) but stay out of the state dict, since
        # they are derived from the sentences, which checkpoints store separately (spec §3.3).
        self.register_buffer("tokens", tokens.to(self.positional_embedding.device), persistent=False)
        self.register_buffer("eot_index", eot.to(self.positional_embedding.device), persistent=False)

        if self.num_prompts:
            bound = prompt_init_bound(dims.text_width, TEXT_PROMPT_PATCH)
            self.prompt_text_deep = nn.Parameter(torch.empty(
                dims.text_layers, self.num_prompts, len(tokens), dims.text_width,
                device=self.positional_embedding.device).uniform_(-bound, bound))  # (layers, n, A, W)
        else:
            self.register_parameter("prompt_text_deep", None)
        self._cache: Optional[torch.Tensor] = None
        self._cache_key = None

    # -----------------------------------------------------------------------------------------
    @property
    def num_attributes(self) -> int:
        return self.tokens.shape[0]

    def clear_cache(self) -> None:
        """Forget the cached text features."""
        self._cache, self._cache_key = None, None

    def train(self, mode: bool = True):
        if mode != self.training:  # a real train/eval switch invalidates the cache (contract);
            self.clear_cache()      # repeated eval() calls from explanations keep it
        return super().train(mode)

    def _can_cache(self) -> bool:
        if not self.config.text_cache:
            return False
        if self.num_prompts and self.placement == "official":
            return True  # provably inert prompts (spec §6): the features never depend on them
        trainable = any(p.requires_grad for p in self.parameters())
        return not (trainable and torch.is_grad_enabled())

    def _key(self):
        params = tuple((id(p), p._version, p.dtype, p.device) for p in self.parameters())
        autocast = (torch.is_autocast_enabled("cuda"), torch.is_autocast_enabled("cpu"))
        return params, autocast, self.training

    def forward(self) -> torch.Tensor:
        """Text features T of all attributes: (A, embed) float32.

        Cached when nothing that could change them is being trained: `text_cache` is on, and
        either no text-side parameter requires grad (or autograd is off) or the text prompts sit
        in the inert official position. The cache is keyed on the parameters' in-place version
        counters, device, dtype and autocast state, and cleared by train()/eval().
        """
        if self._can_cache():
            key = self._key()
            if self._cache is None or self._cache_key != key:
                with torch.no_grad():
                    self._cache = self.encode()
                self._cache_key = key
            return self._cache
        return self.encode()

    def encode(self) -> torch.Tensor:
        """Run the text transformer (no cache): (A, embed) float32."""
        n = self.num_prompts
        ctx = self.dims.context_length
        # The blocks' dtype (a half-precision CLIP keeps its embeddings fp32, spec §3.1).
        dtype = self.transformer.resblocks[0].attn.in_proj_weight.dtype
        x = self.token_embedding(self.tokens).to(dtype)  # (A, 77, W)
        x = x + self.positional_embedding.to(x.dtype)
        if self.placement == "official" and n:
            length = ctx + n  # keep the inert appended prompts: their zero gradient is a spec check
        else:
            # Under the causal mask no token after the last EOT can reach any pooled EOT token, so
            # the sequence is cut there: exact, and 5-7x less text compute for ~10-token sentences.
            length = int(self.eot_index.max()) + 1 + n
            x = x[:, :length - n]
            ctx = length
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # (L, L) True = visible
        for layer, block in enumerate(self.transformer.resblocks):
            if n:
                prompts = self.prompt_text_deep[layer].transpose(0, 1).to(x.dtype)  # (A, n, W)
                if self.placement == "official":
                    # Appended after position 76 (replaced in every layer): inert (spec §6).
                    x = torch.cat([x[:, :ctx], prompts], dim=1)
                elif layer == 0:
                    # After SOT; the sequence was cut after the last EOT, so no real token is lost.
                    x = torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1)
                else:
                    x = torch.cat([x[:, :1], prompts, x[:, 1 + n:]], dim=1)
            x, _ = clip_block_forward(block, x, causal)
        x = self.ln_final(x)
        shift = n if self.placement == "effective" else 0
        rows = torch.arange(x.shape[0], device=x.device)
        pooled = x[rows, self.eot_index + shift]  # (A, W) the EOT token
        return (pooled @ self.text_projection.to(pooled.dtype)).float()  # (A, embed)
