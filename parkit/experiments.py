"""Named, cached experiment runs for the notebooks.

A notebook asks for a run by name ("promptpar", "vis_prompt=20", ...) with a preset and config
overrides; `run_experiment` trains it with the profile's budget under `runs/<profile>/<name>-<hash>/`
and returns one table row. A finished run is read back instead of retrained, and an interrupted one
resumes from its last checkpoint, so re-running a notebook (or `make reproduce`) after a crash loses
nothing and notebooks 04-10 can reuse the model notebook 03 trained.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from parkit.attributes import get_schema
from parkit.backbone import sha256_file
from parkit.backbone.micro import MICRO_CHECKPOINT
from parkit.data.torchdata import make_loader
from parkit.data.transforms import build_transform
from parkit.devices import default_device
from parkit.model import count_parameters, create_model
from parkit.model.baselines import ZeroShotCLIP
from parkit.model.config import preset_config
from parkit.profiles import Profile, repo_root
from parkit.progress import tqdm
from parkit.train import TrainConfig, evaluate, train
from parkit.train.evaluation import limit_indices
from parkit.train.checkpoint import load_model

HEADLINE = ("mA", "Acc", "Prec", "Rec", "F1")


def runs_dir(profile: Profile) -> Path:
    """Where runs of `profile` live: `$PARKIT_RUNS_DIR/<profile>` when set, else `runs/<profile>`
    (smoke and paper-check runs under .cache, so they never mix with demo or paper runs)."""
    if os.environ.get("PARKIT_RUNS_DIR"):
        return Path(os.environ["PARKIT_RUNS_DIR"]).expanduser() / profile.name
    base = repo_root() / (".cache/runs" if profile.name in ("smoke", "paper-check") else "runs")
    return base / profile.name


def _key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _backbone_fingerprint(config: dict) -> str:
    """Checksum of the backbone's weight file (the compact CLIP's committed file, or a file given by
    path), so changed weights never reuse runs trained on the old ones; OpenAI backbones named by
    name are identified by it (their file's checksum is checked when it is loaded)."""
    backbone = str(config.get("backbone"))
    path = MICRO_CHECKPOINT if backbone == "micro" else Path(backbone).expanduser()
    if backbone != "micro" and not path.is_file():
        return backbone
    return _file_checksum(path)[:16] if path.exists() else "missing"


_CHECKSUMS: dict = {}


def _file_checksum(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, modification time): a paper-check CLIP file
    is 300 MB and every planned run asks for it."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKSUMS:
        _CHECKSUMS[key] = sha256_file(path)
    return _CHECKSUMS[key]


@dataclass
class Experiment:
    """A finished run: its table row, where it lives, and (lazily) its model."""

    name: str
    row: dict
    out_dir: Path
    spec: dict

    def history(self):
        """Per-epoch log of the run (`history.csv`); empty when no epoch finished (a time budget
        can end a run before its first epoch on a busy machine)."""
        import pandas as pd

        path = self.out_dir / "history.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["epoch"])

    def load_model(self, device=None):
        """The selected model of this run (best on validation)."""
        best = self.out_dir / "best.pt"
        return load_model(best if best.exists() else self.out_dir / "last.pt", device=device)


@dataclass
class RunPlan:
    """Where one run lives and what it computes, known before anything trains.

    Attributes:
        name: label of the run in tables.
        preset, overrides: the model.
        train_config: its `TrainConfig` (run + outcome settings are its key).
        spec: everything the run's result depends on (hashed into `out_dir`'s name).
        out_dir: `runs/<profile>/<preset>-<hash>/`.
        epochs: epochs it trains.
    """

    name: str
    preset: str
    overrides: dict
    train_config: TrainConfig
    spec: dict
    out_dir: Path
    epochs: int

    @property
    def cached(self) -> bool:
        """Finished before: `run_experiment` reads it back instead of training."""
        return (self.out_dir / "experiment.json").exists()

    @property
    def resumable(self) -> bool:
        """Started and interrupted: `run_experiment` continues from its last checkpoint."""
        return not self.cached and (self.out_dir / "last.pt").exists()

    def train_images(self, dataset) -> int:
        """Training images per epoch (the training split, cut to the config's `train_limit`)."""
        split = self.train_config.training_split
        if split not in dataset.splits:
            return 0
        return int(len(limit_indices(dataset.split_indices(split), self.train_config.train_limit)))


def plan_run(name: str, profile: Profile, dataset, preset: Optional[str] = None,
             overrides: Optional[dict] = None, epochs: Optional[int] = None, seed: int = 0,
             progress: bool = True, **train_kwargs) -> RunPlan:
    """The `RunPlan` of what `run_experiment` would do with these arguments (nothing runs)."""
    preset = preset or profile.preset
    overrides = dict(overrides or {})
    epochs = profile.epochs if epochs is None else epochs

    # What the run computes and reports is its TrainConfig's key (the same settings a resumed
    # run must match); the model and the data are keyed on the effective configuration, not the
    # name: "vis_prompt=10" and the default run of a preset whose default is 10 are the same
    # run and are trained once.
    train_config = TrainConfig(epochs=epochs, batch_size=profile.batch_size, seed=seed,
                               max_minutes=profile.max_minutes, eval_limit=profile.eval_limit,
                               device=profile.device, progress=progress, verbose=False,
                               **{**profile.train_settings, **train_kwargs})
    config = preset_config(preset).replace(**{**profile.model_overrides, **overrides}).to_dict()
    spec = {"preset": preset, "config": config, "backbone_weights": _backbone_fingerprint(config),
            "dataset": dataset.name, "split_source": dataset.split_source, "n": len(dataset),
            "train": train_config.key()}
    out = runs_dir(profile) / f"{preset}-{_key(spec)}"
    return RunPlan(name, preset, {**profile.model_overrides, **overrides}, train_config, spec, out, epochs)


def run_experiment(name: str, profile: Profile, dataset, preset: Optional[str] = None,
                   overrides: Optional[dict] = None, epochs: Optional[int] = None, seed: int = 0,
                   force: bool = False, progress: bool = True, **train_kwargs) -> Experiment:
    """Train (or read back) one named run and return its row of test metrics.

    Args:
        name: label of the run in tables.
        profile: the notebook's profile (budget, batch size, evaluation limit).
        dataset: a `PARDataset`.
        preset: model preset (default: the profile's).
        overrides: config overrides for `create_model`.
        epochs: epochs (default: the profile's `epochs`).
        seed: run seed: the model's initialisation, the data order and the augmentation.
        force: retrain even when a finished run exists.
        progress: show progress bars.
        **train_kwargs: further `TrainConfig` settings (part of the run's key when they change
            its results).

    Returns:
        An `Experiment` whose `row` holds name, preset, test mA/Acc/Prec/Rec/F1 (percent) of the
        model selected on validation, trainable/total parameters and minutes.
    """
    plan = plan_run(name, profile, dataset, preset, overrides, epochs, seed, progress, **train_kwargs)
    preset, overrides, train_config, spec, out = (plan.preset, plan.overrides, plan.train_config,
                                                  plan.spec, plan.out_dir)
    done = out / "experiment.json"
    if plan.cached and not force:
        saved = json.loads(done.read_text())
        return Experiment(name, {**saved["row"], "run": name}, out, spec)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model = build_model(preset, dataset.attributes, dataset.sentences, overrides, device=profile.device, seed=seed)
    counts = count_parameters(model)
    if counts["trainable"] == 0:
        # Nothing to train (zero-shot CLIP): calibrate its decision offsets on the training
        # split when the model can, then evaluate; there is no epoch and no checkpoint.
        test, epochs_done, best_epoch = _evaluate_frozen(model, dataset, profile), 0, None
    else:
        result = _train(model, dataset, train_config, out_dir=out)
        test = result.test_metrics.get("selected") or result.test_metrics.get("last") or {}
        epochs_done, best_epoch = result.epochs_done, result.best_epoch
    row = {"run": name, "preset": preset, **{k: test.get(k) for k in HEADLINE},
           "trainable": counts["trainable"], "total": counts["total"],
           "epochs": epochs_done, "best_epoch": best_epoch,
           "minutes": (time.perf_counter() - t0) / 60, "train_images": plan.train_images(dataset),
           "device": str(profile.device or default_device())}
    done.write_text(json.dumps({"row": row, "spec": spec, "names": [name]}, indent=2, default=str))
    return Experiment(name, row, out, spec)


def _evaluate_frozen(model, dataset, profile: Profile) -> dict:
    """Test metrics (percent) of a model with nothing to train, calibrated on the train split."""
    if isinstance(model, ZeroShotCLIP):  # the only model with something to calibrate
        tf = model.eval_transform()
        train_rows = dataset.split_indices("train")
        if profile.eval_limit:
            train_rows = train_rows[: 4 * profile.eval_limit]
        model.calibrate(make_loader(dataset, train_rows, tf, batch_size=64), method="prior")
    ev = evaluate(model, dataset, split="test", limit=profile.eval_limit, progress=False)
    return ev.summary()


def _train(model, dataset, config, **kwargs):
    """`parkit.train.train` (one seam that tests replace to see the model)."""
    return train(model, dataset, config, **kwargs)


def build_model(preset: str, attributes, sentences=None, overrides: Optional[dict] = None, *,
                device=None, pretrained: bool = True, seed: Optional[int] = None):
    """The model `run_experiment` trains for `preset` on these attributes.

    One builder for training and for counting: `parameter_counts` calls it with
    `device="meta", pretrained=False`, so a count always describes the model that is trained.

    Args:
        preset: model preset.
        attributes: attribute names (or a dataset/schema name, see `create_model`).
        sentences: their sentences (None: the schema's).
        overrides: config overrides.
        device: where the model lives ("meta" with pretrained=False: shapes only).
        pretrained: load the backbone's weights.
        seed: seeds the model's own initialisation (None: the global random state).

    Returns:
        The model, as `parkit.create_model` returns it.
    """
    return create_model(preset, attributes=list(attributes) if not isinstance(attributes, str) else attributes,
                        sentences=list(sentences) if sentences is not None else None,
                        pretrained=pretrained, device=device, seed=seed, **dict(overrides or {}))


def parameter_counts(preset: str, dataset, overrides: Optional[dict] = None, rule: str = "exact") -> dict:
    """Trainable and total parameters of the model `run_experiment` would train for `preset`.

    Built as shapes only (PyTorch's "meta" device: no weights, no memory, about a second for
    ViT-L/14), through `build_model`, the builder training uses.

    Args:
        preset: model preset.
        dataset: a schema name ("PETA": its attributes and official sentences) or a `PARDataset`
            (its attributes and sentences, as `run_experiment` uses them).
        overrides: config overrides.
        rule: "exact" (what trains) or "official" (the released code's substring rule).

    Returns:
        `count_parameters`' dict: trainable, total, percent, by_group.
    """
    import gc

    source = get_schema(dataset) if isinstance(dataset, str) else dataset
    model = build_model(preset, source.attributes, source.sentences, overrides, device="meta", pretrained=False)
    counts = count_parameters(model, rule=rule)
    del model
    gc.collect()  # ViT-L/14 shapes are cheap, but a loop over presets should not keep them all
    return counts


def list_runs(profile: Profile):
    """Every finished run of `profile` (read from `runs/`): one row per run, newest names last.

    Returns:
        A DataFrame with the rows `run_experiment` wrote (run, preset, metrics, trainable, ...)
        plus `seed` and `dir`; empty when nothing has run yet.
    """
    import pandas as pd

    rows = []
    for path in sorted(runs_dir(profile).glob("*/experiment.json")):
        saved = json.loads(path.read_text())
        spec = saved.get("spec", {})
        rows.append({**saved["row"], "seed": spec.get("seed", spec.get("train", {}).get("seed")),
                     "dir": str(path.parent)})
    return pd.DataFrame(rows)


def compare(specs, profile: Profile, dataset, seeds=None, metrics=HEADLINE, label: str = "method"):
    """Run every spec once per seed and summarise each as mean and standard deviation.

    Each run is `run_experiment(..., seed=s)`, so model selection stays on the validation split
    and finished runs are read back instead of retrained.

    Args:
        specs: (label, kwargs) pairs; kwargs go to `run_experiment` (name defaults to the label).
        profile: the notebook's profile.
        dataset: a `PARDataset`.
        seeds: seeds to run (default: `profile.seeds`).
        metrics: metric columns to summarise.
        label: name of the column holding each spec's label.

    Returns:
        A DataFrame with one row per spec: `label`, each metric's mean (column `mA`, ...) and
        standard deviation over seeds (`mA sd`; NaN with one seed), `seeds` (how many), and
        `trainable` / `total` parameters. `df.attrs["per_seed"]` holds one row per (spec, seed).
    """
    import pandas as pd

    seeds = tuple(profile.seeds if seeds is None else seeds)
    if not seeds:
        raise ValueError("compare needs at least one seed (profile.seeds is empty)")
    jobs = [(name, run_name, kwargs, seed) for name, run_name, kwargs in _named(specs) for seed in seeds]
    run_all(profile, dataset, [(run_name, kwargs, seed) for _, run_name, kwargs, seed in jobs])
    per_seed = []
    for name, run_name, kwargs, seed in jobs:  # every run is finished now: read back in order
        exp = run_experiment(run_name, profile, dataset, seed=seed, **kwargs)
        per_seed.append({label: name, "seed": seed, **{k: exp.row.get(k) for k in metrics},
                         "trainable": exp.row["trainable"], "total": exp.row["total"]})
    long = pd.DataFrame(per_seed)
    return _summarise(long, label, metrics)


def _named(specs):
    """(label, run name, run_experiment kwargs) of each `compare` spec: the run is named by the
    spec's "name", else by its label."""
    for label, kwargs in specs:
        kwargs = dict(kwargs)
        yield label, kwargs.pop("name", label), kwargs


def compare_datasets(specs, profile: Profile, datasets, **options):
    """`compare` on each dataset, stacked: one table with a leading `dataset` column.

    Args:
        specs: `compare`'s (label, kwargs) pairs, or a function of the dataset returning them.
        profile: the notebook's profile.
        datasets: `PARDataset`s (e.g. `profiles.profile_datasets(profile, "table")`).
        **options: further `compare` arguments (seeds, metrics, label).

    Returns:
        The stacked table; `attrs["per_seed"]` stacks the per-seed rows the same way. Empty (with
        the columns `dataset` and the label) when no dataset is usable.
    """
    import pandas as pd

    tables, long = [], []
    for ds in datasets:
        table = compare(specs(ds) if callable(specs) else specs, profile, ds, **options)
        tables.append(table.assign(dataset=ds.name))
        long.append(table.attrs["per_seed"].assign(dataset=ds.name))
    if not tables:
        return pd.DataFrame(columns=["dataset", options.get("label", "method")])
    out = pd.concat(tables, ignore_index=True)
    out = out[["dataset", *[c for c in out.columns if c != "dataset"]]]
    out.attrs["per_seed"] = pd.concat(long, ignore_index=True)
    return out


def plan(specs, profile: Profile, datasets, seeds=None):
    """The runs a comparison will make, before it makes them: one row per (dataset, spec, seed).

    Columns: dataset, run, seed, epochs, train images (per epoch), status ("cached": read back;
    "resumes": continues from its checkpoint; "to train") and "estimated minutes" for the runs
    still to train, from the throughput of the runs this profile finished on this machine
    (seconds per training image, per preset when there are some, else over all presets; NaN
    before the first run finished). `attrs["note"]` says what the estimate rests on.
    """
    import pandas as pd

    seeds = tuple(profile.seeds if seeds is None else seeds)
    rate, basis = _seconds_per_image(profile)
    rows = []
    for ds in datasets:
        for _, run_name, kwargs in _named(specs(ds) if callable(specs) else specs):
            for seed in seeds:
                p = plan_run(run_name, profile, ds, seed=seed, **kwargs)
                status = "cached" if p.cached else ("resumes" if p.resumable else "to train")
                images = p.train_images(ds)
                per_image = rate.get(p.preset, rate.get("*"))
                minutes = (per_image * images * p.epochs / 60
                           if per_image is not None and status != "cached" else float("nan"))
                rows.append({"dataset": ds.name, "run": run_name, "seed": seed, "epochs": p.epochs,
                             "train images": images, "status": status, "estimated minutes": minutes})
    table = pd.DataFrame(rows)
    todo = table[table["status"] != "cached"] if len(table) else table
    total = todo["estimated minutes"].sum(min_count=1) if len(todo) else 0.0
    table.attrs["note"] = (f"{len(table)} run(s): {len(table) - len(todo)} cached, {len(todo)} to train or resume"
                           + (f", about {total:.0f} min on {profile.device or default_device()} ({basis})"
                              if len(todo) and total == total else
                              (f"; no estimate yet ({basis})" if len(todo) else "")))
    return table


def show_plan(specs, profile: Profile, datasets, seeds=None):
    """Print what a comparison will do before it trains (see `plan`): one summary line, then the
    runs still to train or resume, and return the whole plan."""
    table = plan(specs, profile, datasets, seeds)
    print("Plan: " + table.attrs["note"])
    todo = table[table["status"] != "cached"] if len(table) else table
    if len(todo):
        print(todo.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    return table


def _seconds_per_image(profile: Profile):
    """Training seconds per image of this profile's finished runs on this kind of device:
    ({preset: seconds, "*": over all presets}, a sentence saying what it rests on)."""
    runs = list_runs(profile)
    device = str(profile.device or default_device())
    if runs.empty or "train_images" not in runs:
        return {}, "no finished run of this profile to measure throughput from"
    runs = runs[(runs["train_images"] > 0) & (runs["epochs"] > 0)]
    if "device" in runs:
        runs = runs[runs["device"].astype(str).str.split(":").str[0] == device.split(":")[0]]
    if runs.empty:
        return {}, f"no finished run of this profile on {device} to measure throughput from"
    per_image = runs["minutes"] * 60 / (runs["train_images"] * runs["epochs"])
    rate = per_image.groupby(runs["preset"]).median().to_dict()
    rate["*"] = float(per_image.median())
    return rate, f"measured on {len(runs)} finished runs: {rate['*']:.3f} s per training image (median)"


def parallel_runs(profile: Profile) -> int:
    """How many runs `run_all` trains at once: the profile's `parallel_runs` on a CPU with that many
    cores, else one (a GPU trains one run at a time)."""
    if profile.parallel_runs <= 1 or str(profile.device or default_device()).startswith("cuda"):
        return 1
    return max(1, min(profile.parallel_runs, os.cpu_count() or 1))


def run_all(profile: Profile, dataset, jobs) -> None:
    """Train every run of `jobs` that has not finished yet, several at once when the profile allows.

    The compact model is too small to keep two cores busy inside one run (measured: two one-thread
    runs side by side finish 1.2x sooner than the same two runs one after the other on two
    threads), so on a CPU `parallel_runs(profile)` worker processes each train one run on
    `cores // workers` threads. Results land in the runs folder exactly as `run_experiment` writes
    them, so the caller reads them back; a failed run stops everything with its name.

    Args:
        profile: the notebook's profile.
        dataset: a `PARDataset`.
        jobs: (run name, `run_experiment` keyword arguments, seed) triples.
    """
    todo = [(name, kwargs, seed) for name, kwargs, seed in jobs
            if not plan_run(name, profile, dataset, seed=seed, **kwargs).cached]
    workers = min(parallel_runs(profile), len(todo))
    if workers <= 1:
        for name, kwargs, seed in todo:
            run_experiment(name, profile, dataset, seed=seed, **kwargs)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # a fork of a kernel holding torch threads can hang
    bar = tqdm(total=len(todo), desc=f"runs ({workers} at once)", unit="run")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_train_job, name, profile, dataset, seed, kwargs): (name, seed)
                   for name, kwargs, seed in todo}
        try:
            for future in as_completed(futures):
                name, seed = futures[future]
                try:
                    future.result()
                except Exception as exc:
                    raise RuntimeError(f"run {name!r} (seed {seed}) failed: {type(exc).__name__}: {exc}") from exc
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()  # unfinished runs keep their checkpoints and resume next time
            raise
        finally:
            bar.close()


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _train_job(name, profile, dataset, seed, kwargs) -> dict:
    return run_experiment(name, profile, dataset, seed=seed, progress=False, **kwargs).row


