"""PETA from the DeepMAR / Rethinking_of_PAR `PETA.mat` (spec §11.1).

`peta.data` is 19,000 x 109: column 0 the image index (image `%05d.png` in the Rethinking
layout), column 1 the global person identity, columns 2-3 source subset and id inside it,
columns 4: the 105 binary attributes. The 35 evaluated attributes are selected and reordered
by `GROUP_ORDER`. `peta.partion_attribute` (sic) holds 5 random partitions with 1-based
train / val / test indices (9,500 / 1,900 / 7,600); trainval = train + val.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import as_indices, as_strings, get_field, read_mat, union
from parkit.data.partitioned import load_partitioned

# spec §11.1: indices into the 105 labels, giving the 35 evaluated attributes in group order.
GROUP_ORDER = (10, 18, 19, 30, 15, 7, 9, 11, 14, 21, 26, 29, 32, 33, 34, 6, 8, 12, 25, 27, 31, 13, 23,
               24, 28, 4, 5, 17, 20, 22, 0, 1, 2, 3, 16)

ANNOTATION_CANDIDATES = ("PETA.mat", "PETA/PETA.mat", "peta/PETA.mat", "data/PETA.mat",
                         "dataset_all.pkl", "PETA/dataset_all.pkl", "pad.pkl", "PETA/pad.pkl")


def read_peta_mat(path: Path) -> dict:
    """Parse PETA.mat into image names, 35-column labels, identities and the 5 partitions.

    Returns:
        dict with "image_names" (N,), "labels" (N, 35) raw, "identities" (N,), "subsets" (N,),
        "names" (35 attribute names), "partitions" (list of {"train", "val", "test"} 0-based).
    """
    mat = read_mat(path)
    peta = get_field(mat, "peta", path, "the PETA struct")
    data = np.asarray(get_field(peta, "data", path, "image index, identity and label matrix"))
    if data.ndim != 2 or data.shape[1] < 4 + max(GROUP_ORDER) + 1:
        raise DatasetError(f"{path}: peta.data should be N x 109 (4 id columns + 105 labels), got shape "
                           f"{data.shape}; is this the DeepMAR/Rethinking PETA.mat?")
    raw_names = as_strings(get_field(peta, "attribute", path, "attribute names"), path, "peta.attribute")
    n_raw = data.shape[1] - 4
    if len(raw_names) != n_raw:
        raise DatasetError(f"{path}: {len(raw_names)} attribute names for {n_raw} label columns "
                           f"(peta.data has {data.shape[1]} columns, the first 4 are ids)")
    n = data.shape[0]
    parts = get_field(peta, ["partion_attribute", "partition_attribute"], path, "the 5 partitions")
    parts = parts if isinstance(parts, list) else [parts]
    partitions = []
    for k, p in enumerate(parts):
        partitions.append({s: as_indices(get_field(p, s, path, f"partition {k} {s} indices"), n, path,
                                         f"partition {k} {s}") for s in ("train", "val", "test")})
    return {
        "image_names": [f"{int(i):05d}.png" for i in data[:, 0]],
        "labels": data[:, 4:][:, list(GROUP_ORDER)],
        "identities": data[:, 1].astype(np.int64),
        "subsets": data[:, 2].astype(np.int64),
        "names": [raw_names[i] for i in GROUP_ORDER],
        "partitions": partitions,
    }


def load_peta(root: Union[str, Path], *, partition: int = 0, annotation: Optional[Union[str, Path]] = None,
              sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
              skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None
              ) -> PARDataset:
    """Load PETA (35 attributes) with one of its 5 official random partitions.

    Args:
        root: dataset folder (holding `PETA.mat` and `images/`).
        partition: 0..4; PromptPAR reports partition 0 (spec §11.2).
        annotation: explicit annotation file (PETA.mat or a Rethinking `dataset_all.pkl`).
        sentences: sentence set ("official", "phrases", "clean") or a custom list of 35.
        require_images, skip_missing, image_dirs: see `parkit.data.formats.assemble`.

    Returns:
        A `PARDataset` with splits 9,500 / 1,900 / 7,600 (trainval 11,400) and identities.
    """
    return load_partitioned(
        "PETA", root, candidates=ANNOTATION_CANDIDATES, reader=read_peta_mat, partition=partition,
        make_splits=lambda part: {**part, "trainval": union(part["train"], part["val"])},
        mat_name="PETA.mat", official_sizes={"train": 9500, "val": 1900, "test": 7600, "trainval": 11400},
        annotation=annotation, sentences=sentences, require_images=require_images,
        skip_missing=skip_missing, image_dirs=image_dirs)
