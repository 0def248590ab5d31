"""Attribute attention maps from the MM-former (spec §3.5, §13.2 attention-map figure).

The paper's `featuremap_vis.png` shows one heat map per attribute; the released code does not say
how it was made (spec §13.2). parkit reads it as the attention that each attribute's *text token*
pays to the image *patch tokens* in the last MM-former block: averaged over heads, reshaped to the
patch grid, upsampled to the input size. Grad-CAM (`parkit.explain.gradcam`) is the second method.

`forward_with_attention` turns one forward pass into an `ExplainView` (logits, fused-sequence
attention, where the text and patch tokens sit, the patch grid, and optionally the patch-token
activations for Grad-CAM). It understands two kinds of model:

1. parkit's `PromptPAR`: `model(images, return_attention=True).extras["fusion_attention"]`
   (B, A + L, A + L), head-averaged, over the fused sequence [A text tokens, L visual tokens];
   `model.layout` (a `TokenLayout`) says where the patches sit among the L visual tokens. The
   Grad-CAM activations are the visual tokens entering the fusion (`model.fusion`'s second
   argument: the last visual layer's outputs after `proj`, spec §3.2 step 6), read with a
   forward pre-hook.
2. Any other model (a baseline, or a stand-in with an `attributes` list) that fills `extras`
   itself (the generic explain hook):
   - `"mm_attention"`: (B, heads, L, L) or (B, L, L) attention (query rows, key columns);
   - `"token_layout"`: `{"text": ..., "patches": ...}` positions in that sequence, each a `range`,
     a `slice`, a `(start, stop)` pair or a list of indices (patches row-major);
   - `"patch_grid"`: (rows, cols); and, for Grad-CAM, `"mm_input"`: (B, L, D) the sequence whose
     attention this is, as part of the autograd graph.

Everything after the forward pass is a pure function of tensors (`text_to_patch_attention`,
`upsample_maps`, `normalize_maps`) and is tested on hand-made attention matrices.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parkit.model.promptpar import PromptPAR

# Where a kind of token sits in a sequence: a range, a slice, a (start, stop) pair or explicit indices.
IndexSpec = Union[range, slice, Tuple[int, int], Sequence[int], torch.Tensor]


class ExplainError(ValueError):
    """A model or input cannot be explained; the message says what is missing and how to fix it."""


# ---------------------------------------------------------------------------------------------
# Forward pass with the explain hook
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the duration of the block, then restore its previous mode.

    Explanations must see the inference model: the BatchNorm on the logits (spec §3.5 step 7)
    uses running statistics and DropPath is off only in eval mode.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass
class ExplainView:
    """What the explanations need from one forward pass.

    Attributes:
        logits: (B, A) attribute logits.
        attention: (B, heads, L, L) or (B, L, L) attention over the fused sequence, or None.
        layout: {"text": ..., "patches": ...} positions in the fused sequence (see module docstring).
        patch_grid: (rows, cols).
        tokens: (B, N', D) activations for Grad-CAM (in the autograd graph), or None.
        token_patches: positions of the patch tokens in `tokens`.
    """

    logits: torch.Tensor
    attention: Optional[torch.Tensor]
    layout: Mapping
    patch_grid: Tuple[int, int]
    tokens: Optional[torch.Tensor] = None
    token_patches: Optional[IndexSpec] = None


def forward_with_attention(model: nn.Module, images: torch.Tensor, need_tokens: bool = False) -> ExplainView:
    """Run `model(images, return_attention=True)` and collect what the explanations need.

    Args:
        model: parkit's PromptPAR, or any module honouring the generic explain hook (module docstring).
        images: (B, 3, H, W) normalised images on the model's device.
        need_tokens: also capture the patch-token activations for Grad-CAM.

    Returns:
        An `ExplainView`.

    Raises:
        ExplainError: the model does not accept `return_attention` or returns nothing explainable.
    """
    promptpar = isinstance(model, PromptPAR)
    fusion, layout = (model.fusion, model.layout) if promptpar else (None, None)
    captured = {}
    hook = None
    if need_tokens and promptpar:
        def grab_visual_tokens(module, args, kwargs):  # FusionHead.forward(text, visual, ...)
            captured["visual"] = args[1] if len(args) > 1 else kwargs["visual"]  # (B, L, E)
        hook = fusion.register_forward_pre_hook(grab_visual_tokens, with_kwargs=True)
    try:
        out = model(images, return_attention=True)
    except TypeError as err:
        if "return_attention" not in str(err):
            raise
        raise ExplainError(
            f"{type(model).__name__}.forward does not accept return_attention=True, so it cannot be "
            f"explained; use a PromptPAR model from parkit.create_model, or return the explain extras "
            f"described in parkit.explain.attention") from None
    finally:
        if hook is not None:
            hook.remove()
    extras = getattr(out, "extras", None) or {}
    if "mm_attention" in extras or not promptpar:
        missing = [k for k in ("mm_attention", "token_layout", "patch_grid") if k not in extras]
        if missing:
            raise ExplainError(
                f"{type(model).__name__} returned no {missing} in PAROutput.extras with "
                f"return_attention=True; see parkit.explain.attention for the explain hook")
        view = ExplainView(out.logits, extras["mm_attention"], extras["token_layout"],
                           tuple(int(v) for v in extras["patch_grid"]))
        if need_tokens:
            if "mm_input" not in extras:
                raise ExplainError(f"{type(model).__name__} returned no 'mm_input' (the fused sequence, "
                                   f"(B, L, D)) in PAROutput.extras; Grad-CAM needs it")
            view.tokens, view.token_patches = extras["mm_input"], extras["token_layout"]["patches"]
        return view
    # parkit PromptPAR: fused sequence = [A text tokens, L visual tokens] (spec §3.5 step 3).
    a = out.logits.shape[1]
    grid = (int(layout.grid_rows), int(layout.grid_cols))
    view = ExplainView(out.logits, extras.get("fusion_attention"),
                       {"text": (0, a), "patches": (a + layout.patch_start, a + layout.length)}, grid)
    if need_tokens:
        view.tokens, view.token_patches = captured["visual"], (layout.patch_start, layout.length)
    return view


# ---------------------------------------------------------------------------------------------
# Pure tensor functions
# ---------------------------------------------------------------------------------------------

def layout_indices(layout: Mapping, key: str, length: Optional[int] = None) -> torch.Tensor:
    """The sequence positions of one kind of token, as a LongTensor.

    Args:
        layout: the model's `token_layout` extra.
        key: e.g. "text" or "patches".
        length: the fused sequence length L, to check the indices against.

    Returns:
        (n,) int64 positions.
    """
    if key not in layout:
        raise ExplainError(f"token_layout has no {key!r} entry (it has {sorted(layout)}); the model's "
                           f"explain hook must report where the {key} tokens sit in the fused sequence")
    spec = layout[key]
    if isinstance(spec, slice):
        if length is None and spec.stop is None:
            raise ExplainError(f"token_layout[{key!r}] is an open slice; give its stop")
        idx = torch.arange(length if length is not None else spec.stop)[spec]
    elif isinstance(spec, range):
        idx = torch.tensor(list(spec), dtype=torch.long)
    elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, (int, np.integer)) for v in spec):
        idx = torch.arange(int(spec[0]), int(spec[1]))  # (start, stop), stop exclusive
    else:
        idx = torch.as_tensor(spec, dtype=torch.long).flatten()
    if length is not None and idx.numel() and (idx.min() < 0 or idx.max() >= length):
        raise ExplainError(f"token_layout[{key!r}] points outside the fused sequence of length {length}")
    return idx


def text_to_patch_attention(attention: torch.Tensor, layout: Mapping,
                            patch_grid: Sequence[int]) -> torch.Tensor:
    """Attention from each attribute's text token to the image patches, on the patch grid.

    Args:
        attention: (B, heads, L, L) or (B, L, L) softmax attention (query rows, key columns).
        layout: token layout with "text" (A positions) and "patches" (rows*cols positions).
        patch_grid: (rows, cols).

    Returns:
        (B, A, rows, cols) float32, head-averaged; each map is the share of the text token's
        attention mass that lands on each patch (it sums to at most 1 over the grid).
    """
    if attention.dim() == 4:
        attention = attention.float().mean(dim=1)  # (B, L, L): head average, as in spec §13.2
    elif attention.dim() != 3:
        raise ExplainError(f"mm_attention must be (B, heads, L, L) or (B, L, L), got {tuple(attention.shape)}")
    b, length, length2 = attention.shape
    if length != length2:
        raise ExplainError(f"mm_attention must be square over the sequence, got {tuple(attention.shape)}")
    rows, cols = (int(v) for v in patch_grid)
    text = layout_indices(layout, "text", length).to(attention.device)
    patches = layout_indices(layout, "patches", length).to(attention.device)
    if patches.numel() != rows * cols:
        raise ExplainError(f"token_layout['patches'] has {patches.numel()} positions but the patch grid "
                           f"{rows}x{cols} needs {rows * cols}")
    sub = attention.float()[:, text][:, :, patches]  # (B, A, rows*cols)
    return sub.reshape(b, text.numel(), rows, cols)


def upsample_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling of (B, A, rows, cols) grid maps to (B, A, H, W).

    A patch covers a block of pixels; `align_corners=False` puts each patch value at the centre of
    its block, so the map lines up with the letterboxed image the model saw.
    """
    b, a, rows, cols = maps.shape
    h, w = (int(v) for v in size)
    flat = maps.reshape(b * a, 1, rows, cols).float()
    up = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)  # (B*A, 1, H, W)
    return up.reshape(b, a, h, w)


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max scale each map (the last two dims) to [0, 1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > eps, (maps - lo) / span.clamp_min(eps), torch.zeros_like(maps))


