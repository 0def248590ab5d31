"""ONNX export (parkit.export): the graph takes images only, its probabilities match PyTorch's in
onnxruntime, the text branch is baked in as a constant, and the metadata describes the model."""
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from parkit.cli import main  # noqa: E402
from parkit.export import (INPUT_NAME, OUTPUT_NAMES, ExportError, export_onnx,  # noqa: E402
                           onnx_session, read_onnx_metadata)
from parkit.model import PromptPAR, PromptPARConfig, create_model  # noqa: E402

# A micro-like tiny CLIP: 64 px / patch 8 = 8x8 grid, 2 vision layers, text width 64.
TINY = dict(embed_dim=48, image_resolution=64, vision_layers=2, vision_width=128, vision_patch_size=8,
            context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=2, transformer_layers=2)
SENTENCES = ["A pedestrian wearing a hat", "A pedestrian in jeans", "A male pedestrian",
             "A pedestrian with a backpack"]


def tiny_promptpar(seed=0, **overrides):
    import clip.model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = PromptPARConfig(**{**dict(vis_prompt=10, text_prompt=2, mm_init="backbone_last"), **overrides})
        model = PromptPAR(clip.model.CLIP(**TINY), SENTENCES, cfg, attributes=[f"attr{i}" for i in range(4)])
        # Non-trivial BN statistics, so that eval-mode normalisation is part of what is compared.
        model.fusion.bn.running_mean.uniform_(-0.5, 0.5)
        model.fusion.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def torch_probs(model, images):
    with torch.no_grad():
        return torch.sigmoid(model(images).logits).numpy()


@pytest.mark.parametrize("flags, dynamic", [({}, True), ("official", False)], ids=["clean-dynamic", "official-static"])
def test_onnxruntime_matches_pytorch(tmp_path, flags, dynamic):
    overrides = {} if flags == {} else {k: v for k, v in PromptPARConfig.official().to_dict().items()
                                        if k not in ("backbone", "mm_init")}
    model = tiny_promptpar(**overrides)
    path = export_onnx(model, tmp_path / "m.onnx", dynamic_batch=dynamic)
    session = onnx_session(path, threads=2)
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]  # images only: no text input
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    g = torch.Generator().manual_seed(3)
    for batch in ((1, 3) if dynamic else (1,)):
        images = torch.randn(batch, 3, 64, 64, generator=g)
        probs, logits = session.run(None, {INPUT_NAME: images.numpy()})
        assert probs.shape == logits.shape == (batch, 4)
        np.testing.assert_allclose(probs, torch_probs(model, images), atol=1e-5, rtol=0)
        np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)
    if not dynamic:
        dims = session.get_inputs()[0].shape
        assert dims[0] == 1
    assert model.training is False  # eval mode restored, nothing left changed


def test_text_branch_is_a_constant_and_metadata_describes_the_model(tmp_path):
    model = tiny_promptpar(seed=1)
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    shapes = [tuple(t.dims) for t in proto.graph.initializer]
    # The token embedding (vocabulary x text width) would be there if the text transformer had been
    # exported; instead the (A, E) text features are a single constant.
    assert not any(s and s[0] == TINY["vocab_size"] for s in shapes)
    constants = [tuple(t.dims) for t in proto.graph.initializer] + [
        tuple(a.t.dims) for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    assert (len(SENTENCES), TINY["embed_dim"]) in constants

    meta = read_onnx_metadata(path)
    assert meta["attributes"] == [f"attr{i}" for i in range(4)]
    assert meta["sentences"] == SENTENCES
    assert meta["image_size"] == 64
    assert meta["threshold"] == 0.45
    assert meta["normalization"] == {"name": "official", "mean": [0.5] * 3, "std": [0.5] * 3}
    assert meta["config"]["vis_prompt"] == 10 and meta["config"]["text_prompt"] == 2
    assert PromptPARConfig.from_dict(meta["config"]) == model.config  # the full resolved config round-trips
    assert meta["opset"] == str(proto.opset_import[0].version)


def test_bad_requests_raise_clear_errors(tmp_path):
    model = tiny_promptpar()
    with pytest.raises(ExportError, match="image_size=96 does not match the model's 64 px"):
        export_onnx(model, tmp_path / "m.onnx", image_size=96)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)
    (tmp_path / "plain.onnx").write_bytes(onnx.helper.make_model(onnx.helper.make_graph(
        [], "g", [], [])).SerializeToString())
    with pytest.raises(ExportError, match="no parkit metadata"):
        read_onnx_metadata(tmp_path / "plain.onnx")


def test_cli_exports_a_parkit_checkpoint(tmp_path, capsys):
    """`python -m parkit export CKPT OUT --check`: rebuild from the checkpoint, export, compare."""
    model = create_model("promptpar-micro", SENTENCES, pretrained=False, device="cpu")
    with torch.no_grad():
        model.visual.prompt_deep.add_(0.05)  # a "trained" tensor that only the checkpoint carries
        model.fusion.heads.bias.fill_(0.3)
    ckpt = {"format": "parkit/1", "preset": "promptpar-micro", "config": model.config.to_dict(),
            "attributes": model.attributes, "sentences": model.sentences, "pretrained": False,
            "model": model.trainable_state_dict()}
    torch.save(ckpt, tmp_path / "best.pt")
    assert main(["export", str(tmp_path / "best.pt"), str(tmp_path / "out.onnx"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "4 attributes" in out and "max |probability difference|" in out
    size = model.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    probs = onnx_session(tmp_path / "out.onnx").run([OUTPUT_NAMES[0]], {INPUT_NAME: images.numpy()})[0]
    np.testing.assert_allclose(probs, torch_probs(model, images), atol=1e-5, rtol=0)
    assert read_onnx_metadata(tmp_path / "out.onnx")["sentences"] == SENTENCES


def test_a_baseline_exports_through_its_own_forward(tmp_path):
    """Baselines have no `visual`/`text`/`fusion` split; their (lazily cached) text features are
    computed before tracing and end up as constants too."""
    model = create_model("zeroshot-clip-micro", SENTENCES, pretrained=False, device="cpu")
    path = export_onnx(model, tmp_path / "zs.onnx")
    images = torch.randn(3, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(4))
    probs = onnx_session(path).run([OUTPUT_NAMES[0]], {INPUT_NAME: images.numpy()})[0]
    np.testing.assert_allclose(probs, torch_probs(model, images), atol=1e-5, rtol=0)
    assert [i.name for i in onnx.load(str(path)).graph.input] == [INPUT_NAME]
