"""Build notebooks/NN_name.ipynb from their sources notebooks/src/NN_name.py.

Sources are plain Python in "percent" format, so they diff and review like code:

    # %% [markdown]
    # # Title
    # %% tags=["parameters"]
    PROFILE = "demo"
    # %%
    code ...

Run `python tools/build_notebooks.py` after editing a source; `make reproduce` then fills the outputs.
Existing outputs of unchanged cells are kept, so rebuilding does not erase the committed demo results.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
_HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list:
    """Split a percent-format source into nbformat cells."""
    cells, kind, tags, buf = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(buf).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            buf = []
        elif kind is not None:
            buf.append(line)
    flush()
    return cells


def build(src: Path, keep_outputs: bool = True) -> Path:
    dst = OUT / (src.stem + ".ipynb")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = parse(src.read_text())
    if keep_outputs and dst.exists():
        old = {c.source: c for c in nbformat.read(dst, as_version=4).cells if c.cell_type == "code"}
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source in old:
                cell.outputs = old[cell.source].get("outputs", [])
                cell.execution_count = old[cell.source].get("execution_count")
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, dst)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="source stems to build (default: all)")
    ap.add_argument("--clean", action="store_true", help="drop existing outputs")
    args = ap.parse_args(argv)
    srcs = sorted(SRC.glob("[0-9][0-9]_*.py"))
    if args.names:
        srcs = [s for s in srcs if any(s.stem.startswith(n) for n in args.names)]
    for s in srcs:
        print("built", build(s, keep_outputs=not args.clean).relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
