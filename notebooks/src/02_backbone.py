# %% [markdown]
# # 02 · The CLIP backbone
#
# **Reproduces:** the backbone part of the paper's setup (frozen CLIP ViT-L/14, Sec. IV-A) and the
# motivation of sentence expansion: zero-shot attribute recognition with the *expanded sentences*
# versus the *bare attribute phrases*.
#
# - How parkit loads OpenAI CLIP: by name (download into a cache), from a local file with a SHA-256
#   check, and what it says when the machine is offline.
# - The compact CLIP ("micro") that parkit pretrains itself on SynthPAR captions and ships in
#   `parkit/assets/`, so the embedded default needs no download.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from parkit.backbone import (BackboneUnavailable, clip_config, count_clip_parameters, list_backbones,
                             load_clip, load_micro_clip)
from parkit.backbone.micro import MICRO_CHECKPOINT
from parkit.profiles import setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)

# %% [markdown]
# ## Backbones parkit knows
# Parameter counts come from the architecture alone (no weights needed).

# %%
# NBVAL_CHECK_OUTPUT
table = pd.DataFrame([{"backbone": n, "parameters": count_clip_parameters(n),
                       "image": clip_config(n)["image_resolution"], "vision width": clip_config(n)["vision_width"],
                       "vision layers": clip_config(n)["vision_layers"], "embed": clip_config(n)["embed_dim"]}
                      for n in list_backbones()])
print(table.to_string(index=False))

# %% [markdown]
# The abstract's trainable fraction is a ratio over the *whole* PromptPAR model, not over CLIP alone:
# counted here for the released 2023 code on RAPv1 (spec §7.4), built as shapes only.

# %%
from parkit import paper
from parkit.experiments import parameter_counts

rap = parameter_counts("promptpar-official", "RAPv1", dict(visual_embed=False), rule="official")
print(f"paper: {paper.fmt(paper.value('PromptPAR', 'RAPv1', 'trainable %'))} of the parameters are tuned "
      f"({paper.value('PromptPAR', 'RAPv1', 'trainable %').source})")
print(f"parkit: {rap['trainable']:,} trainable / {rap['total']:,} in the whole RAPv1 model = {rap['percent']:.3f}%; "
      f"CLIP ViT-L/14 alone has {count_clip_parameters('ViT-L/14'):,}")

# %% [markdown]
# ## Loading OpenAI's weights
# `load_clip("ViT-L/14")` uses the `clip` package's own download into the cache directory. On a
# machine without internet access the error says which file to fetch and where to put it:

# %%
try:
    load_clip("ViT-L/14")
    print("ViT-L/14 loaded from the cache")
except BackboneUnavailable as exc:
    print(exc)

# %% [markdown]
# ## The compact CLIP
# Built from the same `clip.model.CLIP` classes with small widths and depths, contrastively pretrained
# on SynthPAR captions by `python -m parkit pretrain-backbone` (exact command and checksum in
# `parkit/assets/README.md`).

# %%
micro = load_micro_clip()
n = sum(p.numel() for p in micro.parameters())
print(f"micro CLIP: {n / 1e6:.2f} M parameters, file {MICRO_CHECKPOINT.stat().st_size / 1e6:.2f} MB")
print(json.dumps(clip_config("micro"), indent=1))
readme = MICRO_CHECKPOINT.parent / "README.md"
print(readme.read_text()[:1500] if readme.exists() else "(no parkit/assets/README.md: the pretraining record is missing)")

# %% [markdown]
# ## Zero-shot attribute recognition: expanded sentences vs bare phrases
# Each attribute is scored by the cosine similarity between the image and its text. A per-attribute
# decision threshold is fitted on the training split (no weights are trained); mA on the test split.
# "shuffled mA" scores the same decisions against the test labels shuffled across images (200 times):
# what a model that knows nothing about the images gets, with its standard deviation.

# %%
from parkit.backbone.pretrain import evaluate_zero_shot_pa100k
from parkit.data import ensure_synthpar, load_dataset

synth = load_dataset("SynthPAR", ensure_synthpar(n_images=max(profile.synthpar_images, 240), seed=0))
if profile.eval_limit:
    rng = np.random.default_rng(0)
    synth.splits = {k: np.sort(rng.choice(v, min(len(v), 4 * profile.eval_limit), replace=False))
                    for k, v in synth.splits.items()}
zs = evaluate_zero_shot_pa100k(micro, synth, image_size=clip_config("micro")["image_resolution"], log=lambda s: None)
rows = pd.DataFrame([{"text": k, "mA": zs[k]["mA"], "AUC": zs[k]["auc"],
                      "pos. recall": zs[k]["mean_pos_recall"], "neg. recall": zs[k]["mean_neg_recall"],
                      "shuffled mA": zs[k]["chance_mA"], "shuffled sd": zs[k]["chance_std"]}
                     for k in ("sentences", "phrases")])
save_table(rows, RES / "02_zero_shot_summary")
display(Markdown(to_markdown(rows)))

# %%
import matplotlib.pyplot as plt
from parkit.attributes import get_schema
from parkit.plots import region_colors, save_figure

schema = get_schema("PA100K")
idx = [schema.attributes.index(a) for a in zs["attributes"]]
fig, ax = plt.subplots(figsize=(10, 3.6))
x = np.arange(len(idx))
ax.bar(x - 0.2, zs["sentences"]["label_mA"], 0.4, label="expanded sentence",
       color=region_colors([schema.regions[i] for i in idx]))
ax.bar(x + 0.2, zs["phrases"]["label_mA"], 0.4, label="bare phrase", color="lightgrey")
ax.axhline(50, color="k", lw=0.8, ls="--")
ax.set_xticks(x)
ax.set_xticklabels(zs["attributes"], rotation=75, ha="right", fontsize=7)
ax.set_ylabel("zero-shot mA per attribute (%)")
ax.set_title("Compact CLIP, zero-shot on SynthPAR test: sentences (coloured by region) vs phrases")
ax.legend(fontsize=8)
save_figure(fig, FIG / "02_zero_shot_sentences_vs_phrases.png");
