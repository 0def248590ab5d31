"""Run profiles shared by every notebook: "smoke" (CI), "demo" (laptop default), "paper" (GPU + real data).

A notebook's `parameters` cell sets `PROFILE`; `get_profile(PROFILE)` returns the sizes and budgets
that notebook should use, and `require_profile(...)` stops a profile that cannot run on this
machine with a message saying why, instead of failing halfway.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from parkit.data import ensure_synthpar, load_dataset

PROFILES = ("smoke", "demo", "paper")


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets for one profile.

    Attributes:
        name: "smoke", "demo" or "paper".
        dataset: dataset every notebook trains on by default.
        synthpar_images: SynthPAR size (ignored for real datasets).
        preset: the PromptPAR preset; baselines use the matching family.
        epochs: training epochs for a main run.
        ablation_epochs: epochs for each ablation run.
        batch_size: training batch size.
        max_minutes: wall-clock cap of one training run (None: no cap).
        eval_limit: at most this many evaluation images (None: the whole split).
        prompt_lengths: visual prompt lengths of the prompt-length ablation.
        device: "cpu", "cuda" or None for automatic.
        parallel_runs: runs trained at once on a CPU with that many cores (`experiments.run_all`).
        train_settings: further `TrainConfig` settings of every run (e.g. a dry run's `train_limit`).
        model_overrides: config overrides of every model (e.g. the backbone weight file).
    """

    name: str
    dataset: str
    synthpar_images: int
    preset: str
    epochs: int
    ablation_epochs: int
    batch_size: int
    max_minutes: float | None
    eval_limit: int | None
    prompt_lengths: tuple = (0, 5, 10, 20)
    prompt_depths: tuple = (1, 2, 4)
    seeds: tuple = (0,)
    device: str | None = None
    parallel_runs: int = 1
    train_settings: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def is_paper(self) -> bool:
        return self.name == "paper"


_PROFILES = {
    "smoke": Profile("smoke", "SynthPAR", 240, "promptpar-micro", epochs=1, ablation_epochs=1,
                     batch_size=16, max_minutes=1.0, eval_limit=64,
                     prompt_lengths=(0, 5), prompt_depths=(1, 4)),
    # Three seeds of every comparison in 04-06 (about 60 training runs): the whole notebook
    # sequence measured 40 min 15 s on 2 CPU cores (2,409 s of notebooks).
    "demo": Profile("demo", "SynthPAR", 1500, "promptpar-micro", epochs=6, ablation_epochs=3,
                    batch_size=32, max_minutes=3.0, eval_limit=None,
                    prompt_lengths=(0, 10, 20, 40), prompt_depths=(1, 4), seeds=(0, 1, 2),
                    parallel_runs=2),
    "paper": Profile("paper", "PETA", 0, "promptpar-vitl14", epochs=100, ablation_epochs=100,
                     batch_size=16, max_minutes=None, eval_limit=None,
                     prompt_lengths=(0, 25, 50, 75, 100), prompt_depths=(6, 12, 18, 24), device="cuda"),
}


class ProfileUnavailable(RuntimeError):
    """The requested profile cannot run here; the message says what is missing.

    IPython shows it as a short message rather than a traceback (see `_render_traceback_`).
    """

    def _render_traceback_(self):  # IPython hook: print the reason only
        return [f"Profile unavailable: {self}"]


def get_profile(name: str | None = None) -> Profile:
    """The profile named `name`, or the one in $PARKIT_PROFILE, or "demo"."""
    name = (name or os.environ.get("PARKIT_PROFILE") or "demo").lower()
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    return _PROFILES[name]


def data_root() -> Path | None:
    """Root folder of the real datasets ($PARKIT_DATA_ROOT), or None when unset."""
    root = os.environ.get("PARKIT_DATA_ROOT")
    return Path(root).expanduser() if root else None


def require_profile(profile: Profile) -> Profile:
    """Stop early, with the reason, when `profile` cannot run on this machine.

    The paper profile needs a CUDA GPU, real datasets under $PARKIT_DATA_ROOT and OpenAI's ViT-L/14
    weights; smoke and demo need nothing beyond the package.
    """
    if not profile.is_paper:
        return profile
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible to torch)")
    if data_root() is None or not data_root().is_dir():
        missing.append("the real datasets: set PARKIT_DATA_ROOT to the folder holding PETA/, PA100k/, RAP/ ...")
    if missing:
        raise ProfileUnavailable("the 'paper' profile needs " + " and ".join(missing)
                                 + ". Use PROFILE = 'demo' on this machine.")
    return profile


def repo_root() -> Path:
    """The parkit checkout (the folder holding pyproject.toml), or the current directory."""
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "pyproject.toml").is_file() and (d / "parkit").is_dir():
            return d
    return Path.cwd()


def output_dirs(profile: "Profile | str | None" = None) -> tuple[Path, Path]:
    """(figures, results) folders for a profile, created if needed.

    Demo and paper runs write to the repository's `figures/` and `results/`; smoke runs (CI) write
    under `.cache/smoke/` so a test run never overwrites the committed demo outputs.
    $PARKIT_OUTPUT_ROOT overrides the root.
    """
    name = profile if isinstance(profile, str) else (profile.name if profile else get_profile().name)
    root = Path(os.environ["PARKIT_OUTPUT_ROOT"]) if os.environ.get("PARKIT_OUTPUT_ROOT") else repo_root()
    if name == "smoke" and not os.environ.get("PARKIT_OUTPUT_ROOT"):
        root = root / ".cache" / "smoke"
    figs, res = root / "figures", root / "results"
    figs.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    return figs, res


def profile_dataset(profile: Profile, split_protocol: str = "random"):
    """The dataset every notebook of `profile` trains on.

    Paper profile: the real dataset under $PARKIT_DATA_ROOT/<name>. Smoke and demo: SynthPAR of
    the profile's size (generated once into the cache), with its random or identity-disjoint split.
    """
    if profile.is_paper:
        return load_dataset(profile.dataset, data_root() / profile.dataset)
    root = ensure_synthpar(n_images=profile.synthpar_images, seed=0)
    return load_dataset("SynthPAR", root, split_protocol=split_protocol)


def setup(name: str | None = None):
    """The opening of every notebook: (profile, figures folder, results folder).

    Stops with the reason when the profile cannot run here (see `require_profile`).
    """
    profile = require_profile(get_profile(name))
    figs, results = output_dirs(profile)
    return profile, figs, results
