"""Contrastive pretraining of the compact "micro" CLIP on SynthPAR captions, and zero-shot scoring.

What this module owns:
- `pretrain_micro_clip(...)`: symmetric InfoNCE between letterboxed SynthPAR images and their
  captions (free text, joined or one drawn per epoch, or colour-free attribute lists for a second
  stage started from a checkpoint), AdamW, warm-up + cosine learning rate,
  seeded, with a tqdm progress bar; it writes the packed checkpoint of `parkit.backbone.micro`
  and its `.sha256`. Its command line, `python -m parkit pretrain-backbone`,
  lives in `parkit.cli`.
- `zero_shot_scores(model, images, sentences)`: cosine similarity between image and sentence
  features, the zero-shot attribute score of any CLIP.
- `zero_shot_evaluate(...)`: mA of those scores on a test split, with one decision threshold
  per attribute fitted on the *train* split (the threshold that maximises the train mA of that
  attribute). A fitted threshold is needed because a cosine score has no natural cut-off; it is
  fitted on train only, so test labels never leak into the decision.

The pretraining SynthPAR is generated with its own seed (1), so its synthetic people differ from
those of the SynthPAR (seed 0) that the notebooks train and test on and that the zero-shot numbers
are measured on: the backbone has never seen an evaluation image.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parkit.attributes import SENTENCE_SETS, TEMPLATES, get_schema, list_schemas
from parkit.backbone.loading import build_clip, clip_module, default_device, sha256_file, tokenize
from parkit.backbone.micro import (
    MICRO_CHECKPOINT, MICRO_CONFIG, pack_micro_checkpoint, read_micro_checkpoint, save_micro_clip,
    token_ids_of, unpack_micro_checkpoint, warn_unknown_words)
from parkit.data.synthpar import (CLOTH_COLOURS, default_synthpar_root, ensure_synthpar, load_captions,
                                  load_synthpar)
from parkit.data.transforms import letterbox
from parkit.data.synthworld import default_synthworld_root, ensure_synthworld, load_world
from parkit.metrics import fit_thresholds, mean_auc, pedestrian_metrics
from parkit.progress import tqdm

# Normalisation of the pretraining images: the official PromptPAR mean = std = 0.5 (spec §3.2,
# §14 item 6), so that the faithful presets feed the micro CLIP the distribution it was trained on.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

# Defaults of the committed checkpoint (parkit/assets/README.md records the exact command).
DEFAULTS = dict(n_images=10000, data_seed=1, epochs=16, batch_size=32, lr=1e-3, weight_decay=0.1,
                warmup_epochs=1.0, seed=0, eval_n_images=2000, eval_seed=0, caption_mode="all",
                clip_grad=5.0, monitor_every=0)
# What each image is paired with, per epoch:
# - "one": one of its SynthPAR captions, drawn at random;
# - "all": its captions joined into one longer description ("a, b, c"; as many as fit CLIP's
#   77-token context, see `join_captions`), which names more of it and so tells it apart from
#   more of the batch;
# - "attributes": one of two colour-free captions: its labelled attributes in PA100K's short
#   phrases (`attribute_caption`) or its captions joined with the colour names removed
#   (`without_colours`). Colour names let the loss match images by colour alone while the
#   attributes stay unlearnt. From random weights this mode gives no signal to start from: use it
#   as a second stage (`init_from`);
# - "alttext": SynthWorld scenes (`parkit.data.synthworld`, generated with `n_images` and
#   `data_seed` at the model's input size) with one of their web-like alt-text captions, drawn
#   at random: the way web CLIP was trained.
CAPTION_MODES = ("one", "all", "attributes", "alttext")
# Named sizes of the compact CLIP compared for the committed checkpoint (parkit/assets/README.md):
# "micro" is MICRO_CONFIG; "micro-wide" a 1.5x wider, 1.5x deeper image tower at the same input size.
SIZES = {"micro": dict(MICRO_CONFIG),
         "micro-wide": dict(MICRO_CONFIG, vision_width=192, vision_layers=6)}


# --- data -------------------------------------------------------------------------------------

def load_images(paths: Sequence[Union[str, Path]], image_size: int,
                progress: bool = False) -> torch.Tensor:
    """Letterbox each image to a square and stack them: (N, 3, S, S) uint8.

    uint8 keeps the whole pretraining set in memory (4000 images at 96 px: 110 MB).

    Args:
        paths: image files.
        image_size: side S of the square.
        progress: show a tqdm bar.
    """
    from PIL import Image  # noqa: PLC0415

    out = torch.empty(len(paths), 3, image_size, image_size, dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc="loading images", disable=not progress, leave=False)):
        with Image.open(p) as img:
            square = letterbox(img.convert("RGB"), image_size)
        arr = np.asarray(square, dtype=np.uint8)  # (S, S, 3)
        out[i] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return out


def normalize(images_u8: torch.Tensor, device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float32 normalised with `MEAN`/`STD`, on `device`."""
    x = images_u8.to(device=device, dtype=torch.float32) / 255.0
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def vocabulary_sentences(captions: Iterable[str] = ()) -> list:
    """Every sentence whose tokens the packed micro checkpoint keeps.

    The pretraining captions, plus each built-in dataset's attribute sentences (all sentence sets)
    and short phrases, plus the expansion templates, so that any benchmark schema and the
    expanded-vs-bare comparison run on trained or at least stored embedding rows.
    """
    out = list(captions)
    for name in list_schemas():
        for kind in SENTENCE_SETS:
            schema = get_schema(name, sentences=kind)
            out += list(schema.sentences) + list(schema.phrases)
    out += [t.replace("{x}", "") for t in TEMPLATES.values()]
    return out


