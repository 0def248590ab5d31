"""Expanding short attribute phrases into sentences for CLIP's text encoder (spec §11.5).

PromptPAR's sentences are hand-written per dataset (see `schemas`); for a custom attribute list
parkit writes them with named templates ("A pedestrian wearing {x}", "A pedestrian in {x}" ...).
`suggest_template` picks a fitting template per phrase with a small keyword heuristic, `expand`
applies one template (or the heuristic) to a list, `expand_all` returns several sentences per
attribute for prompt ensembling or template ablations, and `check_context_length` verifies
that every sentence fits CLIP's 77-token context before any model is built.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import List, Optional, Sequence

CONTEXT_LENGTH = 77  # CLIP's text context, start and end tokens included

TEMPLATES = {
    "wearing": "A pedestrian wearing {x}",
    "with": "A pedestrian with {x}",
    "in": "A pedestrian in {x}",
    "carrying": "A pedestrian carrying {x}",
    "adjective": "A {x} pedestrian",
    "photo": "A photo of a pedestrian with {x}",
    "seen": "A pedestrian seen from the {x}",
    "action": "A pedestrian {x}",
    "whose": "A pedestrian whose {x}",
    "plain": "{x}",
}

# Named templates whose slot takes a noun phrase: "a"/"an" is added to singular nouns.
_NOUN_TEMPLATES = {"wearing", "with", "in", "carrying", "photo"}

# Templates of `expand_all`: the heuristic sentence, the same sentence as "A photo of ...",
# the bare phrase and a generic "with" sentence. Equal counts per attribute, so the
# sentences can be stacked into an (A, K) grid for ensembling.
ENSEMBLE_TEMPLATES = ("auto", "photo-auto", "plain", "with")


class ContextLengthError(ValueError):
    """A sentence does not fit CLIP's 77-token context; the message names the attribute."""


# Keyword tables of the heuristic. Matching is on the last word of the normalised phrase.
_ADJECTIVES = {"male", "female", "young", "old", "elderly", "adult", "child", "teenager", "fat",
               "thin", "slim", "tall", "overweight", "slender"}
_VIEWS = {"front", "side", "back", "left", "right"}
_CARRIED = {"bag", "bags", "backpack", "handbag", "suitcase", "luggage", "box", "umbrella", "trunk",
            "briefcase", "purse", "stroller", "baby", "phone", "bottle", "cart", "trolley", "bicycle"}
_WORN = {"hat", "cap", "glasses", "sunglasses", "muffler", "scarf", "mask", "helmet", "boots", "shoes",
         "sneakers", "sneaker", "sandals", "heels", "gloves", "tie", "watch", "earrings", "necklace",
         "headphones", "hood", "headscarf", "hijab", "turban", "uniform"}
_CLOTHES = {"shirt", "t-shirt", "jacket", "coat", "dress", "dresses", "skirt", "skirts", "trousers",
            "pants", "jeans", "shorts", "suit", "suits", "sweater", "vest", "hoodie", "top", "clothes",
            "clothing", "wear", "jumpsuit", "overalls", "leggings", "blouse", "cardigan", "tights",
            "stockings"}
_FEATURES = {"hair", "beard", "mustache", "moustache", "tattoo", "head", "face", "makeup"}
_PATTERNS = {"plaid": "plaid", "stripe": "striped", "stripes": "striped", "striped": "striped",
             "stride": "striped", "pattern": "patterned", "patterned": "patterned",
             "splice": "spliced", "casual": "casual", "formal": "formal", "tight": "tight-fitting",
             "logo": None}
_VERBS = {"hold": "holding", "carry": "carrying", "push": "pushing", "pull": "pulling",
          "talk": "talking", "call": "making a call", "calling": "making a call",
          "ride": "riding", "use": "using", "sit": "sitting", "run": "running", "walk": "walking",
          "stand": "standing", "read": "reading", "smoke": "smoking", "eat": "eating", "drink": "drinking"}
