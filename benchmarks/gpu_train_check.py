"""Training on one CUDA GPU: the code paths the CPU test suite cannot reach.

On demo SynthPAR (the notebooks' default data) this script

1. trains `promptpar-micro` and `linear-probe-micro` on `cuda` with bf16 autocast for the demo
   budget (6 epochs) and, for PromptPAR, 24 epochs, timing each run;
2. evaluates the selected PromptPAR checkpoint on the test split on the GPU (bf16) and on the CPU
   (fp32): the two mA must agree (same weights, different precision and device);
3. runs `python -m parkit train` on the GPU, kills it (SIGKILL) after epoch 3 of 6, starts it again
   in the same folder and compares with the same command run without interruption (resume on
   CUDA restores the CUDA random state too);
4. predicts on a few image files through `parkit.predict` on the GPU,

and writes a markdown table to `--output`. `--dry-run` runs the same steps for 1-2 epochs on the
CPU to check the script itself.

    python benchmarks/gpu_train_check.py --output gpu_train_check.md
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "gpu_train_check.md"))
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--dry-run", action="store_true", help="1-2 epochs on the CPU: checks the script runs")
    args = p.parse_args(argv)

    import torch

    dev = "cpu" if args.dry_run else "cuda"
    short, long_, half_n = (1, 2, 1) if args.dry_run else (6, 24, 3)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from parkit.model import create_model
    from parkit.profiles import get_profile, profile_dataset
    from parkit.train import train
    from parkit.train.checkpoint import load_model
    from parkit.train.inference import evaluate, predict

    profile = get_profile("demo")
    dataset = profile_dataset(profile)
    work = Path(tempfile.mkdtemp(prefix="parkit-gpu-"))
    rows, notes = [], []

    def fit(preset: str, epochs: int, out: Path, seed: int = 0):
        torch.manual_seed(seed)  # the model's own random init (heads, embeddings) too
        model = create_model(preset, attributes=list(dataset.attributes), sentences=list(dataset.sentences),
                             device=dev)
        start = time.perf_counter()
        result = train(model, dataset, epochs=epochs, batch_size=profile.batch_size, seed=seed, out_dir=out,
                       device=dev, precision="auto", progress=False, verbose=False,
                       num_workers=args.workers)
        seconds = time.perf_counter() - start
        sel = result.test_metrics.get("selected") or result.test_metrics["last"]
        rows.append((preset, epochs, sel["mA"], result.best_epoch, seconds))
        print(f"{preset} {epochs} epochs on {dev}: test mA {sel['mA']:.2f} (best epoch {result.best_epoch}, "
              f"{seconds:.0f} s)", flush=True)
        return result

    fit("promptpar-micro", short, work / "pp6")
    fit("linear-probe-micro", short, work / "lp6")
    fit("promptpar-micro", long_, work / "pp24")

    # 2. the same checkpoint evaluated on the GPU (bf16) and on the CPU (fp32)
    for device, precision in ((dev, "auto"), ("cpu", "fp32")):
        model = load_model(work / "pp6" / "best.pt", device=device)
        m = evaluate(model, dataset, split="test", device=device, precision=precision, progress=False)
        notes.append(f"best.pt of the 6-epoch PromptPAR run, test split on {device} ({precision}): "
                     f"mA {100 * m.metrics['mA']:.2f}")
        print(notes[-1], flush=True)

    # 3. the CLI run killed (SIGKILL) after epoch `half_n` and started again, vs the same run whole
    import json
    import os
    import signal
    import subprocess

    def cli(out: Path) -> list:
        return [sys.executable, "-m", "parkit", "train", "--preset", "promptpar-micro", "--dataset", "SynthPAR",
                "--root", str(dataset.root), "--out", str(out), "--epochs", str(short), "--device", dev,
                "--seed", "0", "--no-progress", "--num-workers", str(args.workers)]

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    whole_dir, cut_dir = work / "cli_whole", work / "cli_cut"
    subprocess.run(cli(whole_dir), check=True, env=env, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(cli(cut_dir), env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    history = cut_dir / "history.csv"
    while proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) > half_n:
            time.sleep(0.5)  # into the next epoch
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    killed_after = len(history.read_text().splitlines()) - 1 if history.exists() else 0
    subprocess.run(cli(cut_dir), check=True, env=env, stdout=subprocess.DEVNULL)

    def test_ma(out: Path) -> float:
        summary = json.loads((out / "summary.json").read_text())
        return float(summary.get("test_mA_selected") or summary["test_mA_last"])

    notes.append(f"CLI run on {dev} killed with SIGKILL after {killed_after} of {short} epochs, then started "
                 f"again in the same folder: test mA {test_ma(cut_dir):.2f}; the same run uninterrupted: "
                 f"{test_ma(whole_dir):.2f}")
    print(notes[-1], flush=True)

    # 4. predict on image files
    files = sorted(Path(dataset.root).rglob("*.png"))[:16]
    table = predict(str(work / "pp6" / "best.pt"), [str(f) for f in files], device=dev)
    notes.append(f"parkit.predict on {dev}: {len(table)} images, columns {list(table.columns)[:4]} ...")
    print(notes[-1], flush=True)

    name = "CPU dry run" if args.dry_run else torch.cuda.get_device_name(0)
    lines = [f"# Training on one GPU ({name}), demo SynthPAR", "",
             f"Written by `benchmarks/gpu_train_check.py`. torch {torch.__version__}, bf16 autocast, batch "
             f"{profile.batch_size}, {args.workers} data-loading workers, model selected on val.", "",
             "| preset | epochs | test mA | best epoch | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {p} | {e} | {ma:.2f} | {b} | {s:.0f} |" for p, e, ma, b, s in rows]
    lines += [""] + [f"- {n}" for n in notes]
    common.write_markdown(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
