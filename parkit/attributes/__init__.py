"""Attribute lists: dataset schemas (names, phrases, sentences, body regions) and expansion.

`get_schema("PA100K")` gives the benchmark lists of spec Appendix A; `expand` turns a custom
list of short phrases into CLIP sentences (spec §11.5); `check_context_length` verifies that
the sentences fit CLIP's 77-token context.
"""
from parkit.attributes.expansion import (
    CONTEXT_LENGTH,
    ENSEMBLE_TEMPLATES,
    TEMPLATES,
    ContextLengthError,
    check_context_length,
    expand,
    expand_all,
    guess_region,
    phrase_from_name,
    suggest_template,
    token_lengths,
)
from parkit.attributes.schemas import (
    REGIONS,
    SENTENCE_SETS,
    AttributeSchema,
    SchemaError,
    canonical_name,
    get_schema,
    list_schemas,
)

__all__ = [
    "AttributeSchema", "CONTEXT_LENGTH", "ContextLengthError", "ENSEMBLE_TEMPLATES", "REGIONS",
    "SENTENCE_SETS", "SchemaError", "TEMPLATES", "canonical_name", "check_context_length", "expand",
    "expand_all", "get_schema", "guess_region", "list_schemas", "phrase_from_name",
    "suggest_template", "token_lengths",
]
