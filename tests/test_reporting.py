"""Result tables written by the notebooks: CSV and Markdown keep a meaningful index as a column."""
import pandas as pd

from parkit.reporting import save_table, to_markdown


def test_attribute_index_becomes_the_first_column(tmp_path):
    df = pd.DataFrame({"mA": [0.5, 0.75]}, index=pd.Index(["Hat", "Backpack"], name="attribute"))
    csv, md = save_table(df, tmp_path / "per_attribute")
    back = pd.read_csv(csv)
    assert list(back.columns) == ["attribute", "mA"] and list(back["attribute"]) == ["Hat", "Backpack"]
    assert md.read_text().splitlines()[:3] == ["| attribute | mA |", "|---|---|", "| Hat | 0.50 |"]


def test_plain_range_index_is_not_written():
    df = pd.DataFrame({"method": ["a", "b"], "mA": [1.0, 2.0]})
    assert to_markdown(df).splitlines()[0] == "| method | mA |"
    # An unnamed but meaningful index (attribute names) is kept under an empty header.
    named = pd.DataFrame({"mA": [1.0]}, index=["Hat"])
    assert to_markdown(named).splitlines()[2] == "| Hat | 1.00 |"
