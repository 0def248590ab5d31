"""Baselines that share PromptPAR's model contract: zero-shot CLIP, linear probe, full fine-tuning, VTB.

Each baseline is a `parkit.model.contract.PARModel` built by `build_baseline(kind, clip_model,
attributes, sentences, config)` from a `PromptPARConfig` whose `kind` names it. `param_groups()` has
the keys "prompt" (the backbone-side optimiser, spec §9) and "fusion" (the head-side optimiser); a
group may be empty. Saving, strict loading and the eval transform come from `PARModel`.

| kind | what is trained | logits |
|---|---|---|
| `zeroshot` | nothing (a calibrated per-attribute offset) | s * (cos(image, sentence_j) - b_j) |
| `linear_probe` | Linear(embed, A) + BatchNorm1d(A) | head(frozen CLIP image feature) |
| `finetune` | the whole CLIP vision tower + the same head | head(CLIP image feature) |
| `vtb` | embeddings, 1-2 transformer blocks, heads, BN | VTB-style fusion of frozen tokens |

Trainable tensors are chosen by explicit module lists, never by name matching (STYLE.md). The
frozen CLIP parts run without autograd in train mode (nothing to train there, and it saves the
activation memory); in eval mode autograd follows the caller, so Grad-CAM can reach the input.

Where these differ from PromptPAR on purpose: CLIP image features are the standard ones (`ln_post`
on the CLS token, then `proj`); the prompt-specific official quirks of spec §14 do not apply.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from parkit.backbone import tokenize
from parkit.model.config import (BASELINE_KINDS, ConfigError, PromptPARConfig, backbone_dims, resolve)
from parkit.model.contract import PARModel, PAROutput
from parkit.model.fusion import AttributeHeads, build_mm_blocks

__all__ = ["build_baseline", "ZeroShotCLIP", "LinearProbe", "FineTune", "VTBFusion", "BASELINE_KINDS"]


def _par_output(logits: torch.Tensor, aux_logits: Optional[torch.Tensor], extras: dict) -> PAROutput:
    """The contract's output type, shared with PromptPAR."""
    return PAROutput(logits=logits, aux_logits=aux_logits, extras=extras)


