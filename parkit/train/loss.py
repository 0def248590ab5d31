"""The training loss of spec §8: weighted binary cross-entropy, main branch + 0.5 × GL branch.

Weights follow Rethinking-of-PAR / DeepMAR-exp: with r_j the fraction of positive training
samples of attribute j, a positive target is weighted exp(1 − r_j) and a negative one exp(r_j), so
rare positives weigh up to e ≈ 2.7 times more than common negatives. The loss is summed over
attributes and averaged over the batch, so its initial value is O(A) (≈ 36 on PETA with A = 35).

Unknown labels (RAP's raw value 2) are excluded from the positive ratio and get weight 0 in the
loss; the official code never meets them because its pickles are binary (spec §8).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

AUX_WEIGHT = 0.5  # spec §8: L = WBCE(Z) + 0.5 · WBCE(S_GL) when the GL branch is on


def positive_ratio(labels, ignore=None) -> np.ndarray:
    """Fraction of positive samples per attribute, unknown entries excluded (spec §8).

    Args:
        labels: (N, A) raw labels (1 positive, 0 negative, other values unknown) or binary targets.
        ignore: optional (N, A) boolean mask of entries to leave out; by default every raw value
            other than 0 and 1 is left out.

    Returns:
        (A,) float64 array r_j in [0, 1]; 0 for an attribute with no known label.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"positive_ratio needs an (N, A) label matrix, got shape {labels.shape}")
    known = (labels == 0) | (labels == 1)
    if ignore is not None:
        known &= ~np.asarray(ignore, dtype=bool)
    pos = ((labels == 1) & known).sum(0)
    return pos / np.maximum(known.sum(0), 1)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, pos_ratio,
                 ignore: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Weighted BCE-with-logits, summed over attributes (spec §8).

    Args:
        logits: (B, A) raw scores.
        targets: (B, A) targets; values > 0.5 count as positive (the official loss binarises at 0.5).
        pos_ratio: (A,) training positive ratios r_j (array or tensor).
        ignore: optional (B, A) bool mask; ignored entries get weight 0.
        reduction: "mean" (sum over attributes, mean over the batch: the official loss), "sum"
            (sum over everything; the engine divides by the global batch size itself so that
            data-parallel ranks with unequal shards still average correctly) or "none" ((B, A)).

    Returns:
        A scalar (or (B, A) for reduction="none"), computed in float32 even under autocast.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"weighted_bce: logits {tuple(logits.shape)} and targets "
                         f"{tuple(targets.shape)} must both be (B, A)")
    logits = logits.float()  # (B, A); bf16 logits would make the per-entry losses coarse
    r = torch.as_tensor(np.asarray(pos_ratio, dtype=np.float32) if not torch.is_tensor(pos_ratio)
                        else pos_ratio, dtype=torch.float32, device=logits.device)
    if r.shape != (logits.shape[1],):
        raise ValueError(f"weighted_bce: pos_ratio has shape {tuple(r.shape)} for "
                         f"{logits.shape[1]} attributes")
    positive = targets.float() > 0.5  # (B, A)
    weight = torch.where(positive, torch.exp(1.0 - r), torch.exp(r))  # (B, A) by broadcasting
    if ignore is not None:
        weight = weight.masked_fill(ignore.to(torch.bool), 0.0)
    per_entry = F.binary_cross_entropy_with_logits(logits, positive.float(), reduction="none")
    per_entry = weight * per_entry  # (B, A)
    if reduction == "none":
        return per_entry
    if reduction == "sum":
        return per_entry.sum()
    if reduction == "mean":
        return per_entry.sum() / max(logits.shape[0], 1)
    raise ValueError(f"weighted_bce: unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def par_loss(output, targets: torch.Tensor, pos_ratio, ignore: Optional[torch.Tensor] = None,
             aux_weight: float = AUX_WEIGHT, reduction: str = "mean") -> dict:
    """Total PromptPAR loss of a model output (spec §8).

    Args:
        output: a `PAROutput` (or anything with `.logits` and `.aux_logits`).
        targets, pos_ratio, ignore, reduction: as in `weighted_bce`.
        aux_weight: weight of the global-local similarity branch (0.5 in the paper).

    Returns:
        {"loss": total, "main": main-branch loss, "aux": GL-branch loss or None}, all scalars.
    """
    main = weighted_bce(output.logits, targets, pos_ratio, ignore, reduction)
    aux_logits = getattr(output, "aux_logits", None)
    if aux_logits is None:
        return {"loss": main, "main": main, "aux": None}
    aux = weighted_bce(aux_logits, targets, pos_ratio, ignore, reduction)
    return {"loss": main + aux_weight * aux, "main": main, "aux": aux}
