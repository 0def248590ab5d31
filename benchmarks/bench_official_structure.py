"""The issue's target benchmark: PromptPAR ViT-L/14 on PETA against a plain CLIP ViT-L/14 image encoder.

Configuration: `promptpar-vitl14` (the full paper configuration: 50 deep visual prompts in all 24
layers, 4 part tokens with the stripe mask, deep text prompts, global-local branch, MM-former),
35 PETA attributes, random weights, fp32, 2 threads, batch 2. In one process, interleaved:

- plain: `clip.model.VisionTransformer.forward` of the same backbone at batch 2 (no prompts, no grad);
- parkit's training step (train mode, main + 0.5 x auxiliary BCE, backward, clip, SGD step) and
  parkit's forward (eval, inference mode, text cache);
- the same two for the reference mode (official computation structure, spec §3; see
  `parkit.model.reference`).

Targets (from the issue): training step <= 4.2x and forward <= 1.4x the plain forward; peak
training memory <= 6.4 GiB. The per-component breakdown (and optionally a torch.profiler table)
says where the time goes. `--sizes` also prints the checkpoint-size comparison (parkit's
trained-tensors-only checkpoint vs the official full checkpoint, from tensor byte counts on the
meta device: no file is written).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import log  # noqa: E402

TARGETS = {"train_x": 4.2, "forward_x": 1.4, "peak_gib": 6.4}
SPEC_LAYOUT = "official_layout_peta_vitl14.json"


def spec_layout_path():
    """The official PETA ViT-L/14 state-dict layout kept beside the project (or $PARKIT_SPEC_DIR)."""
    root = Path(os.environ.get("PARKIT_SPEC_DIR", common.REPO.parent / "shared" / "spec"))
    path = root / SPEC_LAYOUT
    return path if path.is_file() else None


def checkpoint_sizes(attributes: str = "PETA", epochs: int = 100) -> dict:
    """Checkpoint sizes (bytes) of parkit vs the official layout for ViT-L/14, from tensor byte counts.

    Rows: parkit's `trainable_state_dict()` (what parkit saves), and the official checkpoint
    (`ReferencePromptPAR.full_state_dict()`: all CLIP tensors + the classifier), in fp32 and with
    the official GPU loader's fp16 weights (spec §3.1), plus the MM-side SGD momentum the official
    `train.py` stores next to it (spec §14.15). Models are built on the meta device (no memory).
    """
    from parkit.model import count_parameters, create_model
    from parkit.model.reference import ReferencePromptPAR, official_gpu_dtype, tensor_bytes

    out = {"attributes": attributes, "epochs": epochs, "presets": {}}
    for preset in ("promptpar-vitl14", "promptpar-official"):
        model = create_model(preset, attributes=attributes, pretrained=False, device="meta")
        ref = ReferencePromptPAR(model)
        full = ref.full_state_dict()
        groups = model.param_groups()
        fusion_params = sum(p.numel() for p in groups["fusion"])
        all_trainable = fusion_params + sum(p.numel() for p in groups["prompt"])
        out["presets"][preset] = {
            "parkit_trainable": tensor_bytes(model.trainable_state_dict()),
            "official_fp32": tensor_bytes(full),
            "official_gpu_fp16": tensor_bytes(full, official_gpu_dtype),
            "official_optimizer": 4 * fusion_params,  # SGD momentum of the MM side only (spec §14.15)
            "parkit_optimizers": 4 * all_trainable,  # both SGD momentum buffers, in last.pt / best.pt
            "tensors_official": len(full),
            "tensors_parkit": len(model.trainable_state_dict()),
            "trainable_parameters": count_parameters(model)["trainable"],
        }
    layout = spec_layout_path()
    if layout is not None:
        data = json.loads(layout.read_text())
        nbytes = {"torch.float32": 4, "torch.float16": 2, "torch.int64": 8}
        total = 0
        for part in ("clip", "classifier"):
            for _name, shape, dtype in data[part]:
                n = 1
                for s in shape:
                    n *= s
                total += n * nbytes.get(dtype, 4)
        out["spec_layout_bytes"] = total
        out["spec_layout_tensors"] = len(data["clip"]) + len(data["classifier"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="promptpar-vitl14")
    p.add_argument("--attributes", default="PETA")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one parkit training step")
    p.add_argument("--sizes", action="store_true", help="only compute the checkpoint sizes (fast)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    common.set_threads()
    if args.sizes:
        result = {"sizes": checkpoint_sizes(args.attributes)}
        print(json.dumps(result, indent=1))
        common.write_json(args.json, result)
        return 0

    import torch

    from bench_model import breakdown, compare, profile_table, train_variants

    result: dict = {"preset": args.preset, "attributes": args.attributes, "batch": args.batch,
                    "machine": common.machine_info(), "targets": TARGETS}
    log(f"{args.preset} on {args.attributes}: building (random weights)")
    holder = {}

    def build():
        holder["clip"] = common.load_backbone(args.preset)
        holder["pair"] = common.build_variants(args.preset, args.attributes, holder["clip"])

    result["build_s"] = common.timed(build)
    clip_model = holder["clip"]
    model, ref = holder["pair"]
    result["static_rss_mib"] = common.rss_mib()
    result["tokens"] = model.visual.layout.length
    result["num_attributes"] = len(model.attributes)
    result["max_logit_diff"] = common.max_logit_difference(model, ref)
    log(f"built in {result['build_s']:.1f} s; max |parkit - reference| = {result['max_logit_diff']:.2e}")

    plain_visual = clip_model.visual  # the unmodified clip.model.VisionTransformer (shared weights)
    x = common.images_for(model, args.batch)

    common.eval_all(model, ref, plain_visual)

    def plain():
        with torch.inference_mode():
            return plain_visual(x)

    fwd = {"plain CLIP ViT forward": plain, "parkit": common.infer_fn(model, args.batch),
           "reference": common.infer_fn(ref, args.batch)}
    log("forward: plain / parkit / reference")
    result["forward"] = compare(fwd, args.reps, args.batch)
    for k, v in result["forward"].items():
        log(f"  {k}: {v['median_s']:.2f} s")
    common.write_json(args.json, result)

    log("training step: parkit / reference")
    steps = train_variants(model, ref, args.batch)
    result["train"] = compare(steps, args.reps)
    for k, v in result["train"].items():
        log(f"  {k}: {v['median_s']:.2f} s, peak {v['peak_mib'] / 1024:.2f} GiB")
    common.write_json(args.json, result)

    plain_s = result["forward"]["plain CLIP ViT forward"]["median_s"]
    ratios = {}
    for name in ("parkit", "reference"):
        if name in result["train"]:
            ratios[name] = {"train_x": result["train"][name]["median_s"] / plain_s,
                            "peak_gib": result["train"][name]["peak_mib"] / 1024}
        if name in result["forward"]:
            ratios.setdefault(name, {})["forward_x"] = result["forward"][name]["median_s"] / plain_s
    result["ratios"] = ratios
    if not args.no_breakdown:
        log("breakdown of parkit's training step")
        result["breakdown"] = {"batch": args.batch, "seconds": breakdown(model, ref, args.batch)}
    if args.profile:
        result["profile"] = profile_table(steps["parkit"])
    result["load_after"] = common.load_average()
    common.write_json(args.json, result)
    print(json.dumps(ratios, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
