"""The model factory: `list_presets()` and `create_model()` build any parkit model by name.

A preset (see `parkit.model.config.PRESETS`) is a `PromptPARConfig`; `create_model` applies the
caller's overrides, resolves the attribute list, loads the CLIP backbone (on the CPU first, then
moves the finished model), and builds either `PromptPAR` or, for `kind != "promptpar"`, a baseline
through `parkit.model.baselines.build_baseline(kind, clip_model, attributes, sentences, config)`.

`device="meta"` with `pretrained=False` builds a shapes-only model in milliseconds (no memory, no
random numbers): enough for `count_parameters`, even for ViT-L/14.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from parkit.attributes import get_schema
from parkit.backbone import clip_config, load_clip
from parkit.backbone.loading import clip_module
from parkit.model.baselines import build_baseline
from parkit.devices import resolve_device
from parkit.model.config import (OFFICIAL_FLAGS, PRESETS, PROMPTPAR, ConfigError, PromptPARConfig,
                                 backbone_dims, field_names, preset_config, resolve)
from parkit.model.fusion import default_mm_weights_path, read_vit_weights
from parkit.model.promptpar import PromptPAR

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def list_presets(kind: Optional[str] = None) -> List[str]:
    """Names of the registered presets.

    Args:
        kind: only presets of this model kind ("promptpar", "zeroshot", "linear_probe",
            "finetune", "vtb"); None = all.

    Returns:
        Preset names in registration order, e.g. ["promptpar-vitl14", "promptpar-vitb16", ...].
    """
    names = list(PRESETS)
    if kind is None:
        return names
    return [n for n in names if preset_config(n).kind == kind]


def get_config(preset: Union[str, PromptPARConfig], **overrides) -> PromptPARConfig:
    """The config of a preset with overrides applied (not yet resolved against a backbone).

    Args:
        preset: a preset name or a `PromptPARConfig`.
        **overrides: config fields; `compat="official"` first applies the released-checkpoint
            flags (`OFFICIAL_FLAGS`, except the backbone), then the other overrides.

    Raises:
        ConfigError: an unknown setting (the message lists the valid ones) or a wrong type/value.
        KeyError: an unknown preset name.
    """
    cfg = preset if isinstance(preset, PromptPARConfig) else preset_config(preset)
    compat = overrides.pop("compat", None)
    if compat is not None:
        if compat != "official":
            raise ConfigError(f"compat must be 'official' or None, got {compat!r}")
        cfg = cfg.replace(**{k: v for k, v in OFFICIAL_FLAGS.items() if k != "backbone"})
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} for create_model; valid settings are: "
            f"{', '.join(field_names())} (and compat='official')")
    return cfg.replace(**overrides)


def resolve_attributes(attributes=None, sentences: Optional[Sequence[str]] = None,
                       default_dataset: str = "PETA") -> Tuple[List[str], List[str]]:
    """Attribute names and sentences from whatever the caller passed.

    Args:
        attributes: a schema/dataset name ("PETA"), an object with `.attributes` and `.sentences`
            (an AttributeSchema or a PARDataset), a list of sentences, a list of attribute names
            (with `sentences`), or None (the preset's default dataset).
        sentences: sentences overriding those of the schema, or pairing a list of names.
        default_dataset: schema used when `attributes` is None.

    Returns:
        (names, sentences), equally long.

    Raises:
        ValueError: empty lists, non-strings, or lengths that differ.
    """
    if attributes is None:
        attributes = default_dataset
    if isinstance(attributes, str):
        schema = get_schema(attributes)
        names, sents = list(schema.attributes), list(schema.sentences)
    elif hasattr(attributes, "attributes") and hasattr(attributes, "sentences"):
        names, sents = list(attributes.attributes), list(attributes.sentences)
    else:
        names = list(attributes)
        sents = list(names)
    if sentences is not None:
        sents = list(sentences)
    if not names:
        raise ValueError("the attribute list is empty")
    bad = [s for s in [*names, *sents] if not isinstance(s, str)]
    if bad:
        raise ValueError(f"attribute names and sentences must be strings; got {bad[:3]!r}")
    if len(names) != len(sents):
        raise ValueError(f"{len(names)} attribute names but {len(sents)} sentences")
    return names, sents


def _load_backbone(cfg: PromptPARConfig, pretrained: bool, device: torch.device) -> nn.Module:
    if device.type == "meta":
        if pretrained:
            raise ValueError("device='meta' builds a shapes-only model: pass pretrained=False")
        with torch.device("meta"):
            return clip_module().model.CLIP(**clip_config(cfg.backbone))
    return load_clip(cfg.backbone, device="cpu", pretrained=pretrained, dtype=_DTYPES[cfg.dtype])


def _vit_state(cfg: PromptPARConfig, pretrained: bool):
    """The timm ViT state dict the MM-former is initialised from, or None (random / backbone)."""
    if not cfg.use_mm_former or cfg.mm_init in ("backbone_last", "random"):
        return None
    if cfg.mm_init == "vit_b16_imagenet":
        return read_vit_weights(default_mm_weights_path()) if pretrained else None
    return read_vit_weights(cfg.mm_init)  # an explicit path is always read


def create_model(preset: Union[str, PromptPARConfig] = "promptpar-micro", attributes=None,
                 sentences: Optional[Sequence[str]] = None, pretrained: bool = True,
                 device: Union[str, torch.device, None] = None, *, backbone_model: Optional[nn.Module] = None,
                 seed: Optional[int] = None, **overrides) -> nn.Module:
    """Build a parkit model from a preset.

    Args:
        preset: a name from `list_presets()` or a `PromptPARConfig`.
        attributes: a dataset/schema name ("PETA"), a schema or dataset object, a list of
            sentences, or None for the preset's default dataset (see `resolve_attributes`).
        sentences: sentences that go with a list of attribute names (or replace a schema's).
        pretrained: load pretrained CLIP (and MM-former) weights; False builds seeded random
            backbone weights (shapes, tests, parameter counts) and a random MM-former.
        device: where the finished model lives (default: CUDA if present, else the CPU);
            "meta" with pretrained=False builds shapes only.
        backbone_model: an already built `clip.model.CLIP` to use instead of loading
            `config.backbone` (e.g. a custom small CLIP); it becomes part of the model.
        seed: seeds the random initialisation (prompts, heads, a random MM-former), so the same
            seed gives the same tensors whatever ran before in the process; the caller's RNG
            state is left as it was. None draws from torch's global RNG.
        **overrides: config fields (see `PromptPARConfig`), plus `compat="official"`.

    Returns:
        An nn.Module whose forward(images) returns a `PAROutput`, in eval mode.

    Raises:
        ConfigError: unknown or ill-typed overrides, or settings that do not fit the backbone.
        KeyError: unknown preset.
    """
    if seed is not None:
        with _seeded(seed):
            return create_model(preset, attributes, sentences, pretrained, device,
                                backbone_model=backbone_model, **overrides)
    cfg = get_config(preset, **overrides)
    names, sents = resolve_attributes(attributes, sentences, cfg.dataset)
    device = resolve_device(device)
    meta = device.type == "meta"
    if backbone_model is not None:
        clip_model = backbone_model
    else:
        clip_model = _load_backbone(cfg, pretrained, device)
    cfg = resolve(cfg, backbone_dims(clip_model))

    context = torch.device("meta") if meta else torch.device(_module_device(clip_model))
    if cfg.kind != PROMPTPAR:
        # Only the VTB baseline has an MM-former to initialise from a timm ViT file.
        options = {"vit_state": None if meta else _vit_state(cfg, pretrained)} if cfg.kind == "vtb" else {}
        with context:
            model = build_baseline(cfg.kind, clip_model, names, sents, cfg, **options)
    else:
        vit_state = None if meta else _vit_state(cfg, pretrained)
        with context:
            model = PromptPAR(clip_model, sents, cfg, attributes=names, vit_state=vit_state)
    if not meta:
        model = model.to(device)
    return model.eval()


@contextlib.contextmanager
def _seeded(seed: int):
    """Torch's RNGs seeded with `seed` inside, restored to the caller's state on exit."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        yield


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")
