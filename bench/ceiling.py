"""How far a map shaped like the prior places targets beside their source, its cultures in perfect sectors.

    python bench/ceiling.py --data DIR [DIR ...] [--draws 20] [--gaps 0 0.1 0.2 0.3 0.5]

No training. For a collection drawn by `core.demo`, each figurine gets a code drawn from the 2-D Gaussian prior,
and the cultures perfect sectors of it (each figurine in the sector of the style it was drawn in, sectors as wide
as their share): a map whose codes are the prior's draws and whose cultures touch only at the seams (for three
equal parts, sectors meeting at the centre leave the least of the Gaussian's mass on their edges: Milman and
Neeman, 2018). A gap then squeezes each sector's angles toward its middle, leaving that share of every sector
empty at its edges. For each gap: the targets beside their source (`bench.quality.beside`, the figure the bench
reports for trained maps) and how well a classifier tells the codes from the prior's draws
(`core.diagnostics.prior_match`), mean and range over the draws. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.quality import beside, drawn_styles  # noqa: E402


def styles(data: str):
    """The collection's readable figurines and each one's style: its culture for a source, the source it was
    drawn after for a target (None where the generator drew it in no source's style)."""
    from core.dataset import scan
    from core.labels import is_target

    items = scan(data)
    items = items[items["readable"]].reset_index(drop=True)
    style = items["culture"].to_numpy(object).copy()
    style[is_target(items)] = drawn_styles(data, items)
    return items, style


def sectors(style: np.ndarray, gap: float, rng: np.random.Generator) -> np.ndarray:
    """Codes drawn from N(0, I), each style given a sector as wide as its share, less `gap` of it at the edges
    (figurines of no style anywhere)."""
    names = sorted({s for s in style if s is not None})
    sizes = [int(sum(style == n)) for n in names]
    codes, z = rng.normal(size=(len(style), 2)), rng.normal(size=(sum(sizes), 2))
    angle, radius = np.arctan2(z[:, 1], z[:, 0]) % (2 * np.pi), np.hypot(z[:, 0], z[:, 1])
    order, start = np.argsort(angle), 0
    ranked = np.r_[0.0, angle[order], 2 * np.pi]
    for name, size in zip(names, sizes):
        drawn = order[start:start + size]  # the draws whose angles fall in this sector (to halfway to the next)
        lo = (ranked[start] + ranked[start + 1]) / 2 if start else 0.0
        hi = (ranked[start + size] + ranked[start + size + 1]) / 2 if start + size < len(z) else 2 * np.pi
        a = lo + (hi - lo) * (gap / 2 + (1 - gap) * (angle[drawn] - lo) / (hi - lo))
        mine = rng.permutation(np.flatnonzero(style == name))
        codes[mine] = np.c_[radius[drawn] * np.cos(a), radius[drawn] * np.sin(a)]
        start += size
    return codes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--gaps", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3, 0.5])
    a = p.parse_args(argv)
    from core.diagnostics import prior_match

    print("| collection | gap at each sector's edges | targets beside their source | told from prior draws |")
    print("|---|---|---|---|")
    for data in a.data:
        items, style = styles(data)
        for gap in a.gaps:
            near, told = [], []
            for draw in range(a.draws):
                codes = sectors(style, gap, np.random.default_rng(draw))
                near.append(beside(data, items, {"map": codes})["map"])
                told.append(prior_match(codes, 1.0, seed=1000 + draw)["c2st_accuracy"])
            print(f"| {Path(data).name} | {gap:.0%} | {np.mean(near):.3f} ({min(near):.3f}-{max(near):.3f}; "
                  f"{np.mean(np.array(near) == 1):.0%} of draws at 1.000) | {np.mean(told):.3f} "
                  f"({min(told):.3f}-{max(told):.3f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