def _summarise(long, label: str, metrics):
    import pandas as pd

    order = list(dict.fromkeys(long[label]))
    grouped = long.groupby(label, sort=False)
    table = pd.DataFrame({label: order})
    for k in metrics:
        table[k] = grouped[k].mean().reindex(order).to_numpy()
        table[f"{k} sd"] = grouped[k].std(ddof=1).reindex(order).to_numpy()
    table["seeds"] = grouped["seed"].nunique().reindex(order).to_numpy()
    table["trainable"] = grouped["trainable"].first().reindex(order).to_numpy()
    table["total"] = grouped["total"].first().reindex(order).to_numpy()
    table.attrs["per_seed"] = long
    return table


def sweep(profile: Profile, dataset, setting: str, values, epochs: Optional[int] = None,
          metrics=("mA", "Acc", "F1"), seeds=None):
    """One run per value of a config `setting` and seed (an ablation curve).

    Returns:
        `compare`'s table with the setting as its label column: mean and sd of the test metrics
        over seeds and the trainable parameters of each value (epochs: the profile's ablation
        budget).
    """
    return compare(sweep_specs(profile, setting, values, epochs), profile, dataset, seeds=seeds,
                   metrics=metrics, label=setting)


def sweep_specs(profile: Profile, setting: str, values, epochs: Optional[int] = None) -> list:
    """`compare` specs of a sweep: one run per value of a config `setting` (default epochs: the
    profile's ablation budget)."""
    epochs = profile.ablation_epochs if epochs is None else epochs
    return [(value, dict(name=f"{setting}={value}", overrides={setting: value}, epochs=epochs)) for value in values]


