"""Benchmark worker: one preset, parkit vs the reference mode (official computation structure), side by side.

Measures, in one process and with interleaved repetitions (see common.py):

- training-step time and peak RSS at one batch size;
- inference throughput (images/s) and peak RSS at several batch sizes (parkit with its text cache);
- optionally a per-component breakdown of the training step (parkit vs reference) and a
  torch.profiler op table of parkit's step;
- optionally how time and memory grow with the number of attributes, the visual prompt length and
  the batch size (`--sweeps`);
- optionally ONNX Runtime CPU throughput next to PyTorch's for the same model (`--onnx-batches`).

Usage (run_all.py calls it; every run is its own process for clean memory accounting):

    python benchmarks/bench_model.py --preset promptpar-micro --train-batch 32 \
        --infer-batches 1,16,64 --sweeps attributes,prompt,batch --json out.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import BF16, COMPILED, log, median  # noqa: E402

SWEEP_DATASETS = (("PA100K", 26), ("PETA", 35), ("RAPv1", 51), ("RAPv2", 54))


def _ints(text: str) -> List[int]:
    return [int(t) for t in text.split(",") if t.strip()] if text else []


def compare(fns: Dict[str, object], reps: int, unit_batch: int = 0) -> Dict[str, dict]:
    """Warm-up + peak memory per variant, then interleaved repetitions.

    Returns:
        {variant: {"times", "median_s", "peak_mib", "rss_before_mib", ["images_per_s"]}}.
    """
    out: Dict[str, dict] = {}
    for name, fn in fns.items():
        out[name] = common.measure_peak(fn)  # the warm-up run (fills parkit's text cache)
    # reps = 0: the warm-up call is the measurement (calls of a minute or more, e.g. ViT-L/14 at batch 64)
    times = common.interleaved(fns, reps) if reps else {name: [out[name]["seconds"]] for name in fns}
    for name in fns:
        med = median(times[name])
        out[name].update(times=times[name], median_s=med)
        if unit_batch:
            out[name]["images_per_s"] = unit_batch / med
    return out


def compiled_infer_fn(model, batch: int, result: dict):
    """parkit's inference through `compile_for_inference`, built here (compile time and the largest
    logit difference to eager inference go into `result["compile"]`)."""
    import torch

    from parkit.train.inference import compile_for_inference

    x = common.images_for(model, batch)
    holder = {}
    seconds = common.timed(lambda: holder.update(net=compile_for_inference(model, x)))
    compiled = holder["net"]
    with torch.inference_mode():
        diff = float((compiled(x).logits - model(x).logits).abs().max())
    result.setdefault("compile", {})[str(batch)] = {"compile_s": seconds, "max_logit_diff": diff}
    log(f"  compiled for batch {batch} in {seconds:.0f} s, max |compiled - eager| logit {diff:.1e}")
    return common.infer_fn(compiled, batch)  # the same images as `x` (images_for's default seed)


def train_variants(model, ref, batch: int, bf16: bool = False) -> Dict[str, object]:
    """Training-step closures of parkit and the reference (same recipe, see common.train_step_fn);
    with `bf16` also parkit's step under CPU bf16 autocast."""
    fns = {"parkit": common.train_step_fn(model, batch), "reference": common.train_step_fn(ref, batch)}
    if bf16:
        fns[BF16] = common.train_step_fn(model, batch, bf16=True)
    return fns


def breakdown(model, ref, batch: int, reps: int = 2) -> Dict[str, dict]:
    """Forward+backward seconds of each component of a training step, parkit vs the reference structure.

    Components: text encoder (parkit: cut after the last EOT; reference: all 77 positions, unfused
    attention), visual encoder (SDPA with a boolean mask vs sequence-first unfused attention with the
    additive mask), and fusion + global-local branch + heads (einsum heads vs a loop of A Linear(W, 1)).
    """
    import torch

    model.train()
    ref.train()
    x = common.images_for(model, batch)
    with torch.no_grad():
        vis = model.visual(x)
        text = model.text.encode()
    scale = model.logit_scale.exp().detach()
    positions = {}

    def text_parkit():
        model.text.encode().sum().backward()

    def text_reference():
        ref.encode_text().sum().backward()

    def visual_parkit():
        out = model.visual(x)
        (out.tokens.sum() + out.regions.sum()).backward()

    def visual_reference():
        tokens, regions = ref.encode_image(x)
        (tokens.sum() + regions.sum()).backward()

    def head_parkit():
        logits = model.fusion(text, vis.tokens)
        aux = model.gl(vis.regions, text, scale) if model.gl is not None else logits
        (logits.sum() + aux.sum()).backward()

    def head_reference():
        logits = ref.classify(text, vis.tokens)
        aux = ref.similarity(vis.regions, text) if ref.gl is not None else logits
        (logits.sum() + aux.sum()).backward()

    def record(module, inputs, output) -> None:  # a hook that returns something replaces the output
        positions[len(positions)] = tuple(inputs[0].shape)

    hook = model.text.transformer.resblocks[0].ln_1.register_forward_hook(record)
    text_parkit()
    text_reference()
    hook.remove()
    pairs = {"text encoder": (text_parkit, text_reference), "visual encoder": (visual_parkit, visual_reference),
             "fusion + GL branch + heads": (head_parkit, head_reference)}
    out: Dict[str, dict] = {}
    for name, (p_fn, r_fn) in pairs.items():
        times = common.interleaved({"parkit": p_fn, "reference": r_fn}, reps)
        out[name] = {"parkit": median(times["parkit"]), "reference": median(times["reference"])}
    model.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    # parkit runs batch-first (A, L, W), the reference sequence-first (L, A, W)
    out["text positions"] = {"parkit": positions[0][1], "reference": positions[1][0]}
    return out


