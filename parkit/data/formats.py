"""Shared machinery of the real-dataset loaders: MAT files, annotation look-up, assembly.

- `read_mat` reads MATLAB v5 files (scipy) and v7.3 files (HDF5, h5py) into the same plain
  Python form: structs -> dict, struct arrays and cell arrays -> list (MATLAB element order),
  char -> str, numeric -> 2-D numpy array in MATLAB orientation (v7.3 matrices are transposed
  back, cell strings dereferenced), so each loader is written once for both versions.
- `find_annotation` looks for an annotation file in the usual places under a dataset root and
  says where to get the dataset when none is found.
- `assemble` turns parsed labels, names and splits into a `PARDataset`: it checks label
  values, attaches the schema's sentences and regions, resolves images (or skips missing
  ones on request) and re-indexes the splits.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from parkit.attributes import get_schema
from parkit.data.base import PARDataset, DatasetError
from parkit.data.images import IMAGE_SUBDIRS, ImageIndex, candidate_dirs

PathLike = Union[str, Path]

# Where each dataset can be obtained, for "file not found" messages.
WHERE_TO_GET = {
    "PA100K": "PA-100K (annotation.mat + data/) from https://github.com/xh-liu/HydraPlus-Net",
    "PETA": "PETA.mat from DeepMAR / Rethinking_of_PAR (https://github.com/valencebond/Rethinking_of_PAR) "
            "and the images from http://mmlab.ie.cuhk.edu.hk/projects/PETA.html",
    "RAPv1": "RAP v1 (RAP_annotation/RAP_annotation.mat + RAP_dataset/) on request from http://www.rapdataset.com",
    "RAPv2": "RAP v2 (RAP_annotation/RAP_annotation.mat + RAP_dataset/) on request from http://www.rapdataset.com",
    "WIDER": "WIDER Attribute from http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html, with the "
             "Annotations/*.txt files and split_image/ crops of the PromptPAR preprocessing",
}
WHERE_TO_GET["PETA-ZS"] = WHERE_TO_GET["PETA"]
WHERE_TO_GET["RAP-ZS"] = WHERE_TO_GET["RAPv2"]


def warn(message: str) -> None:
    """`warnings.warn` attributed to the first caller outside `parkit.data` (the user's line)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("parkit.data"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


# ---------------------------------------------------------------------------------------------
# MAT files
# ---------------------------------------------------------------------------------------------

def read_mat(path: PathLike) -> dict:
    """Read a MATLAB .mat file (v5 or v7.3) into plain Python values.

    Returns:
        {variable name: value}, with structs as dict, struct/cell arrays as list, char as str,
        numeric arrays as np.ndarray in MATLAB's (rows, cols) orientation.

    Raises:
        DatasetError: the file is missing, empty, truncated or not a MAT file.
    """
    import h5py
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        if h5py.is_hdf5(str(path)):  # MATLAB v7.3 (HDF5 after a 512-byte header)
            with h5py.File(path, "r") as f:
                return {k: _from_h5(f[k], f) for k in f.keys() if not k.startswith("#")}
        raw = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=False)
    except DatasetError:
        raise
    except Exception as exc:  # scipy/h5py raise many types for damaged files
        raise DatasetError(
            f"could not read {path} as a MATLAB .mat file ({type(exc).__name__}: {exc}). The file is "
            f"probably truncated or corrupt: download it again.") from exc
    return {k: _from_v5(v) for k, v in raw.items() if not k.startswith("__")}


def _from_v5(x):
    """scipy.io.loadmat(struct_as_record=False, squeeze_me=False) value -> plain Python."""
    from scipy.io.matlab import mat_struct

    if isinstance(x, mat_struct):
        return {f: _from_v5(getattr(x, f)) for f in x._fieldnames}
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            items = list(x.ravel(order="F"))  # MATLAB's column-major element order
            if items and all(isinstance(i, mat_struct) for i in items):
                dicts = [_from_v5(i) for i in items]
                return dicts[0] if len(dicts) == 1 else dicts
            return [_from_v5(i) for i in items]
        if x.dtype.kind == "U":
            if x.size == 0:
                return ""
            return str(x.flat[0]) if x.size == 1 else [str(s) for s in x.ravel(order="F")]
        return x
    return x


