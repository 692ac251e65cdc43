"""The UMAP baseline made from HOG descriptors against one made from the pixels (no training).

    python bench/baselines.py --data DIR [DIR ...] [--seeds 0 1 2] [--no-write]

For each collection drawn by `core.demo` (the demo; `python -m core demo --collection second`) and each UMAP
seed: balanced 10-NN culture accuracy (`core.diagnostics.knn_accuracy`, the same folds in every map) over all
cultures and over the sources alone, the targets beside their source (`bench.quality.beside`: a label no
map sees), and the map's own influence reading (`core.influence.estimate`, its checks alone: no agreement with
other spaces) against truth.json. The pixels are those the fast preset's model sees (form, 64 px, backgrounds
flattened). Prints a Markdown table and, unless --no-write, writes the section `baselines` of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.quality import beside  # noqa: E402
from bench.run import RESULTS, machine, table, write_section  # noqa: E402

MAPS = {"HOG descriptors": dict(reads="descriptors"), "pixels (form)": dict(reads="pixels", style="form")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    from core import influence
    from core.dataset import load
    from core.diagnostics import knn_accuracy
    from core.embed import UMAPBaseline
    from core.labels import target_culture

    body = []
    for data in a.data:
        ds = load(data, a.size, "flatten")
        items = ds.items.reset_index(drop=True)
        y = items["culture"].to_numpy()
        src = y != target_culture(items["culture"], items["site"])
        truth = json.loads((Path(data) / "truth.json").read_text())["sites"]
        for name, params in MAPS.items():
            got, verdicts = [], []
            for seed in a.seeds:
                _, emb = UMAPBaseline(random_state=seed, **params).fit_transform(ds.images)
                near = beside(data, items, {"map": emb})
                r = influence.estimate(emb, items["culture"], items["site"], influence.InfluenceSettings())
                t = influence.with_known(r["table"], truth).dropna(subset=["known"])
                got.append([knn_accuracy(emb, y), knn_accuracy(emb[src], y[src]), near["map"] if near else np.nan,
                            t["error"].mean()])
                verdicts.append(r["verdict"]["level"])
                print(f"{Path(data).name}, {name}, seed {seed}: {got[-1]} {verdicts[-1]}", file=sys.stderr, flush=True)
            m, lo, hi = np.mean(got, 0), np.min(got, 0), np.max(got, 0)
            body.append([Path(data).name, len(items), name]
                        + [f"{v:.3f} ({l:.3f}-{h:.3f})" for v, l, h in zip(m, lo, hi)] + [", ".join(verdicts)])
    tab = table(["collection", "figurines", "UMAP made from", "10-NN, all cultures", "10-NN, sources only",
                 "targets beside their source", "its reading: error vs truth", "its checks say"], body)
    section = (f"## The UMAP baseline: descriptors or pixels ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n\n"
               f"{machine('cpu')}\n- Command: `python bench/baselines.py "
               f"{shlex.join(sys.argv[1:] if argv is None else argv)}`\n\n"
               f"{tab}\n\nMean over UMAP seeds {', '.join(map(str, a.seeds))} (lowest-highest). Balanced 10-NN culture "
               "accuracy by 5-fold cross-validation; targets beside their source: the balanced accuracy with which a "
               "10-NN classifier of the source figurines places each target figurine with the source the generator "
               "drew it after. Its reading: the mean absolute error of the map's own influence shares (every site and "
               "source) against truth.json, and the verdict of its own checks, per seed. Both maps: PCA to 50 "
               "dimensions, then UMAP (15 neighbours, min_dist 0.1).")
    print(section)
    if not a.no_write:
        write_section(RESULTS, "baselines", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
