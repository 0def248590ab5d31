# %% [markdown]
# # 10 · Attribute explorer
#
# **Shows:** an interactive view of the trained PromptPAR model, one pedestrian at a time (the paper's
# prediction examples, `attResults_vis`, and attention-map figure, `featuremap_vis`, spec §13.2, made
# explorable). Pick a test image or upload your own; the chosen attribute's heat map is drawn on the
# letterboxed image (MM-former attention from the attribute's text token, Grad-CAM of its logit, or
# the stripes the part tokens see, spec §4); bars show every attribute's probability against the
# threshold, with false positives and false negatives in their own colours; a filter keeps the images
# where the chosen attribute is wrong. Probabilities are computed once, so the threshold slider and the
# filter react at once. Static versions of the maps are in notebook 09.
#
# Widgets need a live kernel: a static copy of this notebook shows the explorer's view as a picture
# below the widget.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
from parkit.experiments import run_experiment
from parkit.plots import save_figure
from parkit.profiles import profile_dataset, setup
from parkit.widgets import AttributeExplorer, explorer_view_figure

profile, FIG, RES = setup(PROFILE)
dataset = profile_dataset(profile)
# The run notebook 03 trained (read back from the run cache; trained here when it is missing).
model = run_experiment("promptpar", profile, dataset, epochs=profile.epochs).load_model().eval()

# %%
explorer = AttributeExplorer(model, dataset, split="test", max_images=profile.eval_limit)
explorer

# %% [markdown]
# ## The explorer's view as a static picture
# What the widget above shows for its current image, attribute and threshold (the image with the
# attention overlay, the probability bars against the threshold), drawn by `explorer_view_figure` so a
# reader without a kernel sees it too.

# %%
save_figure(explorer_view_figure(explorer), FIG / "10_explorer_view.png");
