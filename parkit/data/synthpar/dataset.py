"""SynthPAR's on-disk dataset: `make_synthpar` writes a folder, `load_synthpar` reads it back as a
`PARDataset`, `ensure_synthpar` / `default_synthpar_root` keep one generated copy in the cache
folder (`cache_root`), `load_captions` returns the captions.

Folder layout written by `make_synthpar`:

    images/000000.png ...   RGB, image_size = (width, height), default 64 x 128
    labels.csv              image, identity, view, then one 0/1 column per attribute
    labels_clean.csv        only when label_noise > 0: the labels that were actually drawn
    splits.json             train/val/test/trainval (random 60/10/30 over images) and
                            zs_train/zs_val/zs_test/zs_trainval (identity-disjoint)
    captions.jsonl          {"image": ..., "captions": [...]} per image
    meta.json               generator version, seed, sizes, sha256 of labels.csv; written LAST,
                            so a folder without it is an interrupted generation
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from parkit.attributes import get_schema
from parkit.data.base import DatasetError, PARDataset
from parkit.data.synthpar.captions import make_captions
from parkit.data.synthpar.priors import (
    SYNTHPAR_ATTRIBUTES, VIEWS, apply_label_noise, complete_attributes, sample_appearance, sample_attributes,
    seeded_rng)
from parkit.data.synthpar.render import DEFAULT_IMAGE_SIZE, check_image_size, render_person
from parkit.progress import tqdm

GENERATOR_VERSION = "1.0"


def _identity_sizes(n_images: int, rng: np.random.Generator) -> list:
    sizes, total = [], 0
    while total < n_images:
        k = int(rng.integers(2, 7))  # 2..6 images per person
        k = min(k, n_images - total)
        sizes.append(k)
        total += k
    return sizes


def _splits(identities: np.ndarray, seed: int) -> dict:
    """Random 60/10/30 image split plus an identity-disjoint ("zs") split of the same shares."""
    n = len(identities)
    perm = np.random.default_rng([seed, 3]).permutation(n)
    n_train, n_val = int(round(0.6 * n)), int(round(0.1 * n))
    train, val, test = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    ids = np.unique(identities)
    id_perm = np.random.default_rng([seed, 4]).permutation(ids)
    counts = np.bincount(identities, minlength=int(ids.max()) + 1)
    zs = {"zs_test": [], "zs_val": [], "zs_train": []}
    done = 0
    for i in id_perm:  # whole identities go to test until 30 % of images, then val until 40 %
        key = "zs_test" if done < 0.3 * n else "zs_val" if done < 0.4 * n else "zs_train"
        zs[key].append(i)
        done += counts[i]
    out = {"train": train, "val": val, "test": test, "trainval": np.concatenate([train, val])}
    for key, members in zs.items():
        out[key] = np.flatnonzero(np.isin(identities, members))
    out["zs_trainval"] = np.concatenate([out["zs_train"], out["zs_val"]])
    return {k: sorted(int(i) for i in v) for k, v in out.items()}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _labels_csv(rows: list) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", "identity", "view", *SYNTHPAR_ATTRIBUTES])
    for image, identity, view, labels in rows:
        wr.writerow([image, identity, view, *[labels[a] for a in SYNTHPAR_ATTRIBUTES]])
    return buf.getvalue()


def make_synthpar(out_dir: Union[str, Path], n_images: int = 2000, seed: int = 0,
                  image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, label_noise: float = 0.0,
                  progress: bool = True) -> Path:
    """Generate a SynthPAR dataset folder (layout in the module docstring).

    Identities get 2-6 images each; identity `k` looks the same in all of them (appearance seed
    `(seed, 18, k)`), image `i` has its own scene (seed `(seed, 19, i)`), so any image can be
    re-rendered with `render_person(labels, seed=(seed, 19, i), appearance_seed=(seed, 18, k),
    occlusion=None)`. The same arguments give byte-identical files.

    Args:
        out_dir: folder to (re)write; created if needed. A previous meta.json is removed first,
            so an interrupted run leaves a folder that `ensure_synthpar` regenerates.
        n_images: number of images (>= 10).
        seed: generator seed.
        image_size: (width, height) in pixels.
        label_noise: probability of flipping each written label (annotator noise); the drawn
            labels are then also written to labels_clean.csv.
        progress: show a tqdm progress bar.

    Returns:
        `out_dir` as a Path.
    """
    w, h = check_image_size(image_size)
    if int(n_images) < 10:
        raise ValueError(f"n_images must be at least 10 (got {n_images}) so that every split is non-empty")
    if not 0.0 <= float(label_noise) <= 0.5:
        raise ValueError(f"label_noise is a flip probability in [0, 0.5], got {label_noise}")
    n_images, seed, label_noise = int(n_images), int(seed), float(label_noise)
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # mark as incomplete until the end
    start = time.perf_counter()

    sizes = _identity_sizes(n_images, np.random.default_rng([seed, 0]))
    rows, clean_rows, caps = _render_images(img_dir, sizes, seed, (w, h), label_noise, progress)
    _remove_stale_images(img_dir, n_images)
    labels_text = _labels_csv(rows)
    _write_text(out / "labels.csv", labels_text)
    if label_noise > 0:
        _write_text(out / "labels_clean.csv", _labels_csv(clean_rows))
    else:
        (out / "labels_clean.csv").unlink(missing_ok=True)
    identities = np.repeat(np.arange(len(sizes)), sizes)
    _write_text(out / "splits.json", json.dumps(_splits(identities, seed)))
    _write_text(out / "captions.jsonl", "".join(json.dumps(c) + "\n" for c in caps))
    meta = {
        "generator": "parkit.data.synthpar", "version": GENERATOR_VERSION, "seed": seed,
        "n_images": n_images, "n_identities": len(sizes), "image_size": [w, h],
        "label_noise": label_noise, "attributes": list(SYNTHPAR_ATTRIBUTES),
        "labels_sha256": hashlib.sha256(labels_text.encode("utf-8")).hexdigest(),
    }
    _write_text(out / "meta.json", json.dumps(meta, indent=1))
    if progress:
        print(f"SynthPAR: {n_images} images, {len(sizes)} identities in {time.perf_counter() - start:.1f} s "
              f"-> {_shown_path(out)}")
    return out


def _render_images(img_dir: Path, sizes: list, seed: int, image_size: tuple, label_noise: float,
                   progress: bool) -> tuple:
    """Draw and save every image, identity by identity (`sizes[k]` images of identity `k`).

    Returns:
        (rows, clean_rows, captions): rows are (image name, identity, view, labels) with the
        observed (possibly noisy) labels, clean_rows the same with the drawn labels, captions one
        {"image", "captions"} record per image.
    """
    rows, clean_rows, caps = [], [], []
    bar = tqdm(total=sum(sizes), desc="SynthPAR", unit="img", disable=not progress)
    i = 0
    for k, count in enumerate(sizes):
        id_attrs = sample_attributes(np.random.default_rng([seed, 17, k]))
        app_seed = (seed, 18, k)
        app = sample_appearance(seeded_rng(app_seed))
        for _ in range(count):
            img_rng = np.random.default_rng([seed, 20, i])
            view = VIEWS[int(img_rng.integers(3))]
            attrs = complete_attributes(id_attrs, view)
            img = render_person(attrs, seed=(seed, 19, i), image_size=image_size, appearance_seed=app_seed,
                                occlusion=None)
            name = f"{i:06d}.png"
            img.save(img_dir / name, format="PNG")
            observed = apply_label_noise(attrs, np.random.default_rng([seed, 21, i]), label_noise)
            rows.append((name, k, view, observed))
            clean_rows.append((name, k, view, attrs))
            caps.append({"image": name, "captions": make_captions(attrs, view, app, img_rng)})
            i += 1
            bar.update(1)
    bar.close()
    return rows, clean_rows, caps


def _remove_stale_images(img_dir: Path, n_images: int) -> None:
    """Delete leftovers from an earlier, larger generation (and stray non-numbered PNGs)."""
    for stale in img_dir.glob("*.png"):
        if not stale.stem.isdigit() or int(stale.stem) >= n_images:
            stale.unlink()


def _read_meta(root: Path) -> dict:
    path = root / "meta.json"
    if not path.is_file():
        hint = (" (labels.csv is there: the generation was interrupted)" if (root / "labels.csv").exists() else "")
        raise DatasetError(
            f"{root} holds no SynthPAR dataset: {path} is missing{hint}. Generate it with "
            f"parkit.data.synthpar.make_synthpar({str(root)!r}) or use ensure_synthpar().")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); delete the folder and regenerate it") from None
    if meta.get("generator") != "parkit.data.synthpar":
        raise DatasetError(f"{path} was not written by parkit's SynthPAR generator")
    return meta


def _is_complete(root: Path, n_images: int, seed: int, image_size, label_noise: float) -> bool:
    try:
        meta = _read_meta(root)
        labels = (root / "labels.csv").read_bytes()
    except (DatasetError, OSError):
        return False
    want = {"version": GENERATOR_VERSION, "seed": int(seed), "n_images": int(n_images),
            "image_size": list(check_image_size(image_size)), "label_noise": float(label_noise)}
    if any(meta.get(k) != v for k, v in want.items()):
        return False
    if hashlib.sha256(labels).hexdigest() != meta.get("labels_sha256"):
        return False
    if not all((root / f).is_file() for f in ("splits.json", "captions.jsonl")):
        return False
    return all((root / "images" / f"{i:06d}.png").is_file() for i in range(int(n_images)))


def _shown_path(path: Path) -> str:
    """`path` as a notebook may show it: under the cache as "<cache>/name", under the home folder
    with "~" (committed outputs must not carry a machine's folders)."""
    path = Path(path)
    for base, label in ((cache_root(), "<parkit cache>"), (Path.home(), "~")):
        try:
            return str(Path(label) / path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return path.name


def cache_root() -> Path:
    """Where generated data sets are kept: `$PARKIT_CACHE`, default ~/.cache/parkit."""
    return Path(os.environ.get("PARKIT_CACHE") or Path.home() / ".cache" / "parkit").expanduser()


def default_synthpar_root(n_images: int = 2000, seed: int = 0,
                          image_size: Sequence[int] = DEFAULT_IMAGE_SIZE) -> Path:
    """Cache folder for a generated SynthPAR: `$PARKIT_CACHE` (default ~/.cache/parkit) /
    `synthpar-<n_images>-<seed>`, with `-<w>x<h>` appended for a non-default image size."""
    base = cache_root()
    w, h = check_image_size(image_size)
    suffix = "" if (w, h) == DEFAULT_IMAGE_SIZE else f"-{w}x{h}"
    return base / f"synthpar-{int(n_images)}-{int(seed)}{suffix}"


def ensure_synthpar(root: Optional[Union[str, Path]] = None, n_images: int = 2000, seed: int = 0,
                    image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, label_noise: float = 0.0,
                    progress: bool = True) -> Path:
    """Return a complete SynthPAR folder, generating it when missing, interrupted or made with
    other settings.

    Args:
        root: folder; default `default_synthpar_root(n_images, seed, image_size)`.
        n_images, seed, image_size, label_noise, progress: as for `make_synthpar`.

    Returns:
        the folder as a Path.
    """
    root = Path(root) if root is not None else default_synthpar_root(n_images, seed, image_size)
    if not _is_complete(root, n_images, seed, image_size, label_noise):
        if (root / "meta.json").exists():
            warnings.warn(f"{root} holds a SynthPAR made with other settings or incomplete; regenerating it")
        make_synthpar(root, n_images=n_images, seed=seed, image_size=image_size, label_noise=label_noise,
                      progress=progress)
    return root


def _pa100k_metadata() -> tuple:
    """(sentences, regions) of SynthPAR's attributes, from the PA100K schema (spec Appendix A)."""
    schema = get_schema("PA100K")
    if [str(a) for a in schema.attributes] != list(SYNTHPAR_ATTRIBUTES):
        raise DatasetError(f"parkit.attributes' PA100K names {list(schema.attributes)} differ from SynthPAR's "
                           f"columns {list(SYNTHPAR_ATTRIBUTES)}; the two must stay in PA100K label order")
    return list(schema.sentences), list(schema.regions)


def load_synthpar(root: Union[str, Path], split_protocol: str = "random", require_images: bool = True,
                  labels: str = "observed", **ignored) -> PARDataset:
    """Read a SynthPAR folder written by `make_synthpar`.

    Args:
        root: the folder (the one holding meta.json).
        split_protocol: "random" (60/10/30 over images; a person's other images may sit in
            another split, like PA100K's random split) or "identity" (the "zs" split: no identity
            shared between trainval and test, like PETA-ZS / RAP-ZS).
        require_images: check that every image file exists.
        labels: "observed" (labels.csv, with any label noise) or "clean" (what was drawn).
        **ignored: options meant for other loaders (accepted so `load_dataset` can pass them).

    Returns:
        PARDataset named "SynthPAR" (random protocol) or "SynthPAR-ZS" (identity protocol), with
        splits train/val/test/trainval, identities set and `info` holding the generator metadata
        and the captions file.
    """
    root = Path(root).expanduser().resolve()
    if split_protocol not in ("random", "identity"):
        raise ValueError(f"split_protocol must be 'random' or 'identity', got {split_protocol!r}")
    if labels not in ("observed", "clean"):
        raise ValueError(f"labels must be 'observed' or 'clean', got {labels!r}")
    meta = _read_meta(root)
    if meta.get("version") != GENERATOR_VERSION:
        warnings.warn(f"{root} was generated by SynthPAR {meta.get('version')}, this is {GENERATOR_VERSION}; "
                      f"regenerate it for identical results")
    csv_path = root / ("labels_clean.csv" if labels == "clean" and meta.get("label_noise", 0) > 0 else "labels.csv")
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            table = list(reader)
    except (OSError, StopIteration) as err:
        raise DatasetError(f"cannot read {csv_path} ({err}); regenerate with ensure_synthpar({str(root)!r})") from None
    attrs = header[3:]
    if header[:3] != ["image", "identity", "view"] or attrs != list(SYNTHPAR_ATTRIBUTES):
        raise DatasetError(f"{csv_path}: unexpected columns {header}; regenerate the dataset")
    if len(table) != meta["n_images"]:
        raise DatasetError(f"{csv_path} has {len(table)} rows but meta.json says {meta['n_images']}; regenerate")
    lab = np.array([[int(v) for v in r[3:]] for r in table], dtype=np.uint8)
    identities = np.array([int(r[1]) for r in table], dtype=np.int64)
    paths = [str(root / "images" / r[0]) for r in table]
    if require_images:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError(f"{len(missing)} SynthPAR image(s) missing under {root / 'images'}, first "
                               f"{missing[0]}; regenerate with ensure_synthpar({str(root)!r})")
    raw = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    prefix = "" if split_protocol == "random" else "zs_"
    splits = {k: np.asarray(raw[prefix + k], dtype=np.int64) for k in ("train", "val", "test", "trainval")}
    sentences, regions = _pa100k_metadata()
    source = ("SynthPAR random image split (60/10/30 of images, seeded; a person's images can be in "
              "several splits)" if split_protocol == "random" else
              "SynthPAR identity-disjoint split (no identity shared between trainval and test)")
    info = {k: meta[k] for k in ("version", "seed", "n_images", "n_identities", "image_size", "label_noise")}
    info.update(views=[r[2] for r in table], captions=str(root / "captions.jsonl"), labels=labels)
    return PARDataset(
        name="SynthPAR" if split_protocol == "random" else "SynthPAR-ZS",
        attributes=list(SYNTHPAR_ATTRIBUTES), sentences=sentences, regions=regions, labels=lab,
        image_paths=paths, splits=splits, identities=identities, root=root, split_source=source, info=info)


def load_captions(root: Union[str, Path]) -> dict:
    """Captions of a SynthPAR folder: image file name -> list of caption strings."""
    path = Path(root) / "captions.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path} is missing; generate the dataset with ensure_synthpar({str(root)!r})")
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            out[rec["image"]] = rec["captions"]
    return out
