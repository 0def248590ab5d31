"""The `clip.model.CLIP` class as parkit builds it: constants, errors, construction from a config
or a state dict, precision casting, the tokenizer, and file checksums.

Both ways a backbone comes into being stand on this module: `parkit.backbone.loading` (named
OpenAI backbones, the download cache, local files) and `parkit.backbone.micro` (the packed compact
CLIP). It imports neither, so the two can import it and `loading` can dispatch to `micro`
without an import circle.

Why the model is built with `CLIP(**cfg)` + `load_state_dict` and not with the package's
`build_model`: `build_model` casts Conv/Linear/attention weights to fp16 even on the CPU (the
package then calls `.float()` on CPU only). Building the fp32 module and loading into it keeps
the weights exactly as stored, on any device; a lower precision is applied explicitly with the
same rule as the official loader (spec §3.1: LayerNorms stay fp32).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

PathLike = Union[str, os.PathLike]

# The text side of every OpenAI CLIP uses the same BPE vocabulary and context.
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77


class BackboneUnavailable(RuntimeError):
    """Pretrained CLIP weights cannot be obtained here; the message says what to download and where."""


class BackboneFileError(ValueError):
    """A CLIP weight file is unreadable, has the wrong checksum, or does not fit the architecture."""


def clip_module():
    """Import and return the `clip` package, silencing its `pkg_resources` deprecation warning.

    The import is deferred to first use so that `import parkit.backbone` stays cheap.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # noqa: PLC0415
        import clip.model  # noqa: F401,PLC0415
    return clip


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> dict:
    """Read the CLIP constructor arguments off the shapes of a ViT CLIP state dict.

    Args:
        state_dict: CLIP weights with the `clip.model.CLIP` key names.
        source: how to name the weights in error messages (usually the file path).

    Returns:
        A `clip_config`-style dict.

    Raises:
        BackboneFileError: the keys are not those of a ViT CLIP (e.g. a ResNet CLIP, or a
            checkpoint of something else).
    """
    required = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "text_projection",
                "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        hint = ("it looks like a ResNet CLIP, which parkit does not support"
                if "visual.layer1.0.conv1.weight" in state_dict else
                f"its first keys are {list(state_dict)[:5]}")
        raise BackboneFileError(
            f"{source} is not a ViT CLIP state dict: keys {missing} are missing ({hint}). Pass an "
            f"OpenAI CLIP ViT file (e.g. ViT-B-16.pt) or a state dict of clip.model.CLIP.")

    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)})

    conv = state_dict["visual.conv1.weight"]  # (width, 3, patch, patch)
    patch = conv.shape[-1]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state_dict["ln_final.weight"].shape[0]
    return dict(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=count("visual.transformer.resblocks."),
        vision_width=conv.shape[0],
        vision_patch_size=patch,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=text_width,
        # OpenAI's convention (64-wide heads); the micro checkpoint stores its own config instead.
        transformer_heads=max(1, text_width // 64),
        transformer_layers=count("transformer.resblocks."),
    )


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (CLIP files are up to 1.7 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cast_clip(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast CLIP's matmul weights to `dtype`, keeping LayerNorms in fp32 (the official rule, spec §3.1).

    `clip.model.LayerNorm` computes in fp32 and needs fp32 weights; the embeddings are cast to the
    input's dtype inside the forward pass, so they may stay fp32 as well. This mirrors
    `clip.model.convert_weights`, which is fixed to fp16, for any dtype.

    Args:
        model: a `clip.model.CLIP` (or any module holding its blocks).
        dtype: the target floating dtype, e.g. torch.float16 or torch.bfloat16.

    Returns:
        The same module, cast in place.
    """
    if dtype == torch.float32:
        return model.float()

    def convert(layer: nn.Module) -> None:
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            layer.weight.data = layer.weight.data.to(dtype)
            if layer.bias is not None:
                layer.bias.data = layer.bias.data.to(dtype)
        if isinstance(layer, nn.MultiheadAttention):
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                         "in_proj_bias", "bias_k", "bias_v"):
                tensor = getattr(layer, attr)
                if tensor is not None:
                    tensor.data = tensor.data.to(dtype)
        for attr in ("text_projection", "proj"):
            tensor = getattr(layer, attr, None)
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.to(dtype)

    model.apply(convert)
    return model


def build_clip(config: Mapping, seed: int = 0) -> nn.Module:
    """A `clip.model.CLIP` with seeded random weights, without touching the global RNG state.

    Args:
        config: `clip_config`-style constructor arguments.
        seed: seed of CLIP's own initialisation (`initialize_parameters` and the
            `torch.randn` calls of the vision tower).

    Returns:
        The fp32 model on the CPU, in eval mode.
    """
    clip = clip_module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(**dict(config))
    return model.eval()


def clip_from_state_dict(state_dict: Mapping[str, torch.Tensor], config: Optional[Mapping] = None,
                         source: str = "state dict") -> nn.Module:
    """Build an fp32 CLIP and load `state_dict` into it strictly.

    Args:
        state_dict: CLIP weights (any floating dtype; they are copied into fp32 parameters).
        config: constructor arguments; read off the shapes when omitted.
        source: name of the weights in error messages.

    Returns:
        The fp32 model on the CPU, in eval mode.

    Raises:
        BackboneFileError: keys or shapes do not match the architecture.
    """
    cfg = dict(config) if config is not None else config_from_state_dict(state_dict, source)
    model = build_clip(cfg)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = [ln.strip() for ln in str(exc).splitlines()[1:4]]
        raise BackboneFileError(
            f"{source} does not fit the CLIP architecture {cfg}: {' '.join(first)}. Check that the "
            f"file is the backbone you asked for.") from None
    return model.eval()


def tokenize(sentences: Union[str, Sequence[str]], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """CLIP BPE tokens of sentences, zero-padded: (A, context_length) int64.

    Like `clip.tokenize` (lower-cases, wraps with SOT/EOT) but never truncates: a sentence that
    does not fit raises an error naming it and its token count, so attribute lists are fixed at
    the source rather than silently cut (the EOT position carries the sentence feature, spec §3.3).

    Args:
        sentences: one sentence or a list of them.
        context_length: token slots per sentence, SOT and EOT included (77 for all OpenAI CLIPs).

    Returns:
        LongTensor (A, context_length).

    Raises:
        ValueError: empty input, a non-string entry, or a sentence longer than the context.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    sentences = list(sentences)
    if not sentences:
        raise ValueError("tokenize() needs at least one sentence")
    clip = clip_module()
    bpe = clip.clip._tokenizer
    sot, eot = bpe.encoder["<|startoftext|>"], bpe.encoder["<|endoftext|>"]
    out = torch.zeros(len(sentences), context_length, dtype=torch.long)  # (A, L)
    too_long = []
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise ValueError(f"sentence {i} is a {type(sentence).__name__}, not a string: {sentence!r}")
        ids = [sot, *bpe.encode(sentence), eot]
        if len(ids) > context_length:
            too_long.append(f"#{i} {sentence!r} ({len(ids)} tokens)")
            continue
        out[i, : len(ids)] = torch.tensor(ids)
    if too_long:
        raise ValueError(
            f"{len(too_long)} sentence(s) exceed CLIP's context of {context_length} tokens "
            f"(SOT and EOT included): {'; '.join(too_long)}. Shorten them.")
    return out