_UNCOUNTABLE = {"hair", "clothing", "clothes", "wear", "luggage", "footwear", "headwear", "makeup",
                "jewelry", "jewellery", "cotton", "leather"}
_PLURAL_ENDINGS_NOT_PLURAL = {"dress", "glass", "boss", "bus", "gas"}
_DETERMINERS = {"a", "an", "the", "no", "some", "other", "two", "several", "many", "his", "her", "their"}

# Region prefixes of dataset attribute names ("hs-", "ub-", "upperBody" ...): stripped from the
# phrase and kept as a hint for the template and the region.
_REGION_PREFIX = {
    "hs": "head", "head": "head", "accessory": "head",
    "ub": "upper", "upper": "upper", "up": "upper", "upperbody": "upper",
    "lb": "lower", "lower": "lower", "low": "lower", "lowerbody": "lower",
    "shoes": "feet", "footwear": "feet",
    "attach": "carried", "attachment": "carried", "carrying": "carried",
    "action": "whole", "personal": "whole",
}
_COMPOUNDS = {"t shirt": "t-shirt", "tshirt": "t-shirt", "tshiirt": "t-shirt", "v neck": "v-neck",
              "vneck": "v-neck", "hand bag": "handbag", "sun glasses": "sunglasses"}

_REGION_WORDS = {
    "head": {"hat", "cap", "glasses", "sunglasses", "muffler", "scarf", "mask", "helmet", "hair",
             "bald", "beard", "mustache", "face", "headwear", "hood", "earrings", "headphones"},
    "upper": {"shirt", "t-shirt", "jacket", "coat", "sweater", "vest", "hoodie", "top", "sleeve",
              "sleeves", "blouse", "cardigan", "logo", "suit", "v-neck", "upper"},
    "lower": {"trousers", "pants", "jeans", "shorts", "skirt", "skirts", "dress", "leggings",
              "tights", "stockings", "lower"},
    "feet": {"shoes", "boots", "sneakers", "sneaker", "sandals", "heels", "footwear"},
    "carried": _CARRIED | {"holding", "carrying", "pushing", "pulling", "hold", "carry", "push",
                           "pull", "attachment", "attachments"},
}


def phrase_from_name(name: str) -> str:
    """A readable lower-case phrase from an attribute identifier.

    "UpperLogo" -> "upper logo", "hs-BaldHead" -> "hs bald head", "Age18-60" -> "age 18-60",
    "ub-TShirt" -> "ub t-shirt". Phrases that already contain spaces are only lower-cased.
    """
    text = str(name).strip()
    if " " not in text:
        text = text.replace("_", " ").replace("&", " and ")
        text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)          # camelCase boundary
        text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)     # "TShirt" -> "T Shirt"
        text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)
        text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", text)   # "hs-Bald" -> "hs Bald"
    text = re.sub(r"\s+", " ", text.lower()).strip()
    for k, v in _COMPOUNDS.items():
        text = re.sub(rf"\b{k}\b", v, text)
    return text


def _split_region(words: List[str]) -> tuple:
    """Strip a leading region prefix: (region hint or None, remaining words)."""
    if len(words) > 1 and words[0] in _REGION_PREFIX:
        return _REGION_PREFIX[words[0]], words[1:]
    if len(words) > 2 and " ".join(words[:2]) in ("upper body", "lower body"):
        return _REGION_PREFIX[words[0]], words[2:]
    return None, words


def _with_article(text: str) -> str:
    """Prefix "a"/"an" to a singular countable noun phrase."""
    words = text.split()
    if not words or words[0] in _DETERMINERS:
        return text
    last = words[-1]
    plural = last.endswith("s") and last not in _PLURAL_ENDINGS_NOT_PLURAL
    if plural or last in _UNCOUNTABLE or " and " in text:
        return text
    return ("an " if words[0][0] in "aeiou" else "a ") + text


