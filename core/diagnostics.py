"""Numbers that say whether a latent space can be trusted: prior match, culture separation, reconstruction."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier


def within_sd(codes: np.ndarray, prior_std: float, ks=(1, 2, 3)) -> dict[int, float]:
    """Share of codes within k prior sds of the origin (2-D Gaussian: 39%, 86%, 99%)."""
    r = np.linalg.norm(codes, axis=1) / prior_std
    return {k: float((r <= k).mean()) for k in ks}


def expected_within_sd(k: float, dim: int = 2) -> float:
    """The share a perfect d-dimensional Gaussian prior puts within radius k sd."""
    from scipy.stats import chi2

    return float(chi2.cdf(k ** 2, dim))


def knn_accuracy(emb: np.ndarray, labels, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """Balanced accuracy of a k-nearest-neighbour culture classifier, by stratified cross-validation.

    The same folds for every embedding given the same labels, so AAE and UMAP compare fairly. A culture of
    one image cannot be cross-validated and is left out; NaN when fewer than two cultures remain.
    """
    y = np.asarray(labels)
    names, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, names[counts >= 2])
    emb, y = np.asarray(emb)[keep], y[keep]
    if (counts >= 2).sum() < 2:
        return float("nan")
    folds = int(min(folds, counts[counts >= 2].min()))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(KNeighborsClassifier(min(k, len(y) - len(y) // folds - 1)), emb, y, cv=cv)
    return float(balanced_accuracy_score(y, pred))


def prior_match(codes: np.ndarray, prior_std: float, seed: int = 0, prior: np.ndarray | None = None) -> dict:
    """How well codes match their prior (draws from it, default N(0, sd^2 I)): radial shares against the
    prior's own, moments, and a classifier two-sample test."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    expected = None if prior is None else within_sd(prior, prior_std)
    prior = rng.normal(0, prior_std, codes.shape) if prior is None else prior[rng.permutation(len(prior))[:len(codes)]]
    x = np.concatenate([codes, prior])
    y = np.r_[np.zeros(len(codes)), np.ones(len(prior))]
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.5, random_state=seed, stratify=y)
    c2st = float(HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(xa, ya).score(xb, yb))
    d = codes.shape[1]
    expected = expected or {k: expected_within_sd(k, d) for k in (1, 2, 3)}
    cov = np.cov(codes.T).reshape(d, d)
    return {"within_sd": within_sd(codes, prior_std), "expected_within_sd": expected,
            "mean": codes.mean(axis=0).tolist(), "cov": cov.tolist(), "prior_var": prior_std ** 2,
            "spread": _spread(cov) / _spread(np.cov(prior.T).reshape(d, d)), "c2st_accuracy": c2st}


def prior_of(codes: np.ndarray, settings) -> dict:
    """`prior_match` of a run's codes against the run's own prior (a mixture prior: its draws, seed 0): the one
    measure that the Train page's snapshots and the Influence page's diagnostics both show."""
    import torch

    from .model import Prior

    draws = None if settings.prior == "gaussian" else \
        Prior(settings).sample(len(codes), torch.Generator().manual_seed(0)).numpy()
    return prior_match(np.asarray(codes, np.float64), settings.prior_std, prior=draws)


COLLAPSED = 0.1  # codes spread over less than this share of the prior's sd: the map has collapsed


def code_spread(codes: np.ndarray, prior_std: float) -> float:
    """How far codes spread, in prior sds (the geometric mean sd of their covariance): about 1 for codes shaped
    like the prior, 0 for codes on one point or one line."""
    codes = np.asarray(codes, np.float64)
    if len(codes) < 2:
        return 0.0
    d = codes.shape[1]
    return _spread(np.cov(codes.T).reshape(d, d)) / prior_std


def _spread(cov: np.ndarray) -> float:
    """The geometric mean sd of a covariance: 0 when the points lie on a line or a point."""
    return float(max(np.linalg.det(cov), 0.0) ** (0.5 / len(cov)))


