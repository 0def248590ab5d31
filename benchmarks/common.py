"""Shared helpers of the benchmark scripts: machine description, timing, peak memory, model variants,
training/inference closures, subprocess workers and Markdown tables.

Timing. Every figure is a median of several repetitions after a warm-up. When parkit and the
reference mode are compared, their repetitions are *interleaved* (parkit, reference, parkit, ...)
in one process, so that a load change on this shared machine hits both alike; ratios are computed
from those medians.

Memory. Peak RSS per phase is read from /proc/self/status (VmHWM) after resetting the high-water
mark through /proc/self/clear_refs. Workers run with a fixed glibc mmap threshold
(`MALLOC_ENV`), so freed tensors go back to the OS at once and one phase's garbage does not count
towards the next phase's peak.

These are benchmarks, not tests: nothing here asserts; the scripts print and write Markdown.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"  # raw JSON of the last run (git-ignored)
RESULTS = HERE / "RESULTS.md"
# Labels of parkit's extra variants in the workers' JSON and in the report.
BF16 = "parkit, bf16 autocast"
COMPILED = "parkit, torch.compile"

# Fixed mmap threshold (disables glibc's dynamic raise of it): every allocation >= 1 MiB is its own
# mapping, returned to the OS when freed, so per-phase RSS peaks are meaningful.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 20)}
THREADS = 2
# Further variables for the workers (run_all.py sets OMP_WAIT_POLICY here).
EXTRA_ENV: Dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() otherwise)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> List[str]:
    """The SIMD flags that matter for these kernels (AVX2, AVX-512 family, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    return sorted(f for f in flags if f.startswith(("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx")))


def load_average() -> str:
    """1/5/15-minute load averages, formatted."""
    try:
        return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


# Folders whose uncommitted changes make a report not describe its commit.
CODE_DIRS = ("parkit/", "benchmarks/")


def modified_code_paths(porcelain: str, ignore: Sequence[str] = ()) -> List[str]:
    """Tracked files under `CODE_DIRS` with uncommitted changes, from `git status --porcelain` output.

    Untracked files (`??`) are left out; for a rename the new path counts. `ignore` holds paths
    (relative to the repository) that do not count, such as the report being rewritten.
    """
    out = []
    for line in porcelain.splitlines():
        if len(line) < 4 or line.startswith(("??", "!!")):
            continue
        path = line[3:].split(" -> ")[-1].strip().strip('"')
        if path.startswith(CODE_DIRS) and path not in ignore:
            out.append(path)
    return sorted(set(out))


def git_state(ignore: Sequence[str] = ()) -> Dict[str, object]:
    """The commit the benchmarks run from.

    Returns:
        {"commit": `git rev-parse --short HEAD` (or "unknown" outside a git checkout),
         "modified": tracked paths under parkit/ or benchmarks/ with uncommitted changes}.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=str(REPO), capture_output=True, text=True,
                              check=True, timeout=60).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        modified = modified_code_paths(git("status", "--porcelain"), ignore)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "modified": []}
    return {"commit": commit, "modified": modified}


def describe_commit(commit: Optional[str], uncommitted: bool = False) -> str:
    """`abc1234`, `abc1234 (uncommitted changes)`, or a plain statement that it was not recorded."""
    if not commit:
        return "commit not recorded"
    return f"`{commit}`" + (" (uncommitted changes)" if uncommitted else "")


def machine_info() -> Dict[str, object]:
    """What the numbers were measured on (CPU, cores, memory, versions, threads, load)."""
    import torch

    mem = "n/a"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 2 ** 20:.1f} GiB"
    except (OSError, AttributeError):
        pass
    info = {
        "cpu": cpu_model(),
        "logical cores": os.cpu_count(),
        "SIMD": " ".join(cpu_flags()) or "n/a",
        "memory": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "load average (1/5/15 min)": load_average(),
    }
    for pkg in ("onnx", "onnxruntime"):
        try:
            info[pkg] = __import__(pkg).__version__
        except ImportError:
            info[pkg] = "not installed"
    return info


def set_threads(n: int = THREADS) -> None:
    """Intra-op threads for torch (and OpenMP through the environment of child processes)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set once in this process


# ---------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: Dict[str, Callable[[], object]], reps: int) -> Dict[str, List[float]]:
    """Time each function `reps` times, round-robin: {name: [seconds, ...]}."""
    out: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            out[name].append(timed(fn))
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _status_mib(field: str) -> float:
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024
    except (OSError, AttributeError):
        return float("nan")


def rss_mib() -> float:
    """Current resident set size (MiB)."""
    return _status_mib("VmRSS")


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    """RSS high-water mark since the last `reset_peak` (or since the start), MiB."""
    return _status_mib("VmHWM")


def measure_peak(fn: Callable[[], object]) -> Dict[str, float]:
    """Run `fn` once; its wall time, the RSS before it and the RSS peak during it (MiB)."""
    import gc

    gc.collect()
    reset_peak()
    before = rss_mib()
    seconds = timed(fn)
    return {"seconds": seconds, "rss_before_mib": before, "peak_mib": peak_mib()}


# ---------------------------------------------------------------------------------------------
# Models and work closures
# ---------------------------------------------------------------------------------------------
def load_backbone(preset: str, **overrides):
    """The random-weight CLIP of a preset (built once, shared by every model variant)."""
    from parkit.backbone import load_clip
    from parkit.model import get_config

    cfg = get_config(preset, **overrides)
    return load_clip(cfg.backbone, device="cpu", pretrained=False)


def build_variants(preset: str, attributes="PETA", clip_model=None, seed: int = 0, **overrides):
    """parkit's model and its reference-mode wrapper, sharing every weight.

    Returns:
        (model, reference): a `PromptPAR` (random weights, `pretrained=False`) and the
        `ReferencePromptPAR` around it.
    """
    import torch

    from parkit.model import create_model
    from parkit.model.reference import ReferencePromptPAR

    torch.manual_seed(seed)
    model = create_model(preset, attributes=attributes, pretrained=False, device="cpu",
                         backbone_model=clip_model, **overrides)
    return model, ReferencePromptPAR(model)


def images_for(model, batch: int, seed: int = 0):
    """Random normalised images of the model's size: (B, 3, S, S)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, model.image_size, model.image_size, generator=g)


def train_step_fn(model, batch: int, lr: float = 1e-3, bf16: bool = False, device=None) -> Callable[[], float]:
    """One training step as parkit's trainer does it (spec §8-9): forward in train mode, weighted
    main + 0.5 x auxiliary BCE, backward, global-norm clipping at 10, SGD (momentum 0.9, wd 1e-4).

    The same closure is used for parkit and the reference mode, so only the model differs. With
    `bf16`, forward and loss run under bf16 autocast on the tensors' device (spec §9). `device`
    (default CPU) holds the inputs; the returned loss value synchronises a GPU step.
    """
    import contextlib

    import torch
    import torch.nn.functional as F

    device = torch.device(device or "cpu")
    x = images_for(model, batch).to(device)
    a = len(model.attributes)
    target = (torch.rand(batch, a, generator=torch.Generator().manual_seed(1)) > 0.7).float().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)

    def step() -> float:
        model.train()
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with amp:
            out = model(x)
            loss = F.binary_cross_entropy_with_logits(out.logits.float(), target)
            if out.aux_logits is not None:
                loss = loss + 0.5 * F.binary_cross_entropy_with_logits(out.aux_logits.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        return loss.item()

    return step


def infer_fn(model, batch: int, bf16: bool = False) -> Callable[[], object]:
    """One inference call in eval mode under `torch.inference_mode()` (parkit then uses its text cache).

    Args:
        model: parkit model or reference.
        batch: images per call.
        bf16: run under `torch.autocast("cpu", dtype=torch.bfloat16)` (spec §9's preferred precision).
    """
    import contextlib

    import torch

    x = images_for(model, batch)

    def run():
        if model.training:  # switch once: parkit's text encoder drops its cache on every eval()/train() call
            model.eval()
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            return model(x).logits

    return run


def eval_all(*models) -> None:
    """Put every model in eval mode *before* timing: parkit and the reference share modules, and
    parkit's text encoder forgets its cache at every eval()/train() call, so a mode switch inside
    a timed loop would make parkit recompute its text features."""
    for m in models:
        m.eval()


def max_logit_difference(model, reference, batch: int = 2) -> float:
    """Largest |parkit - reference| over the main and auxiliary logits (eval mode)."""
    import torch

    x = images_for(model, batch, seed=5)
    model.eval()
    reference.eval()
    with torch.inference_mode():
        a, b = model(x), reference(x)
    diff = (a.logits - b.logits).abs().max().item()
    if a.aux_logits is not None:
        diff = max(diff, (a.aux_logits - b.aux_logits).abs().max().item())
    return float(diff)


# ---------------------------------------------------------------------------------------------
# Workers and output
# ---------------------------------------------------------------------------------------------
def worker_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    env.update({"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"})
    env.update(EXTRA_ENV)
    return env


def run_worker(script: str, args: Sequence[str], out_json: Path, timeout: float) -> Optional[dict]:
    """Run `benchmarks/<script>` in a fresh process (own memory accounting) and read its JSON.

    Returns:
        The JSON dict, or {"error": ...} when the worker failed or ran out of time.
    """
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if out_json.exists():
        out_json.unlink()  # never report a previous run's numbers
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(out_json)]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    error = None
    try:
        proc = subprocess.run(cmd, cwd=str(REPO), env=worker_env(), timeout=timeout)
        if proc.returncode != 0:
            error = f"{script} exited with status {proc.returncode}"
    except subprocess.TimeoutExpired:
        error = f"{script} ran past its {timeout:.0f} s budget and was stopped (partial results kept)"
    data = json.loads(out_json.read_text()) if out_json.exists() else {}
    if error:
        data["error"] = error
    data["wall_s"] = time.perf_counter() - start
    return data


def write_json(path: Optional[str], data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1, default=str))


def write_markdown(path, lines: Sequence[str]) -> None:
    """Write a report's lines as a Markdown file (creating its folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    def cell(c) -> str:
        return str(c).replace("|", "\\|")  # a bare pipe would split the cell

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_s(x: Optional[float]) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def fmt_x(x: Optional[float]) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f}x"


def fmt_mib(x: Optional[float]) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x / 1024:.2f} GiB" if x >= 1024 else f"{x:.0f} MiB"


def fmt_rate(x: Optional[float]) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:.1f}" if x >= 1 else f"{x:.3f}"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
