"""The common body of the loaders of datasets with 5 official partitions (PETA, RAPv1, RAPv2).

It reads either the dataset's own MAT file (through the reader its module passes in) or a
Rethinking_of_PAR `dataset_all.pkl` (`parkit.data.pickles`). It stands above both `formats` and
`pickles`, so that `formats` (which `pickles` uses) does not import `pickles` back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from parkit.data.base import PARDataset
from parkit.data.formats import PathLike, assemble, check_names, find_annotation, pick_partition, schema_lists
from parkit.data.pickles import load_from_pickle


def load_partitioned(dataset: str, root: PathLike, *, candidates: Sequence[str], reader,
                     partition: int, make_splits, mat_name: str, official_sizes: dict,
                     annotation: Optional[PathLike] = None, note: Optional[str] = None,
                     sentences: Union[str, Sequence[str]] = "official", require_images: bool = True,
                     skip_missing: bool = False, image_dirs: Optional[Iterable[PathLike]] = None) -> PARDataset:
    """The common body of the loaders with 5 official partitions (PETA, RAPv1, RAPv2).

    Finds the annotation file (a Rethinking `dataset_all.pkl` is handed to the pickle reader),
    reads it with `reader(path) -> {"names", "labels", "image_names", "identities", "partitions"}`,
    checks the attribute names against the schema, picks `partition` and builds the splits with
    `make_splits(partition_dict)`.
    """
    root = Path(root)
    path = find_annotation(root, candidates, dataset, annotation)
    common = dict(sentences=sentences, require_images=require_images, skip_missing=skip_missing,
                  image_dirs=image_dirs)
    if path.suffix == ".pkl":
        return load_from_pickle(dataset, root, path, partition=partition, **common)
    ann = reader(path)
    check_names(ann["names"], schema_lists(dataset)[0], dataset, path)
    part = pick_partition(ann["partitions"], partition, path)
    info = {"partition": partition, "official_sizes": official_sizes, **({"note": note} if note else {})}
    return assemble(dataset, labels=ann["labels"], image_names=ann["image_names"], splits=make_splits(part),
                    root=root, annotation=path, split_source=f"official ({mat_name} partition {partition})",
                    info=info, identities=ann["identities"], **common)
