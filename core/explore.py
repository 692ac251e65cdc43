"""What the Explore page shows, computed without any UI: filtered points, density cells for large
collections, selections, thumbnails, the prior's circles and the decoder's view of the latent space."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .demo import ACHAEMENID, GREEK, HB, NEOBAB

_FIXED = {GREEK: "#2f6fb0", NEOBAB: "#c23b2a", ACHAEMENID: "#3d8f4a", HB: "#c8962e"}
_SPARE = ["#7b4fa0", "#17a2b8", "#d17fb5", "#8c564b", "#9a9c1a", "#f0027f", "#1f3b5c", "#66a61e"]  # no greys:
# a culture must never look like the grey context of filtered-out figurines
CONTEXT_GREY = "#d4d0ca"
POINTS_UP_TO = 20_000  # above this many figurines the charts draw density cells instead of points


def culture_colours(cultures) -> dict[str, str]:
    """The same colour for the same culture on every page: the demo's four fixed, others in name order from
    the colours left, the four most distinct first (a collection of its own names gets those)."""
    present = set(pd.unique(np.asarray(cultures)))
    fixed = {c: _FIXED[c] for c in _FIXED if c in present}
    spare = [c for c in (*_FIXED.values(), *_SPARE) if c not in fixed.values()]
    others = sorted(c for c in present if c not in _FIXED)
    return {**fixed, **{c: spare[i % len(spare)] for i, c in enumerate(others)}}


def filtered(enc: pd.DataFrame, cultures: list[str], sites: list[str]) -> np.ndarray:
    """Rows kept by the filters: chosen cultures, and for figurines with a site, chosen sites."""
    keep = enc["culture"].isin(cultures).to_numpy()
    has_site = (enc["site"] != "").to_numpy()
    return keep & (~has_site | enc["site"].isin(sites).to_numpy())


def _folded(text: str) -> str:
    """`text` without case or accents, in one Unicode form: "Ménade" and "menade" alike."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def find(enc: pd.DataFrame, text: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Row ids whose file name (or path) holds `text`, ignoring case, accents and Unicode form; within `rows` if
    given."""
    text = _folded(text.strip())
    if not text:
        return np.array([], int)
    hit = enc["path"].map(lambda p: text in _folded(str(p))).to_numpy(bool)
    return np.flatnonzero(hit & (rows if rows is not None else True))


def neighbours(space: np.ndarray, i: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The k rows nearest to row i (itself left out) and their Euclidean distances, nearest first."""
    d = np.linalg.norm(space - space[i], axis=1)
    d[i] = np.inf
    near = np.argsort(d, kind="stable")[:k]
    return near, d[near]


def selected_rows(selection: dict, enc: pd.DataFrame, prefix: str) -> np.ndarray | None:
    """Row ids picked in a chart: a box over `<prefix>_x/_y`, or clicked points; None if nothing is selected."""
    ids = None
    box = selection.get(f"box_{prefix}") or {}
    if box.get(f"{prefix}_x") and box.get(f"{prefix}_y"):
        (x0, x1), (y0, y1) = sorted(box[f"{prefix}_x"]), sorted(box[f"{prefix}_y"])
        x, y = enc[f"{prefix}_x"].to_numpy(), enc[f"{prefix}_y"].to_numpy()
        ids = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    clicked = selection.get(f"pick_{prefix}") or []
    picked = [p["id"] for p in clicked if isinstance(p, dict) and "id" in p]
    if picked:
        ids = np.union1d(ids if ids is not None else [], picked).astype(int)
    return ids


