"""Letterbox geometry, the train/test pipelines and normalisation (spec §11.3), and the torch
Dataset / DataLoader helper (corrupt files, skip mode, cache, seeded order)."""
import numpy as np
import pytest
import torch
from PIL import Image

from parkit.data.base import DatasetError, PARDataset
from parkit.data.torchdata import PARTorchDataset, make_loader
from parkit.data.transforms import (
    CLIP_MEAN, CLIP_STD, OFFICIAL_MEAN, OFFICIAL_STD, build_transform, denormalize, letterbox, to_pil)


def _solid(w, h, rgb=(255, 255, 255)):
    return Image.new("RGB", (w, h), rgb)


# ------------------------------------------------------------------ letterbox

@pytest.mark.parametrize("w,h,size,left,content", [
    (50, 100, 100, 25, 50),    # exact halving
    (51, 100, 112, 27, 57),    # 51*112/100 = 57.12 -> 57 columns, odd bar: 27 left, 28 right
    (40, 160, 96, 36, 24),     # 1:4 crop
])
def test_letterbox_portrait_bars_left_and_right(w, h, size, left, content):
    out = np.asarray(letterbox(_solid(w, h), size))  # (size, size, 3)
    assert out.shape == (size, size, 3)
    cols = out.max(axis=(0, 2)) > 0  # which columns hold content
    assert cols.sum() == content
    assert np.flatnonzero(cols)[0] == left
    right = size - left - content
    assert right - left in (0, 1)  # centred; the odd column goes right
    assert (out[:, :left] == 0).all() and (out[:, size - right:] == 0).all()
    assert (out[:, left:left + content] == 255).all()  # full height, nothing black inside


def test_letterbox_landscape_bars_top_and_bottom():
    out = np.asarray(letterbox(_solid(100, 50), 100))
    rows = out.max(axis=(1, 2)) > 0
    assert rows.sum() == 50 and np.flatnonzero(rows)[0] == 25
    assert (out.max(axis=(0, 2)) > 0).all()  # every column used


