# %% [markdown]
# # 05 · Component ablation
#
# **Reproduces:** the paper's component ablation (region division, visual mask, global-local
# similarity branch, text prompts, MM-former fusion). parkit adds the comparison the official code
# cannot make: text prompts in the **official** placement (after the end token under a causal mask:
# provably inert, spec §6) versus the **effective** placement (after the start token).
# The paper's ablation values could not be retrieved (spec §13.1), so only this run's numbers appear,
# as mean and standard deviation over the profile's seeds.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
from IPython.display import Markdown, display

from parkit import claims
from parkit.experiments import ablation_specs, compare, show_plan
from parkit.plots import ablation_bars, save_figure
from parkit.profiles import profile_dataset, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile, name=profile.ablation_dataset)  # paper: RAPv1 unless $PARKIT_ABLATION_DATASET

# %%
show_plan(ablation_specs(profile), profile, [dataset]);

# %%
ablation = compare(ablation_specs(profile), profile, dataset, metrics=("mA", "Acc", "F1"), label="variant")
ablation["ΔmA"] = ablation["mA"] - ablation["mA"].iloc[0]
save_table(ablation, RES / "05_ablation_components_summary")
save_table(ablation.attrs["per_seed"], RES / "05_ablation_components_seeds")
display(Markdown(to_markdown(ablation)))

# %% [markdown]
# ### This table and the paper's claims (from the claims ledger, notebook 11)

# %%
display(Markdown(claims.notes(RES, "05")))

# %%
fig = ablation_bars(ablation, title=f"Component ablation ({dataset.name}, {profile.ablation_epochs} epochs each)")
save_figure(fig, FIG / "05_ablation_components.png");