def write_thumbnails(images, folder: Path, size: int = 48, keep: int = 4) -> Path:
    """`<row>.jpg` thumbnails of uint8 images in `folder`, written once (the whole folder appears atomically).

    The app serves them as static files, so a chart carries a short URL per figurine, not the image;
    only the `keep` most recent thumbnail folders next to it are kept.
    """
    folder = Path(folder)
    if folder.is_dir():
        os.utime(folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".writing-", dir=folder.parent))
    try:
        for i, a in enumerate(images):
            Image.fromarray(np.asarray(a)).resize((size, size), Image.Resampling.BILINEAR).save(
                tmp / f"{i}.jpg", "JPEG", quality=75)
        os.replace(tmp, folder)
    except OSError:
        if not folder.is_dir():  # another session finishing first is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    others = sorted((d for d in folder.parent.iterdir() if d.is_dir() and not d.name.startswith(".")),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for old in others[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def cells(enc: pd.DataFrame, rows: np.ndarray, prefix: str, selected=None, bins: int = 120,
          by: str = "culture") -> pd.DataFrame:
    """Density cells of the figurines in `rows` (a boolean mask) on a fixed `bins` x `bins` grid over all of
    `enc`: each cell's count, its most frequent value of column `by` (the culture, or a saved selection) and
    that value's share, and whether it holds a selected figurine. Columns `<prefix>_x/_y` (lower corner) and
    `_x2/_y2` (upper corner)."""
    x, y = enc[f"{prefix}_x"].to_numpy(), enc[f"{prefix}_y"].to_numpy()
    edges = [np.linspace(v.min(), v.max() + 1e-9 * (1 + abs(v.max())), bins + 1) for v in (x, y)]
    ix = np.clip(np.searchsorted(edges[0], x, side="right") - 1, 0, bins - 1)
    iy = np.clip(np.searchsorted(edges[1], y, side="right") - 1, 0, bins - 1)
    cell = (ix * bins + iy)[rows]
    sel = np.zeros(len(enc), bool)
    if selected is not None:
        sel[np.asarray(selected, int)] = True
    df = pd.DataFrame({"cell": cell, by: enc[by].to_numpy()[rows], "selected": sel[rows]})
    if not len(df):
        return pd.DataFrame(columns=[f"{prefix}_x", f"{prefix}_y", f"{prefix}_x2", f"{prefix}_y2", by,
                                     "n", "share", "selected"])
    per = df.groupby(["cell", by], observed=True).size().rename("k").reset_index()
    per = per.sort_values(["cell", "k"], ascending=[True, False])
    top = per.drop_duplicates("cell").set_index("cell")
    n = df.groupby("cell").size()
    out = pd.DataFrame({by: top[by], "n": n, "share": top["k"] / n,
                        "selected": df.groupby("cell")["selected"].any()})
    cx, cy = np.divmod(out.index.to_numpy(), bins)
    for axis, idx, e in (("x", cx, edges[0]), ("y", cy, edges[1])):
        out[f"{prefix}_{axis}"], out[f"{prefix}_{axis}2"] = e[idx], e[idx + 1]
    return out.reset_index(drop=True)


def square_view(x, y, prior_std: float | None = None, margin: float = 0.05) -> tuple[list[float], list[float]]:
    """x and y domains of equal span around all points (and the prior's 3 sd circle, with room to spare):
    drawn on a square plot, distances read the same in every direction and the prior's circles are round."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo = [np.nanmin(x, initial=np.inf), np.nanmin(y, initial=np.inf)]
    hi = [np.nanmax(x, initial=-np.inf), np.nanmax(y, initial=-np.inf)]
    if prior_std:
        lo, hi = [min(v, -3.15 * prior_std) for v in lo], [max(v, 3.15 * prior_std) for v in hi]
    if not np.isfinite(lo + hi).all():
        lo, hi = [-1.0, -1.0], [1.0, 1.0]
    half = max(hi[0] - lo[0], hi[1] - lo[1], 1e-9) * (0.5 + margin)
    return [[float((a + b) / 2 - half), float((a + b) / 2 + half)] for a, b in zip(lo, hi)]


def prior_circles(std: float, ks=(1, 2, 3), n: int = 120) -> pd.DataFrame:
    """Points along the prior's 1, 2 and 3 sd circles, in drawing order."""
    t = np.linspace(0, 2 * np.pi, n)
    return pd.concat([pd.DataFrame({"x": k * std * np.cos(t), "y": k * std * np.sin(t), "order": np.arange(n),
                                    "circle": f"{k} sd"}) for k in ks], ignore_index=True)


@torch.no_grad()
def manifold(model, n: int = 9, extent: float = 2.5) -> np.ndarray:
    """What the decoder draws on an n x n grid over +-extent prior sds (first two latent dims), one image; a
    cluster-head map's grid reaches 3 sd beyond its farthest head; a `local` run's decoder draws source figurines."""
    s = model.settings
    if s.clusters:
        extent = float(model.heads.detach().abs().max()) + 3
    ticks = np.linspace(extent, -extent, n) * s.prior_std
    z = np.zeros((n * n, s.latent_dim), np.float32)
    z[:, 0] = np.tile(-ticks, n)
    if s.latent_dim > 1:
        z[:, 1] = np.repeat(ticks, n)
    dev = next(model.parameters()).device
    tiles = model.denormalise(model.decode(torch.as_tensor(z, device=dev)))
    size = s.image_size
    return tiles.reshape(n, n, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, n * size, 3)


@torch.no_grad()
def reconstructions(model, images: np.ndarray, local: np.ndarray | None = None) -> np.ndarray:
    """The model's reconstructions of uint8 images; `local`: which are of the target culture (see Settings.local)."""
    dev = next(model.parameters()).device
    x = model.normalise(torch.from_numpy(np.array(images)).to(dev))
    made = None if local is None else torch.from_numpy(np.array(local, dtype=bool)).to(dev)
    return model.denormalise(model.decode(model.encode(x), made))