# --- zero-shot scoring ------------------------------------------------------------------------

@torch.no_grad()
def zero_shot_scores(model: nn.Module, images: torch.Tensor, sentences: Sequence[str],
                     batch_size: int = 256, device: Union[str, torch.device, None] = None,
                     tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cosine similarity of every image with every sentence: the zero-shot attribute score.

    Args:
        model: a `clip.model.CLIP`.
        images: (N, 3, S, S) float images already normalised for the model (or uint8, which is
            normalised with this module's `MEAN`/`STD`).
        sentences: A attribute sentences.
        batch_size: images per forward pass.
        device: where to compute (default: the model's device).
        tokens: (A, L) the sentences already turned into the model's token ids (a model trained in
            a packed vocabulary); default: `tokenize(sentences)`.

    Returns:
        (N, A) float32 on the CPU, values in [-1, 1].
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if tokens is None:
        warn_unknown_words(model, sentences)
        tokens = tokenize(sentences)
    was_training = model.training
    model.eval()
    text = F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1)  # (A, E)
    out = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size]
        chunk = normalize(chunk, device) if chunk.dtype == torch.uint8 else chunk.to(device)
        feats = F.normalize(model.encode_image(chunk).float(), dim=-1)  # (b, E)
        out.append((feats @ text.T).cpu())  # (b, A)
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(sentences))


