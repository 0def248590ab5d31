"""Every published number parkit shows, with where it comes from.

The notebooks never type a number from a paper: they read it here, so a value corrected against
the PDF is corrected everywhere at once. Each entry says its source (the PromptPAR paper's table,
or the secondary source it was quoted from), whether it was checked against the PromptPAR PDF
(`verified`; none is yet, see spec §13.1), and, for numbers another paper obtained by re-running
PromptPAR, who ran it (`rerun_by`). Values that parkit's method reference derived by counting
(not published by anyone) are kept apart in `DERIVED` and labelled as such.

Tables rendered by `paper_table` mark every value that is not verified against the PDF with
`UNVERIFIED_MARK`, the same way in every notebook.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

UNVERIFIED_MARK = "*"
METRICS = ("mA", "Acc", "Prec", "Rec", "F1")

# Sources (spec §13.1 holds the details of each).
SURVEY = "PromptPAR (TCSVT 2024) Tables I-III, as quoted by a third-party survey"
RECOLLECTION = "PromptPAR (TCSVT 2024) Tables I-III, from a recollection of the paper"
ZERO_SHOT = "PromptPAR (TCSVT 2024), zero-shot results (PETA-ZS / RAP-ZS)"
TABLE_V = "PromptPAR (TCSVT 2024) Table V, as quoted in the official repository's issue #77"
ABSTRACT = "PromptPAR (TCSVT 2024) abstract"
JGEL = "JGEL (AAAI 2026) Tables 1-2 (PromptPAR* with ViT-B/16, re-run by JGEL)"
BASELINES = "the baselines' own papers, as quoted by secondary sources"
RETHINKING_README = "Rethinking_of_PAR README (ResNet-50)"
OFFICIAL_LOG = "official repository, screenshot_002.png (a PETA training log)"


@dataclass(frozen=True)
class PaperNumber:
    """One published number.

    Attributes:
        method: the method as a table names it.
        backbone: its backbone ("" when the source does not say).
        dataset: the benchmark.
        metric: "mA", "Acc", "Prec", "Rec", "F1", "params" (trainable parameters) or
            "trainable %".
        value: the number as published (percent for metrics and "trainable %").
        source: where it comes from.
        verified: checked against the PromptPAR PDF.
        rerun_by: the paper that re-ran PromptPAR to obtain it (None: PromptPAR's own number).
    """

    method: str
    backbone: str
    dataset: str
    metric: str
    value: float
    source: str
    verified: bool = False
    rerun_by: Optional[str] = None

    @property
    def label(self) -> str:
        """The row label tables use, naming the re-running paper when there is one."""
        name = f"{self.method} ({self.backbone})" if self.backbone else self.method
        return f"{name}, re-run by {self.rerun_by}" if self.rerun_by else name


def _rows(method, backbone, source, table, metrics=("mA", "F1"), **extra):
    return [PaperNumber(method, backbone, ds, m, v, source, **extra)
            for ds, values in table.items() for m, v in zip(metrics, values) if v is not None]


NUMBERS: tuple = tuple(
    # PromptPAR, CLIP ViT-L/14: mA and F1 quoted by a survey; Acc/Prec/Rec recollected.
    _rows("PromptPAR", "ViT-L/14", SURVEY,
          {"PA100K": (87.47, 90.15), "PETA": (88.76, 89.18), "RAPv1": (85.45, 82.38)})
    + _rows("PromptPAR", "ViT-L/14", RECOLLECTION,
            {"PA100K": (83.78, 89.27, 91.70), "PETA": (82.84, 89.04, 89.74), "RAPv1": (71.61, 79.64, 86.05)},
            metrics=("Acc", "Prec", "Rec"))
    + _rows("PromptPAR", "", ZERO_SHOT, {"PETA-ZS": (78.40,), "RAP-ZS": (81.14,)}, metrics=("F1",))
    + _rows("PromptPAR", "ViT-B/16", TABLE_V, {"RAPv1": (83.74, 2.30e6)}, metrics=("mA", "params"))
    + _rows("PromptPAR", "ViT-L/14", ABSTRACT, {"RAPv1": (0.75,)}, metrics=("trainable %",))
    + _rows("PromptPAR", "ViT-B/16", JGEL,
            {"PETA": (87.09, 80.19, 88.66, 86.89), "PA100K": (85.47, 81.33, 90.53, 88.55),
             "RAPv1": (84.48, 69.97, 85.87, 81.23), "RAPv2": (81.67, 68.00, 85.02, 79.85),
             "PETA-ZS": (78.37, 63.77, 77.72, 76.05), "RAP-ZS": (78.35, 68.08, 84.08, 78.74)},
            metrics=("mA", "Acc", "Rec", "F1"), rerun_by="JGEL (AAAI 2026)")
    + _rows("VTB", "ViT-B/16 + BERT", BASELINES,
            {"PA100K": (83.72, 88.21), "PETA": (85.31, 86.71), "RAPv1": (82.67, 80.84)})
    + _rows("DAFL", "", BASELINES, {"PA100K": (83.54, 88.09), "PETA": (87.07, 86.40), "RAPv1": (83.72, 80.29)})
    + _rows("PARFormer", "", BASELINES, {"PA100K": (84.46, 88.52), "PETA": (89.32, 89.06), "RAPv1": (84.13, 81.35)})
    + _rows("Rethinking", "ResNet-50", BASELINES,
            {"PA100K": (80.21, 87.40), "PETA": (83.96, 86.35), "RAPv1": (79.27, 79.95)})
    + _rows("Rethinking", "ResNet-50", RETHINKING_README,
            {"PETA-ZS": (71.43, 72.04), "RAPv2": (78.52, 78.68), "RAP-ZS": (71.76, 77.66)})
    # The official code's own log (not the paper): PETA, the 2023 substring rule.
    + _rows("PromptPAR official code", "ViT-L/14", OFFICIAL_LOG, {"PETA": (2_822_832, 437_524_145)},
            metrics=("params", "total params"))
)

# Counts parkit's method reference derived from the released code (spec §7.4): not published,
# used as regression targets for parkit's counting of the official setting.
DERIVED = {
    ("RAPv1", "2023 code"): 3_277_568,
    ("PETA", "2025 code, trained visual_embed"): 3_413_424,
}
DERIVED_SOURCE = "derived by counting the released code's modules (spec §7.4); not a published number"


def numbers(method: Optional[str] = None, dataset: Optional[str] = None, metric: Optional[str] = None,
            backbone: Optional[str] = None, own_only: bool = False) -> list:
    """The entries of `NUMBERS` matching every given field (own_only: no re-runs by other papers)."""
    out = []
    for n in NUMBERS:
        if (method is None or n.method == method) and (dataset is None or n.dataset == dataset) \
                and (metric is None or n.metric == metric) and (backbone is None or n.backbone == backbone) \
                and not (own_only and n.rerun_by):
            out.append(n)
    return out


def value(method: str, dataset: str, metric: str, backbone: Optional[str] = None,
          own_only: bool = True) -> PaperNumber:
    """The one published number for (method, dataset, metric[, backbone]).

    Raises:
        KeyError: none or several entries match (the message lists them).
    """
    found = numbers(method, dataset, metric, backbone, own_only=own_only)
    if len(found) != 1:
        raise KeyError(f"{len(found)} published numbers match {(method, dataset, metric, backbone)}: "
                       f"{[n.label for n in found]}; give the backbone, or add the number to parkit/paper.py")
    return found[0]


def fmt(n: PaperNumber) -> str:
    """A number as tables show it, marked when not verified against the PDF.

    Metrics with two decimals; parameter counts as published: "2.30M" for a rounded figure,
    "2,822,832" for an exact one.
    """
    if n.metric in ("params", "total params"):
        text = f"{n.value / 1e6:.2f}M" if n.value % 10_000 == 0 else f"{n.value:,.0f}"
    else:
        text = f"{n.value:.2f}" + ("%" if n.metric == "trainable %" else "")
    return text + ("" if n.verified else UNVERIFIED_MARK)


def paper_table(datasets: Optional[Iterable[str]] = None, methods: Optional[Sequence[str]] = None,
                metrics: Sequence[str] = METRICS, own_only: bool = False):
    """Published results as a table: one row per (method, backbone, dataset), one column per metric.

    Values are strings (see `fmt`); a "source" column names each row's sources, re-runs by other
    papers are labelled in the method column.

    Returns:
        A pandas DataFrame; `df.attrs["legend"]` explains the mark.
    """
    import pandas as pd

    datasets = None if datasets is None else list(datasets)
    rows = {}
    for n in NUMBERS:
        if n.metric not in metrics or (datasets is not None and n.dataset not in datasets) \
                or (methods is not None and n.method not in methods) or (own_only and n.rerun_by):
            continue
        row = rows.setdefault((n.label, n.dataset), {"method": n.label, "dataset": n.dataset, "sources": []})
        row[n.metric] = fmt(n)
        if n.source not in row["sources"]:
            row["sources"].append(n.source)
    order = {d: i for i, d in enumerate(datasets or [])}
    table = pd.DataFrame([{**{k: v for k, v in r.items() if k != "sources"}, "source": "; ".join(r["sources"])}
                          for r in rows.values()], columns=["method", "dataset", *metrics, "source"])
    if datasets is not None:
        table = table.sort_values("dataset", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    table = table.fillna("")
    table.attrs["legend"] = legend()
    return table


def legend() -> str:
    """The sentence that explains the mark, for under a table."""
    return (f"{UNVERIFIED_MARK} not verified against the PromptPAR PDF (spec §13.1): check before citing. "
            "Sources are named per row; re-runs by other papers are labelled as such.")


# Official split sizes (train, val, test) of each benchmark, from the PromptPAR supplement's dataset
# table (PETA-ZS / RAP-ZS: Jia et al.'s zero-shot protocol).
SPLIT_SIZES_SOURCE = "PromptPAR (TCSVT 2024) supplement, dataset table"
SPLIT_SIZES = {
    "PA100K": (80000, 10000, 10000),
    "PETA": (9500, 1900, 7600),
    "PETA-ZS": (11241, 3826, 3933),
    "RAPv1": (33268, 0, 8317),
    "RAPv2": (50957, 16986, 16985),
    "RAP-ZS": (17062, 4628, 4928),
    "WIDER": (28330, 0, 29161),
}


def split_sizes_table():
    """The official split sizes as a DataFrame (dataset, train, val, test, trainval)."""
    import pandas as pd

    table = pd.DataFrame([(name, *sizes) for name, sizes in SPLIT_SIZES.items()],
                         columns=["dataset", "train", "val", "test"])
    table["trainval"] = table.train + table.val
    return table


def all_values() -> list:
    """Every number of `NUMBERS`, `DERIVED` and `SPLIT_SIZES` (what no notebook may type)."""
    sizes = {v for sizes in SPLIT_SIZES.values() for v in sizes if v}
    return sorted({n.value for n in NUMBERS} | set(DERIVED.values()) | sizes)
