"""An independent, functional re-statement of the PromptPAR forward pass (tests only).

This file exists so that parkit's model can be proved to compute PromptPAR's logits, both with
the official code's behaviour (`load_official_checkpoint`) and with parkit's clean defaults. It is
written directly from the method reference (spec §3-§6, §14) as plain torch functions over the two
official state dicts, with no `nn.Module` and nothing imported from `parkit`: a mistake in
parkit's modules cannot hide behind the same mistake here.

What it computes (spec §3), with the four settings in which the official code and the clean
behaviour differ chosen by a `Behaviour` (`OFFICIAL` or `CLEAN`, spec §14):

- image branch (spec §3.2): patch conv, CLS, positional embedding, part tokens inserted *after*
  the positional embedding, `ln_pre`, deep prompts inserted at layer 0 (one group after each class
  token) and overwritten at layers 1..vis_depth-1, the additive stripe mask in every layer (spec
  §4), CLIP residual blocks with QuickGELU, then `proj` on every token;
  - stripes: the official hard-coded ones (16x16 grid, 4 regions, spec §4.1) or the derived rule
    of spec §4.4 (start_k = start_{k-1} + rows_{k-1} - overlap_row, counts from div_num);
  - `ln_post` before `proj`: skipped by the official code (§14.5), applied by the clean one;
- region tokens: the global row then the part tokens at k(1+m). The global row is row 1, the
  first *global prompt*, in the official code (§14.2) and row 0, the CLS, in the clean one;
- text branch (spec §3.3, §6): CLIP text transformer, EOT pooling, `text_projection`, with the
  deep text prompts (layers, n, A, width) placed either
  - "appended" (official): after position 76 under the causal mask, hence inert; or
  - "after_sot" (clean, spec §6 (b) / §14.1 leave the exact placement open; this is the
    placement parkit documents for `text_prompt_placement="effective"`): the n prompts of layer
    0 are inserted at positions 1..n right after SOT and carry no positional embedding; the real
    tokens keep their own positional embeddings and move n places right; the sequence keeps the
    context length by dropping its last n (padding) slots; every later layer overwrites
    positions 1..n with its own prompts; the EOT token is pooled at its shifted position;
- global-local branch (spec §3.4): cosine x exp(logit_scale), softmax over attributes with
  temperature, max/min aggregation over the part regions with a threshold, then `agg_bn` in eval
  mode. The official code keeps only the **last sample** of the batch's aggregation and adds it to
  every sample (§14.3); the clean one aggregates each sample separately;
- fusion (spec §3.5): `word_embed`, `vis_embed`/`visual_embed`, concatenation [text; visual],
  timm ViT blocks (exact GELU, LayerNorm eps 1e-6, qkv bias), final norm, one Linear(width, 1)
  per attribute, `bn` in eval mode.

Inputs are normalised images (the 0.5/0.5 normalisation is preprocessing, spec §11.3) and CLIP
token ids; everything runs in fp32 (the official fp16 casts are left out on purpose: the test
compares fp32 computations).

It also describes the official state-dict layout (`official_layout`) and fills it with seeded
random values (`seeded_official_state`), so a test can write an official-style checkpoint for a
tiny configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

Layout = List[Tuple[str, Tuple[int, ...], torch.dtype]]


# ---------------------------------------------------------------------------------------------
# Layout of the official state dicts (spec §2, §5, §6, §7.3; shared/spec/official_layout_*.json)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficialDims:
    """Every size that shapes the official state dicts.

    The defaults are the official ViT-L/14 model for PETA (35 attributes) with every switch on.
    """

    attributes: int = 35
    embed_dim: int = 768            # CLIP joint embedding (visual proj / text_projection output)
    vision_width: int = 1024
    vision_layers: int = 24
    patch_size: int = 14
    grid: int = 16                  # patches per side (image side = grid * patch_size)
    text_width: int = 768
    text_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    vis_prompt: int = 50            # P, prompts per layer
    vis_depth: int = 24
    text_prompt: int = 3            # text prompts per layer and attribute
    div_num: int = 4
    use_div: bool = True
    use_textprompt: bool = True
    fusion_width: int = 768         # width of the ViT-B MM-former
    mm_layers: int = 1
    visual_embed: Optional[str] = "visual_embed"  # HEAD name; released checkpoints: "vis_embed"


def official_layout(d: OfficialDims) -> Tuple[Layout, Layout]:
    """Keys, shapes and dtypes of the official CLIP and classifier state dicts, in state-dict order.

    The order follows module registration in the official code: CLIP's own parameters, then the
    similarity-branch modules (`softmax_model`, `agg_bn`), then `visual` (embeddings, part tokens,
    proj, conv, ln_pre, `prompt_deep`, blocks, ln_post), then the text tower (`prompt_text_deep`,
    blocks), token embedding and ln_final. The classifier: word_embed, visual embedding, final
    norm, heads, bn, then the MM-former blocks.

    Args:
        d: the sizes.

    Returns:
        (clip_layout, classifier_layout), each a list of (key, shape, dtype).
    """
    f32, i64 = torch.float32, torch.int64
    A, W, T, E = d.attributes, d.vision_width, d.text_width, d.embed_dim

    def block(prefix: str, width: int) -> Layout:
        return [
            (f"{prefix}attn.in_proj_weight", (3 * width, width), f32),
            (f"{prefix}attn.in_proj_bias", (3 * width,), f32),
            (f"{prefix}attn.out_proj.weight", (width, width), f32),
            (f"{prefix}attn.out_proj.bias", (width,), f32),
            (f"{prefix}ln_1.weight", (width,), f32),
            (f"{prefix}ln_1.bias", (width,), f32),
            (f"{prefix}mlp.c_fc.weight", (4 * width, width), f32),
            (f"{prefix}mlp.c_fc.bias", (4 * width,), f32),
            (f"{prefix}mlp.c_proj.weight", (width, 4 * width), f32),
            (f"{prefix}mlp.c_proj.bias", (width,), f32),
            (f"{prefix}ln_2.weight", (width,), f32),
            (f"{prefix}ln_2.bias", (width,), f32),
        ]

    def bn(prefix: str) -> Layout:
        return [(f"{prefix}.weight", (A,), f32), (f"{prefix}.bias", (A,), f32),
                (f"{prefix}.running_mean", (A,), f32), (f"{prefix}.running_var", (A,), f32),
                (f"{prefix}.num_batches_tracked", (), i64)]

    clip: Layout = [("positional_embedding", (d.context_length, T), f32),
                    ("text_projection", (T, E), f32),
                    ("logit_scale", (), f32)]
    if d.use_div:
        clip += [("softmax_model.temperature", (), f32)] + bn("agg_bn")
    clip += [("visual.class_embedding", (W,), f32),
             ("visual.positional_embedding", (d.grid * d.grid + 1, W), f32)]
    if d.use_div:
        clip += [("visual.part_class_embedding", (d.div_num, W), f32)]
    clip += [("visual.proj", (W, E), f32),
             ("visual.conv1.weight", (W, 3, d.patch_size, d.patch_size), f32),
             ("visual.ln_pre.weight", (W,), f32), ("visual.ln_pre.bias", (W,), f32),
             ("visual.transformer.prompt_deep", (d.vis_depth, d.vis_prompt, 1, W), f32)]
    for i in range(d.vision_layers):
        clip += block(f"visual.transformer.resblocks.{i}.", W)
    clip += [("visual.ln_post.weight", (W,), f32), ("visual.ln_post.bias", (W,), f32)]
    # Without --use_textprompt the parameter exists with 0 elements (spec §6).
    n_text = d.text_prompt if d.use_textprompt else 0
    clip += [("transformer.prompt_text_deep", (d.text_layers, n_text, A, T) if n_text else (0,), f32)]
    for i in range(d.text_layers):
        clip += block(f"transformer.resblocks.{i}.", T)
    clip += [("token_embedding.weight", (d.vocab_size, T), f32),
             ("ln_final.weight", (T,), f32), ("ln_final.bias", (T,), f32)]

    D = d.fusion_width
    cls: Layout = [("word_embed.weight", (D, E), f32), ("word_embed.bias", (D,), f32)]
    if d.visual_embed:
        cls += [(f"{d.visual_embed}.weight", (D, E), f32), (f"{d.visual_embed}.bias", (D,), f32)]
    cls += [("norm.weight", (D,), f32), ("norm.bias", (D,), f32)]
    for i in range(A):
        cls += [(f"weight_layer.{i}.weight", (1, D), f32), (f"weight_layer.{i}.bias", (1,), f32)]
    cls += bn("bn")
    for i in range(d.mm_layers):
        p = f"blocks.{i}."
        cls += [(p + "norm1.weight", (D,), f32), (p + "norm1.bias", (D,), f32),
                (p + "attn.qkv.weight", (3 * D, D), f32), (p + "attn.qkv.bias", (3 * D,), f32),
                (p + "attn.proj.weight", (D, D), f32), (p + "attn.proj.bias", (D,), f32),
                (p + "norm2.weight", (D,), f32), (p + "norm2.bias", (D,), f32),
                (p + "mlp.fc1.weight", (4 * D, D), f32), (p + "mlp.fc1.bias", (4 * D,), f32),
                (p + "mlp.fc2.weight", (D, 4 * D), f32), (p + "mlp.fc2.bias", (D,), f32)]
    return clip, cls


def seeded_official_state(layout: Layout, seed: int, logit_scale: float = math.log(100.0)
                          ) -> Dict[str, torch.Tensor]:
    """Fill a layout with seeded random values of sensible magnitude.

    Matrices get N(0, 1/fan_in) so activations stay O(1) through the blocks; LayerNorm and BN
    affine parameters get 1 +/- noise and biases noise, so a wrong LN or a skipped BN changes the
    result; BN running variances are positive; prompts and part tokens are large enough to matter.

    Args:
        layout: (key, shape, dtype) triples, e.g. from `official_layout`.
        seed: seed of a private generator (the global RNG is untouched).
        logit_scale: value of CLIP's `logit_scale` (ln 100, the pretrained value, by default).

    Returns:
        {key: tensor} in layout order.
    """
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, torch.Tensor] = {}
    for key, shape, dtype in layout:
        leaf = key.rsplit(".", 1)[-1]
        if dtype == torch.int64:
            out[key] = torch.tensor(7, dtype=torch.int64)
            continue
        randn = torch.randn(shape, generator=g)
        if key == "logit_scale":
            t = torch.tensor(logit_scale)
        elif key.endswith("temperature"):
            t = torch.tensor(0.7 + 0.6 * torch.rand((), generator=g).item())
        elif leaf == "running_var":
            t = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            t = 0.1 * randn
        elif any(n in key for n in ("ln_", "norm", "bn.", "agg_bn.")) and leaf in ("weight", "bias"):
            t = (1.0 if leaf == "weight" else 0.0) + 0.1 * randn
        elif leaf == "bias" or key.endswith("in_proj_bias"):
            t = 0.02 * randn
        elif len(shape) >= 2 and "prompt" not in key and "embedding" not in key:
            # nn.Linear / conv weights are (out, in, ...); CLIP's proj matrices are (in, out)
            fan_in = shape[0] if key in ("visual.proj", "text_projection") else math.prod(shape[1:])
            t = randn / math.sqrt(fan_in)
        else:  # embeddings, prompts, part tokens, class embedding
            t = 0.5 * randn
        out[key] = t.to(dtype)
    return out


# ---------------------------------------------------------------------------------------------
# Building blocks, written out
# ---------------------------------------------------------------------------------------------
def _layer_norm(x: torch.Tensor, sd: Dict[str, torch.Tensor], prefix: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def _mha(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor,
         b_out: torch.Tensor, heads: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Multi-head self-attention with a fused qkv projection. x: (B, L, D) batch-first."""
    B, L, D = x.shape
    hd = D // heads
    qkv = x @ w_in.t() + b_in                                   # (B, L, 3D)
    q, k, v = qkv.split(D, dim=-1)
    q, k, v = (t.reshape(B, L, heads, hd).transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
    scores = (q * hd ** -0.5) @ k.transpose(-2, -1)             # (B, H, L, L)
    if mask is not None:
        scores = scores + mask                                  # additive 0 / -inf
    out = scores.softmax(-1) @ v                                # (B, H, L, hd)
    out = out.transpose(1, 2).reshape(B, L, D)
    return out @ w_out.t() + b_out


def _clip_block(x: torch.Tensor, sd: Dict[str, torch.Tensor], p: str, heads: int,
                mask: Optional[torch.Tensor]) -> torch.Tensor:
    """CLIP's pre-LN residual block (LN eps 1e-5, QuickGELU), spec §3.1. x: (B, L, D)."""
    h = _layer_norm(x, sd, p + "ln_1", 1e-5)
    x = x + _mha(h, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"],
                 sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], heads, mask)
    h = _layer_norm(x, sd, p + "ln_2", 1e-5)
    h = h @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)                            # QuickGELU
    return x + h @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]


