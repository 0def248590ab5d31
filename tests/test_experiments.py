"""parkit.experiments: counts describe the trained models; compare summarises seeds; list_runs."""
import json

import numpy as np
import pandas as pd
import pytest

from parkit import experiments
from parkit.model import count_parameters
from parkit.profiles import get_profile


class _Captured(Exception):
    def __init__(self, model):
        self.model = model


@pytest.fixture(scope="module")
def synth():
    from parkit.data import load_dataset
    from parkit.data.synthpar import make_synthpar
    import tempfile
    from pathlib import Path

    root = make_synthpar(Path(tempfile.mkdtemp()) / "synth", n_images=40, seed=1, progress=False)
    return load_dataset("SynthPAR", root)


@pytest.mark.parametrize("label,spec", experiments.main_method_specs(get_profile("demo")), ids=lambda x: str(x)[:30])
def test_notebook_07_counts_equal_the_model_run_experiment_trains(label, spec, synth, monkeypatch, tmp_path):
    """Notebook 07 counts with `parameter_counts(preset, dataset)`; here the model `run_experiment`
    would train is caught at the training call and counted."""
    profile = get_profile("demo")
    monkeypatch.setattr(experiments, "runs_dir", lambda p: tmp_path)

    def catch(model, *args, **kwargs):
        raise _Captured(model)

    monkeypatch.setattr(experiments, "_train", catch)
    monkeypatch.setattr(experiments, "_evaluate_frozen", lambda model, *a: catch(model))
    with pytest.raises(_Captured) as caught:
        experiments.run_experiment(spec["name"], profile, synth, preset=spec["preset"], epochs=1)
    trained = count_parameters(caught.value.model)
    counted = experiments.parameter_counts(spec["preset"], synth)
    assert (counted["trainable"], counted["total"]) == (trained["trainable"], trained["total"])
    assert counted["by_group"] == trained["by_group"]


def test_micro_counts_use_the_presets_fusion_not_a_random_768_block():
    # the old notebook forced mm_init="random" (a 768-wide ViT-B block): vtb-micro then trained ~48%
    counts = experiments.parameter_counts("vtb-micro", "PA100K")
    assert counts["percent"] < 10


def test_compare_reports_mean_and_sd_over_seeds(monkeypatch, tmp_path):
    calls = []

    def fake_run(name, profile, dataset, seed=0, **kwargs):
        calls.append((name, seed, kwargs))
        base = {"a": 60.0, "b": 50.0}[name]
        row = {"mA": base + seed, "Acc": 1.0, "Prec": 1.0, "Rec": 1.0, "F1": base, "trainable": 10, "total": 100}
        return experiments.Experiment(name, row, tmp_path, {})

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    monkeypatch.setattr(experiments, "run_all", lambda *args: None)  # fake_run trains nothing
    specs = [("method A", dict(name="a", epochs=2)), ("method B", dict(name="b"))]
    table = experiments.compare(specs, get_profile("demo"), dataset=None, seeds=(0, 1, 2))
    assert list(table["method"]) == ["method A", "method B"]
    assert table["mA"].tolist() == [61.0, 51.0]
    assert table["mA sd"].tolist() == pytest.approx([1.0, 1.0])
    assert table["seeds"].tolist() == [3, 3]
    assert len(table.attrs["per_seed"]) == 6
    assert ("a", 2, {"epochs": 2}) in calls
    one = experiments.compare(specs, get_profile("demo"), dataset=None, seeds=(0,))
    assert np.isnan(one["mA sd"]).all()
    with pytest.raises(ValueError, match="at least one seed"):
        experiments.compare(specs, get_profile("demo"), dataset=None, seeds=())


def test_list_runs_reads_every_finished_run(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "runs_dir", lambda p: tmp_path)
    assert experiments.list_runs(get_profile("demo")).empty
    for i, seed in enumerate((0, 1)):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "experiment.json").write_text(json.dumps({"row": {"run": "x", "mA": 50.0 + i, "trainable": 5},
                                                       "spec": {"seed": seed}}))
    runs = experiments.list_runs(get_profile("demo"))
    assert isinstance(runs, pd.DataFrame) and runs["seed"].tolist() == [0, 1] and runs["mA"].tolist() == [50.0, 51.0]


def test_run_all_trains_runs_side_by_side_with_the_results_of_one_at_a_time(synth, monkeypatch, tmp_path):
    """Two worker processes (as the demo profile uses on two cores) write the same runs, with the
    same test metrics, as training them one after the other in this process."""
    import dataclasses

    profile = dataclasses.replace(get_profile("smoke"), seeds=(0, 1), max_minutes=None)
    specs = [("probe", dict(name="probe", preset="linear-probe-micro", epochs=1))]
    monkeypatch.setenv("PARKIT_RUNS_DIR", str(tmp_path / "one"))
    one = experiments.compare(specs, profile, synth)
    monkeypatch.setenv("PARKIT_RUNS_DIR", str(tmp_path / "two"))
    two_workers = dataclasses.replace(profile, parallel_runs=2)
    assert experiments.parallel_runs(two_workers) == min(2, __import__("os").cpu_count())
    plans = [experiments.plan_run("probe", two_workers, synth, preset="linear-probe-micro", epochs=1, seed=s)
             for s in (0, 1)]
    assert not any(p.cached for p in plans)
    two = experiments.compare(specs, two_workers, synth)
    assert all(p.cached for p in plans) and all(p.out_dir.parent == tmp_path / "two" / "smoke" for p in plans)
    per_seed_one, per_seed_two = one.attrs["per_seed"], two.attrs["per_seed"]
    assert per_seed_two["seed"].tolist() == [0, 1]
    assert per_seed_two["mA"].to_numpy() == pytest.approx(per_seed_one["mA"].to_numpy(), abs=0.05)


def test_run_all_names_the_run_that_failed(synth, monkeypatch, tmp_path):
    import dataclasses

    monkeypatch.setenv("PARKIT_RUNS_DIR", str(tmp_path))
    profile = dataclasses.replace(get_profile("smoke"), parallel_runs=2, seeds=(0, 1))
    if experiments.parallel_runs(profile) < 2:
        pytest.skip("one core: run_all trains in this process")
    with pytest.raises(RuntimeError, match=r"run 'broken' \(seed [01]\) failed: .*no_such_split"):
        experiments.compare([("broken", dict(name="broken", preset="linear-probe-micro", epochs=1,
                                             train_split="no_such_split"))], profile, synth)
