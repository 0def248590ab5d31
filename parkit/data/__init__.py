"""Datasets: the `PARDataset` record, the loaders of the real benchmarks and custom data.

`load_dataset(name, root, **options)` reads a dataset's original annotation files
(PA-100K annotation.mat, PETA.mat, RAP_annotation.mat v5/v7.3, WIDER text files, Rethinking_of_PAR
pickles, a CSV manifest) into a `PARDataset`; `list_datasets()` names what it can read.
One module per format: `pa100k`, `peta`, `rap`, `wider`, `zeroshot` (PETA-ZS, RAP-ZS),
`pickles`, `manifest` (CSV); shared machinery in `formats` (MAT reading, assembly),
`partitioned` (the body of the 5-partition loaders) and
`images` (image resolution). SynthPAR, transforms and the torch Dataset live in `synthpar`,
`transforms` and `torchdata`; their public names are re-exported here lazily.
"""
from __future__ import annotations

import inspect
import re
from importlib import import_module
from pathlib import Path
from typing import List, Union

from parkit.attributes.schemas import SchemaError, canonical_name
from parkit.data.base import SPLIT_NAMES, DatasetError, PARDataset

# name -> (module, function). Modules are imported on first use, so `import parkit.data` is cheap.
_LOADERS = {
    "PA100K": ("parkit.data.pa100k", "load_pa100k"),
    "PETA": ("parkit.data.peta", "load_peta"),
    "PETA-ZS": ("parkit.data.zeroshot", "load_peta_zs"),
    "RAPv1": ("parkit.data.rap", "load_rapv1"),
    "RAPv2": ("parkit.data.rap", "load_rapv2"),
    "RAP-ZS": ("parkit.data.zeroshot", "load_rap_zs"),
    "WIDER": ("parkit.data.wider", "load_wider"),
    "SynthPAR": ("parkit.data.synthpar", "load_synthpar"),
    "CSV": ("parkit.data.manifest", "load_csv_manifest"),
}
_EXTRA_ALIASES = {"synthpar": "SynthPAR", "synth": "SynthPAR", "csv": "CSV", "manifest": "CSV", "custom": "CSV"}

# Public names of the modules written by other parts of the project, re-exported lazily.
_LAZY = {
    "make_synthpar": "parkit.data.synthpar",
    "default_synthpar_root": "parkit.data.synthpar",
    "ensure_synthpar": "parkit.data.synthpar",
    "load_synthpar": "parkit.data.synthpar",
    "letterbox": "parkit.data.transforms",
    "build_transform": "parkit.data.transforms",
    "PARTorchDataset": "parkit.data.torchdata",
}


def list_datasets() -> List[str]:
    """Names accepted by `load_dataset` (case-insensitive; aliases such as "PA100k", "RAPzs" work too)."""
    return list(_LOADERS)


def _canonical(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    if key in _EXTRA_ALIASES:
        return _EXTRA_ALIASES[key]
    try:
        return canonical_name(name)
    except SchemaError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())} "
                           f"(case-insensitive). For your own images use 'CSV' with a manifest.") from None


def load_dataset(name: str, root: Union[str, Path], **options) -> PARDataset:
    """Load a dataset by name.

    Args:
        name: one of `list_datasets()`, case-insensitive ("pa100k", "RAPV1", "PETAzs" ...).
        root: the dataset folder (see each loader for the expected layout).
        **options: loader options, e.g. `partition=0..4` (PETA, RAP), `require_images=False`
            (annotations only), `skip_missing=True` (keep rows whose image exists),
            `sentences="official"|"phrases"|"clean"`, `annotation=PATH`, `seed` (ZS splits).

    Returns:
        A `PARDataset`.

    Raises:
        DatasetError: unknown dataset or option, missing/corrupt files, missing images.
    """
    canon = _canonical(name)
    module, func_name = _LOADERS[canon]
    func = getattr(import_module(module), func_name)
    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [p for p in params if p != "root"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise DatasetError(f"{canon}: unknown option(s) {unknown}; accepted: {', '.join(accepted)}")
    return func(root, **options)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parkit.data' has no attribute {name!r}")


__all__ = ["DatasetError", "PARDataset", "SPLIT_NAMES", "list_datasets", "load_dataset", *sorted(_LAZY)]
