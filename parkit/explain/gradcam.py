"""Grad-CAM on an attribute logit, and the stripe each part token sees (spec §4, §13.2).

Grad-CAM is the second reading of the paper's attribute heat maps (spec §13.2 leaves open how
they were made). For parkit's PromptPAR the activations are the image patch tokens as they leave
the visual encoder and enter the fusion (the last visual layer's outputs after `proj`, spec §3.2
step 6); for a model with the generic explain hook they are its `"mm_input"` sequence (see
`parkit.explain.attention`). The score is one attribute's logit Z_i. Per image:

    w = mean over patches of dZ_i/dX_patch          (D,)
    cam = relu(X_patch @ w)                          (rows*cols,) -> patch grid -> upsampled

Gradients reach those tokens even when every weight is frozen because the input images are made
to require gradients.

`stripe_bands` turns the model's stripe geometry (spec §4.1/§4.4) into pixel bands for drawing.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from parkit.explain.attention import (ExplainError, eval_mode, forward_with_attention, layout_indices,
                                      model_device, normalize_maps, upsample_maps)
from parkit.model.geometry import GeometryError, stripe_rows

def resolve_attribute(model_or_names, attr: Union[int, str]) -> int:
    """The column index of attribute `attr` (an index or a name) in a model's or a list's attributes."""
    names = list(model_or_names if isinstance(model_or_names, (list, tuple)) else model_or_names.attributes)
    if isinstance(attr, str):
        if attr not in names:
            raise ExplainError(f"unknown attribute {attr!r}; the model's attributes are {names}")
        return names.index(attr)
    idx = int(attr)
    if names and not 0 <= idx < len(names):
        raise ExplainError(f"attribute index {idx} is outside 0..{len(names) - 1}")
    return idx


def gradcam_from_tokens(tokens: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM over tokens: relu(sum_d act[n, d] * mean_n grad[n, d]).

    Args:
        tokens: (B, N, D) activations of the N patch tokens.
        grads: (B, N, D) gradients of the score with respect to them.

    Returns:
        (B, N) non-negative class-activation values.
    """
    weights = grads.mean(dim=1, keepdim=True)  # (B, 1, D): channel importance
    return torch.relu((tokens * weights).sum(dim=-1))  # (B, N)


def gradcam(model: nn.Module, images: torch.Tensor, attr_idx: Union[int, str, Sequence[Union[int, str]]], *,
            size: Optional[Sequence[int]] = None, normalize: bool = True,
            device: Union[str, torch.device, None] = None) -> np.ndarray:
    """Grad-CAM of attribute logits with respect to the patch tokens entering the fusion.

    Args:
        model: a parkit PromptPAR model (or a model honouring the generic explain hook).
        images: (B, 3, H, W) images, normalised as the model expects.
        attr_idx: an attribute index or name, or a list of them (one forward pass serves them all).
        size: (H, W) of the returned maps; default the images' size.
        normalize: min-max scale each map to [0, 1].
        device: where to run; default the model's device.

    Returns:
        (B, H, W) float32 numpy array for one attribute, (B, k, H, W) for a list of k.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ExplainError(f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    single = isinstance(attr_idx, (int, np.integer, str))
    wanted = [resolve_attribute(model, a) for a in ([attr_idx] if single else attr_idx)]
    device = torch.device(device) if device is not None else model_device(model)
    size = tuple(size) if size is not None else tuple(images.shape[-2:])
    # Gradients must flow even through a fully frozen model: let the input carry them.
    x = images.detach().to(device).float().requires_grad_(True)
    cams = []
    with eval_mode(model), torch.enable_grad():
        view = forward_with_attention(model, x, need_tokens=True)
        seq = view.tokens  # (B, L, D)
        rows, cols = view.patch_grid
        patches = layout_indices({"patches": view.token_patches}, "patches", seq.shape[1]).to(seq.device)
        acts = seq[:, patches].detach().float()  # (B, N, D)
        for k, idx in enumerate(wanted):
            if not 0 <= idx < view.logits.shape[1]:
                raise ExplainError(f"attribute index {idx} is outside 0..{view.logits.shape[1] - 1}")
            # Samples are independent in eval mode, so the sum's gradient is each sample's own gradient.
            (grad,) = torch.autograd.grad(view.logits[:, idx].sum(), seq, retain_graph=k < len(wanted) - 1)
            cams.append(gradcam_from_tokens(acts, grad[:, patches].float()))  # (B, N)
    cam = torch.stack(cams, dim=1).reshape(x.shape[0], len(wanted), rows, cols)  # (B, k, rows, cols)
    maps = upsample_maps(cam, size)  # (B, k, H, W)
    if normalize:
        maps = normalize_maps(maps)
    maps = maps.cpu().numpy().astype(np.float32)
    return maps[:, 0] if single else maps


def stripe_bands(height: int, grid_rows: int = 16, div_num: int = 4, overlap_row: int = 2,
                 rows: Optional[Sequence[Tuple[int, int]]] = None) -> List[Tuple[float, float]]:
    """Pixel bands `[y0, y1)` of each part token's stripe on an image `height` pixels tall.

    The stripes are the ones the model's attention mask uses (`parkit.model.geometry.stripe_rows`,
    spec §4.1): for the official 16-row grid, patch rows 0-4, 3-8, 7-12 and 11-15.

    Args:
        height: image height in pixels (the letterboxed model input).
        grid_rows: patch rows of the grid.
        div_num, overlap_row: the stripe settings (spec §2, §4.1).
        rows: explicit inclusive (first_row, last_row) pairs; overrides the three settings above.
    """
    if rows is None:
        try:
            rows = stripe_rows(grid_rows, div_num, overlap_row)
        except GeometryError as err:
            raise ExplainError(str(err)) from None
    step = height / grid_rows
    return [(first * step, (last + 1) * step) for first, last in rows]
