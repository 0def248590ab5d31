"""RAP v1 and RAP v2 from `RAP_annotation/RAP_annotation.mat` (spec §11.1), MATLAB v5 or v7.3.

RAPv1: struct `RAP_annotation` with `partion` (sic; 5 partitions of 1-based `train_index`
= trainval 33,268 and `test_index` 8,317), `label` (41,585 x 92, values 0/1/2 where 2 is
"unknown"), `attribute_eng` (92 names; the first 51 columns are evaluated), `imagesname`,
`identity` (-1 = unknown person). RAPv1 has no validation split: "val" is empty and
"train" equals "trainval".

RAPv2: fields `name` (84,928 images), `attribute` (152 names), `data` (84,928 x 152),
`selected_attribute` (54, 1-based), `partition_attribute` (5 partitions of 1-based
`train_index` / `val_index` / `test_index`), `person_identity`. The 54 selected attributes
are reordered by `RAPV2_GROUP_ORDER`; RAP-ZS drops "Age46-60" (53 attributes).

Raw values are kept: 2 ("unknown") ends up in `PARDataset.ignore_mask`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import as_indices, as_strings, get_field, read_mat, union
from parkit.data.partitioned import load_partitioned

RAPV1_NUM_ATTRIBUTES = 51
# spec §11.1: head/upper/lower/shoes/attachments first, then age (4), female, body (3),
# role (2), actions (9).
RAPV2_GROUP_ORDER = tuple(range(10, 45)) + (1, 2, 3, 4, 0) + tuple(range(5, 10)) + tuple(range(45, 54))
# RAP-ZS: the same order without selected index 4 ("Age46-60").
RAPZS_GROUP_ORDER = tuple(i for i in RAPV2_GROUP_ORDER if i != 4)

ANNOTATION_CANDIDATES = ("RAP_annotation/RAP_annotation.mat", "RAP_annotation.mat",
                         "RAP/RAP_annotation/RAP_annotation.mat", "annotation/RAP_annotation.mat")
RAPV1_CANDIDATES = ANNOTATION_CANDIDATES + (
    "RAPv1/RAP_annotation/RAP_annotation.mat", "RAPV1/RAP_annotation/RAP_annotation.mat",
    "RAPV1/RAP_annotation.mat", "dataset_all.pkl", "RAPV1/dataset_all.pkl", "pad.pkl", "RAPV1/pad.pkl")
RAPV2_CANDIDATES = ANNOTATION_CANDIDATES + (
    "RAPv2/RAP_annotation/RAP_annotation.mat", "RAPV2/RAP_annotation/RAP_annotation.mat",
    "RAPV2/RAP_annotation.mat", "dataset_all.pkl", "RAPV2/dataset_all.pkl", "pad.pkl", "RAPV2/pad.pkl")


def _struct(path: Path) -> dict:
    mat = read_mat(path)
    return get_field(mat, "RAP_annotation", path, "the RAP_annotation struct")


def _identities(ann: dict, keys, n: int, path: Path) -> Optional[np.ndarray]:
    for k in keys:
        if k in ann:
            ids = np.asarray(ann[k]).ravel()
            if ids.size != n:
                raise DatasetError(f"{path}: {k} has {ids.size} entries for {n} images")
            return ids.astype(np.int64)
    return None


def read_rapv1_mat(path: Path) -> dict:
    """Parse RAPv1's RAP_annotation.mat: image names, 51-column labels, identities, partitions."""
    ann = _struct(path)
    names = as_strings(get_field(ann, "imagesname", path, "image names"), path, "imagesname")
    label = np.atleast_2d(np.asarray(get_field(ann, "label", path, "label matrix")))
    if label.shape[0] != len(names):
        raise DatasetError(f"{path}: label has {label.shape[0]} rows for {len(names)} image names")
    if label.shape[1] < RAPV1_NUM_ATTRIBUTES:
        raise DatasetError(f"{path}: label has {label.shape[1]} columns; RAPv1 evaluates the first "
                           f"{RAPV1_NUM_ATTRIBUTES} of 92. Is this the RAPv1 annotation?")
    attr = as_strings(get_field(ann, "attribute_eng", path, "English attribute names"), path, "attribute_eng")
    n = len(names)
    parts = get_field(ann, ["partion", "partition"], path, "the 5 partitions")
    parts = parts if isinstance(parts, list) else [parts]
    partitions = [{"trainval": as_indices(get_field(p, "train_index", path, f"partition {k} train_index"), n,
                                          path, f"partition {k} train_index"),
                   "test": as_indices(get_field(p, "test_index", path, f"partition {k} test_index"), n,
                                      path, f"partition {k} test_index")}
                  for k, p in enumerate(parts)]
    return {"image_names": names, "labels": label[:, :RAPV1_NUM_ATTRIBUTES],
            "names": attr[:RAPV1_NUM_ATTRIBUTES], "identities": _identities(ann, ("identity",), n, path),
            "partitions": partitions}


