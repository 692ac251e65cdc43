"""The benchmark: every speed and memory figure of the engine and the app, measured side by side on this machine.

    python bench/run.py [--quick] [--device auto|cpu|cuda] [--out bench/out]

Each measurement runs in a fresh process (bench/tasks.py), from empty caches. Prints Markdown tables, each
target marked met or not, and writes them with the machine's description into bench/RESULTS.md: one
section per machine and mode, replacing that section only. `--quick` (under 10 minutes on 2 CPU cores)
measures fewer sizes and fewer epochs. Benchmarks are not tests: nothing here fails a build.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
DEMO_IMAGES = 4315


class Bench:
    def __init__(self, out: Path, device: str):
        self.out, self.device = out, device
        self.env = {**os.environ, "FIGURINES_CACHE": str(out / "cache"), "FIGURINES_RUNS": str(out / "runs"),
                    "NUMBA_CACHE_DIR": str(out / "numba"), "FIGURINES_DATA": str(out / "data"),
                    "FIGURINES_DATA_ROOTS": str(out)}  # the app may open the bench's folders, wherever --out is

    def __call__(self, name: str, **args) -> dict:
        """Run one task in a fresh process; its JSON result."""
        print(f"  {name} {json.dumps(args)}", file=sys.stderr, flush=True)
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "tasks.py"), name, json.dumps(args)], cwd=ROOT,
                           env=self.env, capture_output=True, text=True, check=False)
        if p.returncode:
            raise SystemExit(f"bench task {name} failed:\n{p.stderr[-3000:]}")
        result = json.loads(p.stdout.strip().splitlines()[-1])
        with open(self.out / "raw.jsonl", "a") as f:  # every figure, for whoever wants more than the tables
            f.write(json.dumps({"task": name, "args": args, "result": result}) + "\n")
        return result


def replicate(src: Path, dst: Path, n: int) -> Path:
    """A folder of n images made of hard links to src's images (culture/site kept), repeated as needed."""
    if (dst / ".complete").is_file():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".tif"))
    for i in range(n):
        f = files[i % len(files)]
        target = dst / f.parent.relative_to(src) / f"r{i // len(files)}_{f.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copyfile(f, target)
    (dst / ".complete").touch()
    return dst


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    libs = ", ".join(f"{lib} {version(lib)}" for lib in ("torch", "torchvision", "numpy", "pillow", "streamlit",
                                                          "altair", "umap-learn", "scikit-learn", "numba"))
    return (f"- CPU: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB memory\n- GPU: {gpu} (device asked: {device})\n"
            f"- Python {platform.python_version()}, {libs}")


