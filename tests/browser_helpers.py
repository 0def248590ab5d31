"""Helpers shared by test_explain, test_widgets and test_browser.

- Stand-in models that honour the model contract (`forward(images) -> PAROutput-like` with
  `logits`, `aux_logits`, `extras`; `.attributes`, `.image_size`, `.normalization`) and the explain
  hook (`return_attention=True` fills `extras` with "mm_attention", "token_layout", "patch_grid",
  "mm_input"). They let the explain and widget tests run in milliseconds and make the right answer
  known in advance (`OracleModel`: where each attribute looks and which colour it reacts to).
- `make_tiny_dataset`: a PARDataset with a few small PNG images on disk.
- JupyterLab / Chromium helpers for the browser test.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

CHROMIUM = os.environ.get("PARKIT_CHROMIUM", "/usr/bin/chromium")


@dataclass
class StandInOutput:
    """Mirror of parkit's PAROutput: logits (B, A), aux_logits, extras."""

    logits: torch.Tensor
    aux_logits: object = None
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StandInConfig:
    patch_size: int = 8


class StandInModel(nn.Module):
    """A miniature PromptPAR fusion: patch tokens + one class token + A text tokens -> one attention block.

    Fused sequence layout (deliberately not text-first-then-patches-only, so that index handling
    matters): [text 0..A-1, class token, patches row-major].
    """

    def __init__(self, attributes, image_size=(32, 16), patch=8, dim=12, heads=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.attributes = list(attributes)
        self.image_size = tuple(image_size)
        self.normalization = "official"
        self.config = StandInConfig(patch_size=patch)
        a = len(self.attributes)
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.text = nn.Parameter(torch.randn(a, dim, generator=g))
        self.cls = nn.Parameter(torch.randn(1, dim, generator=g))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head_w = nn.Parameter(torch.randn(a, dim, generator=g))
        self.head_b = nn.Parameter(torch.zeros(a))

    def forward(self, images, return_attention=False):
        b = images.shape[0]
        x = self.patch(images)  # (B, D, rows, cols)
        rows, cols = x.shape[-2:]
        patches = x.flatten(2).transpose(1, 2)  # (B, N, D)
        a = len(self.attributes)
        seq = torch.cat([self.text.expand(b, -1, -1), self.cls.expand(b, -1, -1), patches], dim=1)  # (B, L, D)
        y, attn = self.attn(seq, seq, seq, need_weights=True, average_attn_weights=False)  # attn (B, h, L, L)
        y = seq + y
        logits = (y[:, :a] * self.head_w).sum(-1) + self.head_b  # (B, A)
        extras = {}
        if return_attention:
            n = rows * cols
            extras = {"mm_attention": attn, "patch_grid": (rows, cols), "mm_input": seq,
                      "token_layout": {"text": range(0, a), "class": [a], "patches": range(a + 1, a + 1 + n)}}
        return StandInOutput(logits, None, extras)


class OracleModel(nn.Module):
    """A model whose explanations are known in advance.

    Attribute i looks at patch `targets[i]` and reacts to colour channel `channels[i]` there.

    - mm_attention: every head sends all of text token i's attention to patch targets[i].
    - logits: logit_i = scale * (mean of channel channels[i] over patch targets[i]) + bias, so
      Grad-CAM for attribute i must light up where that channel is bright.
    Fused layout: [class token, text 0..A-1, patches].
    """

    def __init__(self, attributes, targets, channels=None, image_size=(32, 16), patch=8, heads=2):
        super().__init__()
        self.attributes = list(attributes)
        self.targets = list(targets)
        self.channels = list(channels) if channels is not None else [0] * len(self.attributes)
        self.image_size = tuple(image_size)
        self.normalization = "official"
        self.config = StandInConfig(patch_size=patch)
        self.patch = patch
        self.heads = heads
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def forward(self, images, return_attention=False):
        b = images.shape[0]
        a = len(self.attributes)
        tokens = nn.functional.avg_pool2d(images, self.patch)  # (B, 3, rows, cols)
        rows, cols = tokens.shape[-2:]
        n = rows * cols
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, 3): mean colour of each patch
        seq = torch.cat([torch.zeros(b, 1 + a, 3), tokens], dim=1)  # (B, 1 + A + N, 3)
        logits = torch.stack([seq[:, 1 + a + t, c] for t, c in zip(self.targets, self.channels)], dim=1)
        logits = self.scale * logits + self.bias  # (B, A)
        extras = {}
        if return_attention:
            length = 1 + a + n
            attn = torch.zeros(b, self.heads, length, length)
            attn[:, :, :, 0] = 1.0  # everything else attends to the class token
            for i, t in enumerate(self.targets):
                attn[:, :, 1 + i, :] = 0.0
                attn[:, :, 1 + i, 1 + a + t] = 1.0
            extras = {"mm_attention": attn, "patch_grid": (rows, cols), "mm_input": seq,
                      "token_layout": {"class": (0, 1), "text": (1, 1 + a), "patches": (1 + a, length)}}
        return StandInOutput(logits, None, extras)


class NoHookModel(nn.Module):
    """Honours the plain model contract only: no `return_attention` argument."""

    def __init__(self, attributes):
        super().__init__()
        self.attributes = list(attributes)
        self.lin = nn.Linear(3, len(self.attributes))

    def forward(self, images):
        return StandInOutput(self.lin(images.mean(dim=(2, 3))), None, {})


