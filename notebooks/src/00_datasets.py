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

from parkit.data import ensure_synthpar, load_dataset
from parkit.plots import attribute_frequency, cooccurrence_heatmap, image_grid, savefig
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
savefig(fig, FIG / "00_synthpar_grid.png");

# %%
fig = attribute_frequency(synth, split="trainval")
savefig(fig, FIG / "00_synthpar_frequency.png");

# %%
fig = cooccurrence_heatmap(synth)
savefig(fig, FIG / "00_synthpar_cooccurrence.png");

# %% [markdown]
# Same person, different images: identities make the identity-disjoint split mean what PETA-ZS and
# RAP-ZS mean (no person of the test set is seen in training).

# %%
ids = zs.identities
person = ids[zs.split_indices("test")[0]]
same = np.flatnonzero(ids == person)[:6]
fig = image_grid(zs, same, ncols=6, title=f"SynthPAR identity {person}: {len(np.flatnonzero(ids == person))} images")
savefig(fig, FIG / "00_synthpar_identity.png");
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
official = pd.DataFrame([
    ("PA100K", 26, 80000, 10000, 10000),
    ("PETA", 35, 9500, 1900, 7600),
    ("PETA-ZS", 35, 11241, 3826, 3933),
    ("RAPv1", 51, 33268, 0, 8317),
    ("RAPv2", 54, 50957, 16986, 16985),
    ("RAP-ZS", 53, 17062, 4628, 4928),
    ("WIDER", 14, 28330, 0, 29161),
], columns=["dataset", "attributes", "train", "val", "test"])
official["trainval"] = official.train + official.val
print(official.to_string(index=False))

# %%
FOLDERS = {"PA100K": ["PA100k", "pa100k", "PA100K"], "PETA": ["PETA", "peta"], "PETA-ZS": ["PETA", "peta"],
           "RAPv1": ["RAP", "RAPv1", "rapv1"], "RAPv2": ["RAPv2", "rapv2", "RAP2"], "RAP-ZS": ["RAPv2", "rapv2"],
           "WIDER": ["WIDER", "wider"]}
rows = []
base = data_root()
for name, folders in FOLDERS.items():
    found = [base / f for f in folders if base is not None and (base / f).is_dir()]
    if not found:
        rows.append({"dataset": name, "status": "not present"})
        continue
    try:
        ds = load_dataset(name, found[0], require_images=False)
        s = ds.summary()
        rows.append({**s, "status": "read", "unknown labels": int(ds.ignore_mask.sum())})
    except Exception as exc:  # a partial copy of a dataset is reported, not fatal
        reason = "annotation file not found" if "no annotation file" in str(exc) else type(exc).__name__
        rows.append({"dataset": name, "status": f"not readable here: {reason}"})
real = pd.DataFrame(rows)
for col in ("attributes", "images", "train", "val", "test", "trainval", "unknown labels"):
    if col in real:
        real[col] = real[col].astype("Int64")
save_table(real, RES / "00_real_datasets")
display(Markdown(to_markdown(real)))

# %%
shown = [r for r in rows if r.get("status") == "read" and r["dataset"] in ("PA100K", "PETA")]
for r in shown:
    ds = load_dataset(r["dataset"], [base / f for f in FOLDERS[r["dataset"]] if (base / f).is_dir()][0],
                      require_images=False)
    fig = attribute_frequency(ds, split="trainval")
    savefig(fig, FIG / f"00_{r['dataset'].lower()}_frequency.png")
if not shown:
    print("Set PARKIT_DATA_ROOT to a folder holding PA100k/ and PETA/ to plot the real attribute frequencies.")

# %% [markdown]
# **Dataset bias.** On PETA, a predictor that only knows which of PETA's ten source collections an
# image comes from already reaches about 68 mA on the partition-0 test images (measured on this
# project's machine); high mA on PETA can partly come from such bias, not from attribute recognition.
