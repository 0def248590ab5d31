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
