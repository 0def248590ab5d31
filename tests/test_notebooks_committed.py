"""The committed notebooks read without a kernel: figures inline, no progress residue, small files.

These check the outputs `make reproduce` commits, so they fail until the notebooks are re-executed
after a change that adds figures.
"""
import json
import base64
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MAX_PNG_BYTES = 150_000
MAX_FOLDER_BYTES = 5_000_000
# Each of these shows at least this many figures (01 and 11 are tables and text).
MIN_PNGS = {"00": 1, "02": 1, "03": 1, "04": 1, "05": 1, "06": 1, "07": 1, "08": 1, "09": 2, "10": 1}


def _outputs(path: Path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            yield cell, out


def _pngs(path: Path) -> list:
    return [base64.b64decode(out["data"]["image/png"]) for _, out in _outputs(path)
            if "image/png" in out.get("data", {})]


def _notebook(prefix: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    assert found, f"no notebooks/{prefix}_*.ipynb"
    return found[0]


@pytest.mark.parametrize("prefix,minimum", sorted(MIN_PNGS.items()))
def test_notebook_shows_its_figures(prefix, minimum):
    pngs = _pngs(_notebook(prefix))
    assert len(pngs) >= minimum, f"{_notebook(prefix).name} has {len(pngs)} image/png outputs, expected >= {minimum}"
    assert all(len(p) <= MAX_PNG_BYTES for p in pngs), f"a PNG over {MAX_PNG_BYTES} bytes in {prefix}"


def test_explorer_notebook_has_its_static_view():
    path = _notebook("10")
    cells = [c for c, out in _outputs(path) if "image/png" in out.get("data", {})]
    assert any("explorer_view_figure" in "".join(c["source"]) for c in cells), \
        "notebook 10 must show the explorer's static view (explorer_view_figure) as an image"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_no_progress_residue_or_widget_state(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} carries widget state"
    for cell, out in _outputs(path):
        text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
        assert "0%|" not in text.replace("100%|", ""), f"{path.name}: a partial progress bar in the outputs"
        assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})


def test_notebooks_folder_is_small():
    total = sum(p.stat().st_size for p in NOTEBOOKS.rglob("*") if p.is_file())
    assert total <= MAX_FOLDER_BYTES, f"notebooks/ holds {total / 1e6:.1f} MB (limit {MAX_FOLDER_BYTES / 1e6:.0f} MB)"
