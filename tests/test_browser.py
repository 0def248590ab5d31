"""The attribute explorer in a real browser: JupyterLab + headless Chromium driven by Playwright.

JupyterLab is started on 127.0.0.1 (free port, no token) over a copy of
notebooks/10_attribute_explorer.ipynb in `.cache/browser/` (so autosave never touches the committed
notebook, while the kernel still finds the repository and reuses the cached smoke run), with
PARKIT_PROFILE=smoke. Chromium opens the notebook, runs all cells, waits for the explorer, moves
the threshold slider and the image slider with the keyboard, and checks what a reader sees:

- the picture is a real image (pixel variance of an element screenshot), and the attention overlay
  is drawn on it (switching the explanation to "none" changes the pixels);
- moving the threshold changes the bars' TP / FP / FN counts to the values computed here from the
  smoke model's own probabilities (`browser_helpers.smoke_model_probabilities`);
- switching to the next image changes the picture.

A screenshot goes to `.cache/smoke/figures/10_explorer_browser.png` (or $PARKIT_OUTPUT_ROOT/figures).

Needs Debian's Chromium (/usr/bin/chromium, or $PARKIT_CHROMIUM) and Python playwright; never
`playwright install`. Skips with the reason when either is missing.
"""
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from browser_helpers import (CHROMIUM, chromium_missing_reason, jupyterlab_server, outcome_counts, png_pixels,
                             smoke_model_probabilities, threshold_that_changes_counts)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "10_attribute_explorer.ipynb"
# Launch flags measured to work here (field notes, "Browser").
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.browser


STATUS_JS = "document.querySelector('.parkit-status .widget-html-content').innerText"
# True once the explorer's picture element shows another image than the one whose src is passed.
PICTURE_CHANGED_JS = ("(old) => { const e = document.querySelector('.parkit-picture');"
                      " return e && e.getAttribute('src') && e.getAttribute('src') !== old; }")


def _bar_counts(html: str) -> dict:
    outcomes = re.findall(r'data-outcome="(\w+)"', html)
    return {k: outcomes.count(k) for k in ("TP", "FP", "FN", "TN")}


