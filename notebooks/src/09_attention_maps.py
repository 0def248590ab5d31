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
import numpy as np
import torch

from parkit.experiments import run_experiment
from parkit.explain import attribute_attention_maps, gradcam, plot_attention_grid, stripe_overlay
from parkit.plots import savefig
from parkit.profiles import profile_dataset, setup

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile)
model = run_experiment("promptpar", profile, dataset, epochs=profile.epochs).load_model().eval()

# %%
from parkit.data.transforms import build_transform
from PIL import Image

tf = build_transform(train=False, image_size=model.image_size, normalization=model.normalization)
rows = dataset.split_indices("test")[:3]
images = torch.stack([tf(Image.open(dataset.image_paths[i]).convert("RGB")) for i in rows])
show = [a for a in ("Female", "Hat", "Glasses", "LongSleeve", "Trousers", "Skirt&Dress", "boots", "Backpack")
        if a in dataset.attributes][:6]
attr_idx = [dataset.attributes.index(a) for a in show]

# %% [markdown]
# ## MM-former attention: attribute token → image patches

# %%
maps = attribute_attention_maps(model, images)  # (B, A, H, W)
fig = plot_attention_grid(images, maps[:, attr_idx], show, normalization=model.normalization,
                          title="MM-former attention from each attribute's text token")
savefig(fig, FIG / "09_attention_maps.png");

# %% [markdown]
# ## Grad-CAM on the attribute logit

# %%
cams = torch.stack([torch.as_tensor(gradcam(model, images, j)) for j in attr_idx], dim=1)  # (B, k, H, W)
fig = plot_attention_grid(images, cams, show, normalization=model.normalization,
                          title="Grad-CAM of each attribute's logit")
savefig(fig, FIG / "09_gradcam.png");

# %% [markdown]
# ## Which stripe each part token sees

# %%
fig = stripe_overlay(model, images[0])
savefig(fig, FIG / "09_stripes.png");
