"""Explanations: which image regions drive each attribute (spec §3.5, §4, §13.2).

- `attribute_attention_maps(model, images)`: MM-former attention from each attribute's text token
  to the image patches, head-averaged and upsampled to the image -> (B, A, H, W).
- `gradcam(model, images, attr_idx)`: Grad-CAM of one attribute logit w.r.t. the patch tokens
  entering the MM-former -> (B, H, W).
- `localization(model, dataset, method=...)`: on SynthPAR, the share of each attribute's map inside
  the body region where it is drawn, against chance; `region_summary` per body region.
- `stripe_bands` / `stripe_overlay`: the image band each part token sees (spec §4).
- `plot_attention_grid`, `explain_rows`, `overlay`, `to_display_image`: figures in the paper's style.
"""
from parkit.explain.attention import (ExplainError, attribute_attention_maps, forward_with_attention,
                                      normalize_maps, text_to_patch_attention, upsample_maps)
from parkit.explain.gradcam import gradcam, gradcam_from_tokens, resolve_attribute, stripe_bands
from parkit.explain.localization import localization, region_summary
from parkit.explain.plotting import (REGION_COLORS, STRIPE_COLORS, array_to_png, explain_rows, figure_to_png,
                                     model_inputs, overlay, pick_attributes_by_region, plot_attention_grid,
                                     stripe_overlay,
                                     to_display_image)

__all__ = [
    "ExplainError", "attribute_attention_maps", "forward_with_attention", "normalize_maps",
    "text_to_patch_attention", "upsample_maps", "gradcam", "gradcam_from_tokens", "resolve_attribute",
    "stripe_bands", "localization", "region_summary", "REGION_COLORS", "STRIPE_COLORS", "array_to_png",
    "explain_rows", "figure_to_png", "model_inputs", "overlay", "pick_attributes_by_region", "plot_attention_grid",
    "stripe_overlay", "to_display_image",
]