# ---------------------------------------------------------------------------------------------
# The public entry point
# ---------------------------------------------------------------------------------------------

def attribute_attention_maps(model: nn.Module, images: torch.Tensor, *, size: Optional[Sequence[int]] = None,
                             normalize: bool = True, device: Union[str, torch.device, None] = None,
                             return_probs: bool = False):
    """One heat map per attribute: MM-former attention from the attribute's text token to the patches.

    Args:
        model: a parkit PromptPAR model (or a model honouring the generic explain hook).
        images: (B, 3, H, W) images, normalised as the model expects (`model.normalization`).
        size: (H, W) of the returned maps; default the images' size.
        normalize: min-max scale each map to [0, 1] (for display); False keeps attention mass.
        device: where to run; default the model's device.
        return_probs: also return the (B, A) sigmoid probabilities of the same forward pass.

    Returns:
        (B, A, H, W) float32 numpy array, or `(maps, probs)` when `return_probs` is True.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ExplainError(f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    device = torch.device(device) if device is not None else model_device(model)
    size = tuple(size) if size is not None else tuple(images.shape[-2:])
    with eval_mode(model), torch.no_grad():
        view = forward_with_attention(model, images.to(device))
        if view.attention is None:
            raise ExplainError(f"{type(model).__name__} has no MM-former attention to read (built with "
                               f"use_mm_former=False?); use parkit.explain.gradcam instead")
        grid_maps = text_to_patch_attention(view.attention, view.layout, view.patch_grid)  # (B, A, rows, cols)
        if grid_maps.shape[1] != view.logits.shape[1]:
            raise ExplainError(f"token_layout['text'] has {grid_maps.shape[1]} tokens but the model predicts "
                               f"{view.logits.shape[1]} attributes")
        maps = upsample_maps(grid_maps, size)  # (B, A, H, W)
        if normalize:
            maps = normalize_maps(maps)
        probs = torch.sigmoid(view.logits.float())  # (B, A)
    maps_np = maps.cpu().numpy().astype(np.float32)
    return (maps_np, probs.cpu().numpy()) if return_probs else maps_np


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