def read_rapv2_mat(path: Path, group_order: Sequence[int] = RAPV2_GROUP_ORDER) -> dict:
    """Parse RAPv2's RAP_annotation.mat with the selected attributes in `group_order`."""
    ann = _struct(path)
    names = as_strings(get_field(ann, "name", path, "image names"), path, "name")
    data = np.atleast_2d(np.asarray(get_field(ann, "data", path, "label matrix")))
    attr = as_strings(get_field(ann, "attribute", path, "attribute names"), path, "attribute")
    n = len(names)
    if data.shape[0] != n:
        raise DatasetError(f"{path}: data has {data.shape[0]} rows for {n} image names")
    if data.shape[1] != len(attr):
        raise DatasetError(f"{path}: data has {data.shape[1]} columns for {len(attr)} attribute names")
    selected = as_indices(get_field(ann, "selected_attribute", path, "selected attribute indices"),
                          len(attr), path, "selected_attribute")
    if len(selected) <= max(group_order):
        raise DatasetError(f"{path}: selected_attribute has {len(selected)} entries; RAPv2 selects 54. "
                           f"Is this the RAPv2 annotation (RAPv1's file has no selected_attribute)?")
    columns = selected[list(group_order)]
    parts = get_field(ann, ["partition_attribute", "partion_attribute"], path, "the 5 partitions")
    parts = parts if isinstance(parts, list) else [parts]
    partitions = [{s: as_indices(get_field(p, f"{s}_index", path, f"partition {k} {s}_index"), n, path,
                                 f"partition {k} {s}_index") for s in ("train", "val", "test")}
                  for k, p in enumerate(parts)]
    return {"image_names": names, "labels": data[:, columns], "names": [attr[c] for c in columns],
            "identities": _identities(ann, ("person_identity", "identity"), n, path),
            "partitions": partitions}


def load_rapv1(root: Union[str, Path], *, partition: int = 0, annotation: Optional[Union[str, Path]] = None,
               sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
               skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None
               ) -> PARDataset:
    """Load RAP v1 (51 attributes) with one of its 5 official partitions.

    Args:
        root: dataset folder (holding `RAP_annotation/RAP_annotation.mat` and `RAP_dataset/`).
        partition: 0..4 (PromptPAR uses 0).
        annotation: explicit annotation file (.mat v5/v7.3, or a Rethinking `dataset_all.pkl`).
        sentences: "official" = the template-1 sentences (spec §14 item 21), "phrases" = what
            the released loader fed to CLIP, or a custom list of 51.
        require_images, skip_missing, image_dirs: see `parkit.data.formats.assemble`.

    Returns:
        A `PARDataset` with trainval 33,268 / test 8,317 ("train" = "trainval", "val" empty).
    """
    return load_partitioned(
        "RAPv1", root, candidates=RAPV1_CANDIDATES, reader=read_rapv1_mat, partition=partition,
        make_splits=lambda part: {"train": part["trainval"], "val": np.zeros(0, dtype=np.int64),
                                  "test": part["test"], "trainval": part["trainval"]},
        mat_name="RAP_annotation.mat", official_sizes={"trainval": 33268, "test": 8317},
        note="RAPv1 has no validation split: train = trainval, val is empty",
        annotation=annotation, sentences=sentences, require_images=require_images,
        skip_missing=skip_missing, image_dirs=image_dirs)


def load_rapv2(root: Union[str, Path], *, partition: int = 0, annotation: Optional[Union[str, Path]] = None,
               sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
               skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None
               ) -> PARDataset:
    """Load RAP v2 (54 attributes in group order) with one of its 5 official partitions.

    Args:
        root: dataset folder (holding `RAP_annotation/RAP_annotation.mat` and `RAP_dataset/`).
        partition: 0..4 (PromptPAR uses 0).
        annotation: explicit annotation file (.mat v5/v7.3, or a Rethinking `dataset_all.pkl`).
        sentences: sentence set ("official", "phrases", "clean") or a custom list of 54.
        require_images, skip_missing, image_dirs: see `parkit.data.formats.assemble`.

    Returns:
        A `PARDataset` with train 50,957 / val 16,986 / test 16,985 (trainval 67,943).
    """
    return load_partitioned(
        "RAPv2", root, candidates=RAPV2_CANDIDATES, reader=read_rapv2_mat, partition=partition,
        make_splits=lambda part: {**part, "trainval": union(part["train"], part["val"])},
        mat_name="RAP_annotation.mat",
        official_sizes={"train": 50957, "val": 16986, "test": 16985, "trainval": 67943},
        annotation=annotation, sentences=sentences, require_images=require_images,
        skip_missing=skip_missing, image_dirs=image_dirs)
