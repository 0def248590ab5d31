"""PA-100K from its original `annotation.mat` (spec §11.1).

The file holds `train/val/test_images_name` (80,000 / 10,000 / 10,000) and `*_label` (n x 26,
0/1) plus the 26 attribute names. The split is fixed: rows 0-79,999 train, 80,000-89,999 val,
90,000-99,999 test, trainval = train + val. Images live in `data/` (official) or
`release_data/release_data/` (the archive's layout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import (as_strings, assemble, check_names, find_annotation, get_field,
                                 read_mat, schema_lists)
from parkit.data.pickles import load_from_pickle

ANNOTATION_CANDIDATES = ("annotation.mat", "PA100k/annotation.mat", "PA100K/annotation.mat",
                         "pa100k/annotation.mat", "data/annotation.mat", "PA100k/data/annotation.mat",
                         "dataset_all.pkl", "PA100k/dataset_all.pkl", "pad.pkl", "PA100k/pad.pkl")


def load_pa100k(root: Union[str, Path], *, annotation: Optional[Union[str, Path]] = None,
                sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
                skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None
                ) -> PARDataset:
    """Load PA-100K.

    Args:
        root: dataset folder (holding `annotation.mat` or `PA100k/annotation.mat`, and images).
        annotation: explicit annotation file (.mat, or a Rethinking_of_PAR `dataset_all.pkl`).
        sentences: sentence set of the schema ("official", "phrases", "clean") or a custom list.
        require_images: resolve every image path; False reads the annotation alone.
        skip_missing: keep only rows whose image exists (splits filtered, count in `info`).
        image_dirs: extra image folders searched first.

    Returns:
        A `PARDataset` with 26 attributes and the official 80,000 / 10,000 / 10,000 split.
    """
    root = Path(root)
    path = find_annotation(root, ANNOTATION_CANDIDATES, "PA100K", annotation)
    if path.suffix == ".pkl":
        return load_from_pickle("PA100K", root, path, sentences=sentences, require_images=require_images,
                                skip_missing=skip_missing, image_dirs=image_dirs)
    mat = read_mat(path)
    names, labels, splits, start = [], [], {}, 0
    for split in ("train", "val", "test"):
        split_names = as_strings(get_field(mat, f"{split}_images_name", path, f"{split} image names"),
                                 path, f"{split}_images_name")
        split_labels = np.atleast_2d(np.asarray(get_field(mat, f"{split}_label", path, f"{split} labels")))
        if split_labels.shape[0] != len(split_names):
            raise DatasetError(f"{path}: {split}_label has {split_labels.shape[0]} rows but "
                               f"{split}_images_name has {len(split_names)} names; the file is inconsistent")
        names += split_names
        labels.append(split_labels)
        splits[split] = np.arange(start, start + len(split_names))
        start += len(split_names)
    splits["trainval"] = np.concatenate([splits["train"], splits["val"]])
    widths = {lab.shape[1] for lab in labels}
    if len(widths) != 1:
        raise DatasetError(f"{path}: train/val/test label matrices have different widths {sorted(widths)}")
    if "attributes" in mat:
        check_names(as_strings(mat["attributes"], path, "attributes"), schema_lists("PA100K")[0], "PA100K", path)
    return assemble("PA100K", labels=np.concatenate(labels), image_names=names, splits=splits, root=root,
                    annotation=path, split_source="official (annotation.mat fixed split)",
                    info={"official_sizes": {"train": 80000, "val": 10000, "test": 10000}},
                    sentences=sentences, require_images=require_images, skip_missing=skip_missing,
                    image_dirs=image_dirs)
