"""The training engine on a tiny stand-in model and a tiny image dataset.

`TinyPAR` honours the parkit model contract (forward -> logits/aux_logits, param_groups,
trainable_state_dict, load_trainable_state_dict, config, attributes, sentences, image_size,
normalization) in a few hundred parameters, so every engine behaviour — exact resume after SIGKILL,
NaN handling, checkpoints, evaluation, prediction — is tested in seconds. The real PromptPAR model
is exercised by the integration tests at the end of this file.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from parkit.data.base import PARDataset
from parkit.metrics import pedestrian_metrics
from parkit.train import checkpoint as ckpt_io
from parkit.train import RECIPES, SettingsMismatch, TrainingDiverged, evaluate, predict, train

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
Out = namedtuple("Out", "logits aux_logits extras")


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8
    image_size: int = 16
    drop: float = 0.0
    nan_at_call: int = 0  # make the n-th training forward return NaN logits (0 = never)

    def to_dict(self):
        return asdict(self)


class TinyPAR(nn.Module):
    """A stand-in PromptPAR: frozen conv features, a "prompt" gate, two heads, two BatchNorms."""

    def __init__(self, attributes, sentences, config=TinyConfig()):
        super().__init__()
        self.config, self.attributes, self.sentences = config, list(attributes), list(sentences)
        self.image_size, self.normalization = config.image_size, "official"
        a, w = len(attributes), config.width
        self.frozen = nn.Conv2d(3, w, 3, stride=2)
        self.frozen.requires_grad_(False)
        self.prompt = nn.Parameter(torch.zeros(w))
        # no biases before the BatchNorms: BN cancels them, so their true gradient is 0 and
        # AdamW would move them on rounding noise alone
        self.aux_head, self.agg_bn = nn.Linear(w, a, bias=False), nn.BatchNorm1d(a)
        self.head, self.bn = nn.Linear(w, a, bias=False), nn.BatchNorm1d(a)
        self.drop = nn.Dropout(config.drop)
        self.calls = 0

    def forward(self, x):  # x: (B, 3, S, S)
        if self.training:
            self.calls += 1
            # slows a run down so a test can kill it mid-epoch; not part of the config, so the
            # resumed run (without it) has the same settings
            time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
        f = torch.relu(self.frozen(x)).mean((2, 3)) * (1 + self.prompt)  # (B, w) prompt-gated
        f = self.drop(f)
        logits = self.bn(self.head(f))  # (B, A)
        if self.training and self.calls == self.config.nan_at_call:
            logits = logits * float("nan")
        return Out(logits, self.agg_bn(self.aux_head(f)), {})

    def param_groups(self):
        return {"prompt": [self.prompt, *self.aux_head.parameters(), *self.agg_bn.parameters()],
                "fusion": [*self.head.parameters(), *self.bn.parameters()]}

    def trainable_state_dict(self):
        keep = ("prompt", "aux_head", "agg_bn", "head", "bn")
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k.split(".")[0] in keep}

    def load_trainable_state_dict(self, sd):
        mine = self.trainable_state_dict()
        if set(sd) != set(mine):
            raise ValueError(f"key mismatch: {sorted(set(sd) ^ set(mine))}")
        self.load_state_dict(sd, strict=False)


ATTRS = ["red_top", "blue_legs", "bright"]


def make_tiny_dataset(root, n=64, seed=0, write=True) -> PARDataset:
    """n small PNGs whose colours follow 3 attributes; splits 40/12/12 (of 64).

    write=False only rebuilds the record (for processes that read images another one wrote).
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, 3)).astype(np.uint8)
    paths = []
    for i, (r, b, br) in enumerate(labels):
        img = rng.integers(0, 60, size=(20, 10, 3)).astype(np.uint8)
        img[:10, :, 0] += 180 * r
        img[10:, :, 2] += 180 * b
        img += np.uint8(50 * br)
        p = root / "img" / f"{i:03d}.png"
        if write:
            Image.fromarray(img).save(p)
        paths.append(str(p))
    labels[3, 1] = 2  # one unknown label, as in RAP
    n_tr, n_va = int(n * 0.625), int(n * 0.1875)
    splits = {"train": np.arange(n_tr), "val": np.arange(n_tr, n_tr + n_va),
              "test": np.arange(n_tr + n_va, n), "trainval": np.arange(n_tr + n_va)}
    return PARDataset("Tiny", ATTRS, [f"A pedestrian {a}" for a in ATTRS], ["whole"] * 3, labels,
                      paths, splits, root=root)


