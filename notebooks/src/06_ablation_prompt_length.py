# %% [markdown]
# # 06 · Prompt length and depth
#
# **Reproduces:** the paper's prompt-length ablation (visual prompt tokens per layer; the released code
# moved from 25 to 50) and prompt depth (number of prompted layers), plus the text prompt length.
# Each point is the mean over the profile's seeds of full training runs with the same budget; mA is
# plotted against the length and against the trainable parameters it costs.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
from IPython.display import Markdown, display

from parkit import claims
from parkit.experiments import show_plan, sweep, sweep_specs
from parkit.plots import metric_curve, save_figure
from parkit.profiles import profile_dataset, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile, name=profile.ablation_dataset)  # paper: RAPv1 unless $PARKIT_ABLATION_DATASET
SWEEPS = {"vis_prompt": profile.prompt_lengths, "vis_depth": profile.prompt_depths,
          "text_prompt": profile.text_prompt_lengths}
show_plan([spec for setting, values in SWEEPS.items() for spec in sweep_specs(profile, setting, values)],
          profile, [dataset]);

# %% [markdown]
# ## Visual prompt length
# With region division the prompts are split into 1 + 4 equal groups, so lengths are multiples of 5.

# %%
length = sweep(profile, dataset, "vis_prompt", SWEEPS["vis_prompt"])
save_table(length, RES / "06_prompt_length_summary")
save_table(length.attrs["per_seed"], RES / "06_prompt_length_seeds")
display(Markdown(to_markdown(length)))
display(Markdown(claims.notes(RES, "06")))

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
metric_curve(length, "vis_prompt", "mA", xlabel="visual prompt tokens per layer", ax=axes[0],
             title="mA vs visual prompt length")
metric_curve(length, "trainable", "mA", xlabel="trainable parameters", ax=axes[1],
             title="mA vs trainable parameters")
for p, t, m in zip(length.vis_prompt, length.trainable, length.mA):
    axes[1].annotate(f"P={p}", (t, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
save_figure(fig, FIG / "06_prompt_length.png");

# %% [markdown]
# ## Prompt depth (number of layers that receive fresh prompts)

# %%
depth = sweep(profile, dataset, "vis_depth", SWEEPS["vis_depth"])
save_table(depth, RES / "06_prompt_depth_summary")
display(Markdown(to_markdown(depth)))
fig = metric_curve(depth, "vis_depth", "mA", xlabel="prompted layers", title="mA vs prompt depth")
save_figure(fig, FIG / "06_prompt_depth.png");

# %% [markdown]
# ## Text prompt length (effective placement)

# %%
text = sweep(profile, dataset, "text_prompt", SWEEPS["text_prompt"])
save_table(text, RES / "06_text_prompt_length_summary")
display(Markdown(to_markdown(text)))
fig = metric_curve(text, "text_prompt", "mA", xlabel="text prompt tokens per layer", title="mA vs text prompt length")
save_figure(fig, FIG / "06_text_prompt_length.png");
