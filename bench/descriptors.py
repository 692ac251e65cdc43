"""Readings in descriptor spaces alone (no training): which descriptor and image size tell the cultures apart.

    python bench/descriptors.py --data DIR [DIR ...] [--descriptors hog:64 hog:128 pixels:64 backbone:64]
                                [--background flatten|separate|keep]

For each collection (a folder with a `truth.json`: the demo, or `core demo --collection second`) and each
descriptor (KIND:SIZE; `backbone` uses a ResNet-50 with random weights, saved under --out: its time is
real, its quality means nothing): the time to compute the descriptors (cold cache, all cores), then the
descriptor space's reading with the product's own checks (`influence.estimate`): error against truth.json,
how many true values the intervals shown hold, their width, the self-check, the domain shift against its
null, conditioning and verdict. Prints a Markdown table.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--descriptors", nargs="+", default=["hog:64", "hog:128", "pixels:64"])
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="descriptors-"))
    p.add_argument("--background", default="flatten", help="what is made of each photograph's backdrop (as a run's)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["FIGURINES_CACHE"] = str(out / "cache")  # cold: the descriptors are computed here, not reused
    os.environ["FIGURINES_DATA_ROOTS"] = os.pathsep.join([str(out.resolve()), *map(str, map(Path, a.data))])
    from core import influence
    from core.dataset import load
    from core.descriptors import Descriptor, describe
    from core.labels import target_culture

    weights = out / "random-resnet50.pt"
    if any(d.startswith("backbone") for d in a.descriptors) and not weights.is_file():
        import torch
        import torchvision

        torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    settings = influence.InfluenceSettings()
    print(f"{os.cpu_count()} cores; {settings.components} components fitted to the sources\n")
    print(f"Backgrounds: {a.background}\n")
    print("| collection | descriptor | figurines | describe (s) | reading (s) | error vs truth | truth in shown CI | "
          "shown CI width | self-check error / coverage | apart (AUC / null 95%) | conditioning | reading |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for data in a.data:
        truth = json.loads((Path(data) / "truth.json").read_text())["sites"]
        for d in a.descriptors:
            kind, size = d.split(":")
            ds = load(data, int(size), a.background)
            items = ds.items
            start = time.time()
            x = describe(ds, Descriptor(kind, int(size), weights=str(weights) if kind == "backbone" else ""))
            took = time.time() - start
            is_source = (items["culture"] != target_culture(items["culture"], items["site"])).to_numpy()
            start = time.time()
            r = influence.estimate(influence.descriptor_space(x, is_source, settings.components), items["culture"],
                                   items["site"], settings)
            reading = time.time() - start
            t = influence.with_known(r["table"], truth).dropna(subset=["known"])
            shown = t["shown"] & (t["ci_low"] <= t["known"]) & (t["known"] <= t["ci_high"])
            sc, sh = r["self_check"], r["shift"]
            print(f"| {Path(data).name} | {d} | {len(items)} | {took:.1f} | {reading:.0f} | {t['error'].mean():.3f} | "
                  f"{int(shown.sum())} / {len(t)} | {(t['ci_high'] - t['ci_low']).mean():.2f} | "
                  f"{sc.get('mae', np.nan):.3f} / {sc.get('coverage', 0):.0%} | {sh['auc']:.2f} / {sh['alarm']:.2f} | "
                  f"{r['conditioning']:.2f} | {r['verdict']['level']} |", flush=True)


if __name__ == "__main__":
    main()