def make_tiny_dataset(root: Path, n: int = 8, attributes=("Female", "Hat", "Backpack"), seed: int = 0,
                      size=(48, 24)):
    """A PARDataset with `n` small random PNG images; labels seeded; splits train/val/test/trainval."""
    from PIL import Image

    from parkit.data.base import PARDataset

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
        p = root / f"img_{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    labels = rng.integers(0, 2, size=(n, len(attributes))).astype(np.uint8)
    labels[0, -1] = 2  # one unknown label, as RAP has
    idx = np.arange(n)
    regions = ["whole", "head", "carried", "upper", "lower", "feet"]
    return PARDataset(
        name="Tiny", attributes=list(attributes), sentences=[f"a person, {a}" for a in attributes],
        regions=[regions[i % len(regions)] for i in range(len(attributes))], labels=labels, image_paths=paths,
        splits={"train": idx[: n // 2], "val": idx[n // 2: n // 2], "test": idx[n // 2:],
                "trainval": idx[: n // 2]},
        root=root, split_source="tiny test split")


# ---------------------------------------------------------------------------------------------
# Browser helpers
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_missing_reason():
    """Why the browser test cannot run here, or None when Chromium and Playwright are both present."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return (f"Chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends chromium "
                f"chromium-driver (or set PARKIT_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed: pip install playwright==1.65.2 (never `playwright install`)"
    return None


@contextlib.contextmanager
def jupyterlab_server(root_dir: Path, env_extra: dict = None, timeout: float = 60.0):
    """Start `jupyter lab` on 127.0.0.1 (free port, no token) serving `root_dir`; yield (base URL, private dir).

    The server gets private runtime, config, workspace and user-settings folders in a temporary
    directory (removed afterwards), so it touches no global Jupyter state; the user settings turn
    off the news and update notification, whose pop-up could cover the notebook. Kernels inherit
    this process's environment plus `env_extra`.
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="parkit-lab-"))
    # Private Jupyter dirs: runtime files, config and workspace do not touch the user's.
    env = dict(os.environ)
    env.update({
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "JUPYTER_CONFIG_DIR": str(workdir / "config"),
        "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(workdir / "settings"),
        "PYTHONUNBUFFERED": "1",
    })
    # Silence the news / update notification so no pop-up covers the notebook.
    settings = workdir / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(env_extra or {})
    log = open(workdir / "lab.log", "wb")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root_dir}",
           "--LabApp.news_url=", "--ServerApp.port_retries=0"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root_dir))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{(workdir / 'lab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"jupyter lab did not answer on {base} within {timeout:.0f} s:\n"
                                   f"{(workdir / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, workdir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# What the browser test compares the page with
# ---------------------------------------------------------------------------------------------

def png_pixels(png: bytes) -> np.ndarray:
    """(H, W, 3) float array of a PNG (e.g. a Playwright element screenshot)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def outcome_counts(gt, probs, ignore, threshold: float) -> dict:
    """TP / FP / FN / TN of one image at `threshold`, written out independently of the widget:
    an attribute is predicted positive when p > threshold; unknown labels count nowhere."""
    gt, probs, ignore = np.asarray(gt), np.asarray(probs, dtype=np.float64), np.asarray(ignore, dtype=bool)
    pred, known = probs > threshold, ~ignore
    return {"TP": int((pred & (gt == 1) & known).sum()), "FP": int((pred & (gt == 0) & known).sum()),
            "FN": int((~pred & (gt == 1) & known).sum()), "TN": int((~pred & (gt == 0) & known).sum())}


def smoke_model_probabilities(n_images: int = 2):
    """The smoke profile's PromptPAR (the cached run the explorer notebook loads) applied to the
    first `n_images` test images: (probs (n, A), gt (n, A), ignore (n, A))."""
    from parkit.experiments import run_experiment
    from parkit.explain import model_inputs
    from parkit.profiles import get_profile, profile_dataset

    profile = get_profile("smoke")
    dataset = profile_dataset(profile)
    model = run_experiment("promptpar", profile, dataset, epochs=profile.epochs).load_model(device="cpu").eval()
    rows = dataset.split_indices("test")[:n_images]
    with torch.no_grad():
        probs = torch.sigmoid(model(model_inputs(model, dataset, rows)).logits.float()).numpy()
    return probs, dataset.binary_labels[rows], dataset.ignore_mask[rows]


def threshold_that_changes_counts(gt, probs, ignore, start: float = 0.45) -> float:
    """A threshold (a multiple of 0.01) at which the image's counts differ from those at `start`,
    nearest to `start` first, so the slider moves a few keyboard steps."""
    before = outcome_counts(gt, probs, ignore, start)
    for k in range(1, 46):
        for t in (round(start - 0.01 * k, 2), round(start + 0.01 * k, 2)):
            clear = np.abs(np.asarray(probs) - t).min() > 1e-3  # no probability on the edge of float noise
            if 0.0 < t < 1.0 and clear and outcome_counts(gt, probs, ignore, t) != before:
                return t
    raise AssertionError("no threshold changes this image's counts: every probability is 0 or 1")
