"""The compact "micro" CLIP: its architecture, its packed checkpoint format, and its loader.

The micro CLIP is OpenAI's `clip.model.CLIP` class with small widths and depths, so every code path
that works on ViT-B/16 or ViT-L/14 (prompts, stripe masks, fusion) runs unchanged on a laptop CPU.
It is pretrained contrastively on SynthPAR captions (`parkit.backbone.pretrain`) and committed in
`parkit/assets/micro_clip.pt` with its SHA-256 in `parkit/assets/micro_clip.sha256`.

Packed format. CLIP's token embedding is 49,408 x width: at width 128 and fp16 that alone is
12.6 MB. The checkpoint therefore keeps only the rows of the tokens it was built for (every token
of the pretraining captions and of every dataset's attribute sentences and short phrases); the
full matrix is rebuilt on load with **zero rows for every other token**. A sentence using such a
token still runs, but that token contributes only its positional embedding: `unknown_words`
lists them so callers can warn. Every other tensor is stored whole, in fp16, and loaded as fp32.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from parkit.backbone.clipcore import (
    CONTEXT_LENGTH, VOCAB_SIZE, BackboneFileError, BackboneUnavailable, PathLike, build_clip,
    clip_from_state_dict, clip_module, sha256_file)

FORMAT = "parkit-micro-clip/1"

# Small widths and depths of the same class (spec §3.1 lists the full-size values).
# 96 px with 8 px patches gives a 12 x 12 patch grid: enough rows for 4 overlapping horizontal
# stripes (spec §4.1). Vision heads = 128 // 64 = 2 (fixed by the class); text heads chosen equal.
MICRO_CONFIG = dict(
    embed_dim=128,
    image_resolution=96,
    vision_layers=4,
    vision_width=128,
    vision_patch_size=8,
    context_length=CONTEXT_LENGTH,
    vocab_size=VOCAB_SIZE,
    transformer_width=128,
    transformer_heads=2,
    transformer_layers=4,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MICRO_CHECKPOINT = ASSETS / "micro_clip.pt"
MICRO_SHA256 = ASSETS / "micro_clip.sha256"
REGENERATE = "python -m parkit pretrain-backbone"  # the exact command with options is in assets/README.md


def is_micro_checkpoint(obj) -> bool:
    """True when `obj` is a packed micro-CLIP checkpoint (a dict with this module's format tag)."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def token_ids_of(sentences: Iterable[str]) -> torch.Tensor:
    """Sorted unique token ids (SOT and EOT included) used by `sentences`: (K,) int64.

    Read from the BPE encoding itself rather than from padded `tokenize` output, because the pad
    value 0 is also the id of a real token ("!").
    """
    bpe = clip_module().clip._tokenizer
    ids = {bpe.encoder["<|startoftext|>"], bpe.encoder["<|endoftext|>"]}
    for sentence in sentences:
        ids.update(bpe.encode(sentence))
    return torch.tensor(sorted(ids), dtype=torch.long)


def pack_micro_checkpoint(model: nn.Module, keep_token_ids: torch.Tensor, config: Mapping,
                          meta: Optional[Mapping] = None) -> dict:
    """The packed (fp16, pruned-vocabulary) checkpoint of a micro CLIP.

    Args:
        model: a `clip.model.CLIP` built with `config`.
        keep_token_ids: (K,) token ids whose embedding rows are kept (see `token_ids_of`).
        config: the constructor arguments (stored, so the checkpoint is self-describing).
        meta: JSON-like facts to store (data seed, n_images, epochs, zero-shot numbers ...).

    Returns:
        {"format", "config", "token_ids" (K,) int64, "token_rows" (K, width) fp16,
         "state_dict" (every other tensor, fp16), "meta"}.
    """
    keep = torch.as_tensor(keep_token_ids, dtype=torch.long).unique().sort().values
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    table = state.pop("token_embedding.weight")  # (vocab, width)
    if keep.numel() and (keep.min() < 0 or keep.max() >= table.shape[0]):
        raise ValueError(f"token ids must lie in 0..{table.shape[0] - 1}")
    return {
        "format": FORMAT,
        "config": dict(config),
        "token_ids": keep,
        "token_rows": table[keep].to(torch.float16),  # (K, width)
        "state_dict": {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()},
        "meta": dict(meta or {}),
    }


def unpack_micro_checkpoint(ckpt: Mapping, source: str = "micro checkpoint") -> tuple:
    """Rebuild a full fp32 CLIP state dict from a packed checkpoint.

    Args:
        ckpt: a dict made by `pack_micro_checkpoint`.
        source: name of the checkpoint in error messages.

    Returns:
        (state_dict with fp32 tensors and a full (vocab, width) token embedding that is zero outside
        the kept rows, config dict).
    """
    if not is_micro_checkpoint(ckpt):
        raise BackboneFileError(f"{source} is not a packed micro-CLIP checkpoint (format {FORMAT!r})")
    try:
        cfg = dict(ckpt["config"])
        ids, rows = ckpt["token_ids"], ckpt["token_rows"]
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    except (KeyError, AttributeError, TypeError) as exc:
        raise BackboneFileError(f"{source} is an incomplete micro-CLIP checkpoint: {exc!r}") from None
    if rows.shape != (ids.numel(), cfg["transformer_width"]):
        raise BackboneFileError(f"{source}: token_rows has shape {tuple(rows.shape)}, expected "
                                f"({ids.numel()}, {cfg['transformer_width']})")
    table = torch.zeros(cfg["vocab_size"], cfg["transformer_width"])  # (vocab, width); zeros = unknown
    table[ids] = rows.float()
    state["token_embedding.weight"] = table
    return state, cfg


def save_micro_clip(model: nn.Module, path: PathLike, keep_token_ids: torch.Tensor,
                    config: Optional[Mapping] = None, meta: Optional[Mapping] = None) -> str:
    """Pack and write a micro CLIP and its `<name>.sha256` sidecar (sha256sum format).

    Args:
        model: the trained `clip.model.CLIP`.
        path: output `.pt` file.
        keep_token_ids: token ids whose embedding rows are kept.
        config: constructor arguments (default `MICRO_CONFIG`).
        meta: facts stored in the checkpoint.

    Returns:
        The SHA-256 of the written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pack_micro_checkpoint(model, keep_token_ids, config or MICRO_CONFIG, meta), path)
    digest = sha256_file(path)
    path.with_suffix(".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def _expected_sha256(path: Path) -> Optional[str]:
    sidecar = path.with_suffix(".sha256")
    if not sidecar.is_file():
        return None
    text = sidecar.read_text().split()
    return text[0] if text else None


def read_micro_checkpoint(path: PathLike = MICRO_CHECKPOINT, sha256: Optional[str] = None) -> dict:
    """Read and verify a packed micro checkpoint (without building the model).

    Args:
        path: the `.pt` file (default: the committed asset).
        sha256: expected checksum; default: the `<name>.sha256` sidecar next to the file.

    Returns:
        The packed dict (see `pack_micro_checkpoint`).

    Raises:
        BackboneUnavailable: the file is missing.
        BackboneFileError: checksum mismatch, or the file is not a packed micro checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneUnavailable(
            f"the micro CLIP checkpoint {path} is missing. It is committed with parkit; regenerate "
            f"it with the command in {ASSETS / 'README.md'} ({REGENERATE} ...).")
    expected = sha256 or _expected_sha256(path)
    if expected is None:
        raise BackboneFileError(f"no checksum for {path}: {path.with_suffix('.sha256')} is missing "
                                f"(pass sha256=... or restore the file)")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise BackboneFileError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}. The checkpoint was "
            f"modified or corrupted: restore it from git (`git checkout -- {path.name}` in "
            f"parkit/assets) or regenerate it and its .sha256 ({REGENERATE}).")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BackboneFileError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not is_micro_checkpoint(ckpt):
        raise BackboneFileError(f"{path} is not a packed micro-CLIP checkpoint (format {FORMAT!r})")
    return ckpt


