"""PromptPAR configuration: one frozen dataclass, the official-compatibility flags, and the presets.

`PromptPARConfig` holds every switch of the model (spec §2 for the official flags). Its defaults are
parkit's *clean* behaviour: the quirks of the official code listed in spec §14 are fixed, and
`PromptPARConfig.official()` (or the preset "promptpar-official") switches exactly those back on that
the released checkpoints depend on.

Presets are data (a name -> field overrides table, `PRESETS`), listed by
`parkit.model.list_presets()` and built by `parkit.model.create_model()`. A config is validated on
construction: unknown fields, wrong types and impossible combinations raise at once with the fix.
Settings that depend on the backbone (number of layers, widths, grid) are checked by
`resolve(config, dims)` when the backbone is known.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Dict, Literal, Mapping, Optional

from parkit.model.geometry import stripe_rows

# Model kinds. "promptpar" is built by parkit.model.promptpar; the others by
# parkit.model.baselines.build_baseline(kind, clip_model, attributes, sentences, config).
PROMPTPAR = "promptpar"
BASELINE_KINDS = ("zeroshot", "linear_probe", "finetune", "vtb")
KINDS = (PROMPTPAR, *BASELINE_KINDS)

# Width of the ImageNet ViT-B/16 block used as MM-former (spec §3.5).
VIT_B16_WIDTH = 768
VIT_B16_DEPTH = 12

# mm_init names that are not file paths.
MM_INIT_NAMES = ("vit_b16_imagenet", "backbone_last", "random")

# Normalisation constants per `normalization` setting (spec §11.3, §14.6).
NORMALIZATION_STATS = {
    "official": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


class ConfigError(ValueError):
    """An invalid configuration; the message names the setting and the fix."""


@dataclass(frozen=True)
class PromptPARConfig:
    """Every setting of a PromptPAR model (and of the baselines built from the same table).

    Defaults are parkit's clean behaviour; see `official()` for the released-checkpoint behaviour.

    Attributes:
        kind: "promptpar", or a baseline kind in `BASELINE_KINDS`.
        backbone: CLIP backbone name ("ViT-L/14", "ViT-B/16", "micro", ...).
        dataset: attribute schema used when `create_model` gets no attributes.
        vis_prompt: visual prompt tokens per layer, P (spec §5).
        vis_depth: layers that receive fresh prompts; None = every layer of the backbone. A value
            above the backbone depth allocates prompts that are never used (the paper's ViT-B/16
            count, spec §7.4), with a warning.
        use_div: part class tokens + stripe groups (spec §3.2 step 3).
        div_num: number of horizontal regions / part tokens.
        overlap_row: patch rows shared by adjacent stripes (spec §4.1).
        use_vismask: stripe attention mask (spec §4.2); needs use_div.
        use_gl: global-local similarity branch (spec §3.4); needs use_div.
        use_textprompt: deep text prompts (spec §6).
        text_prompt: text prompt tokens per layer and attribute.
        text_prompt_placement: "effective" (inserted right after SOT, so they change the text
            features) or "official" (appended after position 76 under a causal mask: provably
            inert, spec §6).
        use_mm_former: fuse with transformer blocks; otherwise a Linear over the token axis.
        mm_layers: number of MM-former blocks.
        mm_init: "vit_b16_imagenet" (the last blocks of timm's jx_vit_base_p16_224, read from a
            local file), "backbone_last" (the backbone's own last visual blocks), "random", or the
            path of a timm ViT state dict.
        mm_drop_path: stochastic-depth rate of the last MM-former block (active in train mode).
        visual_embed: Linear(embed -> fusion_width) on the visual tokens before fusion; required
            when the two widths differ.
        train_visual_embed: whether `visual_embed` is trained (2025 code) or frozen (released
            checkpoints, spec §14.8).
        train_mm_norms: train the MM-former LayerNorms (the official substring rule does, §7.1).
        ln_post: apply CLIP's ln_post before `proj` (the official code skips it, §14.5).
        global_token: "cls" (row 0) or "first_prompt" (row 1, the official bug, §14.2).
        gl_aggregation: "per_sample" or "last_sample" (the official bug, §14.3).
        gl_softmax: "attributes" (softmax over attributes, official) or "sigmoid" (per attribute).
        ag_threshold: threshold of the max/min region aggregation.
        normalization: "official" (mean = std = 0.5) or "clip" (CLIP's statistics).
        image_size: input side in pixels; None = the backbone's resolution.
        fusion_width: width of the fusion tokens; None = 768 (the ViT-B/16 block), the backbone's
            vision width with mm_init="backbone_last", or its embedding width without use_mm_former.
        text_cache: cache the text features whenever they cannot change (no trainable text-side
            parameter under autograd, or inert official text prompts).
        dtype: weight precision of the frozen CLIP ("float32", "float16", "bfloat16"); prefer
            float32 + torch.autocast.
    """

    kind: Literal["promptpar", "zeroshot", "linear_probe", "finetune", "vtb"] = "promptpar"
    backbone: str = "ViT-L/14"
    dataset: str = "PETA"
    vis_prompt: int = 50
    vis_depth: Optional[int] = None
    use_div: bool = True
    div_num: int = 4
    overlap_row: int = 2
    use_vismask: bool = True
    use_gl: bool = True
    use_textprompt: bool = True
    text_prompt: int = 3
    text_prompt_placement: Literal["effective", "official"] = "effective"
    use_mm_former: bool = True
    mm_layers: int = 1
    mm_init: str = "vit_b16_imagenet"
    mm_drop_path: float = 0.1
    visual_embed: bool = True
    train_visual_embed: bool = True
    train_mm_norms: bool = True
    ln_post: bool = True
    global_token: Literal["cls", "first_prompt"] = "cls"
    gl_aggregation: Literal["per_sample", "last_sample"] = "per_sample"
    gl_softmax: Literal["attributes", "sigmoid"] = "attributes"
    ag_threshold: float = 0.5
    normalization: Literal["official", "clip"] = "official"
    image_size: Optional[int] = None
    fusion_width: Optional[int] = None
    text_cache: bool = True
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"

    def __post_init__(self):
        _check_types(self)
        _check_values(self)

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def official(cls, **overrides) -> "PromptPARConfig":
        """The released checkpoints' behaviour (spec §14): see `OFFICIAL_FLAGS`.

        Args:
            **overrides: further field values, applied after the official flags.

        Returns:
            A validated config.
        """
        return cls(**{**OFFICIAL_FLAGS, **overrides})

    def replace(self, **overrides) -> "PromptPARConfig":
        """A copy with some fields changed; unknown names raise a `ConfigError` listing the valid ones."""
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"unknown PromptPARConfig setting(s) {unknown}; valid settings are: "
                f"{', '.join(field_names())}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PromptPARConfig":
        """Inverse of `to_dict`; keys that are not config fields raise a `ConfigError`."""
        return cls().replace(**dict(data))

    # -- derived facts ---------------------------------------------------------------------
    @property
    def normalization_stats(self):
        """(mean, std) per channel for the configured normalisation."""
        return NORMALIZATION_STATS[self.normalization]

    @property
    def prompts_per_group(self) -> int:
        """Visual prompts per class-token group: P / (div_num + 1) with use_div, else P."""
        return self.vis_prompt // (self.div_num + 1) if self.use_div else self.vis_prompt


# The exact behaviour of the released checkpoints (spec §14): every quirk the checkpoints were
# trained with. visual_embed: the checkpoints hold a 768x768 `vis_embed` that the 2023 update rule
# did not train (spec §14.8); the MM-former norms are trained by the substring rule (§7.1).
OFFICIAL_FLAGS: Dict[str, Any] = dict(
    backbone="ViT-L/14",
    vis_prompt=50,
    use_div=True,
    div_num=4,
    overlap_row=2,
    use_vismask=True,
    use_gl=True,
    use_textprompt=True,
    text_prompt=3,
    text_prompt_placement="official",
    use_mm_former=True,
    mm_layers=1,
    mm_init="vit_b16_imagenet",
    mm_drop_path=0.1,
    visual_embed=True,
    train_visual_embed=False,
    train_mm_norms=True,
    ln_post=False,
    global_token="first_prompt",
    gl_aggregation="last_sample",
    gl_softmax="attributes",
    normalization="official",
)


def field_names() -> list:
    """Names of all `PromptPARConfig` fields, in declaration order."""
    return [f.name for f in dataclasses.fields(PromptPARConfig)]


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return "None" if hint is type(None) else hint.__name__


def _check_types(cfg: PromptPARConfig) -> None:
    hints = typing.get_type_hints(PromptPARConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(
                f"PromptPARConfig.{f.name} must be {_describe(hints[f.name])}, got {value!r} "
                f"({type(value).__name__})")


def _check_values(cfg: PromptPARConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    for name in ("vis_prompt", "text_prompt", "overlap_row"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("div_num", "mm_layers"):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("vis_depth", "image_size", "fusion_width"):
        value = getattr(cfg, name)
        need(value is None or value >= 1, f"{name} must be None or >= 1, got {value}")
    need(0.0 <= cfg.mm_drop_path < 1.0, f"mm_drop_path must be in [0, 1), got {cfg.mm_drop_path}")
    need(0.0 <= cfg.ag_threshold <= 1.0, f"ag_threshold must be in [0, 1], got {cfg.ag_threshold}")
    if cfg.kind != PROMPTPAR:
        return  # the baselines read only the fields they use
    need(cfg.mm_init in MM_INIT_NAMES or cfg.mm_init.endswith((".pth", ".pt", ".bin", ".npz"))
         or "/" in cfg.mm_init or "\\" in cfg.mm_init,
         f"mm_init must be one of {MM_INIT_NAMES} or the path of a timm ViT weight file, got "
         f"{cfg.mm_init!r}")
    need(not cfg.use_vismask or cfg.use_div,
         "use_vismask=True needs use_div=True (the mask restricts the part tokens to their stripes, "
         "spec §4); set use_vismask=False or use_div=True")
    need(not cfg.use_gl or cfg.use_div,
         "use_gl=True needs use_div=True (the global-local branch compares the part tokens with the "
         "text, spec §3.4); set use_gl=False or use_div=True")
    if cfg.use_div:
        need(cfg.vis_prompt % (cfg.div_num + 1) == 0,
             f"vis_prompt={cfg.vis_prompt} must be divisible by div_num + 1 = {cfg.div_num + 1} "
             f"(the prompts form one group per class token, spec §5); e.g. use vis_prompt="
             f"{max(cfg.div_num + 1, cfg.vis_prompt // (cfg.div_num + 1) * (cfg.div_num + 1))}")
    if cfg.global_token == "first_prompt":
        need(cfg.use_div and cfg.vis_prompt > 0,
             "global_token='first_prompt' reads the first global prompt (row 1, spec §14.2); it needs "
             "use_div=True and vis_prompt > 0")
    need(not (cfg.use_textprompt and cfg.text_prompt == 0),
         "use_textprompt=True with text_prompt=0: set text_prompt >= 1 or use_textprompt=False")


@dataclass(frozen=True)
class BackboneDims:
    """Sizes of a CLIP backbone that the model and the config checks need (read off the module).

    Attributes:
        embed_dim: joint embedding width (visual `proj` output, text projection output).
        vision_width, vision_layers, vision_heads, patch_size, image_size: vision tower.
        text_width, text_layers, context_length: text tower.
    """

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    context_length: int

    @property
    def grid(self) -> int:
        """Patch grid side."""
        return self.image_size // self.patch_size


def backbone_dims(clip_model) -> BackboneDims:
    """Read the sizes of a `clip.model.CLIP` ViT off its modules (works on the meta device too).

    Raises:
        ConfigError: the model is not a ViT CLIP (e.g. a ResNet CLIP).
    """
    visual = getattr(clip_model, "visual", None)
    if visual is None or not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
        raise ConfigError(
            f"PromptPAR needs a ViT CLIP (clip.model.CLIP with a VisionTransformer); got "
            f"{type(visual).__name__ if visual is not None else type(clip_model).__name__}")
    conv = visual.conv1.weight  # (width, 3, patch, patch)
    blocks = visual.transformer.resblocks
    return BackboneDims(
        embed_dim=int(visual.proj.shape[1]),
        vision_width=int(conv.shape[0]),
        vision_layers=len(blocks),
        vision_heads=int(blocks[0].attn.num_heads),
        patch_size=int(conv.shape[-1]),
        image_size=int(visual.input_resolution),
        text_width=int(clip_model.ln_final.weight.shape[0]),
        text_layers=len(clip_model.transformer.resblocks),
        context_length=int(clip_model.positional_embedding.shape[0]),
    )


def resolve(cfg: PromptPARConfig, dims: BackboneDims) -> PromptPARConfig:
    """Fill the backbone-dependent defaults (None fields) and check them against the backbone.

    Args:
        cfg: a validated config.
        dims: the backbone's sizes (`backbone_dims(clip_model)`).

    Returns:
        A config with vis_depth, image_size and fusion_width set.

    Raises:
        ConfigError: a setting does not fit the backbone (the message names it and the fix).
    """
    vis_depth = dims.vision_layers if cfg.vis_depth is None else cfg.vis_depth
    image_size = dims.image_size if cfg.image_size is None else cfg.image_size
    if cfg.fusion_width is not None:
        fusion_width = cfg.fusion_width
    elif cfg.mm_init == "backbone_last" and cfg.use_mm_former:
        fusion_width = dims.vision_width
    elif cfg.use_mm_former:
        fusion_width = VIT_B16_WIDTH
    else:
        fusion_width = dims.embed_dim  # linear fusion: no block dictates a width
    out = dataclasses.replace(cfg, vis_depth=vis_depth, image_size=image_size, fusion_width=fusion_width)
    if cfg.kind != PROMPTPAR:
        return out
    if image_size != dims.image_size:
        raise ConfigError(
            f"image_size={image_size} does not match the backbone's {dims.image_size} px (its "
            f"positional embedding has a fixed {dims.grid}x{dims.grid} grid); set image_size=None")
    if cfg.vis_prompt > 0 and vis_depth < 1:
        raise ConfigError("vis_depth must be >= 1 when vis_prompt > 0")
    if not cfg.visual_embed and fusion_width != dims.embed_dim:
        raise ConfigError(
            f"visual_embed=False needs fusion_width == the backbone's embedding width "
            f"({dims.embed_dim}), got fusion_width={fusion_width}; set visual_embed=True")
    if cfg.use_mm_former and cfg.mm_init == "backbone_last":
        if fusion_width != dims.vision_width:
            raise ConfigError(
                f"mm_init='backbone_last' copies the backbone's last visual blocks, which are "
                f"{dims.vision_width} wide; fusion_width is {fusion_width}. Set fusion_width=None")
        if cfg.mm_layers > dims.vision_layers:
            raise ConfigError(f"mm_layers={cfg.mm_layers} exceeds the backbone's {dims.vision_layers} blocks")
    elif cfg.use_mm_former:
        if fusion_width % 64:
            raise ConfigError(f"fusion_width={fusion_width} must be a multiple of 64 (64-wide heads)")
        if cfg.mm_init == "vit_b16_imagenet" and fusion_width != VIT_B16_WIDTH:
            raise ConfigError(f"mm_init='vit_b16_imagenet' needs fusion_width={VIT_B16_WIDTH}")
        if cfg.mm_init == "vit_b16_imagenet" and cfg.mm_layers > VIT_B16_DEPTH:
            raise ConfigError(f"mm_layers={cfg.mm_layers} exceeds ViT-B/16's {VIT_B16_DEPTH} blocks")
    if cfg.use_div:
        stripe_rows(dims.grid, cfg.div_num, cfg.overlap_row)  # raises on a grid the rule cannot split
    return out


# ---------------------------------------------------------------------------------------------
# Presets: name -> (description, field overrides on top of the defaults)
# ---------------------------------------------------------------------------------------------
_MICRO = dict(backbone="micro", vis_prompt=10, mm_init="backbone_last")
_BASELINE_OFF = dict(vis_prompt=0, use_div=False, use_vismask=False, use_gl=False,
                     use_textprompt=False, text_prompt=0)

PRESETS: Dict[str, tuple] = {
    "promptpar-vitl14": ("PromptPAR, CLIP ViT-L/14, paper settings (spec §2), clean defaults", {}),
    "promptpar-vitb16": ("PromptPAR, CLIP ViT-B/16 (12 prompted layers, 512->768 visual_embed)",
                         dict(backbone="ViT-B/16")),
    "promptpar-micro": ("PromptPAR on the compact 'micro' CLIP: the CPU default (P=10, "
                        "MM-former = the backbone's last block)", dict(_MICRO)),
    "promptpar-official": ("PromptPAR ViT-L/14 with the released checkpoints' behaviour (spec §14)",
                           dict(OFFICIAL_FLAGS)),
    "vpt-deep": ("Plain deep VPT (no part tokens, no mask, no GL branch), ViT-L/14",
                 dict(use_div=False, use_vismask=False, use_gl=False)),
    "vpt-deep-micro": ("Plain deep VPT on the micro CLIP",
                       dict(_MICRO, use_div=False, use_vismask=False, use_gl=False)),
    "zeroshot-clip": ("Zero-shot CLIP (sentence similarity), ViT-L/14",
                      dict(_BASELINE_OFF, kind="zeroshot", normalization="clip")),
    # The micro CLIP is pretrained on images normalised with mean = std = 0.5 (parkit.backbone.pretrain),
    # so its zero-shot preset keeps that normalisation; OpenAI's CLIPs were trained with CLIP's own.
    "zeroshot-clip-micro": ("Zero-shot CLIP on the micro CLIP",
                            dict(_BASELINE_OFF, kind="zeroshot", normalization="official", backbone="micro")),
    "linear-probe": ("Linear probe on frozen CLIP ViT-L/14 features",
                     dict(_BASELINE_OFF, kind="linear_probe")),
    "linear-probe-micro": ("Linear probe on the micro CLIP",
                           dict(_BASELINE_OFF, kind="linear_probe", backbone="micro")),
    "finetune": ("Full fine-tuning of CLIP ViT-L/14 with a linear head",
                 dict(_BASELINE_OFF, kind="finetune")),
    "finetune-micro": ("Full fine-tuning of the micro CLIP", dict(_BASELINE_OFF, kind="finetune", backbone="micro")),
    "vtb": ("VTB-style vision-text fusion (no prompts), ViT-L/14", dict(_BASELINE_OFF, kind="vtb")),
    "vtb-micro": ("VTB-style fusion on the micro CLIP",
                  dict(_BASELINE_OFF, kind="vtb", backbone="micro", mm_init="backbone_last")),
}


def preset_config(name: str) -> PromptPARConfig:
    """The (unresolved) config of a preset.

    Raises:
        KeyError: unknown preset; the message lists the known ones.
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PromptPARConfig(**PRESETS[key][1])


def preset_description(name: str) -> str:
    """One-line description of a preset."""
    preset_config(name)  # validates the name
    return PRESETS[str(name).strip().lower()][0]
