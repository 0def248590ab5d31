"""Pedestrian-attribute metrics: pure numpy functions of labels and probabilities.

This module owns the evaluation protocol of spec §10 (the official `get_pedestrian_metrics`) and
the Rethinking-of-PAR variant used by many other papers:

================  ====================================  =========================================
                  ``variant="promptpar"`` (paper)       ``variant="rethinking"``
================  ====================================  =========================================
threshold         probability > 0.45                    probability > 0.5
mA                mean over attributes of (pos recall + neg recall) / 2 (same in both)
Acc               mean over samples of |Y ∩ Ŷ| / |Y ∪ Ŷ| (a per-sample IoU; same in both)
Prec, Rec         means over samples of the per-sample precision / recall (same in both)
F1                **mean of the per-sample F1s**        harmonic mean of mean Prec and mean Rec
================  ====================================  =========================================

Every denominator gets ε = 1e-20, as in the official code, which fixes the edge cases (spec §10):
an attribute with no positive test sample gets pos recall 0 (so mA_j = neg recall / 2), and a
sample with no positive label and no positive prediction gets Acc = Prec = Rec = F1 = 0.

**Raw labels with unknown values** (RAP marks "unknown" as 2; spec §10 "Ground truth"). The
official function counts positives as ``gt == 1`` and negatives as ``gt == 0`` everywhere, so with
``ignore=None`` and such a matrix this module gives exactly what it gives:

* label-based (mA, pos/neg recall): an entry with any other value is neither a positive nor a
  negative; a prediction on it is neither a TP/FN nor a TN/FP;
* instance-based (Acc, Prec, Rec, F1): the ground-truth set Y_i holds the entries equal to 1, the
  predicted set Ŷ_i holds every predicted entry, **including predictions on unknown entries**.
  So a positive prediction on an unknown label enlarges |Ŷ_i| and |Y_i ∪ Ŷ_i| like a false
  positive, while a negative prediction on it counts nowhere.

With an ignore mask (or ``ignore="auto"``, which ignores every raw value other than 0 and 1),
ignored entries are removed from both label-based and instance-based counts: the clean protocol
that matches the training loss (spec §8 excludes them too).

Two helpers for scores that are not probabilities (a CLIP's zero-shot similarities):
`fit_thresholds` fits one balanced-accuracy-optimal threshold per attribute, and `mean_auc` is
the threshold-free mean ROC-AUC.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

EPS = 1e-20  # spec §10: added to every denominator, never a clip
VARIANTS = {"promptpar": 0.45, "rethinking": 0.5}  # default threshold of each protocol

IgnoreArg = Union[None, str, np.ndarray]


def _check_inputs(gt, probs, ignore: IgnoreArg):
    gt = np.asarray(gt)
    probs = np.asarray(probs, dtype=np.float64)
    if gt.ndim != 2 or probs.shape != gt.shape:
        raise ValueError(
            f"pedestrian_metrics needs gt and probs of the same (N, A) shape, got gt {gt.shape} and "
            f"probs {probs.shape}; pass one row per image and one column per attribute")
    if not np.all(np.isfinite(probs)):
        raise ValueError("pedestrian_metrics: probs contain NaN or inf; check the model outputs")
    if isinstance(ignore, str):
        if ignore != "auto":
            raise ValueError(f"ignore must be None, 'auto' or a boolean (N, A) mask, got {ignore!r}")
        ignore = (gt != 0) & (gt != 1)
    elif ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask has shape {ignore.shape}, expected {gt.shape}")
    return gt, probs, ignore


def pedestrian_metrics(gt, probs, threshold: Optional[float] = None, variant: str = "promptpar",
                       ignore: IgnoreArg = None) -> dict:
    """Label-based and instance-based PAR metrics (spec §10).

    Args:
        gt: (N, A) ground truth. Raw values are allowed: 1 is positive, 0 negative, anything
            else (RAP's 2 = unknown, WIDER's -1) is neither for the label-based metrics.
        probs: (N, A) predicted probabilities (sigmoid of the logits).
        threshold: a prediction is positive when ``probs > threshold`` (strictly greater, as in
            the official code). Default: 0.45 for "promptpar", 0.5 for "rethinking".
        variant: "promptpar" (F1 = mean of per-sample F1s) or "rethinking" (F1 = harmonic mean
            of mean Prec and mean Rec).
        ignore: None (official behaviour on raw labels, see the module docstring), "auto"
            (ignore raw values other than 0/1) or an (N, A) boolean mask of entries to ignore.

    Returns:
        A dict with the five headline numbers "mA", "Acc", "Prec", "Rec", "F1" (fractions in
        [0, 1]); "mean_pos_recall" / "mean_neg_recall"; per-attribute (A,) arrays "label_mA",
        "label_pos_recall", "label_neg_recall", "label_prec", "label_acc", "label_f1"; per-sample
        (N,) arrays "instance_acc", "instance_prec", "instance_rec", "instance_f1"; (A,) counts
        "gt_pos", "gt_neg", "true_pos", "true_neg", "false_pos", "false_neg", "ignored"; and
        "threshold", "variant", "num_samples", "num_attributes".
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown metric variant {variant!r}; choose one of {sorted(VARIANTS)}")
    threshold = VARIANTS[variant] if threshold is None else float(threshold)
    gt, probs, ignore = _check_inputs(gt, probs, ignore)
    pred = probs > threshold  # (N, A) bool
    pos = gt == 1  # (N, A) ground-truth positives
    neg = gt == 0  # (N, A) ground-truth negatives
    if ignore is not None:
        pos, neg = pos & ~ignore, neg & ~ignore
        counted_pred = pred & ~ignore  # predictions on ignored entries count nowhere
    else:
        counted_pred = pred  # official: Ŷ_i holds every predicted entry, unknown ones included

    # ---- label-based, per attribute j over samples
    tp = (pos & pred).sum(0).astype(np.float64)  # (A,)
    fn = (pos & ~pred).sum(0).astype(np.float64)
    tn = (neg & ~pred).sum(0).astype(np.float64)
    fp = (neg & pred).sum(0).astype(np.float64)
    gt_pos, gt_neg = pos.sum(0).astype(np.float64), neg.sum(0).astype(np.float64)
    pos_recall = tp / (gt_pos + EPS)  # 0 when the attribute has no test positive (spec §10)
    neg_recall = tn / (gt_neg + EPS)
    label_ma = (pos_recall + neg_recall) / 2
    label_prec = tp / (tp + fp + EPS)
    label_acc = tp / (tp + fp + fn + EPS)
    label_f1 = 2 * label_prec * pos_recall / (label_prec + pos_recall + EPS)

    # ---- instance-based, per sample i over attributes
    inter = (pos & counted_pred).sum(1).astype(np.float64)  # (N,) |Y_i ∩ Ŷ_i|
    union = (pos | counted_pred).sum(1).astype(np.float64)  # (N,) |Y_i ∪ Ŷ_i|
    n_pred = counted_pred.sum(1).astype(np.float64)  # (N,) |Ŷ_i|
    n_gt = pos.sum(1).astype(np.float64)  # (N,) |Y_i|
    inst_acc = inter / (union + EPS)
    inst_prec = inter / (n_pred + EPS)
    inst_rec = inter / (n_gt + EPS)
    inst_f1 = 2 * inst_prec * inst_rec / (inst_prec + inst_rec + EPS)

    acc, prec, rec = (float(np.mean(v)) if v.size else 0.0 for v in (inst_acc, inst_prec, inst_rec))
    if variant == "promptpar":
        f1 = float(np.mean(inst_f1)) if inst_f1.size else 0.0  # spec §10 / §14 item 25
    else:
        f1 = 2 * prec * rec / (prec + rec + EPS)  # Rethinking-of-PAR

    return {
        "mA": float(np.mean(label_ma)) if label_ma.size else 0.0,
        "Acc": acc, "Prec": prec, "Rec": rec, "F1": float(f1),
        "mean_pos_recall": float(np.mean(pos_recall)) if pos_recall.size else 0.0,
        "mean_neg_recall": float(np.mean(neg_recall)) if neg_recall.size else 0.0,
        "label_mA": label_ma, "label_pos_recall": pos_recall, "label_neg_recall": neg_recall,
        "label_prec": label_prec, "label_acc": label_acc, "label_f1": label_f1,
        "instance_acc": inst_acc, "instance_prec": inst_prec, "instance_rec": inst_rec,
        "instance_f1": inst_f1,
        "gt_pos": gt_pos, "gt_neg": gt_neg, "true_pos": tp, "true_neg": tn,
        "false_pos": fp, "false_neg": fn,
        "ignored": (np.zeros(gt.shape[1]) if ignore is None else ignore.sum(0)).astype(np.float64),
        "threshold": threshold, "variant": variant,
        "num_samples": int(gt.shape[0]), "num_attributes": int(gt.shape[1]),
    }