# ---------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------
class _Baseline(PARModel):
    """Common contract: explicit trainable modules, strict trainable-state loading, input checks.

    Subclasses fill `self._groups` ({"prompt": [attribute names], "fusion": [attribute names]}) with
    the names of the submodules or parameters that train, and `self._extra_state` with the names of
    buffers that belong in a checkpoint although nothing optimises them (e.g. calibrated offsets).
    Saving and loading come from `PARModel`; the tables below name the setting behind a mismatch.
    """

    kind = ""
    # Strict-loading tables (parkit.model.strict_load); the VTB class extends the settings.
    KEY_SETTINGS = (
        ("offset", "kind (zeroshot calibration offsets)"),
        ("head.*", "kind (the linear_probe / finetune head)"),
        ("visual.*", "kind (finetune saves the CLIP vision tower, promptpar its visual prompts)"),
        ("visual_embed.*", "kind, or visual_embed (vtb)"),
        ("blocks.*", "kind, or mm_layers (vtb)"),
    )
    DIMENSION_SETTINGS = (
        ("offset", ("attribute count",)),
        ("head.linear.weight", ("attribute count", "backbone embedding width")),
        ("head.linear.bias", ("attribute count",)),
        ("head.bn.*", ("attribute count",)),
        ("visual.*", ("backbone", "backbone", "backbone", "backbone")),
        ("word_embed.weight", ("fusion_width", "backbone embedding width")),
        ("visual_embed.weight", ("fusion_width", "backbone embedding width")),
        ("type_embed", ("modality (text, image)", "fusion_width")),
        ("heads.weight", ("attribute count", "fusion_width")),
        ("heads.bias", ("attribute count",)),
        ("bn.*", ("attribute count",)),
        ("*", ("fusion_width",)),
    )

    def __init__(self, clip_model: nn.Module, attributes: Sequence[str], sentences: Sequence[str],
                 config: PromptPARConfig):
        super().__init__()
        attributes, sentences = list(attributes), list(sentences)
        if not attributes:
            raise ValueError(f"{self.kind}: the attribute list is empty")
        if len(sentences) != len(attributes):
            raise ValueError(
                f"{self.kind}: {len(attributes)} attributes but {len(sentences)} sentences; give one "
                f"sentence per attribute (parkit.attributes.get_schema(name).sentences)")
        self.dims = backbone_dims(clip_model)
        config = resolve(config, self.dims)
        if config.image_size != self.dims.image_size:
            raise ConfigError(
                f"image_size={config.image_size} does not match the backbone's {self.dims.image_size} px "
                f"(CLIP's positional embedding has a fixed grid); set image_size=None")
        self.config = config
        self._attributes = attributes
        self._sentences = sentences
        self._groups: Dict[str, List[str]] = {"prompt": [], "fusion": []}
        self._extra_state: List[str] = []

    # -- the contract ---------------------------------------------------------------------
    def _trainable_items(self) -> Iterable[Tuple[str, str, object]]:
        """(group, name, module or parameter) for every explicitly trainable entry."""
        for group, names in self._groups.items():
            for name in names:
                yield group, name, getattr(self, name)

    def _freeze(self) -> None:
        """requires_grad = True exactly for the parameters of the trainable entries."""
        for p in self.parameters():
            p.requires_grad_(False)
        for _, _, item in self._trainable_items():
            params = [item] if isinstance(item, nn.Parameter) else list(item.parameters())
            for p in params:
                p.requires_grad_(True)

    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """Parameters per optimiser: {"prompt": [...], "fusion": [...]} (either may be empty)."""
        out: Dict[str, List[nn.Parameter]] = {"prompt": [], "fusion": []}
        for group, _, item in self._trainable_items():
            out[group].extend([item] if isinstance(item, nn.Parameter) else list(item.parameters()))
        return out

    def trainable_state_keys(self) -> List[str]:
        """The trained entries (with their BatchNorm statistics) and the calibration buffers."""
        keys: List[str] = []
        for _, name, item in self._trainable_items():
            if isinstance(item, nn.Parameter):
                keys.append(name)
            else:
                keys.extend(f"{name}.{key}" for key in item.state_dict(keep_vars=True))
        return keys + list(self._extra_state)

    def parameter_report(self) -> List[dict]:
        """Parameter counts per top-level submodule or parameter, split into trained and frozen.

        The frozen part of an entry is reported as "<name> (frozen)". The official substring rule
        (spec §7.1) is PromptPAR's; for a baseline "official" equals "trainable", and nothing is
        inert. See `PARModel.parameter_report` for the row fields.
        """
        side_of = {name: side for side, names in self._groups.items() for name in names}
        entries = [*self.named_children(), *self.named_parameters(recurse=False)]
        rows, seen = [], set()
        for name, item in entries:
            params = [item] if isinstance(item, nn.Parameter) else list(item.parameters())
            params = [p for p in params if id(p) not in seen]  # a shared tensor counts once
            seen.update(id(p) for p in params)
            trained = sum(p.numel() for p in params if p.requires_grad)
            frozen = sum(p.numel() for p in params if not p.requires_grad)
            if trained:
                rows.append(dict(group=name, side=side_of.get(name, "frozen"), parameters=trained,
                                 trainable=True, official=True, inert=0, note=""))
            if frozen:
                rows.append(dict(group=f"{name} (frozen)", side="frozen", parameters=frozen, trainable=False,
                                 official=False, inert=0, note=""))
        return rows

    # -- helpers --------------------------------------------------------------------------
    def _check_images(self, images: torch.Tensor) -> None:
        s = self.image_size
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
                or tuple(images.shape[-2:]) != (s, s):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.kind}: expected images of shape (B, 3, {s}, {s}), got {shape}; "
                             f"letterbox/resize them to model.image_size = {s}")

    def _frozen_context(self):
        """No autograd through frozen parts in train mode; in eval mode autograd follows the caller."""
        return torch.no_grad() if self.training else contextlib.nullcontext()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, attributes={self.num_attributes}"


def _visual_dtype(visual: nn.Module) -> torch.dtype:
    return visual.conv1.weight.dtype


