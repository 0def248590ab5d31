"""Finding the real datasets on disk, and measuring how much a dataset rewards knowing its sources.

`survey_datasets(base)` looks for every benchmark under one root folder (the conventional folder
names of each dataset), reads what it finds without images, and returns one row per dataset with
its split sizes or why it could not be read. `source_prior_mA` measures the bias PETA is known for:
the mA of a predictor that knows only which source collection an image comes from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from parkit.data import load_dataset
from parkit.data.base import DatasetError
from parkit.metrics import pedestrian_metrics

# Folder names each dataset is commonly unpacked under (first match wins). The zero-shot
# protocols read the annotation of their parent dataset.
DATASET_FOLDERS: Dict[str, tuple] = {
    "PA100K": ("PA100k", "pa100k", "PA100K"),
    "PETA": ("PETA", "peta"),
    "PETA-ZS": ("PETA", "peta"),
    "RAPv1": ("RAP", "RAPv1", "rapv1"),
    "RAPv2": ("RAPv2", "rapv2", "RAP2"),
    "RAP-ZS": ("RAPv2", "rapv2"),
    "WIDER": ("WIDER", "wider"),
}


def find_dataset_roots(base: Optional[Path | str]) -> Dict[str, Optional[Path]]:
    """The folder of each benchmark under `base` (None where absent, or when `base` is None)."""
    roots = {}
    for name, folders in DATASET_FOLDERS.items():
        found = [Path(base) / f for f in folders if base is not None and (Path(base) / f).is_dir()]
        roots[name] = found[0] if found else None
    return roots


def error_summary(exc: BaseException) -> str:
    """The first line of a loader's error, with the next one when the first only introduces it
    ("... Looked for:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


def survey_datasets(base: Optional[Path | str], names: Optional[Sequence[str]] = None) -> List[dict]:
    """Read every benchmark found under `base` (annotations only) and summarise it.

    A partial copy of a dataset is reported with the loader's own explanation instead of
    stopping the survey.

    Args:
        base: the folder holding the datasets (None: nothing is present).
        names: only these datasets (default: every one of `DATASET_FOLDERS`).

    Returns:
        One dict per dataset: "dataset", "status" ("read", "not present" or "not readable here"),
        the split sizes, "unknown labels" and "official sizes" (where the loader knows them) when
        read, and "reason" (the first line of the loader's error) when not readable.
    """
    rows = []
    for name, root in find_dataset_roots(base).items():
        if names is not None and name not in names:
            continue
        if root is None:
            rows.append({"dataset": name, "status": "not present"})
            continue
        try:
            ds = load_dataset(name, root, require_images=False)
        except (DatasetError, OSError) as exc:
            rows.append({"dataset": name, "status": "not readable here", "reason": error_summary(exc)})
            continue
        rows.append({**ds.summary(), "status": "read", "unknown labels": int(ds.ignore_mask.sum()),
                     **({"official sizes": ds.info["official_sizes"]} if ds.info.get("official_sizes") else {}),
                     "root": str(root)})
    return rows


def group_prior_mA(labels: np.ndarray, groups: Sequence, train_rows, test_rows) -> float:
    """Test mA (percent) of a predictor that knows only each image's group.

    For every attribute it predicts "positive" when the image's group has a higher positive rate
    on the training rows than the training rows overall (the decision that maximises mA for a
    score that only depends on the group). Labels other than 0/1 are ignored.

    Args:
        labels: (N, A) raw labels.
        groups: (N,) group of each image (e.g. PETA's source collection).
        train_rows, test_rows: row indices.

    Returns:
        The label-based mA on `test_rows`, in percent.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    train_rows, test_rows = np.asarray(train_rows), np.asarray(test_rows)
    known = (labels == 0) | (labels == 1)
    pos = (labels == 1).astype(float)
    tr_pos, tr_known = pos[train_rows], known[train_rows]
    overall = tr_pos.sum(0) / np.maximum(tr_known.sum(0), 1)  # (A,)
    decision = np.zeros((len(test_rows), labels.shape[1]))
    for g in np.unique(groups[test_rows]):
        in_train = groups[train_rows] == g
        rate = tr_pos[in_train].sum(0) / np.maximum(tr_known[in_train].sum(0), 1)  # (A,)
        decision[groups[test_rows] == g] = (rate > overall) & (tr_known[in_train].sum(0) > 0)
    metrics = pedestrian_metrics(labels[test_rows], decision, threshold=0.5, ignore="auto")
    return 100.0 * float(metrics["mA"])


def peta_source_prior_mA(root: Path | str, partition: int = 0) -> dict:
    """PETA's dataset bias: test mA of a predictor knowing only each image's source collection.

    Reads `PETA.mat` under `root` (no images needed) and scores the official partition.

    Returns:
        {"mA": percent, "partition", "train": trainval images, "test": test images, "sources"}.

    Raises:
        DatasetError: no PETA.mat under `root`.
    """
    from parkit.data.peta import read_peta_mat  # noqa: PLC0415 (scipy is loaded only when asked)

    path = Path(root) / "PETA.mat"
    if not path.is_file():
        raise DatasetError(f"{path} not found: the source-collection baseline needs PETA.mat (set "
                           f"PARKIT_DATA_ROOT to the folder holding PETA/PETA.mat)")
    ann = read_peta_mat(path)
    part = ann["partitions"][partition]
    trainval = np.concatenate([part["train"], part["val"]])
    mA = group_prior_mA(ann["labels"], ann["subsets"], trainval, part["test"])
    return {"mA": mA, "partition": partition, "train": len(trainval), "test": len(part["test"]),
            "sources": int(len(np.unique(ann["subsets"])))}
