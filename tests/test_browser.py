"""The attribute explorer in a real browser: JupyterLab + headless Chromium driven by Playwright.

JupyterLab is started on 127.0.0.1 (free port, no token) over a copy of
notebooks/10_attribute_explorer.ipynb in `.cache/browser/` (so autosave never touches the committed
notebook, while the kernel still finds the repository and reuses the cached smoke run), with
PARKIT_PROFILE=smoke. Chromium opens the notebook, runs all cells, waits for the explorer, moves
the threshold slider and the image slider with the keyboard, checks that the status line and the
bar chart follow, and saves a screenshot to `.cache/smoke/figures/10_explorer_browser.png`
(or $PARKIT_OUTPUT_ROOT/figures).

Needs Debian's Chromium (/usr/bin/chromium, or $PARKIT_CHROMIUM) and Python playwright; never
`playwright install`. Skips with the reason when either is missing.
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, chromium_missing_reason, jupyterlab_server

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "10_attribute_explorer.ipynb"
# Launch flags measured to work here (field notes, "Browser").
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.browser


STATUS_JS = "document.querySelector('.parkit-status .widget-html-content').innerText"


def run_explorer_notebook(notebook: Path, workdir: Path, screenshot: Path, env: dict, timeout_s: float = 240):
    """Open `notebook` in JupyterLab, Run All, drive the explorer; return what was observed.

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

            # Threshold slider: focus its handle and press Home (-> 0.00): every negative label becomes FP.
            explorer.locator(".parkit-threshold .noUi-handle").focus()
            page.keyboard.press("Home")
            page.wait_for_function(f"() => {STATUS_JS}.includes('threshold 0.00')", timeout=ms)
            seen["status_threshold"] = status.inner_text()
            seen["bars_threshold"] = explorer.locator(".parkit-bars .widget-html-content").inner_html()

            # Image slider: one step right -> image 2.
            explorer.locator(".parkit-image .noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(f"() => {STATUS_JS}.includes('image 2/')", timeout=ms)
            seen["status_image"] = status.inner_text()
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
    # Figures the notebook writes go to tmp_path; the training run is the shared smoke cache.
    env = {"PARKIT_PROFILE": "smoke", "PARKIT_OUTPUT_ROOT": str(tmp_path / "outputs")}
    workdir = REPO / ".cache" / "browser"
    try:
        seen = run_explorer_notebook(NOTEBOOK, workdir, screenshot, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert not seen["errors"], seen["errors"]
    assert "threshold 0.45" in seen["status_before"]
    assert "threshold 0.00" in seen["status_threshold"]
    # At threshold 0 no attribute is predicted negative: the bars hold no TN and no FN.
    outcomes = re.findall(r'data-outcome="(\w+)"', seen["bars_threshold"])
    assert outcomes and set(outcomes) <= {"TP", "FP", "ignored"}, outcomes
    assert seen["bars_threshold"] != seen["bars_before"]
    assert "image 2/" in seen["status_image"]
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