def _from_h5(obj, f):
    """h5py object of a v7.3 MAT file -> plain Python (same form as `_from_v5`)."""
    import h5py

    if isinstance(obj, h5py.Group):
        fields = [k for k in obj.keys() if not k.startswith("#")]
        # In a struct *array* every field is a dataset of object references (one per element)
        # with no MATLAB_class of its own; a 1x1 struct stores its fields directly.
        ref_fields = [k for k in fields if isinstance(obj[k], h5py.Dataset)
                      and h5py.check_ref_dtype(obj[k].dtype) is not None
                      and _h5_class(obj[k]) is None]
        if fields and len(ref_fields) == len(fields):
            refs = {k: obj[k][()].ravel() for k in fields}
            n = len(next(iter(refs.values())))
            elements = [{k: _from_h5(f[refs[k][i]], f) for k in fields} for i in range(n)]
            return elements[0] if n == 1 else elements
        return {k: _from_h5(obj[k], f) for k in fields}
    cls = _h5_class(obj)
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else [] if cls == "cell" else np.zeros((0, 0))
    data = obj[()]
    if h5py.check_ref_dtype(obj.dtype) is not None:
        # C order over the stored (reversed) shape == MATLAB's column-major element order.
        return [_from_h5(f[r], f) for r in np.asarray(data).ravel()]
    data = np.asarray(data).T  # HDF5 stores MATLAB's column-major matrices transposed
    if cls == "char":
        data = np.atleast_2d(data)
        rows = ["".join(map(chr, row)) for row in data.astype(np.uint32)]
        return rows[0] if len(rows) == 1 else rows
    if cls == "logical":
        return data.astype(bool)
    return data


def _h5_class(ds) -> Optional[str]:
    cls = ds.attrs.get("MATLAB_class")
    if cls is None:
        return None
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def get_field(container: dict, keys: Union[str, Sequence[str]], path: PathLike, what: str):
    """`container[key]` for the first key present, else a DatasetError naming the file."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not isinstance(container, dict):
        raise DatasetError(f"{path}: expected a MATLAB struct holding {keys[0]!r} ({what}), "
                           f"found {type(container).__name__}; is this the right annotation file?")
    for k in keys:
        if k in container:
            return container[k]
    raise DatasetError(f"{path}: no field {keys[0]!r} ({what}); fields found: {sorted(container)}. "
                       f"Is this the right annotation file for the dataset?")


def as_strings(value, path: PathLike, what: str) -> List[str]:
    """A list of strings from a cell array / char value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        return [str(v) for v in value.ravel()]
    if isinstance(value, list):
        out = []
        for v in value:
            while isinstance(v, list) and len(v) == 1:  # nested 1x1 cells
                v = v[0]
            if not isinstance(v, str):
                raise DatasetError(f"{path}: {what} should hold strings, found {type(v).__name__}")
            out.append(v.strip())
        return out
    raise DatasetError(f"{path}: {what} should be a list of strings, found {type(value).__name__}")


def as_indices(value, n: int, path: PathLike, what: str, one_based: bool = True) -> np.ndarray:
    """A 0-based int64 index vector from a MATLAB index array, checked against n rows."""
    try:
        idx = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: {what} is not a numeric index array") from exc
    if idx.size and not np.all(idx == np.round(idx)):
        raise DatasetError(f"{path}: {what} holds non-integer indices")
    idx = idx.astype(np.int64) - (1 if one_based else 0)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DatasetError(f"{path}: {what} indexes rows outside 1..{n}; the file is inconsistent")
    return idx


def pick_partition(partitions, partition: int, path: PathLike, what: str = "partition"):
    """Element `partition` of a list of partitions, with a clear range error."""
    parts = partitions if isinstance(partitions, list) else [partitions]
    if not isinstance(partition, (int, np.integer)) or not 0 <= partition < len(parts):
        raise DatasetError(f"{path}: {what} must be an integer in 0..{len(parts) - 1} "
                           f"(the file has {len(parts)} partitions), got {partition!r}")
    return parts[int(partition)]


# ---------------------------------------------------------------------------------------------
# Annotation look-up
# ---------------------------------------------------------------------------------------------

