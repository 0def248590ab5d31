"""Seeded stand-ins for the paper profile's two weight files, for dry runs without them.

The `paper` profile reads OpenAI's CLIP ViT-L/14 file and timm's ImageNet ViT-B/16 file
(`jx_vit_base_p16_224-80ecf9dd.pth`, the MM-former's initialisation). Neither can be fetched on a
machine without internet access, and ViT-L/14 is too slow for a CPU dry run (a plain forward takes
about 1.2 s per image on two cores, `benchmarks/RESULTS.md`). `write_check_weights` writes files in
the same formats, read by the same loading code (`load_clip(path)`, `read_vit_weights`), with
seeded random values:

- the CLIP file is an OpenAI-layout state dict with ViT-L/14's widths, patch size, resolution,
  context length and vocabulary, but `CHECK_LAYERS` vision and text blocks instead of 24 and 12
  (every per-layer shape is ViT-L/14's; only the depth is cut, so a training step costs about a
  twelfth of the real one);
- the timm file has ViT-B/16's full layout (12 blocks of width 768, the classifier head included).

`describe_check_weights` reports their checksums next to the official ones, so no result made
with them can pass for one made with the released weights. The `paper-check` profile
(`parkit.profiles`) runs the paper profile's code path on them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

import torch

from parkit.backbone.clipcore import build_clip, sha256_file
from parkit.backbone.loading import clip_config, openai_file_info

CHECK_LAYERS = 2  # vision and text blocks of the stand-in CLIP (ViT-L/14 has 24 and 12)
CLIP_CHECK_FILENAME = "ViT-L-14-layout-2-layers-seeded.pt"
VIT_CHECK_FILENAME = "jx_vit_base_p16_224-layout-seeded.pth"
VIT_B16_OFFICIAL_PREFIX = "80ecf9dd"  # timm names its files after the first 8 hex digits of the SHA-256

# Environment variables the paper-check profile reads (PARKIT_VIT_B16 is also the paper profile's).
CLIP_ENV, VIT_ENV = "PARKIT_CLIP_WEIGHTS", "PARKIT_VIT_B16"


def _timm_vit_b16_state(generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """A state dict with the keys and shapes of timm's `vit_base_patch16_224` (1000 classes)."""
    width, depth, mlp, grid, classes = 768, 12, 3072, 14, 1000

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=generator) * std

    state = {"cls_token": normal(1, 1, width), "pos_embed": normal(1, grid * grid + 1, width),
             "patch_embed.proj.weight": normal(width, 3, 16, 16), "patch_embed.proj.bias": torch.zeros(width)}
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": torch.ones(width), p + "norm1.bias": torch.zeros(width),
            p + "attn.qkv.weight": normal(3 * width, width), p + "attn.qkv.bias": torch.zeros(3 * width),
            p + "attn.proj.weight": normal(width, width), p + "attn.proj.bias": torch.zeros(width),
            p + "norm2.weight": torch.ones(width), p + "norm2.bias": torch.zeros(width),
            p + "mlp.fc1.weight": normal(mlp, width), p + "mlp.fc1.bias": torch.zeros(mlp),
            p + "mlp.fc2.weight": normal(width, mlp), p + "mlp.fc2.bias": torch.zeros(width),
        })
    state.update({"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width),
                  "head.weight": normal(classes, width), "head.bias": torch.zeros(classes)})
    return state


def write_check_weights(folder, seed: int = 0, overwrite: bool = False) -> Dict[str, Path]:
    """Write the two seeded stand-in weight files into `folder` (kept when already there).

    Args:
        folder: where to write them (created).
        seed: seed of the random values (the same seed writes the same bytes).
        overwrite: rewrite files that already exist.

    Returns:
        {"clip": path of the OpenAI-layout CLIP file, "vit": path of the timm-layout ViT-B/16 file}.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"clip": folder / CLIP_CHECK_FILENAME, "vit": folder / VIT_CHECK_FILENAME}
    if overwrite or not paths["clip"].is_file():
        config = {**clip_config("ViT-L/14"), "vision_layers": CHECK_LAYERS, "transformer_layers": CHECK_LAYERS}
        state = build_clip(config, seed=seed).state_dict()
        _save_atomically({k: v.contiguous() for k, v in state.items()}, paths["clip"])
    if overwrite or not paths["vit"].is_file():
        generator = torch.Generator().manual_seed(seed)
        _save_atomically(_timm_vit_b16_state(generator), paths["vit"])
    return paths


def _save_atomically(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)  # an interrupted write never leaves a half file under the real name


def describe_check_weights(clip_path, vit_path: Optional[os.PathLike] = None) -> str:
    """One line per weight file: its path, its SHA-256, and whether it is the official file."""
    official_clip = openai_file_info("ViT-L/14")[1]
    lines = []
    for what, path, official in (("CLIP", clip_path, official_clip), ("MM-former ViT-B/16", vit_path, None)):
        if path is None:
            continue
        path = Path(path)
        digest = sha256_file(path)
        if official is not None:
            same = digest == official
            ref = f"OpenAI's ViT-L-14.pt is {official[:12]}..."
        else:
            same = digest.startswith(VIT_B16_OFFICIAL_PREFIX)
            ref = f"timm's file starts {VIT_B16_OFFICIAL_PREFIX}"
        verdict = "the official weights" if same else "NOT the official weights: results are a dry run"
        lines.append(f"{what}: {path.name} sha256 {digest[:12]}... ({ref}): {verdict}")
    return "\n".join(lines)
