"""Released PromptPAR checkpoints: reading them into parkit, and writing parkit models back out.

An official checkpoint (spec §12, §14.15; layout in shared/spec/official_layout_peta_vitl14.json) is
a `torch.save` pickle holding

- `model_state_dict`: the classifier (`TransformerClassifier`): word_embed, vis_embed (released
  files) or visual_embed (HEAD code), norm, weight_layer.0..A-1 (one Linear(768, 1) per attribute),
  bn, blocks.0.* (the timm ViT-B/16 MM-former block);
- the CLIP model under `ViT_model` (what the test scripts read) or `clip_model` (what train.py
  writes): OpenAI CLIP's tensors plus prompt_deep, part_class_embedding, prompt_text_deep,
  softmax_model.temperature and agg_bn (fp16 on GPU in the official code);
- non-tensor objects (epoch, optimizer state, an EasyDict of metrics), so the file needs a full
  unpickle (`torch.load(weights_only=False)`), which can run arbitrary code: parkit reads with
  `weights_only=True` and unpickles only when asked to (`allow_pickle=True`, `--trust`).

`load_official_checkpoint` maps every tensor to a parkit `PromptPAR` through `LEGACY_KEY_MAP`, a
named table, builds the model with exactly the settings the released checkpoints were trained with
(`PromptPARConfig.official()`: inert text prompts, no ln_post, region token = first global
prompt, last-sample GL aggregation, 0.5/0.5 normalisation, the frozen 768x768 visual embedding,
...; sizes read off the tensors), and loads strictly: missing and unexpected keys are listed,
shape mismatches name the setting that decides them. `export_official_checkpoint` writes the
reverse mapping, loadable by the official scripts (and by this loader, without a full unpickle).
"""
from __future__ import annotations

import os
import pickle
import types
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from parkit.backbone import clip_config, list_backbones
from parkit.backbone.loading import BackboneFileError, build_clip, config_from_state_dict
from parkit.devices import resolve_device
from parkit.model.config import OFFICIAL_FLAGS, VIT_B16_WIDTH, ConfigError, PromptPARConfig
from parkit.model.factory import resolve_attributes
from parkit.model.promptpar import PromptPAR

PathLike = Union[str, os.PathLike]

__all__ = ["load_official_checkpoint", "export_official_checkpoint", "read_official_checkpoint",
           "official_state_dicts", "official_settings", "LEGACY_KEY_MAP", "KeyRule",
           "UntrustedCheckpointWarning", "OfficialCheckpointError"]


class UntrustedCheckpointWarning(UserWarning):
    """A checkpoint is being fully unpickled (`weights_only=False`): only do this for trusted files."""


class OfficialCheckpointError(ValueError):
    """An official checkpoint cannot be read or does not fit; the message names the key or setting."""


# ---------------------------------------------------------------------------------------------
# The key map
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRule:
    """One row of the official <-> parkit key map.

    Attributes:
        part: which official state dict: "clip" (checkpoint key ViT_model / clip_model) or
            "classifier" (model_state_dict).
        official: official key, or key prefix when it ends with ".".
        parkit: the `PromptPAR` state-dict key or prefix it maps to.
        transform: "copy"; "prompt" (official (D, P, 1, W) <-> parkit (D, P, W)); or "heads"
            (official weight_layer.i.{weight (1, W), bias (1,)} <-> parkit stacked (A, W), (A,)).
        legacy: True for names only the released checkpoints use (read, never written by default).
    """

    part: str
    official: str
    parkit: str
    transform: str = "copy"
    legacy: bool = False


