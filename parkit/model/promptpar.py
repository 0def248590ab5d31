"""The PromptPAR model: prompted visual encoder + prompted text encoder + GL branch + fusion classifier.

`PromptPAR` wires the parts of spec §3 together and implements the model contract
(`parkit.model.contract.PARModel`): the explicit trainable groups (spec §7, §9: "prompt" and
"fusion" optimisers), the keys of the trainable state and the tables that name the setting behind a
mismatched checkpoint (saving and strict loading themselves live in `PARModel`), and the parameter
report.

Module tree (state-dict prefixes) and the official names they correspond to (spec §7, the layout
in `official_layout_peta_vitl14.json`):

    visual.*                  CLIP `visual.*`; visual.prompt_deep (D, P, W) =
                              visual.transformer.prompt_deep (D, P, 1, W)
    text.*                    CLIP top-level text keys (token_embedding, positional_embedding,
                              transformer.*, ln_final, text_projection); text.prompt_text_deep =
                              transformer.prompt_text_deep
    logit_scale               logit_scale
    gl.temperature, gl.agg_bn softmax_model.temperature, agg_bn
    fusion.*                  the classifier: word_embed, visual_embed, blocks.i, norm, bn; fusion.heads
                              (A, W) + (A,) = stacked weight_layer.i (1, W) + (1,)
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from parkit.model.config import ConfigError, PromptPARConfig, backbone_dims, resolve
from parkit.model.contract import CONFIG_KEY, PARModel, PAROutput, StateDictMismatch
from parkit.model.fusion import FusionHead, build_mm_blocks
from parkit.model.similarity import GlobalLocalSimilarity
from parkit.model.text import PromptedTextEncoder
from parkit.model.visual import PromptedVisualEncoder

# PAROutput, StateDictMismatch and CONFIG_KEY are defined with the contract; importing them from
# here keeps working.
__all__ = ["PromptPAR", "PAROutput", "StateDictMismatch", "CONFIG_KEY"]


class PromptPAR(PARModel):
    """PromptPAR (spec §1-7): frozen CLIP with visual/text prompts, region masks, GL branch and fusion.

    Build it with `parkit.model.create_model`; the constructor takes an already loaded CLIP.

    Args:
        clip_model: a ViT `clip.model.CLIP`; its modules become part of this model and are frozen.
        sentences: one CLIP sentence per attribute (A of them).
        config: a `PromptPARConfig` (resolved against the backbone here).
        attributes: attribute names (default: the sentences).
        vit_state: timm ViT state dict for the MM-former (mm_init "vit_b16_imagenet" or a path);
            None = random blocks of that architecture.

    Attributes:
        config: the resolved, frozen config.
        attributes, sentences: the attribute names and sentences, in logit order.
        return_attention: when True, forward() also returns attention maps in `extras`.
    """

    # Strict-loading tables (parkit.model.strict_load).
    # Settings that change tensor shapes or the set of saved tensors: a checkpoint must agree on them.
    SHAPE_SETTINGS = ("kind", "backbone", "vis_prompt", "vis_depth", "use_div", "div_num", "use_textprompt",
                      "text_prompt", "use_gl", "use_mm_former", "mm_layers", "fusion_width", "visual_embed",
                      "train_visual_embed", "train_mm_norms", "num_attributes")
    # Settings that only change behaviour: a checkpoint loads, but results may differ.
    BEHAVIOUR_SETTINGS = ("text_prompt_placement", "ln_post", "global_token", "gl_aggregation", "gl_softmax",
                          "ag_threshold", "normalization", "use_vismask", "overlap_row", "mm_init",
                          "mm_drop_path", "sentences")
    # Which setting decides whether a key exists at all (missing/unexpected keys).
    KEY_SETTINGS = (
        ("visual.prompt_deep", "vis_prompt (0 = no visual prompts)"),
        ("visual.part_class_embedding", "use_div"),
        ("text.prompt_text_deep", "use_textprompt"),
        ("gl.*", "use_gl"),
        ("fusion.visual_embed.*", "visual_embed / train_visual_embed"),
        ("fusion.token_mixer.*", "use_mm_former"),
        ("fusion.blocks.*.norm*", "use_mm_former / mm_layers / train_mm_norms"),
        ("fusion.blocks.*", "use_mm_former / mm_layers / mm_init ('random' blocks are saved)"),
    )
    # Which setting each dimension of a trainable tensor depends on (shape mismatches).
    DIMENSION_SETTINGS = (
        ("visual.prompt_deep", ("vis_depth", "vis_prompt", "backbone vision width")),
        ("visual.part_class_embedding", ("div_num", "backbone vision width")),
        ("text.prompt_text_deep", ("backbone text layers", "text_prompt", "attribute count",
                                   "backbone text width")),
        ("gl.agg_bn.*", ("attribute count",)),
        ("fusion.word_embed.weight", ("fusion_width", "backbone embedding width")),
        ("fusion.visual_embed.weight", ("fusion_width", "backbone embedding width")),
        ("fusion.token_mixer.weight", ("attribute count",
                                       "attribute count + visual tokens (vis_prompt, div_num, grid)")),
        ("fusion.token_mixer.bias", ("attribute count",)),
        ("fusion.heads.weight", ("attribute count", "fusion_width")),
        ("fusion.heads.bias", ("attribute count",)),
        ("fusion.bn.*", ("attribute count",)),
        ("fusion.*", ("fusion_width",)),
    )

    def __init__(self, clip_model: nn.Module, sentences: Sequence[str], config: PromptPARConfig,
                 attributes: Optional[Sequence[str]] = None, vit_state: Optional[Mapping] = None):
        super().__init__()
        if config.kind != "promptpar":
            raise ConfigError(f"PromptPAR builds kind='promptpar' configs, got kind={config.kind!r} "
                              f"(use parkit.model.create_model for baselines)")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("PromptPAR needs at least one attribute sentence")
        attributes = list(attributes) if attributes is not None else list(sentences)
        if len(attributes) != len(sentences):
            raise ValueError(f"{len(attributes)} attribute names for {len(sentences)} sentences")
        dims = backbone_dims(clip_model)
        config = resolve(config, dims)
        self.config = config
        self.dims = dims
        self._attributes = attributes
        self._sentences = sentences
        self.return_attention = False

        for p in clip_model.parameters():  # CLIP is frozen (spec §7.2)
            p.requires_grad_(False)
        self.visual = PromptedVisualEncoder(clip_model.visual, config, dims)
        self.text = PromptedTextEncoder(clip_model, sentences, config, dims)
        self.logit_scale = clip_model.logit_scale  # frozen; exp() = 100 for pretrained CLIP
        a = len(sentences)
        self.gl = (GlobalLocalSimilarity(a, config.ag_threshold, config.gl_aggregation, config.gl_softmax)
                   if config.use_gl else None)
        blocks = norm = None
        self.mm_source = None
        if config.use_mm_former:
            blocks, norm, self.mm_source = build_mm_blocks(config, dims, clip_model.visual, vit_state)
        self.fusion = FusionHead(config, dims, a, self.visual.layout.length, blocks, norm)
        self._groups = self._build_groups()
        self._set_trainable()

    # -----------------------------------------------------------------------------------------
    # Facts
    # -----------------------------------------------------------------------------------------
    @property
    def layout(self):
        """The visual `TokenLayout` (token indices of CLS, parts, prompts, patches)."""
        return self.visual.layout

    @property
    def stripes(self):
        """Inclusive patch-row ranges of the stripes."""
        return self.visual.stripes

    # -----------------------------------------------------------------------------------------
    # Forward
    # -----------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """Predict attribute logits.

        Args:
            images: (B, 3, H, W) normalised with `normalization`, H = W = `image_size`.
            return_attention: override `self.return_attention` for this call.

        Returns:
            PAROutput(logits (B, A), aux_logits (B, A) or None, extras). With attention requested,
            extras holds "visual_attention" (B, L, L) of the last visual layer (head average),
            "cls_patch_attention" (B, G, G) and "part_patch_attention" (B, div_num, G, G) (rows of
            it over the patch grid) and "fusion_attention" (B, A + L, A + L) of the last MM block.
        """
        want = self.return_attention if return_attention is None else bool(return_attention)
        vis = self.visual(images, return_attention=want)
        text = self.text()  # (A, E)
        aux = None
        if self.gl is not None:
            aux = self.gl(vis.regions, text, self.logit_scale.exp())
        extras: dict = {}
        if want:
            logits, mm_attention = self.fusion(text, vis.tokens, return_attention=True)
            lay = self.visual.layout
            grid = (lay.grid_rows, lay.grid_cols)
            att = vis.attention  # (B, L, L)
            extras["visual_attention"] = att
            extras["cls_patch_attention"] = att[:, 0, lay.patch_start:].reshape(-1, *grid)
            if lay.part_positions:
                extras["part_patch_attention"] = att[:, list(lay.part_positions), lay.patch_start:].reshape(
                    att.shape[0], len(lay.part_positions), *grid)
            if mm_attention is not None:
                extras["fusion_attention"] = mm_attention
        else:
            logits = self.fusion(text, vis.tokens)
        return PAROutput(logits=logits, aux_logits=aux, extras=extras)

    # -----------------------------------------------------------------------------------------
    # Trainable groups (explicit lists, never substring matching: spec §7.1, §14.7)
    # -----------------------------------------------------------------------------------------
    def _build_groups(self) -> List[dict]:
        """Every parameter, in named groups: [{group, side, names, trainable, official, inert}].

        side: "prompt" / "fusion" (the two optimisers, spec §9) or "frozen".
        official: whether the official substring rule (spec §7.1) would train the group.
        inert: elements that are trained but provably never affect the output.
        """
        cfg = self.config
        named = dict(self.named_parameters())
        rows: List[dict] = []
        taken: set = set()

        def add(group, side, names, trainable, official, inert=0, note=""):
            names = [n for n in names if n in named]
            if not names:
                return
            taken.update(names)
            rows.append(dict(group=group, side=side, names=names, trainable=trainable, official=official,
                             inert=inert, note=note))

        unused = 0
        if self.visual.prompt_deep is not None:
            extra_layers = max(0, cfg.vis_depth - self.dims.vision_layers)
            unused = extra_layers * cfg.vis_prompt * self.dims.vision_width
        add("visual prompts", "prompt", ["visual.prompt_deep"], True, True, unused,
            f"{unused} values of layers beyond the backbone depth are never used" if unused else "")
        add("part tokens", "prompt", ["visual.part_class_embedding"], True, True)
        text_inert = (self.text.prompt_text_deep.numel()
                      if self.text.prompt_text_deep is not None and self.text.placement == "official" else 0)
        add("text prompts", "prompt", ["text.prompt_text_deep"], True, True, text_inert,
            "official placement: inert (spec §6)" if text_inert else "")
        add("GL branch (tau, agg_bn)", "prompt", ["gl.temperature", "gl.agg_bn.weight", "gl.agg_bn.bias"],
            True, True)
        add("word_embed", "fusion", ["fusion.word_embed.weight", "fusion.word_embed.bias"], True, True)
        add("visual_embed", "fusion" if cfg.train_visual_embed else "frozen",
            ["fusion.visual_embed.weight", "fusion.visual_embed.bias"], cfg.train_visual_embed,
            cfg.train_visual_embed, note="" if cfg.train_visual_embed else "frozen (released checkpoints)")
        if self.fusion.blocks is not None:
            norms = [n for n in named if n.startswith("fusion.blocks.") and (".norm1." in n or ".norm2." in n)]
            add("MM-former norms", "fusion" if cfg.train_mm_norms else "frozen", norms, cfg.train_mm_norms,
                True, note="trained by the official 'norm' substring rule (spec §7.1)")
            rest = [n for n in named if n.startswith("fusion.blocks.") and n not in taken]
            add("MM-former (frozen)", "frozen", rest, False, False, note=f"init: {self.mm_source}")
        add("token mixer", "fusion", ["fusion.token_mixer.weight", "fusion.token_mixer.bias"], True, True)
        add("final norm", "fusion", ["fusion.norm.weight", "fusion.norm.bias"], True, True)
        add("heads", "fusion", ["fusion.heads.weight", "fusion.heads.bias"], True, True)
        add("bn", "fusion", ["fusion.bn.weight", "fusion.bn.bias"], True, True)
        add("CLIP visual (frozen)", "frozen", [n for n in named if n.startswith("visual.") and n not in taken],
            False, False)
        add("CLIP text (frozen)", "frozen", [n for n in named if n.startswith("text.") and n not in taken],
            False, False)
        add("CLIP logit_scale (frozen)", "frozen", ["logit_scale"], False, False)
        leftover = [n for n in named if n not in taken]
        if leftover:  # every parameter must be accounted for explicitly
            raise RuntimeError(f"parameters not assigned to a group: {leftover}")
        return rows

    def _set_trainable(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        for row in self._groups:
            if row["trainable"]:
                for name in row["names"]:
                    self.get_parameter(name).requires_grad_(True)

    def trainable_parameter_names(self) -> Dict[str, List[str]]:
        """{"prompt": [...], "fusion": [...]}: names of the parameters each optimiser trains."""
        out: Dict[str, List[str]] = {"prompt": [], "fusion": []}
        for row in self._groups:
            if row["trainable"]:
                out[row["side"]].extend(row["names"])
        return out

    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """The parameters of the two optimisers (spec §9): {"prompt": [...], "fusion": [...]}.

        prompt: visual prompts, part tokens, text prompts, agg_bn, tau.
        fusion: word_embed, visual_embed (if trained), MM-former norms (if trained), token mixer,
        final norm, heads, bn.
        """
        return {side: [self.get_parameter(n) for n in names]
                for side, names in self.trainable_parameter_names().items()}

    def inert_parameter_names(self) -> List[str]:
        """Trainable parameters that never affect the output: the text prompts in the official
        placement (spec §6). Prompts of layers beyond the backbone depth are only part of
        `visual.prompt_deep` and are reported as "inert" elements by `parameter_report`."""
        names = []
        if self.text.prompt_text_deep is not None and self.text.placement == "official":
            names.append("text.prompt_text_deep")
        return names

    # -----------------------------------------------------------------------------------------
    # Checkpoints
    # -----------------------------------------------------------------------------------------
    def trainable_state_keys(self) -> List[str]:
        """Keys of the trainable state: trained tensors, BN statistics, and frozen tensors that no
        pretrained file can restore (a frozen random visual_embed; MM blocks with mm_init='random')."""
        keys: List[str] = []
        for row in self._groups:
            if row["trainable"]:
                keys.extend(row["names"])
        bn_modules = [("fusion.bn", self.fusion.bn)] + ([("gl.agg_bn", self.gl.agg_bn)] if self.gl else [])
        for prefix, _ in bn_modules:
            keys.extend(f"{prefix}.{b}" for b in ("running_mean", "running_var", "num_batches_tracked"))
        named = dict(self.named_parameters())
        if self.fusion.visual_embed is not None and not self.config.train_visual_embed:
            keys.extend(["fusion.visual_embed.weight", "fusion.visual_embed.bias"])
        if self.fusion.blocks is not None and self.config.mm_init == "random":
            keys.extend(n for n in named if n.startswith("fusion.blocks.") and n not in keys)
        return keys

    def _after_load(self) -> None:
        self.text.clear_cache()  # cached text features depend on the loaded text prompts

    # -----------------------------------------------------------------------------------------
    # Reporting
    # -----------------------------------------------------------------------------------------
    def parameter_report(self) -> List[dict]:
        """Parameter counts by named group.

        Returns:
            One dict per group: {"group", "side" ("prompt" | "fusion" | "frozen"), "parameters",
            "trainable" (bool), "official" (would the official substring rule train it), "inert"
            (trained elements that never affect the output), "note"}.
        """
        rows = []
        for row in self._groups:
            n = sum(self.get_parameter(name).numel() for name in row["names"])
            rows.append(dict(group=row["group"], side=row["side"], parameters=n, trainable=row["trainable"],
                             official=row["official"], inert=row["inert"], note=row["note"]))
        return rows

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.backbone}, attributes={self.num_attributes}, P={c.vis_prompt}, "
                f"vis_depth={c.vis_depth}, div={c.div_num if c.use_div else 0}, tokens={self.visual.layout.length}")
