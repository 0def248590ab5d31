"""An independent, functional re-statement of the *official* PromptPAR forward pass (tests only).

This file exists so that `parkit.load_official_checkpoint` can be proved to compute the official
code's logits. It is written directly from the method reference (spec §3-§6, §14) as plain torch
functions over the two official state dicts, with no `nn.Module` and nothing imported from
`parkit`: a mistake in parkit's modules cannot hide behind the same mistake here.

What it reproduces, deliberately including the official quirks that the released checkpoints
were trained with (spec §14):

- image branch (spec §3.2): patch conv, CLS, positional embedding, part tokens inserted *after*
  the positional embedding, `ln_pre`, deep prompts inserted at layer 0 (one group after each class
  token) and overwritten at layers 1..vis_depth-1, the additive stripe mask in every layer (spec
  §4, official hard-coded stripes), CLIP residual blocks with QuickGELU, **no `ln_post`**, `proj`;
- region tokens = rows {1, m+1, 2(m+1), ...}: row 1 is the first *global prompt*, not CLS (§14.2);
- text branch (spec §3.3, §6): deep text prompts appended after position 76 (inert under the
  causal mask), EOT pooling, `text_projection`;
- global-local branch (spec §3.4): cosine x exp(logit_scale), softmax over attributes with
  temperature, max/min aggregation that keeps only the **last sample** of the batch (§14.3),
  `agg_bn` in eval mode;
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
# The stripe mask (spec §4): the official, hard-coded geometry
# ---------------------------------------------------------------------------------------------
# Official stripes for a 16x16 grid, div_num 4, overlap_row 2 (spec §4.1): patch-row starts
# 0, 3, 7, 11 (token offsets 0/48/112/176) and row counts 5, 6, 6, 5.
OFFICIAL_STRIPE_STARTS = (0, 3, 7, 11)
OFFICIAL_STRIPE_ROWS = (5, 6, 6, 5)


def official_visual_mask(vis_prompt: int, grid: int = 16, div_num: int = 4) -> torch.Tensor:
    """The additive (L, L) visual attention mask of spec §4.2, L = 1 + div_num + P + grid^2.

    Query rows of the global group (CLS and its prompts) and of the patches see everything; the
    rows of part k (its token and its prompts) see only their own group and the patches of stripe k.
    """
    if grid != 16 or div_num != 4:
        raise ValueError("the official stripes are hard-coded for a 16x16 grid and div_num 4 (spec §4.4)")
    K = div_num + 1
    m = vis_prompt // K                        # prompts per group
    prefix = K * (1 + m)                       # class tokens + prompts = P + 5
    L = prefix + grid * grid
    mask = torch.zeros(L, L)
    for k in range(1, K):
        rows = slice(k * (1 + m), (k + 1) * (1 + m))          # part token k and its prompts
        allowed = torch.zeros(L, dtype=torch.bool)
        allowed[rows] = True
        start = prefix + OFFICIAL_STRIPE_STARTS[k - 1] * grid
        allowed[start: start + OFFICIAL_STRIPE_ROWS[k - 1] * grid] = True
        mask[rows] = torch.where(allowed, 0.0, float("-inf"))
    return mask


# ---------------------------------------------------------------------------------------------
# The official forward pass
# ---------------------------------------------------------------------------------------------
def official_text_features(clip_sd: Dict[str, torch.Tensor], tokens: torch.Tensor, text_heads: int
                           ) -> torch.Tensor:
    """Text branch of spec §3.3 with the inert appended prompts. tokens: (A, 77) -> (A, E)."""
    x = clip_sd["token_embedding.weight"][tokens] + clip_sd["positional_embedding"]  # (A, 77, T)
    prompts = clip_sd.get("transformer.prompt_text_deep")
    use_prompts = prompts is not None and prompts.numel() > 0
    if use_prompts:  # (layers, n, A, T): appended after position 76 at layer 0
        x = torch.cat([x, prompts[0].permute(1, 0, 2)], dim=1)          # (A, 77 + n, T)
    n_ctx = x.shape[1]
    causal = torch.full((n_ctx, n_ctx), float("-inf")).triu(1)
    layers = len({k.split(".")[2] for k in clip_sd if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        if use_prompts and i > 0 and i < prompts.shape[0]:
            x = torch.cat([x[:, :77], prompts[i].permute(1, 0, 2)], dim=1)  # overwrite 77..
        x = _clip_block(x, clip_sd, f"transformer.resblocks.{i}.", text_heads, causal)
    x = _layer_norm(x, clip_sd, "ln_final", 1e-5)
    eot = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]            # (A, T)
    return eot @ clip_sd["text_projection"]                               # (A, E)


def official_visual_tokens(clip_sd: Dict[str, torch.Tensor], images: torch.Tensor, vision_heads: int,
                           div_num: int = 4, use_vismask: bool = True) -> torch.Tensor:
    """Image branch of spec §3.2: (B, 3, H, W) normalised images -> all tokens x proj (B, L, E)."""
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

    mask = official_visual_mask(P, grid, div_num) if (use_div and use_vismask) else None
    layers = len({k.split(".")[3] for k in clip_sd if k.startswith("visual.transformer.resblocks.")})
    for i in range(layers):
        if i == 0:
            x = place(x, 0, insert=True)
        elif i < depth:
            x = place(x, i, insert=False)
        x = _clip_block(x, clip_sd, f"visual.transformer.resblocks.{i}.", vision_heads, mask)
    # ln_post is defined but never applied (spec §3.2.6, §14.5)
    return x @ clip_sd["visual.proj"]                                    # (B, L, E)


def official_forward(clip_sd: Dict[str, torch.Tensor], cls_sd: Dict[str, torch.Tensor],
                     images: torch.Tensor, tokens: torch.Tensor, *, vision_heads: int, text_heads: int,
                     fusion_heads: int, div_num: int = 4, use_vismask: bool = True, use_gl: bool = True,
                     ag_threshold: float = 0.5) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits of the official PromptPAR model in eval mode (spec §3).

    Args:
        clip_sd: the official CLIP state dict (checkpoint key "ViT_model" / "clip_model").
        cls_sd: the official classifier state dict (checkpoint key "model_state_dict").
        images: (B, 3, H, W), already normalised.
        tokens: (A, 77) CLIP token ids of the attribute sentences.
        vision_heads, text_heads, fusion_heads: attention heads of the three transformers.
        div_num: regions (only 4 is supported by the official stripes).
        use_vismask: apply the stripe mask (official: on).
        use_gl: compute the global-local similarity logits (needs the part tokens).
        ag_threshold: aggregation threshold of the similarity branch.

    Returns:
        (logits (B, A) after `bn`, aux logits (B, A) after `agg_bn`, or None without use_gl).
    """
    text = official_text_features(clip_sd, tokens, text_heads)          # (A, E)
    tokens_v = official_visual_tokens(clip_sd, images, vision_heads, div_num, use_vismask)  # (B, L, E)
    B, A = images.shape[0], text.shape[0]

    aux = None
    if use_gl:
        P = clip_sd["visual.transformer.prompt_deep"].shape[1]
        m = P // (div_num + 1)
        rows = [1] + [k * (1 + m) for k in range(1, div_num + 1)]       # row 1: first global prompt
        regions = tokens_v[:, rows]                                       # (B, K, E)
        r = regions / regions.norm(dim=-1, keepdim=True)
        t = text / text.norm(dim=-1, keepdim=True)
        sim = clip_sd["logit_scale"].exp() * r @ t.t()                   # (B, K, A)
        prob = (sim / clip_sd["softmax_model.temperature"]).softmax(dim=-1)  # softmax over A
        glob, local = prob[:, 0], prob[:, 1:]                             # (B, A), (B, div, A)
        last = local[-1]                                                  # only the last sample (bug)
        hi, lo = last.max(dim=0).values, last.min(dim=0).values           # (A,)
        agg = torch.where(hi > ag_threshold, hi, lo)
        aux = _bn_eval((agg + glob) / 2, clip_sd, "agg_bn")               # (B, A)

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
    return _bn_eval(logits, cls_sd, "bn"), aux
