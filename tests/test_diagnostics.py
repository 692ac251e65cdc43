import numpy as np
import pytest

from core.diagnostics import expected_within_sd, knn_accuracy, within_sd


def test_within_sd_of_a_matched_prior():
    z = np.random.default_rng(0).normal(0, 5, (20000, 2))
    got = within_sd(z, 5)
    for k, expected in {1: 0.393, 2: 0.865, 3: 0.989}.items():
        assert got[k] == pytest.approx(expected, abs=0.01)
        assert expected_within_sd(k) == pytest.approx(expected, abs=0.001)
    assert within_sd(z * 400, 5)[3] < 0.05  # the reference study's drift to +-2000


def test_knn_accuracy_separated_and_mixed():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [300, 60, 20])
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    assert knn_accuracy(centres[y] + rng.normal(0, 1, (len(y), 2)), y) > 0.95
    assert knn_accuracy(rng.normal(0, 1, (len(y), 2)), y) < 0.5


def test_a_culture_of_one_image_leaves_the_checks_working():
    from core.diagnostics import embedding_quality

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "lonely"], [40, 30, 1])
    emb = rng.normal(0, 1, (len(y), 2)) + (y == "b")[:, None] * 8
    assert knn_accuracy(emb, y) > 0.9  # measured on the cultures that can be cross-validated
    q = embedding_quality(emb, rng.normal(0, 1, (len(y), 20)), y)
    assert np.isfinite(list(q.values())).all()
    assert np.isnan(knn_accuracy(emb[:41], y[:41]))  # one culture left: nothing to separate
    assert np.isnan(embedding_quality(emb[:40], emb[:40], y[:40])["silhouette"])


def test_few_measured_figurines_get_fewer_neighbours_not_an_error():
    """A guided local run on a small collection measures only a handful of unseen source figurines."""
    from core.diagnostics import embedding_quality

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], [10, 9])
    emb = rng.normal(0, 1, (19, 2)) + (y == "b")[:, None] * 8
    assert 0 <= embedding_quality(emb, np.hstack([emb, rng.normal(0, 0.1, (19, 8))]), y)["trustworthiness"] <= 1
    assert np.isnan(embedding_quality(emb[:2], emb[:2], y[[0, 10]])["trustworthiness"])


def test_code_spread_is_one_for_the_prior_and_near_zero_for_a_collapsed_map():
    from core.diagnostics import COLLAPSED, code_spread

    rng = np.random.default_rng(0)
    assert abs(code_spread(rng.normal(0, 5, (2000, 2)), 5.0) - 1) < 0.05
    assert code_spread(rng.normal(3, 0.05, (2000, 2)), 5.0) < COLLAPSED  # every code near one point
    line = np.c_[np.linspace(-5, 5, 100), np.zeros(100)]
    assert code_spread(line, 5.0) == 0 and code_spread(line[:1], 5.0) == 0
