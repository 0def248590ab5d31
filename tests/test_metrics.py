"""parkit.metrics against hand-computed cases, including every edge case of spec §10."""
import numpy as np
import pytest

from parkit.metrics import format_metrics, headline, pedestrian_metrics, per_attribute_table


def _probs(pred):
    """Probabilities that threshold to `pred` at 0.45 and at 0.5 alike."""
    return np.where(np.asarray(pred) == 1, 0.9, 0.1)


def test_hand_computed_three_by_three():
    gt = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 0]])
    probs = np.array([[0.9, 0.5, 0.2], [0.1, 0.3, 0.44], [0.46, 0.45, 0.7]])
    # predictions (> 0.45, strictly): [[1,1,0],[0,0,0],[1,0,1]] -- 0.45 itself is negative
    m = pedestrian_metrics(gt, probs)
    np.testing.assert_allclose(m["label_pos_recall"], [1, 0, 0])
    np.testing.assert_allclose(m["label_neg_recall"], [1, 0.5, 0.5])
    np.testing.assert_allclose(m["label_mA"], [1, 0.25, 0.25])
    assert m["mA"] == pytest.approx(0.5)
    # row 0: Y={0,2}, Ŷ={0,1} -> IoU 1/3, P 1/2, R 1/2; row 1 empty/empty -> 0; row 2 like row 0
    np.testing.assert_allclose(m["instance_acc"], [1 / 3, 0, 1 / 3])
    assert m["Acc"] == pytest.approx(2 / 9)
    assert m["Prec"] == pytest.approx(1 / 3)
    assert m["Rec"] == pytest.approx(1 / 3)
    assert m["F1"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(m["true_pos"], [2, 0, 0])
    np.testing.assert_array_equal(m["false_pos"], [0, 1, 1])
    assert m["threshold"] == 0.45 and m["num_samples"] == 3


def test_f1_is_mean_of_per_sample_f1_not_harmonic_mean():
    gt = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    pred = np.array([[1, 0, 0, 0], [1, 1, 1, 0]])
    # row 0: P 1, R 1/2, F1 2/3; row 1: P 1/3, R 1, F1 1/2
    paper = pedestrian_metrics(gt, _probs(pred))
    assert paper["Prec"] == pytest.approx(2 / 3) and paper["Rec"] == pytest.approx(3 / 4)
    assert paper["F1"] == pytest.approx(7 / 12)
    assert paper["Acc"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    reth = pedestrian_metrics(gt, _probs(pred), variant="rethinking")
    assert reth["F1"] == pytest.approx(12 / 17)  # 2·(2/3)(3/4) / (2/3 + 3/4)
    assert reth["threshold"] == 0.5 and reth["mA"] == pytest.approx(paper["mA"])


def test_thresholds_differ_between_variants():
    gt = np.array([[1], [0]])
    probs = np.array([[0.48], [0.2]])
    assert pedestrian_metrics(gt, probs)["mA"] == pytest.approx(1.0)  # 0.48 > 0.45
    assert pedestrian_metrics(gt, probs, variant="rethinking")["mA"] == pytest.approx(0.5)
    assert pedestrian_metrics(gt, probs, threshold=0.5)["mA"] == pytest.approx(0.5)


def test_edge_empty_gt_and_no_prediction_scores_zero():
    m = pedestrian_metrics(np.zeros((1, 3)), np.full((1, 3), 0.1))
    for k in ("Acc", "Prec", "Rec", "F1"):
        assert m[k] == 0.0  # official edge case, not 1 and not NaN


def test_edge_attribute_without_test_positive_gets_half_neg_recall():
    gt = np.array([[0, 1], [0, 0], [0, 1], [0, 0]])
    pred = np.array([[1, 1], [0, 0], [0, 1], [0, 0]])  # attr 0: 3 of 4 negatives right
    m = pedestrian_metrics(gt, _probs(pred))
    assert m["label_pos_recall"][0] == 0.0
    assert m["label_mA"][0] == pytest.approx(0.75 / 2)
    assert not np.any(np.isnan(m["label_mA"]))


def test_raw_unknown_labels_official_behaviour_and_ignore_mask():
    gt = np.array([[1, 2, 0], [0, 2, 1]])
    pred = np.array([[1, 1, 0], [0, 0, 1]])
    off = pedestrian_metrics(gt, _probs(pred))
    # label level: the all-unknown column has no positive and no negative -> mA_1 = 0
    np.testing.assert_allclose(off["label_mA"], [1, 0, 1])
    np.testing.assert_array_equal(off["gt_pos"] + off["gt_neg"], [2, 0, 2])
    # instance level: the prediction on the unknown entry of row 0 counts like a false positive
    np.testing.assert_allclose(off["instance_acc"], [0.5, 1.0])
    np.testing.assert_allclose(off["instance_prec"], [0.5, 1.0])
    np.testing.assert_allclose(off["instance_rec"], [1.0, 1.0])
    clean = pedestrian_metrics(gt, _probs(pred), ignore="auto")
    np.testing.assert_allclose(clean["instance_acc"], [1.0, 1.0])
    assert clean["Prec"] == pytest.approx(1.0)
    np.testing.assert_array_equal(clean["ignored"], [0, 2, 0])
    explicit = pedestrian_metrics(gt, _probs(pred), ignore=gt == 2)
    assert explicit["Acc"] == clean["Acc"]


def test_ignore_mask_removes_entries_from_label_counts():
    gt = np.array([[1], [1], [0]])
    pred = np.array([[1], [0], [0]])
    m = pedestrian_metrics(gt, _probs(pred), ignore=np.array([[False], [True], [False]]))
    assert m["label_pos_recall"][0] == pytest.approx(1.0)  # the missed positive is ignored
    assert m["gt_pos"][0] == 1


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="same"):
        pedestrian_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        pedestrian_metrics(np.zeros((1, 1)), np.array([[np.nan]]))
    with pytest.raises(ValueError, match="variant"):
        pedestrian_metrics(np.zeros((1, 1)), np.zeros((1, 1)), variant="x")


def test_per_attribute_table_and_formatting():
    gt = np.array([[1, 0], [0, 0], [1, 1]])
    probs = np.array([[0.9, 0.1], [0.2, 0.9], [0.3, 0.8]])
    table = per_attribute_table(gt, probs, ["hat", "bag"])
    assert list(table.index) == ["hat", "bag"]
    assert table.loc["hat", "positives"] == 2 and table.loc["hat", "negatives"] == 1
    assert table.loc["hat", "mA"] == pytest.approx((0.5 + 1.0) / 2)
    assert table.loc["bag", "pos_ratio"] == pytest.approx(1 / 3)
    m = pedestrian_metrics(gt, probs)
    assert headline(m, percent=True)["mA"] == pytest.approx(100 * m["mA"])
    assert format_metrics(m).startswith("mA ")
    with pytest.raises(ValueError, match="attribute names"):
        per_attribute_table(gt, probs, ["only-one"])


# ---------------------------------------------------------------------------------------------
# Zero-shot helpers: mean_auc and fit_thresholds, against cases counted by hand
# ---------------------------------------------------------------------------------------------
# Column 0: positives score 0.35 and 0.8, negatives 0.1 and 0.4 -> 3 of 4 pairs ordered: AUC 0.75
#           (the unknown label on the lowest score 0.0 must be ignored, or it would be 5/6).
# Column 1: positives 0.5 and 0.9, negatives 0.5 (a tie, counts 1/2) and 0.2 -> 3.5 / 4 = 0.875;
#           the unknown label (2) on the top score 0.95 must be ignored.
# Column 2: no negative once the unknown entry is dropped -> skipped.
AUC_SCORES = np.array([[0.1, 0.5, 0.3], [0.4, 0.5, 0.6], [0.35, 0.2, 0.1], [0.8, 0.9, 0.7], [0.0, 0.95, 0.2]])
AUC_LABELS = np.array([[0, 1, 1], [0, 0, 1], [1, 0, 2], [1, 1, 1], [2, 2, 1]])


def test_mean_auc_hand_counted_pairs_ties_and_unknown_labels():
    from parkit.metrics import mean_auc

    assert mean_auc(AUC_SCORES[:, :1], AUC_LABELS[:, :1]) == pytest.approx(0.75)
    assert mean_auc(AUC_SCORES[:, 1:2], AUC_LABELS[:, 1:2]) == pytest.approx(0.875)
    assert mean_auc(AUC_SCORES, AUC_LABELS) == pytest.approx((0.75 + 0.875) / 2)  # column 2 skipped
    assert mean_auc(-AUC_SCORES[:, :1], AUC_LABELS[:, :1]) == pytest.approx(0.25)  # reversed order
    assert np.isnan(mean_auc(AUC_SCORES[:, 2:], AUC_LABELS[:, 2:]))  # no attribute with both classes


def test_fit_thresholds_hand_computed_cuts():
    from parkit.metrics import fit_thresholds

    scores = np.array([[0.1, 0.5, 0.3, 0.7], [0.4, 0.5, 0.6, 0.1], [0.35, 0.2, 0.1, 0.2], [0.8, 0.9, 0.7, 0.3]])
    labels = np.array([[0, 1, 2, 1], [0, 0, 2, 1], [1, 0, 2, 1], [1, 1, 2, 1]])
    th = fit_thresholds(scores, labels)
    # Column 0, descending 0.8 P, 0.4 N, 0.35 P, 0.1 N. Balanced accuracy of "the top k are
    # positive": k=0 0.5, k=1 (1/2 + 2/2) / 2 = 0.75, k=2 0.5, k=3 0.75, k=4 0.5; the first best
    # cut wins, halfway between the scores it separates: (0.8 + 0.4) / 2.
    assert th[0] == pytest.approx(0.6)
    # Column 1, descending 0.9 P, 0.5 P, 0.5 N, 0.2 N: the perfect cut k=2 would split two equal
    # scores, which no threshold can do; k=1 (0.75) is the best possible: (0.9 + 0.5) / 2.
    assert th[1] == pytest.approx(0.7)
    assert th[2] == np.inf                                  # every label unknown: predict negative
    assert th[3] < scores[:, 3].min()                       # only positives: predict all positive
    assert fit_thresholds(scores[:, :1], np.zeros((4, 1)))[0] > scores[:, 0].max()  # only negatives


def test_zero_shot_helpers_reject_mismatched_shapes():
    from parkit.metrics import fit_thresholds, mean_auc

    with pytest.raises(ValueError, match=r"mean_auc needs scores and labels of the same \(N, A\) shape"):
        mean_auc(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="fit_thresholds needs scores and labels"):
        fit_thresholds(np.zeros(4), np.zeros(4))
