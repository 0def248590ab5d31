"""Published numbers live in parkit.paper only: no notebook source types one."""
import re
from pathlib import Path

import pytest

from parkit import paper

NOTEBOOK_SOURCES = Path(__file__).resolve().parents[1] / "notebooks" / "src"


def spellings(value: float) -> list:
    """Regexes for the ways a number can be typed: 78.40 / 78.4, 2822832 / 2,822,832 / 2_822_832, 2.30M."""
    if float(value).is_integer() and value >= 1000:
        n = int(value)
        forms = [str(n), f"{n:,}", f"{n:_}"]
        if n % 10_000 == 0:
            forms += [f"{n / 1e6:.2f}M", f"{n / 1e6:.1f}M"]
        return [rf"(?<![\d.,_]){re.escape(f)}(?![\d,_])" for f in forms]
    text = f"{value:.2f}"
    short = text.rstrip("0").rstrip(".")
    return [rf"(?<![\d.]){re.escape(f)}(?![\d])" for f in {text, short}]


def test_spellings_find_typed_numbers():
    found = lambda value, text: any(re.search(p, text) for p in spellings(value))  # noqa: E731
    assert found(78.40, "F1 = 78.4 on PETA-ZS") and found(78.40, "(78.40)")
    assert not found(78.40, "78.45") and not found(78.40, "178.40")
    assert found(2_822_832, "trainable 2,822,832") and found(2_822_832, "x = 2_822_832")
    assert found(2.30e6, "Table V says 2.30M") and not found(2.30e6, "12.30M")


def test_paper_module_holds_the_issue_numbers():
    assert paper.value("PromptPAR", "PETA-ZS", "F1").value == 78.40
    assert paper.value("PromptPAR", "RAP-ZS", "F1").value == 81.14
    b16 = paper.value("PromptPAR", "RAPv1", "mA", "ViT-B/16")
    assert b16.value == 83.74 and paper.value("PromptPAR", "RAPv1", "params").value == 2.30e6
    rerun = paper.numbers("PromptPAR", "PETA-ZS", "mA")
    assert rerun and all("re-run by" in n.label for n in rerun)  # JGEL's ViT-B/16 rows are labelled
    with pytest.raises(KeyError, match="published numbers match"):
        paper.value("PromptPAR", "WIDER", "mA")


def test_every_unverified_value_is_marked_the_same_way():
    table = paper.paper_table(["PA100K"], methods=["PromptPAR"], own_only=True)
    row = table.iloc[0]
    for metric in paper.METRICS:  # Acc/Prec/Rec and mA/F1 alike: none is verified against the PDF
        assert row[metric].endswith(paper.UNVERIFIED_MARK), (metric, row[metric])
    assert paper.fmt(paper.value("PromptPAR", "RAPv1", "params")) == "2.30M" + paper.UNVERIFIED_MARK
    assert paper.fmt(paper.value("PromptPAR", "RAPv1", "trainable %")) == "0.75%" + paper.UNVERIFIED_MARK


@pytest.mark.parametrize("source", sorted(NOTEBOOK_SOURCES.glob("*.py")), ids=lambda p: p.name)
def test_no_notebook_types_a_published_number(source):
    text = source.read_text()
    hits = [(value, m.group(0)) for value in paper.all_values() for p in spellings(value)
            for m in re.finditer(p, text)]
    assert not hits, f"{source.name} types published numbers {hits}: read them from parkit.paper instead"
