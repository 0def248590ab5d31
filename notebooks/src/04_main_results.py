# %% [markdown]
# # 04 · Main results: PromptPAR against the baselines
#
# **Reproduces:** the paper's comparison tables (Tables I-III: PA100K, PETA, RAPv1) in spirit on this
# run's data: PromptPAR against zero-shot CLIP, a linear probe, deep VPT without regions, full
# fine-tuning and a VTB-style fusion, with mA, Acc, Prec, Recall, F1 and trainable parameters.
# The paper's published rows are shown beside, with their source.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
import pandas as pd
from IPython.display import Markdown, display

from parkit.experiments import run_experiment
from parkit.profiles import profile_dataset, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile)
suffix = "" if profile.is_paper else "-micro"

# %%
METHODS = [
    ("Zero-shot CLIP (expanded sentences)", f"zeroshot-clip{suffix}"),
    ("Linear probe", f"linear-probe{suffix}"),
    ("Deep VPT (no regions)", f"vpt-deep{suffix}"),
    ("Full fine-tuning", f"finetune{suffix}"),
    ("VTB-style fusion", f"vtb{suffix}"),
    ("PromptPAR (parkit)", profile.preset),
]
rows = []
for label, preset in METHODS:
    name = "promptpar" if preset == profile.preset else preset
    exp = run_experiment(name, profile, dataset, preset=preset, epochs=profile.epochs)
    rows.append({"method": label, **{k: exp.row[k] for k in ("mA", "Acc", "Prec", "Rec", "F1")},
                 "trainable": exp.row["trainable"], "trainable %": 100 * exp.row["trainable"] / exp.row["total"]})
results = pd.DataFrame(rows)
save_table(results, RES / "04_main_results_summary")
display(Markdown(f"**This run** ({dataset.name}, profile `{profile.name}`)\n\n" + to_markdown(results)))

# %% [markdown]
# **Reading the table on the compact CLIP (smoke and demo profiles).** The compact CLIP was
# pretrained contrastively on SynthPAR captions that name these very attributes, so its frozen
# image embedding already encodes them well: the linear probe reads that embedding directly,
# whereas PromptPAR reaches it only through the frozen MM-former, whose text
# tokens must learn from about a thousand images in a few epochs which visual tokens to attend to.
# Do not expect the paper's ranking here, and do not read much into one seed: on this 1500-image
# dataset test mA moves by several points between seeds. `benchmarks/micro_budget.py` repeats the
# comparison over three seeds (`benchmarks/results/micro_budget.md`): at this budget (6 epochs)
# the probe leads (68.6 mean test mA) both PromptPAR (65.0) and full fine-tuning (66.0); at
# 24 epochs fine-tuning passes the probe (72.2 vs 69.7), PromptPAR does not (67.9). So on the
# compact CLIP the image side can still gain from adaptation, but prompts on a 4-layer,
# 128-wide encoder read out through a frozen block do not get there in a CPU budget.
# In the paper's setting (CLIP pretrained on web images,
# real pedestrian crops), the frozen embedding is not aligned with PAR attributes, and prompts and
# fusion are what lift PromptPAR above the probe (Tables I-III); the `paper` profile measures that.

# %% [markdown]
# ## The paper's numbers
# Source: PromptPAR (TCSVT 2024) as quoted by secondary sources collected in the method reference
# (spec §13.1); Acc/Prec/Rec of PromptPAR are unverified recollections, marked with `*`. Baselines as
# reported by their papers. Verify against the PDF before citing.

# %%
# NBVAL_CHECK_OUTPUT
paper = pd.DataFrame([
    ("PromptPAR (ViT-L/14)", "PA100K", 87.47, "83.78*", "89.27*", "91.70*", 90.15),
    ("PromptPAR (ViT-L/14)", "PETA", 88.76, "82.84*", "89.04*", "89.74*", 89.18),
    ("PromptPAR (ViT-L/14)", "RAPv1", 85.45, "71.61*", "79.64*", "86.05*", 82.38),
    ("VTB (ViT-B/16 + BERT)", "PA100K", 83.72, "", "", "", 88.21),
    ("VTB (ViT-B/16 + BERT)", "PETA", 85.31, "", "", "", 86.71),
    ("VTB (ViT-B/16 + BERT)", "RAPv1", 82.67, "", "", "", 80.84),
    ("DAFL", "PA100K", 83.54, "", "", "", 88.09),
    ("DAFL", "PETA", 87.07, "", "", "", 86.40),
    ("DAFL", "RAPv1", 83.72, "", "", "", 80.29),
    ("Rethinking ResNet-50", "PA100K", 80.21, "", "", "", 87.40),
    ("Rethinking ResNet-50", "PETA", 83.96, "", "", "", 86.35),
    ("Rethinking ResNet-50", "RAPv1", 79.27, "", "", "", 79.95),
], columns=["method", "dataset", "mA", "Acc", "Prec", "Rec", "F1"])
print(paper.to_string(index=False))

# %%
import matplotlib.pyplot as plt
from parkit.plots import savefig

fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.scatter(results["trainable"].clip(lower=1), results["mA"], s=60)
for _, r in results.iterrows():
    ax.annotate(r["method"], (max(r["trainable"], 1), r["mA"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
ax.set_xscale("log"); ax.set_xlabel("trainable parameters (log)"); ax.set_ylabel("test mA (%)")
ax.set_title(f"Accuracy vs trainable parameters ({dataset.name}, {profile.name})"); ax.grid(alpha=0.3)
savefig(fig, FIG / "04_accuracy_vs_parameters.png");
