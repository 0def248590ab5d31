"""Tooling behind readable notebooks: inline figures, quiet progress bars, output cleaning, the index,
dataset discovery and the PETA source-collection baseline."""
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_save_figure_keeps_png_small_and_displays_it(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from parkit import plots

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.scatter(rng.random(20000), rng.random(20000), c=rng.random((20000, 3)), s=4)  # compresses badly
    fig.savefig(tmp_path / "big.png", dpi=200)
    assert (tmp_path / "big.png").stat().st_size > plots.MAX_PNG_BYTES  # the case the function must handle
    path = plots.save_figure(fig, tmp_path / "dots.png", dpi=200, show=True)
    assert path.stat().st_size <= plots.MAX_PNG_BYTES
    assert len(shown) == 1 and shown[0].data == path.read_bytes()  # the inline picture is the saved file
    assert fig.number not in plt.get_fignums()  # closed: the backend does not draw it a second time
    plots.save_figure(plt.subplots()[0], tmp_path / "quiet.png", show=False)
    assert len(shown) == 1


def test_summary_bars_write_one_final_line(monkeypatch):
    from parkit import progress

    monkeypatch.setenv("PARKIT_PROGRESS", "summary")
    out = io.StringIO()
    for _ in progress.tqdm(range(50), desc="epoch 1/1", file=out, mininterval=0):
        pass
    for _ in progress.tqdm(range(5), desc="inner", file=out, leave=False):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "epoch 1/1" in lines[0] and "100%|" in lines[0] and "\r" not in out.getvalue()
    monkeypatch.setenv("PARKIT_PROGRESS", "loud")
    with pytest.raises(ValueError, match="PARKIT_PROGRESS"):
        progress.tqdm(range(2))


def test_reproduce_cleaning_removes_progress_residue_and_widgets():
    reproduce = _tool("reproduce")
    bar_widget = {"output_type": "display_data", "metadata": {},
                  "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                           "text/plain": "  0%|          | 0/30 [00:00<?, ?it/s]"}}
    explorer = {"output_type": "display_data", "metadata": {},
                "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "y"}, "text/plain": "VBox(...)"}}
    stream = {"output_type": "stream", "name": "stderr",
              "text": "  0%|     | 0/3\r 33%|#    | 1/3\r100%|#####| 3/3\nepoch 1 done\n 40%|##   | 2/5\n"}
    partial_only = {"output_type": "stream", "name": "stderr", "text": "  0%|          | 0/30 [00:00<?, ?it/s]"}
    kept = reproduce.clean_outputs([bar_widget, explorer, stream, partial_only])
    assert len(kept) == 2
    assert kept[0]["data"] == {"text/plain": reproduce.WIDGET_PLACEHOLDER}
    assert kept[1]["text"].splitlines() == ["100%|#####| 3/3", "epoch 1 done"]
    assert "0%|" not in str(kept).replace("100%|", "")


def test_notebooks_readme_is_generated_from_the_notebooks():
    build = _tool("build_notebooks")
    sources = sorted((REPO / "notebooks" / "src").glob("[0-9][0-9]_*.py"))
    expected = build.readme_text(sources)
    assert (REPO / "notebooks" / "README.md").read_text() == expected, \
        "notebooks/README.md is stale: run `python tools/build_notebooks.py`"
    assert all(f"`{s.stem}`" in expected for s in sources)


def test_readme_builder_names_a_source_without_a_purpose(tmp_path):
    build = _tool("build_notebooks")
    bad = tmp_path / "99_bad.py"
    bad.write_text("# %% [markdown]\n# # 99 · Bad\n# no purpose line\n# %%\nx = 1\n")
    with pytest.raises(ValueError, match="99_bad.py"):
        build.describe(bad)


def test_group_prior_mA_by_hand():
    from parkit.data.discovery import group_prior_mA

    # one attribute; group 0 is mostly positive in training, group 1 mostly negative
    labels = np.array([[1], [1], [0], [0], [0], [1], [1], [0], [0], [1]])
    groups = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1])
    train, test = np.arange(5), np.arange(5, 10)
    # train rates: group 0 2/3 > overall 2/5 -> predict 1; group 1 0/2 -> predict 0
    # test: rows 5,6 (g0, gt 1) TP; rows 7,8 (g1, gt 0) TN; row 9 (g1, gt 1) FN -> pos recall 2/3, neg 1
    assert group_prior_mA(labels, groups, train, test) == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_survey_reports_absent_and_unreadable_datasets(tmp_path):
    from parkit.data.discovery import find_dataset_roots, survey_datasets

    (tmp_path / "PETA").mkdir()  # a folder without PETA.mat
    assert find_dataset_roots(None)["PETA"] is None
    assert find_dataset_roots(tmp_path)["PETA"] == tmp_path / "PETA"
    rows = {r["dataset"]: r for r in survey_datasets(tmp_path)}
    assert rows["PA100K"]["status"] == "not present"
    assert rows["PETA"]["status"] == "not readable here" and "PETA" in rows["PETA"]["reason"]


def test_peta_source_prior_on_the_real_annotation(realdata):
    from parkit.data.discovery import peta_source_prior_mA

    bias = peta_source_prior_mA(realdata / "peta")
    assert (bias["train"], bias["test"], bias["sources"]) == (11400, 7600, 10)
    assert 60 < bias["mA"] < 75  # far above chance (50): PETA rewards knowing the source
