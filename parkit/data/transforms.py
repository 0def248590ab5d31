"""Image transforms: the letterbox ("pad") preprocessing and PromptPAR's train/test pipelines.

Spec §11.3: the official code trains on images that were letterboxed offline to a black-bordered
square (`Pad_datasets`), then applies
    train: Resize -> Pad(10, zero) -> RandomCrop -> RandomHorizontalFlip(0.5) -> ToTensor -> Normalize
    test:  Resize -> ToTensor -> Normalize
with mean = std = 0.5 per channel, not CLIP's statistics. parkit letterboxes on the fly, which makes
the Resize a no-op, and offers CLIP's statistics as an option (`normalization="clip"`).

`build_transform` returns a `PARTransform`, which keeps the deterministic letterbox step apart from
the rest, so `PARTorchDataset(cache=True)` can cache letterboxed images and rerun only the random part.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

OFFICIAL_MEAN = (0.5, 0.5, 0.5)
OFFICIAL_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORMALIZATIONS = {"official": (OFFICIAL_MEAN, OFFICIAL_STD), "clip": (CLIP_MEAN, CLIP_STD)}
TRAIN_PAD = 10  # spec §11.3: Pad(10) before RandomCrop


def _stats(normalization: str) -> tuple:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r} "
                         f"('official' = mean/std 0.5 as in PromptPAR's code, 'clip' = CLIP's statistics)")
    return NORMALIZATIONS[normalization]


def letterbox(img: Image.Image, size: int) -> Image.Image:
    """Fit `img` into a black `size` x `size` square, keeping its aspect ratio (spec §11.3).

    Portrait images (the usual pedestrian crop) are scaled to height `size` and centred between
    black bars left and right; landscape images are scaled to width `size` with bars top and
    bottom. The official offline script leaves landscape images untouched and lets the later
    Resize((224, 224)) stretch them; parkit letterboxes them too, so nothing is ever distorted.
    Where the free space is odd, the extra column/row goes to the right/bottom bar.

    Args:
        img: PIL image in any mode (converted to RGB).
        size: side of the output square in pixels.

    Returns:
        RGB PIL image of size (size, size).
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"letterbox size must be a positive number of pixels, got {size}")
    img = img.convert("RGB")
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"cannot letterbox an empty image of size {img.size}")
    if h >= w:  # portrait or square: full height
        nw, nh = max(1, min(size, round(w * size / h))), size
    else:
        nw, nh = size, max(1, min(size, round(h * size / w)))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    if (nw, nh) == (size, size):
        return img
    out = Image.new("RGB", (size, size), (0, 0, 0))
    out.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return out


class Letterbox:
    """`letterbox` as a transform object (picklable, for DataLoader workers)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        return letterbox(img, self.size)

    def __repr__(self) -> str:
        return f"Letterbox(size={self.size})"


class PARTransform:
    """A transform in two parts: `pre` (deterministic letterbox, cacheable) and `post` (the rest).

    Calling it runs `post(pre(img))`. `PARTorchDataset(cache=True)` stores the output of `pre` as
    uint8 and reruns only `post` in later epochs.
    """

    def __init__(self, pre: Optional[Callable], post: Callable, train: bool, image_size: int, normalization: str):
        self.pre, self.post = pre, post
        self.train, self.image_size, self.normalization = train, image_size, normalization

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.post(self.pre(img) if self.pre is not None else img)

    def __repr__(self) -> str:
        return f"PARTransform(pre={self.pre!r}, post={self.post!r})"


def build_transform(train: bool, image_size: int = 224, normalization: str = "official") -> PARTransform:
    """PromptPAR's image pipeline (spec §11.3) on top of an on-the-fly letterbox.

    Args:
        train: True for the augmenting training pipeline, False for evaluation.
        image_size: side of the square input (224 for the CLIP ViTs; 96-112 for the compact model).
        normalization: "official" (mean = std = 0.5, as the released code) or "clip" (CLIP's
            own statistics, which the released code does not use).

    Returns:
        PARTransform mapping a PIL image to a (3, image_size, image_size) float32 tensor.
    """
    import torchvision.transforms as T

    mean, std = _stats(normalization)
    image_size = int(image_size)
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    steps = []
    if train:
        steps += [
            T.Pad(TRAIN_PAD, fill=0),
            T.RandomCrop(image_size),
            # Safe for PA100K/PETA/RAP labels: none of their attributes is left/right specific.
            # Randomness comes from torch's global RNG: seed it (torch.manual_seed) to reproduce.
            T.RandomHorizontalFlip(0.5),
        ]
    steps += [T.ToTensor(), T.Normalize(mean, std)]  # (3, S, S) float32
    return PARTransform(Letterbox(image_size), T.Compose(steps), train, image_size, normalization)


def denormalize(x: torch.Tensor, normalization: str = "official") -> torch.Tensor:
    """Undo `Normalize` for plotting.

    Args:
        x: (3, H, W) or (B, 3, H, W) normalized tensor.
        normalization: the statistics it was normalized with ("official" | "clip").

    Returns:
        tensor of the same shape with values clamped to [0, 1].
    """
    mean, std = _stats(normalization)
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"denormalize expects (3, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


def to_pil(x: torch.Tensor, normalization: str = "official") -> Image.Image:
    """A normalized (3, H, W) tensor back to a PIL image (for showing a model's input)."""
    arr = denormalize(x.detach().cpu().float(), normalization).permute(1, 2, 0).numpy()  # (H, W, 3)
    return Image.fromarray(np.round(arr * 255).astype(np.uint8))
