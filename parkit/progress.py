"""Progress bars that suit where they are shown.

A live frontend (JupyterLab, a terminal) gets tqdm's usual bars (`tqdm.auto`). A notebook executed
for committing (papermill, nbclient, nbval) does not: its outputs are frozen as they were when the
kernel stopped, so a widget bar leaves a stale "0%|" text fallback and a text bar leaves every
carriage-return update. With `PARKIT_PROGRESS=summary` (set by `tools/reproduce.py`) every bar
draws nothing while it runs and writes exactly one final line when it closes (bars created with
`leave=False` write nothing, as they vanish in a live frontend too).
"""
from __future__ import annotations

import io
import os
import sys

from tqdm.std import tqdm as _text_tqdm

MODES = ("auto", "summary", "off")


def progress_mode() -> str:
    """The mode from $PARKIT_PROGRESS: "auto" (default), "summary" or "off"."""
    mode = os.environ.get("PARKIT_PROGRESS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"PARKIT_PROGRESS={mode!r} is not one of {MODES}; unset it or pick one of these")
    return mode


class SummaryBar(_text_tqdm):
    """A tqdm bar that stays silent until it closes, then writes its final state on one line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", sys.stdout)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):  # noqa: D102 (tqdm hook): no intermediate output
        return True

    def close(self):
        """Close the bar; a bar with `leave=True` writes its final line once."""
        if self.disable:
            return
        line = self.format_meter(**self.format_dict) if self.leave else None
        fp, self.fp = self.fp, io.StringIO()  # tqdm's own close writes "\n" or "\r": swallow it
        super().close()
        if line:
            fp.write(line.strip() + "\n")
            fp.flush()


def tqdm(*args, **kwargs):
    """A progress bar for the current frontend (see the module docstring); tqdm's arguments."""
    mode = progress_mode()
    if mode == "off":
        kwargs["disable"] = True
        return _text_tqdm(*args, **kwargs)
    if mode == "summary":
        return SummaryBar(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm  # noqa: PLC0415 (picks the widget bar in a kernel)

    return auto_tqdm(*args, **kwargs)


tqdm.write = _text_tqdm.write  # the engine logs through `tqdm.write` so lines do not break a bar
