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
from parkit.data.discovery import survey_datasets
from parkit.experiments import run_experiment, show_plan
from parkit.plots import metric_bars, save_figure
from parkit.profiles import data_root, load_real_dataset, profile_dataset, profile_datasets, setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)

# %% [markdown]
# ## Split sizes: official versus parkit's identity-disjoint splits
# Read from the annotations alone (no image needed), for whatever is under `PARKIT_DATA_ROOT`.

# %%
display(Markdown(to_markdown(pd.DataFrame(survey_datasets(data_root(), ("PETA-ZS", "RAP-ZS"))))))

# %% [markdown]
# ## Random versus identity-disjoint split
# The paper profile trains PromptPAR on each zero-shot protocol present (PETA-ZS, RAP-ZS) and on the
# random split of the same dataset (PETA, RAPv2); smoke and demo on SynthPAR's two protocols.

# %%
PARENT = {"PETA-ZS": "PETA", "RAP-ZS": "RAPv2"}
identity_splits = profile_datasets(profile, "zero-shot")
pairs = []  # (protocol label, dataset, run name)
for zs_ds in identity_splits:
    if profile.is_paper:  # the random split of the same dataset, when it is usable here
        choice = load_real_dataset(profile, PARENT[zs_ds.name])
        print(choice.line)
        random_ds = choice.dataset
    else:
        random_ds = profile_dataset(profile)
    if random_ds is not None:
        pairs.append((f"random split ({random_ds.name})", random_ds, "promptpar"))
    pairs.append((f"identity-disjoint split ({zs_ds.name})", zs_ds, "promptpar-zs"))
for label, ds, run in pairs:  # one run per protocol (seed 0), as the next cell trains
    show_plan([(label, dict(name=run, epochs=profile.epochs))], profile, [ds], seeds=(0,));

# %%
rows = []
for label, ds, run in pairs:
    exp = run_experiment(run, profile, ds, epochs=profile.epochs)
    rows.append({"protocol": label, "train": len(ds.splits["train"]), "test": len(ds.splits["test"]),
                 **{k: exp.row[k] for k in ("mA", "Acc", "F1")}})
zs = pd.DataFrame(rows, columns=["protocol", "train", "test", "mA", "Acc", "F1"])
save_table(zs, RES / "08_zero_shot_summary")
display(Markdown(to_markdown(zs)))

# %%
if len(zs):
    fig = metric_bars(zs, "protocol", title=f"Random vs identity-disjoint split ({profile.name})")
    save_figure(fig, FIG / "08_zero_shot_protocols.png");

# %% [markdown]
# ## The paper's zero-shot numbers
# PromptPAR's own PETA-ZS / RAP-ZS results, the PromptPAR\* rows that JGEL (AAAI 2026) obtained by
# re-running PromptPAR with ViT-B/16 (labelled as such), and the Rethinking ResNet-50 baseline; every
# value and its source comes from `parkit.paper`.

# %%
published = paper.paper_table(["PETA-ZS", "RAP-ZS"], metrics=("mA", "Acc", "Rec", "F1"))
display(Markdown(to_markdown(published) + "\n\n" + published.attrs["legend"]))
