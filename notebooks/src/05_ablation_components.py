# %% [markdown]
# # 05 · Component ablation
#
# **Reproduces:** the paper's component ablation (region division, visual mask, global-local
# similarity branch, text prompts, MM-former fusion). parkit adds the comparison the official code
# cannot make: text prompts in the **official** placement (after the end token under a causal mask:
# provably inert, spec §6) versus the **effective** placement (after the start token).
# The paper's ablation values could not be retrieved (spec §13.1), so only this run's numbers appear.

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

# %%
VARIANTS = [
    ("full PromptPAR", {}),
    ("- region division (no part tokens, mask, GL)", dict(use_div=False, use_vismask=False, use_gl=False)),
    ("- visual mask", dict(use_vismask=False)),
    ("- global-local branch", dict(use_gl=False)),
    ("text prompts: official (inert)", dict(text_prompt_placement="official")),
    ("- text prompts", dict(use_textprompt=False)),
    ("linear fusion instead of MM-former", dict(use_mm_former=False)),
]
if profile.name == "smoke":
    VARIANTS = VARIANTS[:3]
rows = []
for label, overrides in VARIANTS:
    exp = run_experiment("ablate:" + label, profile, dataset, overrides=overrides, epochs=profile.ablation_epochs)
    rows.append({"variant": label, **{k: exp.row[k] for k in ("mA", "Acc", "F1")}, "trainable": exp.row["trainable"]})
ablation = pd.DataFrame(rows)
ablation["ΔmA"] = ablation["mA"] - ablation["mA"].iloc[0]
save_table(ablation, RES / "05_ablation_components_summary")
display(Markdown(to_markdown(ablation)))

# %%
import matplotlib.pyplot as plt
from parkit.plots import savefig

fig, ax = plt.subplots(figsize=(7, 0.45 * len(ablation) + 1.2))
colors = ["#1f77b4"] + ["#d62728" if d < 0 else "#2ca02c" for d in ablation["ΔmA"].iloc[1:]]
ax.barh(ablation["variant"][::-1], ablation["mA"][::-1], color=colors[::-1])
ax.set_xlabel("test mA (%)")
lo = ablation["mA"].min()
ax.set_xlim(max(0, lo - 5), ablation["mA"].max() + 2)
ax.set_title(f"Component ablation ({dataset.name}, {profile.ablation_epochs} epochs each)")
savefig(fig, FIG / "05_ablation_components.png");