def zero_shot_evaluate(model: nn.Module, fit_images: torch.Tensor, fit_labels: np.ndarray,
                       test_images: torch.Tensor, test_labels: np.ndarray,
                       sentences: Sequence[str], device: Union[str, torch.device, None] = None,
                       permutations: int = 200, seed: int = 0) -> dict:
    """Zero-shot mA: thresholds fitted on (fit_images, fit_labels), metrics on the test rows.

    How far above chance: the same hard decisions are scored against the test label rows shuffled
    across images (`permutations` times; whole rows, so attribute frequencies and co-occurrences
    stay), which gives the mA of a model that knows nothing about the images.

    Args:
        model: a `clip.model.CLIP`.
        fit_images, test_images: (N, 3, S, S) uint8 letterboxed images (or normalised floats).
        fit_labels, test_labels: (N, A) raw labels (1 positive, 0 negative, else ignored).
        sentences: A sentences, in label order.
        device: where to compute.

    Returns:
        {"mA", "mean_pos_recall", "mean_neg_recall", "label_mA" (A,), "auc" (mean ROC-AUC over
        attributes, threshold-free), "thresholds" (A,), "chance_mA" and "chance_std" (mean and
        standard deviation of the mA under shuffled labels), "p_value" (share of shuffles scoring
        at least the observed mA, (1 + count) / (1 + permutations))}; fractions in [0, 1].
    """
    fit_scores = zero_shot_scores(model, fit_images, sentences, device=device).numpy()
    test_scores = zero_shot_scores(model, test_images, sentences, device=device).numpy()
    thresholds = fit_thresholds(fit_scores, fit_labels)
    predicted = (test_scores > thresholds).astype(np.float32)  # (N, A) hard decisions
    m = pedestrian_metrics(test_labels, predicted, threshold=0.5, ignore="auto")
    rng = np.random.default_rng(seed)
    chance = np.array([pedestrian_metrics(np.asarray(test_labels)[rng.permutation(len(test_labels))], predicted,
                                          threshold=0.5, ignore="auto")["mA"] for _ in range(permutations)])
    return {"mA": m["mA"], "mean_pos_recall": m["mean_pos_recall"],
            "mean_neg_recall": m["mean_neg_recall"], "label_mA": m["label_mA"],
            "auc": mean_auc(test_scores, test_labels), "thresholds": thresholds,
            "chance_mA": float(chance.mean()) if permutations else float("nan"),
            "chance_std": float(chance.std()) if permutations else float("nan"),
            "p_value": float((1 + (chance >= m["mA"]).sum()) / (1 + permutations))}


# --- contrastive pretraining ------------------------------------------------------------------

def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor, same_caption: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss) with soft targets for duplicate captions.

    SynthPAR captions describe attribute combinations, so two images in a batch can share the very
    same caption; counting the other one as a negative would punish a correct match. Rows with
    identical captions share the target mass instead.

    Args:
        image_features, text_features: (B, E) unnormalised features of matching pairs.
        logit_scale: log of the softmax temperature's inverse (CLIP's parameter).
        same_caption: (B, B) bool, True where the captions of rows i and j are identical
            (default: the identity).

    Returns:
        Scalar loss: mean of the image->text and text->image cross-entropies.
    """
    img = F.normalize(image_features, dim=-1)
    txt = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * img @ txt.T  # (B, B) image i vs caption j
    if same_caption is None:
        same_caption = torch.eye(len(img), dtype=torch.bool, device=img.device)
    target = same_caption.float() / same_caption.float().sum(1, keepdim=True)  # (B, B) rows sum to 1
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T)) / 2


def _param_groups(model: nn.Module, weight_decay: float) -> list:
    # CLIP practice: no decay on gains, biases, embeddings and the temperature.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name or name == "logit_scale":
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up then cosine decay to 0, per optimiser step."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _full_vocabulary(small: nn.Module, keep: torch.Tensor, config: Mapping) -> nn.Module:
    """The CLIP of `config` holding `small`'s weights, its (K, width) embedding scattered to rows `keep`."""
    state = small.state_dict()
    table = torch.zeros(config["vocab_size"], config["transformer_width"])  # (vocab, width)
    table[keep] = state["token_embedding.weight"]
    state["token_embedding.weight"] = table
    model = build_clip(config)
    model.load_state_dict(state)
    return model.eval()


def attribute_caption(labels_row: np.ndarray, attributes: Sequence[str]) -> str:
    """One image's positive attributes in PA100K's short phrases, in label order:
    "a pedestrian: female, age 18 to 60, back, skirt and dress, boots" (attributes that PA100K
    does not name are skipped). Images with the same attributes get the very same caption, so the
    contrastive loss treats them as matches rather than as negatives."""
    schema = get_schema("PA100K")
    phrase = dict(zip(schema.attributes, schema.phrases))
    words = [phrase[a] for j, a in enumerate(attributes) if a in phrase and labels_row[j] == 1]
    return "a pedestrian: " + ", ".join(words) if words else "a pedestrian"