HEADLINE = ("mA", "Acc", "Prec", "Rec", "F1")


def headline(metrics: dict, percent: bool = False) -> dict:
    """The five reported numbers of a `pedestrian_metrics` result, optionally in percent."""
    scale = 100.0 if percent else 1.0
    return {k: metrics[k] * scale for k in HEADLINE}


def format_metrics(metrics: dict) -> str:
    """One line such as ``mA 85.12 | Acc 78.40 | Prec 86.02 | Rec 87.55 | F1 86.50`` (percent)."""
    return " | ".join(f"{k} {v:6.2f}" for k, v in headline(metrics, percent=True).items())


def per_attribute_table(gt, probs, attributes: Optional[Sequence[str]] = None,
                        threshold: Optional[float] = None, variant: str = "promptpar",
                        ignore: IgnoreArg = None):
    """Per-attribute results as a pandas DataFrame, one row per attribute.

    Args:
        gt, probs, threshold, variant, ignore: as in `pedestrian_metrics`.
        attributes: names for the rows (default "attr_0", "attr_1", ...).

    Returns:
        DataFrame indexed by attribute with columns positives, negatives, ignored, pos_ratio,
        pos_recall, neg_recall, mA, precision, F1 (fractions, not percent).
    """
    import pandas as pd

    m = pedestrian_metrics(gt, probs, threshold=threshold, variant=variant, ignore=ignore)
    a = m["num_attributes"]
    names = list(attributes) if attributes is not None else [f"attr_{j}" for j in range(a)]
    if len(names) != a:
        raise ValueError(f"{len(names)} attribute names for {a} label columns")
    counted = m["gt_pos"] + m["gt_neg"]
    return pd.DataFrame({
        "positives": m["gt_pos"].astype(int), "negatives": m["gt_neg"].astype(int),
        "ignored": m["ignored"].astype(int),
        "pos_ratio": m["gt_pos"] / np.maximum(counted, 1),
        "pos_recall": m["label_pos_recall"], "neg_recall": m["label_neg_recall"],
        "mA": m["label_mA"], "precision": m["label_prec"], "F1": m["label_f1"],
    }, index=pd.Index(names, name="attribute"))