def _age_sentence(text: str) -> Optional[str]:
    m = re.search(r"\bage\s*(?:over|above|larger|bigger|biger|more than|greater than|>)\s*(\d+)", text)
    if m:
        return f"A pedestrian over the age of {m.group(1)}"
    m = re.search(r"\bage\s*(?:less|under|below|younger|<)\s*(?:than\s*)?(\d+)", text)
    if m:
        return f"A pedestrian under the age of {m.group(1)}"
    m = re.search(r"\bage\s*(\d+)\s*(?:to|-|and|\s)\s*(\d+)", text)
    if m:
        return f"A pedestrian between the ages of {m.group(1)} and {m.group(2)}"
    return None


def _auto(phrase: str) -> tuple:
    """(sentence, template name) chosen by the keyword heuristic."""
    text = phrase_from_name(phrase)
    age = _age_sentence(text)
    if age:
        return age, "age"
    region, words = _split_region(text.split())
    if len(words) == 2 and words[0] == "hair":                    # "hair long" -> "long hair"
        words = [words[1], "hair"]
    body = " ".join(words)
    last, first = words[-1], words[0]
    if len(words) == 1 and last in _ADJECTIVES:
        return TEMPLATES["adjective"].format(x=last), "adjective"
    if len(words) == 1 and last in _VIEWS:
        return TEMPLATES["seen"].format(x=last), "seen"
    if first in _VERBS or (first.endswith("ing") and first not in _CLOTHES):
        verb = _VERBS.get(first, first)
        rest = " ".join(words[1:])
        return TEMPLATES["action"].format(x=f"{verb} {rest}".strip()), "action"
    m = re.fullmatch(r"(short|long)[ -]sleeve[sd]?", body)
    if m:
        return f"A pedestrian in {m.group(1)}-sleeved upper wear", "in"
    if last in _PATTERNS and len(words) <= 2:
        part = {"upper": "upper wear", "lower": "lower wear"}.get(region, "clothes")
        if _PATTERNS[last] is None:                               # "logo"
            return f"A pedestrian in {part} with a logo", "in"
        adjective = " ".join(words[:-1] + [_PATTERNS[last]])
        return f"A pedestrian in {adjective} {part}", "in"
    if last in _CARRIED:
        return TEMPLATES["carrying"].format(x=_with_article(body)), "carrying"
    if last in _WORN:
        return TEMPLATES["wearing"].format(x=_with_article(body)), "wearing"
    if last in _CLOTHES:
        return TEMPLATES["in"].format(x=_with_article(body)), "in"
    if last in _FEATURES:
        return TEMPLATES["with"].format(x=_with_article(body)), "with"
    return TEMPLATES["with"].format(x=body), "with"


def suggest_template(phrase: str) -> str:
    """Name of the template the heuristic picks for `phrase` ("wearing", "in", "age" ...)."""
    return _auto(phrase)[1]


def _apply(phrase: str, template: str) -> str:
    if template == "auto":
        return _auto(phrase)[0]
    if template == "photo-auto":
        sentence = _auto(phrase)[0]
        return "A photo of " + sentence[0].lower() + sentence[1:]
    if template in TEMPLATES:
        text = phrase_from_name(phrase)
        if template in _NOUN_TEMPLATES:
            text = _with_article(text)
        return TEMPLATES[template].format(x=text)
    if "{x}" not in template:
        raise ValueError(f"unknown template {template!r}: use 'auto', 'photo-auto', one of "
                         f"{sorted(TEMPLATES)}, or a format string containing '{{x}}'")
    return template.format(x=phrase_from_name(phrase))


def expand(phrases: Sequence[str], template: str = "auto",
           templates: Optional[Sequence[Optional[str]]] = None) -> List[str]:
    """Expand attribute phrases into sentences.

    Args:
        phrases: short phrases or attribute identifiers ("hat", "UpperLogo", "age over 60").
        template: "auto" (heuristic per phrase), "photo-auto", a name in `TEMPLATES`, or a
            format string with "{x}" (e.g. "A person with {x}"), applied to every phrase.
        templates: optional per-phrase templates (same length as `phrases`); None entries
            fall back to `template`.

    Returns:
        One sentence per phrase.

    Example:
        >>> expand(["hat", "female", "backpack"])
        ['A pedestrian wearing a hat', 'A female pedestrian', 'A pedestrian carrying a backpack']
    """
    phrases = list(phrases)
    if templates is not None and len(templates) != len(phrases):
        raise ValueError(f"templates has {len(templates)} entries for {len(phrases)} phrases")
    per = templates if templates is not None else [None] * len(phrases)
    return [_apply(p, t or template) for p, t in zip(phrases, per)]