def test_letterbox_keeps_layout_and_converts_modes():
    img = Image.new("RGB", (20, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # top half red
    out = np.asarray(letterbox(img, 80))
    assert out[10, 40].tolist() == [255, 0, 0] and out[70, 40].tolist() == [0, 0, 255]
    for mode in ("L", "RGBA", "P"):
        assert letterbox(_solid(30, 60).convert(mode), 64).mode == "RGB"
    with pytest.raises(ValueError, match="size"):
        letterbox(_solid(10, 20), 0)


# ------------------------------------------------------------------ pipelines

def test_test_transform_values_official_and_clip():
    img = _solid(50, 100)  # white person-shaped image
    x = build_transform(False, 100, "official")(img)
    assert x.shape == (3, 100, 100) and x.dtype == torch.float32
    assert (x[:, :, 25:75] == 1).all()   # white content -> +1 (x - 0.5) / 0.5
    assert (x[:, :, :25] == -1).all() and (x[:, :, 75:] == -1).all()  # black bars -> -1
    c = build_transform(False, 100, "clip")(img)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    assert torch.allclose(c[:, 10, 50], white, atol=1e-5) and torch.allclose(c[:, 10, 0], black, atol=1e-5)
    assert OFFICIAL_MEAN == OFFICIAL_STD == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="official"):
        build_transform(False, 100, "imagenet")


def test_train_transform_pads_crops_and_flips():
    size = 64
    t = build_transform(True, size)
    square = _solid(80, 80)  # letterboxed to a full white square; any black comes from Pad(10)
    shifts, flips = set(), set()
    half = Image.new("RGB", (64, 64), (255, 0, 0))
    half.paste((0, 0, 255), (32, 0, 64, 64))  # left red, right blue
    for s in range(30):
        torch.manual_seed(s)
        x = t(square)
        assert x.shape == (3, size, size)
        black_cols = (x[0] < 0).all(dim=0)  # (size,) columns entirely from the padding
        black_rows = (x[0] < 0).all(dim=1)
        assert black_cols.sum() <= 10 and black_rows.sum() <= 10
        assert (x[:, 10:size - 10, 10:size - 10] > 0.99).all()  # the centre is never padding
        shifts.add((int(black_cols.sum()), int(black_rows.sum())))
        torch.manual_seed(s)
        y = t(half)
        flips.add(bool(y[0, 32, 20] > y[2, 32, 20]))  # red on the left = not flipped
    assert len(shifts) > 3 and flips == {True, False}


def test_denormalize_inverts_normalize():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for norm in ("official", "clip"):
        x = build_transform(False, 32, norm)(img)
        back = denormalize(x, norm)
        assert torch.allclose(back, torch.from_numpy(np.array(img)).permute(2, 0, 1) / 255.0, atol=1e-5)
        assert np.array_equal(np.asarray(to_pil(x, norm)), np.asarray(img))
        assert denormalize(x[None], norm).shape == (1, 3, 32, 32)


# ------------------------------------------------------------------ torch Dataset

@pytest.fixture()
def tiny(tmp_path):
    """A 5-row PARDataset on real PNG files of different sizes; labels include unknowns (2)."""
    paths = []
    for i, (w, h) in enumerate([(20, 40), (30, 60), (16, 48), (40, 40), (24, 50)]):
        p = tmp_path / f"{i}.png"
        _solid(w, h, (40 * i, 100, 200)).save(p)
        paths.append(str(p))
    labels = np.array([[1, 0, 2], [0, 1, 0], [1, 1, 1], [0, 0, 2], [1, 2, 0]], dtype=np.uint8)
    ds = PARDataset(name="Tiny", attributes=["a", "b", "c"], sentences=["A", "B", "C"],
                    regions=["head", "upper", "lower"], labels=labels, image_paths=paths,
                    splits={"train": [0, 1, 2], "val": [3], "test": [3, 4], "trainval": [0, 1, 2, 3]})
    return ds


def test_items_have_the_contract_types(tiny):
    d = PARTorchDataset(tiny, "test", build_transform(False, 32))
    x, target, ignore, idx = d[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert target.dtype == torch.float32 and target.tolist() == [1.0, 0.0, 0.0]
    assert ignore.dtype == torch.bool and ignore.tolist() == [False, True, False]
    assert idx == 4 and len(d) == 2


def test_corrupt_image_raises_naming_file_and_row(tiny):
    bad = tiny.image_paths[2]
    with open(bad, "wb") as fh:
        fh.write(b"not a png at all")
    d = PARTorchDataset(tiny, "train", build_transform(False, 32))
    with pytest.raises(DatasetError) as err:
        d[2]
    assert bad in str(err.value) and "row 2" in str(err.value) and "on_corrupt='skip'" in str(err.value)
    # a truncated PNG only fails when decoded: must be caught too
    good = open(tiny.image_paths[0], "rb").read()
    with open(tiny.image_paths[1], "wb") as fh:
        fh.write(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="1.png"):
        d[1]


def test_skip_mode_substitutes_next_row_and_warns_once(tiny):
    bad = tiny.image_paths[1]
    open(bad, "wb").write(b"\x89PNG garbage")
    d = PARTorchDataset(tiny, "train", build_transform(False, 32), on_corrupt="skip")
    with pytest.warns(RuntimeWarning, match="1.png"):
        x, target, ignore, idx = d[1]
    assert idx == 2 and target.tolist() == [1.0, 1.0, 1.0]  # the next row, with its own labels
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second visit must not warn again
        assert d[1][3] == 2
    assert d.skipped == [bad]
    assert d[2][3] == 2  # wraps around past the end of the split: row 2 -> row 2, row 1 -> row 2


def test_cache_serves_images_without_reading_files(tiny):
    t = build_transform(False, 32)
    d = PARTorchDataset(tiny, "train", t, cache=True)
    first = [d[i][0] for i in range(len(d))]
    for p in tiny.image_paths:
        open(p, "wb").write(b"")  # files gone bad after the first epoch
    second = [d[i][0] for i in range(len(d))]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(v.dtype == np.uint8 and v.shape == (32, 32, 3) for v in d._images.values())


def test_missing_paths_are_a_clear_error(tiny):
    tiny.image_paths[0] = None
    with pytest.raises(DatasetError, match="no image path"):
        PARTorchDataset(tiny, "train", build_transform(False, 32))[0]


def test_make_loader_is_seeded(tiny):
    t = build_transform(False, 16)

    def order(seed):
        dl = make_loader(tiny, "trainval", t, batch_size=2, shuffle=True, seed=seed)
        return [int(i) for _, _, _, idx in dl for i in idx]

    assert order(0) == order(0)
    assert sorted(order(0)) == [0, 1, 2, 3]
    assert any(order(0) != order(s) for s in range(1, 6))
    x, y, ign, idx = next(iter(make_loader(tiny, "train", t, batch_size=3, drop_last=True)))
    assert x.shape == (3, 3, 16, 16) and y.shape == (3, 3) and ign.dtype == torch.bool
    assert idx.dtype == torch.int64 and idx.tolist() == [0, 1, 2]
