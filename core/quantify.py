"""Source shares of groups of figurines: quantification under label shift, with honest uncertainty.

Counting the nearest source figurines shrinks every group toward equal shares wherever the sources
overlap. Here a calibrated classifier fitted to the source figurines (logistic regression; on cubic
features in spaces of up to 3 dimensions, so that the AAE latent's curved class borders are followed)
gives each figurine's posterior over the sources, and EM re-estimates each group's source shares from
those posteriors (Saerens, Latinne and Decaestecker 2002), which corrects for the sources' sizes and
for the classifier's own confusion between them. Chosen by measurement: k-NN posteriors, less well
calibrated, gave the same errors but intervals that held the answer 72% of the time instead of 92%.

Intervals resample the source figurines (within each culture) and the group's figurines, and refit the
classifier and EM in every resample. Four checks say when a number should not be read, or how far:
- `conditioning`: the smallest singular value of the classifier's cross-validated confusion matrix
  (1: sources told apart perfectly, 0: two sources the method cannot tell apart);
- `self_check`: groups of known mixtures built from held-out source figurines, estimated the same way:
  the error and interval coverage on the user's own photographs;
- `domain_shift`: how well a classifier tells the group from the sources re-weighted to its estimated
  mixture, in the source classifier's log-odds (AUC 0.5: the group looks like a mixture of the sources;
  near 1: it sits apart from them all, so shares read in this representation are not influence), and
  `shift_null`: the same measured on source figurines against source figurines, whose upper quantile is
  the threshold for a chosen false-alarm rate;
- `shifted_check`: the self-check's mixtures moved as far from the sources as the group sits, in
  directions that would bias them: how far off that makes the shares, and how much wider the intervals
  must be to hold their answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

# The classifiers here are small: BLAS threads that wait on each other made them several times slower.
one_thread = threadpool_limits.wrap(limits=1)


def em_shares(post: np.ndarray, prior: np.ndarray, iters: int = 500, tol: float = 1e-6) -> np.ndarray:
    """EM re-estimation of class shares from posteriors under `prior` (Saerens et al. 2002).

    `post` (..., n, k) posteriors, `prior` (..., k) the training class shares; batched over leading axes.
    """
    prior = np.broadcast_to(np.maximum(prior, 1e-12), post.shape[:-2] + post.shape[-1:])
    lead = post.shape[:-2]
    post, prior = post.reshape(-1, *post.shape[-2:]), prior.reshape(-1, post.shape[-1])
    w = prior.copy()
    active = np.arange(len(w))  # batches still moving: the others are left alone
    for _ in range(iters):
        p = post[active] * (w[active] / prior[active])[:, None, :]
        p /= np.maximum(p.sum(-1, keepdims=True), 1e-300)
        new = p.mean(-2)
        moving = np.abs(new - w[active]).max(-1) >= tol
        w[active] = new
        active = active[moving]
        if not len(active):
            break
    return w.reshape(*lead, -1)


def _features(degree: int, dim: int):
    """The classifier's inputs: standardised, with polynomial terms of `degree` where the space has at most 3
    dimensions (a 2-D map's cultures need not be linearly separable)."""
    if degree > 1 and dim <= 3:
        return make_pipeline(StandardScaler(), PolynomialFeatures(degree, include_bias=False), StandardScaler())
    return StandardScaler()


def _fit(F: np.ndarray, y: np.ndarray, start: tuple[np.ndarray, np.ndarray] | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of an L2-regularised (C = 1) logistic regression, warm-started from `start`."""
    m = LogisticRegression(max_iter=2000, warm_start=start is not None)
    if start is not None:
        m.coef_, m.intercept_ = start[0].copy(), start[1].copy()
    m.fit(F, y)
    return m.coef_, m.intercept_


def _probabilities(F: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Class probabilities (..., n, k) of linear models; `coef` (..., k or 1, features) as scikit-learn's."""
    z = np.einsum("nf,...kf->...nk", F, coef) + intercept[..., None, :]
    if coef.shape[-2] == 1:  # two classes: one logit
        z = np.concatenate([np.zeros_like(z), z], -1)
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@dataclass
class ShareEstimator:
    """Source shares of groups of figurines, with bootstrap intervals that refit the classifier.

    `fit(X, y)` on the source figurines (features, culture labels); `estimate(X, groups)` for query
    figurines and named index arrays into them.
    """

    degree: int = 3
    n_boot: int = 200
    level: float = 0.95
    seed: int = 0

    @one_thread
    def fit(self, X: np.ndarray, y) -> "ShareEstimator":
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.X_ = np.asarray(X, np.float64)
        self.y_ = np.searchsorted(self.classes_, y)
        k = len(self.classes_)
        counts = np.bincount(self.y_, minlength=k)
        self.prior_ = counts / counts.sum()
        self.features_ = _features(self.degree, self.X_.shape[1]).fit(self.X_)
        self.F_ = self.features_.transform(self.X_)
        self.model_ = _fit(self.F_, self.y_)
        folds = int(min(5, counts.min()))
        self.fold_models_, self.cv_post_ = [self.model_], None
        if folds >= 2:  # out-of-fold posteriors: the sources as the classifier sees figurines it was not fitted to
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            self.cv_post_, self.fold_models_ = np.zeros((len(self.y_), k)), []
            for tr, te in cv.split(self.F_, self.y_):
                m = _fit(self.F_[tr], self.y_[tr], self.model_)
                self.fold_models_.append(m)
                self.cv_post_[te] = _probabilities(self.F_[te], *m)
            self.confusion_ = np.stack([self.cv_post_[self.y_ == j].mean(0) for j in range(k)], 1)  # [i, j] = P(i | j)
        else:
            self.confusion_ = np.full((k, k), 1 / k)
        self.conditioning_ = float(np.linalg.svd(self.confusion_, compute_uv=False).min())
        return self

    def posteriors(self, X: np.ndarray) -> np.ndarray:
        """The classifier's posteriors over the sources (n, k)."""
        return _probabilities(self.features_.transform(np.asarray(X, np.float64)), *self.model_)

    def source_posteriors(self) -> np.ndarray:
        """The source figurines' posteriors, each from a classifier not fitted to it where there are folds."""
        return self.cv_post_ if self.cv_post_ is not None else _probabilities(self.F_, *self.model_)

    def held_out_posteriors(self, X: np.ndarray) -> np.ndarray:
        """Posteriors of other figurines on the same footing as `source_posteriors`: each from one of the fold
        classifiers (fitted to as many sources), in turn."""
        F = self.features_.transform(np.asarray(X, np.float64))
        out = np.zeros((len(F), len(self.classes_)))
        turn = np.arange(len(F)) % len(self.fold_models_)
        for f, m in enumerate(self.fold_models_):
            if (turn == f).any():
                out[turn == f] = _probabilities(F[turn == f], *m)
        return out

    @one_thread
    def _resampled_models(self) -> tuple[np.ndarray, np.ndarray]:
        """Classifiers refitted to `n_boot` resamples of the sources (within each culture: the sizes, and so the
        prior, stay), each started from the full fit: stacked (coef, intercept)."""
        if not hasattr(self, "boot_models_"):
            rng = np.random.default_rng([self.seed, 1])
            by_class = [np.flatnonzero(self.y_ == j) for j in range(len(self.classes_))]
            fits = []
            for _ in range(self.n_boot):
                idx = np.concatenate([rng.choice(ix, len(ix)) for ix in by_class])
                fits.append(_fit(self.F_[idx], self.y_[idx], self.model_))
            self.boot_models_ = tuple(np.stack(a) for a in zip(*fits))
        return self.boot_models_

    def estimate(self, X: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, dict]:
        """Per group: `shares` (k,), `low`, `high` (the interval), `n`, and the bootstrap draws."""
        F = self.features_.transform(np.asarray(X, np.float64))
        full = _probabilities(F, *self.model_)
        boot_post = _probabilities(F, *self._resampled_models())  # (n_boot, n, k)
        rng = np.random.default_rng([self.seed, 2])
        alpha = (1 - self.level) / 2
        out = {}
        for name, idx in groups.items():
            idx = np.asarray(idx)
            if len(idx) == 0:
                continue
            shares = em_shares(full[idx], self.prior_)
            pick = idx[rng.integers(0, len(idx), (self.n_boot, len(idx)))]  # (n_boot, n)
            draws = em_shares(np.take_along_axis(boot_post, pick[..., None], axis=1), self.prior_)
            low, high = np.quantile(draws, [alpha, 1 - alpha], axis=0)
            out[name] = {"n": len(idx), "shares": shares, "low": np.minimum(low, shares),
                         "high": np.maximum(high, shares), "draws": draws}
        return out


def mixture_groups(pools: list[np.ndarray], sizes: list[int], n_groups: int, rng: np.random.Generator
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of known mixtures: (indices, mixing weights) drawn from per-class index pools.

    Mixing weights are uniform on the simplex; each group's figurines are drawn with those weights (as a site's
    would be), without replacement while a pool lasts and with replacement beyond it, so that a group's make-up
    is never bent to fit what is left.
    """
    k = len(pools)
    out = []
    for g in range(n_groups):
        w = rng.dirichlet(np.ones(k))
        counts = rng.multinomial(int(sizes[g % len(sizes)]), w)
        idx = [rng.choice(p, c, replace=c > len(p)) for p, c in zip(pools, counts) if c and len(p)]
        out.append((np.concatenate(idx), w))
    return out


@one_thread
def self_check(X: np.ndarray, y, sizes: list[int], estimator: ShareEstimator, n_groups: int = 24,
               folds: int = 4, shift_auc: float | None = None, directions: int = 8) -> dict:
    """How far off the estimator is, and how often its intervals hold the answer, on known mixtures.

    Cross-fitted: each of `folds` folds holds out its share of every source culture, the estimator is fitted
    to the rest (so to nearly as many figurines as the reading itself), and groups of known mixtures (sizes
    cycling through `sizes`) drawn from the held-out figurines are estimated as the sites are; `n_groups` in
    all. The error comes with its standard error over the groups. With `shift_auc` (the target figurines'
    domain shift), also `shift`: the same groups moved as far from the sources (`shifted_check`), and the
    widening of the intervals that holds their answer.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 3:
        return {"error": f"too few figurines of {classes[counts.argmin()]} to hold some out"}
    folds = int(min(folds, counts.min()))
    rng = np.random.default_rng([estimator.seed, 3])
    err, inside, width, moved = [], [], [], []
    split = StratifiedKFold(folds, shuffle=True, random_state=estimator.seed).split(X, y)
    for f, (ref, pool) in enumerate(split):
        # each fold's intervals from half the resamples, at least 100: else the reading's time is spent five times
        est = ShareEstimator(estimator.degree, min(estimator.n_boot, max(100, estimator.n_boot // 2)),
                             estimator.level, estimator.seed).fit(X[ref], y[ref])
        pools = [np.flatnonzero(y[pool] == c) for c in classes]
        groups = mixture_groups(pools, sizes, n_groups // folds + (f < n_groups % folds), rng)
        res = est.estimate(X[pool], {str(g): ix for g, (ix, _) in enumerate(groups)})
        for g, (ix, w) in enumerate(groups):
            r = res[str(g)]
            err.append(np.abs(r["shares"] - w))
            inside.append((r["low"] <= w) & (w <= r["high"]))
            width.append(r["high"] - r["low"])
        if shift_auc is not None:
            moved.append(shifted_check(est, X[pool], groups, shift_auc, rng, max(1, directions // folds)))
    err, inside = np.array(err), np.array(inside)
    out = {"mae": float(err.mean()), "mae_se": float(err.mean(1).std(ddof=1) / np.sqrt(len(err))) if len(err) > 1
           else float("nan"), "coverage": float(inside.mean()),
           "coverage_se": float(np.sqrt(inside.mean() * (1 - inside.mean()) / inside.size)),
           "width": float(np.mean(width)),
           "groups": len(err), "folds": folds, "holdout": 1 / folds, "sources": classes.tolist(),
           "mae_per_source": err.mean(0).tolist(), "coverage_per_source": inside.mean(0).tolist()}
    if moved:
        out["shift"] = _allowance(moved, estimator.level)
    return out


def _discriminant_directions(X: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` random unit directions (rows) in the span that separates the classes, measured in within-class sd.

    Whitened by the pooled within-class covariance, the class means span a (k - 1)-D subspace; a shift
    there moves figurines between the classes, a shift outside it leaves the estimate alone.
    """
    classes = np.unique(y)
    resid = np.concatenate([X[y == c] - X[y == c].mean(0) for c in classes])
    cov = np.atleast_2d(np.cov(resid.T)) + 1e-9 * np.eye(X.shape[1])
    chol = np.linalg.cholesky(cov)
    means = np.array([X[y == c].mean(0) for c in classes])
    basis, _ = np.linalg.qr(np.linalg.solve(chol, (means - means.mean(0)).T))
    basis = basis[:, :max(1, min(len(classes) - 1, X.shape[1]))]
    u = rng.standard_normal((n, basis.shape[1])) @ basis.T
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u @ chol.T


def shifted_check(est: ShareEstimator, X_pool: np.ndarray,
                  groups: list[tuple[np.ndarray, np.ndarray]], auc: float, rng: np.random.Generator,
                  directions: int = 2) -> dict:
    """Known mixtures moved as far from the sources as the target figurines sit, in what the estimator sees.

    The sampling intervals ignore that the target figurines differ from the sources (local clay and
    making): `domain_shift` measures how far (`auc`), in the classifier's log-odds, not in which direction.
    Here held-out source figurines are translated along random directions that separate the sources (the
    only moves that show in the log-odds) by the distance at which they are told from the sources with that
    AUC, measured as for the targets; their groups of known mixtures are estimated as the sites are. Where
    the held-out figurines, unmoved, are already told apart as well as the targets, nothing is moved.
    Returns the moved groups' estimates (`_allowance` turns them into the widening).
    """
    classes = est.classes_
    d = _discriminant_directions(est.X_, classes[est.y_], directions, rng)

    def apart(distance: float) -> float:
        """The domain shift of the held-out figurines moved this far, measured as the targets' is: against the
        sources weighted to the mixture EM reads in them (which absorbs whatever part of the move looks
        like another mixture)."""
        aucs = []
        for v in d[:2]:
            moved = X_pool + distance * v
            aucs.append(domain_shift(est, moved, em_shares(est.held_out_posteriors(moved), est.prior_)))
        return float(np.mean(aucs))

    distance, a_lo = 0.0, apart(0.0)  # in within-culture sd: doubled until the move is seen as well as the
    if auc > a_lo:                     # targets, then interpolated
        lo, hi, a_hi = 0.0, 0.25, apart(0.25)
        while a_hi < auc and hi < 8:
            lo, hi, a_lo = hi, hi * 2, a_hi
            a_hi = apart(hi)
        distance = hi if a_hi <= auc else lo + (hi - lo) * (auc - a_lo) / max(a_hi - a_lo, 1e-9)
    named = {str(g): ix for g, (ix, _) in enumerate(groups)}
    res = [est.estimate(X_pool + distance * v, named) for v in d]
    return {"auc": float(auc), "distance": float(distance), "truth": np.array([[w for _, w in groups]] * len(d)),
            **{f: np.array([[r[g][f] for g in named] for r in res]) for f in ("shares", "low", "high")}}


def _allowance(moved: list[dict], level: float) -> dict:
    """The smallest widening of the intervals (both sides, in steps of 0.01) that holds the moved groups' known
    shares `level` of the time in every direction tried: whichever way the targets' difference goes. A
    sensitivity analysis, not a correction."""
    rows = [(m["truth"][i], m["shares"][i], m["low"][i], m["high"][i]) for m in moved for i in range(len(m["truth"]))]
    miss = [np.maximum(np.maximum(lo - t, t - hi), 0).ravel() for t, _, lo, hi in rows]  # per direction tried
    allowance = float(np.ceil(max(np.quantile(m, level) for m in miss) * 100) / 100)
    truth, shares, low, high = (np.concatenate([r[i].ravel() for r in rows]) for i in range(4))
    held = (low - allowance <= truth + 1e-9) & (truth <= high + allowance + 1e-9)
    per_group = np.concatenate([np.abs(r[1] - r[0]).mean(-1).ravel() for r in rows])
    return {"auc": moved[0]["auc"], "distance": float(np.mean([m["distance"] for m in moved])),
            "mae": float(per_group.mean()), "mae_se": float(per_group.std(ddof=1) / np.sqrt(len(per_group))),
            "coverage": float(((low <= truth) & (truth <= high)).mean()),
            "allowance": allowance, "coverage_widened": float(held.mean()),
            "groups": sum(len(r[0]) for r in rows)}


def log_odds(post: np.ndarray) -> np.ndarray:
    """Posteriors (n, k) as the k - 1 log-odds against the last class: all that EM reads of a figurine."""
    p = np.clip(post, 1e-6, 1)
    return np.log(p[:, :-1]) - np.log(p[:, -1:])


def _shift_auc(z_src: np.ndarray, y_src: np.ndarray, z_group: np.ndarray, shares: np.ndarray, seed: int) -> float:
    """Cross-validated AUC of a regularised classifier (logistic regression, C = 1, on cubic features) telling
    the group's log-odds from the sources' weighted to the group's mixture. Cubic rather than quadratic:
    measured, it catches a 1-sd move along what tells the sources apart 3 times in 3 instead of 1."""
    sizes = np.bincount(y_src, minlength=len(shares)).astype(float)
    w_src = np.asarray(shares)[y_src] / np.maximum(sizes[y_src], 1)
    w_src *= len(z_group) / max(w_src.sum(), 1e-12)  # both sides weigh the same
    Z = np.concatenate([z_src, z_group])
    d = np.r_[np.zeros(len(z_src)), np.ones(len(z_group))]
    w = np.r_[w_src, np.ones(len(z_group))]
    folds = int(min(5, len(z_src), len(z_group)))
    if folds < 2:  # too few figurines on one side to tell anything apart
        return 0.5
    cubic = make_pipeline(StandardScaler(), PolynomialFeatures(3, include_bias=False), StandardScaler())
    F = cubic.fit_transform(Z)  # unsupervised: scaled once for every fold
    score = np.zeros(len(Z))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Z, d):
        clf = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=100).fit(F[tr], d[tr], sample_weight=w[tr])
        score[te] = clf.decision_function(F[te])
    return float(roc_auc_score(d, score, sample_weight=w))


def domain_shift(est: ShareEstimator, X_group: np.ndarray, shares: np.ndarray) -> float:
    """How well the group is told from the sources weighted to its estimated mixture, in what the estimator
    sees: the source classifier's log-odds (AUC 0.5: it looks like that mixture of the sources; towards 1: it
    sits apart). A difference across the directions that tell the sources apart (local clay, a shared base)
    leaves the log-odds, and so the shares, alone: it is not counted here."""
    return _shift_auc(log_odds(est.source_posteriors()), est.y_, log_odds(est.held_out_posteriors(X_group)),
                      shares, est.seed)


@one_thread
def shift_null(est: ShareEstimator, n_group: int, shares: np.ndarray, reps: int = 40) -> np.ndarray:
    """`domain_shift` where nothing is apart: groups of source figurines, drawn with the group's mixture from
    one half of each source culture, against the other half. Its upper quantiles are the check's false alarms."""
    rng = np.random.default_rng([est.seed, 4])
    z, post, k = log_odds(est.source_posteriors()), est.source_posteriors(), len(est.classes_)
    shares = np.asarray(shares) / np.sum(shares)
    out = []
    for r in range(reps):
        halves = [np.array_split(rng.permutation(np.flatnonzero(est.y_ == j)), 2) for j in range(k)]
        ref = np.concatenate([b for _, b in halves])
        counts = rng.multinomial(max(2, min(n_group, sum(len(a) for a, _ in halves))), shares)
        group = np.concatenate([rng.choice(a, c) for (a, _), c in zip(halves, counts) if c and len(a)])
        read = em_shares(post[group], est.prior_)
        out.append(_shift_auc(z[ref], est.y_[ref], z[group], read, est.seed + r))
    return np.array(out)
