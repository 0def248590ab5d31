"""Attribute schemas of the benchmark datasets: names, phrases, sentences and body regions.

Each schema lists, in label order, the dataset's own attribute names (as its annotation file
spells them), the short phrase of PromptPAR's non-pad preprocess script, the expanded sentence
that PromptPAR feeds to CLIP (spec Appendix A, verbatim), and the body region the attribute
lives in (used to group attributes for explanation and region-level reports).

Three sentence sets are available through `get_schema(name, sentences=...)`:

- ``"official"`` (default): Appendix A verbatim. For RAPv1 this is the hand-written
  template-1 list, because the released RAPv1 preprocessing stores those sentences but feeds
  the short phrases to CLIP (spec §11.2, §14 item 21); parkit uses the sentences.
- ``"phrases"``: the short phrases themselves, which is what the released RAPv1 loader
  actually fed to CLIP (use it to reproduce that behaviour, or as an ablation).
- ``"clean"``: the official sentences with the WIDER typos fixed (spec §14 item 22: missing
  article, leading space, "A pedestrian who is logo/plaid/face mask"). Other datasets have
  no typos, so "clean" equals "official" for them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

REGIONS = ("head", "upper", "lower", "feet", "carried", "whole")
SENTENCE_SETS = ("official", "phrases", "clean")


class SchemaError(ValueError):
    """An unknown schema name or sentence set; the message lists the valid choices."""


@dataclass(frozen=True)
class AttributeSchema:
    """The attribute list of one dataset, in label order.

    Attributes:
        name: canonical dataset name ("PA100K", "PETA", ...).
        attributes: the dataset's own attribute names, in label-column order.
        phrases: short phrase per attribute (spec Appendix A, "short phrase").
        sentences: the sentence fed to CLIP per attribute (depends on `sentence_set`).
        regions: body region per attribute, one of `REGIONS`.
        sentence_set: which sentence set `sentences` holds ("official", "phrases", "clean").
        notes: provenance and known quirks of the list.
    """

    name: str
    attributes: List[str]
    phrases: List[str]
    sentences: List[str]
    regions: List[str]
    sentence_set: str = "official"
    notes: str = ""

    def __post_init__(self):
        n = len(self.attributes)
        for what in ("phrases", "sentences", "regions"):
            if len(getattr(self, what)) != n:
                raise SchemaError(f"schema {self.name}: {len(getattr(self, what))} {what} for {n} attributes")
        bad = sorted(set(self.regions) - set(REGIONS))
        if bad:
            raise SchemaError(f"schema {self.name}: unknown regions {bad}; use one of {REGIONS}")

    def __len__(self) -> int:
        return len(self.attributes)

    def index(self, attribute: str) -> int:
        """Label column of `attribute` (exact name, else case-insensitive)."""
        if attribute in self.attributes:
            return self.attributes.index(attribute)
        low = [a.lower() for a in self.attributes]
        if attribute.lower() in low:
            return low.index(attribute.lower())
        raise SchemaError(f"{self.name} has no attribute {attribute!r}; it has {self.attributes}")

    def region_indices(self, region: str) -> List[int]:
        """Label columns of the attributes in `region`."""
        if region not in REGIONS:
            raise SchemaError(f"unknown region {region!r}; use one of {REGIONS}")
        return [i for i, r in enumerate(self.regions) if r == region]


# --------------------------------------------------------------------------------------------
# Tables: (dataset name, short phrase, official sentence, region), in label order.
# Sentences are spec Appendix A verbatim, typos included.
# --------------------------------------------------------------------------------------------

_PA100K = [
    ("Female", "female", "A female pedestrian", "whole"),
    ("AgeOver60", "age over 60", "A pedestrian over the age of 60", "whole"),
    ("Age18-60", "age 18 to 60", "A pedestrian between the ages of 18 and 60", "whole"),
    ("AgeLess18", "age less 18", "A pedestrian under the age of 18", "whole"),
    ("Front", "front", "A pedestrian seen from the front", "whole"),
    ("Side", "side", "A pedestrian seen from the side", "whole"),
    ("Back", "back", "A pedestrian seen from the back", "whole"),
    ("Hat", "hat", "A pedestrian wearing a hat", "head"),
    ("Glasses", "glasses", "A pedestrian wearing glasses", "head"),
    ("HandBag", "hand bag", "A pedestrian with a handbag", "carried"),
    ("ShoulderBag", "shoulder bag", "A pedestrian with a shoulder bag", "carried"),
    ("Backpack", "backpack", "A pedestrian with a backpack", "carried"),
    ("HoldObjectsInFront", "hold objects in front", "A pedestrian holding objects in front", "carried"),
    ("ShortSleeve", "short sleeve", "A pedestrian in short-sleeved upper wear", "upper"),
    ("LongSleeve", "long sleeve", "A pedestrian in long-sleeved upper wear", "upper"),
    ("UpperStride", "upper stride", "A pedestrian in stride upper wear", "upper"),
    ("UpperLogo", "upper logo", "A pedestrian in upper wear with a logo", "upper"),
    ("UpperPlaid", "upper plaid", "A pedestrian in plaid upper wear", "upper"),
    ("UpperSplice", "upper splice", "A pedestrian in splice upper wear", "upper"),
    ("LowerStripe", "lower stripe", "A pedestrian in striped lower wear", "lower"),
    ("LowerPattern", "lower pattern", "A pedestrian in patterned lower wear", "lower"),
    ("LongCoat", "long coat", "A pedestrian in a long coat", "upper"),
    ("Trousers", "trousers", "A pedestrian in trousers", "lower"),
    ("Shorts", "shorts", "A pedestrian in shorts", "lower"),
    ("Skirt&Dress", "skirt and dress", "A pedestrian in skirts and dresses", "lower"),
    ("boots", "boots", "A pedestrian wearing boots", "feet"),
]

# PETA.mat attribute names after the 35-attribute group_order (spec §11.1).
_PETA = [
    ("accessoryHat", "head hat", "A pedestrian wearing a hat", "head"),
    ("accessoryMuffler", "head muffler", "A pedestrian wearing a muffler", "head"),
    ("accessoryNothing", "head nothing", "A pedestrian with no headwear", "head"),
    ("accessorySunglasses", "head sunglasses", "A pedestrian wearing sunglasses", "head"),
    ("hairLong", "head long hair", "A pedestrian with long hair", "head"),
    ("upperBodyCasual", "upper casual", "A pedestrian in casual upper wear", "upper"),
    ("upperBodyFormal", "upper formal", "A pedestrian in formal upper wear", "upper"),
    ("upperBodyJacket", "upper jacket", "A pedestrian in a jacket", "upper"),
    ("upperBodyLogo", "upper logo", "A pedestrian in upper wear with a logo", "upper"),
    ("upperBodyPlaid", "upper plaid", "A pedestrian in plaid upper wear", "upper"),
    ("upperBodyShortSleeve", "upper short sleeve", "A pedestrian in a short-sleeved top", "upper"),
    ("upperBodyThinStripes", "upper thin stripes", "A pedestrian in upper wear with thin stripes", "upper"),
    ("upperBodyTshirt", "upper t-shirt", "A pedestrian in a t-shirt", "upper"),
    ("upperBodyOther", "upper other", "A pedestrian in other upper wear", "upper"),
    ("upperBodyVNeck", "upper v-neck", "A pedestrian in upper wear with a V-neck", "upper"),
    ("lowerBodyCasual", "lower Casual", "A pedestrian in casual lower wear", "lower"),
    ("lowerBodyFormal", "lower Formal", "A pedestrian in formal lower wear", "lower"),
    ("lowerBodyJeans", "lower Jeans", "A pedestrian in jeans", "lower"),
    ("lowerBodyShorts", "lower Shorts", "A pedestrian in shorts", "lower"),
    ("lowerBodyShortSkirt", "lower Short Skirt", "A pedestrian in a short skirt", "lower"),
    ("lowerBodyTrousers", "lower Trousers", "A pedestrian in trousers", "lower"),
    ("footwearLeatherShoes", "shoes Leather", "A pedestrian in leather shoes", "feet"),
    ("footwearSandals", "shoes Sandals", "A pedestrian in sandals", "feet"),
    ("footwearShoes", "shoes other", "A pedestrian in other types of shoes", "feet"),
    ("footwearSneaker", "shoes sneaker", "A pedestrian in sneakers", "feet"),
    ("carryingBackpack", "attach Backpack", "A pedestrian with a backpack", "carried"),
    ("carryingOther", "attach Other", "A pedestrian with other types of attachments", "carried"),
    ("carryingMessengerBag", "attach messenger bag", "A pedestrian with a messenger bag", "carried"),
    ("carryingNothing", "attach nothing", "A pedestrian with no attachments", "carried"),
    ("carryingPlasticBags", "attach plastic bags", "A pedestrian with plastic bags", "carried"),
    ("personalLess30", "age less 30", "A pedestrian under the age of 30", "whole"),
    ("personalLess45", "age 30 45", "A pedestrian between the ages of 30 and 45", "whole"),
    ("personalLess60", "age 45 60", "A pedestrian between the ages of 45 and 60", "whole"),
    ("personalLarger60", "age over 60", "A pedestrian over the age of 60", "whole"),
    ("personalMale", "male", "A male pedestrian", "whole"),
]

# RAP_annotation.mat attribute_eng[0:51]; sentences = Appendix A template 1 (spec §14 item 21).
_RAPV1 = [
    ("Female", "female", "A female pedestrian", "whole"),
    ("AgeLess16", "age less 16", "A pedestrian under the age of 16", "whole"),
    ("Age17-30", "age 17 30", "A pedestrian between the ages of 17 and 30", "whole"),
    ("Age31-45", "age 31 45", "A pedestrian between the ages of 31 and 45", "whole"),
    ("BodyFat", "body fat", "A pedestrian with a larger body build", "whole"),
    ("BodyNormal", "body normal", "A pedestrian with a normal body build", "whole"),
    ("BodyThin", "body thin", "A pedestrian with a slender body build", "whole"),
    ("Customer", "customer", "A customer", "whole"),
    ("Clerk", "clerk", "A clerk", "whole"),
    ("hs-BaldHead", "head bald head", "A pedestrian with a bald head", "head"),
    ("hs-LongHair", "head long hair", "A pedestrian with long hair", "head"),
    ("hs-BlackHair", "head black hair", "A pedestrian with black hair", "head"),
    ("hs-Hat", "head hat", "A pedestrian wearing a hat", "head"),
    ("hs-Glasses", "head glasses", "A pedestrian wearing glasses", "head"),
    ("hs-Muffler", "head muffler", "A pedestrian wearing a muffler", "head"),
    ("ub-Shirt", "upper shirt", "A pedestrian in a shirt", "upper"),
    ("ub-Sweater", "upper sweater", "A pedestrian in a sweater", "upper"),
    ("ub-Vest", "upper vest", "A pedestrian in a vest", "upper"),
    ("ub-TShirt", "upper t-shirt", "A pedestrian in a t-shirt", "upper"),
    ("ub-Cotton", "upper cotton", "A pedestrian in cotton clothing", "upper"),
    ("ub-Jacket", "upper jacket", "A pedestrian in a jacket", "upper"),
    ("ub-SuitUp", "upper suit up", "A pedestrian in a suit", "upper"),
    ("ub-Tight", "upper tight", "A pedestrian in tight-fitting clothes", "upper"),
    ("ub-ShortSleeve", "upper short sleeve", "A pedestrian in a short-sleeved top", "upper"),
    ("lb-LongTrousers", "lower long trousers", "A pedestrian in long trousers", "lower"),
    ("lb-Skirt", "lower skirt", "A pedestrian in a skirt", "lower"),
    ("lb-ShortSkirt", "lower short skirt", "A pedestrian in a short skirt", "lower"),
    ("lb-Dress", "lower dress", "A pedestrian in a dress", "lower"),
    ("lb-Jeans", "lower jeans", "A pedestrian in jeans", "lower"),
    ("lb-TightTrousers", "lower tight trousers", "A pedestrian in tight trousers", "lower"),
    ("shoes-Leather", "shoes leather", "A pedestrian in leather shoes", "feet"),
    ("shoes-Sport", "shoes sport", "A pedestrian in sports shoes", "feet"),
    ("shoes-Boots", "shoes boots", "A pedestrian in boots", "feet"),
    ("shoes-Cloth", "shoes cloth", "A pedestrian in cloth shoes", "feet"),
    ("shoes-Casual", "shoes casual", "A pedestrian in casual shoes", "feet"),
    ("attach-Backpack", "attach backpack", "A pedestrian carrying a backpack", "carried"),
    ("attach-SingleShoulderBag", "attach shoulder bag", "A pedestrian with a shoulder bag", "carried"),
    ("attach-HandBag", "attach hand bag", "A pedestrian with a handbag", "carried"),
    ("attach-Box", "attach box", "A pedestrian with a box", "carried"),
    ("attach-PlasticBag", "attach plastic bag", "A pedestrian with a plastic bag", "carried"),
    ("attach-PaperBag", "attach paper bag", "A pedestrian with a paper bag", "carried"),
    ("attach-HandTrunk", "attach hand trunk", "A pedestrian carrying a hand trunk", "carried"),
    ("attach-Other", "attach other", "A pedestrian with other attachments", "carried"),
    ("action-Calling", "action calling", "A pedestrian making a call", "whole"),
    ("action-Talking", "action talking", "A pedestrian engaged in conversation", "whole"),
    ("action-Gathering", "action gathering", "A pedestrian gathered with others", "whole"),
    ("action-Holding", "action holding", "A pedestrian holding something", "carried"),
    ("action-Pusing", "action pushing", "A pedestrian pushing something", "carried"),
    ("action-Pulling", "action pulling", "A pedestrian pulling something", "carried"),
    ("action-CarrybyArm", "action carry arm", "A pedestrian carrying something in their arm", "carried"),
    ("action-CarrybyHand", "action carry hand", "A pedestrian carrying something in their hand", "carried"),
]

# RAPv2 attribute names as RAP_annotation.mat (v2) spells them after selected_attribute and
# group_order (spec §11.1). The file spells the gender attribute "Femal".
_RAPV2 = [
    ("hs-BaldHead", "head bald head", "A pedestrian with a bald head", "head"),
    ("hs-LongHair", "head long hair", "A pedestrian with long hair", "head"),
    ("hs-BlackHair", "head black hair", "A pedestrian with black hair", "head"),
    ("hs-Hat", "head hat", "A pedestrian wearing a hat", "head"),
    ("hs-Glasses", "head glasses", "A pedestrian wearing glasses", "head"),
    ("ub-Shirt", "upper shirt", "A pedestrian in a shirt", "upper"),
    ("ub-Sweater", "upper sweater", "A pedestrian in a sweater", "upper"),
    ("ub-Vest", "upper vest", "A pedestrian in a vest", "upper"),
    ("ub-TShirt", "upper t-shirt", "A pedestrian in a t-shirt", "upper"),
    ("ub-Cotton", "upper cotton", "A pedestrian in cotton clothing", "upper"),
    ("ub-Jacket", "upper jacket", "A pedestrian in a jacket", "upper"),
    ("ub-SuitUp", "upper suit up", "A pedestrian dressed in a suit", "upper"),
    ("ub-Tight", "upper tight", "A pedestrian in tight-fitting clothes", "upper"),
    ("ub-ShortSleeve", "upper short sleeve", "A pedestrian in a short-sleeved top", "upper"),
    ("ub-Others", "upper other", "A pedestrian with other upper wear", "upper"),
    ("lb-LongTrousers", "lower long trousers", "A pedestrian in long trousers", "lower"),
    ("lb-Skirt", "lower skirt", "A pedestrian in a skirt", "lower"),
    ("lb-ShortSkirt", "lower short skirt", "A pedestrian in a short skirt", "lower"),
    ("lb-Dress", "lower dress", "A pedestrian in a dress", "lower"),
    ("lb-Jeans", "lower jeans", "A pedestrian in jeans", "lower"),
    ("lb-TightTrousers", "lower tight trousers", "A pedestrian in tight trousers", "lower"),
    ("shoes-Leather", "shoes leather", "A pedestrian in leather shoes", "feet"),
    ("shoes-Sports", "shoes sport", "A pedestrian in sports shoes", "feet"),
    ("shoes-Boots", "shoes boots", "A pedestrian wearing boots", "feet"),
    ("shoes-Cloth", "shoes cloth", "A pedestrian in cloth shoes", "feet"),
    ("shoes-Casual", "shoes casual", "A pedestrian in casual shoes", "feet"),
    ("shoes-Other", "shoes other", "A pedestrian in other footwear", "feet"),
    ("attachment-Backpack", "attach backpack", "A pedestrian carrying a backpack", "carried"),
    ("attachment-ShoulderBag", "attach shoulder bag", "A pedestrian with a shoulder bag", "carried"),
    ("attachment-HandBag", "attach hand bag", "A pedestrian with a handbag", "carried"),
    ("attachment-Box", "attach box", "A pedestrian with a box", "carried"),
    ("attachment-PlasticBag", "attach plastic bag", "A pedestrian with a plastic bag", "carried"),
    ("attachment-PaperBag", "attach paper bag", "A pedestrian with a paper bag", "carried"),
    ("attachment-HandTrunk", "attach hand trunk", "A pedestrian carrying a hand trunk", "carried"),
    ("attachment-Other", "attach other", "A pedestrian with other attachments", "carried"),
    ("AgeLess16", "age less 16", "A pedestrian under the age of 16", "whole"),
    ("Age17-30", "age 17 30", "A pedestrian between the ages of 17 and 30", "whole"),
    ("Age31-45", "age 31 45", "A pedestrian between the ages of 31 and 45", "whole"),
    ("Age46-60", "age 46 60", "A pedestrian between the ages of 46 and 60", "whole"),
    ("Femal", "female", "A female pedestrian", "whole"),
    ("BodyFat", "body fat", "A pedestrian with a larger body build", "whole"),
    ("BodyNormal", "body normal", "A pedestrian with a normal body build", "whole"),
    ("BodyThin", "body thin", "A pedestrian with a slender body build", "whole"),
    ("Customer", "customer", "A customer", "whole"),
    ("Employee", "employee", "An employee", "whole"),
    ("action-Calling", "action calling", "A pedestrian making a call", "whole"),
    ("action-Talking", "action talking", "A pedestrian engaged in conversation", "whole"),
    ("action-Gathering", "action gathering", "A pedestrian gathered with others", "whole"),
    ("action-Holding", "action holding", "A pedestrian holding something", "carried"),
    ("action-Pushing", "action pushing", "A pedestrian pushing something", "carried"),
    ("action-Pulling", "action pulling", "A pedestrian pulling something", "carried"),
    ("action-CarryingByArm", "action carry arm", "A pedestrian carrying something in their arm", "carried"),
    ("action-CarryingByHand", "action carry hand", "A pedestrian carrying something in their hand", "carried"),
    ("action-Other", "action other", "A pedestrian engaged in other actions", "whole"),
]

# RAP-ZS: the RAPv2 list without "Age46-60" (group_order without index 4, spec §11.1).
_RAPZS = [row for row in _RAPV2 if row[0] != "Age46-60"]

# WIDER attr_name.txt names (the dataset spells "Tshiirt"); the 14th is "stripe", which the
# official phrase calls "plaid" (spec §14 item 22).
_WIDER = [
    ("Male", "male", "A pedestrian whose gender is male", "whole"),
    ("longHair", "long hair", "A pedestrian whose hair is long", "head"),
    ("sunglass", "sunglasses", "pedestrian wearing sunglasses", "head"),
    ("Hat", "hat", " pedestrian wearing a hat", "head"),
    ("Tshiirt", "upper t-shirt", "A pedestrian whose upper is t-shirt", "upper"),
    ("longSleeve", "upper long sleeve", "A pedestrian whose upper is long sleeve", "upper"),
    ("formal", "upper formal suits", "A pedestrian whose upper is formal suits", "upper"),
    ("shorts", "lower shorts", "A pedestrian whose lower is shorts", "lower"),
    ("jeans", "lower jeans", "A pedestrian whose lower is jeans", "lower"),
    ("longPants", "lower long pants", "A pedestrian whose lower is long pants", "lower"),
    ("skirt", "lower skirt", "A pedestrian whose lower is skirt", "lower"),
    ("faceMask", "face mask", "A pedestrian who is face mask", "head"),
    ("logo", "logo", "A pedestrian who is logo", "upper"),
    ("stripe", "plaid", "A pedestrian who is plaid", "upper"),
]

# spec §14 item 22: grammatical WIDER sentences; the last one follows attr_name.txt ("stripe").
_WIDER_CLEAN = [
    "A pedestrian whose gender is male",
    "A pedestrian whose hair is long",
    "A pedestrian wearing sunglasses",
    "A pedestrian wearing a hat",
    "A pedestrian in a t-shirt",
    "A pedestrian in long-sleeved upper wear",
    "A pedestrian in a formal suit",
    "A pedestrian in shorts",
    "A pedestrian in jeans",
    "A pedestrian in long pants",
    "A pedestrian in a skirt",
    "A pedestrian wearing a face mask",
    "A pedestrian in clothes with a logo",
    "A pedestrian in striped clothes",
]

_TABLES: Dict[str, Tuple[list, str]] = {
    "PA100K": (_PA100K, "names from PA-100K annotation.mat; sentences spec Appendix A"),
    "PETA": (_PETA, "names from PETA.mat after the 35-attribute group_order; sentences spec Appendix A"),
    "PETA-ZS": (_PETA, "same attributes and sentences as PETA (petazspad.py)"),
    "RAPv1": (_RAPV1, "names from RAP_annotation.mat attribute_eng[0:51]; sentences are Appendix A "
                      "template 1 (the released loader fed the short phrases, spec §14 item 21)"),
    "RAPv2": (_RAPV2, "RAPv2 selected_attribute after group_order; the mat spells 'Femal'"),
    "RAP-ZS": (_RAPZS, "RAPv2 list without Age46-60 (53 attributes)"),
    "WIDER": (_WIDER, "names from WIDER attr_name.txt; official sentences carry typos (spec §14 item 22)"),
}

_CLEAN_OVERRIDES = {"WIDER": _WIDER_CLEAN}

# Aliases are matched after lower-casing and dropping everything but letters and digits.
_ALIASES = {
    "pa100k": "PA100K", "pa100": "PA100K",
    "peta": "PETA",
    "petazs": "PETA-ZS", "petazeroshot": "PETA-ZS",
    "rapv1": "RAPv1", "rap1": "RAPv1", "rap": "RAPv1", "rapv1expand": "RAPv1",
    "rapv2": "RAPv2", "rap2": "RAPv2",
    "rapzs": "RAP-ZS", "rapv2zs": "RAP-ZS", "rap2zs": "RAP-ZS", "rapzeroshot": "RAP-ZS",
    "wider": "WIDER", "widerattribute": "WIDER",
}


def canonical_name(name: str) -> str:
    """The canonical schema name for `name` (case-insensitive, aliases such as "PA100k", "PETAzs").

    Raises:
        SchemaError: `name` is not a known dataset; the message lists the known ones.
    """
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    if key not in _ALIASES:
        raise SchemaError(
            f"unknown attribute schema {name!r}; known: {', '.join(list_schemas())}. "
            f"For a custom attribute list use parkit.attributes.expand() or the 'CSV' dataset loader.")
    return _ALIASES[key]


def list_schemas() -> List[str]:
    """Canonical names of the built-in schemas."""
    return list(_TABLES)


def get_schema(name: str, sentences: str = "official") -> AttributeSchema:
    """The attribute schema of a benchmark dataset.

    Args:
        name: dataset name, case-insensitive, aliases accepted ("PA100k", "RAPV1", "PETAzs", "RAPzs").
        sentences: sentence set, one of `SENTENCE_SETS` (see the module docstring).

    Returns:
        A fresh `AttributeSchema` (its lists may be modified without affecting the registry).

    Raises:
        SchemaError: unknown dataset or sentence set.
    """
    canon = canonical_name(name)
    if sentences not in SENTENCE_SETS:
        raise SchemaError(f"unknown sentence set {sentences!r}; use one of {SENTENCE_SETS}")
    rows, notes = _TABLES[canon]
    names = [r[0] for r in rows]
    phrases = [r[1] for r in rows]
    official = [r[2] for r in rows]
    regions = [r[3] for r in rows]
    if sentences == "phrases":
        chosen = list(phrases)
    elif sentences == "clean":
        chosen = list(_CLEAN_OVERRIDES.get(canon, official))
    else:
        chosen = list(official)
    return AttributeSchema(name=canon, attributes=names, phrases=phrases, sentences=chosen,
                           regions=regions, sentence_set=sentences, notes=notes)
