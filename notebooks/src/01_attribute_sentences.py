# %% [markdown]
# # 01 · Attribute-sentence expansion
#
# **Reproduces:** the paper's expansion of attribute phrases into sentences (Sec. III, "expanded
# sentence"; the lists of Appendix A) for every dataset, their CLIP token lengths, and expansion of a
# custom attribute list through templates.

# %% tags=["parameters"]
import os
PROFILE = os.environ.get("PARKIT_PROFILE", "demo")

# %%
import pandas as pd
from IPython.display import Markdown, display

from parkit.attributes import check_context_length, expand, expand_all, get_schema, list_schemas
from parkit.backbone import tokenize
from parkit.profiles import setup
from parkit.reporting import save_table, to_markdown

profile, FIG, RES = setup(PROFILE)

# %% [markdown]
# ## The official sentences, dataset by dataset

# %%
# NBVAL_CHECK_OUTPUT
counts = pd.DataFrame([(n, len(get_schema(n).attributes)) for n in list_schemas()], columns=["dataset", "attributes"])
print(counts.to_string(index=False))

# %%
def token_length(sentences):
    tokens = tokenize(sentences)
    return (tokens != 0).sum(1).tolist()  # SOT + words + EOT


tables = []
for name in list_schemas():
    s = get_schema(name)
    tables.append(pd.DataFrame({"dataset": name, "#": range(len(s.attributes)), "attribute": s.attributes,
                                "phrase": s.phrases, "sentence": s.sentences, "region": s.regions,
                                "tokens": token_length(s.sentences)}))
sentences = pd.concat(tables, ignore_index=True)
save_table(sentences, RES / "01_sentences")
display(Markdown(to_markdown(sentences[sentences.dataset == "PA100K"])))

# %%
import matplotlib.pyplot as plt
from parkit.plots import save_figure

fig, ax = plt.subplots(figsize=(7, 3.4))
for name, g in sentences.groupby("dataset"):
    ax.hist(g.tokens, bins=range(3, 16), alpha=0.5, label=name)
ax.axvline(77, color="red")
ax.set_xlabel("CLIP tokens per sentence (incl. start/end)")
ax.set_ylabel("attributes")
ax.set_title("Expanded sentences use a fraction of CLIP's 77-token context")
ax.legend(fontsize=8)
save_figure(fig, FIG / "01_token_lengths.png");

# %% [markdown]
# ## Expanding a custom attribute list
#
# Phrases become sentences through templates; several templates per attribute are available for
# ensembling and ablation, and every sentence is checked against CLIP's 77-token context.

# %%
# NBVAL_CHECK_OUTPUT
custom = ["red jacket", "umbrella", "long hair", "sunglasses", "running"]
for phrase, sentence in zip(custom, expand(custom)):
    print(f"{phrase:>12s} -> {sentence}")

# %%
variants = expand_all(custom)
display(pd.DataFrame(variants, index=custom).T.head(6))

# %%
try:
    check_context_length(["A pedestrian " + "wearing a very long description " * 20], ["too long"])
except ValueError as exc:
    print("error as expected:", str(exc)[:200])