# Every official tensor, in the official state-dict order (spec §3, §7.3; the layout JSON).
LEGACY_KEY_MAP: Tuple[KeyRule, ...] = (
    # --- CLIP side (checkpoint key "ViT_model" / "clip_model") -------------------------------
    KeyRule("clip", "positional_embedding", "text.positional_embedding"),
    KeyRule("clip", "text_projection", "text.text_projection"),
    KeyRule("clip", "logit_scale", "logit_scale"),
    KeyRule("clip", "softmax_model.temperature", "gl.temperature"),        # tau, spec §3.4
    KeyRule("clip", "agg_bn.", "gl.agg_bn."),
    KeyRule("clip", "visual.class_embedding", "visual.class_embedding"),
    KeyRule("clip", "visual.positional_embedding", "visual.positional_embedding"),
    KeyRule("clip", "visual.part_class_embedding", "visual.part_class_embedding"),
    KeyRule("clip", "visual.proj", "visual.proj"),
    KeyRule("clip", "visual.conv1.", "visual.conv1."),
    KeyRule("clip", "visual.ln_pre.", "visual.ln_pre."),
    KeyRule("clip", "visual.transformer.prompt_deep", "visual.prompt_deep", "prompt"),
    KeyRule("clip", "visual.transformer.resblocks.", "visual.transformer.resblocks."),
    KeyRule("clip", "visual.ln_post.", "visual.ln_post."),                  # stored, unused (§14.5)
    KeyRule("clip", "transformer.prompt_text_deep", "text.prompt_text_deep"),
    KeyRule("clip", "transformer.resblocks.", "text.transformer.resblocks."),
    KeyRule("clip", "token_embedding.", "text.token_embedding."),
    KeyRule("clip", "ln_final.", "text.ln_final."),
    # --- classifier (checkpoint key "model_state_dict") ---------------------------------------
    KeyRule("classifier", "word_embed.", "fusion.word_embed."),
    KeyRule("classifier", "visual_embed.", "fusion.visual_embed."),         # HEAD code (2025)
    KeyRule("classifier", "vis_embed.", "fusion.visual_embed.", legacy=True),  # released files, PR #74
    KeyRule("classifier", "norm.", "fusion.norm."),
    KeyRule("classifier", "weight_layer.", "fusion.heads.", "heads"),
    KeyRule("classifier", "bn.", "fusion.bn."),
    KeyRule("classifier", "blocks.", "fusion.blocks."),
)

# CLIP tensors that are not part of OpenAI's CLIP (added by PromptPAR to the CLIP module).
_PROMPTPAR_CLIP_EXTRAS = ("visual.transformer.prompt_deep", "visual.part_class_embedding",
                          "transformer.prompt_text_deep", "softmax_model.", "agg_bn.")

# Which setting decides an official tensor's shape (for error messages).
_SHAPE_SETTINGS = (
    ("visual.transformer.prompt_deep", "vis_depth / vis_prompt / backbone vision width"),
    ("visual.part_class_embedding", "div_num / backbone vision width"),
    ("transformer.prompt_text_deep", "text_prompt / number of attributes / backbone text width"),
    ("agg_bn.", "number of attributes"),
    ("bn.", "number of attributes"),
    ("weight_layer.", "number of attributes / fusion_width"),
    ("word_embed.", "fusion_width / backbone embedding width"),
    ("visual_embed.", "fusion_width / backbone embedding width"),
    ("vis_embed.", "fusion_width / backbone embedding width"),
    ("blocks.", "fusion_width / mm_layers"),
    ("norm.", "fusion_width"),
    ("visual.", "backbone (vision tower)"),
    ("", "backbone (text tower)"),
)


def _matches(rule: KeyRule, key: str) -> bool:
    return key.startswith(rule.official) if rule.official.endswith(".") else key == rule.official


def _setting_of(key: str) -> str:
    for prefix, setting in _SHAPE_SETTINGS:
        if key.startswith(prefix):
            return setting
    return "backbone"


# ---------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------
class _Unresolved(dict):
    """Stand-in for a class the checkpoint pickled but that cannot be imported here (e.g. EasyDict
    metrics): it keeps whatever state the pickle gives it, and is never needed for the weights."""

    def __new__(cls, *args, **kwargs):
        return dict.__new__(cls)

    def __init__(self, *args, **kwargs):
        super().__init__()
        if args or kwargs:
            self.__dict__["_args"] = (args, kwargs)

    def __setstate__(self, state):
        if isinstance(state, Mapping):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


