"""Zero-shot settings PETA-ZS and RAP-ZS (spec §11.1): no person in both training and test.

The official splits are Jia et al.'s `dataset_zs_run0.pkl` (Rethinking_of_PAR); when that file
is present under the root it is used. Otherwise parkit builds an identity-disjoint split from
the identity columns (PETA.mat data column 1; RAPv2 `person_identity`), seeded, with sizes
close to the official ones. Such a split is NOT the official one: `split_source` says so and
`info` records both its sizes and the official sizes, so numbers are never mixed up.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import (assemble, check_names, check_root, find_annotation, schema_lists)
from parkit.data.peta import ANNOTATION_CANDIDATES, read_peta_mat
from parkit.data.pickles import load_from_pickle
from parkit.data.rap import RAPV2_CANDIDATES, RAPZS_GROUP_ORDER, read_rapv2_mat

OFFICIAL_SIZES = {
    "PETA-ZS": {"train": 11241, "val": 3826, "test": 3933},
    "RAP-ZS": {"train": 17062, "val": 4628, "test": 4928},
}
PETA_ZS_PICKLES = ("dataset_zs_run0.pkl", "PETA/dataset_zs_run0.pkl", "dataset_zs_pad.pkl",
                   "PETA/dataset_zs_pad.pkl", "zs/dataset_zs_run0.pkl")
RAP_ZS_PICKLES = ("dataset_zs_run0.pkl", "RAPV2/dataset_zs_run0.pkl", "RAP2/dataset_zs_run0.pkl",
                  "dataset_zs_pad.pkl", "RAPV2/dataset_zs_pad.pkl", "RAPzs/dataset_zs_pad.pkl")


def identity_disjoint_split(identities: np.ndarray, sizes: Sequence[float], seed: int = 0
                            ) -> Dict[str, np.ndarray]:
    """Split rows into train / val / test so that no identity falls in two splits.

    Identities are visited in a seeded random order and each goes, with all its rows, to the
    split that is furthest below its target (relative to the target), which keeps the sizes
    within about one identity's row count of the targets without sorting identities by size
    (sorting would put all large identities, i.e. whole source cameras, into one split).

    Args:
        identities: (N,) identity per row.
        sizes: target sizes (train, val, test), as counts or fractions; scaled to N.
        seed: random seed.

    Returns:
        {"train", "val", "test", "trainval"}: sorted int64 row indices; trainval = train + val.
    """
    identities = np.asarray(identities).ravel()
    targets = np.asarray(sizes, dtype=np.float64)
    if targets.shape != (3,) or (targets <= 0).any():
        raise ValueError(f"sizes must be three positive numbers (train, val, test), got {sizes!r}")
    targets = targets / targets.sum() * len(identities)
    ids, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    filled = np.zeros(3)
    assignment = np.empty(len(ids), dtype=np.int64)
    for i in rng.permutation(len(ids)):
        k = int(np.argmax((targets - filled) / targets))
        assignment[i] = k
        filled[k] += counts[i]
    row_split = assignment[inverse]
    out = {name: np.flatnonzero(row_split == k).astype(np.int64) for k, name in enumerate(("train", "val", "test"))}
    out["trainval"] = np.sort(np.concatenate([out["train"], out["val"]]))
    return out


def _find_pickle(root: Path, candidates: Sequence[str]) -> Optional[Path]:
    if root.is_file():
        return root if root.suffix == ".pkl" else None
    for c in candidates:
        if (root / c).is_file():
            return root / c
    return None


def _built_info(dataset: str, splits: Dict[str, np.ndarray], seed: int, extra: dict) -> dict:
    return {"seed": seed, "split_sizes": {k: int(len(v)) for k, v in splits.items()},
            "official_sizes": OFFICIAL_SIZES[dataset], "official_split": False, **extra}


def load_peta_zs(root: Union[str, Path], *, seed: int = 0, official: Optional[Union[str, Path, bool]] = None,
                 annotation: Optional[Union[str, Path]] = None, sentences: Union[str, Sequence[str]] = "official",
                 require_images: bool = True, skip_missing: bool = False,
                 image_dirs: Optional[Iterable[Union[str, Path]]] = None) -> PARDataset:
    """Load PETA-ZS (35 attributes, identity-disjoint train/val/test).

    Args:
        root: the PETA folder (PETA.mat, images/, optionally dataset_zs_run0.pkl).
        seed: seed of the built split (used only without the official pickle).
        official: path of the official pickle; None searches the root; False always builds.
        annotation: explicit PETA.mat.
        sentences, require_images, skip_missing, image_dirs: as for `load_peta`.

    Returns:
        A `PARDataset`; `split_source` tells whether the split is official.
    """
    root = check_root(root, "PETA-ZS")
    pkl = _zs_pickle(root, official, PETA_ZS_PICKLES)
    common = dict(sentences=sentences, require_images=require_images, skip_missing=skip_missing,
                  image_dirs=image_dirs)
    if pkl is not None:
        return load_from_pickle("PETA-ZS", root, pkl, split_source=f"official ({pkl.name})",
                                info={"official_sizes": OFFICIAL_SIZES["PETA-ZS"], "official_split": True}, **common)
    path = find_annotation(root, [c for c in ANNOTATION_CANDIDATES if c.endswith(".mat")], "PETA-ZS", annotation)
    peta = read_peta_mat(path)
    check_names(peta["names"], schema_lists("PETA-ZS")[0], "PETA-ZS", path)
    sizes = OFFICIAL_SIZES["PETA-ZS"]
    splits = identity_disjoint_split(peta["identities"], (sizes["train"], sizes["val"], sizes["test"]), seed)
    return assemble("PETA-ZS", labels=peta["labels"], image_names=peta["image_names"], splits=splits,
                    root=root, annotation=path, identities=peta["identities"],
                    split_source=f"parkit identity-disjoint split, seed {seed} (NOT the official split: "
                                 f"dataset_zs_run0.pkl was not found)",
                    info=_built_info("PETA-ZS", splits, seed, {}), **common)


def load_rap_zs(root: Union[str, Path], *, seed: int = 0, official: Optional[Union[str, Path, bool]] = None,
                annotation: Optional[Union[str, Path]] = None, sentences: Union[str, Sequence[str]] = "official",
                require_images: bool = True, skip_missing: bool = False,
                image_dirs: Optional[Iterable[Union[str, Path]]] = None) -> PARDataset:
    """Load RAP-ZS (RAPv2 images and labels, 53 attributes, identity-disjoint splits).

    Without the official pickle, only the rows with a known person identity (>= 0) are kept
    (the official RAP-ZS also covers only identity-annotated images, 26,618 in all), and they
    are split identity-disjointly with sizes proportional to 17,062 / 4,628 / 4,928.

    Args:
        root: the RAPv2 folder (RAP_annotation/RAP_annotation.mat, RAP_dataset/, optionally
            dataset_zs_run0.pkl).
        seed: seed of the built split (used only without the official pickle).
        official: path of the official pickle; None searches the root; False always builds.
        annotation: explicit RAPv2 RAP_annotation.mat.
        sentences, require_images, skip_missing, image_dirs: as for `load_rapv2`.
    """
    root = check_root(root, "RAP-ZS")
    pkl = _zs_pickle(root, official, RAP_ZS_PICKLES)
    common = dict(sentences=sentences, require_images=require_images, skip_missing=skip_missing,
                  image_dirs=image_dirs)
    if pkl is not None:
        return load_from_pickle("RAP-ZS", root, pkl, split_source=f"official ({pkl.name})",
                                info={"official_sizes": OFFICIAL_SIZES["RAP-ZS"], "official_split": True}, **common)
    path = find_annotation(root, [c for c in RAPV2_CANDIDATES if c.endswith(".mat")], "RAP-ZS", annotation)
    rap = read_rapv2_mat(path, group_order=RAPZS_GROUP_ORDER)
    check_names(rap["names"], schema_lists("RAP-ZS")[0], "RAP-ZS", path)
    if rap["identities"] is None:
        raise DatasetError(f"RAP-ZS: {path} has no person_identity field, so no identity-disjoint split can be "
                           f"built; put the official dataset_zs_run0.pkl under {root} instead")
    keep = np.flatnonzero(rap["identities"] >= 0)
    if keep.size == 0:
        raise DatasetError(f"RAP-ZS: {path} has no row with a known person identity (all < 0)")
    ids = rap["identities"][keep]
    sizes = OFFICIAL_SIZES["RAP-ZS"]
    splits = identity_disjoint_split(ids, (sizes["train"], sizes["val"], sizes["test"]), seed)
    return assemble("RAP-ZS", labels=rap["labels"][keep], image_names=[rap["image_names"][i] for i in keep],
                    splits=splits, root=root, annotation=path, identities=ids,
                    split_source=f"parkit identity-disjoint split, seed {seed} (NOT the official split: "
                                 f"dataset_zs_run0.pkl was not found)",
                    info=_built_info("RAP-ZS", splits, seed,
                                     {"rows_without_identity_dropped": int(len(rap["image_names"]) - keep.size)}),
                    **common)


def _zs_pickle(root: Path, official, candidates) -> Optional[Path]:
    if official is False:
        return None
    if official not in (None, True):
        p = Path(official)
        if not p.is_file():
            raise DatasetError(f"official zero-shot pickle {p} does not exist")
        return p
    found = _find_pickle(root, candidates)
    if official is True and found is None:
        tried = ", ".join(str(root / c) for c in candidates)
        raise DatasetError(f"official=True but no official zero-shot pickle was found; looked for {tried}")
    return found
