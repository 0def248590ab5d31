"""Run profiles shared by every notebook: "smoke" (CI), "demo" (laptop default), "paper" (GPU + real
data) and "paper-check" (the paper profile's code path with CPU-sized budgets and seeded weights).

A notebook's `parameters` cell sets `PROFILE`; `get_profile(PROFILE)` returns the sizes and budgets
that notebook should use, and `require_profile(...)` stops a profile that cannot run on this
machine with a message saying why, instead of failing halfway. `profile_datasets(profile, role)`
gives the datasets of each table (Tables I-III and more, the ablations, the zero-shot splits),
with one line of reason for each one that is absent or incomplete.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Optional

import torch

from parkit.backbone.checkfiles import CLIP_ENV, VIT_ENV, describe_check_weights
from parkit.backbone.loading import BackboneUnavailable, fetch_openai_clip, openai_file_info
from parkit.data import ensure_synthpar, load_dataset
from parkit.data.base import DatasetError, PARDataset
from parkit.data.discovery import DATASET_FOLDERS, error_summary, find_dataset_roots
from parkit.model.fusion import VIT_B16_FILENAME, VIT_B16_URL, default_mm_weights_path

PROFILES = ("smoke", "demo", "paper", "paper-check")
PAPER_PROFILES = ("paper", "paper-check")
ABLATION_DATASET_ENV = "PARKIT_ABLATION_DATASET"


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
        table_datasets: datasets of notebook 04's comparison (Tables I-III, then RAPv2 and WIDER).
        ablation_dataset: dataset of the ablations (05, 06); $PARKIT_ABLATION_DATASET overrides.
        zero_shot_datasets: the zero-shot protocols of notebook 08.
        text_prompt_lengths: text prompt tokens per layer of notebook 06's text sweep.
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
    table_datasets: tuple = ()
    ablation_dataset: Optional[str] = None
    zero_shot_datasets: tuple = ()
    text_prompt_lengths: tuple = (1, 3)
    extra: dict = field(default_factory=dict)

    @property
    def is_paper(self) -> bool:
        """The paper's code path: real datasets, OpenAI CLIP and the paper presets ("paper" and
        its dry run "paper-check")."""
        return self.name in PAPER_PROFILES

    @property
    def is_check(self) -> bool:
        """The dry run of the paper profile: seeded weight files, a few steps per run, any device."""
        return self.name == "paper-check"


_PROFILES = {
    "smoke": Profile("smoke", "SynthPAR", 240, "promptpar-micro", epochs=1, ablation_epochs=1,
                     batch_size=16, max_minutes=1.0, eval_limit=64,
                     prompt_lengths=(0, 5), prompt_depths=(1, 4)),
    # Three seeds of every comparison in 04-06 (about 60 training runs, two at a time on two cores:
    # experiments.run_all). `make reproduce` on a fresh clone measured 36 min 23 s on 2 CPU cores,
    # environment set-up and SynthPAR generation included (2,090 s of notebooks).
    "demo": Profile("demo", "SynthPAR", 1500, "promptpar-micro", epochs=6, ablation_epochs=3,
                    batch_size=32, max_minutes=3.0, eval_limit=None,
                    prompt_lengths=(0, 10, 20, 40), prompt_depths=(1, 4), seeds=(0, 1, 2),
                    parallel_runs=2),
    "paper": Profile("paper", "PETA", 0, "promptpar-vitl14", epochs=100, ablation_epochs=100,
                     batch_size=16, max_minutes=None, eval_limit=None,
                     prompt_lengths=(0, 25, 50, 75, 100), prompt_depths=(6, 12, 18, 24), device="cuda",
                     table_datasets=("PA100K", "PETA", "RAPv1", "RAPv2", "WIDER"), ablation_dataset="RAPv1",
                     zero_shot_datasets=("PETA-ZS", "RAP-ZS"), text_prompt_lengths=(1, 3, 6)),
    # The paper profile's code path on a CPU: every run trains one epoch on 8 images and is
    # evaluated on 8, with weight files of the real formats and seeded values (the stand-in CLIP
    # has ViT-L/14's widths and 2 blocks per tower, parkit.backbone.checkfiles). Its numbers mean
    # nothing; that every notebook runs end to end on the real datasets is what it checks.
    "paper-check": Profile("paper-check", "PETA", 0, "promptpar-vitl14", epochs=1, ablation_epochs=1,
                           batch_size=4, max_minutes=None, eval_limit=8, train_settings={"train_limit": 8},
                           prompt_lengths=(0, 50), prompt_depths=(1, 2),
                           table_datasets=("PA100K", "PETA", "RAPv1", "RAPv2", "WIDER"),
                           ablation_dataset="RAPv1", zero_shot_datasets=("PETA-ZS", "RAP-ZS"),
                           text_prompt_lengths=(3,)),
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
    profile = _PROFILES[name]
    if profile.ablation_dataset and os.environ.get(ABLATION_DATASET_ENV):
        profile = replace(profile, ablation_dataset=os.environ[ABLATION_DATASET_ENV])
    if profile.is_check and os.environ.get(CLIP_ENV):
        # the stand-in CLIP is declared by path; the MM-former file by $PARKIT_VIT_B16, as in "paper"
        profile = replace(profile, model_overrides={"backbone": str(Path(os.environ[CLIP_ENV]).expanduser())})
    return profile


def data_root() -> Path | None:
    """Root folder of the real datasets ($PARKIT_DATA_ROOT), or None when unset."""
    root = os.environ.get("PARKIT_DATA_ROOT")
    return Path(root).expanduser() if root else None


def require_profile(profile: Profile) -> Profile:
    """Stop early, with the reason, when `profile` cannot run on this machine.

    The paper profile needs a CUDA GPU, real datasets under $PARKIT_DATA_ROOT, OpenAI's ViT-L/14
    file and timm's ViT-B/16 file (the MM-former); all are checked before anything runs, so a
    missing piece never shows up hours into a run. The paper-check profile needs the datasets and
    its two declared weight files, and runs on any device. Smoke and demo need nothing beyond the
    package.
    """
    if not profile.is_paper:
        return profile
    missing = []
    if not profile.is_check and not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible to torch)")
    if data_root() is None or not data_root().is_dir():
        missing.append("the real datasets: set PARKIT_DATA_ROOT to the folder holding PETA/, PA100k/, RAP/ ...")
    missing += missing_weight_files(profile)
    if missing:
        other = "PROFILE = 'paper-check' (a dry run) or 'demo'" if not profile.is_check else "PROFILE = 'demo'"
        raise ProfileUnavailable(f"the {profile.name!r} profile needs:\n- " + "\n- ".join(missing)
                                 + f"\nUse {other} on this machine.")
    return profile


def missing_weight_files(profile: Profile) -> List[str]:
    """What is missing of the two weight files `profile` reads (empty when both are there).

    Paper: OpenAI's ViT-L/14 (`ViT-L-14.pt`, in the CLIP cache, downloaded when online) and timm's
    `jx_vit_base_p16_224-80ecf9dd.pth` (the MM-former). Paper-check: the files declared by
    $PARKIT_CLIP_WEIGHTS and $PARKIT_VIT_B16.
    """
    if profile.is_check:
        problems = []
        for env, what in ((CLIP_ENV, "an OpenAI-layout CLIP file"), (VIT_ENV, "a timm ViT-B/16 file")):
            path = os.environ.get(env)
            if not path or not Path(path).expanduser().is_file():
                problems.append(f"${env}: {what} ({'not set' if not path else path + ' does not exist'})")
        if problems:
            problems.append("`python -m parkit check-weights DIR` writes seeded stand-ins for both and prints "
                            "the two lines to export")
        return problems
    problems = []
    try:
        fetch_openai_clip("ViT-L/14")  # checks the cached file's SHA-256; downloads only when online
    except BackboneUnavailable as exc:
        problems.append(f"OpenAI's CLIP ViT-L/14 file {openai_file_info('ViT-L/14')[0]}: {exc}")
    vit = default_mm_weights_path()
    if not vit.is_file():
        problems.append(f"timm's ImageNet ViT-B/16 file {VIT_B16_FILENAME} (the MM-former's weights) at {vit}: "
                        f"download {VIT_B16_URL} on a machine with internet access and put it there, or set "
                        f"{VIT_ENV}=/path/to/{VIT_B16_FILENAME}")
    return problems


def repo_root() -> Path:
    """The parkit checkout (the folder holding pyproject.toml), or the current directory."""
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "pyproject.toml").is_file() and (d / "parkit").is_dir():
            return d
    return Path.cwd()


def output_dirs(profile: "Profile | str | None" = None) -> tuple[Path, Path]:
    """(figures, results) folders for a profile, created if needed.

    Demo and paper runs write to the repository's `figures/` and `results/`; smoke and paper-check
    runs (CI) write under `.cache/<profile>/` so a test run never overwrites the committed demo
    outputs. $PARKIT_OUTPUT_ROOT overrides the root.
    """
    name = profile if isinstance(profile, str) else (profile.name if profile else get_profile().name)
    root = Path(os.environ["PARKIT_OUTPUT_ROOT"]) if os.environ.get("PARKIT_OUTPUT_ROOT") else repo_root()
    if name in ("smoke", "paper-check") and not os.environ.get("PARKIT_OUTPUT_ROOT"):
        root = root / ".cache" / name
    figs, res = root / "figures", root / "results"
    figs.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    return figs, res


@dataclass
class DatasetChoice:
    """A dataset a table asks for: loaded, or the one-line reason it cannot be used here."""

    name: str
    dataset: Optional[PARDataset] = None
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.dataset is not None

    @property
    def line(self) -> str:
        """What a notebook prints about it: "using <where>" or "skipped: <why>"."""
        return ("using " if self.usable else "skipped: ") + self.reason


# Splits a dataset needs for a run: training, selection (val) and the reported test split.
NEEDED_SPLITS = ("train", "val", "test")


def load_real_dataset(profile: Profile, name: str) -> DatasetChoice:
    """Dataset `name` from $PARKIT_DATA_ROOT for a paper profile, or why it cannot be used.

    The paper profile needs every image of a dataset (a missing one is named in the reason).
    The paper-check profile uses the rows whose image is present (a complete copy loses none) and
    needs at least one image in each of the train, val and test splits.
    """
    base = data_root()
    root = find_dataset_roots(base).get(name) if name in DATASET_FOLDERS else None
    if root is None:
        folders = " or ".join(f"{base}/{f}" for f in DATASET_FOLDERS.get(name, (name,))[:2])
        return DatasetChoice(name, reason=f"{name}: not found (expected the folder {folders})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dropped rows are reported below, in one line
            ds = load_dataset(name, root, skip_missing=profile.is_check)
    except (DatasetError, OSError) as exc:
        return DatasetChoice(name, reason=f"{name}: cannot be used: {error_summary(exc)}")
    dropped, rows = ds.info.get("dropped_missing_images", 0), ds.info.get("rows_in_annotation", len(ds))
    empty = [k for k in NEEDED_SPLITS if len(ds.splits.get(k, ())) == 0]
    if empty:
        return DatasetChoice(name, reason=f"{name}: no image of the {' / '.join(empty)} split under {root} "
                                          f"({dropped:,} of {rows:,} images absent)")
    note = f" ({dropped:,} of {rows:,} images absent: using the {len(ds):,} present)" if dropped else ""
    return DatasetChoice(name, ds, reason=f"{name}: {root}{note}")


def profile_dataset(profile: Profile, split_protocol: str = "random", name: Optional[str] = None):
    """The dataset a notebook of `profile` trains on (`name`: another one of the profile's tables).

    Paper profiles: the real dataset under $PARKIT_DATA_ROOT (see `load_real_dataset`); a missing
    one stops the notebook with the reason. Smoke and demo: SynthPAR of the profile's size
    (generated once into the cache), with its random or identity-disjoint split.
    """
    if profile.is_paper:
        choice = load_real_dataset(profile, name or profile.dataset)
        if not choice.usable:
            hint = (f" Set {ABLATION_DATASET_ENV} to a dataset that is present (e.g. PETA) to run the "
                    f"ablations there." if name and name == profile.ablation_dataset else "")
            raise ProfileUnavailable(choice.reason + "." + hint)
        return choice.dataset
    root = ensure_synthpar(n_images=profile.synthpar_images, seed=0)
    return load_dataset("SynthPAR", root, split_protocol=split_protocol)


ROLES = ("table", "ablation", "zero-shot")


def profile_datasets(profile: Profile, role: str = "table", say=print) -> List[PARDataset]:
    """The datasets of one kind of table, each absent or incomplete one skipped with one line.

    Args:
        profile: the notebook's profile.
        role: "table" (notebook 04: Tables I-III, then RAPv2 and WIDER), "ablation" (05, 06) or
            "zero-shot" (08).
        say: where the one-line notes go (`print`; None: nowhere).

    Returns:
        The usable datasets, in the profile's order. Smoke and demo: SynthPAR (its
        identity-disjoint split for "zero-shot").
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not profile.is_paper:
        return [profile_dataset(profile, split_protocol="identity" if role == "zero-shot" else "random")]
    names = {"table": profile.table_datasets, "ablation": (profile.ablation_dataset,),
             "zero-shot": profile.zero_shot_datasets}[role]
    usable = []
    for name in names:
        choice = load_real_dataset(profile, name)
        if say is not None:
            say(choice.line)
        if choice.usable:
            usable.append(choice.dataset)
    return usable


def setup(name: str | None = None):
    """The opening of every notebook: (profile, figures folder, results folder).

    Stops with the reason when the profile cannot run here (see `require_profile`).
    """
    profile = require_profile(get_profile(name))
    figs, results = output_dirs(profile)
    if profile.is_check:
        print(f"profile 'paper-check': a dry run of the paper profile; its numbers mean nothing.\n"
              + describe_check_weights(os.environ[CLIP_ENV], os.environ[VIT_ENV]))
    return profile, figs, results
