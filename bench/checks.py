"""How often the influence checks raise a false alarm, and how often they miss a shift that biases the shares.

    python bench/checks.py [--seeds 20] [--code PATH]

Known mixtures in a generated 10-D space (three sources of 250 figurines, unit spread, told apart along the
first two dimensions; three sites of 200 with shares 0.5 / 0.3 / 0.2), every target figurine moved:
- not at all, and 3 sd across what tells the sources apart (dimension 6): nothing biases the shares, so any
  verdict other than "good" is a false alarm;
- 0.5 and 1 sd along it (towards the second source): the shares are biased, so a "good" verdict is a miss.
Per case: the verdicts, the shares' error, and how often the intervals shown hold the known share.
`--code` runs another checkout's `core` (say, the code before a change) on the same cases and seeds.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CASES = {"no move": (None, 0.0), "3 sd across": (6, 3.0), "0.5 sd along": (0, 0.5), "1 sd along": (0, 1.0)}
TRUTH = np.array([0.5, 0.3, 0.2])


def case(rng, dim, amount, n_src=250, n_site=200, dims=10):
    """(embedding, cultures, sites) of one drawn case."""
    centres = np.zeros((3, dims))
    centres[1, 0], centres[2, 1] = 3.0, 3.0
    move = np.zeros(dims)
    if dim is not None:
        move[dim] = amount
    parts = [(s, "", rng.normal(c, 1.0, (n_src, dims))) for s, c in zip("ABC", centres)]
    for site in ("Uruk", "Kish", "Nippur"):
        counts = rng.multinomial(n_site, TRUTH)
        parts.append(("Hellenistic Babylonian", site, np.concatenate(
            [rng.normal(c, 1.0, (k, dims)) for c, k in zip(centres, counts)]) + move))
    emb = np.concatenate([p for _, _, p in parts])
    return (emb, pd.Series(np.concatenate([[c] * len(p) for c, _, p in parts])),
            pd.Series(np.concatenate([[s] * len(p) for _, s, p in parts])))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--code", default=str(Path(__file__).resolve().parents[1]))
    a = p.parse_args()
    sys.path.insert(0, a.code)
    from core import influence

    settings = influence.InfluenceSettings()  # the product's own
    print(f"code: {a.code}; {a.seeds} seeds per case\n")
    print("| case | good | caution | withheld | false alarm / miss (verdict) | shift check raised | error of the "
          "shares | known share inside the intervals shown | seconds per case |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (dim, amount) in CASES.items():
        levels, errors, held, raised, start = [], [], [], 0, time.time()
        for seed in range(a.seeds):
            r = influence.estimate(*case(np.random.default_rng([seed, 7]), dim, amount), settings)
            t = r["table"].assign(known=np.tile(TRUTH, 4))
            levels.append(r["verdict"]["level"])
            # the shift check: the new code's null-calibrated alarm, the old code's fixed AUC (0.6: partly apart)
            raised += bool(r["shift"]["apart"]) if "shift" in r else r["domain_shift"] > 0.6
            errors.append((t["share"] - t["known"]).abs().mean())
            held.append((t["shown"] & (t["ci_low"] <= t["known"]) & (t["known"] <= t["ci_high"])).mean())
        n = {lv: levels.count(lv) for lv in ("good", "caution", "withheld")}
        wrong = (a.seeds - n["good"]) if dim is None or dim == 6 else n["good"]
        kind = "false alarm" if dim is None or dim == 6 else "miss"
        print(f"| {name} | {n['good']} | {n['caution']} | {n['withheld']} | {kind}: {wrong} / {a.seeds} | "
              f"{raised} / {a.seeds} | "
              f"{np.mean(errors):.3f} | {np.mean(held):.0%} | {(time.time() - start) / a.seeds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
