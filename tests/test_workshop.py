"""The workshop: its settings, its quick power, the static notebook, and the live notebook
driven in a real browser.

The browser test starts JupyterLab on localhost with a random token, opens notebook 00 in
headless Chromium (Debian's ``chromium`` package, driven by Playwright; no browser is
downloaded), runs every cell, moves the "clients per unit" slider and checks that the
printed power and the power figure change. It is skipped when Chromium or Playwright is
missing; install Chromium with ``apt-get install -y chromium``.
"""

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fitlab import workshop as ws

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_workshop.ipynb"


def test_workshop_scenario_sets_the_fields():
    sc = ws.workshop_scenario(design="stepped_wedge", clients_per_unit=35, effect=0.3,
                              dropout=0.1, attrition=0.4, uptake=0.6, fidelity_high=0.7)
    assert sc.design.kind == "stepped_wedge" and sc.size.clients_per_unit == 35
    assert sc.effect.d == 0.3 and sc.effect.not_on_track_d == pytest.approx(0.6)
    assert sc.missingness.dropout_rate == 0.1 and sc.missingness.attrition_rate == 0.4
    assert sc.compliance.uptake == 0.6
    assert sc.compliance.fidelity_shares == pytest.approx([0.1, 0.2, 0.7])
    # the defaults are the default scenario's own settings
    assert ws.workshop_scenario(**ws.settings_of(ws.workshop_scenario())).hash() == \
        ws.workshop_scenario().hash()


def test_workshop_refuses_unknown_settings():
    from simulate.errors import FitlabError

    with pytest.raises(FitlabError, match="unknown setting"):
        ws.workshop_scenario(units=3)


def test_quick_power_moves_with_the_effect():
    # 40 trials: the MCSE of a power near 0.1 is about 0.05 and near 0.9 about 0.05, so
    # the two settings are about 10 MCSE apart
    none = ws.quick_power(ws.workshop_scenario(effect=0.0), reps=40)
    big = ws.quick_power(ws.workshop_scenario(effect=0.6, clients_per_unit=60), reps=40)
    assert none["power"] < 0.25 < 0.6 < big["power"]
    assert none["failed"] == 0 and none["estimator"] == "reml_trajectory"


def test_static_notebook_runs_without_widgets(tmp_path):
    import nbformat
    import papermill as pm

    out = tmp_path / "00.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"interactive": False, "reps": 10, "fast": True,
                                    "output_dir": str(tmp_path)}, cwd=str(ROOT))
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in outputs)
    assert any("analytic power:" in o.get("text", "") for o in outputs)


# -- the browser ---------------------------------------------------------------------------
def _chromium() -> str | None:
    for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


browser = pytest.mark.skipif(
    _chromium() is None or not _playwright(),
    reason="needs Chromium (apt-get install -y chromium) and Playwright (the dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of notebook 00 (small settings) on localhost."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\nreps = 10\nfast = True"  # as papermill would inject them
    nbformat.write(nb, tmp_path / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI machines run as root
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" +
                                (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


POWER = re.compile(r"analytic power: [0-9.]+.*simulated power: [0-9.]+")


@browser
def test_browser_slider_changes_the_power(jupyterlab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=_chromium(), headless=True,
                                   args=["--no-sandbox", "--disable-gpu"])
        page = chrome.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(jupyterlab)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
            try:  # JupyterLab may ask which kernel to start: the notebook's own
                select.click(timeout=15_000)
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            line = page.get_by_text(POWER)
            line.wait_for(timeout=120_000)
            before = line.inner_text()
            figure = page.locator(".widget-output img").first
            image_before = figure.get_attribute("src")
            slider = page.locator(".widget-slider", has_text="clients per unit")
            handle = slider.locator(".noUi-handle")
            handle.focus()
            handle.press("End")  # the keyboard's way to the slider's maximum (100)
            page.wait_for_function(
                "before => [...document.querySelectorAll('.widget-output')].some("
                "e => /analytic power: /.test(e.innerText) && !e.innerText.includes(before))",
                arg=before, timeout=120_000)
            after = page.get_by_text(POWER).inner_text()
            image_after = page.locator(".widget-output img").first.get_attribute("src")
            readout = slider.locator(".widget-readout").inner_text()
        finally:
            page.screenshot(path=str(tmp_path / "workshop.png"))
            chrome.close()
    assert float(readout) == 100
    analytic = [float(re.search(r"analytic power: ([0-9.]+)", s).group(1)) for s in
                (before, after)]
    assert analytic[1] > analytic[0], (before, after)  # more clients, more power
    assert image_after != image_before  # the power figure was redrawn with new bars