def check_root(root: PathLike, dataset: str) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{dataset}: dataset root {root} does not exist. Get {WHERE_TO_GET.get(dataset, 'the dataset')} "
                           f"and pass the folder that holds it.")
    return root


def find_annotation(root: PathLike, candidates: Sequence[str], dataset: str,
                    annotation: Optional[PathLike] = None) -> Path:
    """The first existing annotation file among `candidates` (relative to `root`).

    Args:
        root: dataset root folder.
        candidates: relative paths in priority order.
        dataset: canonical dataset name, for messages.
        annotation: an explicit file that overrides the search.

    Raises:
        DatasetError: naming every path tried and where to get the dataset.
    """
    if annotation is not None:
        p = Path(annotation).expanduser()
        if not p.is_absolute() and not p.exists():
            p = Path(root) / p
        if not p.is_file():
            raise DatasetError(f"{dataset}: annotation file {p} does not exist")
        return p
    root = check_root(root, dataset)
    if root.is_file():
        return root
    for c in candidates:
        if (root / c).is_file():
            return root / c
    tried = "\n  ".join(str(root / c) for c in candidates)
    raise DatasetError(f"{dataset}: no annotation file found under {root}. Looked for:\n  {tried}\n"
                       f"Get {WHERE_TO_GET.get(dataset, 'the dataset')}, or pass annotation=PATH.")


def search_bases(root: Path, annotation: Path) -> List[Path]:
    """Folders whose image sub-folders are searched: the root, then the annotation's folder and
    its parent when they lie inside the root (e.g. root/PA100k/annotation.mat -> root/PA100k/data).
    Folders above the root are never searched, so unrelated images cannot be picked up."""
    root = Path(os.path.abspath(root if root.is_dir() else root.parent))
    out = [root]
    for b in (annotation.parent, annotation.parent.parent):
        b = Path(os.path.abspath(b))
        if b not in out and (b == root or root in b.parents):
            out.append(b)
    return out


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------

def check_label_values(labels: np.ndarray, path: PathLike, allowed=(0, 1, 2)) -> np.ndarray:
    """(N, A) labels as uint8 after checking every value is in `allowed`."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: the label matrix should be 2-D (rows x attributes), got shape {arr.shape}")
    bad = ~np.isin(arr, allowed)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DatasetError(f"{path}: {int(bad.sum())} label values outside {list(allowed)}, first at "
                           f"row {r} column {c} (value {arr[r, c].item()!r}); the annotation file is corrupt "
                           f"or not the expected format")
    return arr.astype(np.uint8)


def check_names(found: Sequence[str], expected: Sequence[str], dataset: str, path: PathLike) -> None:
    """Warn when the file's attribute names differ from the schema (same count is required)."""
    if len(found) != len(expected):
        raise DatasetError(
            f"{dataset}: {path} gives {len(found)} attribute names but the {dataset} schema has "
            f"{len(expected)}; check that the file belongs to {dataset}")
    norm = lambda s: "".join(ch for ch in s.lower() if ch.isalnum())  # noqa: E731
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(found, expected)) if norm(a) != norm(b)]
    if diff:
        shown = ", ".join(f"column {i}: file {a!r} vs schema {b!r}" for i, a, b in diff[:5])
        warn(f"{dataset}: {len(diff)} attribute names in {path} differ from the schema ({shown}). "
             f"Labels are used in file order with the schema's sentences: check the file.")


def schema_lists(dataset: str, sentences: Union[str, Sequence[str]] = "official") -> tuple:
    """(attributes, sentences, regions, sentence set) of a schema; `sentences` may be a custom list."""
    if isinstance(sentences, str):
        s = get_schema(dataset, sentences=sentences)
        return s.attributes, s.sentences, s.regions, s.sentence_set
    s = get_schema(dataset)
    custom = [str(x) for x in sentences]
    if len(custom) != len(s.attributes):
        raise DatasetError(f"{dataset}: {len(custom)} custom sentences for {len(s.attributes)} attributes")
    return s.attributes, custom, s.regions, "custom"


def union(*arrays: np.ndarray) -> np.ndarray:
    """Concatenation of index arrays (order kept, as the official trainval = train + val)."""
    return np.concatenate([np.asarray(a, dtype=np.int64).ravel() for a in arrays])