def tiny_model(**cfg):
    torch.manual_seed(0)
    return TinyPAR(ATTRS, [f"A pedestrian {a}" for a in ATTRS], TinyConfig(**cfg))


# a quick recipe: the tiny model should visibly learn in 3 epochs of 5 steps
QUICK = {**RECIPES["compact"].to_dict(), "name": "test", "lr_prompt": 0.03, "lr_fusion": 0.03,
         "warmup_prompt": 0, "warmup_fusion": 0}
FAST = dict(epochs=3, batch_size=8, device="cpu", progress=False, verbose=False, recipe=QUICK, seed=3)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: one thread avoids OpenMP hand-offs that dominate on a busy 2-core machine
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def test_train_writes_logs_checkpoints_and_selects_on_val(tiny_ds, tmp_path):
    res = train(tiny_model(), tiny_ds, out_dir=tmp_path, **FAST)
    assert list(res.history["epoch"]) == [1, 2, 3]
    assert {"val_mA", "val_F1", "train_loss", "lr_prompt", "lr_fusion"} <= set(res.history.columns)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    assert res.best_epoch == int(res.history["val_mA"].idxmax()) + 1
    assert set(res.test_metrics) == {"selected", "last"}
    for name in ("best.pt", "last.pt", "history.csv", "history.json", "summary.json"):
        assert (tmp_path / name).exists(), name
    ck = ckpt_io.load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 3 and ck["step"] == 0 and ck["attributes"] == ATTRS
    assert set(ck["model"]) == set(res.model.trainable_state_dict())
    assert "frozen.weight" not in ck["model"]  # only what is trained (+ BN statistics)
    assert "bn.running_mean" in ck["model"]
    assert set(ck["optimizers"]) == {"prompt", "fusion"}
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist) == 3 and hist[0]["epoch"] == 1
    # 40 training images at batch 8: 5 steps/epoch; the BN-safe rule keeps a last batch of >= 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["selection_note"] == "selected on val"


def test_select_on_test_is_labelled_and_trains_on_trainval(tiny_ds, tmp_path, capsys):
    res = train(tiny_model(), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 2, "verbose": True})
    assert "test_mA" not in res.history.columns
    res = train(tiny_model(), tiny_ds, out_dir=tmp_path / "t", select_on="test",
                **{**FAST, "epochs": 2, "verbose": True})
    out = capsys.readouterr().out
    assert "TEST" in out and "optimistic" in out
    assert "test_mA" in res.history.columns
    assert res.official_running_max["mA"] == pytest.approx(res.history["test_mA"].max())
    ck = ckpt_io.load_checkpoint(tmp_path / "t" / "last.pt")
    assert ck["run"]["train_split"] == "trainval"


def test_resume_refuses_other_settings(tiny_ds, tmp_path):
    train(tiny_model(), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 1})
    with pytest.raises(SettingsMismatch, match="batch_size: 8 in the checkpoint, 4 here"):
        train(tiny_model(), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 1, "batch_size": 4})
    with pytest.raises(SettingsMismatch, match="width"):
        train(tiny_model(width=4), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 1})
    # resume=False starts over in the same folder
    res = train(tiny_model(), tiny_ds, out_dir=tmp_path, resume=False, **{**FAST, "epochs": 1, "batch_size": 4})
    assert res.epochs_done == 1


