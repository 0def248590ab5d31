"""Reference mode: parkit's PromptPAR weights run through the *official computation structure*.

parkit computes PromptPAR's function with a few structural shortcuts (spec §3, §6, §12): the text
features are cached when they cannot change, the text sequence is cut after the last EOT token
(exact under the causal mask), the A per-attribute heads are one (A, W) einsum, attention goes
through `scaled_dot_product_attention` with a boolean mask, and checkpoints hold only the trained
tensors. The official code does none of that. `ReferencePromptPAR` wraps an
existing `PromptPAR` (sharing its modules and weights, so nothing large is copied) and computes the
same function the official way:

- the text encoder runs over all A sentences and all 77 context positions at every forward (no
  cache, no cut after the last EOT), sequence-first, with the additive causal mask (spec §3.3);
- the image encoder runs sequence-first (L, B, D) with the additive 0/-inf stripe mask (spec §4.2)
  and the classic attention maths: q k^T * scale + mask -> softmax -> @ v, the path
  `nn.MultiheadAttention` took before PyTorch fused it (or, with `attention="module"`, a literal
  call of CLIP's `nn.MultiheadAttention`, as the official code does);
- the global-local aggregation loops over the batch in Python (spec §3.4);
- the MM-former uses timm's explicit attention, and the heads are A separate `nn.Linear(W, 1)`
  evaluated in a Python loop (spec §3.5 step 6);
- `full_state_dict()` is the official checkpoint's content: the whole CLIP (every frozen weight)
  plus the classifier (spec §12, §14.15), for the checkpoint-size comparison.

The behaviour settings of the wrapped model (text-prompt placement, ln_post, region token, GL
aggregation, ...) are honoured, so outputs equal parkit's within float tolerance for any config.

It shares parkit's *weights and settings*, not its model code: the token layout, the stripes and
the stripe mask, the region rows, the global-local probabilities and aggregation, the MM-former
block (attention, MLP, activation, DropPath) and the per-attribute heads are computed here from
the config and the spec (§3-§5), and the sentences are tokenized again with CLIP's tokenizer. From
the wrapped model it reads only tensors (CLIP's modules, prompts, part tokens, temperature, BN
statistics, the stacked head weights) and a few numbers (config fields, each MM block's DropPath
rate). CLIP's own modules (`ln_*`, `attn` weights, `mlp`) are the `clip` package's, not parkit's.
The output type `PAROutput` is parkit's, so the benchmarks can use either model. A mistake in
parkit's geometry, similarity or fusion code therefore makes the two disagree
(`tests/test_reference_mode.py`).

The module exists for benchmarks and tests (`benchmarks/`, `tests/test_reference_mode.py`); it is
not a product path.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from parkit.model.promptpar import PAROutput, PromptPAR  # types only (output, and the model it wraps); no computation

ATTENTION_MODES = ("explicit", "module")

# CLIP's `convert_weights` (what the official loader applies on the GPU, spec §3.1) casts these to
# fp16: conv and linear weights/biases, the attention projections and the two projection matrices.
# Embeddings, LayerNorms, prompts and BN stay fp32.
_FP16_SUFFIXES = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
                  "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")
_FP16_NAMES = ("proj", "text_projection")


def classic_attention(x: torch.Tensor, attn: nn.MultiheadAttention,
                      mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Multi-head self-attention on a sequence-first batch with the pre-fusion maths.

    Args:
        x: (L, N, D) tokens.
        attn: a packed-projection `nn.MultiheadAttention` (CLIP's), whose weights are used.
        mask: (L, L) additive float mask (0 or -inf) or None.

    Returns:
        (L, N, D) attention output after `out_proj`.
    """
    length, n, width = x.shape
    heads = attn.num_heads
    d = width // heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # each (L, N, D)
    q = q.reshape(length, n * heads, d).transpose(0, 1) * d ** -0.5  # (N*H, L, d)
    k = k.reshape(length, n * heads, d).transpose(0, 1)
    v = v.reshape(length, n * heads, d).transpose(0, 1)
    if mask is not None:
        scores = torch.baddbmm(mask.to(q.dtype), q, k.transpose(1, 2))  # (N*H, L, L)
    else:
        scores = torch.bmm(q, k.transpose(1, 2))
    out = torch.bmm(scores.softmax(dim=-1), v)  # (N*H, L, d)
    out = out.transpose(0, 1).reshape(length, n, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def clip_block_classic(block: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor],
                       attention: str = "explicit") -> torch.Tensor:
    """One CLIP `ResidualAttentionBlock` on (L, N, D) with an additive mask, as the official code runs it."""
    h = block.ln_1(x)
    if attention == "explicit":
        a = classic_attention(h, block.attn, mask)
    else:
        a = block.attn(h, h, h, need_weights=False, attn_mask=None if mask is None else mask.to(h.dtype))[0]
    x = x + a
    return x + block.mlp(block.ln_2(x))


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """timm's stochastic depth: zero a sample's residual branch with probability `rate`, rescale the rest.

    One Bernoulli draw per sample, in the order timm makes it, so that the same seed drops the
    same samples as parkit's training forward.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    return x * x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep) / keep


def timm_block_classic(block: nn.Module, x: torch.Tensor, quick_gelu: bool, drop_rate: float,
                       training: bool) -> torch.Tensor:
    """One MM-former block (timm parameter names) with timm's explicit attention maths (spec §3.5).

    Only the block's parameters are used (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`,
    `mlp.fc2`); attention, activation and DropPath are computed here.

    Args:
        block: an MM-former block.
        x: (B, L, W) tokens.
        quick_gelu: CLIP's x * sigmoid(1.702 x) (blocks copied from the backbone) instead of timm's
            exact GELU.
        drop_rate: the block's stochastic-depth rate.
        training: apply DropPath.
    """
    b, length, width = x.shape
    heads = block.attn.num_heads
    d = width // heads
    h = block.norm1(x)
    qkv = F.linear(h, block.attn.qkv.weight, block.attn.qkv.bias)
    q, k, v = qkv.reshape(b, length, 3, heads, d).permute(2, 0, 3, 1, 4)  # each (B, H, L, d)
    weights = ((q @ k.transpose(-2, -1)) * d ** -0.5).softmax(dim=-1)  # (B, H, L, L)
    a = F.linear((weights @ v).transpose(1, 2).reshape(b, length, width), block.attn.proj.weight,
                 block.attn.proj.bias)
    x = x + _drop_path(a, drop_rate, training)
    h = F.linear(block.norm2(x), block.mlp.fc1.weight, block.mlp.fc1.bias)
    h = h * torch.sigmoid(1.702 * h) if quick_gelu else F.gelu(h)
    h = F.linear(h, block.mlp.fc2.weight, block.mlp.fc2.bias)
    return x + _drop_path(h, drop_rate, training)


def reference_stripes(grid: int, div_num: int, overlap_row: int) -> List[Tuple[int, int]]:
    """Inclusive patch-row ranges of the stripes, from the rule of spec §4.1 / §4.4.

    First and last stripe: base = grid // div_num + overlap_row // 2 rows; middle stripes base +
    overlap_row // 2; start_k = start_{k-1} + rows_{k-1} - overlap_row. The last stripe always runs
    to the last patch row (parkit's documented generalisation for grids the rule does not split
    exactly); a single region covers the whole grid. Gives rows 0-4, 3-8, 7-12, 11-15 for the
    official 16 / 4 / 2.
    """
    if div_num == 1:
        return [(0, grid - 1)]
    base = grid // div_num + overlap_row // 2
    rows = [base] + [base + overlap_row // 2] * (div_num - 2) + [base]
    starts = [0]
    for k in range(1, div_num):
        starts.append(starts[-1] + rows[k - 1] - overlap_row)
    stripes = [(start, min(start + n, grid) - 1) for start, n in zip(starts, rows)]
    stripes[-1] = (starts[-1], grid - 1)
    return stripes


def reference_layout(vis_prompt: int, div_num: int, use_div: bool) -> Tuple[List[int], int, int]:
    """Class-token rows, prompts per group and the first patch row of the prompted sequence (spec §3.2).

    The sequence is [CLS, group-0 prompts, part 1, group-1 prompts, ..., part D, group-D prompts,
    patches] with use_div, [CLS, P prompts, patches] without.
    """
    groups = div_num + 1 if use_div else 1
    per = vis_prompt // groups
    return [g * (per + 1) for g in range(groups)], per, groups * (per + 1)


def reference_visual_mask(vis_prompt: int, grid: int, div_num: int, overlap_row: int) -> torch.Tensor:
    """The additive (L, L) stripe mask of spec §4.2 (0 = may attend, -inf = may not), float32 on the CPU.

    CLS, the global prompts and the patches see everything; part token k and its prompts see their
    own group and the patches of stripe k only.
    """
    class_rows, per, patch_start = reference_layout(vis_prompt, div_num, True)
    length = patch_start + grid * grid
    mask = torch.zeros(length, length)
    for k, (first, last) in enumerate(reference_stripes(grid, div_num, overlap_row), start=1):
        group = slice(class_rows[k], class_rows[k] + 1 + per)
        allowed = torch.zeros(length, dtype=torch.bool)
        allowed[group] = True
        allowed[patch_start + first * grid: patch_start + (last + 1) * grid] = True
        mask[group] = torch.where(allowed, 0.0, float("-inf"))
    return mask


def _tokenize(sentences: List[str], context_length: int) -> torch.Tensor:
    """CLIP's own tokenizer (the official code's), not parkit's wrapper: (A, context_length) int64."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # noqa: PLC0415 (imported where used, like parkit.backbone does: a slow import)
    return clip.tokenize(sentences, context_length=context_length)