# ---------------------------------------------------------------------------------------------
# Threshold-free and threshold-fitting helpers (zero-shot evaluation of a CLIP's scores)
# ---------------------------------------------------------------------------------------------
def _check_scores(scores, labels, name: str):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"{name} needs scores and labels of the same (N, A) shape, got scores {scores.shape} and "
            f"labels {labels.shape}; pass one row per image and one column per attribute")
    return scores, labels


def fit_thresholds(scores, labels) -> np.ndarray:
    """Per-attribute threshold that maximises the balanced accuracy (mA) on the given rows.

    Args:
        scores: (N, A) scores; a prediction is positive when score > threshold.
        labels: (N, A) raw labels; 1 positive, 0 negative, anything else ignored.

    Returns:
        (A,) thresholds. A cut falls halfway between two adjacent distinct scores. An attribute
        without positives (or negatives) gets a threshold above (below) every score, the best
        choice for it; one whose labels are all unknown gets +inf (predict negative).

    Raises:
        ValueError: scores and labels are not two arrays of the same (N, A) shape.
    """
    scores, labels = _check_scores(scores, labels, "fit_thresholds")
    thresholds = np.empty(scores.shape[1])
    for j in range(scores.shape[1]):
        s, y = scores[:, j], labels[:, j]
        keep = (y == 0) | (y == 1)
        s, pos = s[keep], y[keep] == 1
        n_pos, n_neg = pos.sum(), (~pos).sum()
        if not keep.any():  # every label unknown: nothing to fit, predict negative
            thresholds[j] = np.inf
            continue
        if n_pos == 0 or n_neg == 0:
            thresholds[j] = (s.max() + 1.0) if n_pos == 0 else (s.min() - 1.0)
            continue
        order = np.argsort(-s, kind="stable")  # descending
        s_sorted, pos_sorted = s[order], pos[order]
        # Predicting the top k as positive: tp(k) = cumsum(pos), tn(k) = n_neg - cumsum(neg).
        tp = np.concatenate([[0], np.cumsum(pos_sorted)])
        fp = np.concatenate([[0], np.cumsum(~pos_sorted)])
        balanced = (tp / n_pos + (n_neg - fp) / n_neg) / 2  # (N+1,) for k = 0..N
        # A cut is only possible between distinct scores.
        valid = np.ones_like(balanced, dtype=bool)
        valid[1:-1] = s_sorted[:-1] != s_sorted[1:]
        k = int(np.argmax(np.where(valid, balanced, -1)))
        if k == 0:
            thresholds[j] = s_sorted[0] + 1e-6
        elif k == len(s_sorted):
            thresholds[j] = s_sorted[-1] - 1e-6
        else:
            thresholds[j] = (s_sorted[k - 1] + s_sorted[k]) / 2
    return thresholds


def mean_auc(scores, labels) -> float:
    """Mean over attributes of the ROC-AUC, the chance that a positive outscores a negative.

    Ties count one half (the Mann-Whitney U statistic). Labels other than 0 and 1 are ignored;
    an attribute without a positive or without a negative is skipped.

    Args:
        scores: (N, A) scores, higher = more likely positive.
        labels: (N, A) raw labels; 1 positive, 0 negative, anything else ignored.

    Returns:
        The mean AUC in [0, 1], or NaN when no attribute has both classes.

    Raises:
        ValueError: scores and labels are not two arrays of the same (N, A) shape.
    """
    from scipy.stats import rankdata  # noqa: PLC0415 (scipy is only needed here; keeps the import light)

    scores, labels = _check_scores(scores, labels, "mean_auc")
    aucs = []
    for j in range(scores.shape[1]):
        y = labels[:, j]
        keep = (y == 0) | (y == 1)
        s, pos = scores[keep, j], y[keep] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos and n_neg:
            ranks = rankdata(s)  # average ranks: ties count one half
            aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")
