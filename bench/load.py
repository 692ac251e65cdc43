"""A load run of the app: several browser sessions at once exploring a 100,000-figurine run, on loopback.

    python bench/load.py [--sessions 4] [--actions 8] [--waves 3] [--out bench/out]

Starts `streamlit run` on 127.0.0.1, opens `--sessions` headless Chromium sessions (Playwright, Debian
chromium) on the Explore page, and in each, at the same time, removes and re-adds a culture `--actions`
times. Latency is from the key press to the page showing the new figurine count with Streamlit idle again
(the server's work and the transfer; Vega draws the charts right after). Samples the server's memory throughout. Writes the
percentiles into bench/RESULTS.md. Bounded: at most 16 sessions, 50 actions each, 5 waves, 20 minutes a wave.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Bench, machine, replicate, table, write_section  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
N = 100_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def session(browser, url: str, actions: int, out: dict) -> None:
    page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    page.set_default_timeout(300_000)
    idle = "() => !document.querySelector('[data-testid=stStatusWidget]')"
    t0 = time.perf_counter()
    await page.goto(f"{url}/explore")
    caption = page.get_by_text("figurines shown")
    await caption.wait_for()
    await page.wait_for_function(idle)
    out["first"].append(time.perf_counter() - t0)
    cultures = page.locator("[data-testid=stMultiSelect]").filter(has_text="Cultures").locator("input")
    for i in range(actions):
        before = await caption.inner_text()
        await cultures.click()
        if i % 2 == 0:  # Backspace in the empty input removes the last culture (Achaemenid, the smallest)
            t0 = time.perf_counter()
            await page.keyboard.press("Backspace")
        else:
            await page.keyboard.type("Achaemenid")
            t0 = time.perf_counter()
            await page.keyboard.press("Enter")
        await page.keyboard.press("Escape")
        await page.wait_for_function(
            "(before) => { const c = [...document.querySelectorAll('p')].find(p => p.innerText.includes("
            "'figurines shown')); return c && c.innerText !== before && "
            "!document.querySelector('[data-testid=stStatusWidget]'); }", arg=before, timeout=120_000)
        out["action"].append(time.perf_counter() - t0)
        await page.get_by_role("heading", name="Explore").click()  # blur: the next action starts afresh
    assert await page.locator("[data-testid=stException]").count() == 0
    await page.context.close()


async def drive(url: str, sessions: int, actions: int) -> dict:
    from playwright.async_api import async_playwright

    out = {"first": [], "action": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        await asyncio.wait_for(asyncio.gather(*[session(browser, url, actions, out) for _ in range(sessions)]),
                               timeout=1200)
        await browser.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--actions", type=int, default=8)
    p.add_argument("--waves", type=int, default=3, help="rounds of sessions, one after another (memory stays flat?)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args()
    sessions, actions, waves = min(a.sessions, 16), min(a.actions, 50), min(a.waves, 5)
    out = Path(a.out).resolve()
    runs = out / "load-runs"  # a runs folder holding only the 100,000-figurine run
    bench = Bench(out, "cpu")
    bench.env["FIGURINES_RUNS"] = str(runs)
    shutil.rmtree(runs, ignore_errors=True)
    demo = out / "demo-64"
    if not (demo / "truth.json").is_file():
        subprocess.run([sys.executable, "-m", "core", "demo", "--out", str(demo), "--size", "64"], cwd=ROOT,
                       check=True, env=bench.env, capture_output=True)
    # decoded (once) and encoded before the server starts: the load measures exploring, not first decoding
    bench("synthetic_run", root=str(replicate(demo, out / f"{demo.name}-{N}", N)), size=16, run_dir=str(runs / "big"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
                               str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                              cwd=ROOT, env={**bench.env, "FIGURINES_AUTO_DEMO_RUN": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(server.pid))
            time.sleep(0.25)

    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        start_mb = rss_mb(server.pid)
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        res, after = {"first": [], "action": []}, []
        for _ in range(waves):
            for k, v in asyncio.run(drive(f"http://127.0.0.1:{port}", sessions, actions)).items():
                res[k] += v
            time.sleep(2)
            after.append(rss_mb(server.pid))
        took = time.perf_counter() - t0
    finally:
        done.set()
        server.terminate()
        server.wait(timeout=30)
    lat = np.array(res["action"])
    pct = [float(np.percentile(lat, q)) for q in (50, 90, 99)]
    body = (f"## Load: {waves} waves of {sessions} browser sessions at once on a {N:,}-figurine run "
            f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n{machine('cpu')}\n\n"
            f"Each session opened Explore, then removed and re-added a culture {actions} times, all sessions of a "
            f"wave at once (`python bench/load.py --sessions {sessions} --actions {actions} --waves {waves}`; "
            "server, browsers and this script on the same 2-core machine).\n\n" + table(
                ["", "sessions x actions", "median (s)", "p90 (s)", "p99 (s)", "slowest (s)"],
                [["filter change, click to redrawn page", len(lat), *pct, float(lat.max())],
                 ["first open of Explore", len(res["first"]), float(np.median(res["first"])),
                  float(np.percentile(res["first"], 90)), float(np.percentile(res["first"], 99)),
                  max(res["first"])]])
            + "\n\n" + table(["server memory (RSS, MB)", ""],
                             [["at start", start_mb], ["peak", max(samples)],
                              *[[f"after wave {i + 1} of sessions closed", m] for i, m in enumerate(after)]])
            + f"\n\nWall time of the load: {took:.0f} s.")
    print(body)
    write_section(ROOT / "bench" / "RESULTS.md", f"load-{os.cpu_count()}cpu", body)


if __name__ == "__main__":
    main()
