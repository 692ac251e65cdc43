"""Influence estimates: how close each target group sits to each source culture, with uncertainty.

Primary measure (k-NN composition): for every target figurine, its k nearest source-culture figurines;
each source's count is divided by that source's size (887 Greek vs 80 Achaemenid must not decide the
answer), normalised to shares that sum to 1, and averaged over the group. 95% intervals come from a
bootstrap over the group's figurines. A second, distance-based measure (energy distance between the group
and each source cloud, turned into shares by inverse distance) checks that the reading does not hang on
one method. Groups with fewer than MIN_GROUP figurines are flagged, not given a confident number.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

TARGET = "Hellenistic Babylonian"
MIN_GROUP = 10


def target_culture(cultures: pd.Series, sites: pd.Series) -> str:
    """The culture whose groups are explained: Hellenistic Babylonian, else the one with find-sites."""
    if (cultures == TARGET).any():
        return TARGET
    with_sites = cultures[sites != ""]
    return with_sites.value_counts().index[0] if len(with_sites) else cultures.value_counts().index[0]


def knn_shares(emb: np.ndarray, is_source: np.ndarray, source_labels: np.ndarray, sources: list[str],
               targets: np.ndarray, k: int = 10) -> np.ndarray:
    """Per target figurine: class-size-corrected shares of its k nearest source figurines (rows sum to 1)."""
    src = emb[is_source]
    k = min(k, len(src))
    _, idx = NearestNeighbors(n_neighbors=k).fit(src).kneighbors(emb[targets])
    near = source_labels[idx]
    sizes = np.array([(source_labels == s).sum() for s in sources], float)
    counts = np.stack([(near == s).sum(axis=1) for s in sources], axis=1) / sizes
    return counts / counts.sum(axis=1, keepdims=True)


def bootstrap(per_figurine: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean shares and their 95% percentile intervals (2, n_sources), resampling figurines."""
    rng = np.random.default_rng(seed)
    n = len(per_figurine)
    means = per_figurine[rng.integers(0, n, (n_boot, n))].mean(axis=1)
    return per_figurine.mean(axis=0), np.percentile(means, [2.5, 97.5], axis=0)


def energy_distance(a: np.ndarray, b: np.ndarray, cap: int = 1500, seed: int = 0) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (subsampled to `cap` points a side)."""
    rng = np.random.default_rng(seed)
    a = a[rng.permutation(len(a))[:cap]]
    b = b[rng.permutation(len(b))[:cap]]

    return 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()


def estimate(emb: np.ndarray, cultures: pd.Series, sites: pd.Series, k: int = 10, n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """One row per (group, source): k-NN share with its 95% interval, energy distance and its share.

    Groups: the target culture as a whole and each of its find-sites.
    """
    cultures, sites = cultures.reset_index(drop=True), sites.reset_index(drop=True)
    target = target_culture(cultures, sites)
    sources = sorted(c for c in cultures.unique() if c != target)
    if not sources:
        return pd.DataFrame()
    is_source = (cultures != target).to_numpy()
    source_labels = cultures[is_source].to_numpy()
    groups = {target: (cultures == target).to_numpy()}
    for site in sorted(s for s in sites[cultures == target].unique() if s):
        groups[site] = ((cultures == target) & (sites == site)).to_numpy()
    rows = []
    for g, mask in groups.items():
        n = int(mask.sum())
        per = knn_shares(emb, is_source, source_labels, sources, np.flatnonzero(mask), k)
        mean, ci = bootstrap(per, n_boot, seed)
        energy = np.array([energy_distance(emb[mask], emb[cultures.to_numpy() == s], seed=seed) for s in sources])
        inv = 1 / np.maximum(energy, 1e-12)
        for j, s in enumerate(sources):
            rows.append({"group": g, "source": s, "n": n, "share": float(mean[j]), "ci_low": float(ci[0, j]),
                         "ci_high": float(ci[1, j]), "energy": float(energy[j]), "energy_share": float(inv[j] / inv.sum()),
                         "too_small": n < MIN_GROUP})
    return pd.DataFrame(rows)


def as_json(tables: dict[str, pd.DataFrame]) -> dict:
    """{"aae": {GROUP: {SOURCE: {"share": F, "ci": [LO, HI]}}}, "umap": {...}} as in DESIGN.md."""
    out = {}
    for name, t in tables.items():
        out[name] = {g: {r.source: {"share": r.share, "ci": [r.ci_low, r.ci_high]} for r in part.itertuples()}
                     for g, part in t.groupby("group", sort=False)}
    return out


def reading(table: pd.DataFrame, embedding: str, quote=str) -> list[str]:
    """Plain-language sentences, one per group, stating the nearest source and its uncertainty;
    `quote` formats the group and culture names (say, escaped for Markdown)."""
    lines = []
    for g, part in table.groupby("group", sort=False):
        g = quote(g)
        best = part.sort_values("share", ascending=False).iloc[0]
        n = int(best["n"])
        if best["too_small"]:
            lines.append(f"{g}: only {n} figurines, too few to say which tradition they follow.")
            continue
        second = part.sort_values("share", ascending=False).iloc[1] if len(part) > 1 else None
        overlap = second is not None and second["ci_high"] >= best["ci_low"]
        agree = part.sort_values("energy_share", ascending=False).iloc[0]["source"] == best["source"]
        text = (f"{g}'s figurines (n = {n}) sit closest to {quote(best['source'])} ones in the {embedding}: "
                f"{best['share']:.2f} [{best['ci_low']:.2f}, {best['ci_high']:.2f}]")
        if overlap:
            text += f", not clearly ahead of {quote(second['source'])} ({second['share']:.2f})"
        text += "; the energy distance agrees." if agree else "; the energy distance points elsewhere, so read this with care."
        lines.append(text)
    return lines


def for_run(run_dir, k: int = 10, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    """Influence tables of a run in the AAE latent, the UMAP baseline and the 50-D PCA space."""
    from .embed import spaces

    enc, embeddings = spaces(run_dir)
    return {name: estimate(e, enc["culture"], enc["site"], k, n_boot) for name, e in embeddings.items()}
