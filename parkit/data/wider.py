"""WIDER Attribute from the `Annotations/` text files of the PromptPAR preprocessing (spec §11.1).

- `trainval_name.txt`, `test_name.txt`: one person-crop image name per line (in `split_image/`).
- `trainval_gt_label.txt`, `test_gt_label.txt`: one bracketed list of 14 values per line, each in
  {-1, 0, 1}: 1 = present, -1 = absent, 0 = unspecified.
- `attr_name.txt` (optional): the 14 attribute names.

The official preprocessing maps value > 0 to 1 and everything else (absent and unspecified)
to 0; that is the default here (`unspecified="negative"`). `unspecified="ignore"` keeps
"unspecified" as 2, which puts it in `PARDataset.ignore_mask` instead.
The published split is trainval (28,330 crops) / test (29,161); "train" = "trainval" and
"val" is empty.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from parkit.data.base import DatasetError, PARDataset
from parkit.data.formats import WHERE_TO_GET, assemble, check_names, check_root, schema_lists

NUM_ATTRIBUTES = 14
ANNOTATION_DIRS = ("Annotations", "annotations", "WIDER/Annotations", "")
UNSPECIFIED = ("negative", "ignore")


def _read_lines(path: Path) -> List[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not a text file ({exc}); the annotation is corrupt") from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def parse_label_lines(lines: Sequence[str], path: Path) -> np.ndarray:
    """(N, 14) int8 raw values from lines such as "[1, -1, 0, ...]"."""
    rows = []
    for i, line in enumerate(lines):
        values = re.findall(r"-?\d+", line)
        if len(values) != NUM_ATTRIBUTES or re.search(r"[^\d\s,\[\]\-+.]", line):
            raise DatasetError(f"{path}, line {i + 1}: expected a list of {NUM_ATTRIBUTES} integers, "
                               f"got {line[:60]!r}; the annotation file is corrupt")
        rows.append([int(v) for v in values])
    labels = np.asarray(rows, dtype=np.int64).reshape(len(rows), NUM_ATTRIBUTES)
    if labels.size and not np.isin(labels, (-1, 0, 1)).all():
        raise DatasetError(f"{path}: WIDER labels must be -1, 0 or 1; found {sorted(set(labels.ravel()) - {-1, 0, 1})}")
    return labels


def _find_annotation_dir(root: Path, annotation: Optional[Union[str, Path]]) -> Path:
    if annotation is not None:
        d = Path(annotation)
        d = d if d.is_dir() else d.parent
        if not (d / "trainval_name.txt").is_file():
            raise DatasetError(f"WIDER: {d} does not hold trainval_name.txt")
        return d
    for sub in ANNOTATION_DIRS:
        d = root / sub if sub else root
        if (d / "trainval_name.txt").is_file():
            return d
    tried = "\n  ".join(str((root / s if s else root) / "trainval_name.txt") for s in ANNOTATION_DIRS)
    raise DatasetError(f"WIDER: no annotation files found under {root}. Looked for:\n  {tried}\n"
                       f"Get {WHERE_TO_GET['WIDER']}, or pass annotation=FOLDER.")


def load_wider(root: Union[str, Path], *, annotation: Optional[Union[str, Path]] = None,
               unspecified: str = "negative", sentences: Union[str, Sequence[str]] = "official",
               require_images: bool = True, skip_missing: bool = False,
               image_dirs: Optional[Iterable[Union[str, Path]]] = None) -> PARDataset:
    """Load WIDER Attribute person crops (14 attributes).

    Args:
        root: dataset folder (holding `Annotations/` and `split_image/`).
        annotation: the folder holding the annotation text files (or one of the files).
        unspecified: "negative" (official: 0 -> 0) or "ignore" (0 -> 2, masked as unknown).
        sentences: "official" (Appendix A verbatim, typos included), "clean" (typos fixed,
            spec §14 item 22), "phrases", or a custom list of 14.
        require_images, skip_missing, image_dirs: see `parkit.data.formats.assemble`.

    Returns:
        A `PARDataset` with trainval 28,330 / test 29,161 crops on the full dataset.
    """
    if unspecified not in UNSPECIFIED:
        raise DatasetError(f"WIDER: unspecified must be one of {UNSPECIFIED}, got {unspecified!r}")
    root = check_root(root, "WIDER")
    adir = _find_annotation_dir(root, annotation)
    names, raw, splits, start = [], [], {}, 0
    for split in ("trainval", "test"):
        name_file, label_file = adir / f"{split}_name.txt", adir / f"{split}_gt_label.txt"
        for f in (name_file, label_file):
            if not f.is_file():
                raise DatasetError(f"WIDER: {f} is missing; the Annotations folder needs "
                                   f"trainval/test _name.txt and _gt_label.txt")
        split_names = _read_lines(name_file)
        split_labels = parse_label_lines(_read_lines(label_file), label_file)
        if len(split_names) != len(split_labels):
            raise DatasetError(f"WIDER: {name_file.name} has {len(split_names)} names but {label_file.name} "
                               f"has {len(split_labels)} label lines")
        names += split_names
        raw.append(split_labels)
        splits[split] = np.arange(start, start + len(split_names))
        start += len(split_names)
    raw = np.concatenate(raw)
    if unspecified == "negative":
        labels = (raw > 0).astype(np.uint8)
    else:
        labels = np.where(raw > 0, 1, np.where(raw < 0, 0, 2)).astype(np.uint8)
    splits["train"] = splits["trainval"]
    splits["val"] = np.zeros(0, dtype=np.int64)
    attr_file = adir / "attr_name.txt"
    if attr_file.is_file():
        found = [ln.split()[-1] for ln in _read_lines(attr_file)]
        check_names(found, schema_lists("WIDER")[0], "WIDER", attr_file)
    return assemble("WIDER", labels=labels, image_names=names, splits=splits, root=root,
                    annotation=adir / "trainval_gt_label.txt",
                    split_source="official (WIDER trainval / test)",
                    info={"unspecified": unspecified, "official_sizes": {"trainval": 28330, "test": 29161},
                          "note": "WIDER has no validation split: train = trainval, val is empty"},
                    sentences=sentences, require_images=require_images, skip_missing=skip_missing,
                    image_dirs=image_dirs)
