# %% [markdown]
# # 00 · Datasets
#
# **Reproduces:** the dataset statistics of the paper's experimental setup (PA-100K, PETA, RAPv1/v2,
# WIDER, PETA-ZS, RAP-ZS; the supplement's dataset table) and introduces **SynthPAR**, parkit's
# embedded synthetic pedestrian dataset that makes every notebook meaningful on a laptop.
#
# SynthPAR uses PA-100K's 26 attributes, so the paper's sentences apply unchanged. Each attribute is
# drawn where it lives on the body, synthetic people have identities (several images each), and the
# dataset ships a random split and an identity-disjoint (zero-shot) split.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from parkit import paper
from parkit.attributes import get_schema
from parkit.data import ensure_synthpar, load_dataset
from parkit.data.discovery import find_dataset_roots, peta_source_prior_mA, survey_datasets
from parkit.plots import attribute_frequency, cooccurrence_heatmap, image_grid, save_figure
from parkit.profiles import data_root, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)
print(f"profile={profile.name}: figures go to {FIG.name}/, tables to {RES.name}/")

# %% [markdown]
# ## SynthPAR: the embedded default

# %%
root = ensure_synthpar(n_images=max(profile.synthpar_images, 240), seed=0)
synth = load_dataset("SynthPAR", root)
zs = load_dataset("SynthPAR", root, split_protocol="identity")
print(synth.summary())
print(zs.summary())

# %%
rng = np.random.default_rng(0)
fig = image_grid(synth, rng.choice(synth.split_indices("train"), 12, replace=False), ncols=6,
                 title="SynthPAR: random training images with their positive attributes")
save_figure(fig, FIG / "00_synthpar_grid.png");

# %%
fig = attribute_frequency(synth, split="trainval")
save_figure(fig, FIG / "00_synthpar_frequency.png");

# %%
fig = cooccurrence_heatmap(synth)
save_figure(fig, FIG / "00_synthpar_cooccurrence.png");

# %% [markdown]
# Same person, different images: identities make the identity-disjoint split mean what PETA-ZS and
# RAP-ZS mean (no person of the test set is seen in training).

# %%
ids = zs.identities
person = ids[zs.split_indices("test")[0]]
same = np.flatnonzero(ids == person)[:6]
fig = image_grid(zs, same, ncols=6, title=f"SynthPAR identity {person}: {len(np.flatnonzero(ids == person))} images")
save_figure(fig, FIG / "00_synthpar_identity.png");
train_ids = set(ids[zs.split_indices("trainval")])
test_ids = set(ids[zs.split_indices("test")])
print("identities shared by trainval and test:", len(train_ids & test_ids))

# %% [markdown]
# ## The paper's datasets
#
# The official split sizes (supplement) next to what parkit reads from the original annotation files,
# when they are present under `PARKIT_DATA_ROOT` (one folder per dataset). Without them, only the
# official sizes are shown.

# %%
# NBVAL_CHECK_OUTPUT
official = paper.split_sizes_table()
official.insert(1, "attributes", [len(get_schema(name).attributes) for name in official.dataset])
print(f"Source: {paper.SPLIT_SIZES_SOURCE}")
print(official.to_string(index=False))

# %%
survey = survey_datasets(data_root())
real = pd.DataFrame(survey)
for col in ("attributes", "images", "train", "val", "test", "trainval", "unknown labels"):
    if col in real:
        real[col] = real[col].astype("Int64")
table = real.drop(columns=["root"], errors="ignore")  # folders are machine-specific: not in results/
save_table(table, RES / "00_real_datasets")
display(Markdown(to_markdown(table)))

# %%
shown = [r for r in survey if r["status"] == "read" and r["dataset"] in ("PA100K", "PETA")]
for r in shown:
    fig = attribute_frequency(load_dataset(r["dataset"], r["root"], require_images=False), split="trainval")
    save_figure(fig, FIG / f"00_{r['dataset'].lower()}_frequency.png")
if not shown:
    print("Set PARKIT_DATA_ROOT to a folder holding PA100k/ and PETA/ to plot the real attribute frequencies.")

# %% [markdown]
# **Dataset bias.** A predictor that knows only which of PETA's ten source collections an image comes
# from (and each collection's positive rate per attribute on the training images) is scored below on
# the official partition-0 test images. High mA on PETA can partly come from such bias, not from
# attribute recognition. It needs only `PETA.mat` (no images).

# %%
peta_root = find_dataset_roots(data_root())["PETA"]
if peta_root is not None and (peta_root / "PETA.mat").is_file():
    bias = peta_source_prior_mA(peta_root)
    print(f"source-collection predictor: {bias['mA']:.2f} test mA on PETA partition {bias['partition']} "
          f"({bias['train']} training / {bias['test']} test images, {bias['sources']} sources)")
else:
    print("not measured in this run: PETA.mat is not under PARKIT_DATA_ROOT/PETA")
