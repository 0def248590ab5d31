"""Finding each annotation row's image file under a dataset root.

Annotation files name images in several ways: PETA.mat gives an index that the Rethinking
layout stores as `images/00001.png` while the original release keeps bmp/jpg/png files; RAP
lists `RAP_dataset/<name>.png`; PA-100K lists `data/000001.jpg`. Images are therefore
matched by exact file name first, then by file stem with any common image extension.

Directories are listed once (`os.scandir`) and looked up in memory, so resolving the 100,000
PA-100K rows costs a few directory listings rather than 100,000 x extensions `stat` calls.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# Preference order when one stem exists with several extensions.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

# Sub-folders of a dataset root that hold images in the official layouts (PA-100K `data/` and
# `release_data/release_data/`, PETA `images/`, RAP `RAP_dataset/`, WIDER `split_image/`),
# then the root itself.
IMAGE_SUBDIRS = ("data", "images", "RAP_dataset", "split_image", "release_data/release_data",
                 "release_data", "")


def candidate_dirs(bases: Iterable[Path], subdirs: Sequence[str] = IMAGE_SUBDIRS) -> List[Path]:
    """The image folders to search, in order: each base joined with each sub-folder.

    Folders that do not exist are kept (they are reported in error messages) but cost
    nothing at lookup time. Duplicates (same resolved path) are dropped.
    """
    seen, out = set(), []
    for base in bases:
        for sub in subdirs:
            d = Path(base) / sub if sub else Path(base)
            key = os.path.normcase(os.path.abspath(d))
            if key not in seen:
                seen.add(key)
                out.append(d)
    return out


class ImageIndex:
    """In-memory index of the image files in a list of folders.

    Args:
        dirs: folders to search, in priority order (the first folder holding a match wins).
    """

    def __init__(self, dirs: Sequence[Path]):
        self.dirs = [Path(d) for d in dirs]
        self._listings: Dict[str, Tuple[set, Dict[str, str]]] = {}
        self._merged_maps: Optional[Tuple[Dict[str, str], Dict[str, str]]] = None

    def _listing(self, folder: Path) -> Tuple[set, Dict[str, str]]:
        """(file names, stem -> preferred file name) of one folder, listed once."""
        key = str(folder)
        if key not in self._listings:
            names, stems, rank = set(), {}, {}
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if not entry.is_file():
                            continue
                        names.add(entry.name)
                        stem, ext = os.path.splitext(entry.name)
                        ext = ext.lower()
                        if ext in IMAGE_EXTENSIONS:
                            r = IMAGE_EXTENSIONS.index(ext)
                            if stem not in stems or r < rank[stem]:
                                stems[stem], rank[stem] = entry.name, r
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                pass
            self._listings[key] = (names, stems)
        return self._listings[key]

    def _merged(self) -> Tuple[Dict[str, str], Dict[str, str]]:
        """(file name -> path, stem -> path) over all folders, first folder winning; built once."""
        if self._merged_maps is None:
            by_name, by_stem = {}, {}
            for folder in self.dirs:
                names, stems = self._listing(folder)
                for n in names:
                    by_name.setdefault(n, os.path.abspath(folder / n))
                for st, n in stems.items():
                    by_stem.setdefault(st, os.path.abspath(folder / n))
            self._merged_maps = (by_name, by_stem)
        return self._merged_maps

    def find(self, name: str) -> Optional[str]:
        """Absolute path of the image called `name` (exact name, else same stem), or None.

        `name` may hold sub-folders ("cam1/0001.jpg"), which are searched under every folder,
        or be an absolute path, whose own folder is searched.
        """
        name = str(name).replace("\\", "/")
        stem = os.path.splitext(os.path.basename(name))[0]
        if "/" not in name:
            # The common case (every benchmark): one merged lookup, no path arithmetic.
            by_name, by_stem = self._merged()
            return by_name.get(name) or by_stem.get(stem)
        p = PurePath(name)
        folders = [Path(p.parent)] if p.is_absolute() else [d / p.parent for d in self.dirs]
        for folder in folders:
            names, stems = self._listing(folder)
            if p.name in names:
                return os.path.abspath(folder / p.name)
            if stem in stems:
                return os.path.abspath(folder / stems[stem])
        return None

    def resolve(self, names: Sequence[str]) -> List[Optional[str]]:
        """`find` for every name, in order."""
        return [self.find(n) for n in names]
