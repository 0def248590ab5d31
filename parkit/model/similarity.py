"""The global-local similarity branch (spec §3.4): auxiliary attribute logits from region-text similarity.

For region tokens R (B, K, E) (global first, then the div_num parts) and text features T (A, E):

    S   = exp(logit_scale) * normalize(R) @ normalize(T).T          (B, K, A)
    p   = softmax(S / tau, over attributes)  [or sigmoid(S / tau)]  (B, K, A)
    g   = p[:, 0];  m+ = max_k p[:, 1:];  m- = min_k p[:, 1:]         (B, A)
    agg = m+ where m+ > ag_threshold else m-
    out = agg_bn((agg + g) / 2)                                       (B, A)

tau (`temperature`, init 1) and `agg_bn` (BatchNorm1d(A)) are trained; logit_scale is CLIP's, frozen.
The official code aggregates only the last sample of the batch and broadcasts it to every sample
(spec §14.3): `aggregation="last_sample"` reproduces that; "per_sample" is the fix. Official keys:
`softmax_model.temperature` and `agg_bn.*` (here `temperature` and `agg_bn.*`).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn


class GlobalLocalSimilarity(nn.Module):
    """Region-text similarity -> max/min region aggregation -> BatchNorm (spec §3.4).

    Args:
        num_attributes: A.
        threshold: ag_threshold (0.5 in the official code).
        aggregation: "per_sample" (clean) or "last_sample" (official bug).
        normalize: "attributes" (softmax over the A attributes, official) or "sigmoid".
    """

    def __init__(self, num_attributes: int, threshold: float = 0.5, aggregation: str = "per_sample",
                 normalize: str = "attributes"):
        super().__init__()
        if aggregation not in ("per_sample", "last_sample"):
            raise ValueError(f"aggregation must be 'per_sample' or 'last_sample', got {aggregation!r}")
        if normalize not in ("attributes", "sigmoid"):
            raise ValueError(f"normalize must be 'attributes' or 'sigmoid', got {normalize!r}")
        self.threshold = threshold
        self.aggregation = aggregation
        self.normalize = normalize
        self.temperature = nn.Parameter(torch.ones(()))  # tau, learnable (spec §3.4 step 2)
        self.agg_bn = nn.BatchNorm1d(num_attributes)

    def probabilities(self, regions: torch.Tensor, text: torch.Tensor,
                      logit_scale: torch.Tensor) -> torch.Tensor:
        """Per-region attribute probabilities p: (B, K, A) float32.

        Args:
            regions: (B, K, E) region tokens, global first.
            text: (A, E) text features.
            logit_scale: CLIP's scale s (already exponentiated; 100 for pretrained CLIP).
        """
        r = nn.functional.normalize(regions.float(), dim=-1)  # (B, K, E)
        t = nn.functional.normalize(text.float(), dim=-1)  # (A, E)
        sims = logit_scale.float() * r @ t.t()  # (B, K, A)
        scaled = sims / self.temperature
        if self.normalize == "attributes":
            return scaled.softmax(dim=-1)
        return scaled.sigmoid()

    def aggregate(self, probs: torch.Tensor) -> torch.Tensor:
        """Combine global and local probabilities: (agg + g) / 2, (B, A), before the BatchNorm."""
        g = probs[:, 0]  # (B, A)
        local = probs[:, 1:]  # (B, D, A)
        if local.shape[1] == 0:
            return g
        high = local.max(dim=1).values  # (B, A)
        low = local.min(dim=1).values
        agg = torch.where(high > self.threshold, high, low)  # (B, A)
        if self.aggregation == "last_sample":
            agg = agg[-1:]  # (1, A), broadcast to every sample: the official bug (spec §14.3)
        return (agg + g) / 2

    def forward(self, regions: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                return_details: bool = False):
        """Auxiliary logits S_GL: (B, A) float32 (and, on request, the intermediate tensors).

        Args:
            regions: (B, K, E) region tokens.
            text: (A, E) text features.
            logit_scale: exp(CLIP logit_scale).
            return_details: also return {"region_probs": (B, K, A), "combined": (B, A)}.
        """
        probs = self.probabilities(regions, text, logit_scale)
        combined = self.aggregate(probs)
        logits = self.agg_bn(combined)
        if return_details:
            details: Dict[str, torch.Tensor] = {"region_probs": probs, "combined": combined}
            return logits, details
        return logits