def _tolerant_pickle_module(missing: List[str]) -> types.ModuleType:
    """A stand-in for the `pickle` module whose Unpickler replaces unimportable classes.

    torch.load(pickle_module=...) only uses `Unpickler` and `load`. Classes that cannot be imported
    here become `_Unresolved` subclasses and their dotted names are appended to `missing`.
    """

    class TolerantUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                missing.append(f"{module}.{name}")
                return type(name, (_Unresolved,), {"__module__": f"unresolved.{module}"})

    module = types.ModuleType("parkit_tolerant_pickle")
    module.Unpickler = TolerantUnpickler
    module.load = lambda f, **kw: TolerantUnpickler(f, **kw).load()
    return module


def read_official_checkpoint(path: PathLike, allow_pickle: bool = False,
                             stubbed: Optional[List[str]] = None) -> dict:
    """Read a checkpoint file onto the CPU, as safely as its content allows.

    Tries `torch.load(weights_only=True)` first (tensors and plain containers only). Released
    PromptPAR files also hold pickled objects (an EasyDict of metrics, the optimizer state), which
    only a full unpickle can read -- and a full unpickle can execute code from the file.

    Args:
        path: the checkpoint file.
        allow_pickle: False (default) = never unpickle: a file that `weights_only=True` cannot
            read raises, naming the file and this argument; True = you trust the file: unpickle it
            fully (an `UntrustedCheckpointWarning` still names it once).

    Returns:
        The checkpoint's top-level dict. Classes that cannot be imported here (e.g. `easydict`)
        are replaced by inert dict stand-ins.

    Raises:
        OfficialCheckpointError: the file is missing or unreadable, or needs a full unpickle and
            allow_pickle is False.
    """
    path = Path(path).expanduser()
    stubbed = [] if stubbed is None else stubbed
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint {path} does not exist (or is not a file)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the safe loader: decide below
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not allow_pickle:
            raise OfficialCheckpointError(
                f"{path} cannot be read with weights_only=True ({first}). Released PromptPAR "
                f"checkpoints contain pickled Python objects, and unpickling can execute code stored "
                f"in the file; if you trust its source, pass allow_pickle=True "
                f"(command line: --trust) to unpickle it fully.") from None
        warnings.warn(
            f"{path} is not a plain tensor file (weights_only=True failed: {first}); unpickling it "
            f"fully because allow_pickle=True: only do this for files from sources you trust.",
            UntrustedCheckpointWarning, stacklevel=3)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False,
                             pickle_module=_tolerant_pickle_module(stubbed))
        except Exception as exc2:  # noqa: BLE001
            raise OfficialCheckpointError(
                f"cannot read {path} ({path.stat().st_size} bytes): {type(exc2).__name__}: {exc2}. "
                f"The file may be truncated or not a torch checkpoint.") from None
    if not isinstance(obj, Mapping):
        raise OfficialCheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return dict(obj)