def embedding_quality(emb: np.ndarray, high: np.ndarray, labels, n: int = 2000, seed: int = 0) -> dict:
    """Balanced 10-NN culture accuracy, trustworthiness (against the 50-D PCA space) and silhouette."""
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    y = np.asarray(labels)
    sub = np.random.default_rng(seed).permutation(len(y))[:n]
    k = min(10, (len(sub) - 1) // 2)  # fewer neighbours where few figurines are measured
    return {"knn_accuracy": knn_accuracy(emb, y),
            "trustworthiness": float(trustworthiness(high[sub], emb[sub], n_neighbors=k)) if k else float("nan"),
            "silhouette": float(silhouette_score(emb, y, sample_size=min(n, len(y)), random_state=seed))
            if 1 < len(np.unique(y)) < len(y) else float("nan")}


COLLAPSED = 0.1  # codes spread less than a tenth of the prior's sd (the geometric mean over the map's directions)


SHAPE_POINTS, C2ST_BAR = 0.10, 0.65  # the prior's bar (issue 25): radial shares within 10 points, a classifier <= 0.65


def shape_gap(prior: dict) -> str | None:
    """How `prior_match`'s codes miss the prior's shape, in words (None: they match it): at least 95% within 3 sd,
    the shares within 1 and 2 sd each within 10 points of the prior's, and a classifier that tells them from its
    draws at most 0.65 of the time. A ring of codes all within 3 sd fails here."""
    w, e = prior["within_sd"], prior["expected_within_sd"]
    if any(abs(w[k] - e[k]) > SHAPE_POINTS for k in (1, 2)) or w[3] < 0.95:
        return (f"{w[1]:.0%} of the codes lie within 1 sd and {w[2]:.0%} within 2, where the prior has "
                f"{e[1]:.0%} and {e[2]:.0%}")
    if prior["c2st_accuracy"] > C2ST_BAR:
        return f"a classifier tells them from the prior's draws {prior['c2st_accuracy']:.0%} of the time"
    return None


def verdict(prior: dict, recon_error: float, aae_acc: float, umap_acc: float, chance: float) -> str:
    """One plain sentence: can distances be read from this run? Separation is judged by how far the 10-NN
    accuracy lies from `chance` to 1."""
    inside3 = prior["within_sd"][3]
    if inside3 < 0.5:
        return "codes lie far outside the prior: do not read distances from this run"
    if prior["spread"] < COLLAPSED:
        return (f"codes have collapsed onto nearly a point or a line (their spread is {prior['spread']:.0%} of "
                "the prior's): do not read distances from this run")
    gap = shape_gap(prior)
    parts = [f"codes do not match the prior's shape ({gap})" if gap else "codes match the prior"]
    parts.append("reconstructions are good" if recon_error < 0.02 else
                 "reconstructions are blurry" if recon_error < 0.06 else "reconstructions are poor")
    lift = (aae_acc - chance) / (1 - chance)
    strength = ("separate well" if lift >= 0.7 else "separate moderately" if lift >= 0.3 else
                "separate weakly" if lift >= 0.1 else "do not separate beyond chance")
    parts.append(f"cultures {strength} (balanced 10-NN accuracy {aae_acc:.2f}, chance {chance:.2f}; "
                 f"UMAP {umap_acc:.2f})"
                 if aae_acc == aae_acc else "culture separation cannot be measured (fewer than two cultures "
                 "with two images or more)")
    return "; ".join(parts)


def for_run(run_dir) -> dict:
    """All diagnostics of a run, with the verdict."""
    from .embed import spaces
    from .influence import seen_by
    from .labels import is_target
    from .runs import Run
    from .settings import Settings

    enc, e = spaces(run_dir)
    config = Run(run_dir).config()
    s = Settings.from_run(config["effective"])
    prior = prior_of(e.get("offset", e["aae"]), s)  # a cluster-head map: the offsets from its heads
    keep = ~seen_by(config, enc)  # a guided run's separation: on figurines whose labels it did not see
    if s.local:  # told which figurines are targets: its separation is read among the sources alone
        keep &= ~is_target(enc)
    y = enc["culture"][keep]
    quality = {n: embedding_quality(e[n][keep], e["pca"][keep], y) for n in ("aae", "umap")}
    recon = float(enc["recon_error"].mean())
    return {"prior": prior, "quality": quality, "recon_error": recon,
            "verdict": verdict(prior, recon, quality["aae"]["knn_accuracy"], quality["umap"]["knn_accuracy"],
                               chance=1 / max(2, y.nunique()))}
