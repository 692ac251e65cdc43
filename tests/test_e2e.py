"""End to end in a real browser: `streamlit run` on loopback, headless Debian Chromium driven by Playwright.

Data -> Train (a short run, watched live, to completion) -> Explore (a one-site filter kept across pages, round
prior circles, a box selection paged through, cleared by one double-click) -> Influence, with no exception box
on any page, no request leaving the server's host and a clean server log. Screenshots: tests/artifacts/, and the
README's in docs/screenshots/ (committed when they change).
"""
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.fit import fit_run
from core.paths import THUMBNAILS
from core.runs import list_runs
from core.settings import Settings
from tests.corpus import answerable

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
README_SHOTS = ROOT / "docs" / "screenshots"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


url_log = {}  # server URL -> its log file


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    env = {**os.environ, "FIGURINES_CACHE": str(tmp / "cache"), "FIGURINES_DATA": str(tmp / "data"),
           "FIGURINES_DATA_ROOTS": str(tmp / "data"),  # the app opens runs on data inside its roots only
           "FIGURINES_RUNS": str(tmp / "runs"), "FIGURINES_DEMO_SCALE": "0.1", "FIGURINES_AUTO_DEMO_RUN": "0"}
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    url_log[url] = tmp / "server.log"
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
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


def _shot(page, name):
    """A screenshot of the whole page (Streamlit scrolls inside its main block: grow the window to fit it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    tall = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(tall, 8000))})
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _readme_shot(page, name):
    """The window as a user first sees the page, as a small PNG for the README (docs/screenshots/NAME.png)."""
    from PIL import Image

    im = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    im = im.resize((1000, round(im.height * 1000 / im.width)), Image.LANCZOS).quantize(96)
    README_SHOTS.mkdir(parents=True, exist_ok=True)
    im.save(README_SHOTS / f"{name}.png", optimize=True)


def _no_exception(page, name):
    _shot(page, name)
    assert page.locator("[data-testid=stException]").count() == 0, f"an exception box on {name}"


def _nav(page, name):
    """Go to a page through the sidebar (the same session; page.goto would start a new one)."""
    page.locator("[data-testid=stSidebarNav] a", has_text=name).click()
    _settle(page)


def _steady(page, script: str, timeout: float = 30):
    """What a script reads from the page once two reads 1 s apart agree (a chart being redrawn, or an old copy
    of it not yet removed, reads differently from one moment to the next)."""
    last, t0 = page.evaluate(script), time.time()
    while time.time() - t0 < timeout:
        page.wait_for_timeout(1000)
        now = page.evaluate(script)
        if now == last:
            return now
        last = now
    return last


def _points(page) -> list[int]:
    """Figurines drawn in each chart (the points layer, not the grey context)."""
    return _steady(page, "() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].map("
                         "c => c.querySelectorAll('.points_marks path').length)")


def _rings(page) -> list[list[float]]:
    """Drawn width and height of each prior circle in the page's charts, smallest first (not counting a chart
    that Streamlit still shows, faded as stale, while a rerun draws its successor)."""
    return _steady(page, "() => [...document.querySelectorAll("
                         "'[data-testid=stElementContainer]:not([data-stale=true]) .prior_marks path')].map(p => "
                         "p.getBoundingClientRect()).map(r => [r.width, r.height]).sort((a, b) => a[0] - b[0])")


def _box_select(page, chart, a=0.3, b=0.7):
    box = chart.bounding_box()
    x0, y0 = box["x"] + box["width"] * a, box["y"] + box["height"] * a
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * b, box["y"] + box["height"] * b, steps=8)
    page.mouse.up()


def _lasso(page, drag):
    """Draw a closed loop around the middle of a Plotly chart with the lasso."""
    box = drag.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) * 0.35
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for k in range(1, 41):
        page.mouse.move(cx + r * math.cos(k * math.pi / 20), cy + 0.7 * r * math.sin(k * math.pi / 20), steps=2)
    page.mouse.up()


def _highlighted(page) -> list[int]:
    """Points drawn as selected in each Plotly chart."""
    return _steady(page, "() => [...document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')].map("
                         "g => g._fullData.reduce((n, t) => n + (t.selectedpoints?.length || 0), 0))")


def _download_all(page, labels: list[str]) -> list[bytes]:
    """Click download buttons in quick succession (a user's double take); every file must arrive."""
    got = []

    def arrived(download):
        got.append(download)

    page.on("download", arrived)
    for label in labels:
        page.get_by_role("button", name=label).click()
        page.wait_for_timeout(300)
    t0 = time.time()
    while len(got) < len(labels) and time.time() - t0 < 60:
        page.wait_for_timeout(200)
    page.remove_listener("download", arrived)
    assert len(got) == len(labels), f"{len(got)} of {len(labels)} downloads arrived"
    assert all(d.failure() is None for d in got), [d.failure() for d in got]
    return [Path(d.path()).read_bytes() for d in got]


def test_data_train_explore(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(180_000)
    hosts = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc) if urlsplit(r.url).scheme in
            ("http", "https", "ws", "wss") else None)  # data: and blob: URLs stay in the page

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
    page.get_by_label("Epochs", exact=True).fill("3")
    page.get_by_label("Epochs", exact=True).press("Enter")  # typing a number and Enter launches nothing
    page.wait_for_timeout(3000)
    assert page.get_by_text("Run e2e-run", exact=True).count() == 0 and not list_runs(url_log[server].parent / "runs")
    size = page.locator("[data-testid=stSelectbox]").filter(has_text="Image size")
    size.click()
    page.get_by_role("option", name="32", exact=True).click()
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Run e2e-run", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Seconds per epoch").wait_for()
    _shot(page, "3-train-live")
    page.get_by_text("Finished 3 epochs").wait_for(timeout=240_000)
    _settle(page)
    _no_exception(page, "3-train")
    page.get_by_text("Run e2e-run", exact=True).first.scroll_into_view_if_needed()
    _readme_shot(page, "train")
    rings = _rings(page)  # the latent snapshot
    assert len(rings) == 3 and abs(rings[0][0] / rings[0][1] - 1) < 0.02, rings

    page.get_by_role("button", name="Open in Explore").click()
    page.get_by_text("AAE latent").first.wait_for(timeout=240_000)
    _settle(page)
    everything, shown = _points(page), page.get_by_text("figurines shown").inner_text()
    _readme_shot(page, "explore")
    assert everything[0] == everything[1] > 0
    page.get_by_role("button", name="Uruk", exact=True).click()  # one click: one site, in both charts
    _settle(page)
    uruk = _points(page)
    assert uruk[0] == uruk[1] < everything[0] and page.get_by_text("figurines shown").inner_text() != shown
    shown = page.get_by_text("figurines shown").inner_text()
    rings = _rings(page)
    assert len(rings) == 3 and abs(rings[0][0] / rings[0][1] - 1) < 0.02, rings  # the 1 sd circle is round

    _nav(page, "Home")  # the filter is kept for the session across pages
    _nav(page, "Explore")
    page.get_by_text("figurines shown").wait_for()
    assert page.get_by_text("figurines shown").inner_text() == shown and _points(page) == uruk

    folder = max((d for d in THUMBNAILS.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    thumb = page.request.get(f"{server}/app/static/thumbnails/{folder.name}/0.jpg")  # what hovering shows
    assert thumb.ok and thumb.headers["content-type"] == "image/jpeg"

    chart = page.locator("[data-testid=stVegaLiteChart]").first
    _box_select(page, chart, 0.1, 0.9)
    page.get_by_text("Selected figurines").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page, "4-explore-uruk-selected")
    total = int(page.get_by_text("Selected figurines").inner_text().split("(")[1].rstrip(")").replace(",", ""))
    assert total > 48, "the box should hold more than one gallery page"
    page.get_by_label("Page (of").fill("2")
    page.keyboard.press("Enter")
    page.get_by_text(f"Figurines 49 to {min(96, total)} of {total}").wait_for()
    _settle(page)
    _no_exception(page, "5-explore-gallery-page-2")

    assert len(_download_all(page, ["Filtered table (CSV)", "AAE latent chart (SVG)", "UMAP baseline chart (SVG)"])) == 3

    chart.dblclick(position={"x": chart.bounding_box()["width"] * 0.5, "y": chart.bounding_box()["height"] * 0.5})
    page.get_by_text("Selected figurines").wait_for(state="detached", timeout=60_000)
    _settle(page)
    assert page.get_by_text("Selected figurines").count() == 0  # one double-click clears both charts

    # Find a figurine by part of its name (issue 27, item 14), and the figurines like it (item 15)
    uruk = sorted((url_log[server].parent / "data" / "demo" / "Hellenistic Babylonian" / "Uruk").iterdir())[0]
    page.get_by_placeholder("part of a file name").fill(uruk.stem.upper())
    page.keyboard.press("Enter")
    page.get_by_text("1 figurine found, selected in both charts below").wait_for(timeout=60_000)
    page.get_by_text("Figurines like this one").wait_for(timeout=240_000)
    _settle(page)
    _no_exception(page, "5b-explore-find")
    assert page.get_by_text("Selected figurines (1)").count() == 1
    page.get_by_placeholder("part of a file name").fill("")
    page.keyboard.press("Enter")
    page.get_by_text("Selected figurines").wait_for(state="detached", timeout=60_000)
    _settle(page)

    # A lasso in the UMAP chart selects in both (item 12); named and saved with the run, the maps are coloured by
    # it and it prints as a contact sheet (item 13); "Clear the selection" lets it go
    page.get_by_text("lasso", exact=True).click()
    drag = page.locator("[data-testid=stPlotlyChart] .nsewdrag").nth(1)
    drag.wait_for()
    _settle(page)
    _lasso(page, drag)
    page.get_by_text("Selected figurines").wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page, "5c-explore-lasso")
    lassoed = int(page.get_by_text("Selected figurines").inner_text().split("(")[1].rstrip(")").replace(",", ""))
    assert lassoed > 0
    assert _highlighted(page) == [lassoed, lassoed]  # drawn large in both charts
    page.get_by_label("Name this selection to keep it with the run").fill("oval-base group")
    page.get_by_role("button", name="Save selection").click()
    page.get_by_text("Saved selections", exact=True).wait_for(timeout=60_000)
    _settle(page)
    assert page.get_by_text(f"oval-base group: {lassoed:,} figurines").count() == 1
    assert page.locator("[data-testid=stPlotlyChart]").first.get_by_text("oval-base group").count() > 0  # legend
    pdf, png = _download_all(page, ["Contact sheet (PDF)", "Contact sheet (PNG)"])
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG")
    _no_exception(page, "5d-explore-saved-selection")
    page.get_by_role("button", name="Clear the selection").click()
    page.get_by_text("Selected figurines").wait_for(state="detached", timeout=60_000)
    page.get_by_text("box or click", exact=True).click()
    _settle(page)

    _nav(page, "Influence")
    try:
        page.get_by_text("For methods readers").wait_for(timeout=300_000)
    finally:
        _shot(page, "6-influence-demo-run")
    _settle(page)
    assert page.get_by_text("Verdict:").count() == 1
    _no_exception(page, "6-influence-demo-run")

    # A run on a collection of plain mixtures of the sources: answered, with its picture, its paragraph and files
    tmp = url_log[server].parent
    fit_run(tmp / "runs" / "answerable", Settings.from_preset("fast", image_size=32, width=8, disc_width=32, epochs=1,
                                                              device="cpu"), str(answerable(tmp / "data" / "answerable")))
    page.reload()
    page.locator("[data-testid=stSelectbox]").filter(has_text="Run").first.click()
    page.get_by_role("option", name=re.compile(r"^answerable")).click()
    try:
        page.get_by_text("For methods readers").wait_for(timeout=300_000)
        page.get_by_text("Methods paragraph", exact=True).wait_for()
    finally:
        _shot(page, "7-influence-answered")
    _settle(page)
    _no_exception(page, "7-influence-answered")
    _readme_shot(page, "influence")
    picture = page.locator("[data-testid=stVegaLiteChart]").first  # the reading as one picture, first
    assert "shares of each source culture" in picture.locator("svg").first.text_content()
    assert picture.locator(".mark-area path").count() > 0  # the 95% regions
    files = _download_all(page, ["Estimates (CSV)", "Picture (SVG)", "Every number (JSON)", "Methods paragraph (TXT)"])
    table = next(f for f in files if f.startswith(b"embedding,group,source"))
    assert not re.search(rb"\.\d{4,}", table)  # rounded as shown
    svg = next(f for f in files if b"<svg" in f[:500]).decode()
    assert "shares of each source culture" in svg and "95% range" in svg  # the verdict and intervals go with it
    numbers = json.loads(next(f for f in files if f.startswith(b"{")))
    assert {"aae", "umap", "method", "checks"} <= set(numbers)  # as `influence --json` prints it
    paragraph = next(f for f in files if f.startswith(b"We analysed")).decode()
    shown = page.locator("[data-testid=stCode]").filter(has_text="We analysed photographs").inner_text()
    assert " ".join(shown.split()) == " ".join(paragraph.split("\n\n")[0].split())  # the file says what the page does
    space = next(n for n, words in (("descriptor", "read in a descriptor space"), ("aae", "read in the adversarial"),
                                    ("umap", "read in a 2-D UMAP")) if words in paragraph)
    check = numbers["checks"][space]["self_check"]
    for figure in (f"off by {check['mae']:.3f} (standard error {check['mae_se']:.3f})",
                   f"the true share {check['coverage']:.0%} of the time", f"{numbers['method']['n_boot']} bootstrap"):
        assert figure in paragraph, (figure, paragraph)
    assert hosts == {server.split("/")[2]}, f"requests left the server: {hosts}"
    log = url_log[server].read_text(errors="replace")
    for noise in ("ScriptRunContext", "static folder", "Traceback", "Warning"):
        assert noise not in log, f"the server log shows {noise!r}:\n{log[-3000:]}"


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
        page.get_by_label("Epochs", exact=True).fill("150")  # long enough to race, under the hour that asks first
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
    assert loser.get_by_text(f"run {name} (process").count() == 1
    _no_exception(loser, "7-race-refused")
    try:
        winner.locator(f".st-key-stop-{name} button").first.click()  # by key: a redraw may leave an old copy
        winner.get_by_text("Stopped after epoch").first.wait_for(timeout=120_000)  # a redraw may hold two
        _settle(winner)
        assert winner.get_by_text("Stopped after epoch").count() == 1
    finally:
        _shot(winner, "7-race-winner")
        (ARTIFACTS / "7-race-winner.html").write_text(winner.content())
    _no_exception(winner, "7-race-winner-stopped")


