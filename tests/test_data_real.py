"""Loaders on the real annotation files (realdata fixture) and on small files written here.

RAPv2 / RAP-ZS are tested on small RAP_annotation.mat files written in both MATLAB v5
(scipy.io.savemat) and v7.3 (HDF5 with MATLAB's layout, `write_mat73`), because the real
RAPv2 labels are not available.
"""
import pickle
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image

from parkit.attributes import get_schema
from parkit.data import list_datasets, load_dataset
from parkit.data.formats import read_mat
from parkit.data.peta import GROUP_ORDER
from parkit.data.pickles import read_pickle
from parkit.data.rap import RAPV2_GROUP_ORDER

# ----------------------------------------------------------------------------- MAT writers

MATLAB_CLASS = {np.dtype("float64"): "double", np.dtype("float32"): "single", np.dtype("uint8"): "uint8",
                np.dtype("int16"): "int16", np.dtype("int32"): "int32", np.dtype("int64"): "int64",
                np.dtype("uint16"): "uint16", np.dtype("bool"): "logical"}


class StructArray(list):
    """A MATLAB struct array (1 x n) for `write_mat73` / `to_savemat`."""


def write_mat73(path, variables):
    """Write `variables` as a MATLAB v7.3 file (HDF5 with MATLAB's conventions).

    dict -> struct group, StructArray -> struct-array group whose fields are reference
    datasets, list -> cell (reference dataset, MATLAB_class "cell"), str -> uint16 char,
    ndarray -> transposed dataset (HDF5 stores MATLAB's column-major data reversed).
    """
    import h5py

    counter = [0]

    def new_ref(refs, value):
        counter[0] += 1
        name = f"r{counter[0]}"
        put(refs, name, value)
        return refs[name].ref

    def put(group, name, value):
        refs = group.file.require_group("#refs#")
        if isinstance(value, StructArray):
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            for field in value[0]:
                r = np.array([[new_ref(refs, el[field])] for el in value], dtype=h5py.ref_dtype)  # (n, 1) = MATLAB 1 x n
                g.create_dataset(field, data=r)
        elif isinstance(value, dict):
            g = group.create_group(name)
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            for k, v in value.items():
                put(g, k, v)
        elif isinstance(value, list):
            r = np.array([[new_ref(refs, v) for v in value]], dtype=h5py.ref_dtype)  # (1, n) = MATLAB n x 1
            ds = group.create_dataset(name, data=r)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
        elif isinstance(value, str):
            ds = group.create_dataset(name, data=np.array([[ord(c)] for c in value], dtype=np.uint16))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
        else:
            arr = np.atleast_2d(np.asarray(value))
            ds = group.create_dataset(name, data=arr.T)
            ds.attrs["MATLAB_class"] = np.bytes_(MATLAB_CLASS[arr.dtype])

    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in variables.items():
            put(f, k, v)
    with open(path, "r+b") as f:  # MATLAB's 128-byte header in the user block: text, subsys, version, endian
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: parkit tests".ljust(116)
                + b"\0" * 8 + b"\x00\x02" + b"IM")


def to_savemat(value):
    """The same values in the form scipy.io.savemat writes as MATLAB v5 structs and cells."""
    if isinstance(value, StructArray):
        out = np.empty((1, len(value)), dtype=object)
        for i, v in enumerate(value):
            out[0, i] = to_savemat(v)
        return out
    if isinstance(value, dict):
        return {k: to_savemat(v) for k, v in value.items()}
    if isinstance(value, list):
        out = np.empty((len(value), 1), dtype=object)
        for i, v in enumerate(value):
            out[i, 0] = to_savemat(v)
        return out
    return value


def write_both(tmp_path, name, variables):
    """(v5 path, v7.3 path) of the same content."""
    v5 = tmp_path / "v5" / "RAP_annotation"
    v73 = tmp_path / "v73" / "RAP_annotation"
    v5.mkdir(parents=True)
    v73.mkdir(parents=True)
    scipy.io.savemat(v5 / name, {k: to_savemat(v) for k, v in variables.items()})
    write_mat73(v73 / name, variables)
    return v5.parent, v73.parent