class ReferencePromptPAR(nn.Module):
    """A `PromptPAR` computed with the official code's structure (see the module docstring).

    The wrapped model's modules are shared (same tensors, same `requires_grad`); only the heads are
    copied, into A separate `nn.Linear(W, 1)`. Training the reference therefore changes the wrapped
    model's prompts too, but not its stacked heads.

    Args:
        model: a built `parkit.model.PromptPAR`.
        attention: "explicit" (q k^T + mask -> softmax -> @ v, default) or "module" (call CLIP's
            `nn.MultiheadAttention` with the additive mask, literally as the official code does;
            current PyTorch may route that call to a fused kernel).

    Raises:
        ValueError: unknown attention mode, or a model that is not a PromptPAR.
    """

    def __init__(self, model: nn.Module, attention: str = "explicit"):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if not isinstance(model, PromptPAR):
            raise ValueError(f"ReferencePromptPAR wraps a parkit PromptPAR (create_model('promptpar-...')), "
                             f"got {type(model).__name__}")
        self.attention = attention
        self.config = cfg = model.config
        self.dims = model.dims
        self._attributes = list(model.attributes)
        self._sentences = list(model.sentences)
        self.visual = model.visual
        self.text = model.text
        self.logit_scale = model.logit_scale
        self.gl = model.gl
        fusion = model.fusion
        self.num_attributes = len(self._sentences)
        # Geometry from the config and the spec (§3.2, §4), not from parkit's geometry module.
        self._class_rows, self._per_group, self._patch_start = reference_layout(
            cfg.vis_prompt, cfg.div_num, cfg.use_div)
        self._prompted_layers = min(cfg.vis_depth, self.dims.vision_layers) if cfg.vis_prompt else 0
        if cfg.use_div:
            first = 0 if cfg.global_token == "cls" else 1  # row 1: the official bug (spec §14.2)
            self._region_rows = [first] + self._class_rows[1:]
        else:
            self._region_rows = [0]
        self._text_prompts = cfg.text_prompt if cfg.use_textprompt else 0
        tokens = _tokenize(self._sentences, self.dims.context_length)
        self.register_buffer("tokens", tokens.to(self.logit_scale.device), persistent=False)
        # The classifier's parts, registered one by one (official names, spec §3.5).
        self.word_embed = fusion.word_embed
        self.visual_embed = fusion.visual_embed
        self.blocks = fusion.blocks
        self.token_mixer = fusion.token_mixer
        self.norm = fusion.norm
        self.bn = fusion.bn
        # Blocks copied from the CLIP backbone keep its QuickGELU (spec §3.5 / parkit's mm_init).
        self._quick_gelu = cfg.mm_init == "backbone_last"
        self._drop_rates = [float(b.drop_path1.rate) for b in self.blocks] if self.blocks is not None else []
        # A separate Linear(W, 1) per attribute (official `weight_layer.i`), copied from the rows of
        # parkit's stacked (A, W) head weight.
        weight, bias = fusion.heads.weight.detach(), fusion.heads.bias.detach()
        heads = nn.ModuleList()
        for w, b in zip(weight, bias):
            head = nn.Linear(w.shape[0], 1).to(w.device, w.dtype)
            with torch.no_grad():
                head.weight.copy_(w[None])
                head.bias.copy_(b[None])
            head.requires_grad_(fusion.heads.weight.requires_grad)
            heads.append(head)
        self.weight_layer = heads
        self.train(model.training)

    @property
    def attributes(self):
        return list(self._attributes)

    @property
    def sentences(self):
        return list(self._sentences)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def normalization(self) -> str:
        return self.config.normalization

    # -----------------------------------------------------------------------------------------
    def _visual_mask(self, device, dtype) -> Optional[torch.Tensor]:
        cfg = self.config
        if not cfg.use_vismask:
            return None
        # Rebuilt at every forward, like the official `build_visual_mask` call (spec §4).
        return reference_visual_mask(cfg.vis_prompt, self.dims.grid, cfg.div_num,
                                     cfg.overlap_row).to(device=device, dtype=dtype)

    def encode_image(self, images: torch.Tensor):
        """Visual tokens F_v (B, L, E) and region tokens R (B, K, E), sequence-first inside (spec §3.2)."""
        vis = self.visual
        x = vis.conv1(images.to(vis.conv1.weight.dtype))  # (B, D, g, g)
        b, width = x.shape[0], x.shape[1]
        x = x.reshape(b, width, -1).permute(0, 2, 1)  # (B, N, D)
        cls = vis.class_embedding.to(x.dtype) + torch.zeros(b, 1, width, dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + vis.positional_embedding.to(x.dtype)  # (B, 1 + N, D)
        k = 1
        if vis.part_class_embedding is not None:
            parts = vis.part_class_embedding.to(x.dtype).unsqueeze(0).expand(b, -1, -1)
            x = torch.cat([x[:, :1], parts, x[:, 1:]], dim=1)  # (B, K + N, D)
            k = 1 + parts.shape[1]
        x = vis.ln_pre(x).permute(1, 0, 2)  # (K + N, B, D) sequence-first, as the official code
        mask = self._visual_mask(x.device, x.dtype)
        start = self._patch_start
        per = self._per_group
        for layer, block in enumerate(vis.transformer.resblocks):
            if layer < self._prompted_layers:
                prompts = vis.prompt_deep[layer].to(x.dtype)  # (P, D)
                pieces = []
                for g in range(k):
                    cls_row = x[g:g + 1] if layer == 0 else x[g * (per + 1):g * (per + 1) + 1]
                    pieces.append(cls_row)
                    pieces.append(prompts[g * per:(g + 1) * per].unsqueeze(1).expand(-1, b, -1))
                pieces.append(x[k:] if layer == 0 else x[start:])
                x = torch.cat(pieces, dim=0)  # (L, B, D)
            x = clip_block_classic(block, x, mask, self.attention)
        x = x.permute(1, 0, 2)  # (B, L, D)
        if self.config.ln_post:
            x = vis.ln_post(x)
        tokens = x @ vis.proj.to(x.dtype)  # (B, L, E)
        return tokens, tokens[:, self._region_rows]

    def encode_text(self) -> torch.Tensor:
        """Text features T (A, E) float32, recomputed at every call (no cache, spec §3.3)."""
        txt = self.text
        n = self._text_prompts
        placement = self.config.text_prompt_placement
        ctx = self.dims.context_length
        dtype = txt.transformer.resblocks[0].attn.in_proj_weight.dtype
        x = txt.token_embedding(self.tokens).to(dtype) + txt.positional_embedding.to(dtype)  # (A, 77, W)
        length = ctx + n if placement == "official" else ctx
        causal = torch.full((length, length), float("-inf"), device=x.device, dtype=dtype).triu(1)
        x = x.permute(1, 0, 2)  # (77, A, W)
        for layer, block in enumerate(txt.transformer.resblocks):
            if n:
                prompts = txt.prompt_text_deep[layer].to(x.dtype)  # (n, A, W)
                if placement == "official":
                    x = torch.cat([x[:ctx], prompts], dim=0)  # appended after position 76 (inert, spec §6)
                elif layer == 0:
                    x = torch.cat([x[:1], prompts, x[1:ctx - n]], dim=0)
                else:
                    x = torch.cat([x[:1], prompts, x[1 + n:]], dim=0)
            x = clip_block_classic(block, x, causal, self.attention)
        x = txt.ln_final(x.permute(1, 0, 2))  # (A, L, W)
        shift = n if placement == "effective" else 0
        eot = self.tokens.argmax(dim=-1)  # EOT has the largest token id (spec §3.3)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot + shift]  # (A, W)
        return (pooled @ txt.text_projection.to(pooled.dtype)).float()

    def similarity(self, regions: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Global-local logits (B, A) with the official per-sample Python loop (spec §3.4).

        S = exp(logit_scale) * cos(R, T); p = softmax over attributes of S / tau (or a sigmoid
        per attribute with gl_softmax="sigmoid"); agg = max over the parts where it exceeds
        ag_threshold, else min; agg_bn((agg + p_global) / 2).
        """
        cfg = self.config
        r = regions.float() / regions.float().norm(dim=-1, keepdim=True)  # (B, K, E)
        t = text.float() / text.float().norm(dim=-1, keepdim=True)  # (A, E)
        sims = self.logit_scale.exp().float() * torch.einsum("bke,ae->bka", r, t)  # (B, K, A)
        scaled = sims / self.gl.temperature
        probs = scaled.softmax(dim=-1) if cfg.gl_softmax == "attributes" else scaled.sigmoid()
        g = probs[:, 0]
        if probs.shape[1] == 1:
            return self.gl.agg_bn(g)
        aggs = []
        for i in range(probs.shape[0]):  # the official loop over the batch
            local = probs[i, 1:]  # (D, A)
            high, low = local.max(dim=0).values, local.min(dim=0).values
            aggs.append(torch.where(high > cfg.ag_threshold, high, low))
        agg = aggs[-1:] * len(aggs) if cfg.gl_aggregation == "last_sample" else aggs
        return self.gl.agg_bn((torch.stack(agg) + g) / 2)

    def classify(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Fusion and per-attribute heads (spec §3.5): logits (B, A) float32."""
        b = visual.shape[0]
        a = self.num_attributes
        dtype = self.word_embed.weight.dtype
        t = self.word_embed(text.to(dtype)).expand(b, a, -1)  # (B, A, W)
        v = visual.to(dtype)
        if self.visual_embed is not None:
            v = self.visual_embed(v)
        x = torch.cat([t, v], dim=1)  # (B, A + L, W)
        if self.blocks is not None:
            for block, rate in zip(self.blocks, self._drop_rates):
                x = timm_block_classic(block, x, self._quick_gelu, rate, self.training)
        else:
            x = self.token_mixer(x.transpose(1, 2)).transpose(1, 2)  # (B, A, W)
        x = self.norm(x)
        logits = torch.cat([self.weight_layer[i](x[:, i]) for i in range(a)], dim=1)  # (B, A), one head each
        return self.bn(logits.float())

    def forward(self, images: torch.Tensor) -> PAROutput:
        """Logits of the wrapped model's function, computed the official way.

        Args:
            images: (B, 3, H, W) normalised images.

        Returns:
            PAROutput(logits (B, A), aux_logits (B, A) or None).
        """
        tokens, regions = self.encode_image(images)
        text = self.encode_text()
        aux = self.similarity(regions, text) if self.gl is not None else None
        return PAROutput(logits=self.classify(text, tokens), aux_logits=aux)

    # -----------------------------------------------------------------------------------------
    def trainable_parameters(self):
        """The parameters that receive gradients (the shared prompts etc. plus the copied heads)."""
        return [p for p in self.parameters() if p.requires_grad]

    def full_state_dict(self) -> Dict[str, torch.Tensor]:
        """Everything the official checkpoint stores: all CLIP tensors (frozen included) and the
        classifier (spec §12, §14.15). Values are the live tensors: do not modify them."""
        return self.state_dict(keep_vars=False)


def tensor_bytes(state: Dict[str, torch.Tensor], dtype_of=None) -> int:
    """Bytes of a state dict's tensors (each storage counted once), as `torch.save` would write them.

    Args:
        state: {name: tensor}; non-tensors are ignored. Works on meta tensors.
        dtype_of: optional callable name -> dtype to count a tensor in (e.g. fp16 for the weights
            the official GPU loader casts); None = the tensor's own dtype.

    Returns:
        Total payload bytes (pickle overhead of a few kB per file not included).
    """
    seen = set()
    total = 0
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        key = (t.data_ptr(), t.dtype, tuple(t.shape)) if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        dtype = dtype_of(name) if dtype_of is not None else t.dtype
        size = torch.empty((), dtype=dtype).element_size() if t.is_floating_point() else t.element_size()
        total += t.numel() * size
    return total


def official_gpu_dtype(name: str) -> torch.dtype:
    """The dtype the official code saves a CLIP tensor in after `convert_weights` on the GPU (spec §3.1)."""
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith(_FP16_SUFFIXES) or leaf in _FP16_NAMES:
        return torch.float16
    return torch.float32