def table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def verdict(ok: bool | None) -> str:
    return "not measured here" if ok is None else "**met**" if ok else "**not met**"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and epochs: under 10 minutes on 2 CPU cores")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="scratch folder (datasets, caches, runs)")
    p.add_argument("--results", default=str(RESULTS))
    a = p.parse_args()
    t_bench = time.perf_counter()
    out = Path(a.out).resolve()
    for d in ("cache", "runs", "numba"):  # every measurement starts from empty caches
        shutil.rmtree(out / d, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.jsonl").unlink(missing_ok=True)
    bench = Bench(out, a.device)
    sys.path.insert(0, str(ROOT))
    import torch

    from core.demo import generate
    from core.settings import Neighbourhood

    gpu = a.device != "cpu" and torch.cuda.is_available()
    quick = a.quick
    file_px = 64 if quick else 256
    demo = out / f"demo-{file_px}"
    t0 = time.perf_counter()
    drawn = not (demo / "truth.json").is_file()
    if drawn:
        generate(demo, size=file_px)
    t_demo = f"drawing them took {time.perf_counter() - t0:.0f} s" if drawn else "drawn by an earlier run"
    factors = [1, 4] if quick else [1, 4, 16]
    sizes = [64] if quick else [64, 128, 256]
    folders = {f: demo if f == 1 else replicate(demo, out / f"demo-{file_px}-x{f}", f * DEMO_IMAGES)
               for f in factors}
    sections = []

    # -- data ------------------------------------------------------------------------------------------
    print("data", file=sys.stderr)
    dec = {(f, 64): bench("decode", root=str(folders[f]), size=64) for f in factors}
    dec.update({(1, px): bench("decode", root=str(demo), size=px) for px in sizes if px != 64})
    if (1, 256) not in dec:  # the paper preset's size, decoded before its training is timed
        dec[(1, 256)] = bench("decode", root=str(demo), size=256)
    epoch = bench("data_epoch", root=str(demo), size=64, device=a.device)
    sections.append("### Data pipeline (64 px, the demo's 4,315 images)\n\n" + table(
        ["", "seconds", "peak RSS (MB)"],
        [["first decode into the cache (all cores)", dec[(1, 64)]["cold_s"], dec[(1, 64)]["peak_rss_mb"]],
         ["opening the decoded cache again", dec[(1, 64)]["warm_s"], ""],
         ["an epoch's data time, decoded cache", epoch["ours_s"], epoch["peak_rss_mb"]],
         ["an epoch's data time, naive ImageFolder + DataLoader", epoch["naive_s"], ""]])
        + f"\n\nAn epoch after the first decodes nothing; its data time is **{epoch['speedup']:,.0f}x** the naive "
          f"loader's (target at least 10x: {verdict(epoch['speedup'] >= 10)}). Demo files: {file_px} px "
          f"({t_demo}).")

    # -- training ---------------------------------------------------------------------------------------
    print("training", file=sys.stderr)
    fast_epochs = Neighbourhood.after + 2 if quick else 30  # quick: two epochs with the neighbourhood term
    fast = bench("train", root=str(demo), preset="fast", size=64, epochs=fast_epochs, device=a.device,
                 run_dir=str(out / "runs" / "bench-fast"))
    naive_fast = bench("naive_train", root=str(demo), preset="fast", size=64, epochs=2 if quick else 3,
                       device=a.device)
    if gpu:
        paper_args = {"limit": None, "epochs": 5 if quick else 200}
    else:
        paper_args = {"limit": 300 if quick else 500, "epochs": 2 if quick else 3}
    paper = bench("train", root=str(demo), preset="paper", size=256, device=a.device, **paper_args)
    naive_paper = bench("naive_train", root=str(demo), preset="paper", size=256, device=a.device,
                        limit=paper_args["limit"], epochs=min(paper_args["epochs"], 2))
    rows = []
    for label, r in (("fast, ours", fast), ("fast, naive", naive_fast), ("paper, ours", paper),
                     ("paper, naive", naive_paper)):
        rows.append([label, r["images"], r["epochs"], r["first_epoch_s"], r["s_per_epoch"], r["images_per_s"],
                     r["peak_rss_mb"], r.get("peak_gpu_mb", "")])
    measured = "measured" if fast["epochs"] == 30 else "extrapolated from the epochs run"
    fast_30 = fast["total_s"] + (30 - fast["epochs"]) * fast["last_epoch_s"]
    if paper["epochs"] == 200 and paper["images"] == DEMO_IMAGES:
        paper_200, paper_how = paper["total_s"], "measured"
    else:
        paper_200 = (paper["first_epoch_s"] + 199 * paper["s_per_epoch"]) * DEMO_IMAGES / paper["images"]
        paper_how = f"extrapolated from {paper['epochs']} epochs on {paper['images']:,} images"
    sections.append("### Training throughput\n\n" + table(
        ["preset, trainer", "images", "epochs run", "time to first epoch (s)", "s per epoch", "images/s",
         "peak RSS (MB)", "peak GPU (MB)"], rows)
        + f"\n\n- Fast preset (conv, 64 px) is {fast['images_per_s'] / naive_fast['images_per_s']:.1f}x the naive "
          f"trainer's images/s; paper preset (dense, 256 px) {paper['images_per_s'] / naive_paper['images_per_s']:.1f}x."
        + f"\n- CPU target, fast preset 30 epochs on the 64 px demo in at most 3 minutes: {fast_30:.0f} s ({measured}): "
          + (verdict(fast_30 <= 180) if not gpu else "not measured here (this run used the GPU)")
        + f"\n- GPU target, paper preset 200 epochs on 4,315 images at 256 px in at most 90 s: {paper_200:,.0f} s "
          f"({paper_how}): " + (verdict(paper_200 <= 90) if gpu else "not measured here (no GPU on this machine)"))

    # -- encoding and UMAP --------------------------------------------------------------------------------
    print("encoding and UMAP", file=sys.stderr)
    enc_fast = bench("encode_rate", root=str(demo), preset="fast", size=64, device=a.device)
    enc_paper = bench("encode_rate", root=str(demo), preset="paper", size=256, device=a.device,
                      limit=None if gpu else 1000)
    cold = bench("umap", root=str(demo), size=64)
    shutil.rmtree(out / "cache" / "umap")
    warm = bench("umap", root=str(demo), size=64)
    cached = bench("umap", root=str(demo), size=64)
    sections.append("### Encoding and the UMAP baseline (4,315 images)\n\n" + table(
        ["", "images", "seconds", "images/s", "peak RSS (MB)"],
        [["encode, fast model (64 px)", enc_fast["images"], enc_fast["seconds"], enc_fast["images_per_s"],
          enc_fast["peak_rss_mb"]],
         ["encode, paper model (256 px)", enc_paper["images"], enc_paper["seconds"], enc_paper["images_per_s"],
          enc_paper["peak_rss_mb"]],
         ["UMAP, first ever (numba compiles)", cold["images"], cold["seconds"], "", cold["peak_rss_mb"]],
         ["UMAP, a fresh process (numba cache on disk)", warm["images"], warm["seconds"], "", warm["peak_rss_mb"]],
         ["UMAP baseline from its cache", cached["images"], cached["seconds"], "", cached["peak_rss_mb"]]])
        + f"\n\n- The cached baseline loads in under 1 s: {verdict(cached['seconds'] < 1)}."
        + f"\n- A fresh process does not pay numba's compilation again: {cold['seconds']:.1f} s first, "
          f"{warm['seconds']:.1f} s after: {verdict(warm['seconds'] < cold['seconds'] / 2)}.")

    # -- Explore redraw -----------------------------------------------------------------------------------
    print("Explore redraw", file=sys.stderr)
    runs = {DEMO_IMAGES: "bench-fast"}
    for n in (30_000, 100_000):
        big = replicate(demo, out / f"{demo.name}-{n}", n)
        bench("synthetic_run", root=str(big), size=16, run_dir=str(out / "runs" / f"bench-{n}"))
        runs[n] = f"bench-{n}"
    rows, ok = [], True
    for n, name in runs.items():
        r = bench("redraw", run_name=name)
        limit = 0.3 if n <= DEMO_IMAGES else 1.5
        ok &= r["redraw_max_s"] <= limit if n in (DEMO_IMAGES, 100_000) else True
        rows.append([n, r["mode"], r["first_open_s"], r["redraw_median_s"], r["redraw_max_s"], r["chart_kb"],
                     r["peak_rss_mb"]])
    sections.append("### Explore: a filter change, server side (Streamlit AppTest)\n\n" + table(
        ["figurines", "drawn as", "first open (s)", "redraw, median (s)", "redraw, slowest (s)",
         "both charts (kB)", "peak RSS (MB)"], rows)
        + "\n\nTargets: at most 0.3 s at 4,315 figurines and 1.5 s at 100,000: "
          f"{verdict(ok)}. The 4,315 run is the fast-preset run above; 30,000 and 100,000 are real folders "
          "(hard links to the demo's files, decoded at 16 px) with synthetic encodings. Above 20,000 figurines each "
          "chart draws at most 120 x 120 density cells, so what the browser receives stays bounded.")

    # -- how cost grows -----------------------------------------------------------------------------------
    print("scaling", file=sys.stderr)
    rows = []
    for (f, px), d in sorted(dec.items()):
        if px not in sizes:
            continue
        root = str(folders[f])
        tr = fast if (f, px) == (1, 64) else bench("train", root=root, preset="fast", size=px, epochs=2,
                                                    device=a.device)
        um = warm if (f, px) == (1, 64) else bench("umap", root=root, size=px) if px == 64 else None
        rows.append([d["images"], px, d["cold_s"], d["cache_mb"], tr["s_per_epoch"], tr["images_per_s"],
                     um["seconds"] if um else "", max(d["peak_rss_mb"], tr["peak_rss_mb"],
                                                       um["peak_rss_mb"] if um else 0)])
    sections.append("### How cost grows (fast preset)\n\n" + table(
        ["images", "px", "first decode (s)", "decoded cache (MB)", "s per epoch", "images/s", "UMAP (s)",
         "peak RSS (MB)"], rows))

    took = time.perf_counter() - t_bench
    mode = "quick" if quick else "full"
    key = f"{'gpu' if gpu else 'cpu'}-{mode}"
    body = (f"## {'GPU' if gpu else 'CPU'}, {mode} benchmark ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{took / 60:.0f} min)\n\n{machine(a.device)}\n\n" + "\n\n".join(sections))
    print(body)
    write_section(Path(a.results), key, body)


def write_section(path: Path, key: str, body: str) -> None:
    """Replace (or add) this machine and mode's section of RESULTS.md, keeping the others."""
    text = path.read_text() if path.is_file() else (
        "# Benchmark results\n\nWritten by `python bench/run.py` (see the README); one section per machine and "
        "mode, each replaced when the benchmark runs again there.\n")
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
