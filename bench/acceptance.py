"""The core engine's acceptance run: demo -> train (fast, 30 epochs, CPU) -> encode, timed, with the quality figures.

    python bench/acceptance.py --out /tmp/acceptance [--epochs 30] [--size 64]

Prints a Markdown table: wall time of each CLI step, the share of codes within 1/2/3 prior sds, and the
balanced 10-nearest-neighbour culture accuracy in the AAE codes and in UMAP (all four cultures, and the
three source cultures alone: Hellenistic Babylonian figurines are drawn from the sources' styles, so
they overlap them by design).
"""
import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.diagnostics import knn_accuracy, within_sd  # noqa: E402
from core.demo import HB  # noqa: E402


def step(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    out = Path(a.out)
    os.environ.setdefault("FIGURINES_CACHE", str(out / "cache"))
    data, run = out / "demo", out / "run"
    times = {"demo": step("demo", "--out", data, "--size", a.size),
             "train": step("train", "--data", data, "--run-dir", run, "--preset", "fast", "--epochs", a.epochs,
                           "--image-size", a.size, "--device", "cpu"),
             "encode (first)": step("encode", "--run-dir", run)}
    os.utime(run / "model.pt")  # a changed checkpoint: encodings again, UMAP from its cache
    times["encode (UMAP cached)"] = step("encode", "--run-dir", run)
    df = pd.read_parquet(run / "encodings.parquet")
    src = (df["culture"] != HB).to_numpy()
    inside = within_sd(df[["aae_x", "aae_y"]].to_numpy(), 5.0)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{len(df)} images at {a.size} px, {a.epochs} epochs\n")
    print("| step | seconds |\n| --- | --- |")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(f"\nCodes within 1 / 2 / 3 prior sd: {inside[1]:.1%} / {inside[2]:.1%} / {inside[3]:.1%} "
          "(a matched 2-D Gaussian: 39.3% / 86.5% / 98.9%)\n")
    print("| balanced 10-NN accuracy | AAE | UMAP |\n| --- | --- | --- |")
    for name, rows in (("all four cultures", slice(None)), ("three source cultures", src)):
        y = df["culture"].to_numpy()[rows]
        acc = [knn_accuracy(df[[f"{e}_x", f"{e}_y"]].to_numpy()[rows], y) for e in ("aae", "umap")]
        print(f"| {name} | {acc[0]:.3f} | {acc[1]:.3f} |")


if __name__ == "__main__":
    main()
