"""Rethinking_of_PAR / PromptPAR dataset pickles (`dataset_all.pkl`, `dataset_zs_run0.pkl`, `pad.pkl`).

These pickles (spec §11.2) are `easydict.EasyDict` objects with `image_name`, `label` (N x A),
`attr_name`, optionally `label_idx.eval` (the evaluated columns) and `partition` (train / val /
test / trainval index arrays, or lists of 5 arrays for PETA and RAP).

They are read with a restricted unpickler: `easydict.EasyDict` becomes `AttrDict` (so easydict
need not be installed) and only the numpy and builtin names these files use are allowed, so a
pickle cannot run arbitrary code while loading. Anything else is refused with a clear error.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import assemble, check_names, pick_partition, schema_lists


class AttrDict(dict):
    """A dict whose keys are also attributes (stands in for `easydict.EasyDict`)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __setstate__(self, state):
        # EasyDict pickles its attribute dict as state; items are already restored.
        if isinstance(state, dict):
            for k, v in state.items():
                self.setdefault(k, v)


_ALLOWED = {
    ("collections", "OrderedDict"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "set"),
    ("builtins", "tuple"), ("builtins", "object"), ("builtins", "slice"), ("builtins", "range"),
    ("copyreg", "_reconstructor"), ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self._path = path

    def find_class(self, module, name):
        if (module, name) == ("easydict", "EasyDict"):
            return AttrDict
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise DatasetError(f"{self._path}: refusing to unpickle {module}.{name}; a Rethinking_of_PAR dataset "
                           f"pickle holds only dicts, lists and numpy arrays. Is this the right file?")


def read_pickle(path: Union[str, Path]):
    """Unpickle a dataset pickle safely (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"pickle {path} does not exist")
    try:
        with open(path, "rb") as f:
            return _Unpickler(f, path).load()
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"could not unpickle {path} ({type(exc).__name__}: {exc}); the file is truncated "
                           f"or not a dataset pickle: download or regenerate it") from exc


def _get(obj, key, path, what):
    if not isinstance(obj, dict) or key not in obj:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DatasetError(f"{path}: no {key!r} ({what}); found {found}. Is this a Rethinking_of_PAR dataset pickle?")
    return obj[key]


def parse_pickle(obj, path: Path, partition: int = 0) -> dict:
    """Image names, labels, attribute names and splits of a Rethinking-style dataset pickle.

    Returns:
        dict with "image_names", "labels" (N, A), "names" (or None), "splits" (0-based arrays).
    """
    names = [str(n) for n in _get(obj, "image_name", path, "image names")]
    labels = np.atleast_2d(np.asarray(_get(obj, "label", path, "label matrix")))
    if labels.shape[0] != len(names):
        raise DatasetError(f"{path}: label has {labels.shape[0]} rows for {len(names)} image names")
    attr = obj.get("attr_name")
    attr = [str(a) for a in attr] if attr is not None else None
    idx = obj.get("label_idx")
    if isinstance(idx, dict) and idx.get("eval") is not None:
        cols = np.asarray(idx["eval"], dtype=np.int64).ravel()
        labels = labels[:, cols]
        if attr is not None and len(attr) > cols.max():
            attr = [attr[c] for c in cols]
    part = _get(obj, "partition", path, "split indices")
    splits = {}
    for key in ("train", "val", "test", "trainval"):
        if key not in part:
            continue
        value = part[key]
        if isinstance(value, (list, tuple)) and value and np.ndim(value[0]) >= 1:
            value = pick_partition(list(value), partition, path, "partition")
        v = np.asarray(value, dtype=np.int64).ravel()
        if v.size and (v.min() < 0 or v.max() >= len(names)):
            raise DatasetError(f"{path}: partition.{key} indexes rows outside 0..{len(names) - 1}")
        splits[key] = v
    for key in ("train", "test"):
        if key not in splits:
            raise DatasetError(f"{path}: partition has no {key!r} indices")
    splits.setdefault("val", np.zeros(0, dtype=np.int64))
    splits.setdefault("trainval", np.concatenate([splits["train"], splits["val"]]))
    return {"image_names": names, "labels": labels, "names": attr, "splits": splits}


def load_from_pickle(dataset: str, root: Union[str, Path], path: Union[str, Path], *, partition: int = 0,
                     sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
                     skip_missing: bool = False, image_dirs: Optional[Iterable[Union[str, Path]]] = None,
                     split_source: Optional[str] = None, info: Optional[dict] = None) -> PARDataset:
    """A `PARDataset` from a Rethinking_of_PAR / PromptPAR dataset pickle.

    The pickle's `root` (an absolute path on its author's machine) is ignored: images are
    resolved under `root` as for the original annotation files.
    """
    path = Path(path)
    parsed = parse_pickle(read_pickle(path), path, partition)
    if parsed["names"] is not None:
        check_names(parsed["names"], schema_lists(dataset)[0], dataset, path)
    return assemble(dataset, labels=parsed["labels"], image_names=parsed["image_names"],
                    splits=parsed["splits"], root=Path(root), annotation=path,
                    split_source=split_source or f"official ({path.name}, partition {partition})",
                    info={"partition": partition, **(info or {})}, sentences=sentences,
                    require_images=require_images, skip_missing=skip_missing, image_dirs=image_dirs)