def clip_image_features(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Standard CLIP image features: ln_post(CLS) @ proj, (B, embed) float32."""
    return visual(images.to(_visual_dtype(visual))).float()


def clip_visual_tokens(visual: nn.Module, images: torch.Tensor, ln_post: bool = True) -> torch.Tensor:
    """Every output token of a CLIP ViT (CLS first, then the patches), projected: (B, 1 + N, embed).

    Args:
        visual: a `clip.model.VisionTransformer`.
        images: (B, 3, H, W) normalised images.
        ln_post: apply `ln_post` to every token before `proj` (CLIP's aligned space; spec §14.5).
    """
    x = visual.conv1(images.to(_visual_dtype(visual)))                  # (B, W, g, g)
    x = x.flatten(2).transpose(1, 2)                                     # (B, N, W)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)  # (B, 1 + N, W)
    x = visual.ln_pre(x)
    x = visual.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)          # CLIP blocks are sequence-first
    if ln_post:
        x = visual.ln_post(x)
    return (x @ visual.proj.to(x.dtype)).float()                         # (B, 1 + N, embed)


def clip_text_features(clip_model: nn.Module, sentences: Sequence[str], normalize: bool = True
                       ) -> torch.Tensor:
    """Frozen CLIP text features of the sentences (EOT token @ text_projection): (A, embed) float32.

    Args:
        clip_model: a `clip.model.CLIP`.
        sentences: A sentences.
        normalize: L2-normalise each feature (for cosine similarities).
    """
    device = clip_model.positional_embedding.device
    tokens = tokenize(list(sentences), context_length=clip_model.positional_embedding.shape[0]).to(device)
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        feats = clip_model.encode_text(tokens).float()                    # (A, embed)
    return F.normalize(feats, dim=-1) if normalize else feats


class _HeadBN(nn.Module):
    """Linear(embed, A) followed by BatchNorm1d(A) on the logits (as PromptPAR's `bn`, spec §3.5)."""

    def __init__(self, in_features: int, num_attributes: int):
        super().__init__()
        self.linear = nn.Linear(in_features, num_attributes)
        self.bn = nn.BatchNorm1d(num_attributes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x.to(self.linear.weight.dtype)).float())


# ---------------------------------------------------------------------------------------------
# Zero-shot CLIP
# ---------------------------------------------------------------------------------------------
class ZeroShotCLIP(_Baseline):
    """Zero-shot CLIP: logits = s * (cos(image, sentence_j) - b_j), nothing trained.

    s = exp(CLIP logit_scale) (100 for pretrained CLIP). The offsets b_j (buffer `offset`, (A,))
    make a fixed threshold meaningful: raw cosines of an image with every sentence sit around
    0.2-0.3, so sigmoid(s * cos) would call every attribute present. `calibrate(loader)` sets b_j
    to the median cosine of attribute j over the given (training) images, so that each attribute
    is predicted for about half of them -- the operating point that balances positive and negative
    recall, which is what mA rewards --; `method="prior"` instead sets b_j to the (1 - r_j)
    quantile, r_j the positive ratio of the labels, so attribute j is predicted as often as it
    occurs. Before calibration b = 0. The offsets are part of `trainable_state_dict()`, so a saved
    zero-shot model keeps its calibration.
    """

    kind = "zeroshot"

    def __init__(self, clip_model, attributes, sentences, config):
        super().__init__(clip_model, attributes, sentences, config)
        self.clip = clip_model
        self.register_buffer("offset", torch.zeros(self.num_attributes,
                                                   device=clip_model.positional_embedding.device))
        self.register_buffer("text_features", None, persistent=False)   # (A, embed), lazily computed
        self._extra_state = ["offset"]
        self.calibrated = False
        self._freeze()

    def text(self) -> torch.Tensor:
        """Normalised sentence features (A, embed), computed once (the text tower is frozen)."""
        if self.text_features is None:
            self.text_features = clip_text_features(self.clip, self.sentences)
        return self.text_features

    def cosine(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every image with every sentence: (B, A) float32."""
        self._check_images(images)
        with self._frozen_context():
            img = F.normalize(clip_image_features(self.clip.visual, images), dim=-1)  # (B, embed)
        return img @ self.text().to(img.device).t()

    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """(B, 3, S, S) images -> PAROutput(logits (B, A), None, {"cosine": (B, A)})."""
        cos = self.cosine(images)
        scale = self.clip.logit_scale.detach().float().exp()
        return _par_output(scale * (cos - self.offset), None, {"cosine": cos})

    @torch.no_grad()
    def calibrate(self, loader: Iterable, method: str = "median", max_batches: Optional[int] = None
                  ) -> torch.Tensor:
        """Set the offsets b_j from images (use the training split: never the test split).

        Args:
            loader: yields batches whose first element is a (B, 3, S, S) image tensor; with
                method="prior" the second is the (B, A) {0, 1} target and an optional third the
                (B, A) bool ignore mask (the `PARTorchDataset` layout).
            method: "median" (b_j = median cosine) or "prior" (b_j = (1 - r_j) quantile).
            max_batches: stop after this many batches (None = the whole loader).

        Returns:
            The new offsets (A,).
        """
        if method not in ("median", "prior"):
            raise ValueError(f"method must be 'median' or 'prior', got {method!r}")
        was_training = self.training
        self.eval()
        device = self.offset.device
        cosines, targets, ignores = [], [], []
        try:
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                cosines.append(self.cosine(images.to(device)).cpu())
                if method == "prior":
                    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                        raise ValueError("calibrate(method='prior') needs batches (images, targets[, ignore])")
                    targets.append(batch[1].float().cpu())
                    ignores.append(batch[2].bool().cpu() if len(batch) > 2 and torch.is_tensor(batch[2])
                                   else torch.zeros_like(batch[1], dtype=torch.bool).cpu())
        finally:
            self.train(was_training)
        if not cosines:
            raise ValueError("calibrate() got an empty loader")
        cos = torch.cat(cosines)                                          # (N, A)
        if method == "median":
            offset = cos.median(dim=0).values
        else:
            y, ign = torch.cat(targets), torch.cat(ignores)
            counted = (~ign).float()
            ratio = ((y > 0.5).float() * counted).sum(0) / counted.sum(0).clamp_min(1)  # (A,)
            q = (1 - ratio).clamp(0, 1)
            offset = torch.stack([torch.quantile(cos[:, j], q[j]) for j in range(cos.shape[1])])
        self.offset.copy_(offset.to(device))
        self.calibrated = True
        return self.offset.clone()


# ---------------------------------------------------------------------------------------------
# Linear probe and full fine-tuning
# ---------------------------------------------------------------------------------------------
class _FeatureCache:
    """A bounded LRU map from image bytes to a frozen feature vector.

    Keyed by a BLAKE2 digest of the image tensor's bytes, shape and dtype: exact, content-based,
    valid as long as the encoder is frozen. Worth it when the same images come back (evaluation
    every epoch, or training without augmentation) and hashing is cheap next to the encoder -- on
    the CPU, where a ViT-L/14 forward costs over a second per image; on a GPU the copy to host for
    hashing may cost more than it saves.
    """

    def __init__(self, max_items: int):
        self.max_items = int(max_items)
        self._data: "OrderedDict[bytes, torch.Tensor]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        h.update(str((tuple(image.shape), str(image.dtype))).encode())
        h.update(image.detach().contiguous().cpu().numpy().tobytes())
        return h.digest()

    def lookup(self, images: torch.Tensor, compute) -> torch.Tensor:
        """Features of a batch, computing only the unseen images with `compute(images) -> (n, E)`."""
        keys = [self.key(img) for img in images]
        missing = [i for i, k in enumerate(keys) if k not in self._data]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            feats = compute(images[missing]).detach()
            for i, f in zip(missing, feats):
                self._data[keys[i]] = f.cpu()
        out = []
        for k in keys:
            self._data.move_to_end(k)
            out.append(self._data[k])
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)
        return torch.stack(out).to(images.device)


class LinearProbe(_Baseline):
    """Frozen CLIP image features (ln_post + proj on CLS) -> Linear(embed, A) -> BatchNorm1d(A).

    Args:
        clip_model, attributes, sentences, config: see `build_baseline`.
        cache_features: keep the frozen features of seen images (`_FeatureCache`); used whenever
            no gradient has to reach the encoder (train mode, or autograd off).
        cache_size: most images the cache holds (embed * 4 bytes each: 3 KB for ViT-L/14).
    """

    kind = "linear_probe"

    def __init__(self, clip_model, attributes, sentences, config, cache_features: bool = False,
                 cache_size: int = 200_000):
        super().__init__(clip_model, attributes, sentences, config)
        self.visual = clip_model.visual          # the text tower is not used
        self.head = _HeadBN(self.dims.embed_dim, self.num_attributes).to(self.visual.proj.device)
        self._groups = {"prompt": [], "fusion": ["head"]}
        self.cache = _FeatureCache(cache_size) if cache_features else None
        self._freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen image features (B, embed), from the cache when allowed."""
        self._check_images(images)

        def compute(x: torch.Tensor) -> torch.Tensor:
            with self._frozen_context():
                return clip_image_features(self.visual, x)

        if self.cache is not None and (self.training or not torch.is_grad_enabled()):
            return self.cache.lookup(images, compute)
        return compute(images)

    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """(B, 3, S, S) images -> PAROutput(logits (B, A), None, {"features": (B, embed)})."""
        feats = self.features(images)
        return _par_output(self.head(feats), None, {"features": feats})


class FineTune(_Baseline):
    """Full fine-tuning: the whole CLIP vision tower trains, with Linear(embed, A) + BatchNorm1d(A).

    The vision tower is the "prompt" group (the backbone-side optimiser with `clip_lr`; full
    fine-tuning wants a much smaller rate than prompt tuning, e.g. 1e-5) and the head the "fusion"
    group. The vision tower's weights are trained in place: build the model on a CLIP loaded for it
    (the factory does). `trainable_state_dict()` therefore holds the whole tower.
    """

    kind = "finetune"

    def __init__(self, clip_model, attributes, sentences, config):
        super().__init__(clip_model, attributes, sentences, config)
        self.visual = clip_model.visual
        self.head = _HeadBN(self.dims.embed_dim, self.num_attributes).to(self.visual.proj.device)
        self._groups = {"prompt": ["visual"], "fusion": ["head"]}
        self._freeze()

    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """(B, 3, S, S) images -> PAROutput(logits (B, A), None, {"features": (B, embed)})."""
        self._check_images(images)
        feats = clip_image_features(self.visual, images)
        return _par_output(self.head(feats), None, {"features": feats})


# ---------------------------------------------------------------------------------------------
# VTB-style fusion
# ---------------------------------------------------------------------------------------------
class VTBFusion(_Baseline):
    """VTB-style vision-text fusion on frozen CLIP (after Cheng et al., "A Simple Visual-Textual
    Baseline for Pedestrian Attribute Recognition", TCSVT 2022), with no prompts.

        T (A, E) frozen sentence features -> word_embed -> + type_embed[0]   ┐
        F (B, 1+N, E) frozen CLIP tokens   -> visual_embed -> + type_embed[1] ┴-> concat (B, A+1+N, W)
        -> mm_layers trainable blocks -> norm -> one Linear(W, 1) per text token -> bn -> (B, A)

    Unlike PromptPAR's MM-former every block trains, and a learned modality (type) embedding tells
    text tokens from image tokens, as in VTB. The blocks are initialised per `config.mm_init`
    (`parkit.model.fusion.build_mm_blocks`: ImageNet ViT-B/16 blocks from `vit_state`, the
    backbone's last blocks copied, or random). CLIP tokens get `ln_post` when `config.ln_post`.

    `forward(images, return_attention=True)` adds the explain extras (mm_attention, token_layout,
    patch_grid, mm_input) so attention maps and Grad-CAM work as for PromptPAR.
    """

    kind = "vtb"
    SHAPE_SETTINGS = _Baseline.SHAPE_SETTINGS + ("fusion_width", "mm_layers", "visual_embed")
    BEHAVIOUR_SETTINGS = _Baseline.BEHAVIOUR_SETTINGS + ("ln_post", "mm_init", "mm_drop_path")

    def __init__(self, clip_model, attributes, sentences, config, vit_state: Optional[Mapping] = None):
        super().__init__(clip_model, attributes, sentences, config)
        cfg, dims = self.config, self.dims
        width = cfg.fusion_width
        if not cfg.visual_embed and width != dims.embed_dim:
            raise ConfigError(f"vtb with visual_embed=False needs fusion_width == the CLIP embedding "
                              f"width {dims.embed_dim}, got {width}; set visual_embed=True")
        if cfg.mm_init == "backbone_last" and width != dims.vision_width:
            raise ConfigError(f"vtb with mm_init='backbone_last' copies {dims.vision_width}-wide CLIP blocks; "
                              f"fusion_width is {width}. Set fusion_width=None")
        if cfg.mm_init != "backbone_last" and width % 64:
            raise ConfigError(f"vtb fusion_width={width} must be a multiple of 64 (64-wide heads)")
        device = clip_model.positional_embedding.device
        self.clip = clip_model
        self.register_buffer("text_features", None, persistent=False)   # (A, E) lazily computed
        self.word_embed = nn.Linear(dims.embed_dim, width)
        self.visual_embed = nn.Linear(dims.embed_dim, width) if cfg.visual_embed else None
        self.type_embed = nn.Parameter(torch.randn(2, width, device=device) * 0.02)  # 0 = text, 1 = image
        blocks, norm, self.mm_source = build_mm_blocks(cfg, dims, clip_model.visual, vit_state)
        self.blocks, self.norm = blocks, norm
        self.heads = AttributeHeads(self.num_attributes, width)
        self.bn = nn.BatchNorm1d(self.num_attributes)
        for name in ("word_embed", "visual_embed", "blocks", "norm", "heads", "bn"):
            module = getattr(self, name)
            if module is not None:
                module.to(device)
        self._groups = {"prompt": [], "fusion": [n for n in ("word_embed", "visual_embed", "type_embed",
                                                             "blocks", "norm", "heads", "bn")
                                                  if getattr(self, n) is not None]}
        self._freeze()

    def text(self) -> torch.Tensor:
        """Frozen sentence features (A, E), computed once; unnormalised, as PromptPAR's T (spec §3.3)."""
        if self.text_features is None:
            self.text_features = clip_text_features(self.clip, self.sentences, normalize=False)
        return self.text_features

    def forward(self, images: torch.Tensor, return_attention: Optional[bool] = None) -> PAROutput:
        """(B, 3, S, S) images -> PAROutput(logits (B, A), None, extras).

        Extras: always {}; with return_attention the explain hook (see parkit.explain.attention).
        """
        self._check_images(images)
        with self._frozen_context():
            tokens = clip_visual_tokens(self.clip.visual, images, ln_post=self.config.ln_post)  # (B, 1+N, E)
        dtype = self.word_embed.weight.dtype
        b, a = tokens.shape[0], self.num_attributes
        t = self.word_embed(self.text().to(tokens.device, dtype)) + self.type_embed[0]  # (A, W)
        v = tokens.to(dtype)
        if self.visual_embed is not None:
            v = self.visual_embed(v)
        v = v + self.type_embed[1]                                          # (B, 1+N, W)
        x = torch.cat([t.unsqueeze(0).expand(b, -1, -1), v], dim=1)         # (B, A+1+N, W)
        mm_input = x
        probs = None
        for i, block in enumerate(self.blocks):
            x, p = block(x, need_attention=bool(return_attention) and i == len(self.blocks) - 1)
            probs = p if p is not None else probs
        x = self.norm(x)
        logits = self.bn(self.heads(x[:, :a]).float())                      # (B, A)
        extras: dict = {}
        if return_attention:  # None (the contract's default) = False
            grid = self.dims.grid
            extras = {"mm_attention": probs, "mm_input": mm_input, "patch_grid": (grid, grid),
                      "token_layout": {"text": range(0, a), "cls": range(a, a + 1),
                                       "patches": range(a + 1, a + 1 + grid * grid)}}
        return _par_output(logits, None, extras)


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------
_CLASSES = {"zeroshot": ZeroShotCLIP, "linear_probe": LinearProbe, "finetune": FineTune, "vtb": VTBFusion}


def build_baseline(kind: str, clip_model: nn.Module, attributes: Sequence[str], sentences: Sequence[str],
                   config: Optional[PromptPARConfig] = None, **options) -> PARModel:
    """Build a baseline model on a CLIP backbone.

    Args:
        kind: one of `BASELINE_KINDS` ("zeroshot", "linear_probe", "finetune", "vtb").
        clip_model: a ViT `clip.model.CLIP` (fp32 recommended). Its parameters are frozen in place
            (finetune: its vision tower is trained in place).
        attributes: attribute names (A).
        sentences: one sentence per attribute (used by zeroshot and vtb; kept by all).
        config: a `PromptPARConfig`; its `kind` is set to `kind`. Fields read: image_size,
            normalization, and for vtb fusion_width, mm_layers, mm_init, mm_drop_path,
            visual_embed, ln_post. Default: `PromptPARConfig(kind=kind)`.
        **options: per-kind extras: linear_probe `cache_features` (bool), `cache_size` (int);
            vtb `vit_state` (a timm ViT state dict for mm_init="vit_b16_imagenet"; None = random
            blocks of that architecture).

    Returns:
        The model (a `PARModel`).

    Raises:
        ConfigError: unknown kind, or settings that do not fit the backbone.
        TypeError: an option the kind does not take.
    """
    if kind not in _CLASSES:
        raise ConfigError(f"unknown baseline kind {kind!r}; choose one of {list(_CLASSES)} "
                          f"(PromptPAR itself and plain VPT-deep are built by create_model)")
    if config is None:
        config = PromptPARConfig(kind=kind)
    elif config.kind != kind:
        config = config.replace(kind=kind)
    cls = _CLASSES[kind]
    try:
        return cls(clip_model, attributes, sentences, config, **options)
    except TypeError as exc:
        if options and "unexpected keyword" in str(exc):
            raise TypeError(f"baseline {kind!r} does not take option(s) {sorted(options)}: {exc}") from None
        raise