def _vit_block(x: torch.Tensor, sd: Dict[str, torch.Tensor], p: str, heads: int) -> torch.Tensor:
    """timm ViT block in eval mode (DropPath = identity; LN eps 1e-6; exact GELU), spec §3.5."""
    h = _layer_norm(x, sd, p + "norm1", 1e-6)
    x = x + _mha(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"], sd[p + "attn.proj.weight"],
                 sd[p + "attn.proj.bias"], heads, None)
    h = _layer_norm(x, sd, p + "norm2", 1e-6)
    h = F.gelu(h @ sd[p + "mlp.fc1.weight"].t() + sd[p + "mlp.fc1.bias"])   # exact (erf) GELU
    return x + h @ sd[p + "mlp.fc2.weight"].t() + sd[p + "mlp.fc2.bias"]


def _bn_eval(x: torch.Tensor, sd: Dict[str, torch.Tensor], p: str, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm1d in eval mode over (B, A)."""
    return ((x - sd[p + ".running_mean"]) / torch.sqrt(sd[p + ".running_var"] + eps)
            * sd[p + ".weight"] + sd[p + ".bias"])


# ---------------------------------------------------------------------------------------------
# Official and clean behaviour (spec §14)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Behaviour:
    """The settings in which the released code and a clean implementation compute differently.

    Attributes:
        text_prompts: "appended" (after position 76, inert: spec §6, §14.1) or "after_sot"
            (positions 1..n after SOT, where they change the text features).
        ln_post: apply CLIP's `ln_post` before `proj` (the official code skips it, §14.5).
        global_row: "first_prompt" (row 1, the official bug, §14.2) or "cls" (row 0).
        aggregation: "last_sample" (the official bug, §14.3) or "per_sample".
        stripes: "official" (hard-coded for 16x16 and 4 regions, §4.1) or "derived" (§4.4's rule).
    """

    text_prompts: str
    ln_post: bool
    global_row: str
    aggregation: str
    stripes: str


OFFICIAL = Behaviour(text_prompts="appended", ln_post=False, global_row="first_prompt",
                     aggregation="last_sample", stripes="official")
CLEAN = Behaviour(text_prompts="after_sot", ln_post=True, global_row="cls", aggregation="per_sample",
                  stripes="derived")


# ---------------------------------------------------------------------------------------------
# The stripe mask (spec §4)
# ---------------------------------------------------------------------------------------------
# Official stripes for a 16x16 grid, div_num 4, overlap_row 2 (spec §4.1): patch-row starts
# 0, 3, 7, 11 (token offsets 0/48/112/176) and row counts 5, 6, 6, 5.
OFFICIAL_STRIPE_STARTS = (0, 3, 7, 11)
OFFICIAL_STRIPE_ROWS = (5, 6, 6, 5)


def derived_stripes(grid: int, div_num: int, overlap_row: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Stripe starts and row counts from the rule of spec §4.1 / §4.4.

    Rows: base = grid // div_num + overlap_row // 2 for the first and the last stripe, base +
    overlap_row // 2 for the middle ones; start_0 = 0, start_k = start_{k-1} + rows_{k-1} -
    overlap_row. The spec does not say what to do when the last stripe does not end exactly on the
    last patch row, so such grids are refused here.

    Returns:
        (starts, rows), one entry per stripe.
    """
    if div_num < 2:
        raise ValueError("the stripe rule of spec §4.1 needs at least two regions")
    base = grid // div_num + overlap_row // 2
    rows = [base] + [base + overlap_row // 2] * (div_num - 2) + [base]
    starts = [0]
    for k in range(1, div_num):
        starts.append(starts[k - 1] + rows[k - 1] - overlap_row)
    if starts[-1] + rows[-1] != grid:
        raise ValueError(f"the spec's stripe rule does not end on the last row for grid {grid}, "
                         f"div_num {div_num}, overlap_row {overlap_row}: choose another test geometry")
    return tuple(starts), tuple(rows)


def stripe_mask(vis_prompt: int, grid: int, div_num: int, starts: Tuple[int, ...],
                rows: Tuple[int, ...]) -> torch.Tensor:
    """The additive (L, L) visual attention mask of spec §4.2, L = 1 + div_num + P + grid^2.

    Query rows of the global group (CLS and its prompts) and of the patches see everything; the
    rows of part k (its token and its prompts) see only their own group and the patches of stripe k
    (patch rows starts[k-1] .. starts[k-1] + rows[k-1] - 1).
    """
    K = div_num + 1
    m = vis_prompt // K                        # prompts per group
    prefix = K * (1 + m)                       # class tokens + prompts
    L = prefix + grid * grid
    mask = torch.zeros(L, L)
    for k in range(1, K):
        group = slice(k * (1 + m), (k + 1) * (1 + m))         # part token k and its prompts
        allowed = torch.zeros(L, dtype=torch.bool)
        allowed[group] = True
        start = prefix + starts[k - 1] * grid
        allowed[start: start + rows[k - 1] * grid] = True
        mask[group] = torch.where(allowed, 0.0, float("-inf"))
    return mask


def official_visual_mask(vis_prompt: int, grid: int = 16, div_num: int = 4) -> torch.Tensor:
    """The official code's mask: the hard-coded stripes, valid only for 16x16 and 4 regions (§4.4)."""
    if grid != 16 or div_num != 4:
        raise ValueError("the official stripes are hard-coded for a 16x16 grid and div_num 4 (spec §4.4)")
    return stripe_mask(vis_prompt, grid, div_num, OFFICIAL_STRIPE_STARTS, OFFICIAL_STRIPE_ROWS)


def derived_visual_mask(vis_prompt: int, grid: int, div_num: int, overlap_row: int) -> torch.Tensor:
    """The mask with the derived stripes of spec §4.4 (equal to the official one for 16 / 4 / 2)."""
    return stripe_mask(vis_prompt, grid, div_num, *derived_stripes(grid, div_num, overlap_row))


# ---------------------------------------------------------------------------------------------
# The forward pass
# ---------------------------------------------------------------------------------------------
def text_features(clip_sd: Dict[str, torch.Tensor], tokens: torch.Tensor, text_heads: int,
                  placement: str = "appended") -> torch.Tensor:
    """Text branch of spec §3.3 with deep text prompts. tokens: (A, 77) -> (A, E).

    Args:
        placement: "appended" (official, inert) or "after_sot" (see the module docstring).
    """
    if placement not in ("appended", "after_sot"):
        raise ValueError(f"placement must be 'appended' or 'after_sot', got {placement!r}")
    x = clip_sd["token_embedding.weight"][tokens] + clip_sd["positional_embedding"]  # (A, 77, T)
    ctx = x.shape[1]
    prompts = clip_sd.get("transformer.prompt_text_deep")        # (layers, n, A, T)
    n = prompts.shape[1] if prompts is not None and prompts.numel() > 0 else 0
    layers = len({k.split(".")[2] for k in clip_sd if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        if n and i < prompts.shape[0]:
            p = prompts[i].permute(1, 0, 2)                      # (A, n, T)
            if placement == "appended":   # at 77.. (layer 0 appends, later layers overwrite)
                x = torch.cat([x[:, :ctx], p], dim=1)            # (A, 77 + n, T)
            elif i == 0:                  # inserted after SOT; the last n (padding) slots go
                x = torch.cat([x[:, :1], p, x[:, 1:ctx - n]], dim=1)   # (A, 77, T)
            else:                         # overwrite positions 1..n
                x = torch.cat([x[:, :1], p, x[:, 1 + n:]], dim=1)
        length = x.shape[1]
        causal = torch.full((length, length), float("-inf")).triu(1)
        x = _clip_block(x, clip_sd, f"transformer.resblocks.{i}.", text_heads, causal)
    x = _layer_norm(x, clip_sd, "ln_final", 1e-5)
    eot = tokens.argmax(dim=-1) + (n if placement == "after_sot" else 0)   # EOT has the largest id
    pooled = x[torch.arange(x.shape[0]), eot]                     # (A, T)
    return pooled @ clip_sd["text_projection"]                    # (A, E)


def official_text_features(clip_sd: Dict[str, torch.Tensor], tokens: torch.Tensor, text_heads: int
                           ) -> torch.Tensor:
    """Text branch of spec §3.3 with the inert appended prompts. tokens: (A, 77) -> (A, E)."""
    return text_features(clip_sd, tokens, text_heads, "appended")


def visual_tokens(clip_sd: Dict[str, torch.Tensor], images: torch.Tensor, vision_heads: int,
                  div_num: int = 4, use_vismask: bool = True, overlap_row: int = 2,
                  behaviour: Behaviour = OFFICIAL) -> torch.Tensor:
    """Image branch of spec §3.2: (B, 3, H, W) normalised images -> all tokens x proj (B, L, E).

    Args:
        div_num: regions (part tokens) when the state dict has part tokens.
        use_vismask: apply the stripe mask.
        overlap_row: rows shared by adjacent stripes (derived stripes only).
        behaviour: `OFFICIAL` or `CLEAN` (stripes and ln_post are read from it).
    """
    conv = clip_sd["visual.conv1.weight"]                                # (W, 3, p, p)
    width, patch = conv.shape[0], conv.shape[-1]
    x = F.conv2d(images, conv, stride=patch)                             # (B, W, g, g)
    grid = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)                                     # (B, g*g, W)
    B = x.shape[0]
    cls = clip_sd["visual.class_embedding"].expand(B, 1, width)
    x = torch.cat([cls, x], dim=1) + clip_sd["visual.positional_embedding"]  # (B, 1+g*g, W)
    parts = clip_sd.get("visual.part_class_embedding")
    use_div = parts is not None
    if use_div:  # part tokens go in *after* the positional embedding: they get none (spec §3.2.3)
        x = torch.cat([x[:, :1], parts.expand(B, -1, -1), x[:, 1:]], dim=1)  # (B, 1+div+g*g, W)
    x = _layer_norm(x, clip_sd, "visual.ln_pre", 1e-5)

    prompts = clip_sd["visual.transformer.prompt_deep"]                  # (depth, P, 1, W)
    depth, P = prompts.shape[0], prompts.shape[1]
    K = div_num + 1 if use_div else 1
    m = P // K
    n_cls = K if use_div else 1

    def place(x: torch.Tensor, layer: int, insert: bool) -> torch.Tensor:
        p = prompts[layer, :, 0].expand(B, P, width)                     # (B, P, W)
        if not use_div:
            rest = x[:, 1:] if insert else x[:, 1 + P:]
            return torch.cat([x[:, :1], p, rest], dim=1)
        pieces = []
        for g in range(K):
            # before insertion class token g sits at index g; afterwards at g * (1 + m)
            tok = x[:, g: g + 1] if insert else x[:, g * (1 + m): g * (1 + m) + 1]
            pieces += [tok, p[:, g * m: (g + 1) * m]]
        rest = x[:, n_cls:] if insert else x[:, K * (1 + m):]
        return torch.cat(pieces + [rest], dim=1)

    mask = None
    if use_div and use_vismask:
        mask = (official_visual_mask(P, grid, div_num) if behaviour.stripes == "official"
                else derived_visual_mask(P, grid, div_num, overlap_row))
    layers = len({k.split(".")[3] for k in clip_sd if k.startswith("visual.transformer.resblocks.")})
    for i in range(layers):
        if i == 0:
            x = place(x, 0, insert=True)
        elif i < depth:
            x = place(x, i, insert=False)
        x = _clip_block(x, clip_sd, f"visual.transformer.resblocks.{i}.", vision_heads, mask)
    if behaviour.ln_post:  # the official code defines ln_post but never applies it (spec §14.5)
        x = _layer_norm(x, clip_sd, "visual.ln_post", 1e-5)
    return x @ clip_sd["visual.proj"]                                    # (B, L, E)


def official_visual_tokens(clip_sd: Dict[str, torch.Tensor], images: torch.Tensor, vision_heads: int,
                           div_num: int = 4, use_vismask: bool = True) -> torch.Tensor:
    """Image branch as the official code computes it (no ln_post, hard-coded stripes)."""
    return visual_tokens(clip_sd, images, vision_heads, div_num, use_vismask, behaviour=OFFICIAL)


def region_rows(vis_prompt: int, div_num: int, global_row: str) -> List[int]:
    """Rows read by the global-local branch: the global row, then part token k at k * (1 + m)."""
    m = vis_prompt // (div_num + 1)
    first = {"first_prompt": 1, "cls": 0}[global_row]
    return [first] + [k * (1 + m) for k in range(1, div_num + 1)]


def global_local_logits(clip_sd: Dict[str, torch.Tensor], regions: torch.Tensor, text: torch.Tensor,
                        aggregation: str, ag_threshold: float = 0.5) -> torch.Tensor:
    """Global-local branch of spec §3.4: regions (B, K, E), text (A, E) -> logits after agg_bn (B, A)."""
    r = regions / regions.norm(dim=-1, keepdim=True)
    t = text / text.norm(dim=-1, keepdim=True)
    sim = clip_sd["logit_scale"].exp() * r @ t.t()                       # (B, K, A)
    prob = (sim / clip_sd["softmax_model.temperature"]).softmax(dim=-1)  # softmax over A
    glob, local = prob[:, 0], prob[:, 1:]                                 # (B, A), (B, div, A)
    if aggregation == "last_sample":       # the official loop keeps only the last sample (§14.3)
        hi, lo = local[-1].max(dim=0).values, local[-1].min(dim=0).values  # (A,), broadcast
    elif aggregation == "per_sample":
        hi, lo = local.max(dim=1).values, local.min(dim=1).values         # (B, A)
    else:
        raise ValueError(f"aggregation must be 'last_sample' or 'per_sample', got {aggregation!r}")
    agg = torch.where(hi > ag_threshold, hi, lo)
    return _bn_eval((agg + glob) / 2, clip_sd, "agg_bn")


def classifier_logits(cls_sd: Dict[str, torch.Tensor], text: torch.Tensor, tokens_v: torch.Tensor,
                      fusion_heads: int) -> torch.Tensor:
    """Fusion and heads of spec §3.5: text (A, E), visual tokens (B, L, E) -> logits after bn (B, A)."""
    B, A = tokens_v.shape[0], text.shape[0]
    words = (text @ cls_sd["word_embed.weight"].t() + cls_sd["word_embed.bias"]).expand(B, A, -1)
    vis_key = "vis_embed" if "vis_embed.weight" in cls_sd else (
        "visual_embed" if "visual_embed.weight" in cls_sd else None)
    vis = tokens_v
    if vis_key is not None:
        vis = vis @ cls_sd[vis_key + ".weight"].t() + cls_sd[vis_key + ".bias"]  # (B, L, D)
    x = torch.cat([words, vis], dim=1)                                   # (B, A + L, D)
    n_blocks = len({k.split(".")[1] for k in cls_sd if k.startswith("blocks.")})
    for i in range(n_blocks):
        x = _vit_block(x, cls_sd, f"blocks.{i}.", fusion_heads)
    x = _layer_norm(x, cls_sd, "norm", 1e-6)
    logits = torch.cat([x[:, i] @ cls_sd[f"weight_layer.{i}.weight"].t() + cls_sd[f"weight_layer.{i}.bias"]
                        for i in range(A)], dim=1)                       # (B, A)
    return _bn_eval(logits, cls_sd, "bn")


def promptpar_forward(clip_sd: Dict[str, torch.Tensor], cls_sd: Dict[str, torch.Tensor],
                      images: torch.Tensor, tokens: torch.Tensor, *, vision_heads: int, text_heads: int,
                      fusion_heads: int, behaviour: Behaviour, div_num: int = 4, overlap_row: int = 2,
                      use_vismask: bool = True, use_gl: bool = True, ag_threshold: float = 0.5
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits of PromptPAR in eval mode (spec §3) with the official or the clean behaviour.

    Args:
        clip_sd: the official CLIP state dict (checkpoint key "ViT_model" / "clip_model").
        cls_sd: the official classifier state dict (checkpoint key "model_state_dict").
        images: (B, 3, H, W), already normalised.
        tokens: (A, 77) CLIP token ids of the attribute sentences.
        vision_heads, text_heads, fusion_heads: attention heads of the three transformers.
        behaviour: `OFFICIAL` or `CLEAN` (spec §14).
        div_num: regions (only 4 with the official stripes).
        overlap_row: rows shared by adjacent stripes (derived stripes).
        use_vismask: apply the stripe mask (official: on).
        use_gl: compute the global-local similarity logits (needs the part tokens).
        ag_threshold: aggregation threshold of the similarity branch.

    Returns:
        (logits (B, A) after `bn`, aux logits (B, A) after `agg_bn`, or None without use_gl).
    """
    text = text_features(clip_sd, tokens, text_heads, behaviour.text_prompts)        # (A, E)
    tokens_v = visual_tokens(clip_sd, images, vision_heads, div_num, use_vismask, overlap_row,
                             behaviour)                                             # (B, L, E)
    aux = None
    if use_gl:
        P = clip_sd["visual.transformer.prompt_deep"].shape[1]
        regions = tokens_v[:, region_rows(P, div_num, behaviour.global_row)]          # (B, K, E)
        aux = global_local_logits(clip_sd, regions, text, behaviour.aggregation, ag_threshold)
    return classifier_logits(cls_sd, text, tokens_v, fusion_heads), aux


def official_forward(clip_sd: Dict[str, torch.Tensor], cls_sd: Dict[str, torch.Tensor],
                     images: torch.Tensor, tokens: torch.Tensor, *, vision_heads: int, text_heads: int,
                     fusion_heads: int, div_num: int = 4, use_vismask: bool = True, use_gl: bool = True,
                     ag_threshold: float = 0.5) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits of the official PromptPAR model in eval mode: `promptpar_forward` with `OFFICIAL`."""
    return promptpar_forward(clip_sd, cls_sd, images, tokens, vision_heads=vision_heads,
                             text_heads=text_heads, fusion_heads=fusion_heads, behaviour=OFFICIAL,
                             div_num=div_num, use_vismask=use_vismask, use_gl=use_gl,
                             ag_threshold=ag_threshold)