def profile_table(step, rows: int = 12) -> str:
    """torch.profiler op table (self CPU time) of one call of `step`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48)


def sweep(kind: str, preset: str, clip_model, args, base_model=None, base_ref=None) -> List[dict]:
    """Time/memory of parkit and the reference as one setting grows."""
    points: List[dict] = []
    if kind == "batch":
        for b in _ints(args.sweep_train_batches):
            log(f"sweep batch: train b={b}")
            r = compare(train_variants(base_model, base_ref, b), args.sweep_reps)
            points.append({"value": b, "phase": "train", "variants": r})
        common.eval_all(base_model, base_ref)
        for b in _ints(args.sweep_infer_batches):
            log(f"sweep batch: infer b={b}")
            fns = {"parkit": common.infer_fn(base_model, b), "reference": common.infer_fn(base_ref, b)}
            points.append({"value": b, "phase": "infer", "variants": compare(fns, args.sweep_reps, b)})
        return points
    if kind == "attributes":
        settings = [({"attributes": name}, n) for name, n in SWEEP_DATASETS]
    elif kind == "prompt":
        settings = [({"attributes": "PETA", "vis_prompt": p}, p) for p in _ints(args.sweep_prompts)]
    else:
        raise SystemExit(f"unknown sweep {kind!r}; use attributes, prompt or batch")
    for setting, value in settings:
        log(f"sweep {kind}={value}")
        setting = dict(setting)
        attributes = setting.pop("attributes")
        model, ref = common.build_variants(preset, attributes, clip_model, **setting)
        point = {"value": value, "tokens": model.visual.layout.length, "num_attributes": len(model.attributes)}
        if args.sweep_train_batch:
            point["train"] = compare(train_variants(model, ref, args.sweep_train_batch), args.sweep_reps)
        if args.sweep_infer_batch:
            common.eval_all(model, ref)
            fns = {"parkit": common.infer_fn(model, args.sweep_infer_batch),
                   "reference": common.infer_fn(ref, args.sweep_infer_batch)}
            point["infer"] = compare(fns, args.sweep_reps, args.sweep_infer_batch)
        points.append(point)
        del model, ref
    return points


def onnx_bench(model, batches: List[int], reps: int) -> List[dict]:
    """ONNX Runtime (CPU, 2 threads) vs PyTorch inference on the exported model."""
    import numpy as np
    import torch

    from parkit.export import INPUT_NAME, export_onnx, onnx_session

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_s = common.timed(lambda: export_onnx(model, path))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        session = onnx_session(path, threads=common.THREADS)
        common.eval_all(model)
        for b in batches:
            x = common.images_for(model, b, seed=3)
            feed = {INPUT_NAME: x.numpy()}
            with torch.inference_mode():
                expected = torch.sigmoid(model(x).logits).numpy()
            got = session.run(None, feed)[0]
            fns = {"pytorch": common.infer_fn(model, b), "onnxruntime": lambda: session.run(None, feed)}
            r = compare(fns, reps, b)
            rows.append({"batch": b, "variants": r, "max_prob_diff": float(np.abs(got - expected).max()),
                         "export_s": export_s, "file_mib": size / 2 ** 20})
        del session
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--attributes", default="PETA", help="schema name for the main measurements")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--infer-batches", default="1,16,64")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (after a warm-up)")
    p.add_argument("--infer-reps", default="",
                   help="per-batch repetitions, e.g. 5,3,2 (default --reps); 0 = time the warm-up call itself")
    p.add_argument("--breakdown", action="store_true", help="per-component times of parkit's training step")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one parkit training step")
    p.add_argument("--sweeps", default="", help="comma list of attributes,prompt,batch")
    p.add_argument("--sweep-reps", type=int, default=2)
    p.add_argument("--sweep-train-batch", type=int, default=0)
    p.add_argument("--sweep-infer-batch", type=int, default=1)
    p.add_argument("--sweep-prompts", default="0,25,50,100")
    p.add_argument("--sweep-train-batches", default="")
    p.add_argument("--sweep-infer-batches", default="")
    p.add_argument("--onnx-batches", default="", help="ONNX Runtime vs PyTorch at these batch sizes")
    p.add_argument("--bf16-infer", action="store_true",
                   help="also time parkit's inference under CPU bf16 autocast (separately, after fp32)")
    p.add_argument("--bf16-train", action="store_true", help="also time parkit's training step under bf16 autocast")
    p.add_argument("--bf16-batches", default="", help="batch sizes for --bf16-infer (default: all)")
    p.add_argument("--compile-infer", action="store_true",
                   help="also time parkit's inference through parkit.train.inference.compile_for_inference "
                        "(torch.compile, inductor with frozen weights; fp32)")
    p.add_argument("--compile-batches", default="", help="batch sizes for --compile-infer (default: all)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    common.set_threads()
    from parkit.model.reference import tensor_bytes

    result: dict = {"preset": args.preset, "machine": common.machine_info()}
    log(f"{args.preset}: building (random weights)")
    clip_model = None

    def make():
        nonlocal clip_model
        clip_model = common.load_backbone(args.preset)
        return common.build_variants(args.preset, args.attributes, clip_model)

    holder = {}
    build = common.timed(lambda: holder.update(pair=make()))
    model, ref = holder.pop("pair")
    result.update(build_s=build, static_rss_mib=common.rss_mib(), num_attributes=len(model.attributes),
                  attributes=args.attributes, tokens=model.visual.layout.length,
                  config=model.config.to_dict(),
                  checkpoint_bytes={"parkit": tensor_bytes(model.trainable_state_dict()),
                                    "reference": tensor_bytes(ref.full_state_dict())})
    result["max_logit_diff"] = common.max_logit_difference(model, ref)
    log(f"max |parkit - reference| logit difference: {result['max_logit_diff']:.2e}")

    if not args.skip_train:
        log(f"training step, batch {args.train_batch}")
        fns = train_variants(model, ref, args.train_batch, args.bf16_train)
        result["train"] = {"batch": args.train_batch, "variants": compare(fns, args.reps)}
        for k, v in result["train"]["variants"].items():
            log(f"  {k}: {v['median_s']:.3f} s/step, peak {v['peak_mib']:.0f} MiB")
        del fns

    batches = _ints(args.infer_batches)
    reps = _ints(args.infer_reps) or [args.reps] * len(batches)
    result["infer"] = []
    common.eval_all(model, ref)
    for b, r in zip(batches, reps):
        log(f"inference, batch {b}")
        fns = {"parkit": common.infer_fn(model, b), "reference": common.infer_fn(ref, b)}
        row = {"batch": b, "variants": compare(fns, r, b)}
        if args.bf16_infer and b in (_ints(args.bf16_batches) or batches):
            # Timed on its own, not interleaved: parkit's one-entry text cache is keyed on the autocast
            # state, so alternating with the fp32 calls would recompute the text every time.
            bf16 = {BF16: common.infer_fn(model, b, bf16=True)}
            row["variants"].update(compare(bf16, r, b))
        if args.compile_infer and b in (_ints(args.compile_batches) or batches):
            row["variants"].update(compare({COMPILED: compiled_infer_fn(model, b, result)}, r, b))
        result["infer"].append(row)
        for k, v in row["variants"].items():
            log(f"  {k}: {v['images_per_s']:.2f} img/s, peak {v['peak_mib']:.0f} MiB")
        common.write_json(args.json, result)  # partial results survive a timeout

    if args.bf16_infer:
        import torch

        x = common.images_for(model, 2, seed=5)
        with torch.inference_mode():
            full = model(x).logits
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = model(x).logits
        result["bf16_max_logit_diff"] = float((full - half.float()).abs().max())
    if args.profile:
        log("torch.profiler, one parkit training step")
        step = common.train_step_fn(model, args.train_batch)
        step()  # warm-up
        result["profile"] = profile_table(step)
        del step
    if args.breakdown:
        log("breakdown of parkit's training step")
        result["breakdown"] = {"batch": args.train_batch, "seconds": breakdown(model, ref, args.train_batch)}
    for kind in [s for s in args.sweeps.split(",") if s]:
        result.setdefault("sweeps", {})[kind] = sweep(kind, args.preset, clip_model, args, model, ref)
        common.write_json(args.json, result)
    if args.onnx_batches:
        log("ONNX Runtime vs PyTorch")
        result["onnx"] = onnx_bench(model, _ints(args.onnx_batches), args.reps)
    result["load_after"] = common.load_average()
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