def load_micro_clip(path: PathLike = MICRO_CHECKPOINT, sha256: Optional[str] = None,
                    device: Union[str, torch.device, None] = None) -> nn.Module:
    """The committed compact CLIP, verified against its checksum, as an fp32 `clip.model.CLIP`.

    Args:
        path: a packed checkpoint (default `parkit/assets/micro_clip.pt`).
        sha256: expected checksum (default: the `.sha256` sidecar).
        device: where to put the model (default: the CPU).

    Returns:
        The model in eval mode. `model.parkit_token_ids` holds the (K,) token ids that have
        trained (non-zero) embedding rows; `model.parkit_meta` the training facts.
    """
    ckpt = read_micro_checkpoint(path, sha256)
    state, cfg = unpack_micro_checkpoint(ckpt, source=str(path))
    model = clip_from_state_dict(state, config=cfg, source=str(path))
    # Plain attributes (not buffers) so the CLIP state dict keeps OpenAI's exact key set.
    model.parkit_token_ids = ckpt["token_ids"].clone()
    model.parkit_meta = dict(ckpt.get("meta", {}))
    return model.to(device or "cpu").eval()


def micro_clip(pretrained: bool = True, seed: int = 0) -> nn.Module:
    """The micro CLIP: the committed weights, or seeded random ones (`pretrained=False`)."""
    return load_micro_clip() if pretrained else build_clip(MICRO_CONFIG, seed=seed)


def unknown_words(model: nn.Module, sentences: Sequence[str]) -> dict:
    """Words of `sentences` whose tokens have no trained row in a micro CLIP's packed vocabulary.

    Args:
        model: a model from `load_micro_clip` (others have a full vocabulary: the result is empty).
        sentences: the sentences to check.

    Returns:
        {sentence: [unknown BPE tokens as text]} for the sentences that have any.
    """
    known = getattr(model, "parkit_token_ids", None)
    if known is None:
        return {}
    known = set(known.tolist())
    bpe = clip_module().clip._tokenizer
    out = {}
    for sentence in sentences:
        missing = [bpe.decoder[t] for t in bpe.encode(sentence) if t not in known]
        if missing:
            out[sentence] = missing
    return out


def warn_unknown_words(model: nn.Module, sentences: Sequence[str]) -> None:
    """Warn (once per call) when a micro CLIP meets tokens it has no embedding for."""
    missing = unknown_words(model, sentences)
    if missing:
        sample = "; ".join(f"{s!r}: {w}" for s, w in list(missing.items())[:3])
        warnings.warn(
            f"{len(missing)} sentence(s) use tokens outside the micro CLIP's vocabulary (their "
            f"embedding is zero, so the text feature ignores them): {sample}", stacklevel=3)
