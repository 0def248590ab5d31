# %% [markdown]
# # 08 · Zero-shot (identity-disjoint) protocol
#
# **Reproduces:** the paper's PETA-ZS / RAP-ZS evaluation (Jia et al.'s identity-disjoint splits: no
# person of the test set appears in training). parkit uses the official split pickle when present and
# otherwise builds a seeded identity-disjoint split from the identity columns, **labelled as not the
# official split**, with its sizes next to the official ones.
#
# On SynthPAR the same comparison is made with its two shipped protocols: the random split (test people
# also appear in training, with other views and backgrounds) and the identity-disjoint split.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
import pandas as pd
from IPython.display import Markdown, display

from parkit import paper
from parkit.data import load_dataset
from parkit.experiments import run_experiment
from parkit.plots import metric_bars, save_figure
from parkit.profiles import data_root, profile_dataset, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)

# %% [markdown]
# ## Split sizes: official versus parkit's identity-disjoint splits

# %%
rows = []
base = data_root()
for name, folder in (("PETA-ZS", "PETA"), ("RAP-ZS", "RAPv2")):
    if base is not None and (base / folder).is_dir():
        ds = load_dataset(name, base / folder, require_images=False)
        rows.append({"dataset": name, "source": ds.split_source,
                     **{k: len(ds.splits[k]) for k in ("train", "val", "test")},
                     "official sizes": ds.info.get("official_sizes")})
    else:
        rows.append({"dataset": name, "source": "not present (set PARKIT_DATA_ROOT)"})
display(Markdown(to_markdown(pd.DataFrame(rows))))

# %% [markdown]
# ## SynthPAR: random versus identity-disjoint split

# %%
if profile.is_paper:  # PETA's random partition vs the PETA-ZS identity-disjoint protocol
    random_split = load_dataset("PETA", base / "PETA")
    identity_split = load_dataset("PETA-ZS", base / "PETA")
else:
    random_split = profile_dataset(profile)
    identity_split = profile_dataset(profile, split_protocol="identity")
rows = []
for label, ds in (("random split", random_split), ("identity-disjoint split", identity_split)):
    exp = run_experiment("promptpar" if ds is random_split else "promptpar-zs", profile, ds, epochs=profile.epochs)
    rows.append({"protocol": label, "train": len(ds.splits["trainval"]), "test": len(ds.splits["test"]),
                 **{k: exp.row[k] for k in ("mA", "Acc", "F1")}})
zs = pd.DataFrame(rows)
save_table(zs, RES / "08_zero_shot_summary")
display(Markdown(to_markdown(zs)))
fig = metric_bars(zs, "protocol", title=f"Random vs identity-disjoint split ({random_split.name}, {profile.name})")
save_figure(fig, FIG / "08_zero_shot_protocols.png");

# %% [markdown]
# ## The paper's zero-shot numbers
# PromptPAR's own PETA-ZS / RAP-ZS results, the PromptPAR\* rows that JGEL (AAAI 2026) obtained by
# re-running PromptPAR with ViT-B/16 (labelled as such), and the Rethinking ResNet-50 baseline; every
# value and its source comes from `parkit.paper`.

# %%
published = paper.paper_table(["PETA-ZS", "RAP-ZS"], metrics=("mA", "Acc", "Rec", "F1"))
display(Markdown(to_markdown(published) + "\n\n" + published.attrs["legend"]))
