"""The claims ledger is built from results/ tables alone, with verdicts that follow the numbers."""
import pandas as pd
import pytest

from parkit import claims
from parkit.experiments import ABLATIONS, BASELINE_LABELS, FULL_VARIANT, PROMPTPAR_LABEL


def _seeds(rows, key):
    return pd.DataFrame([{key: label, "seed": s, "mA": value + 0.1 * s} for label, value in rows for s in (0, 1, 2)])


@pytest.fixture
def results(tmp_path):
    pd.DataFrame([{"text": "sentences", "mA": 70.0, "shuffled sd": 1.0},
                  {"text": "phrases", "mA": 60.0, "shuffled sd": 1.0}]).to_csv(tmp_path / "02_zero_shot_summary.csv")
    main = [(PROMPTPAR_LABEL, 70.0)] + [(label, 60.0 if base != "linear-probe" else 75.0)
                                        for base, label in BASELINE_LABELS.items()]
    _seeds(main, "method").to_csv(tmp_path / "04_main_results_seeds.csv", index=False)
    ablation = [(FULL_VARIANT, 70.0)] + [(label, 65.0) for label, _ in ABLATIONS.values()]
    _seeds(ablation, "variant").to_csv(tmp_path / "05_ablation_components_seeds.csv", index=False)
    _seeds([(0, 60.0), (10, 70.0), (40, 65.0)], "vis_prompt").to_csv(tmp_path / "06_prompt_length_seeds.csv",
                                                                       index=False)
    pd.DataFrame([{"protocol": "paper", "mA": 70, "Acc": 60, "Prec": 70.0, "Rec": 80.0, "F1": 72.0}]).to_csv(
        tmp_path / "03_final_metrics.csv", index=False)
    return tmp_path


def test_ledger_rows_and_verdicts(results):
    ledger = claims.build_ledger(results)
    assert list(ledger.columns)[:5] == ["claim", "paper evidence", "this run's measurement", "seeds", "verdict"]
    assert set(ledger["verdict"]) <= set(claims.VERDICTS)
    by_claim = ledger.set_index("claim")["verdict"]
    assert by_claim["Sentence expansion helps zero-shot recognition"] == claims.HOLDS
    assert by_claim["PromptPAR beats a linear probe"] == claims.FAILS  # the probe row is higher
    assert by_claim["PromptPAR beats VTB-style fusion"] == claims.HOLDS
    assert by_claim["The visual mask helps"] == claims.HOLDS
    assert by_claim["An optimal prompt length exists (longer is not always better)"] == claims.HOLDS
    assert by_claim["F1 is the mean of per-sample F1s (at or below the harmonic mean of Prec and Rec)"] == claims.HOLDS
    # absent tables: not measurable, and the row says which notebook writes them
    attention = ledger[ledger["notebook"] == "09"].iloc[0]
    assert attention["verdict"] == claims.UNMEASURABLE and "09_localization.csv" in attention["this run's measurement"]
    vtb = ledger.set_index("claim").loc["PromptPAR beats VTB-style fusion", "this run's measurement"]
    assert "70.10 ± 0.10" in vtb


def test_one_seed_is_not_measurable_and_notes_name_what_goes_against(results):
    long = pd.read_csv(results / "04_main_results_seeds.csv")
    long[long.seed == 0].to_csv(results / "04_main_results_seeds.csv", index=False)
    ledger = claims.build_ledger(results)
    assert (ledger[ledger.notebook == "04"]["verdict"] == claims.UNMEASURABLE).all()
    note = claims.notes(results, "05")
    assert "No claim of this table goes against the paper" in note
    pd.DataFrame([{"variant": FULL_VARIANT, "seed": s, "mA": 60.0 + s} for s in (0, 1, 2)]
                 + [{"variant": ABLATIONS["visual mask"][0], "seed": s, "mA": 70.0 + s} for s in (0, 1, 2)]
                 ).to_csv(results / "05_ablation_components_seeds.csv", index=False)
    note = claims.notes(results, "05")
    assert "Against the paper in this run: 1 of" in note and "The visual mask helps" in note


def test_localization_table_is_read_when_present(results):
    pd.DataFrame({"attribute": ["Hat", "Boots"], "inside share": [0.5, 0.4], "chance share": [0.25, 0.2],
                  "ratio": [2.0, 2.0], "pointing hit rate": [0.9, 0.8],
                  "mean pairwise correlation": [0.3, 0.3]}).to_csv(results / "09_localization.csv", index=False)
    row = claims.build_ledger(results).set_index("notebook").loc["09"]
    assert row["verdict"] == claims.HOLDS and "2.00 ± 0.00" in row["this run's measurement"]


def test_write_ledger_saves_claims_csv(results):
    claims.write_ledger(results)
    saved = pd.read_csv(results / "claims.csv")
    assert len(saved) == len(claims.build_ledger(results)) and "verdict" in saved
