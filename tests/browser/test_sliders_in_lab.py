"""The sliders as a learner meets them: JupyterLab in headless Chromium, every cell run, every slider moved.

For each notebook with a ``viz.sliders`` cell: start JupyterLab on 127.0.0.1 over a copy of the notebooks
(so nothing committed is autosaved), open the notebook, run all cells in fast mode, then move each slider
(and tick each checkbox) and check that its output (figure or printed text) changes, that each slider cell
shows one figure, and that no widget error or error output appears. ``make browser-test`` runs this; it needs Debian's
``chromium`` and ``chromium-driver`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
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
from selenium import webdriver
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RUN_TIMEOUT = float(os.environ.get("BROWSER_RUN_TIMEOUT", 600))  # s to run one notebook's cells, fast mode
REDRAW_TIMEOUT = 60  # s for a slider's figure to change after a move


# Render every cell (JupyterLab 4 draws only the cells in view by default), and no news pop-up over them.
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}


def slider_notebooks() -> list[str]:
    found = []
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if any("viz.sliders(" in "".join(c["source"]) for c in cells if c["cell_type"] == "code"):
            found.append(path.name)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token) of a JupyterLab serving a throwaway copy of notebooks/, fast mode, offline."""
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            pytest.fail(f"{tool} is missing: apt-get install chromium chromium-driver (.ci/run does it)")
    root = tmp_path_factory.mktemp("lab") / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    port, token = _free_port(), secrets.token_hex(16)
    settings = root.parent / "lab-settings"
    for plugin, values in LAB_SETTINGS.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    env = {**os.environ, "LORA_EDU_FAST": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root.parent / "lab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"JupyterLab did not start:\n{(root.parent / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float, what: str, driver):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    driver.save_screenshot(str(ROOT / ".browser-test-failure.png"))
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (screenshot: .browser-test-failure.png)")


def _menu(driver, menu: str, item: str) -> bool:
    """Click ``menu`` > ``item`` in JupyterLab's menu bar, as a learner would. False when the menu or its item
    was not there to click (JupyterLab still loading, the menu still opening): the caller tries again."""
    try:
        driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{menu}']").click()
        time.sleep(0.5)  # the menu opens with an animation; its items appear after it
        driver.find_element(By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']").click()
    except (NoSuchElementException, ElementNotInteractableException, StaleElementReferenceException):
        return False
    return True


def _executed(prompt: str) -> bool:
    return re.fullmatch(r"\[\d+\]:", prompt) is not None  # "[12]:"; not "[ ]:" (never run) nor "[*]:" (running)


def _click_until(driver, menu: str, item: str, done, timeout: float, what: str) -> None:
    """Click ``menu`` > ``item`` until ``done()`` holds: a click can be lost while JupyterLab settles or a
    previous menu is still closing, or the menu may not be rendered yet. Three tries of ``timeout`` seconds each."""
    for _ in range(3):
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        time.sleep(1)
        deadline = time.monotonic() + timeout
        while not _menu(driver, menu, item) and time.monotonic() < deadline:
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            time.sleep(1)
        while time.monotonic() < deadline and not done():
            time.sleep(0.5)
        if done():
            return
    _wait(done, 1, what, driver)


def _run_all(driver):
    """Clear the committed outputs, so that no stored prompt number counts as done, then Run All Cells."""
    def prompts():
        return driver.execute_script(PROMPTS_JS)

    # The menu acts on the active panel: in a freshly started lab that can be the file browser (the notebook was
    # opened from it), and then "Clear Outputs of All Cells" does nothing. Click into the notebook first.
    # Right after the lab starts the prompt can exist but not be interactable yet: retry, then click it by script.
    deadline = time.monotonic() + 20
    while True:
        prompt = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell .jp-InputPrompt")
        try:
            prompt.click()
            break
        except WebDriverException:
            if time.monotonic() > deadline:
                driver.execute_script("arguments[0].click();", prompt)
                break
            time.sleep(1)
    _click_until(driver, "Edit", "Clear Outputs of All Cells", lambda: not any(_executed(p) for p in prompts()),
                 20, "cleared prompts")
    _click_until(driver, "Run", "Run All Cells", lambda: any(p == "[*]:" or _executed(p) for p in prompts()),
                 30, "Run All Cells to start")


PROMPTS_JS = """
return Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(p => p.textContent.trim());
"""
ERRORS_JS = """
const bad = [];
document.querySelectorAll('.jp-OutputArea-output').forEach(o => {
  const t = o.textContent || '';
  if (o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr' && /Traceback|Error:/.test(t)) bad.push(t);
  if (/Error displaying widget|Error rendering|A Jupyter widget could not be displayed/.test(t)) bad.push(t.slice(0, 300));
});
return bad;
"""
SLIDER_CELLS_JS = """
// Each viz.sliders box: the widget VBox whose last child is an Output widget.
return Array.from(document.querySelectorAll('.jp-CodeCell')).filter(c => c.querySelector('.widget-vbox .widget-output'));
"""
FIGURE_JS = """
// What the slider's output shows: its figure, and the text printed beside it (a control may change only that,
// as 07's "paged optimizer" box changes the verdict line and not the bars).
const out = arguments[0].querySelector('.widget-output');
const img = out && out.querySelector('img');
return img ? img.getAttribute('src') + '\\n' + out.innerText : null;
"""
READOUT_JS = """
const box = arguments[0].closest('.widget-slider');
const out = box && box.querySelector('.widget-readout');
return out ? (out.value !== undefined && out.value !== '' ? out.value : out.textContent).trim() : null;
"""
IMAGES_JS = """
return arguments[0].querySelectorAll('.jp-Cell-outputArea img').length;
"""


def _controls(cell):
    sliders = cell.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")
    boxes = cell.find_elements(By.CSS_SELECTOR, ".widget-checkbox input[type=checkbox]")
    return sliders, boxes


def _step(driver, handle) -> None:
    """Move a slider handle by one step, to a value it did not have: right, or left where it sits at its
    maximum (a move there and back would end where it began, leaving the same figure)."""
    def readout():  # the value as the widget prints it beside the slider ("65.0", "2 - 8")
        return driver.execute_script(READOUT_JS, handle)

    handle.click()
    start = readout()
    for key in (Keys.ARROW_RIGHT, Keys.ARROW_LEFT):
        handle.send_keys(key)
        time.sleep(0.3)
        if readout() != start:
            return
    _wait(lambda: False, 1, f"a slider to leave its value {start!r}", driver)


def _shut_down_kernels(base: str, token: str) -> None:
    """End every kernel the server started, so one notebook's kernel does not idle beside the next one's."""
    auth = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers=auth), timeout=30) as r:
        sessions = json.load(r)
    for session in sessions:
        req = urllib.request.Request(f"{base}/api/sessions/{session['id']}", headers=auth, method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture
def notebook_session(lab, browser):
    yield lab
    browser.get("about:blank")
    _shut_down_kernels(*lab)


@pytest.mark.parametrize("name", slider_notebooks())
def test_every_slider_redraws_its_figure(notebook_session, browser, name):
    base, token = notebook_session
    browser.get(f"{base}/lab/tree/{name}?reset&token={token}")  # reset: no tabs restored from the last test
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell"), 90, "the notebook", browser)
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")
          or "Idle" in browser.find_element(By.TAG_NAME, "body").text, 90, "an idle kernel", browser)
    _run_all(browser)
    n_code = len(browser.execute_script(PROMPTS_JS))

    def finished():
        prompts = browser.execute_script(PROMPTS_JS)
        idle = "| Idle" in browser.find_element(By.ID, "jp-main-statusbar").text
        return idle and len(prompts) == n_code and all(_executed(p) for p in prompts)

    _wait(finished, RUN_TIMEOUT, f"all {n_code} code cells of {name} to run", browser)
    assert browser.execute_script(ERRORS_JS) == [], f"{name}: errors after Run All"

    cells = browser.execute_script(SLIDER_CELLS_JS)
    assert cells, f"{name}: no slider rendered as a live widget"
    moved = 0
    for cell in cells:
        # one figure per slider cell: the widget's own, no frozen copy beside it
        assert browser.execute_script(IMAGES_JS, cell) == 1, f"{name}: a slider cell shows more than one figure"
        sliders, boxes = _controls(cell)
        for control in sliders + boxes:
            before = _wait(lambda c=cell: browser.execute_script(FIGURE_JS, c), REDRAW_TIMEOUT,
                           "the slider's figure", browser)
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", control)
            if control in sliders:
                _step(browser, control)
            else:
                control.click()
            _wait(lambda c=cell, b=before: (browser.execute_script(FIGURE_JS, c) or b) != b
                  or browser.execute_script(ERRORS_JS), REDRAW_TIMEOUT, f"a slider of {name} to redraw", browser)
            errors = browser.execute_script(ERRORS_JS)
            if errors:
                (ROOT / ".browser-test-failure.txt").write_text("\n\n".join(errors))
            assert errors == [], f"{name}: moving a slider raised (full text: .browser-test-failure.txt)"
            moved += 1
    assert moved, f"{name}: no slider could be moved"
    assert browser.execute_script(ERRORS_JS) == [], f"{name}: errors after moving the sliders"
