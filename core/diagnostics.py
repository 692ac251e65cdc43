"""Numbers that say whether a latent space can be trusted: prior match and culture separation."""
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

    The same folds for every embedding given the same labels, so AAE and UMAP compare fairly.
    """
    y = np.asarray(labels)
    _, counts = np.unique(y, return_counts=True)
    folds = int(min(folds, counts.min()))
    if folds < 2:
        raise ValueError("every culture needs at least two images for a cross-validated accuracy")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(KNeighborsClassifier(min(k, len(y) - len(y) // folds - 1)), emb, y, cv=cv)
    return float(balanced_accuracy_score(y, pred))
