"""End to end in a real browser: `streamlit run` on loopback, headless Debian Chromium driven by Playwright.

Data -> Train (a short run to completion) -> Explore (a site filter and a box selection), with no exception
box on any page. Screenshots are saved to tests/artifacts/.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.paths import THUMBNAILS
from core.runs import list_runs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    env = {**os.environ, "FIGURINES_CACHE": str(tmp / "cache"), "FIGURINES_DATA": str(tmp / "data"),
           "FIGURINES_DATA_ROOTS": str(tmp / "data"),  # the app opens runs on data inside its roots only
           "FIGURINES_RUNS": str(tmp / "runs"), "FIGURINES_DEMO_SCALE": "0.1", "FIGURINES_AUTO_DEMO_RUN": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    for run in list_runs(tmp / "runs"):  # a failed test must not leave a training running
        run.request_stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _settle(page, timeout=180_000):
    """Wait until Streamlit has finished running the script."""
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout)
    page.wait_for_timeout(500)


def _no_exception(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert page.locator("[data-testid=stException]").count() == 0, f"an exception box on {name}"


def test_data_train_explore(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(180_000)

    page.goto(f"{server}/data")  # a deep link as the server's very first request
    page.get_by_text("Files that could not be read").wait_for()
    _settle(page)
    assert page.get_by_text("431 images in 4 cultures").count() == 1
    assert "Influence" in page.locator("[data-testid=stSidebarNav]").inner_text()  # the app's own navigation
    _no_exception(page, "2-data")

    page.goto(server)
    page.get_by_text("Active dataset").wait_for()
    _settle(page)
    _no_exception(page, "1-home")

    page.goto(f"{server}/train")
    page.get_by_text("Run name").wait_for()
    page.get_by_label("Run name").fill("e2e-run")
    page.get_by_label("Epochs", exact=True).fill("2")
    size = page.locator("[data-testid=stSelectbox]").filter(has_text="Image size")
    size.click()
    page.get_by_role("option", name="32", exact=True).click()
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Run e2e-run", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Finished 2 epochs").wait_for(timeout=240_000)
    _settle(page)
    _no_exception(page, "3-train")

    page.get_by_role("button", name="Open in Explore").click()
    page.get_by_text("AAE latent").first.wait_for(timeout=240_000)
    _settle(page)
    shown = page.get_by_text("figurines shown").inner_text()
    page.get_by_role("button", name="Remove Babylon").click()
    _settle(page)
    assert page.get_by_text("figurines shown").inner_text() != shown  # the filter applied (to both charts)
    _no_exception(page, "4-explore-filtered")
    folder = max((d for d in THUMBNAILS.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    thumb = page.request.get(f"{server}/app/static/thumbnails/{folder.name}/0.jpg")  # what hovering shows
    assert thumb.ok and thumb.headers["content-type"] == "image/jpeg"

    chart = page.locator("[data-testid=stVegaLiteChart]").first
    box = chart.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.25
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.4, y0 + box["height"] * 0.4, steps=8)
    page.mouse.up()
    page.get_by_text("Selected figurines").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page, "5-explore-selected")

    page.goto(f"{server}/influence")
    page.get_by_text("On your photographs, when the answer is known").wait_for(timeout=240_000)
    _settle(page)
    assert page.get_by_text("Verdict:").count() == 1
    _no_exception(page, "6-influence")


def test_two_sessions_pressing_train_at_once(server, browser):
    """Two browser sessions launch at the same moment: one training starts, the other is told which."""
    pages = []
    for name in ("race-a", "race-b"):
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        page.set_default_timeout(180_000)
        page.goto(f"{server}/train")
        page.get_by_text("Run name").wait_for()
        _settle(page)
        page.get_by_label("Run name").fill(name)
        page.get_by_label("Epochs", exact=True).fill("5000")
        pages.append(page)
    buttons = [p.get_by_role("button", name="Launch training") for p in pages]
    buttons[0].click(no_wait_after=True)
    buttons[1].click(no_wait_after=True)
    outcome = []
    for i, page in enumerate(pages):
        try:
            page.wait_for_function("() => /already training|Run race-/.test(document.body.innerText)",
                                   timeout=120_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"7-race-{i}.png"), full_page=True)
        _settle(page)
        outcome.append(page.get_by_text("is already training on the").count() == 1)
    assert sorted(outcome) == [False, True]
    winner, loser = (pages[0], pages[1]) if outcome[1] else (pages[1], pages[0])
    name = "race-a" if winner is pages[0] else "race-b"
    assert loser.get_by_text(f"run {name} is already training on the cpu").count() == 1
    _no_exception(loser, "7-race-refused")
    winner.get_by_role("button", name="Stop").click()
    winner.get_by_text("Stopped after epoch").wait_for(timeout=60_000)
    _no_exception(winner, "7-race-winner-stopped")
