import numpy as np
import pytest
from sklearn.linear_model import Lasso

from fluxscale.bridges.lasso import cv_r2, fit_bridge, predict_bridge, r2_score


def _problem(seed=0, months=204, p=60, k=6, noise=0.02):
    rng = np.random.default_rng(seed)
    t = np.arange(months)
    phase = rng.uniform(0, 2 * np.pi, p)
    x = (rng.uniform(0.5, 3, p) * np.sin(2 * np.pi * t[:, None] / 12 + phase)
         + rng.normal(0, 0.3, (months, p)).cumsum(0) * 0.1)
    support = np.sort(rng.choice(p, k, replace=False))
    beta = np.zeros(p)
    beta[support] = rng.uniform(1e-3, 5e-3, k)
    y = x @ beta + 0.05 + rng.normal(0, noise * np.std(x @ beta), months)
    return x, y, support


def test_fit_reaches_threshold_and_matches_sklearn_at_its_alpha():
    x, y, _ = _problem()
    fit = fit_bridge(x, y, r2_threshold=0.95)
    assert fit.met and fit.r2_train >= 0.95
    pred = predict_bridge(x[:, fit.pixels], fit.weights, fit.bias)
    assert r2_score(y, pred) == pytest.approx(fit.r2_train, abs=1e-9)
    # The reported alpha is in scikit-learn's units on the original data: an independent
    # cold fit at that alpha gives the same weights.
    ref = Lasso(alpha=fit.alpha, max_iter=100000, tol=1e-10).fit(x, y)
    np.testing.assert_allclose(ref.coef_[fit.pixels], fit.weights, rtol=1e-3, atol=1e-7)
    assert np.count_nonzero(np.delete(ref.coef_, fit.pixels)) == 0
    assert ref.intercept_ == pytest.approx(fit.bias, rel=1e-3, abs=1e-6)


def test_alpha_is_the_first_on_the_path_that_reaches_the_threshold():
    x, y, _ = _problem(seed=3)
    fit = fit_bridge(x, y, r2_threshold=0.95, n_alphas=40)
    step = 1e-4 ** (1 / 39)
    prev = Lasso(alpha=fit.alpha / step, max_iter=100000, tol=1e-10).fit(x, y)
    assert r2_score(y, prev.predict(x)) < 0.95 <= fit.r2_train
    # A stricter threshold needs more pixels and a smaller alpha.
    strict = fit_bridge(x, y, r2_threshold=0.99, n_alphas=40)
    assert strict.alpha < fit.alpha and strict.pixels.size >= fit.pixels.size


def test_unreachable_threshold_keeps_the_end_of_the_path():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5))
    y = rng.normal(size=120)  # unrelated to x
    fit = fit_bridge(x, y, r2_threshold=0.95, n_alphas=20)
    assert not fit.met and fit.r2_train < 0.95
    assert fit.alpha_ratio == pytest.approx(1e-4)


def test_constant_target_is_refused():
    x, _, _ = _problem()
    with pytest.raises(ValueError, match="constant"):
        fit_bridge(x, np.ones(x.shape[0]))


def test_cv_uses_contiguous_blocks():
    x, y, _ = _problem(seed=5)
    alpha = fit_bridge(x, y).alpha
    pred = np.empty_like(y)
    for test in np.array_split(np.arange(y.size), 5):
        train = np.setdiff1d(np.arange(y.size), test)
        pred[test] = Lasso(alpha=alpha, max_iter=20000, tol=1e-6).fit(x[train], y[train]).predict(x[test])
    expect = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert cv_r2(x, y, alpha, 5) == pytest.approx(expect, abs=1e-9)
