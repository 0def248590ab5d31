"""OpenAI CLIP loading: named configurations, cached downloads, local files, checksums.

This module owns where a `clip.model.CLIP` (the class of the `clip` package, installed from
clip-anytorch) comes from:

- `clip_config(name)`: the constructor arguments of each supported ViT backbone, as data;
- `load_clip(name_or_path, ...)`: by name from the download cache (fetched with the package's
  own downloader and its checksum when the machine is online), the committed compact CLIP
  ("micro", `parkit.backbone.micro`), or from a local file (a state dict saved with `torch.save`,
  an OpenAI TorchScript archive, or a packed micro checkpoint), optionally checked against a
  SHA-256; `pretrained=False` builds the architecture with seeded random weights.

How the model is built from a config or a state dict, the tokenizer and the errors live in
`parkit.backbone.clipcore`; the names callers know from this module (`build_clip`, `tokenize`,
`BackboneFileError`, ...) are imported here and stay importable from it.
"""
from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from parkit.backbone.clipcore import (  # noqa: F401 (re-exported: part of this module's API)
    CONTEXT_LENGTH, VOCAB_SIZE, BackboneFileError, BackboneUnavailable, PathLike, build_clip, cast_clip,
    clip_from_state_dict, clip_module, config_from_state_dict, sha256_file, tokenize)
from parkit.backbone.micro import MICRO_CONFIG, is_micro_checkpoint, load_micro_clip, unpack_micro_checkpoint
from parkit.devices import default_device

# Constructor arguments of `clip.model.CLIP`, per backbone name (spec §3.1 for ViT-L/14).
# Vision heads are not an argument: the class derives them as vision_width // 64.
_CONFIGS: dict = {
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                     vision_patch_size=14, context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
                     transformer_width=768, transformer_heads=12, transformer_layers=12),
    "ViT-L/14@336px": dict(embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
                           vision_patch_size=14, context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE,
                           transformer_width=768, transformer_heads=12, transformer_layers=12),
}
MICRO = "micro"

# Keys that OpenAI's TorchScript archives carry next to the weights; they are not parameters.
_NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")


def list_backbones() -> list:
    """Names accepted by `clip_config` and `load_clip`.

    Returns:
        The OpenAI ViT backbones plus "micro", the compact CLIP committed in `parkit/assets/`.
    """
    return [*_CONFIGS, MICRO]


def _canonical(name: str) -> str:
    """Case-insensitive lookup of a backbone name ("vit-b/16", "ViT-B-16" and "ViT-B/16" agree)."""
    wanted = str(name).strip().lower().replace("-", "").replace("/", "").replace("_", "")
    for known in list_backbones():
        if known.lower().replace("-", "").replace("/", "") == wanted:
            return known
    raise KeyError(
        f"unknown CLIP backbone {name!r} (and no such file); choose one of {list_backbones()} or "
        f"pass the path of an existing weight file")


def clip_config(name: str) -> dict:
    """Constructor arguments of `clip.model.CLIP` for a named backbone.

    Args:
        name: one of `list_backbones()` (case-insensitive; "ViT-B-16" also works).

    Returns:
        A fresh dict with keys embed_dim, image_resolution, vision_layers, vision_width,
        vision_patch_size, context_length, vocab_size, transformer_width, transformer_heads,
        transformer_layers.

    Raises:
        KeyError: the name is not a known backbone.
    """
    key = _canonical(name)
    if key == MICRO:
        return dict(MICRO_CONFIG)
    return dict(_CONFIGS[key])


def count_clip_parameters(config: Union[str, Mapping]) -> int:
    """Number of parameters of a CLIP architecture, without allocating its weights.

    Args:
        config: a backbone name or a `clip_config`-style dict.

    Returns:
        The parameter count (ViT-B/16: 149,620,737).
    """
    cfg = clip_config(config) if isinstance(config, str) else dict(config)
    clip = clip_module()
    with torch.device("meta"):  # shapes only: no memory, no random numbers
        model = clip.model.CLIP(**cfg)
    return sum(p.numel() for p in model.parameters())


def default_cache_dir() -> Path:
    """Download cache: `$PARKIT_CLIP_CACHE` if set, else `~/.cache/clip` (the `clip` package's default)."""
    env = os.environ.get("PARKIT_CLIP_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/clip").expanduser()