def test_hostile_names_stay_text_and_nothing_leaves_the_server(server, browser, small_demo):
    """A collection whose culture and site names are Markdown images, links, colours, formulas and terminal
    sequences: every page shows them as typed; the browser fetches nothing from anywhere but the server."""
    from tests.corpus import EVIL, HOSTILE, hostile

    tmp = url_log[server].parent
    data = hostile(small_demo, tmp / "data" / "hostile")
    env = {**os.environ, "FIGURINES_CACHE": str(tmp / "cache"), "FIGURINES_DATA": str(tmp / "data"),
           "FIGURINES_DATA_ROOTS": str(tmp / "data"), "FIGURINES_RUNS": str(tmp / "runs")}
    subprocess.run([sys.executable, "-m", "core", "train", "--data", str(data), "--run-dir",
                    str(tmp / "runs" / "hostile"), "--epochs", "2", "--image-size", "32", "--device", "cpu"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
    page.set_default_timeout(300_000)
    hosts = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc) if urlsplit(r.url).scheme in
            ("http", "https", "ws", "wss") else None)
    page.goto(f"{server}/data")
    page.get_by_text("Files that could not be read").wait_for()
    _settle(page)
    page.get_by_text("A folder on this server").click()
    page.get_by_role("textbox").first.fill(str(data))
    page.get_by_role("button", name="Use this folder").click()
    _settle(page)
    page.get_by_text(re.compile(r"^hostile: \d+ images in 4 cultures")).wait_for()  # not the demo's line
    _settle(page)
    _no_exception(page, "8-hostile-data")
    for name, ready in (("Explore", "AAE latent"), ("Influence", "How far the method can be trusted"),
                        ("Train", "Show run"), ("Home", "Active run")):
        _nav(page, name)
        page.get_by_text(ready).first.wait_for()
        _settle(page)
        _no_exception(page, f"8-hostile-{name.lower()}")
        links = page.evaluate(f"() => [...document.querySelectorAll('a[href*=\"{EVIL}\"], img[src*=\"{EVIL}\"]')]"
                              ".map(e => e.outerHTML)")
        assert not links, (name, links)
        if name == "Explore":  # the culture chips show each name as typed
            assert page.get_by_text(HOSTILE["Classical Greek and Hellenistic"], exact=True).count() >= 1
    assert hosts == {server.split("/")[2]}, f"requests left the server: {hosts}"