def fake_rapv2(n=120, seed=0):
    """A small RAPv2 annotation: 152 raw attributes, the 54 selected at random raw columns."""
    rng = np.random.default_rng(seed)
    schema = get_schema("RAPv2").attributes
    selected_names = [None] * 54
    for j, g in enumerate(RAPV2_GROUP_ORDER):  # group order position j holds selected index g
        selected_names[g] = schema[j]
    raw_cols = rng.choice(152, size=54, replace=False)
    attribute = [f"color-Other{i}" for i in range(152)]
    for k, c in enumerate(raw_cols):
        attribute[c] = selected_names[k]
    data = rng.integers(0, 2, size=(n, 152)).astype(np.float64)
    data[rng.random((n, 152)) < 0.05] = 2  # "unknown"
    identity = rng.integers(0, 30, size=n).astype(np.float64)
    identity[: n // 6] = -1
    partitions = StructArray()
    for k in range(5):
        perm = rng.permutation(n) + 1
        partitions.append({"train_index": perm[: n // 2].reshape(1, -1).astype(np.float64),
                           "val_index": perm[n // 2: 3 * n // 4].reshape(1, -1).astype(np.float64),
                           "test_index": perm[3 * n // 4:].reshape(1, -1).astype(np.float64)})
    ann = {"name": [f"CAM{i:02d}-rap2-{i:05d}.png" for i in range(n)], "attribute": attribute,
           "data": data, "selected_attribute": (raw_cols + 1).reshape(1, -1).astype(np.float64),
           "partition_attribute": partitions, "person_identity": identity.reshape(-1, 1)}
    truth = {"labels": data[:, raw_cols][:, list(RAPV2_GROUP_ORDER)].astype(np.uint8), "identity": identity,
             "partitions": [{s: p[f"{s}_index"].ravel().astype(int) - 1 for s in ("train", "val", "test")}
                            for p in partitions]}
    return ann, truth


# ----------------------------------------------------------------------------- PA-100K

def test_pa100k_annotation_only(realdata):
    ds = load_dataset("PA100K", realdata / "pa100k", require_images=False)
    assert ds.num_attributes == 26 and ds.attributes[0] == "Female" and ds.attributes[-1] == "boots"
    assert ds.sentences[0] == "A female pedestrian"
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 80000, "val": 10000, "test": 10000,
                                                         "trainval": 90000}
    assert ds.splits["val"][0] == 80000 and ds.splits["test"][-1] == 99999
    assert ds.image_paths == [None] * 100000 and ds.labels.dtype == np.uint8
    mat = read_mat(realdata / "pa100k" / "annotation.mat")
    assert np.array_equal(ds.labels[ds.splits["test"]], mat["test_label"])
    assert ds.split_source.startswith("official")


def test_pa100k_present_images_match_the_csv(realdata):
    with pytest.warns(UserWarning, match="dropped 98000 of 100000"):
        ds = load_dataset("pa100k", realdata / "pa100k", skip_missing=True)
    csv = pd.read_csv(realdata / "pa100k" / "labels_000001-002000.csv")
    assert len(ds) == 2000 and ds.info["dropped_missing_images"] == 98000
    assert [p.split("/")[-1] for p in ds.image_paths] == csv["image"].tolist()
    assert np.array_equal(ds.labels, csv[ds.attributes].to_numpy())
    assert len(ds.splits["train"]) == 2000 and len(ds.splits["test"]) == 0 and len(ds.splits["trainval"]) == 2000


# ----------------------------------------------------------------------------- PETA

def test_peta_partition0_official_split(realdata):
    ds = load_dataset("PETA", realdata / "peta", require_images=False)
    assert ds.num_attributes == 35 and (ds.attributes[0], ds.attributes[-1]) == ("accessoryHat", "personalMale")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 9500, "val": 1900, "test": 7600, "trainval": 11400}
    assert ds.identities is not None and ds.identities.max() == 8699
    other = load_dataset("PETA", realdata / "peta", partition=3, require_images=False)
    assert len(other.splits["test"]) == 7600 and not np.array_equal(other.splits["test"], ds.splits["test"])


def test_peta_present_images_and_labels(realdata):
    with pytest.warns(UserWarning, match="dropped 15000"):
        ds = load_dataset("PETA", realdata / "peta", skip_missing=True)
    index = pd.read_csv(realdata / "peta" / "subset_index.csv")
    assert len(ds) == 4000
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 2000, "val": 400, "test": 1600, "trainval": 2400}
    rows = np.array([int(p.split("/")[-1].split(".")[0]) for p in ds.image_paths])  # PETA.mat index of each row
    assert sorted(rows) == sorted(index["peta_index"])
    assert {p.rsplit(".", 1)[1] for p in ds.image_paths} == {"bmp", "png", "jpg", "jpeg"}
    split_of = dict(zip(index["peta_index"], index["partition0_split"]))
    for split in ("train", "val", "test"):
        assert {split_of[r] for r in rows[ds.splits[split]]} == {split}
    data = read_mat(realdata / "peta" / "PETA.mat")["peta"]["data"]
    assert np.array_equal(ds.labels, data[rows - 1, 4:][:, list(GROUP_ORDER)])
    assert np.array_equal(ds.identities, data[rows - 1, 1])


def test_peta_zs_built_split_is_identity_disjoint(realdata):
    ds = load_dataset("PETA-ZS", realdata / "peta", require_images=False)
    tv, test = set(ds.identities[ds.splits["trainval"]]), set(ds.identities[ds.splits["test"]])
    assert not tv & test
    assert not set(ds.identities[ds.splits["train"]]) & set(ds.identities[ds.splits["val"]])
    assert "NOT the official split" in ds.split_source and ds.info["official_split"] is False
    assert ds.info["official_sizes"] == {"train": 11241, "val": 3826, "test": 3933}
    for k, target in ds.info["official_sizes"].items():
        assert ds.info["split_sizes"][k] == len(ds.splits[k])
        assert abs(len(ds.splits[k]) - target) / target < 0.02, (k, len(ds.splits[k]))
    assert sum(len(ds.splits[k]) for k in ("train", "val", "test")) == 19000
    again = load_dataset("PETAzs", realdata / "peta", require_images=False)
    assert np.array_equal(again.splits["test"], ds.splits["test"])
    reseeded = load_dataset("PETA-ZS", realdata / "peta", require_images=False, seed=1)
    assert not np.array_equal(reseeded.splits["test"], ds.splits["test"])


# ----------------------------------------------------------------------------- RAP v1

def test_rapv1_partitions_unknown_labels_and_image(realdata):
    ds = load_dataset("RAPv1", realdata / "rapv1", require_images=False)
    assert ds.num_attributes == 51 and ds.attributes[0] == "Female"
    assert len(ds.splits["trainval"]) == 33268 and len(ds.splits["test"]) == 8317 and len(ds.splits["val"]) == 0
    unknown_female = int((ds.labels[:, 0] == 2).sum())
    assert unknown_female > 0 and ds.ignore_mask[:, 0].sum() == unknown_female
    assert ds.binary_labels[ds.labels[:, 0] == 2, 0].max() == 0  # unknown is not a positive
    assert ds.sentences[0] == "A female pedestrian" and ds.identities.min() == -1
    with pytest.warns(UserWarning, match="dropped 41584"):
        one = load_dataset("RAPv1", realdata / "rapv1", skip_missing=True)
    assert len(one) == 1 and one.image_paths[0].endswith("tarid0_frame218_line1.png")
    assert np.array_equal(one.labels[0], ds.labels[41584])
    assert list(np.array(one.attributes)[one.labels[0] == 1]) == ["AgeLess16", "BodyFat", "Customer", "hs-BlackHair",
                                                                  "ub-Tight", "lb-LongTrousers", "shoes-Sport"]


def test_rapv1_v73_reads_like_v5(realdata, tmp_path):
    """A cut-down copy of the real RAPv1 file, written as v5 and v7.3, loads identically."""
    real = read_mat(realdata / "rapv1" / "RAP_annotation.mat")["RAP_annotation"]
    n = 200
    parts = [{"train_index": (np.arange(1, 151)[None, :] + k).astype(np.float64),
              "test_index": np.arange(151 + k, 201)[None, :].astype(np.float64)} for k in range(5)]
    small = {"partion": parts,  # a 5 x 1 cell of structs, as in the real file
             "label": real["label"][:n].astype(np.int32), "attribute_eng": real["attribute_eng"],
             "imagesname": real["imagesname"][:n], "identity": real["identity"][:n].astype(np.int16)}
    v5, v73 = write_both(tmp_path, "RAP_annotation.mat", {"RAP_annotation": small})
    with pytest.raises(NotImplementedError):  # a genuine v7.3 header: scipy cannot read it
        scipy.io.loadmat(v73 / "RAP_annotation" / "RAP_annotation.mat")
    a = load_dataset("RAPv1", v5, partition=2, require_images=False)
    b = load_dataset("RAPv1", v73, partition=2, require_images=False)
    assert np.array_equal(a.labels, real["label"][:n, :51]) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.splits["trainval"], np.arange(2, 152)) and np.array_equal(a.splits["test"], b.splits["test"])
    assert np.array_equal(a.identities, b.identities) and a.attributes == b.attributes


# ----------------------------------------------------------------------------- RAP v2 and RAP-ZS

@pytest.fixture(scope="module")
def rapv2_files(tmp_path_factory):
    ann, truth = fake_rapv2()
    v5, v73 = write_both(tmp_path_factory.mktemp("rapv2"), "RAP_annotation.mat", {"RAP_annotation": ann})
    return v5, v73, truth


@pytest.mark.parametrize("version", [0, 1], ids=["v5", "v7.3"])
def test_rapv2_group_order_and_partitions(rapv2_files, version):
    root, truth = rapv2_files[version], rapv2_files[2]
    ds = load_dataset("RAPv2", root, partition=1, require_images=False)
    assert ds.attributes == get_schema("RAPv2").attributes and ds.num_attributes == 54
    assert np.array_equal(ds.labels, truth["labels"])
    p = truth["partitions"][1]
    assert np.array_equal(ds.splits["train"], p["train"]) and np.array_equal(ds.splits["test"], p["test"])
    assert np.array_equal(ds.splits["trainval"], np.concatenate([p["train"], p["val"]]))
    assert ds.ignore_mask.sum() == (truth["labels"] == 2).sum() > 0


def test_rapv2_v5_and_v73_agree(rapv2_files):
    a = load_dataset("RAPv2", rapv2_files[0], require_images=False)
    b = load_dataset("rapv2", rapv2_files[1], require_images=False)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.identities, b.identities)
    assert all(np.array_equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert a.info["official_sizes"]["trainval"] == 67943


@pytest.mark.parametrize("version", [0, 1], ids=["v5", "v7.3"])
def test_rap_zs_built_split(rapv2_files, version):
    root, truth = rapv2_files[version], rapv2_files[2]
    ds = load_dataset("RAP-ZS", root, require_images=False, seed=3)
    assert ds.num_attributes == 53 and "Age46-60" not in ds.attributes
    known = truth["identity"] >= 0
    assert len(ds) == known.sum() and ds.info["rows_without_identity_dropped"] == (~known).sum()
    age = get_schema("RAPv2").attributes.index("Age46-60")
    assert np.array_equal(ds.labels, np.delete(truth["labels"][known], age, axis=1))
    assert not set(ds.identities[ds.splits["trainval"]]) & set(ds.identities[ds.splits["test"]])
    assert "NOT the official split" in ds.split_source
    sizes = ds.info["split_sizes"]
    assert sizes["train"] > sizes["test"] > 0 and sizes["val"] > 0


def test_rap2_partition_pickle_reads_with_the_safe_unpickler(realdata):
    """A real Python-2 pickle of the 5 official RAPv2 partitions (no easydict, latin-1 strings)."""
    part = read_pickle(realdata / "rapv2" / "rap2_partition.pkl")
    sizes = {k: len(part[k][0]) for k in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 50957, "val": 16986, "test": 16985, "trainval": 67943}
    assert len(part["weight_train"][0]) == 152


# ----------------------------------------------------------------------------- Rethinking pickles

def _easydict_pickle(path, payload):
    """Pickle `payload` (nested dicts) as easydict.EasyDict objects, without easydict installed."""
    module = types.ModuleType("easydict")

    class EasyDict(dict):
        def __init__(self, d=None):
            super().__init__()
            for k, v in (d or {}).items():
                v = EasyDict(v) if isinstance(v, dict) else v
                self[k] = v
                object.__setattr__(self, k, v)

    EasyDict.__module__, EasyDict.__qualname__ = "easydict", "EasyDict"
    module.EasyDict = EasyDict
    sys.modules["easydict"] = module
    try:
        with open(path, "wb") as f:
            pickle.dump(EasyDict(payload), f, protocol=2)
    finally:
        del sys.modules["easydict"]


def test_rethinking_pickles_for_peta_and_peta_zs(tmp_path):
    assert "easydict" not in sys.modules
    rng = np.random.default_rng(0)
    n = 40
    label = rng.integers(0, 2, size=(n, 105)).astype(np.uint8)
    names = get_schema("PETA").attributes + [f"extra{i}" for i in range(70)]
    parts = [rng.permutation(n) for _ in range(5)]
    _easydict_pickle(tmp_path / "dataset_all.pkl", {
        "description": "peta", "root": "/somewhere/else/images", "image_name": [f"{i + 1:05d}.png" for i in range(n)],
        "label": label, "attr_name": names, "label_idx": {"eval": list(range(35)), "extra": list(range(35, 105))},
        "partition": {"train": [p[:20] for p in parts], "val": [p[20:25] for p in parts],
                      "test": [p[25:] for p in parts], "trainval": [p[:25] for p in parts]}})
    ds = load_dataset("PETA", tmp_path, partition=2, require_images=False)
    assert np.array_equal(ds.labels, label[:, :35]) and np.array_equal(ds.splits["test"], parts[2][25:])
    assert ds.split_source.startswith("official (dataset_all.pkl")
    zs = {"image_name": [f"{i + 1:05d}.png" for i in range(n)], "label": label[:, :35],
          "attr_name": get_schema("PETA").attributes,
          "partition": {"train": np.arange(0, 20), "val": np.arange(20, 30), "test": np.arange(30, 40)}}
    _easydict_pickle(tmp_path / "dataset_zs_run0.pkl", zs)
    ds = load_dataset("PETA-ZS", tmp_path, require_images=False)
    assert ds.split_source == "official (dataset_zs_run0.pkl)" and ds.info["official_split"] is True
    assert np.array_equal(ds.splits["trainval"], np.arange(30)) and len(ds.splits["test"]) == 10
    assert "easydict" not in sys.modules


# ----------------------------------------------------------------------------- WIDER, CSV, registry

def _tiny_png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 4, 3), value, dtype=np.uint8)).save(path)


