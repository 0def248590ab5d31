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
    assert attention["verdict"] == claims.UNMEASURABLE and "09_localization_summary.csv" in attention["this run's measurement"]
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


def _localization_summary(results, ratio, ratio_body, corr):
    regions = ("head", "torso", "legs", "feet")
    rows = [{"method": m, "body_region": r, "mean_ratio": ratio, "mean_ratio_body": ratio_body,
             "mean_pairwise_correlation": corr} for m in ("attention", "gradcam") for r in regions]
    rows[4:] = [dict(r, mean_ratio=0.1) for r in rows[4:]]  # Grad-CAM rows must not be read
    pd.DataFrame(rows).to_csv(results / "09_localization_summary.csv", index=False)
    return claims.build_ledger(results).set_index("notebook").loc["09"]


def test_localization_summary_is_read_when_present(results):
    row = _localization_summary(results, ratio=2.0, ratio_body=1.6, corr=0.3)
    assert row["verdict"] == claims.HOLDS and "head 2.00x grid / 1.60x body" in row["this run's measurement"]


def test_a_body_shaped_blob_for_every_attribute_does_not_hold(results):
    # 3x grid chance everywhere, but no better than the body's own area, maps nearly identical.
    assert _localization_summary(results, ratio=3.0, ratio_body=1.0, corr=0.3)["verdict"] == claims.FAILS
    assert _localization_summary(results, ratio=3.0, ratio_body=1.6, corr=0.97)["verdict"] == claims.FAILS
    assert _localization_summary(results, ratio=1.2, ratio_body=1.6, corr=0.3)["verdict"] == claims.FAILS


def test_write_ledger_saves_claims_csv(results):
    claims.write_ledger(results)
    saved = pd.read_csv(results / "claims.csv")
    assert len(saved) == len(claims.build_ledger(results)) and "verdict" in saved


def test_verdict_bars_count_each_notebooks_verdicts(results):
    import matplotlib

    matplotlib.use("Agg")
    from parkit.plots import VERDICT_COLORS, verdict_bars

    ledger = claims.build_ledger(results)
    fig = verdict_bars(ledger)
    ax = fig.axes[0]
    for verdict, color in VERDICT_COLORS.items():
        bars = [b for b in ax.patches if matplotlib.colors.to_hex(b.get_facecolor()) == color]
        assert sum(b.get_width() for b in bars) == (ledger["verdict"] == verdict).sum()
    assert {t.get_text() for t in ax.get_yticklabels()} == {f"notebook {n}" for n in ledger["notebook"].unique()}
