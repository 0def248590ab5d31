"""SynthPAR: a small procedural pedestrian-attribute dataset that ships with parkit.

The generator (PIL drawing + numpy, deterministic by seed), its on-disk format and its loader:

- `sample_attributes` draws one person's PA100K attributes from co-occurrence priors (`priors`);
- `render_person` draws one pedestrian image and `body_regions` gives the boxes of its body parts,
  so tests can check that every attribute is drawn where it lives on the body (`render`, with the
  geometry in `body`);
- `make_captions` writes the free-text captions of an image (`captions`);
- `make_synthpar` writes a dataset folder, `load_synthpar` reads it back as a `PARDataset`,
  `ensure_synthpar` / `default_synthpar_root` keep one generated copy in a cache folder, and
  `load_captions` returns the captions used to pretrain the compact CLIP (`dataset`, whose
  docstring gives the folder layout).

SynthPAR uses PA100K's 26 attributes in PA100K's label order (spec Appendix A), so the paper's
sentences apply unchanged. Every attribute except the view (Front/Side/Back) belongs to an
*identity*: one synthetic person with fixed clothing, colours and carried objects, rendered 2-6
times with a different view, pose jitter, background, lighting and crop. Rare PA100K attributes
(boots 0.6 %, AgeOver60 1.5 %, LowerStripe 0.4 %) are made more frequent (about 10 %) so that a
2 000-image set has enough positives of each to learn and to measure.

Imports run one way: `render` draws with `priors` and `body`, `dataset` uses `priors`, `render` and
`captions`; `priors`, `body` and `captions` import no other module of the package. This package
re-exports their public API.
"""
from __future__ import annotations

from parkit.data.synthpar.captions import make_captions
from parkit.data.synthpar.dataset import (
    GENERATOR_VERSION, cache_root, default_synthpar_root, ensure_synthpar, load_captions, load_synthpar,
    make_synthpar)
from parkit.data.synthpar.priors import (
    CLOTH_COLOURS, EXCLUSIVE_GROUPS, SYNTHPAR_ATTRIBUTES, VIEWS, apply_label_noise, complete_attributes,
    sample_attributes)
from parkit.data.synthpar.render import DEFAULT_IMAGE_SIZE, body_regions, person_appearance, render_person

__all__ = [
    "GENERATOR_VERSION", "DEFAULT_IMAGE_SIZE", "SYNTHPAR_ATTRIBUTES", "VIEWS", "EXCLUSIVE_GROUPS", "CLOTH_COLOURS",
    "complete_attributes", "sample_attributes", "apply_label_noise", "render_person", "person_appearance",
    "body_regions", "make_captions", "make_synthpar", "cache_root", "default_synthpar_root", "ensure_synthpar",
    "load_synthpar", "load_captions",
]