def _strip_module_prefix(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a DataParallel 'module.' prefix when every key has it."""
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def official_state_dicts(checkpoint: Mapping, source: str = "checkpoint"
                         ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], str]:
    """Pick the CLIP and classifier state dicts out of an official checkpoint dict.

    Args:
        checkpoint: the top-level dict (`read_official_checkpoint`).
        source: name for error messages.

    Returns:
        (clip_state, classifier_state, clip_key) with clip_key "ViT_model" or "clip_model".

    Raises:
        OfficialCheckpointError: a state dict is missing; the message lists the keys present.
    """
    clip_key = next((k for k in ("ViT_model", "clip_model") if isinstance(checkpoint.get(k), Mapping)), None)
    cls_sd = checkpoint.get("model_state_dict")
    if clip_key is None or not isinstance(cls_sd, Mapping):
        raise OfficialCheckpointError(
            f"{source} is not an official PromptPAR checkpoint: expected 'model_state_dict' and "
            f"'ViT_model' (test scripts) or 'clip_model' (train.py), found keys {sorted(checkpoint)}. "
            f"(A parkit checkpoint has 'format': 'parkit/1' and loads with parkit.train instead.)")
    clip_sd = {k: v for k, v in _strip_module_prefix(checkpoint[clip_key]).items() if torch.is_tensor(v)}
    cls_sd = {k: v for k, v in _strip_module_prefix(cls_sd).items() if torch.is_tensor(v)}
    return clip_sd, cls_sd, clip_key


# ---------------------------------------------------------------------------------------------
# Settings from shapes
# ---------------------------------------------------------------------------------------------
def _count(sd: Mapping, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def official_settings(clip_sd: Mapping[str, torch.Tensor], cls_sd: Mapping[str, torch.Tensor],
                      source: str = "checkpoint") -> Tuple[dict, dict, int]:
    """Read the model's sizes off the official tensors.

    Args:
        clip_sd, cls_sd: the official state dicts (`official_state_dicts`).
        source: name for error messages.

    Returns:
        (clip_config, config_overrides, num_attributes): `clip.model.CLIP` constructor arguments,
        `PromptPARConfig` fields on top of `OFFICIAL_FLAGS` (vis_prompt, vis_depth, use_div,
        div_num, use_gl, use_textprompt, text_prompt, mm_layers, fusion_width, visual_embed,
        mm_init), and A.

    Raises:
        OfficialCheckpointError: tensors are missing or disagree about the attribute count.
    """
    try:
        clip_cfg = config_from_state_dict(clip_sd, source=f"{source} (CLIP part)")
    except BackboneFileError as exc:
        raise OfficialCheckpointError(str(exc)) from None
    need = [k for k in ("visual.transformer.prompt_deep", "word_embed.weight", "bn.weight", "norm.weight")
            if k not in {**clip_sd, **cls_sd}]
    if need:
        raise OfficialCheckpointError(f"{source} lacks {need}: not a PromptPAR checkpoint")
    prompts = clip_sd["visual.transformer.prompt_deep"]                 # (depth, P, 1, W)
    if prompts.ndim != 4 or prompts.shape[2] != 1:
        raise OfficialCheckpointError(
            f"{source}: visual.transformer.prompt_deep has shape {tuple(prompts.shape)}, expected "
            f"(vis_depth, P, 1, width)")
    counts = {"bn.weight": cls_sd["bn.weight"].shape[0], "weight_layer.*": _count(cls_sd, "weight_layer.")}
    if "agg_bn.weight" in clip_sd:
        counts["agg_bn.weight"] = clip_sd["agg_bn.weight"].shape[0]
    text_prompts = clip_sd.get("transformer.prompt_text_deep")
    use_text = text_prompts is not None and text_prompts.numel() > 0
    if use_text:
        counts["transformer.prompt_text_deep"] = text_prompts.shape[2]
    if len(set(counts.values())) != 1:
        raise OfficialCheckpointError(f"{source}: the tensors disagree on the number of attributes: {counts}")
    num_attributes = counts["bn.weight"]
    use_div = "visual.part_class_embedding" in clip_sd
    vis_key = next((p for p in ("visual_embed", "vis_embed") if f"{p}.weight" in cls_sd), None)
    fusion_width = cls_sd["word_embed.weight"].shape[0]
    overrides = dict(
        vis_prompt=int(prompts.shape[1]),
        vis_depth=int(prompts.shape[0]),
        use_div=use_div,
        div_num=int(clip_sd["visual.part_class_embedding"].shape[0]) if use_div else OFFICIAL_FLAGS["div_num"],
        use_vismask=use_div,
        use_gl=use_div and "softmax_model.temperature" in clip_sd,
        use_textprompt=use_text,
        text_prompt=int(text_prompts.shape[1]) if use_text else 0,
        mm_layers=max(1, _count(cls_sd, "blocks.")),
        fusion_width=int(fusion_width),
        visual_embed=vis_key is not None,
        # The MM-former weights come from the checkpoint; "vit_b16_imagenet" names their origin when
        # the width is ViT-B's, otherwise (small test models) the same architecture is "random".
        mm_init="vit_b16_imagenet" if fusion_width == VIT_B16_WIDTH else "random",
    )
    if not use_div:
        overrides["global_token"] = "cls"   # the official bug needs the global prompt group
    return clip_cfg, overrides, int(num_attributes)


def _backbone_name(clip_cfg: Mapping, requested: Optional[str], source: str) -> str:
    """The backbone name whose architecture equals the checkpoint's CLIP (checked when requested)."""
    def comparable(cfg: Mapping) -> dict:
        return {k: v for k, v in cfg.items() if k != "transformer_heads"}   # not stored in the tensors

    if requested is not None:
        want = clip_config(requested)
        diffs = {k: (clip_cfg[k], want[k]) for k in comparable(want) if clip_cfg.get(k) != want[k]}
        if diffs:
            text = ", ".join(f"{k}: checkpoint {a}, {requested} {b}" for k, (a, b) in diffs.items())
            raise OfficialCheckpointError(
                f"{source} does not hold a {requested} CLIP ({text}); pass the checkpoint's backbone "
                f"or backbone=None to read it off the tensors")
        return requested
    for name in list_backbones():
        try:
            if comparable(clip_config(name)) == comparable(clip_cfg):
                return name
        except Exception:  # noqa: BLE001 - e.g. the micro asset missing: not a candidate
            continue
    return "custom"


# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------
def _rule_for(part: str, key: str) -> Optional[KeyRule]:
    for rule in LEGACY_KEY_MAP:
        if rule.part == part and _matches(rule, key):
            return rule
    return None


def official_to_parkit(clip_sd: Mapping[str, torch.Tensor], cls_sd: Mapping[str, torch.Tensor],
                       num_attributes: int) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Map official tensors to `PromptPAR` state-dict keys (fp16 values become fp32).

    Returns:
        ({parkit key: tensor}, [official keys no rule covers]).
    """
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []
    heads_w: Dict[int, torch.Tensor] = {}
    heads_b: Dict[int, torch.Tensor] = {}
    for part, sd in (("clip", clip_sd), ("classifier", cls_sd)):
        for key, value in sd.items():
            if value.is_floating_point():
                value = value.float()
            rule = _rule_for(part, key)
            if rule is None:
                unmapped.append(f"{'ViT_model' if part == 'clip' else 'model_state_dict'}[{key!r}]")
                continue
            if rule.transform == "prompt":
                out[rule.parkit] = value.squeeze(2)                 # (D, P, 1, W) -> (D, P, W)
            elif rule.transform == "heads":
                index, leaf = key[len(rule.official):].split(".", 1)
                (heads_w if leaf == "weight" else heads_b)[int(index)] = value
            elif key == "transformer.prompt_text_deep" and value.numel() == 0:
                continue                                             # no text prompts: an empty tensor
            else:
                out[rule.parkit + key[len(rule.official):] if rule.official.endswith(".") else rule.parkit] = value
    if heads_w or heads_b:
        idx = sorted(heads_w)
        if idx != list(range(num_attributes)) or sorted(heads_b) != idx:
            raise OfficialCheckpointError(
                f"the classifier holds heads weight_layer.{idx[:3]}...{idx[-3:]} (weights) and "
                f"{len(heads_b)} biases, expected 0..{num_attributes - 1} for {num_attributes} attributes")
        out["fusion.heads.weight"] = torch.cat([heads_w[i] for i in idx], dim=0)   # (A, W)
        out["fusion.heads.bias"] = torch.cat([heads_b[i] for i in idx], dim=0)     # (A,)
    return out, unmapped


def _official_key(parkit_key: str, legacy_names: bool) -> Tuple[str, KeyRule]:
    for rule in LEGACY_KEY_MAP:
        if rule.legacy != legacy_names and rule.parkit == "fusion.visual_embed.":
            continue   # pick one of the two visual-embedding names
        if rule.transform == "heads":
            if parkit_key.startswith(rule.parkit):
                return rule.official, rule
            continue
        if rule.parkit.endswith("."):
            if parkit_key.startswith(rule.parkit):
                return rule.official + parkit_key[len(rule.parkit):], rule
        elif parkit_key == rule.parkit:
            return rule.official, rule
    raise KeyError(parkit_key)


def parkit_to_official(state: Mapping[str, torch.Tensor], legacy_names: bool = False,
                       dtype: torch.dtype = torch.float32) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """The inverse of `official_to_parkit`: (clip_state, classifier_state) in the official order.

    Args:
        state: a `PromptPAR.state_dict()`.
        legacy_names: write `vis_embed.*` (released files) instead of `visual_embed.*` (HEAD code).
        dtype: floating dtype of the written tensors (BN counters stay int64).
    """
    by_rule: Dict[int, List[Tuple[str, torch.Tensor]]] = {i: [] for i in range(len(LEGACY_KEY_MAP))}
    for key, value in state.items():
        try:
            official, rule = _official_key(key, legacy_names)
        except KeyError:
            raise OfficialCheckpointError(
                f"parkit tensor {key!r} has no official counterpart (LEGACY_KEY_MAP); this model "
                f"cannot be written in the official layout") from None
        value = value.detach()
        if value.device.type != "meta":   # a shapes-only model maps shapes only
            value = value.cpu()
        if value.is_floating_point():
            value = value.to(dtype)
        if rule.transform == "prompt":
            by_rule[LEGACY_KEY_MAP.index(rule)].append((official, value.unsqueeze(2)))   # (D, P, 1, W)
        elif rule.transform == "heads":
            leaf = key[len(rule.parkit):]
            for i, row in enumerate(value):
                entry = (f"weight_layer.{i}.{leaf}", row.reshape(1, -1) if leaf == "weight" else row.reshape(1))
                by_rule[LEGACY_KEY_MAP.index(rule)].append(entry)
        else:
            by_rule[LEGACY_KEY_MAP.index(rule)].append((official, value))
    clip_sd: Dict[str, torch.Tensor] = OrderedDict()
    cls_sd: Dict[str, torch.Tensor] = OrderedDict()
    for i, rule in enumerate(LEGACY_KEY_MAP):
        entries = by_rule[i]
        if rule.transform == "heads":   # weight_layer.0.weight, .0.bias, .1.weight, ...
            entries = sorted(entries, key=lambda kv: (int(kv[0].split(".")[1]), kv[0].endswith("bias")))
        (clip_sd if rule.part == "clip" else cls_sd).update(entries)
    return clip_sd, cls_sd


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------
def _official_config(found: Mapping, clip_cfg: Mapping, backbone: str, overrides: Mapping,
                     source: str) -> PromptPARConfig:
    """`PromptPARConfig.official()` with the sizes read off the tensors, then the caller's overrides.

    Raises:
        OfficialCheckpointError: an override contradicts a shape-deciding setting of the tensors,
            or the resulting settings are invalid.
    """
    clashing = {k: (v, found[k]) for k, v in overrides.items() if k in found and v != found[k]
                and k not in ("mm_init", "use_vismask", "global_token")}
    if clashing:
        text = "; ".join(f"{k}={v!r} but the checkpoint has {c!r}" for k, (v, c) in clashing.items())
        raise OfficialCheckpointError(f"{source}: overrides contradict the tensors: {text}")
    try:
        config = PromptPARConfig.official(**found, backbone=backbone, image_size=clip_cfg["image_resolution"])
    except ConfigError as exc:
        raise OfficialCheckpointError(f"{source}: the checkpoint's settings are not valid: {exc}") from None
    try:
        return config.replace(**overrides)          # unknown names raise, listing the valid ones
    except ConfigError as exc:
        raise OfficialCheckpointError(f"bad override for {source}: {exc}") from None


def load_official_checkpoint(path: PathLike, attributes=None, backbone: Optional[str] = None, *,
                             sentences: Optional[Sequence[str]] = None,
                             device: Union[str, torch.device, None] = None,
                             allow_pickle: bool = False, **overrides) -> nn.Module:
    """Load a released PromptPAR checkpoint as a parkit `PromptPAR` that computes the official logits.

    The model gets the official compatibility settings (`PromptPARConfig.official()`: text
    prompts appended after EOT (inert), no ln_post, global region token = first global prompt,
    last-sample GL aggregation, 0.5/0.5 normalisation, the checkpoint's frozen visual embedding,
    trained MM-former norms), with every size read off the tensors. The CLIP weights stored in
    the checkpoint (fp16 in released files) become the frozen fp32 backbone. The MM-former block
    comes from the checkpoint too: no ViT-B/16 file is needed.

    Args:
        path: the checkpoint file (e.g. a released `PETA.pth`).
        attributes: what the A outputs mean: a dataset name ("PETA"), an AttributeSchema, or a
            list of sentences -- the checkpoint does not store them and the text encoder needs
            the exact training sentences (spec §12).
        backbone: expected CLIP backbone ("ViT-L/14"); checked against the tensors. None reads
            the architecture off the tensors.
        sentences: sentences that go with a list of attribute names (or replace a schema's).
        device: where the model goes (default CUDA if present, else the CPU); built on the CPU.
        allow_pickle: see `read_official_checkpoint` (default False: never unpickle; True only
            for files you trust).
        **overrides: further `PromptPARConfig` fields, applied last (e.g. gl_aggregation=
            "per_sample" to evaluate the checkpoint with the fix). Shape-deciding fields must agree
            with the tensors.

    Returns:
        The `PromptPAR` in eval mode. `model.official_checkpoint` records the source file, the
        CLIP key used, the epoch, legacy names met and any pickled classes that were stubbed.

    Raises:
        OfficialCheckpointError: unreadable file, not a PromptPAR checkpoint, attribute count or
            backbone mismatch, or keys/shapes that do not fit (listed).
    """
    source = str(path)
    stubbed: List[str] = []
    ckpt = read_official_checkpoint(path, allow_pickle=allow_pickle, stubbed=stubbed)
    clip_sd, cls_sd, clip_key = official_state_dicts(ckpt, source)
    clip_cfg, found, num_attributes = official_settings(clip_sd, cls_sd, source)

    if attributes is None and sentences is None:
        raise OfficialCheckpointError(
            f"{source} has {num_attributes} attribute heads but does not store their sentences: pass "
            f"attributes=<dataset name> (e.g. 'PETA' for 35, 'PA100K' for 26, 'RAPv1' for 51, 'RAPv2' "
            f"for 54, 'WIDER' for 14) or the list of training sentences")
    names, sents = resolve_attributes(attributes if attributes is not None else sentences, sentences)
    if len(sents) != num_attributes:
        raise OfficialCheckpointError(
            f"{source} was trained with {num_attributes} attributes, but {len(sents)} were given "
            f"({attributes if isinstance(attributes, str) else 'a list'}); pass the checkpoint's dataset")

    config = _official_config(found, clip_cfg, _backbone_name(clip_cfg, backbone, source), overrides, source)
    clip_model = build_clip(clip_cfg)                      # fp32, CPU; weights replaced below
    model = PromptPAR(clip_model, sents, config, attributes=names, vit_state=None)
    mapped, unmapped = official_to_parkit(clip_sd, cls_sd, num_attributes)
    _load_strict(model, mapped, unmapped, source, clip_key)

    legacy = sorted({r.official for r in LEGACY_KEY_MAP if r.legacy for k in cls_sd if _matches(r, k)})
    model.official_checkpoint = {
        "path": source, "clip_key": clip_key, "epoch": ckpt.get("epoch"),
        "legacy_names": legacy, "stubbed_classes": sorted(set(stubbed)),
        "clip_dtype": str(next(iter(clip_sd.values())).dtype),
    }
    return model.to(resolve_device(device)).eval()


def _load_strict(model: PromptPAR, mapped: Dict[str, torch.Tensor], unmapped: List[str], source: str,
                 clip_key: str) -> None:
    """Load `mapped` into `model`, listing every missing / unexpected key and every shape mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    unexpected = unmapped + [k for k in mapped if k not in own]
    if missing or unexpected:
        parts = []
        if unexpected:
            parts.append(f"unexpected (no place in the model): {unexpected}")
        if missing:
            parts.append(f"missing (the model needs them): {missing}")
        raise OfficialCheckpointError(
            f"{source} does not fit the model built from its own shapes: " + "; ".join(parts)
            + ". The checkpoint may come from another PromptPAR variant.")
    inverse = {}
    for key in mapped:
        try:
            inverse[key] = _official_key(key, legacy_names=False)[0]
        except KeyError:
            inverse[key] = key
    problems = [
        f"{inverse[k]} ({'model_state_dict' if not k.startswith(('visual.', 'text.', 'gl.', 'logit')) else clip_key}): "
        f"checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)} -- set by {_setting_of(inverse[k])}"
        for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    if problems:
        raise OfficialCheckpointError(f"{source}: shapes differ:\n  " + "\n  ".join(problems))
    model.load_state_dict(mapped, strict=True)
    model.text.clear_cache()


# Behaviour settings with which the official code computes the same function (spec §14).
_OFFICIAL_BEHAVIOUR = ("text_prompt_placement", "ln_post", "global_token", "gl_aggregation", "gl_softmax",
                       "normalization", "ag_threshold")


def export_official_checkpoint(model: nn.Module, path: PathLike, *, legacy_names: bool = False,
                               dtype: torch.dtype = torch.float32, epoch: int = 0) -> Path:
    """Write a parkit `PromptPAR` in the official checkpoint layout.

    The file holds `model_state_dict` (classifier), the CLIP state under both `ViT_model` (read by
    the official test scripts) and `clip_model` (written by train.py) -- the same tensors, stored
    once --, `epoch`, and a `parkit` entry with the attribute names, sentences and config. Only
    tensors, numbers, strings and plain containers are stored, so it loads with
    `weights_only=True`.

    Args:
        model: a `PromptPAR` with an MM-former (the official classifier has no other fusion).
        path: output file.
        legacy_names: name the visual embedding `vis_embed` like the released files (the HEAD
            code, which reads `visual_embed`, silently skips it: spec §12).
        dtype: floating dtype of the stored tensors (float32 by default; the official code keeps
            CLIP in fp16 on GPU).
        epoch: value of the `epoch` entry.

    Returns:
        The path written.

    Raises:
        OfficialCheckpointError: the model has parts with no official counterpart.

    Warns:
        UserWarning: the model's behaviour settings differ from the official ones, so the official
        code would compute different logits from the same tensors.
    """
    if not isinstance(model, PromptPAR):
        raise OfficialCheckpointError("export_official_checkpoint needs a PromptPAR model (create_model "
                                      "preset 'promptpar-*' or load_official_checkpoint)")
    config = model.config
    if not config.use_mm_former:
        raise OfficialCheckpointError("the official classifier always has the MM-former; this model has "
                                      "use_mm_former=False, which has no official layout")
    differing = [f"{k}={getattr(config, k)!r} (official {OFFICIAL_FLAGS[k]!r})" for k in _OFFICIAL_BEHAVIOUR
                 if k in OFFICIAL_FLAGS and getattr(config, k) != OFFICIAL_FLAGS[k]]
    if differing:
        warnings.warn(f"exporting a model whose behaviour differs from the official code's: {', '.join(differing)}; "
                      f"the official scripts will compute different logits from these tensors", stacklevel=2)
    clip_sd, cls_sd = parkit_to_official(model.state_dict(), legacy_names=legacy_names, dtype=dtype)
    meta = {"attributes": list(model.attributes), "sentences": list(model.sentences),
            "config": {k: v for k, v in config.to_dict().items()}, "format": "official-promptpar (parkit export)"}
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Both CLIP keys reference the same tensors: torch.save stores each storage once.
    torch.save({"epoch": int(epoch), "model_state_dict": cls_sd, "ViT_model": clip_sd, "clip_model": clip_sd,
                "parkit": meta}, str(path))
    return path