def without_colours(caption: str) -> str:
    """A SynthPAR caption with its clothing colour names removed ("a black dress" -> "a dress");
    "grey hair" (a sign of age) stays."""
    import re  # noqa: PLC0415
    pattern = r"\b(?:" + "|".join(sorted(CLOTH_COLOURS, key=len, reverse=True)) + r")\s+(?!hair\b)"
    return re.sub(r"\s+", " ", re.sub(pattern, "", caption)).strip()


def join_captions(captions: Sequence[str], context: int = 77) -> str:
    """Captions joined with ", ", in order, stopping before the first that would overflow the
    context (SOT and EOT included); the first caption is always kept."""
    bpe = clip_module().clip._tokenizer
    out = captions[0]
    for caption in captions[1:]:
        longer = f"{out}, {caption}"
        if len(bpe.encode(longer)) + 2 > context:
            break
        out = longer
    return out


def _pa100k_columns(dataset) -> tuple:
    """(label columns, their attribute names, their PA100K sentences, their PA100K phrases) of the
    dataset's attributes that PA100K names."""
    schema = get_schema("PA100K")
    columns = [dataset.attributes.index(a) for a in schema.attributes if a in dataset.attributes]
    if not columns:
        raise ValueError(f"SynthPAR attributes {dataset.attributes[:5]}... share no name with PA100K")
    names = [dataset.attributes[c] for c in columns]
    pick = [schema.attributes.index(a) for a in names]
    return columns, names, [schema.sentences[i] for i in pick], [schema.phrases[i] for i in pick]


class _Monitor:
    """Zero-shot mean ROC-AUC (percent) of the PA100K sentences on a SynthPAR test split, computed
    on the model being trained (packed vocabulary: `lookup` maps CLIP ids to its rows)."""

    def __init__(self, dataset, image_size: int, lookup: torch.Tensor, device: torch.device):
        columns, _, self.sentences, _ = _pa100k_columns(dataset)
        test = dataset.splits["test"]
        self.images = load_images([dataset.image_paths[i] for i in test], image_size)  # (N, 3, S, S)
        self.labels = dataset.labels[test][:, columns]
        tokens = tokenize(self.sentences)
        self.tokens = lookup[tokens[:, :int((tokens != 0).sum(1).max())]]
        self.device = device

    def __call__(self, model: nn.Module) -> float:
        scores = zero_shot_scores(model, self.images, self.sentences, device=self.device, tokens=self.tokens)
        return round(100 * mean_auc(scores.numpy(), self.labels), 2)


def _synthpar(root, n_images: int, seed: int, progress: bool = True):
    return load_synthpar(ensure_synthpar(root, n_images=n_images, seed=seed, progress=progress))


