"""GPU benchmark: parkit vs the reference mode on one CUDA device, bf16 autocast, larger batches.

Prints the same side-by-side table as the CPU benchmarks (training-step time, inference images/s,
peak memory = `torch.cuda.max_memory_allocated`, every figure also as a ratio to the reference)
for `promptpar-micro`, `promptpar-vitb16` and `promptpar-vitl14` (PETA, random weights), with
optional `torch.compile` of parkit's model. Sized to finish in under 10 minutes on one recent GPU.

    python benchmarks/bench_gpu.py                 # all three presets on cuda:0
    python benchmarks/bench_gpu.py --compile       # also parkit under torch.compile
    python benchmarks/bench_gpu.py --dry-run       # tiny sizes on the CPU: checks the script runs

Nothing runs at import; without a GPU (and without --dry-run) it says so and exits with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# preset -> (training batch, inference batches); the official training batch is 16 (spec §9).
GPU_PLAN = {
    "promptpar-micro": (256, [1, 64, 512]),
    "promptpar-vitb16": (64, [1, 64, 256]),
    "promptpar-vitl14": (16, [1, 32, 128]),
}
DRY_PLAN = {"promptpar-micro": (4, [1, 4])}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device, enabled: bool):
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_train(model, batch: int, device, amp: bool) -> Callable[[], float]:
    """One training step: the same recipe and closure as the CPU benchmarks, on `device`."""
    return common.train_step_fn(model, batch, bf16=amp, device=device)


def make_infer(model, batch: int, device, amp: bool) -> Callable[[], object]:
    import torch

    size = model.image_size
    x = torch.randn(batch, 3, size, size, device=device)

    def run():
        if model.training:  # switch once: parkit's text encoder drops its cache on every eval()/train() call
            model.eval()
        with torch.inference_mode(), _autocast(device, amp):
            out = model(x).logits
        _sync(device)
        return out

    return run


def measure(fns: Dict[str, Callable], reps: int, device, unit_batch: int = 0) -> Dict[str, dict]:
    """Warm-up (and peak memory) per variant, then interleaved timed repetitions."""
    import torch

    out: Dict[str, dict] = {}
    for name, fn in fns.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            out[name] = {"peak_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20}
        else:
            out[name] = common.measure_peak(fn)
        fn()  # second warm-up: compiled graphs, autotuning, caches
    times = common.interleaved(fns, reps)
    for name in fns:
        med = common.median(times[name])
        out[name].update(times=times[name], median_s=med)
        if unit_batch:
            out[name]["images_per_s"] = unit_batch / med
    return out


def bench_preset(preset: str, train_batch: int, infer_batches: List[int], device, amp: bool, reps: int,
                 compile_model: bool) -> dict:
    import torch

    from parkit.model import create_model
    from parkit.model.reference import ReferencePromptPAR

    common.log(f"{preset}: building on the CPU, then moving to {device}")
    torch.manual_seed(0)
    model = create_model(preset, attributes="PETA", pretrained=False, device="cpu").to(device)
    ref = ReferencePromptPAR(model)
    result = {"preset": preset, "num_attributes": len(model.attributes), "tokens": model.visual.layout.length,
              "device": str(device), "amp": "bf16" if amp else "fp32"}
    x = torch.randn(2, 3, model.image_size, model.image_size, device=device)
    with torch.inference_mode(), _autocast(device, amp):
        a, b = model.eval()(x), ref.eval()(x)
    result["max_logit_diff"] = float((a.logits.float() - b.logits.float()).abs().max())

    steps = {"parkit": make_train(model, train_batch, device, amp), "reference": make_train(ref, train_batch, device, amp)}
    if compile_model:
        compiled = torch.compile(model)
        compiled.attributes, compiled.image_size = model.attributes, model.image_size
        steps["parkit (torch.compile)"] = make_train(compiled, train_batch, device, amp)
    common.log(f"  training step, batch {train_batch}")
    result["train"] = {"batch": train_batch, "variants": measure(steps, reps, device)}
    result["infer"] = []
    common.eval_all(model, ref)
    for bsz in infer_batches:
        common.log(f"  inference, batch {bsz}")
        fns = {"parkit": make_infer(model, bsz, device, amp), "reference": make_infer(ref, bsz, device, amp)}
        result["infer"].append({"batch": bsz, "variants": measure(fns, reps, device, bsz)})
    del model, ref, steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=",".join(GPU_PLAN))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--fp32", action="store_true", help="no autocast")
    p.add_argument("--compile", action="store_true", help="also time parkit under torch.compile")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    if args.dry_run:
        device, plan, amp, reps = torch.device("cpu"), DRY_PLAN, False, 1
        common.set_threads()
    else:
        if not torch.cuda.is_available():
            print("bench_gpu.py: no CUDA device here; run it on a GPU machine, or use --dry-run to check "
                  "the script on the CPU", file=sys.stderr)
            return 2
        device, amp, reps = torch.device("cuda", 0), not args.fp32, args.reps
        plan = {k: GPU_PLAN[k] for k in args.presets.split(",") if k}
        torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    results = {"machine": common.machine_info(), "presets": []}
    if device.type == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name(device)
    for preset, (train_batch, infer_batches) in plan.items():
        results["presets"].append(bench_preset(preset, train_batch, infer_batches, device, amp, reps,
                                               args.compile and not args.dry_run))
        common.write_json(args.json, results)
    results["wall_s"] = time.perf_counter() - start

    from run_all import render_preset  # noqa: PLC0415 (same table as the CPU report)

    for r in results["presets"]:
        print(render_preset(r, memory_label="peak GPU memory" if device.type == "cuda" else "peak RSS"))
    print(f"\n(total {results['wall_s']:.0f} s; {json.dumps(results['machine'])})")
    common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
