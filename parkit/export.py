"""ONNX export of a trained parkit model: `export_onnx`, `read_onnx_metadata` (the command line,
`python -m parkit export`, is in `parkit.cli`).

The exported graph takes only images and returns attribute probabilities and logits. The text
branch of PromptPAR depends on the attribute sentences alone, so it is computed once here and baked
into the graph as a constant (A, E) tensor: no tokenizer, no text transformer and no global-local
branch (its logits only feed the auxiliary training loss, spec §3.4) remain in the file. This is
the deployment form of the model that spec §12 asks for: the graph plus, in its metadata, the
attribute names, sentences, config, input size, normalisation and decision threshold.

    images (B, 3, S, S) float32, normalised  ->  probabilities (B, A), logits (B, A)

Requires the `onnx` package (and `onnxscript` for PyTorch's default exporter); `onnxruntime` runs
the result. They are imported only when an export is requested.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from parkit.model.contract import PARModel
from parkit.model.promptpar import PromptPAR

PathLike = Union[str, os.PathLike]

INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "logits")
# Decision threshold of the official metric code (spec §3.5 step 8, §14.25).
THRESHOLD = 0.45
METADATA_PREFIX = "parkit."
# ONNX protobuf files cannot exceed 2 GiB: larger models keep their weights in a side file.
_PROTOBUF_LIMIT = 2 ** 31 - 2 ** 26


class ExportError(RuntimeError):
    """The model cannot be exported; the message names the reason and what to do."""


class _PromptPARGraph(nn.Module):
    """PromptPAR's prediction path with the text features frozen into a buffer.

    Same modules and maths as `PromptPAR.forward` for the main logits: prompted visual encoder ->
    fusion with the (A, E) text features -> heads -> BatchNorm (eval statistics).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.visual = model.visual
        self.fusion = model.fusion
        with torch.no_grad():
            text = model.text.encode()  # (A, E) float32, the text branch run once
        self.register_buffer("text_features", text.detach().clone())

    def forward(self, images: torch.Tensor):
        tokens = self.visual(images).tokens  # (B, L, E)
        logits = self.fusion(self.text_features, tokens)  # (B, A)
        return torch.sigmoid(logits), logits