def assemble(dataset: str, *, labels: np.ndarray, image_names: Sequence[str], splits: Dict[str, np.ndarray],
             root: Path, annotation: Path, split_source: str, info: dict,
             sentences: Union[str, Sequence[str]] = "official", identities: Optional[np.ndarray] = None,
             attributes: Optional[Sequence[str]] = None, regions: Optional[Sequence[str]] = None,
             require_images: bool = True, skip_missing: bool = False,
             image_dirs: Optional[Iterable[PathLike]] = None) -> PARDataset:
    """Build the `PARDataset` of a parsed annotation.

    Args:
        dataset: canonical name; its schema gives attributes/sentences/regions unless
            `attributes` (and then `sentences` as a list, `regions`) are given explicitly.
        labels: (N, A) raw label values (0, 1, 2 = unknown).
        image_names: N image names as the annotation gives them.
        splits: split name -> 0-based row indices.
        root, annotation: dataset root and the file read (images are searched around both).
        split_source, info: recorded on the dataset.
        sentences: sentence set name or a custom list.
        identities: (N,) person identities, when the annotation has them.
        require_images: resolve every image (False: annotations only, image paths None).
        skip_missing: keep only rows whose image exists (splits filtered), with a warning.
        image_dirs: extra folders to search first.

    Raises:
        DatasetError: missing images (naming the first and counting the others) and
            inconsistent inputs.
    """
    labels = check_label_values(labels, annotation)
    n = labels.shape[0]
    if len(image_names) != n:
        raise DatasetError(f"{annotation}: {len(image_names)} image names for {n} label rows")
    if attributes is None:
        attributes, sentences, regions, sentence_set = schema_lists(dataset, sentences)
    else:
        sentence_set = "custom"
    info = {"annotation": str(annotation), "sentence_set": sentence_set, "rows_in_annotation": n, **info}
    paths: List[Optional[str]] = [None] * n
    if require_images:
        dirs = [Path(d) for d in (image_dirs or [])] + candidate_dirs(search_bases(root, annotation), IMAGE_SUBDIRS)
        paths = ImageIndex(dirs).resolve(image_names)
        missing = [i for i, p in enumerate(paths) if p is None]
        if missing and (not skip_missing or len(missing) == n):
            existing = [str(d) for d in dirs if d.is_dir()]
            where = ("searched: " + ", ".join(existing)) if existing else \
                ("none of the image folders exist: " + ", ".join(str(d) for d in dirs[:6]))
            hint = ("Pass skip_missing=True to keep only the rows whose image exists, or "
                    "require_images=False to load the annotations alone.") if len(missing) < n else \
                ("No image was found at all: put the images in one of these folders, or pass "
                 "require_images=False to load the annotations alone.")
            raise DatasetError(
                f"{dataset}: image {image_names[missing[0]]!r} (row {missing[0]}) not found, and "
                f"{len(missing) - 1} other image(s) of {n} are missing too; {where}. {hint}")
        if missing:
            keep = np.array([i for i, p in enumerate(paths) if p is not None], dtype=np.int64)
            labels, paths, splits, identities = _keep_rows(keep, labels, paths, splits, identities, n)
            info["dropped_missing_images"] = len(missing)
            warn(f"{dataset}: dropped {len(missing)} of {n} rows whose image is missing "
                 f"(skip_missing=True); {len(keep)} rows kept")
        else:
            info["dropped_missing_images"] = 0
    return PARDataset(name=dataset, attributes=list(attributes), sentences=list(sentences),
                      regions=list(regions), labels=labels, image_paths=paths,
                      splits={k: np.asarray(v, dtype=np.int64) for k, v in splits.items()},
                      identities=identities, root=Path(root), split_source=split_source, info=info)


def _keep_rows(keep, labels, paths, splits, identities, n):
    """Select rows `keep` and re-index every split (rows not kept leave the splits)."""
    new_pos = np.full(n, -1, dtype=np.int64)
    new_pos[keep] = np.arange(len(keep))
    new_splits = {}
    for k, v in splits.items():
        mapped = new_pos[np.asarray(v, dtype=np.int64)]
        new_splits[k] = mapped[mapped >= 0]
    ids = None if identities is None else np.asarray(identities)[keep]
    return labels[keep], [paths[i] for i in keep], new_splits, ids
