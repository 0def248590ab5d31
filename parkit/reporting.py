"""Result tables: save a DataFrame as CSV + Markdown, and collect the summary `make reproduce` prints."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def _index_as_column(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a meaningful index (named, or not a plain 0..n-1 range) moved into the first
    column, so tables keyed by attribute name keep their names on disk and in Markdown."""
    plain = isinstance(df.index, pd.RangeIndex) and df.index.name is None and df.index.start == 0 \
        and df.index.step == 1
    if plain:
        return df
    return df.reset_index().rename(columns={"index": df.index.name or ""})


def save_table(df: pd.DataFrame, path_stem: Path | str, floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write `df` as `<stem>.csv` and `<stem>.md`; returns both paths. A meaningful index (e.g.
    attribute names) becomes the first column."""
    df = _index_as_column(df)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    df.to_csv(csv, index=False)
    md.write_text(to_markdown(df, floatfmt) + "\n")
    return csv, md


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-style Markdown table (no optional dependency on `tabulate`); a meaningful index
    becomes the first column."""
    df = _index_as_column(df)

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def summary_table(results_dir: Path | str) -> str:
    """The headline table of a reproduce run: every `*summary*.md` in `results_dir`, concatenated."""
    parts = []
    for md in sorted(Path(results_dir).glob("*.md")):
        if "summary" in md.stem or md.stem.startswith("04_main"):
            parts.append(f"## {md.stem}\n\n{md.read_text().strip()}\n")
    return "\n".join(parts)