class _GenericGraph(nn.Module):
    """Any parkit model (baselines): its own forward, logits and probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        logits = self.model(images).logits  # (B, A)
        return torch.sigmoid(logits), logits


def _is_promptpar(model: nn.Module) -> bool:
    return isinstance(model, PromptPAR)


def _metadata(model: PARModel, image_size: int, opset: int, dynamic_batch: bool) -> Dict[str, str]:
    config, normalization = model.config, model.normalization
    stats = config.normalization_stats
    meta = {
        "format": "parkit-onnx/1",
        "attributes": json.dumps(model.attributes),
        "sentences": json.dumps(model.sentences),
        "config": json.dumps(config.to_dict()),
        "image_size": str(int(image_size)),
        "normalization": json.dumps({"name": normalization,
                                     "mean": list(stats[0]) if stats else None,
                                     "std": list(stats[1]) if stats else None}),
        "threshold": str(THRESHOLD),
        "inputs": json.dumps({INPUT_NAME: ["batch" if dynamic_batch else 1, 3, image_size, image_size]}),
        "outputs": json.dumps(list(OUTPUT_NAMES)),
        "opset": str(opset),
        "torch_version": torch.__version__,
    }
    return {METADATA_PREFIX + k: v for k, v in meta.items()}


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"{purpose} needs the `{module}` package: pip install {module} "
                          f"(parkit is tested with onnx 1.23.2, onnxscript 0.7.2, onnxruntime 1.32.0)") from None


def _model_bytes(module: nn.Module) -> int:
    seen = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def export_onnx(model: PARModel, path: PathLike, image_size: Optional[int] = None, opset: int = 17,
                dynamic_batch: bool = True) -> Path:
    """Write a trained parkit model as an ONNX graph: images in, probabilities and logits out.

    For PromptPAR the text features of the attribute sentences are computed once and stored as a
    constant; the global-local branch (training-only auxiliary logits) is left out. The ONNX
    metadata holds the attribute names, sentences, config, input size, normalisation and the 0.45
    threshold under keys "parkit.*" (see `read_onnx_metadata`). The model is exported in eval mode
    on the CPU in its own weight dtype (float32 for every preset); its train/eval mode and device
    are restored afterwards.

    Args:
        model: a parkit model (PromptPAR from `create_model` / a checkpoint, or a baseline).
        path: output .onnx file (parent folders are created). Models over ~1.9 GiB store their
            weights next to it in `<path>.data`.
        image_size: input side in pixels; None = `model.image_size`. It must equal the model's
            (the positional embedding has a fixed grid).
        opset: ONNX opset version.
        dynamic_batch: make the batch axis dynamic; False fixes it to 1.

    Returns:
        The path written.

    Raises:
        ExportError: missing packages, a wrong image size, or a graph the exporter cannot handle.
    """
    onnx = _require("onnx", "ONNX export")
    if not isinstance(model, PARModel):
        raise ExportError(f"export_onnx needs a parkit model (parkit.model.create_model or a parkit checkpoint), "
                          f"got {type(model).__name__}")
    size = int(model.image_size)
    if image_size is not None and int(image_size) != size:
        raise ExportError(f"image_size={image_size} does not match the model's {size} px input (its positional "
                          f"embedding has a fixed grid); leave image_size=None")
    if not isinstance(opset, int) or opset < 14:
        raise ExportError(f"opset must be an integer >= 14 (scaled-dot-product attention), got {opset!r}")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)

    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval().to("cpu")
    try:
        graph = _PromptPARGraph(model) if _is_promptpar(model) else _GenericGraph(model)
        graph.eval()
        example = torch.zeros(2 if dynamic_batch else 1, 3, size, size)  # batch 2: no 0/1 specialisation
        with torch.no_grad():
            graph(example)  # fills lazy caches (stripe mask, baseline text features) before tracing
        external = _model_bytes(graph) > _PROTOBUF_LIMIT
        _run_exporter(graph, example, path, opset, dynamic_batch, external)
    finally:
        model.to(device).train(was_training)

    proto = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if written != opset:
        warnings.warn(f"the exporter wrote opset {written} instead of the requested {opset} (it could not "
                      f"convert every operator); onnxruntime runs both", stacklevel=2)
    del proto.metadata_props[:]
    for key, value in _metadata(model, size, written, dynamic_batch).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress logging (the opset conversion notice is handled by export_onnx)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _run_exporter(graph: nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool,
                  external: bool) -> None:
    """torch.onnx's dynamo exporter; the TorchScript exporter as a fallback."""
    errors = []
    try:
        _require("onnxscript", "PyTorch's ONNX exporter")
        shapes = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
        with _quiet_exporter():
            program = torch.onnx.export(graph, (example,), None, dynamo=True, input_names=[INPUT_NAME],
                                        output_names=list(OUTPUT_NAMES), opset_version=opset,
                                        dynamic_shapes=(shapes,) if shapes else None, verbose=False)
        program.save(str(path), external_data=external)
        return
    except Exception as exc:  # noqa: BLE001 -- every exporter failure falls back to the legacy path
        errors.append(f"dynamo exporter: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    try:
        axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}} if dynamic_batch else None
        with _quiet_exporter():
            torch.onnx.export(graph, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), opset_version=opset, dynamic_axes=axes,
                              do_constant_folding=True)
        return
    except Exception as exc:  # noqa: BLE001
        errors.append(f"TorchScript exporter: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    raise ExportError("could not export the model to ONNX:\n  " + "\n  ".join(errors))


def read_onnx_metadata(path: PathLike) -> Dict[str, object]:
    """The parkit metadata of an exported file, decoded.

    Args:
        path: an .onnx file written by `export_onnx`.

    Returns:
        {"attributes": [...], "sentences": [...], "config": {...}, "image_size": int,
        "normalization": {"name", "mean", "std"}, "threshold": float, "inputs", "outputs", ...}.

    Raises:
        ExportError: the file has no parkit metadata.
    """
    onnx = _require("onnx", "Reading ONNX metadata")
    proto = onnx.load(str(path), load_external_data=False)
    raw = {p.key[len(METADATA_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)}
    if "format" not in raw:
        raise ExportError(f"{path} has no parkit metadata (was it written by parkit.export.export_onnx?)")
    out: Dict[str, object] = {}
    for key, value in raw.items():
        if key in ("attributes", "sentences", "config", "normalization", "inputs", "outputs"):
            out[key] = json.loads(value)
        elif key == "image_size":
            out[key] = int(value)
        elif key == "threshold":
            out[key] = float(value)
        else:
            out[key] = value
    return out


def onnx_session(path: PathLike, threads: Optional[int] = None):
    """An onnxruntime CPU `InferenceSession` for an exported file.

    Args:
        path: the .onnx file.
        threads: intra-op threads (None = onnxruntime's default).
    """
    ort = _require("onnxruntime", "Running an ONNX model")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def compare_with_torch(model: nn.Module, path: PathLike, batch: int = 2, seed: int = 0) -> float:
    """Largest absolute difference of the probabilities (onnxruntime vs PyTorch) on random images."""
    size = read_onnx_metadata(path)["image_size"]
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(images).logits).numpy()
    got = onnx_session(path).run([OUTPUT_NAMES[0]], {INPUT_NAME: images.numpy()})[0]
    return float(abs(got - expected).max())


__all__: List[str] = ["export_onnx", "read_onnx_metadata", "onnx_session", "compare_with_torch",
                      "ExportError", "INPUT_NAME", "OUTPUT_NAMES", "THRESHOLD"]
