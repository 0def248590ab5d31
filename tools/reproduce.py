"""Execute the numbered notebooks in order (papermill), in place, and print a summary.

`make reproduce` calls this with `--profile demo`: every notebook runs top to bottom in a fresh
kernel, writes its figures under figures/ and tables under results/, and keeps its outputs so the
committed notebooks show this run, figures included (`parkit.plots.save_figure` shows each one).
Widget state is stripped (it is large and useless offline) and progress bars leave one final line
each ($PARKIT_PROGRESS=summary; residue of bars is removed as well).
A notebook that fails stops the sequence with its name; the ones already run keep their outputs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


# A tqdm bar as text: "  0%|          | 0/30 [00:00<?, ?it/s]" or "epoch 1/6:  40%|####  | ..."
_BAR = re.compile(r"\d{1,3}%\|")
WIDGET_PLACEHOLDER = "(interactive widget: run the notebook to use it)"


def _final_line(text: str) -> str:
    """What a terminal shows of `text`: each line's last carriage-return segment."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def clean_stream(text: str) -> str:
    """A stream output without progress residue: carriage-return updates collapsed to their
    final state, and bars that never finished (not at 100%) removed."""
    lines = _final_line(text).split("\n")
    return "\n".join(line for line in lines if not (_BAR.search(line) and "100%|" not in line))


def clean_outputs(outputs: list) -> list:
    """Outputs fit to commit: no widget views (tqdm widget bars are dropped, other widgets become a
    one-line placeholder) and no partial progress bars in text streams."""
    kept = []
    for out in outputs:
        data = out.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            if _BAR.search(str(data.get("text/plain", ""))):
                continue  # a progress widget: its text fallback is a frozen partial bar
            data.pop("application/vnd.jupyter.widget-view+json")
            data["text/plain"] = WIDGET_PLACEHOLDER
        if out.get("output_type") == "stream":
            text = out.get("text", "")
            out["text"] = clean_stream("".join(text) if isinstance(text, list) else text)
            if not out["text"].strip():
                continue
        kept.append(out)
    return kept


def strip_widget_state(path: Path) -> None:
    """Make an executed notebook fit to commit.

    Removes widget state, widget-view outputs that only a live kernel can render (see
    `clean_outputs`), progress residue, and papermill's injected parameters cell: left in, it
    would pin PROFILE to this run's value and override $PARKIT_PROFILE, so `make test` would run the
    demo profile instead of smoke.
    """
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)  # timings on markdown cells too: noise in diffs
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = clean_outputs(cell.get("outputs", []))
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo", choices=["smoke", "demo", "paper"])
    ap.add_argument("--only", nargs="*", help="notebook number prefixes to run (default: all)")
    args = ap.parse_args(argv)

    import papermill as pm

    os.environ["PARKIT_PROFILE"] = args.profile
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Committed outputs are frozen: bars draw nothing while running and leave one final line.
    os.environ["PARKIT_PROGRESS"] = "summary"
    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        books = [b for b in books if any(b.name.startswith(p) for p in args.only)]
    timings = []
    t_all = time.perf_counter()
    for nb in books:
        t0 = time.perf_counter()
        print(f"== {nb.name} ({args.profile})", flush=True)
        try:
            pm.execute_notebook(str(nb), str(nb), parameters={"PROFILE": args.profile},
                                cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False,
                                log_output=False)
        except Exception as exc:  # papermill already saved the failing notebook with its error
            print(f"!! {nb.name} failed: {type(exc).__name__}: {str(exc)[:2000]}", file=sys.stderr)
            return 1
        finally:
            strip_widget_state(nb)
        timings.append((nb.name, time.perf_counter() - t0))
        print(f"   done in {timings[-1][1]:.0f} s", flush=True)

    from parkit.profiles import output_dirs
    from parkit.reporting import summary_table

    _, results = output_dirs(args.profile)
    print("\nTime per notebook:")
    for name, sec in timings:
        print(f"  {name:<36s} {sec:7.1f} s")
    print(f"  {'total':<36s} {time.perf_counter() - t_all:7.1f} s\n")
    table = summary_table(results)
    print(table if table else "(no result tables found)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