def pretrain_micro_clip(data_root: Union[str, Path, None] = None, out_path: Union[str, Path, None] = None,
                        epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"],
                        seed: int = DEFAULTS["seed"], device: Union[str, torch.device, None] = None,
                        n_images: int = DEFAULTS["n_images"], data_seed: int = DEFAULTS["data_seed"],
                        lr: float = DEFAULTS["lr"], weight_decay: float = DEFAULTS["weight_decay"],
                        warmup_epochs: float = DEFAULTS["warmup_epochs"],
                        caption_mode: str = DEFAULTS["caption_mode"], clip_grad: Optional[float] = DEFAULTS["clip_grad"],
                        monitor_every: int = DEFAULTS["monitor_every"],
                        init_from: Union[str, Path, None] = None,
                        config: Optional[Mapping] = None, evaluate: bool = True,
                        eval_root: Union[str, Path, None] = None,
                        eval_n_images: int = DEFAULTS["eval_n_images"], eval_seed: int = DEFAULTS["eval_seed"],
                        progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Pretrain the micro CLIP on SynthPAR captions and write its packed checkpoint.

    Data hygiene: the pretraining data is generated with its own seed (`data_seed`, default 1),
    so its people differ from those the notebooks and the zero-shot evaluation use (seed 0). When
    `data_root` is the evaluation folder itself, only its train split is used.

    Args:
        data_root: pretraining SynthPAR folder (default `default_synthpar_root(n_images,
            data_seed)`); generated with `ensure_synthpar(data_root, n_images, data_seed)` when
            absent or made with other settings.
        out_path: checkpoint to write (default: `parkit/assets/micro_clip.pt`); its `.sha256` is
            written beside it. "" skips saving.
        epochs, batch_size: passes over the images; pairs per step (the InfoNCE negatives).
        seed: seed of the weights, the caption draws, the flips and the batch order.
        device: where to train (default: CUDA if present, else CPU).
        n_images, data_seed: size and seed of the pretraining SynthPAR (or SynthWorld).
        lr, weight_decay, warmup_epochs: AdamW and schedule settings.
        caption_mode: one of `CAPTION_MODES` ("one", "all", "attributes", "alttext"), described
            beside it.
        clip_grad: clip the global gradient norm at this value (None: no clipping).
        init_from: start from this packed micro checkpoint (verified against its `.sha256`)
            instead of random weights: a second stage with other captions. Its configuration
            must equal `config`.
        monitor_every: every this many epochs (0: never), log and store the zero-shot mean
            ROC-AUC of the PA100K sentences on the evaluation SynthPAR's test split.
        config: CLIP constructor arguments (default `MICRO_CONFIG`; tests use smaller ones).
        evaluate: after training, report zero-shot mA with the PA100K sentences (expanded and
            bare phrases) and store it in the checkpoint's meta.
        eval_root: SynthPAR of the zero-shot evaluation (thresholds on its train split, mA on its
            test split); default `default_synthpar_root(eval_n_images, eval_seed)`.
        eval_n_images, eval_seed: size and seed of that SynthPAR.
        progress, log: show tqdm bars; where one-line summaries go.

    Returns:
        {"history": [{"epoch", "loss", "lr", "seconds"}], "meta": the stored facts,
         "sha256": of the written file (or None), "path": the file (or None), "model": the trained
         fp32 model exactly as it will load from the checkpoint}.
    """
    if caption_mode not in CAPTION_MODES:
        raise ValueError(f"caption_mode must be one of {CAPTION_MODES}, got {caption_mode!r}")
    cfg = dict(config or MICRO_CONFIG)
    device = torch.device(device) if device is not None else default_device()
    t_start = time.time()
    eval_root = Path(eval_root) if eval_root is not None else default_synthpar_root(eval_n_images, eval_seed)
    data = _pretraining_pairs(caption_mode, data_root, n_images, data_seed, cfg["image_resolution"],
                              eval_root if evaluate else None, progress)
    images = load_images(data.paths, cfg["image_resolution"], progress=progress)  # (N, 3, S, S) uint8
    log(f"pretraining data: {len(data.paths)} images ({'train split' if data.same_as_eval else 'all'}) of "
        f"{data.source}, {sum(map(len, data.captions))} captions, {time.time() - t_start:.0f}s to prepare")
    tokens = _packed_tokens(data.captions, cfg["vocab_size"])
    model, init_digest = _initial_model(cfg, tokens.keep, seed, init_from, log)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = _Schedule(len(data.paths), batch_size, epochs, warmup_epochs, lr)
    monitor = _Monitor(_synthpar(eval_root, eval_n_images, eval_seed, progress), cfg["image_resolution"],
                       tokens.lookup, device) if monitor_every else None
    history = _train_epochs(model, optimizer, images, tokens, schedule, torch.Generator().manual_seed(seed),
                            clip_grad, device, progress, monitor, monitor_every, log)
    meta = {"data": "SynthWorld" if caption_mode == "alttext" else "SynthPAR", "n_images": data.n_total,
            "pretrain_images": len(data.paths), "data_seed": data_seed, "epochs": epochs, "batch_size": batch_size,
            "seed": seed, "lr": lr, "weight_decay": weight_decay, "warmup_epochs": warmup_epochs,
            "caption_mode": caption_mode, "clip_grad": clip_grad, "init_from_sha256": init_digest,
            "normalization": "official", "mean": list(MEAN), "std": list(STD), "final_loss": history[-1]["loss"],
            "kept_tokens": int(tokens.keep.numel()), "train_seconds": round(time.time() - t_start, 1)}
    eval_set = _synthpar(eval_root, eval_n_images, eval_seed, progress) if evaluate else None
    out = _pack_evaluate_save(model, tokens.keep, cfg, meta, eval_set, out_path, log)
    return {"history": history, **out}


@dataclass
class _Pairs:
    """Pretraining images and their captions (`captions[i]`: the caption choices of image i)."""
    paths: list
    captions: list
    source: object        # the folder (or SynthPAR root) they come from, for the log line
    n_total: int          # images in that folder
    same_as_eval: bool    # only its train split is used: the evaluation folder itself


def _pretraining_pairs(caption_mode: str, data_root, n_images: int, data_seed: int, size: int,
                       eval_root: Optional[Path], progress: bool) -> _Pairs:
    """The image paths and caption choices of a caption mode (module docstring, `pretrain_micro_clip`)."""
    if caption_mode == "alttext":  # SynthWorld scenes with web-like alt-text, one drawn per epoch
        root = Path(data_root) if data_root is not None else default_synthworld_root(n_images, data_seed, size)
        root = ensure_synthworld(root, n_images, data_seed, size, progress=progress)
        paths, captions = load_world(root)
        return _Pairs(paths, captions, root, len(paths), False)
    root = Path(data_root) if data_root is not None else default_synthpar_root(n_images, data_seed)
    dataset = _synthpar(root, n_images, data_seed, progress)
    same_as_eval = eval_root is not None and root.resolve() == Path(eval_root).resolve()
    rows = np.asarray(dataset.splits["train"]) if same_as_eval else np.arange(len(dataset))
    captions_by_file = load_captions(dataset.root)  # {file name: [caption, ...]}
    paths = [dataset.image_paths[i] for i in rows]
    try:
        captions = [captions_by_file[Path(p).name] for p in paths]
    except KeyError as exc:
        raise ValueError(f"no caption for image {exc} in {dataset.root}/captions.jsonl: regenerate "
                         f"SynthPAR (delete the folder and run again)") from None
    if caption_mode == "all":
        captions = [[join_captions(caps)] for caps in captions]
    elif caption_mode == "attributes":
        captions = [[attribute_caption(dataset.labels[r], dataset.attributes),
                     join_captions([without_colours(c) for c in caps])] for r, caps in zip(rows, captions)]
    return _Pairs(paths, captions, dataset.root, len(dataset), same_as_eval)


@dataclass
class _Tokens:
    """Every caption tokenised once, in the packed vocabulary."""
    ids: torch.Tensor      # (C, L) packed ids of all captions, context trimmed to the longest
    offsets: np.ndarray    # captions of image i: ids[offsets[i]:offsets[i + 1]]
    keep: torch.Tensor     # (K,) original token ids kept, sorted
    lookup: torch.Tensor   # (vocab,) original id -> packed id


def _packed_tokens(captions: Sequence[Sequence[str]], vocab_size: int) -> _Tokens:
    # Trim the context to the longest caption (the causal mask and EOT pooling make the padded
    # tail irrelevant, and it costs 3-4x the compute). Train in the packed vocabulary: a (K, width)
    # embedding instead of (49408, width), which AdamW would otherwise update in full at every
    # step. Ids keep their order, so EOT (the largest id) stays the argmax that CLIP pools on;
    # pads (0) map to row 0, unread after EOT.
    flat = [c for caps in captions for c in caps]
    tokens_all = tokenize(flat)  # (C, 77)
    used = int((tokens_all != 0).sum(1).max())
    keep = token_ids_of(vocabulary_sentences(flat))  # (K,) sorted original ids
    lookup = torch.zeros(vocab_size, dtype=torch.long)
    lookup[keep] = torch.arange(keep.numel())
    return _Tokens(lookup[tokens_all[:, :used]], np.cumsum([0] + [len(c) for c in captions]), keep, lookup)


def _initial_model(cfg: Mapping, keep: torch.Tensor, seed: int, init_from, log) -> tuple:
    """(seeded micro CLIP in the packed vocabulary, sha256 of `init_from` or None)."""
    model = build_clip(dict(cfg, vocab_size=int(keep.numel())), seed=seed)
    if init_from is None:
        return model, None
    state, init_cfg = unpack_micro_checkpoint(read_micro_checkpoint(init_from), source=str(init_from))
    if dict(init_cfg) != dict(cfg):
        raise ValueError(f"{init_from} was built with another configuration ({dict(init_cfg)}) than this "
                         f"run ({dict(cfg)}); start from random weights or pass its config")
    state["token_embedding.weight"] = state["token_embedding.weight"][keep]  # (K, width), packed rows
    model.load_state_dict(state)
    digest = sha256_file(init_from)
    log(f"starting from {init_from} (sha256 {digest[:12]}...)")
    return model, digest


@dataclass
class _Schedule:
    """Steps per epoch (drop_last: the InfoNCE batch size stays fixed) and the learning rate."""
    n_images: int
    batch_size: int
    epochs: int
    warmup_epochs: float
    lr: float

    def __post_init__(self):
        self.steps_per_epoch = self.n_images // self.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.n_images} training images")
        self.total = self.epochs * self.steps_per_epoch
        self.warmup = int(self.warmup_epochs * self.steps_per_epoch)

    def lr_at(self, step: int) -> float:
        return _lr_at(step, self.total, self.warmup, self.lr)


def _contrastive_epoch(model, optimizer, images: torch.Tensor, tokens: _Tokens, gen: torch.Generator,
                       schedule: _Schedule, epoch: int, clip_grad: Optional[float], device, progress: bool) -> list:
    """One pass over the images with one caption drawn per image; returns the step losses."""
    n, bs, offsets = len(images), schedule.batch_size, tokens.offsets
    order = torch.randperm(n, generator=gen)
    pick = torch.tensor([offsets[i] + int(torch.randint(offsets[i + 1] - offsets[i], (1,), generator=gen))
                         for i in range(n)])
    flips = torch.rand(n, generator=gen) < 0.5
    bar = tqdm(range(schedule.steps_per_epoch), desc=f"epoch {epoch + 1}/{schedule.epochs}", disable=not progress,
               leave=False)
    losses = []
    for b in bar:
        rows = order[b * bs:(b + 1) * bs]
        x = images[rows]
        # Horizontal flips: no SynthPAR caption or attribute depends on left/right.
        x = torch.where(flips[rows].view(-1, 1, 1, 1), x.flip(-1), x)
        tok = tokens.ids[pick[rows]]  # (B, L)
        same = (tok[:, None, :] == tok[None, :, :]).all(-1).to(device)  # (B, B)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(epoch * schedule.steps_per_epoch + b)
        loss = contrastive_loss(model.encode_image(normalize(x, device)),
                                model.encode_text(tok.to(device)), model.logit_scale, same)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return losses


def _train_epochs(model, optimizer, images, tokens: "_Tokens", schedule: "_Schedule", gen: torch.Generator,
                  clip_grad, device, progress: bool, monitor, monitor_every: int, log) -> list:
    """Every epoch of `schedule`; one history row (and log line) per epoch."""
    history = []
    for epoch in range(schedule.epochs):
        t0 = time.time()
        losses = _contrastive_epoch(model, optimizer, images, tokens, gen, schedule, epoch, clip_grad, device,
                                    progress)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "lr": schedule.lr_at((epoch + 1) * schedule.steps_per_epoch - 1), "seconds": time.time() - t0})
        line = f"epoch {epoch + 1}/{schedule.epochs}: loss {history[-1]['loss']:.4f} ({history[-1]['seconds']:.0f}s)"
        if monitor is not None and ((epoch + 1) % monitor_every == 0 or epoch + 1 == schedule.epochs):
            history[-1]["zero_shot_auc"] = monitor(model)
            line += f", zero-shot AUC {history[-1]['zero_shot_auc']:.2f}"
        log(line)
    return history


def _pack_evaluate_save(model, keep: torch.Tensor, cfg: Mapping, meta: dict, eval_set, out_path, log) -> dict:
    """Pack the trained model, measure its zero-shot quality as it will load, and write it."""
    model = _full_vocabulary(model.cpu().eval(), keep, cfg)
    # The model exactly as it will load: fp16 rounding and the pruned vocabulary applied.
    state, _ = unpack_micro_checkpoint(pack_micro_checkpoint(model, keep, cfg))
    loaded = build_clip(cfg)
    loaded.load_state_dict(state)
    loaded.parkit_token_ids = keep
    if eval_set is not None:
        meta["zero_shot"] = evaluate_zero_shot_pa100k(loaded, eval_set, cfg["image_resolution"], log=log)
        meta["zero_shot"].update(n_images=int(eval_set.info["n_images"]), data_seed=int(eval_set.info["seed"]))
    digest, path = None, None
    if out_path != "":
        path = Path(out_path) if out_path is not None else MICRO_CHECKPOINT
        digest = save_micro_clip(model, path, keep, config=cfg, meta=meta)
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {digest})")
    return {"meta": meta, "sha256": digest, "path": path, "model": loaded}


def evaluate_zero_shot_pa100k(model: nn.Module, dataset, image_size: int,
                              log: Callable[[str], None] = print) -> dict:
    """Zero-shot mA on SynthPAR test with PA100K's 26 sentences and with its bare phrases.

    SynthPAR's attributes are matched to PA100K's by position when the dataset has the PA100K
    attribute list, else by name; thresholds are fitted on the SynthPAR train split.

    Returns:
        {"sentences": {...}, "phrases": {...}} with "mA", "auc", "mean_pos_recall",
        "mean_neg_recall" in percent, and "attributes" (the PA100K names evaluated).
    """
    columns, names, sentences, phrases = _pa100k_columns(dataset)
    train, test = dataset.splits["train"], dataset.splits["test"]
    fit_images = load_images([dataset.image_paths[i] for i in train], image_size)
    test_images = load_images([dataset.image_paths[i] for i in test], image_size)
    out = {"attributes": names}
    for kind, texts in (("sentences", sentences), ("phrases", phrases)):
        r = zero_shot_evaluate(model, fit_images, dataset.labels[train][:, columns], test_images,
                               dataset.labels[test][:, columns], texts)
        out[kind] = {k: round(100 * float(r[k]), 2) for k in ("mA", "auc", "mean_pos_recall", "mean_neg_recall",
                                                              "chance_mA", "chance_std")}
        out[kind]["p_value"] = round(float(r["p_value"]), 4)
        out[kind]["label_mA"] = [round(100 * float(v), 1) for v in r["label_mA"]]
        log(f"zero-shot on SynthPAR test ({len(test)} images, {len(names)} PA100K attributes, "
            f"{kind}): mA {out[kind]['mA']:.2f}, AUC {out[kind]['auc']:.2f}; shuffled labels "
            f"{out[kind]['chance_mA']:.2f} +- {out[kind]['chance_std']:.2f} mA (p = {out[kind]['p_value']:.4f})")
    return out