def openai_url(name: str) -> str:
    """OpenAI's download URL for a named backbone (from `clip._MODELS`)."""
    key = _canonical(name)
    urls = clip_module().clip._MODELS
    if key not in urls:
        raise KeyError(f"{key!r} has no OpenAI download; OpenAI backbones are {list(_CONFIGS)}")
    return urls[key]


def openai_file_info(name: str) -> tuple:
    """(file name, expected SHA-256) of OpenAI's file for `name`; the checksum is part of the URL."""
    url = openai_url(name)
    return url.rsplit("/", 1)[-1], url.split("/")[-2]




def read_clip_file(path: PathLike) -> dict:
    """Read CLIP weights from a local file into a plain state dict on the CPU (see `_read_clip_file`)."""
    return _read_clip_file(path)[0]


def _read_clip_file(path: PathLike) -> tuple:
    """Read CLIP weights from a local file into a plain fp-tensor state dict on the CPU.

    Accepts an OpenAI TorchScript archive (e.g. `ViT-B-16.pt` as downloaded), a state dict saved
    with `torch.save`, or such a dict wrapped as {"state_dict": ...}. Only tensors are unpickled
    (`weights_only=True`): a CLIP weight file never needs arbitrary code.

    Args:
        path: the file.

    Returns:
        ({key: tensor} without OpenAI's non-parameter entries (input_resolution, ...), the
        constructor arguments when the file stores them (a packed micro checkpoint) else None).

    Raises:
        BackboneFileError: the file is missing or cannot be read as either format.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneFileError(f"CLIP weight file {path} does not exist (or is not a file)")
    errors = []
    state = None
    # OpenAI's downloads are TorchScript archives; try that first, as `clip.load` does.
    try:
        with warnings.catch_warnings():  # torch 2.x flags torch.jit.load as deprecated; it still works
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as exc:  # noqa: BLE001 - any failure just means "not TorchScript"
        errors.append(f"as TorchScript: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if state is None:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"as a torch.save state dict: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}")
    if state is None:
        raise BackboneFileError(
            f"cannot read CLIP weights from {path} ({path.stat().st_size} bytes): "
            + "; ".join(errors)
            + ". The file is probably truncated or corrupt: download it again, or check it with "
              "load_clip(..., sha256=...).")
    config = None
    if is_micro_checkpoint(state):  # the packed compact CLIP (parkit/backbone/micro.py)
        state, config = unpack_micro_checkpoint(state, source=str(path))
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise BackboneFileError(f"{path} holds a {type(state).__name__}, not a CLIP state dict")
    return {k: v for k, v in state.items() if k not in _NON_PARAMETER_KEYS}, config


def _verify_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual.lower() != expected.strip().lower():
        raise BackboneFileError(
            f"SHA-256 mismatch for {path}: expected {expected} ({what}), got {actual}. The file is "
            f"corrupt, truncated or a different model: delete it and download it again.")


def _home_relative(path: Path) -> str:
    """`path` with the user's home folder written as "~" (shorter, and shareable in notebooks)."""
    try:
        return str(Path("~") / Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def _offline_message(key: str, cache_dir: Path, reason: str) -> str:
    filename, checksum = openai_file_info(key)
    return (
        f"OpenAI CLIP {key!r} is not in the cache and cannot be downloaded here ({reason}).\n"
        f"  1. On a machine with internet access download\n       {openai_url(key)}\n"
        f"  2. Put it at\n       {_home_relative(cache_dir / filename)}\n"
        f"     (or set PARKIT_CLIP_CACHE, or pass cache_dir=..., to use another folder holding "
        f"{filename}); its SHA-256 must be {checksum}.\n"
        f"  3. Or pass the file itself: load_clip('/path/to/{filename}').\n"
        f"  Without pretrained weights, load_clip({key!r}, pretrained=False) builds the architecture "
        f"with random weights (for shapes and parameter counts only), and load_clip('micro') loads "
        f"the small CLIP shipped with parkit.")


def fetch_openai_clip(name: str, cache_dir: Optional[PathLike] = None) -> Path:
    """Path of OpenAI's weight file for `name` in the cache, downloading it when missing.

    A file already in the cache is checked against OpenAI's SHA-256 (embedded in the URL) and used
    without any network access. Otherwise the `clip` package's own downloader fetches it (which
    re-checks the checksum).

    Args:
        name: an OpenAI backbone name, e.g. "ViT-B/16".
        cache_dir: folder of the cached files (default `default_cache_dir()`).

    Returns:
        Path to the verified file.

    Raises:
        BackboneUnavailable: the file is absent (or corrupt) and the download failed; the message
            gives the URL, the expected path and file name, and the local-file alternative.
    """
    key = _canonical(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    filename, checksum = openai_file_info(key)
    target = cache / filename
    stale = ""
    if target.is_file():
        if sha256_file(target) == checksum:
            return target
        stale = f"; the cached {target} has the wrong SHA-256 and must be replaced"
    clip = clip_module()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*SHA256 checksum does not match.*")
            path = clip.clip._download(openai_url(key), str(cache))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise BackboneUnavailable(_offline_message(key, cache, f"{type(exc).__name__}: {exc}{stale}")) from None
    except RuntimeError as exc:  # the package's "checksum does not match" after a download
        raise BackboneUnavailable(_offline_message(key, cache, f"download corrupt: {exc}")) from None
    return Path(path)


def load_clip(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device, None] = None,
              dtype: Optional[torch.dtype] = None, cache_dir: Optional[PathLike] = None,
              sha256: Optional[str] = None, pretrained: bool = True, seed: int = 0) -> nn.Module:
    """Load an OpenAI CLIP (or the compact "micro" CLIP) as an fp32 `clip.model.CLIP`.

    Args:
        name_or_path: a name from `list_backbones()`, or the path of a local weight file (an
            OpenAI TorchScript archive or a `torch.save` state dict of `clip.model.CLIP`).
        device: where to put the model (default: CUDA if present, else the CPU).
        dtype: weight precision (default fp32). Lower precisions follow the official rule:
            matmul weights cast, LayerNorms kept fp32 (spec §3.1). Prefer fp32 + `torch.autocast`.
        cache_dir: download cache for named backbones (default `$PARKIT_CLIP_CACHE` or
            `~/.cache/clip`).
        sha256: expected SHA-256 of the weight file; checked before the file is unpickled.
        pretrained: False builds the named architecture with seeded random weights (for tests,
            shapes and parameter counts; nothing is read or downloaded).
        seed: seed of the random weights when `pretrained=False`.

    Returns:
        The model in eval mode. Its parameters keep `requires_grad=True`: freezing is the
        caller's choice.

    Raises:
        BackboneUnavailable: a named backbone is neither cached nor downloadable.
        BackboneFileError: the file is missing, corrupt, fails the checksum, or does not fit.
        KeyError: an unknown name that is not an existing file either.
    """
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or torch.float32
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype such as torch.float16, got {dtype!r}")
    path = Path(os.fspath(name_or_path)).expanduser()
    is_file = path.is_file()
    if not is_file:
        try:
            key = _canonical(os.fspath(name_or_path))
        except KeyError:
            # A string with a weight-file suffix was meant as a path; anything else as a name.
            if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"):
                raise BackboneFileError(
                    f"CLIP weight file {path} does not exist; pass an existing file or one of "
                    f"{list_backbones()}") from None
            raise

    if not pretrained:
        if is_file:
            raise ValueError(f"pretrained=False builds a named architecture; {path} is a weight file "
                             f"(pass a name from {list_backbones()})")
        if sha256 is not None:
            raise ValueError("sha256 checks a weight file; it makes no sense with pretrained=False")
        model = build_clip(clip_config(key), seed=seed)
    elif is_file:
        if sha256 is not None:
            _verify_sha256(path, sha256, "the sha256 argument")
        # Head counts leave no trace in the shapes: use the stored config when there is one.
        state, config = _read_clip_file(path)
        model = clip_from_state_dict(state, config=config, source=str(path))
    elif key == MICRO:
        model = load_micro_clip(sha256=sha256)
    else:
        file = fetch_openai_clip(key, cache_dir)
        if sha256 is not None:
            _verify_sha256(file, sha256, "the sha256 argument")
        model = clip_from_state_dict(read_clip_file(file), config=clip_config(key), source=str(file))
    if dtype != torch.float32:
        cast_clip(model, dtype)
    return model.to(device).eval()


