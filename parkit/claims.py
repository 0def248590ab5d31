"""The claims ledger: each claim of the paper parkit can test, this run's evidence, and a verdict.

`build_ledger(results_dir)` reads only the tables the notebooks wrote under `results/` (nothing is
typed here except the claims' wording and the published numbers of `parkit.paper`) and returns
one row per claim:

- claim, paper evidence (what the paper reports, from `parkit.paper`, or that the value could not
  be retrieved), this run's measurement (mean ± standard deviation over the profile's seeds), the
  seeds, and a verdict: "holds", "does not hold" or "not measurable in this profile";
- the notebook and results file the evidence comes from.

A comparison "A beats B" holds when the mean paired difference over seeds is positive and larger
than twice its standard error; with one seed there is no spread to judge a difference by, so the
claim is not measurable in that profile. `notes(results_dir, notebook)` renders the ledger's rows
of one notebook as Markdown, so the prose next to a table is generated from the same numbers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from parkit import paper
from parkit.experiments import ABLATIONS, BASELINE_LABELS, FULL_VARIANT, PROMPTPAR_LABEL

HOLDS, FAILS, UNMEASURABLE = "holds", "does not hold", "not measurable in this profile"
VERDICTS = (HOLDS, FAILS, UNMEASURABLE)
COLUMNS = ["claim", "paper evidence", "this run's measurement", "seeds", "verdict", "notebook", "results file"]
NOT_RETRIEVED = "stated by the paper; its values could not be retrieved (spec §13.1)"


def _read(results_dir: Path, name: str) -> Optional[pd.DataFrame]:
    path = Path(results_dir) / name
    return pd.read_csv(path) if path.is_file() else None


def _row(claim, evidence, measurement, seeds, verdict, notebook, file) -> dict:
    assert verdict in VERDICTS
    return dict(zip(COLUMNS, (claim, evidence, measurement, seeds, verdict, notebook, file)))


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.2f} ± {sd:.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def paired_verdict(a, b) -> tuple:
    """Verdict and summary of "a is higher than b" from per-seed values of the same seeds.

    Args:
        a, b: pandas Series indexed by seed.

    Returns:
        (verdict, text): text gives both means ± sd and the paired difference.
    """
    seeds = sorted(set(a.index) & set(b.index))
    diff = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float)
    text = f"{_mean_sd(a.loc[seeds])} vs {_mean_sd(b.loc[seeds])} (difference {_mean_sd(diff)})"
    if len(seeds) < 2:
        return UNMEASURABLE, text + "; one seed: no spread to judge a difference by"
    se = diff.std(ddof=1) / math.sqrt(len(seeds))
    return (HOLDS if diff.mean() > 2 * se and diff.mean() > 0 else FAILS), text


def _by_seed(long: pd.DataFrame, key: str, label, metric: str = "mA") -> pd.Series:
    return long[long[key].astype(str) == str(label)].set_index("seed")[metric]


def _seed_list(long: pd.DataFrame) -> str:
    return ", ".join(str(int(s)) for s in sorted(long["seed"].unique()))


def _missing(claim, evidence, notebook, file) -> dict:
    return _row(claim, evidence, f"no {file} (run notebook {notebook} first)", "", UNMEASURABLE, notebook, file)


def sentence_expansion(results_dir) -> list:
    """Expanded sentences beat bare phrases for zero-shot CLIP (notebook 02)."""
    claim, file = "Sentence expansion helps zero-shot recognition", "02_zero_shot_summary.csv"
    table = _read(results_dir, file)
    if table is None:
        return [_missing(claim, NOT_RETRIEVED, "02", file)]
    rows = table.set_index("text")
    gain = rows.loc["sentences", "mA"] - rows.loc["phrases", "mA"]
    noise = float(rows["shuffled sd"].max())  # mA spread of a predictor that knows nothing
    verdict = HOLDS if gain > 2 * noise else FAILS
    text = (f"zero-shot mA {rows.loc['sentences', 'mA']:.2f} (sentences) vs {rows.loc['phrases', 'mA']:.2f} "
            f"(phrases), difference {gain:+.2f}; chance spread (sd of shuffled labels) {noise:.2f}")
    return [_row(claim, NOT_RETRIEVED, text, "no training (deterministic)", verdict, "02", file)]


_OPPONENTS = {"zeroshot-clip": "zero-shot CLIP", "linear-probe": "a linear probe", "vpt-deep": "deep VPT",
              "finetune": "full fine-tuning", "vtb": "VTB-style fusion"}


def main_comparisons(results_dir) -> list:
    """PromptPAR beats each baseline of notebook 04."""
    file = "04_main_results_seeds.csv"
    long = _read(results_dir, file)
    rows = []
    for base, label in BASELINE_LABELS.items():
        claim = f"PromptPAR beats {_OPPONENTS[base]}"
        if base == "vtb":
            own, vtb = (paper.value(m, "PA100K", "mA", b) for m, b in (("PromptPAR", "ViT-L/14"),
                                                                       ("VTB", "ViT-B/16 + BERT")))
            evidence = (f"Tables I-III: PA100K mA {paper.fmt(own)} (PromptPAR ViT-L/14) vs {paper.fmt(vtb)} "
                        f"(VTB); {paper.legend()}")
        else:
            evidence = NOT_RETRIEVED
        if long is None:
            rows.append(_missing(claim, evidence, "04", file))
            continue
        groups = list(long.groupby("dataset", sort=False)) if "dataset" in long else [(None, long)]
        for dataset, part in groups:  # one verdict per dataset of the table (paper: Tables I-III ...)
            verdict, text = paired_verdict(_by_seed(part, "method", PROMPTPAR_LABEL),
                                           _by_seed(part, "method", label))
            where = f" on {dataset}" if len(groups) > 1 else ""
            rows.append(_row(claim + where, evidence, "test mA " + text, _seed_list(part), verdict, "04", file))
    return rows


_COMPONENT_CLAIMS = {"region division": "Region division helps", "visual mask": "The visual mask helps",
                     "global-local branch": "The global-local branch helps", "text prompts": "Text prompts help",
                     "MM-former": "The MM-former beats linear fusion"}


def ablations(results_dir) -> list:
    """Each component of notebook 05 helps: the full model beats the model without it."""
    file = "05_ablation_components_seeds.csv"
    long = _read(results_dir, file)
    rows = []
    for component, (label, _) in ABLATIONS.items():
        if component == "official text prompts":
            continue  # parkit's own comparison (inert prompts), not a claim of the paper
        claim = _COMPONENT_CLAIMS[component]
        if long is None:
            rows.append(_missing(claim, NOT_RETRIEVED, "05", file))
            continue
        removed = _by_seed(long, "variant", label)
        if removed.empty:
            rows.append(_row(claim, NOT_RETRIEVED, f"'{label}' is not run in this profile", _seed_list(long),
                             UNMEASURABLE, "05", file))
            continue
        verdict, text = paired_verdict(_by_seed(long, "variant", FULL_VARIANT), removed)
        rows.append(_row(claim, NOT_RETRIEVED, f"test mA with vs without: {text}", _seed_list(long), verdict,
                         "05", file))
    return rows


def prompt_length(results_dir) -> list:
    """An intermediate visual prompt length is best (notebook 06)."""
    claim, file = "An optimal prompt length exists (longer is not always better)", "06_prompt_length_seeds.csv"
    long = _read(results_dir, file)
    if long is None:
        return [_missing(claim, NOT_RETRIEVED, "06", file)]
    lengths = sorted(long["vis_prompt"].unique())
    means = long.groupby("vis_prompt")["mA"].mean()
    best = means.idxmax()
    text = "; ".join(f"P={p}: {_mean_sd(_by_seed(long, 'vis_prompt', p))}" for p in lengths) + f"; best P={best}"
    if len(lengths) < 3 or long["seed"].nunique() < 2:
        return [_row(claim, NOT_RETRIEVED, text + " (needs 3 lengths and 2 seeds)", _seed_list(long),
                     UNMEASURABLE, "06", file)]
    interior = best not in (lengths[0], lengths[-1])
    beats_ends = all(paired_verdict(_by_seed(long, "vis_prompt", best), _by_seed(long, "vis_prompt", end))[0]
                     == HOLDS for end in (lengths[0], lengths[-1]) if end != best)
    return [_row(claim, NOT_RETRIEVED, text, _seed_list(long), HOLDS if interior and beats_ends else FAILS,
                 "06", file)]


def attention(results_dir) -> list:
    """Attribute tokens attend to their own body region (notebook 09's localization summary).

    Reads `09_localization_summary.csv` (written by notebook 09 from `parkit.explain.region_summary`),
    MM-former attention rows. Holds when every body region's attributes put at least 1.5x the
    region's grid share of their attention inside it (issue 13's bar), more than the region's
    share of the person's own body (`mean_ratio_body` > 1: one even blob over the person scores
    about 3x grid chance everywhere, so the grid bar alone cannot tell specific maps from a body
    silhouette), and one image's attribute maps are not copies of each other (mean pairwise
    correlation below 0.9).
    """
    claim, file = "Attention is attribute-specific (each attribute looks at its body region)", \
        "09_localization_summary.csv"
    evidence = "the paper's attention-map figure (qualitative, spec §13.2)"
    table = _read(results_dir, file)
    if table is None:
        return [_missing(claim, evidence, "09", file)]
    att = table[table["method"] == "attention"] if "method" in table else table
    if att.empty:
        return [_row(claim, evidence, f"{file} has no attention rows", "", UNMEASURABLE, "09", file)]
    corr = float(att["mean_pairwise_correlation"].iloc[0])
    parts = [f"{r.body_region} {r.mean_ratio:.2f}x grid / {r.mean_ratio_body:.2f}x body"
             for r in att.itertuples()]
    text = "attention inside the region vs chance: " + ", ".join(parts) + \
        f"; mean pairwise correlation of an image's maps {corr:.3f}"
    holds = bool((att["mean_ratio"] >= 1.5).all() and (att["mean_ratio_body"] > 1.0).all() and corr < 0.9)
    return [_row(claim, evidence, text, "the run's selected model (seed 0)", HOLDS if holds else FAILS, "09", file)]


def parameter_counts(results_dir) -> list:
    """The paper's parameter figures equal parkit's counts of the same setting (notebook 07)."""
    file = "07_paper_counts.csv"
    table = _read(results_dir, file)
    if table is None:
        return [_missing("The paper's parameter counts are reproduced", "Table V, abstract", "07", file)]
    rows = []
    for _, r in table.iterrows():
        rows.append(_row(f"Parameter count: {r['quantity']}", f"{r['paper']} ({r['source']})",
                         f"parkit counts {r['parkit']}", "counted, no training",
                         HOLDS if bool(r["matches"]) else FAILS, "07", file))
    return rows


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


def metrics(results_dir) -> list:
    """The paper's F1 is the mean of per-sample F1s, at or below the harmonic mean of Prec and Rec."""
    claim = "F1 is the mean of per-sample F1s (at or below the harmonic mean of Prec and Rec)"
    file = "03_final_metrics.csv"
    published = {ds: {m: paper.value("PromptPAR", ds, m, "ViT-L/14").value for m in ("Prec", "Rec", "F1")}
                 for ds in ("PA100K", "PETA", "RAPv1")}
    paper_ok = all(v["F1"] <= _harmonic(v["Prec"], v["Rec"]) for v in published.values())
    evidence = "Tables I-III: " + ", ".join(
        f"{ds} F1 {v['F1']:.2f} vs harmonic mean {_harmonic(v['Prec'], v['Rec']):.2f}" for ds, v in published.items()
    ) + f" ({paper.legend()})"
    table = _read(results_dir, file)
    if table is None:
        return [_missing(claim, evidence, "03", file)]
    row = table.iloc[0]  # the paper protocol
    hm = _harmonic(row["Prec"], row["Rec"])
    text = f"this run: F1 {row['F1']:.2f} vs harmonic mean {hm:.2f} ({row['protocol']})"
    return [_row(claim, evidence, text, "seed 0", HOLDS if paper_ok and row["F1"] <= hm + 1e-9 else FAILS,
                 "03", file)]