def run_explorer_notebook(notebook: Path, workdir: Path, screenshot: Path, env: dict, timeout_s: float = 240,
                          target_threshold: float = 0.0):
    """Open `notebook` in JupyterLab, Run All, drive the explorer; return what was observed.

    The threshold slider is moved from 0.45 to `target_threshold` (keyboard steps of 0.01).

    `timeout_s` bounds each wait; the long one is Run All, which trains the smoke model when the run
    cache holds none yet (about a minute here) and takes seconds otherwise.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, workdir / notebook.name)
    ms = int(timeout_s * 1000)
    seen = {}
    with jupyterlab_server(workdir, env) as (base, labdir), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/{notebook.name}", timeout=ms)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=ms)
            # JupyterLab may ask which kernel to start: accept its proposal (this venv's python3).
            dialog = page.locator(".jp-Dialog .jp-mod-accept")
            try:
                dialog.wait_for(state="visible", timeout=5000)
                dialog.click()
            except PlaywrightTimeout:
                pass
            # The kernel must be idle before Run All, else the first cells can be dropped.
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=ms)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            # Either the explorer appears or a cell fails: stop at the first error with its text.
            error_sel = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
            page.wait_for_selector(f".parkit-explorer, {error_sel}", timeout=ms)
            if page.locator(error_sel).count():
                raise AssertionError("a notebook cell failed:\n" + page.locator(error_sel).first.inner_text())
            explorer = page.locator(".parkit-explorer")
            status = explorer.locator(".parkit-status .widget-html-content")
            page.wait_for_function(
                "() => { const e = document.querySelector('.parkit-status .widget-html-content');"
                " return e && e.innerText.includes('threshold 0.45'); }", timeout=ms)
            seen["status_before"] = status.inner_text()
            seen["bars_before"] = explorer.locator(".parkit-bars .widget-html-content").inner_html()
            picture = explorer.locator(".parkit-picture")
            seen["picture_attention"] = png_pixels(picture.screenshot())

            # Explanation "none": the same image without the overlay.
            src = picture.get_attribute("src")
            explorer.locator(".parkit-method button", has_text=re.compile(r"^none$")).click()
            # the kernel answers with a new PNG: wait for the element's image to be replaced
            page.wait_for_function(PICTURE_CHANGED_JS, arg=src, timeout=ms)
            seen["picture_plain"] = png_pixels(picture.screenshot())
            src = picture.get_attribute("src")
            explorer.locator(".parkit-method button", has_text=re.compile(r"^attention$")).click()
            page.wait_for_function(PICTURE_CHANGED_JS, arg=src, timeout=ms)
            src = picture.get_attribute("src")

            # Threshold slider: focus its handle and step with the arrow keys to the target.
            explorer.locator(".parkit-threshold .noUi-handle").focus()
            steps = round((target_threshold - 0.45) / 0.01)
            for _ in range(abs(steps)):
                page.keyboard.press("ArrowRight" if steps > 0 else "ArrowLeft")
            page.wait_for_function(f"() => {STATUS_JS}.includes('threshold {target_threshold:.2f}')", timeout=ms)
            seen["status_threshold"] = status.inner_text()
            seen["bars_threshold"] = explorer.locator(".parkit-bars .widget-html-content").inner_html()

            # Image slider: one step right -> image 2.
            explorer.locator(".parkit-image .noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(f"() => {STATUS_JS}.includes('image 2/')", timeout=ms)
            page.wait_for_function(PICTURE_CHANGED_JS, arg=src, timeout=ms)
            seen["status_image"] = status.inner_text()
            seen["picture_next"] = png_pixels(picture.screenshot())
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot), full_page=False)
            tracebacks = page.locator(error_sel)
            seen["errors"] = [tracebacks.nth(i).inner_text() for i in range(tracebacks.count())]
        except Exception:
            # Keep evidence: a screenshot and the notebook's visible outputs explain most failures.
            failed = screenshot.with_name(screenshot.stem + "_failed.png")
            failed.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(failed), full_page=True)
            outputs = page.locator(".jp-OutputArea-output")
            texts = [outputs.nth(i).inner_text()[-500:] for i in range(min(outputs.count(), 20))]
            print(f"browser test failed; screenshot {failed}; outputs:\n" + "\n---\n".join(texts))
            print("lab log:\n" + (labdir / "lab.log").read_text()[-3000:])
            raise
        finally:
            browser.close()
    return seen


def test_explorer_runs_and_reacts_in_jupyterlab(tmp_path):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    out_root = Path(os.environ.get("PARKIT_OUTPUT_ROOT") or REPO / ".cache" / "smoke")
    screenshot = out_root / "figures" / "10_explorer_browser.png"
    # The model the notebook loads (the cached smoke run; trained here first if missing), applied
    # to the first test image: the counts the bars must show.
    probs, gt, ignore = smoke_model_probabilities(n_images=1)
    target = threshold_that_changes_counts(gt[0], probs[0], ignore[0])
    # Figures the notebook writes go to tmp_path; the training run is the shared smoke cache.
    env = {"PARKIT_PROFILE": "smoke", "PARKIT_OUTPUT_ROOT": str(tmp_path / "outputs")}
    workdir = REPO / ".cache" / "browser"
    try:
        seen = run_explorer_notebook(NOTEBOOK, workdir, screenshot, env, target_threshold=target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert not seen["errors"], seen["errors"]
    assert "threshold 0.45" in seen["status_before"]
    assert f"threshold {target:.2f}" in seen["status_threshold"]

    # The bars' outcomes are the model's probabilities against the threshold, before and after.
    before, after = _bar_counts(seen["bars_before"]), _bar_counts(seen["bars_threshold"])
    assert before == outcome_counts(gt[0], probs[0], ignore[0], 0.45), before
    assert after == outcome_counts(gt[0], probs[0], ignore[0], target), after
    assert before != after
    assert f"FP {after['FP']}" in seen["status_threshold"] and f"FN {after['FN']}" in seen["status_threshold"]

    # A picture is there (not a blank element), with the attention overlay drawn on it.
    attention, plain, following = seen["picture_attention"], seen["picture_plain"], seen["picture_next"]
    assert attention.std() > 20 and plain.std() > 10, (attention.std(), plain.std())
    assert attention.shape == plain.shape and np.abs(attention - plain).mean() > 5
    # Jet overlay colours are saturated; the plain SynthPAR picture is much less so.
    saturation = lambda img: (img.max(axis=2) - img.min(axis=2)).mean()  # noqa: E731
    assert saturation(attention) > saturation(plain)
    # Switching image changes the picture.
    assert "image 2/" in seen["status_image"]
    assert following.shape != attention.shape or np.abs(following - attention).mean() > 5
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