def write_wider(root, names_tv, labels_tv, names_test, labels_test, attr_names=None):
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    (ann / "trainval_name.txt").write_text("\n".join(names_tv) + "\n")
    (ann / "test_name.txt").write_text("\n".join(names_test) + "\n")
    fmt = lambda rows: "".join("[" + ", ".join(str(v) for v in r) + "]\n" for r in rows)  # noqa: E731
    (ann / "trainval_gt_label.txt").write_text(fmt(labels_tv))
    (ann / "test_gt_label.txt").write_text(fmt(labels_test))
    if attr_names is not None:
        (ann / "attr_name.txt").write_text("\n".join(attr_names) + "\n")


def test_wider_text_annotations(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(-1, 2, size=(7, 14))
    names = [f"{i}--Parade_{i}.jpg" for i in range(7)]
    write_wider(tmp_path, names[:4], raw[:4], names[4:], raw[4:], attr_names=get_schema("WIDER").attributes)
    for name in names:
        _tiny_png(tmp_path / "split_image" / name.replace(".jpg", ".png"))  # resolved by stem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching attr_name.txt: no warning
        ds = load_dataset("WIDER", tmp_path)
    assert np.array_equal(ds.labels, (raw > 0).astype(np.uint8))  # official: -1 and 0 -> 0
    assert np.array_equal(ds.splits["trainval"], np.arange(4)) and np.array_equal(ds.splits["test"], [4, 5, 6])
    assert all(p.endswith(".png") for p in ds.image_paths)
    ignore = load_dataset("WIDER", tmp_path, unspecified="ignore", sentences="clean")
    assert np.array_equal(ignore.ignore_mask, raw == 0) and np.array_equal(ignore.labels == 1, raw == 1)
    assert ignore.sentences[3] == "A pedestrian wearing a hat"


def test_csv_manifest(tmp_path):
    for i in range(6):
        _tiny_png(tmp_path / "imgs" / f"p{i}.jpg", value=i)
    pd.DataFrame({"image": [f"imgs/p{i}.jpg" for i in range(6)],
                  "split": ["train", "train", "train", "val", "test", "test"],
                  "Hat": [1, 0, 0, 1, "", 0], "Backpack": [0, 1, -1, 0, 1, 2],
                  "long hair": [1, 1, 0, 0, 0, 1]}).to_csv(tmp_path / "manifest.csv", index=False)
    ds = load_dataset("csv", tmp_path, sentences={"long hair": "A person whose hair is long"})
    assert ds.attributes == ["Hat", "Backpack", "long hair"]
    assert ds.sentences == ["A pedestrian wearing a hat", "A pedestrian carrying a backpack",
                            "A person whose hair is long"]
    assert ds.regions == ["head", "carried", "head"]
    assert ds.labels[:, 0].tolist() == [1, 0, 0, 1, 2, 0] and ds.labels[:, 1].tolist() == [0, 1, 2, 0, 1, 2]
    assert ds.splits["trainval"].tolist() == [0, 1, 2, 3] and ds.splits["test"].tolist() == [4, 5]
    assert ds.image_paths[5].endswith("imgs/p5.jpg")


def test_csv_manifest_without_split_column_splits_by_identity(tmp_path):
    n = 60
    pd.DataFrame({"image": [f"{i}.png" for i in range(n)], "identity": [f"id{i // 3}" for i in range(n)],
                  "Female": np.arange(n) % 2}).to_csv(tmp_path / "people.csv", index=False)
    ds = load_dataset("CSV", tmp_path / "people.csv", require_images=False, seed=1)
    assert not set(ds.identities[ds.splits["trainval"]]) & set(ds.identities[ds.splits["test"]])
    assert sum(len(ds.splits[k]) for k in ("train", "val", "test")) == n
    assert "random split, seed 1 (identity-disjoint)" in ds.split_source


def test_registry_lists_and_dispatches(monkeypatch, tmp_path):
    assert list_datasets() == ["PA100K", "PETA", "PETA-ZS", "RAPv1", "RAPv2", "RAP-ZS", "WIDER", "SynthPAR", "CSV"]
    calls = []
    fake = types.ModuleType("parkit.data.synthpar")
    fake.load_synthpar = lambda root, **kw: calls.append((root, kw)) or "dataset"
    monkeypatch.setitem(sys.modules, "parkit.data.synthpar", fake)
    assert load_dataset("synthpar", tmp_path, n_images=5) == "dataset"
    assert calls == [(tmp_path, {"n_images": 5})]
