"""Bad input to the dataset loaders: every failure is a DatasetError whose message says what and how to fix."""
import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io

from parkit.attributes import ContextLengthError, get_schema
from parkit.data import DatasetError, load_dataset
from parkit.data.pickles import read_pickle


def _pa100k_mat(path, n=(6, 2, 2), width=26, names=None, value=None):
    """A small PA-100K-style annotation.mat."""
    names = names or get_schema("PA100K").attributes
    rng = np.random.default_rng(0)
    content, start = {}, 0
    for split, k in zip(("train", "val", "test"), n):
        cell = np.empty((k, 1), dtype=object)
        for i in range(k):
            cell[i, 0] = f"{start + i + 1:06d}.jpg"
        content[f"{split}_images_name"] = cell
        content[f"{split}_label"] = rng.integers(0, 2, size=(k, width)).astype(np.uint8)
        start += k
    if value is not None:
        content["train_label"][1, 3] = value
    attrs = np.empty((len(names), 1), dtype=object)
    for i, a in enumerate(names):
        attrs[i, 0] = a
    content["attributes"] = attrs
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, content)


# ----------------------------------------------------------------------------- missing files

def test_missing_root_and_missing_annotation(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_dataset("PA100K", tmp_path / "nowhere")
    assert "HydraPlus-Net" in str(err.value)
    with pytest.raises(DatasetError) as err:
        load_dataset("RAPv1", tmp_path)
    msg = str(err.value)
    assert "no annotation file" in msg and str(tmp_path / "RAP_annotation" / "RAP_annotation.mat") in msg
    assert "rapdataset.com" in msg
    with pytest.raises(DatasetError, match="PETA.mat"):
        load_dataset("PETA-ZS", tmp_path)
    with pytest.raises(DatasetError, match="trainval_name.txt"):
        load_dataset("WIDER", tmp_path)
    with pytest.raises(DatasetError, match="manifest.csv"):
        load_dataset("CSV", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("PETA", tmp_path, annotation=tmp_path / "other.mat")


def test_missing_images_name_the_first_and_count_the_rest(realdata):
    with pytest.raises(DatasetError) as err:
        load_dataset("PA100K", realdata / "pa100k")
    msg = str(err.value)
    assert "'002001.jpg'" in msg and "97999 other image(s) of 100000" in msg
    assert "skip_missing=True" in msg and "require_images=False" in msg


def test_no_image_at_all(tmp_path):
    _pa100k_mat(tmp_path / "annotation.mat")
    with pytest.raises(DatasetError) as err:
        load_dataset("PA100K", tmp_path, skip_missing=True)  # skipping everything is still an error
    assert "'000001.jpg'" in str(err.value) and "No image was found at all" in str(err.value)
    ds = load_dataset("PA100K", tmp_path, require_images=False)
    assert len(ds) == 10 and ds.splits["trainval"].tolist() == list(range(8))


def test_skip_missing_reindexes_splits(tmp_path):
    from PIL import Image

    _pa100k_mat(tmp_path / "annotation.mat")
    (tmp_path / "data").mkdir()
    for i in (2, 7, 9):  # one train, one val, one test image (1-based names)
        Image.new("RGB", (4, 8)).save(tmp_path / "data" / f"{i:06d}.jpg")
    full = load_dataset("PA100K", tmp_path, require_images=False)
    with pytest.warns(UserWarning, match="dropped 7 of 10"):
        ds = load_dataset("PA100K", tmp_path, skip_missing=True)
    assert {k: v.tolist() for k, v in ds.splits.items()} == {"train": [0], "val": [1], "test": [2],
                                                              "trainval": [0, 1]}
    assert np.array_equal(ds.labels, full.labels[[1, 6, 8]])
    assert [os.path.basename(p) for p in ds.image_paths] == ["000002.jpg", "000007.jpg", "000009.jpg"]


# ----------------------------------------------------------------------------- corrupt files

def test_corrupt_and_truncated_annotation(tmp_path, realdata):
    (tmp_path / "annotation.mat").write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DatasetError, match="could not read .*annotation.mat.*corrupt"):
        load_dataset("PA100K", tmp_path, require_images=False)
    peta = tmp_path / "peta"
    peta.mkdir()
    (peta / "PETA.mat").write_bytes((realdata / "peta" / "PETA.mat").read_bytes()[:4000])
    with pytest.raises(DatasetError, match="PETA.mat"):
        load_dataset("PETA", peta, require_images=False)
    (peta / "PETA.mat").write_bytes(b"")
    with pytest.raises(DatasetError, match="could not read"):
        load_dataset("PETA", peta, require_images=False)


def test_wrong_file_for_the_dataset(tmp_path, realdata):
    os.makedirs(tmp_path / "RAP_annotation")
    shutil.copy(realdata / "rapv1" / "RAP_annotation.mat", tmp_path / "RAP_annotation" / "RAP_annotation.mat")
    with pytest.raises(DatasetError, match="no field 'name'.*right annotation file"):
        load_dataset("RAPv2", tmp_path, require_images=False)
    scipy.io.savemat(tmp_path / "annotation.mat", {"something": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match="no field 'train_images_name'"):
        load_dataset("PA100K", tmp_path, require_images=False)


def test_out_of_range_label_values(tmp_path):
    _pa100k_mat(tmp_path / "annotation.mat", value=7)
    with pytest.raises(DatasetError, match=r"1 label values outside \[0, 1, 2\].*row 1 column 3 \(value 7\)"):
        load_dataset("PA100K", tmp_path, require_images=False)


def test_corrupt_wider_labels(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    for split in ("trainval", "test"):
        (ann / f"{split}_name.txt").write_text("a.jpg\nb.jpg\n")
        (ann / f"{split}_gt_label.txt").write_text("[" + ", ".join(["1"] * 14) + "]\n[1, 0, oops]\n")
    with pytest.raises(DatasetError, match=r"trainval_gt_label.txt, line 2: expected a list of 14"):
        load_dataset("WIDER", tmp_path, require_images=False)


def test_corrupt_and_unsafe_pickles(tmp_path):
    (tmp_path / "dataset_all.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetError, match="could not unpickle"):
        load_dataset("PETA", tmp_path, require_images=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "dataset_all.pkl").write_bytes(pickle.dumps({"image_name": Evil()}))
    with pytest.raises(DatasetError, match=r"refusing to unpickle (posix|nt)\.system"):
        read_pickle(tmp_path / "dataset_all.pkl")


# ----------------------------------------------------------------------------- widths, names, options

def test_label_width_mismatch(tmp_path):
    _pa100k_mat(tmp_path / "annotation.mat", width=25)
    with pytest.raises(DatasetError, match="label matrix has 25 columns but the attribute list has 26"):
        load_dataset("PA100K", tmp_path, require_images=False)
    _pa100k_mat(tmp_path / "b" / "annotation.mat", names=get_schema("PA100K").attributes[:20])
    with pytest.raises(DatasetError, match="gives 20 attribute names but the PA100K schema has 26"):
        load_dataset("PA100K", tmp_path / "b", require_images=False)
    _pa100k_mat(tmp_path / "c" / "annotation.mat")
    with pytest.raises(DatasetError, match="3 custom sentences for 26 attributes"):
        load_dataset("PA100K", tmp_path / "c", require_images=False, sentences=["a", "b", "c"])


def test_renamed_attributes_warn(tmp_path):
    names = get_schema("PA100K").attributes
    _pa100k_mat(tmp_path / "annotation.mat", names=names[:3] + ["Elderly"] + names[4:])
    with pytest.warns(UserWarning, match="column 3: file 'Elderly' vs schema 'AgeLess18'"):
        load_dataset("PA100K", tmp_path, require_images=False)


def test_unknown_dataset_and_option():
    with pytest.raises(DatasetError) as err:
        load_dataset("Market1501", "/tmp")
    msg = str(err.value)
    assert "'Market1501'" in msg and all(n in msg for n in ("PA100K", "PETA-ZS", "RAP-ZS", "WIDER", "SynthPAR", "CSV"))
    with pytest.raises(DatasetError, match=r"unknown option\(s\) \['partiton'\].*partition"):
        load_dataset("PETA", "/tmp", partiton=1)


@pytest.mark.parametrize("partition", [5, -1, "1", 1.0])
def test_partition_out_of_range(realdata, partition):
    with pytest.raises(DatasetError, match=r"partition must be an integer in 0\.\.4 \(the file has 5 partitions\)"):
        load_dataset("PETA", realdata / "peta", partition=partition, require_images=False)


def test_rap_partition_out_of_range(realdata):
    with pytest.raises(DatasetError, match=r"0\.\.4.*got 9"):
        load_dataset("RAPv1", realdata / "rapv1", partition=9, require_images=False)


def test_zero_shot_official_pickle_required(realdata):
    with pytest.raises(DatasetError, match="official=True but no official zero-shot pickle"):
        load_dataset("PETA-ZS", realdata / "peta", official=True, require_images=False)


def test_wider_bad_option(tmp_path):
    with pytest.raises(DatasetError, match="unspecified must be one of"):
        load_dataset("WIDER", tmp_path, unspecified="drop")


# ----------------------------------------------------------------------------- CSV manifests

def test_csv_manifest_errors(tmp_path):
    pd.DataFrame({"file": ["a.png"], "Hat": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match="no 'image' column"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False)
    pd.DataFrame({"image": ["a.png", "b.png"], "Hat": [1, "yes"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match=r"column 'Hat', row 3: value 'yes' is not a number"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False)
    pd.DataFrame({"image": ["a.png"], "Hat": [5]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match="value 5 is not 0, 1, 2, -1 or empty"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False)
    pd.DataFrame({"image": ["a.png"], "split": ["holdout"], "Hat": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match=r"unknown 'split' values \['holdout'\]"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False)
    pd.DataFrame({"image": ["a.png"], "Hat": [1]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ContextLengthError, match="'Hat' has"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False, sentences=["word " * 90])
    with pytest.raises(DatasetError, match="unknown regions"):
        load_dataset("CSV", tmp_path / "m.csv", require_images=False, regions=["torso"])