def test_checkpoint_of_other_configuration_names_the_setting(tiny_ds, tmp_path):
    train(tiny_model(), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 1})
    other = tiny_model(width=4)
    with pytest.raises(ckpt_io.CheckpointError, match=r"config\.width: 8 in the checkpoint, 4 here"):
        ckpt_io.load_into(other, tmp_path / "best.pt")
    renamed = TinyPAR(["red_top", "blue_legs", "dark"], ["a", "b", "c"])
    with pytest.raises(ckpt_io.CheckpointError, match=r"attributes\[2\]: 'bright'"):
        ckpt_io.load_into(renamed, tmp_path / "best.pt")


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tiny_ds, tmp_path):
    model = tiny_model(nan_at_call=8)  # 5 steps per epoch: call 8 is epoch 2, step 3
    with pytest.raises(TrainingDiverged, match="epoch 2, step 3"):
        train(model, tiny_ds, out_dir=tmp_path, checkpoint_every=1, **FAST)
    ck = ckpt_io.load_checkpoint(tmp_path / "last.pt")
    assert (ck["epoch"], ck["step"]) == (1, 2)  # the state after the last good step
    for v in ck["model"].values():
        assert torch.isfinite(v.float()).all()


def test_atomic_save_keeps_previous_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "x": torch.ones(2)}, path)

    def broken_save(obj, fh, *a, **k):
        fh.write(b"partial")
        raise KeyboardInterrupt  # e.g. killed while writing

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(ckpt_io.load_checkpoint(path)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_official_checkpoint_pickle_gets_a_pointer(tmp_path):
    p = tmp_path / "official.pth"
    torch.save({"model_state_dict": {}, "epoch": 3}, p)
    with pytest.raises(ckpt_io.CheckpointError, match="load_official_checkpoint"):
        ckpt_io.load_checkpoint(p)


_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_engine import QUICK, make_tiny_dataset, tiny_model
    from parkit.train import train
    ds = make_tiny_dataset({data!r}, write=False)
    train(tiny_model(drop=0.3), ds, out_dir={out!r}, epochs=3, batch_size=8,
          device="cpu", progress=False, verbose=False, recipe=QUICK, seed=3,
          checkpoint_every=1, checkpoint_minutes=None)
""")


def _run_driver(tmp_path, name, sleep):
    script = tmp_path / f"{name}.py"
    script.write_text(_DRIVER.format(tests=str(TESTS), data=str(tmp_path / "data"),
                                     out=str(tmp_path / name)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TINY_SLEEP": str(sleep)}
    return subprocess.Popen([sys.executable, str(script)], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_result(tmp_path):
    """A run killed with SIGKILL inside epoch 2 and restarted ends bit-identical to a clean run."""
    make_tiny_dataset(tmp_path / "data")
    ref = _run_driver(tmp_path, "ref", 0.0)
    victim = _run_driver(tmp_path, "victim", 0.05)
    last = tmp_path / "victim" / "last.pt"
    # generous: on a loaded 2-core machine importing torch and setting up takes a minute before
    # the first step (the victim is killed as soon as it is inside epoch 2, not at the deadline)
    deadline, killed_at = time.monotonic() + 300, None
    while time.monotonic() < deadline and victim.poll() is None:
        if last.exists():
            try:
                ck = torch.load(last, weights_only=True)
            except Exception:
                ck = None
            if ck and ck["epoch"] == 1 and ck["step"] >= 2:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                killed_at = (ck["epoch"], ck["step"])
                break
        time.sleep(0.01)
    assert killed_at is not None, victim.communicate()[1].decode()[-2000:]
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "victim" / "summary.json").exists()  # it really did not finish
    resumed = _run_driver(tmp_path, "victim", 0.0)
    for proc in (ref, resumed):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert set(a["model"]) == set(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizers"]["fusion"]["state"]:
        assert torch.equal(a["optimizers"]["fusion"]["state"][k]["exp_avg"],
                           b["optimizers"]["fusion"]["state"][k]["exp_avg"])
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    sa = json.loads((tmp_path / "ref" / "summary.json").read_text())
    sb = json.loads((tmp_path / "victim" / "summary.json").read_text())
    assert sa["test_metrics"] == sb["test_metrics"] and sa["best_epoch"] == sb["best_epoch"]


def test_evaluate_matches_metrics_of_manual_predictions(tiny_ds, tmp_path):
    from parkit.data import PARTorchDataset
    from parkit.data.transforms import build_transform

    model = tiny_model().eval()
    res = evaluate(model, tiny_ds, split="test", device="cpu", progress=False)
    ds = PARTorchDataset(tiny_ds, "test", build_transform(False, 16, "official"))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        probs = torch.sigmoid(model(x).logits).numpy()
    expected = pedestrian_metrics(tiny_ds.labels[tiny_ds.splits["test"]], probs, ignore="auto")
    assert res.metrics["mA"] == pytest.approx(expected["mA"])
    assert res.metrics["F1"] == pytest.approx(expected["F1"])
    np.testing.assert_allclose(res.probs, probs, rtol=1e-5, atol=1e-6)
    assert list(res.table.index) == ATTRS
    assert res.summary()["mA"] == pytest.approx(100 * expected["mA"])


def test_evaluate_from_checkpoint_path_needs_a_preset(tiny_ds, tmp_path):
    train(tiny_model(), tiny_ds, out_dir=tmp_path, **{**FAST, "epochs": 1})
    with pytest.raises(ckpt_io.CheckpointError, match="hand-built model"):
        evaluate(tmp_path / "best.pt", tiny_ds, progress=False)


def test_predict_skips_unreadable_images_and_uses_test_transform(tiny_ds, tmp_path):
    from parkit.data.transforms import build_transform

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.open(tiny_ds.image_paths[i]).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    model = tiny_model().eval()
    with pytest.warns(RuntimeWarning, match="broken.jpg"):
        df = predict(model, [folder], device="cpu")
    assert list(df["image"]) == [str(folder / f"p{i}.png") for i in range(3)]
    assert df.attrs["skipped"][0]["image"].endswith("broken.jpg")
    x = build_transform(False, 16, "official")(Image.open(folder / "p1.png"))
    with torch.no_grad():
        p = torch.sigmoid(model(x[None]).logits)[0].numpy()
    np.testing.assert_allclose(df.loc[1, ATTRS].to_numpy(dtype=float), p, rtol=1e-5)
    expected = ";".join(a for a, v in zip(ATTRS, p) if v > 0.45)
    assert df.loc[1, "positive"] == expected


def _three_images(tiny_ds, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.open(tiny_ds.image_paths[i]).save(folder / f"p{i}.png")
    return folder


def test_predict_compiled_matches_eager_with_one_padded_shape(tiny_ds, tmp_path, monkeypatch):
    from parkit.train import inference

    folder = _three_images(tiny_ds, tmp_path)
    model = tiny_model().eval()
    eager = predict(model, [folder], device="cpu", batch_size=2)
    shapes, builds = [], []
    real = inference.compile_for_inference

    def spy(net, example):
        builds.append(tuple(example.shape))
        compiled = real(net, example)

        def recorded(x):
            shapes.append(tuple(x.shape))
            return compiled(x)
        return recorded

    monkeypatch.setattr(inference, "compile_for_inference", spy)
    fast = predict(model, [folder], device="cpu", batch_size=2, compile=True)
    assert builds == [(2, 3, 16, 16)]           # compiled once
    assert shapes == [(2, 3, 16, 16)] * 2       # the last batch of one image was padded to two
    assert list(fast["image"]) == list(eager["image"])
    np.testing.assert_allclose(fast[ATTRS].to_numpy(float), eager[ATTRS].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert list(fast["positive"]) == list(eager["positive"])


def test_predict_goes_on_eagerly_when_compile_fails(tiny_ds, tmp_path, monkeypatch):
    folder = _three_images(tiny_ds, tmp_path)
    model = tiny_model().eval()
    eager = predict(model, [folder], device="cpu", batch_size=2)

    def broken(*args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile could not build TinyPAR.*C\\+\\+ compiler"):
        df = predict(model, [folder], device="cpu", batch_size=2, compile=True)
    np.testing.assert_allclose(df[ATTRS].to_numpy(float), eager[ATTRS].to_numpy(float), rtol=1e-6)
