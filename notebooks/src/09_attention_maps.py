# %% [markdown]
# # 09 · Attribute-specific attention maps
#
# **Reproduces:** the paper's attention-map figure (`featuremap_vis`: image plus one column per
# attribute, heat maps on the head for hair and gender, the torso for jackets, the legs for jeans...).
# The official code does not say how the maps were made (spec §13.2); parkit shows two methods:
#
# 1. **MM-former attention** from each attribute's text token to the image patch tokens;
# 2. **Grad-CAM** of each attribute's logit with respect to the patch tokens.
#
# It also shows which horizontal stripe each part token may attend to (the region-aware mask).

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
from parkit.experiments import run_experiment
from parkit.explain import explain_rows, model_inputs, stripe_overlay
from parkit.plots import save_figure
from parkit.profiles import profile_dataset, setup

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile)
model = run_experiment("promptpar", profile, dataset, epochs=profile.epochs).load_model().eval()

# %%
rows = dataset.split_indices("test")[:3]
show = [dataset.attributes.index(a) for a in ("Female", "Hat", "Glasses", "LongSleeve", "Trousers", "Skirt&Dress",
                                              "boots", "Backpack") if a in dataset.attributes][:6]
show = show or list(range(min(6, dataset.num_attributes)))  # a dataset with other attribute names

# %% [markdown]
# ## MM-former attention: attribute token → image patches

# %%
fig = explain_rows(model, dataset, rows, show, method="attention",
                   title="MM-former attention from each attribute's text token")
save_figure(fig, FIG / "09_attention_maps.png");

# %% [markdown]
# ## Grad-CAM on the attribute logit

# %%
fig = explain_rows(model, dataset, rows, show, method="gradcam", title="Grad-CAM of each attribute's logit")
save_figure(fig, FIG / "09_gradcam.png");

# %% [markdown]
# ## Which stripe each part token sees

# %%
fig = stripe_overlay(model, model_inputs(model, dataset, rows[:1])[0])
save_figure(fig, FIG / "09_stripes.png");

# %% [markdown]
# ## Is each attribute's map where the attribute is? Measured
#
# **What the paper shows** (spec §13.2, `featuremap_vis.png`): three RAPv1 pedestrians with one
# jet heat map per attribute, concentrated on the head for hair and gender, the torso for the
# jacket, the legs for jeans, the feet for leather shoes and the hand for "other": attention is
# *attribute-specific*. The paper shows it on three images and measures nothing.
#
# SynthPAR's renderer knows where it drew each attribute (`parkit.data.synthpar.body_regions`),
# so here the claim is measured (`parkit.explain.localization`) on the first test images, for
# every attribute with a body region and the images that show it:
#
# - **share / chance** (`ratio`): the fraction of the map's mass inside the attribute's region
#   (head, torso, legs, feet box, mapped through the letterbox onto the patch grid), divided by
#   the region's area share of the grid, what a uniform map would put there;
# - **pointing game** (`hit_rate`): how often the map's peak lies inside the region, against the
#   same area share (`hit_chance`);
# - **mean pairwise correlation** of one image's attribute maps: near 1.0 means one blob for
#   every attribute, i.e. maps that are not attribute-specific at all;
# - **share / body chance** (`ratio_body`): the same share against the region's part of the
#   person's whole-body box. Grid chance is a low bar: the person covers only about a third of
#   the letterboxed grid, so one even blob over the person scores about 3x chance in *every*
#   region. Only `ratio_body` above 1 says a map prefers the attribute's own part of the body.
#
# The bar the paper's figure implies (issue 13): each body region's attributes at least 1.5x
# chance, and one image's maps clearly different from each other (correlation below 0.9).

# %%
import pandas as pd

from parkit.explain import localization, region_summary
from parkit.explain.localization import plot_localization

loc_images = min(120, profile.eval_limit or 120)
if dataset.name.startswith("SynthPAR"):
    loc = {m: localization(model, dataset, split="test", method=m, limit=loc_images) for m in ("attention", "gradcam")}
    loc_table = pd.concat([df.assign(method=m) for m, df in loc.items()], ignore_index=True)
    loc_summary = pd.concat([region_summary(df) for df in loc.values()], ignore_index=True)
    loc_table.to_csv(RES / "09_localization.csv", index=False)
    loc_summary.to_csv(RES / "09_localization_summary.csv", index=False)
    for m, df in loc.items():
        print(f"{m}: {df.attrs['n_images']} test images, mean pairwise correlation of an image's maps "
              f"{df.attrs['mean_pairwise_correlation']:.3f}")
    display(loc_table.round(3))
else:
    loc = None
    print(f"{dataset.name} has no drawn body regions: localization needs SynthPAR")

# %% [markdown]
# Per body region: the mean ratio to chance of the region's attributes, and whether it reaches 1.5x.

# %%
if loc is not None:
    display(loc_summary.round(3))
    fig = plot_localization(loc, title="Share of each attribute's map inside its body region, / chance")
    save_figure(fig, FIG / "09_localization.png");