CLAIMS = (sentence_expansion, main_comparisons, ablations, prompt_length, attention, parameter_counts, metrics)


def build_ledger(results_dir) -> pd.DataFrame:
    """Every claim's row, read from the tables under `results_dir` (see the module docstring)."""
    rows = [row for claim in CLAIMS for row in claim(Path(results_dir))]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_ledger(results_dir) -> pd.DataFrame:
    """Build the ledger and save it as `claims.csv` / `claims.md` in `results_dir`."""
    from parkit.reporting import save_table  # noqa: PLC0415 (reporting imports pandas only)

    ledger = build_ledger(results_dir)
    save_table(ledger, Path(results_dir) / "claims")
    return ledger


def notes(results_dir, notebook: str) -> str:
    """Markdown for under a notebook's table: its claims, with every one this run contradicts first."""
    ledger = build_ledger(results_dir)
    mine = ledger[ledger["notebook"] == notebook]
    if mine.empty:
        return ""
    order = {FAILS: 0, UNMEASURABLE: 1, HOLDS: 2}
    mine = mine.sort_values("verdict", key=lambda s: s.map(order), kind="stable")
    against = int((mine["verdict"] == FAILS).sum())
    unmeasurable = int((mine["verdict"] == UNMEASURABLE).sum())
    tally = f"{len(mine)} checked, {unmeasurable} not measurable in this profile"
    head = (f"**Against the paper in this run: {against} of {len(mine)} claims do not hold here** ({tally})."
            if against else f"**No claim of this table goes against the paper in this run** ({tally}).")
    lines = [head, "", "From the claims ledger (`parkit.claims`, notebook 11):", ""]
    lines += [f"- *{r['verdict']}*: {r['claim']}: {r[COLUMNS[2]]}" for _, r in mine.iterrows()]
    return "\n".join(lines)