def expand_all(phrases: Sequence[str],
               templates: Sequence[str] = ENSEMBLE_TEMPLATES) -> List[List[str]]:
    """Several sentences per attribute, one per template (for ensembling or ablations).

    Args:
        phrases: short phrases or attribute identifiers.
        templates: template names or format strings (see `expand`); the default is
            `ENSEMBLE_TEMPLATES`.

    Returns:
        `result[i][k]` is phrase i expanded with template k; every inner list has
        `len(templates)` sentences.
    """
    return [[_apply(p, t) for t in templates] for p in phrases]


def guess_region(phrase: str) -> str:
    """Body region of an attribute from its phrase or identifier ("whole" when unsure)."""
    region, words = _split_region(phrase_from_name(phrase).split())
    if region and region != "whole":
        return region
    tokens = set(words) | {w.rstrip("s") for w in words}
    for r in ("feet", "head", "lower", "upper", "carried"):     # feet first: "leather shoes"
        if tokens & _REGION_WORDS[r]:
            return r
    return "whole"


_TOKENIZER = None


def _tokenizer():
    """CLIP's BPE tokenizer (`clip.simple_tokenizer`, the one `clip.tokenize` uses), loaded once.

    Importing `clip` runs `clip/__init__`, which imports torch and torchvision (about 4 s on a
    2-core machine). When `clip` is not imported yet, the tokenizer module is loaded straight
    from the installed package's file, which costs only the BPE vocabulary (~0.3 s).
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        if "clip" in sys.modules:
            from clip.simple_tokenizer import SimpleTokenizer
        else:
            spec = importlib.util.find_spec("clip")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("the OpenAI `clip` package is not installed: pip install clip-anytorch")
            path = os.path.join(list(spec.submodule_search_locations)[0], "simple_tokenizer.py")
            mod_spec = importlib.util.spec_from_file_location("_parkit_clip_simple_tokenizer", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
            SimpleTokenizer = module.SimpleTokenizer
        _TOKENIZER = SimpleTokenizer()
    return _TOKENIZER


def token_lengths(sentences: Sequence[str]) -> List[int]:
    """Number of CLIP tokens of each sentence, start and end tokens included."""
    tok = _tokenizer()
    return [len(tok.encode(s)) + 2 for s in sentences]


def check_context_length(sentences: Sequence[str], names: Optional[Sequence[str]] = None,
                         context_length: int = CONTEXT_LENGTH) -> List[int]:
    """Check that every sentence fits CLIP's text context.

    Args:
        sentences: one sentence per attribute.
        names: attribute names used in the error message (default: the position).
        context_length: CLIP's context, 77 for every released model.

    Returns:
        The token count of each sentence (start/end tokens included).

    Raises:
        ContextLengthError: naming every attribute whose sentence is too long, with its
            token count, so it can be shortened.
    """
    sentences = list(sentences)
    names = list(names) if names is not None else [f"attribute {i}" for i in range(len(sentences))]
    if len(names) != len(sentences):
        raise ValueError(f"{len(names)} names for {len(sentences)} sentences")
    counts = token_lengths(sentences)
    too_long = [(n, s, c) for n, s, c in zip(names, sentences, counts) if c > context_length]
    if too_long:
        lines = "; ".join(f"{n!r} has {c} tokens: {s[:80]!r}" + ("..." if len(s) > 80 else "")
                          for n, s, c in too_long)
        raise ContextLengthError(
            f"{len(too_long)} sentence(s) exceed CLIP's {context_length}-token context "
            f"(start/end tokens included): {lines}. Shorten these sentences.")
    return counts
