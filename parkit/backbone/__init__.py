"""CLIP backbones: OpenAI CLIP loading (names, files, checksums), the compact "micro" CLIP, its
contrastive pretraining on SynthPAR captions, and zero-shot attribute scoring. The command
line `python -m parkit pretrain-backbone` is in `parkit.cli`.

Public API:
    list_backbones, clip_config, count_clip_parameters, load_clip, tokenize,
    BackboneUnavailable, BackboneFileError            (parkit.backbone.loading)
    MICRO_CONFIG, load_micro_clip, unknown_words       (parkit.backbone.micro)
    pretrain_micro_clip, zero_shot_scores, zero_shot_evaluate
                                                       (parkit.backbone.pretrain, imported lazily
                                                        because it depends on parkit.data)
"""
from importlib import import_module

from parkit.backbone.loading import (
    BackboneFileError, BackboneUnavailable, cast_clip, clip_config, count_clip_parameters,
    default_cache_dir, list_backbones, load_clip, sha256_file, tokenize)
from parkit.backbone.micro import MICRO_CONFIG, load_micro_clip, unknown_words

_LAZY = {
    "pretrain_micro_clip": "parkit.backbone.pretrain",
    "zero_shot_scores": "parkit.backbone.pretrain",
    "zero_shot_evaluate": "parkit.backbone.pretrain",
}

__all__ = [
    "BackboneFileError", "BackboneUnavailable", "MICRO_CONFIG", "cast_clip", "clip_config",
    "count_clip_parameters", "default_cache_dir", "list_backbones", "load_clip", "load_micro_clip",
    "sha256_file", "tokenize", "unknown_words", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parkit.backbone' has no attribute {name!r}")
