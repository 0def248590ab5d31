"""The torch side of the data: `PARTorchDataset` (pixels + targets for one split) and `make_loader`.

A `PARDataset` holds annotations only; this module reads the images, applies a transform (usually
`parkit.data.transforms.build_transform`) and yields

    image (3, H, W) float32, target (A,) float32 in {0, 1}, ignore (A,) bool, index int64

where `target` is 1 where the raw label is 1, `ignore` marks unknown labels (raw value 2 in RAP)
that the loss and the metrics skip, and `index` is the row in the `PARDataset` (so predictions can
be matched back to files even when a corrupt image was replaced by the next one).
"""
from __future__ import annotations

import random
import warnings
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from parkit.data.base import DatasetError, PARDataset
from parkit.data.transforms import build_transform

# Everything PIL raises for a missing, truncated or undecodable file.
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class PARTorchDataset(Dataset):
    """Images and labels of some rows of a `PARDataset`.

    Args:
        dataset: the annotations; `dataset.image_paths` must be resolved (not None).
        indices: a split name ("train", "test", ...), an array of row indices, or None for all rows.
        transform: PIL image -> (3, H, W) float32 tensor; default `build_transform(False, 224)`.
            A `PARTransform` (what `build_transform` returns) lets `cache=True` store the
            letterboxed image and rerun only the random part.
        on_corrupt: "raise" (DatasetError naming the file and row) or "skip" (substitute the next
            readable row of `indices`, record the path in `.skipped`, warn once per file).
        cache: keep decoded (and letterboxed) images in memory as uint8, so later epochs skip
            decoding. About size*size*3 bytes per image (112 px: 37 KiB; 2 000 images: 75 MiB).
            With DataLoader workers each worker holds its own cache (use persistent workers).
    """

    def __init__(self, dataset: PARDataset, indices: Union[str, Sequence[int], np.ndarray, None] = None,
                 transform: Optional[Callable] = None, on_corrupt: str = "raise", cache: bool = False):
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        if transform is None:
            transform = build_transform(train=False, image_size=224)
        if indices is None:
            idx = np.arange(len(dataset), dtype=np.int64)
        elif isinstance(indices, str):
            idx = dataset.split_indices(indices)
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= len(dataset)):
                raise DatasetError(f"{dataset.name}: indices must lie in 0..{len(dataset) - 1}")
        self.dataset = dataset
        self.indices = idx
        self.transform = transform
        self.on_corrupt = on_corrupt
        self.cache = bool(cache)
        self.skipped: list = []          # paths replaced by another row (on_corrupt="skip")
        self._bad: set = set()           # rows known to be unreadable
        self._images: dict = {}          # row -> (H, W, 3) uint8, when caching
        self._targets = torch.from_numpy(dataset.binary_labels)         # (N, A) float32
        self._ignore = torch.from_numpy(np.asarray(dataset.ignore_mask))  # (N, A) bool
        self._pre = getattr(transform, "pre", None)
        self._post = getattr(transform, "post", None) if self._pre is not None else transform

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, row: int) -> Image.Image:
        """Decoded (and, with a PARTransform, letterboxed) RGB image of one row."""
        if self.cache and row in self._images:
            return Image.fromarray(self._images[row])
        path = self.dataset.image_paths[row]
        if path is None:
            raise DatasetError(
                f"{self.dataset.name}: row {row} has no image path; load the dataset with its image "
                f"folder (and require_images=True) before building a PARTorchDataset")
        with Image.open(path) as im:
            im.load()  # PIL decodes lazily: force it here so errors surface with the file name
            img = im.convert("RGB")
        if self._pre is not None:
            img = self._pre(img)
        if self.cache:
            self._images[row] = np.asarray(img, dtype=np.uint8).copy()
        return img

    def __getitem__(self, pos: int):
        n = len(self.indices)
        for step in range(n):
            row = int(self.indices[(pos + step) % n])
            if row in self._bad:
                continue
            try:
                img = self._read(row)
            except _READ_ERRORS as err:
                path = self.dataset.image_paths[row]
                if self.on_corrupt == "raise":
                    raise DatasetError(
                        f"{self.dataset.name}: cannot read image {path} (row {row}): "
                        f"{type(err).__name__}: {err}. Replace or remove the file, or pass "
                        f"on_corrupt='skip' to use the next readable image instead") from err
                self._bad.add(row)
                if path not in self.skipped:
                    self.skipped.append(path)
                    warnings.warn(f"{self.dataset.name}: skipping unreadable image {path} (row {row}): {err}",
                                  RuntimeWarning, stacklevel=2)
                continue
            x = self._post(img)  # (3, H, W) float32
            return x, self._targets[row], self._ignore[row], row
        raise DatasetError(f"{self.dataset.name}: none of the {n} images of this split could be read "
                           f"(first: {self.dataset.image_paths[int(self.indices[0])] if n else None})")


def collate(batch: list) -> tuple:
    """Stack samples into (images (B,3,H,W), targets (B,A), ignore (B,A), index (B,) int64)."""
    images, targets, ignore, index = zip(*batch)
    return (torch.stack(images), torch.stack(targets), torch.stack(ignore),
            torch.as_tensor(index, dtype=torch.int64))


def _seed_worker(worker_id: int) -> None:
    # Each worker inherits a distinct torch seed from the loader's generator; derive numpy's and
    # random's from it so any library-level randomness is reproducible too.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: PARDataset, split: Union[str, Sequence[int], np.ndarray, None], transform: Callable,
                batch_size: int = 32, shuffle: bool = False, drop_last: bool = False, num_workers: int = 0,
                seed: int = 0, on_corrupt: str = "raise", cache: bool = False) -> DataLoader:
    """A DataLoader over one split, with a seeded shuffle.

    Args:
        dataset: annotations (PARDataset).
        split: split name, row indices, or None for all rows.
        transform: see `PARTorchDataset`.
        batch_size, shuffle, drop_last, num_workers: as for `torch.utils.data.DataLoader`.
        seed: seeds the shuffling generator (and the workers' seeds), so two loaders with the same
            seed visit rows in the same order. Augmentation with num_workers=0 draws from torch's
            global RNG: call `torch.manual_seed` to reproduce it.
        on_corrupt, cache: see `PARTorchDataset`.

    Returns:
        DataLoader yielding (images (B,3,H,W) float32, targets (B,A) float32, ignore (B,A) bool,
        index (B,) int64).
    """
    ds = PARTorchDataset(dataset, split, transform, on_corrupt=on_corrupt, cache=cache)
    if len(ds) == 0:
        raise DatasetError(f"{dataset.name}: split {split!r} is empty")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    gen = torch.Generator().manual_seed(int(seed))
    return DataLoader(ds, batch_size=int(batch_size), shuffle=shuffle, drop_last=drop_last,
                      num_workers=int(num_workers), collate_fn=collate, generator=gen,
                      worker_init_fn=_seed_worker if num_workers else None,
                      persistent_workers=bool(num_workers) and cache)