# The comparisons of notebooks 04 and 05, named once: the claims ledger (`parkit.claims`) finds
# the rows of results/ by these labels.
PROMPTPAR_LABEL = "PromptPAR (parkit)"
BASELINE_LABELS = {
    "zeroshot-clip": "Zero-shot CLIP (expanded sentences)",
    "linear-probe": "Linear probe",
    "vpt-deep": "Deep VPT (no regions)",
    "finetune": "Full fine-tuning",
    "vtb": "VTB-style fusion",
}
FULL_VARIANT = "full PromptPAR"
ABLATIONS = {
    "region division": ("- region division (no part tokens, mask, GL)",
                        dict(use_div=False, use_vismask=False, use_gl=False)),
    "visual mask": ("- visual mask", dict(use_vismask=False)),
    "global-local branch": ("- global-local branch", dict(use_gl=False)),
    "official text prompts": ("text prompts: official (inert)", dict(text_prompt_placement="official")),
    "text prompts": ("- text prompts", dict(use_textprompt=False)),
    "MM-former": ("linear fusion instead of MM-former", dict(use_mm_former=False)),
}


def main_method_specs(profile: Profile) -> list:
    """`compare` specs of notebook 04: every baseline of the profile's backbone family, then PromptPAR."""
    suffix = "" if profile.is_paper else "-micro"
    specs = [(label, dict(name=f"{base}{suffix}", preset=f"{base}{suffix}", epochs=profile.epochs))
             for base, label in BASELINE_LABELS.items()]
    return specs + [(PROMPTPAR_LABEL, dict(name="promptpar", preset=profile.preset, epochs=profile.epochs))]


def ablation_specs(profile: Profile) -> list:
    """`compare` specs of notebook 05: full PromptPAR and one run per removed component (the
    smoke profile keeps the first two removals)."""
    variants = list(ABLATIONS.values())[: 2 if profile.name == "smoke" else None]
    return [(label, dict(name="ablate:" + label, overrides=overrides, epochs=profile.ablation_epochs))
            for label, overrides in [(FULL_VARIANT, {}), *variants]]
