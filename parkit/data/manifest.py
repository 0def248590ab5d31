"""Custom data from a CSV manifest: one row per image, one column per attribute.

Columns: `image` (a path relative to the manifest's folder or one of the usual image
sub-folders, or absolute), optional `split` (train / val / test; "trainval" counts as train),
optional `identity`, and every other column is an attribute. Values: 1 = present, 0 = absent,
2, -1 or empty = unknown (kept as 2 and masked in loss and metrics).

Sentences come from `parkit.attributes.expand` unless given; regions from
`parkit.attributes.guess_region` unless given. Without a split column the rows are split at
random (seeded), identity-disjointly when an identity column exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from parkit.attributes import REGIONS, check_context_length, expand, guess_region, phrase_from_name
from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import assemble, check_root
from parkit.data.zeroshot import identity_disjoint_split

SPLIT_ALIASES = {"train": "train", "trainval": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


def _find_csv(root: Path, csv: Optional[Union[str, Path]]) -> Path:
    if csv is not None:
        p = Path(csv)
        p = p if p.is_absolute() or p.exists() else root / p
        if not p.is_file():
            raise DatasetError(f"CSV: manifest {p} does not exist")
        return p
    if root.is_file():
        return root
    for name in ("manifest.csv", "labels.csv", "annotations.csv"):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(f"CSV: no manifest under {root}; looked for manifest.csv, labels.csv, annotations.csv "
                           f"or a single *.csv. Pass csv=PATH.")
    raise DatasetError(f"CSV: several CSV files under {root} ({', '.join(p.name for p in found[:5])}); "
                       f"pass csv=PATH to choose one")


def _labels(frame, columns, path) -> np.ndarray:
    import pandas as pd

    out = np.empty((len(frame), len(columns)), dtype=np.uint8)
    for j, col in enumerate(columns):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna() & (frame[col].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{path}: column {col!r}, row {i + 2}: value {frame[col].iloc[i]!r} is not a number; "
                               f"use 1 (present), 0 (absent), or 2 / -1 / empty (unknown)")
        v = values.to_numpy(dtype=np.float64)
        unknown = np.isnan(v) | (v == -1) | (v == 2)
        ok = unknown | (v == 0) | (v == 1)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise DatasetError(f"{path}: column {col!r}, row {i + 2}: value {v[i]:g} is not 0, 1, 2, -1 or empty")
        out[:, j] = np.where(unknown, 2, v).astype(np.uint8)
    return out


def _per_attribute(value, columns, what, default):
    if value is None:
        return [default(c) for c in columns]
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(columns))
        if unknown:
            raise DatasetError(f"CSV: {what} given for unknown attributes {unknown}; attributes are {list(columns)}")
        return [value[c] if c in value else default(c) for c in columns]
    value = list(value)
    if len(value) != len(columns):
        raise DatasetError(f"CSV: {len(value)} {what} for {len(columns)} attributes")
    return value


def load_csv_manifest(root: Union[str, Path], *, csv: Optional[Union[str, Path]] = None,
                      attributes: Optional[Sequence[str]] = None,
                      sentences: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
                      phrases: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
                      regions: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
                      template: str = "auto", image_column: str = "image", split_column: str = "split",
                      identity_column: str = "identity", val_fraction: float = 0.1, test_fraction: float = 0.2,
                      seed: int = 0, name: str = "CSV", check_length: bool = True, require_images: bool = True,
                      skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None
                      ) -> PARDataset:
    """Load a custom dataset from a CSV manifest (see the module docstring for the format).

    Args:
        root: folder holding the manifest and images, or the manifest file itself.
        csv: manifest path (default: manifest.csv / labels.csv / annotations.csv / the only *.csv).
        attributes: attribute columns to use, in this order (default: all other columns).
        sentences: sentences (list, or {attribute: sentence}); missing ones are expanded.
        phrases: phrases to expand (list or mapping); default: readable form of the column name.
        regions: body regions (list or mapping); default: `guess_region`.
        template: expansion template (see `parkit.attributes.expand`).
        image_column, split_column, identity_column: column names.
        val_fraction, test_fraction, seed: the random split used when there is no split column.
        name: dataset name recorded on the result.
        check_length: raise if a sentence exceeds CLIP's 77-token context.
        require_images, skip_missing, image_dirs: see `parkit.data.formats.assemble`.
    """
    import pandas as pd

    root = check_root(root, name)
    path = _find_csv(root, csv)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise DatasetError(f"could not read {path} as CSV ({type(exc).__name__}: {exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if image_column not in frame.columns:
        raise DatasetError(f"{path}: no {image_column!r} column; columns are {list(frame.columns)}")
    reserved = {image_column, split_column, identity_column}
    columns = list(attributes) if attributes is not None else [c for c in frame.columns if c not in reserved]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: attribute columns {missing} not found; columns are {list(frame.columns)}")
    if not columns:
        raise DatasetError(f"{path}: no attribute columns besides {sorted(reserved & set(frame.columns))}")
    if len(frame) == 0:
        raise DatasetError(f"{path}: the manifest has no rows")
    labels = _labels(frame, columns, path)
    image_names = frame[image_column].fillna("").astype(str).str.strip().tolist()
    empty = [i for i, n in enumerate(image_names) if not n]
    if empty:
        raise DatasetError(f"{path}: row {empty[0] + 2} has an empty {image_column!r} value")

    phrase_list = _per_attribute(phrases, columns, "phrases", phrase_from_name)
    expanded = dict(zip(columns, expand(phrase_list, template=template)))
    sentence_list = _per_attribute(sentences, columns, "sentences", lambda c: expanded[c])
    region_list = _per_attribute(regions, columns, "regions", guess_region)
    bad = [r for r in region_list if r not in REGIONS]
    if bad:
        raise DatasetError(f"CSV: unknown regions {sorted(set(bad))}; use one of {REGIONS}")
    if check_length:
        check_context_length(sentence_list, columns)

    identities = None
    if identity_column in frame.columns:
        identities = pd.factorize(frame[identity_column].fillna("").astype(str))[0].astype(np.int64)
    splits, split_source = _manifest_splits(frame, path, split_column, identities, val_fraction, test_fraction, seed)
    return assemble(name, labels=labels, image_names=image_names, splits=splits, root=path.parent,
                    annotation=path, split_source=split_source, info={"phrases": phrase_list},
                    attributes=columns, sentences=sentence_list, regions=region_list, identities=identities,
                    require_images=require_images, skip_missing=skip_missing, image_dirs=image_dirs)


def _manifest_splits(frame, path: Path, split_column: str, identities, val_fraction: float,
                     test_fraction: float, seed: int) -> tuple:
    """(splits with "trainval", split_source): the split column when there is one, else a seeded split."""
    if split_column in frame.columns:
        raw = frame[split_column].fillna("").astype(str).str.strip().str.lower()
        unknown = sorted(set(raw) - set(SPLIT_ALIASES))
        if unknown:
            raise DatasetError(f"{path}: unknown {split_column!r} values {unknown}; use train, val or test")
        mapped = raw.map(SPLIT_ALIASES).to_numpy()
        splits = {k: np.flatnonzero(mapped == k) for k in ("train", "val", "test")}
        split_source = f"manifest column {split_column!r}"
    else:
        splits = _random_split(len(frame), identities, val_fraction, test_fraction, seed)
        split_source = (f"parkit random split, seed {seed}" + (" (identity-disjoint)" if identities is not None else "")
                        + f": the manifest has no {split_column!r} column")
    splits["trainval"] = np.sort(np.concatenate([splits["train"], splits["val"]]))
    return splits, split_source


def _random_split(n: int, identities, val_fraction: float, test_fraction: float, seed: int) -> Dict[str, np.ndarray]:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(f"CSV: val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in "
                           f"[0, 1) with a sum below 1")
    train_fraction = 1 - val_fraction - test_fraction
    if identities is not None and val_fraction > 0 and test_fraction > 0:
        out = identity_disjoint_split(identities, (train_fraction, val_fraction, test_fraction), seed)
        return {k: out[k] for k in ("train", "val", "test")}
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
            "train": np.sort(order[n_test + n_val:])}
