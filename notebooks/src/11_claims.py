# %% [markdown]
# # 11 · Claims ledger
#
# **Shows:** each claim of the paper that parkit can test, checked against the tables notebooks
# 02-09 wrote under `results/` (sentence expansion, PromptPAR against each baseline,
# each component of the ablation, an optimal prompt length, attribute-specific attention, the
# parameter counts and the metrics). Each row gives the paper's evidence (from `parkit.paper`), this
# run's measurement as mean ± standard deviation over the profile's seeds, and a verdict: *holds*,
# *does not hold*, or *not measurable in this profile*. The ledger is built by `parkit.claims` from
# the results files alone and saved as `results/claims.csv`; run notebooks 02-09 first.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
from IPython.display import Markdown, display

from parkit.claims import write_ledger
from parkit.plots import save_figure, verdict_bars
from parkit.profiles import setup
from parkit.reporting import to_markdown

profile, FIG, RES = setup(PROFILE)
ledger = write_ledger(RES)
print(f"profile {profile.name}, seeds {list(profile.seeds)}: {len(ledger)} claims written to {RES.name}/claims.csv")
print(ledger["verdict"].value_counts().to_string())

# %%
display(Markdown(to_markdown(ledger)))

# %%
save_figure(verdict_bars(ledger, title=f"The paper's claims in this run ({profile.name})"), FIG / "11_claims_verdicts.png");
