"""The in-memory dataset record every loader returns.

A `PARDataset` holds annotations only (names, sentences, raw labels, image paths, splits); pixels
are read later by `parkit.data.torchdata.PARTorchDataset`. Labels keep their raw values: 0, 1, and
2 where RAP marks "unknown". Unknown entries form the ignore mask that loss and metrics skip.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

SPLIT_NAMES = ("train", "val", "test", "trainval")


class DatasetError(ValueError):
    """A dataset could not be read; the message names the file and what to do."""


@dataclass
class PARDataset:
    """Annotations of one pedestrian-attribute dataset.

    Attributes:
        name: dataset name as registered in `parkit.data.list_datasets()`.
        attributes: attribute names in label order.
        sentences: the expanded sentence fed to CLIP for each attribute.
        regions: body region of each attribute (see `parkit.attributes.REGIONS`).
        labels: (N, A) uint8 raw label values.
        image_paths: absolute path of each row's image, or None when images were not resolved.
        splits: index arrays (int64) for "train", "val", "test", "trainval".
        identities: (N,) person identity per row, when the annotation has one.
        root: dataset root folder.
        split_source: where the splits come from, e.g. "official" or
            "parkit identity-disjoint split (NOT the official split)".
        info: free-form facts (partition number, dropped rows, official sizes ...).
    """

    name: str
    attributes: list
    sentences: list
    regions: list
    labels: np.ndarray
    image_paths: list
    splits: dict
    identities: Optional[np.ndarray] = None
    root: Optional[Path] = None
    split_source: str = "official"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.uint8)
        if self.labels.ndim != 2:
            raise DatasetError(f"{self.name}: labels must be a 2-D (N, A) matrix, got shape {self.labels.shape}")
        n, a = self.labels.shape
        for what, seq in (("sentences", self.sentences), ("regions", self.regions)):
            if len(seq) != len(self.attributes):
                raise DatasetError(
                    f"{self.name}: {len(seq)} {what} for {len(self.attributes)} attributes")
        if a != len(self.attributes):
            raise DatasetError(
                f"{self.name}: the label matrix has {a} columns but the attribute list has "
                f"{len(self.attributes)} names; check that the annotation file and the attribute "
                f"list belong to the same dataset")
        if len(self.image_paths) != n:
            raise DatasetError(f"{self.name}: {len(self.image_paths)} image paths for {n} label rows")
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.splits.items()}
        for k, v in self.splits.items():
            if v.size and (v.min() < 0 or v.max() >= n):
                raise DatasetError(f"{self.name}: split {k!r} indexes rows outside 0..{n - 1}")

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    @property
    def ignore_mask(self) -> np.ndarray:
        """(N, A) bool: True where the label is unknown (raw value other than 0/1)."""
        return self.labels > 1

    @property
    def binary_labels(self) -> np.ndarray:
        """(N, A) float32 targets: 1 where the raw label is 1, else 0 (unknowns are masked separately)."""
        return (self.labels == 1).astype(np.float32)

    def split_indices(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise DatasetError(f"{self.name} has no split {split!r}; available: {sorted(self.splits)}")
        return self.splits[split]

    def subset(self, rows: Union[str, Sequence[int], np.ndarray]) -> "PARDataset":
        """A new dataset with only `rows` (a split name or an index array); its single split is "all"."""
        idx = self.split_indices(rows) if isinstance(rows, str) else np.asarray(rows, dtype=np.int64)
        ids = None if self.identities is None else self.identities[idx]
        return replace(
            self,
            labels=self.labels[idx],
            image_paths=[self.image_paths[i] for i in idx],
            splits={"all": np.arange(len(idx))},
            identities=ids,
            info={**self.info, "subset_of": self.name},
        )

    def summary(self) -> dict:
        """Counts per split, for tables."""
        return {"dataset": self.name, "attributes": self.num_attributes, "images": len(self),
                **{k: int(len(v)) for k, v in self.splits.items()}, "splits": self.split_source}
