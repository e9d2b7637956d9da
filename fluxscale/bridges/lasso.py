"""Lasso bridge models: a region's monthly NEE integral from a few pixels (paper §3.3.1,
Eq. 1 and 3, Fig. B2).

For a region r with prior monthly NEE x_tp (gC m-2 d-1) at its candidate pixels p and
the prior's regional integral y_t (PgC month-1, :mod:`fluxscale.bridges.integrals`), the bridge
is the Lasso fit

    y_t ≈ b_r + Σ_p β_p x_tp,   minimising (1/2T) Σ_t (y_t − b_r − Σ_p β_p x_tp)² + α Σ_p |β_p|

(scikit-learn's scaling of Eq. 3). Alpha walks down a geometric path from alpha_max (all
β = 0) and stops at the first alpha whose training R² reaches the threshold (0.95);
the pixels with β ≠ 0 are the *contributing* pixels. Each step starts from the previous
solution (warm start, scikit-learn's ``lasso_path`` with ``coef_init``). The fit is
checked by k-fold cross-validation whose folds are contiguous blocks of months, not
shuffled months: monthly NEE is autocorrelated and seasonal, so a shuffled test month
has its neighbours in the training set and the score would overstate how well the
bridge generalises to other years.

This module holds the kernels (numpy / scikit-learn, no Dask or I/O); the stage that
runs them on a dataset is :mod:`fluxscale.bridges.build`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["BridgeFit", "fit_bridge", "cv_r2", "r2_score", "predict_bridge"]


@dataclass(frozen=True)
class BridgeFit:
    """One fitted bridge over a set of candidate pixels.

    ``pixels`` index the candidates (columns of X) with β ≠ 0; ``weights`` their β in
    PgC month-1 per (gC m-2 d-1); ``bias`` PgC month-1; ``alpha`` in the units of the
    objective above; ``alpha_ratio`` = alpha / alpha_max; ``met`` whether the training
    R² reached the threshold (else the end of the path is kept).
    """

    pixels: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float
    alpha_ratio: float
    r2_train: float
    met: bool


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (computed here: dask-ml's
    r2 scoring is broken with current Dask)."""
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 else float("nan")


def predict_bridge(x: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """Eq. 7: the regional integral from the contributing pixels' monthly NEE
    ``x`` (months, pixels) → (months,)."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(weights, dtype=np.float64) + bias


def fit_bridge(x: np.ndarray, y: np.ndarray, *, r2_threshold: float = 0.95, n_alphas: int = 60,
               alpha_min_ratio: float = 1e-4, chunk: int = 8) -> BridgeFit:
    """Lower alpha along a warm-started Lasso path until the training R² ≥ ``r2_threshold``.

    Parameters
    ----------
    x : (months, candidates) array
        Monthly NEE of the candidate pixels, gC m-2 d-1.
    y : (months,) array
        The regional integral, PgC month-1.
    chunk : int
        Alphas solved per ``lasso_path`` call before the R² is checked (the path stops
        early; the solution carries over as ``coef_init``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = x.shape
    xm, ym = x.mean(axis=0), y.mean()
    xc, yc = x - xm, y - ym
    # One scalar scale for all pixels (not per-pixel standardisation): the L1 penalty then
    # treats every pixel alike in the units of Eq. 3, and the solver sees O(1) numbers.
    sx, sy = float(xc.std()), float(yc.std())
    if sy == 0 or sx == 0:
        raise ValueError("bridge target or candidate pixels are constant in time; no regression possible")
    xs, ys = xc / sx, yc / sy
    gram = xs.T @ xs
    xy = xs.T @ ys
    amax = float(np.abs(xy).max()) / n
    alphas = amax * np.geomspace(1.0, alpha_min_ratio, n_alphas)
    ss_tot = float(ys @ ys)
    coef = np.zeros(p)
    best = (0, coef, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for s in range(1, n_alphas, chunk):
            a = alphas[s:s + chunk]
            _, coefs, _ = lasso_path(xs, ys, alphas=a, precompute=gram, Xy=xy, coef_init=coef, max_iter=5000, tol=1e-6)
            res = ys[:, None] - xs @ coefs
            r2 = 1.0 - np.einsum("ij,ij->j", res, res) / ss_tot
            hit = np.flatnonzero(r2 >= r2_threshold)
            k = int(hit[0]) if hit.size else a.size - 1
            coef = coefs[:, -1]
            best = (s + k, coefs[:, k], float(r2[k]))
            if hit.size:
                break
    i, c, r2 = best
    beta = c * sy / sx
    nz = np.flatnonzero(beta)
    return BridgeFit(pixels=nz, weights=beta[nz], bias=float(ym - xm[nz] @ beta[nz]), alpha=float(alphas[i] * sx * sy),
                     alpha_ratio=float(alphas[i] / amax), r2_train=r2, met=bool(r2 >= r2_threshold))


def cv_r2(x: np.ndarray, y: np.ndarray, alpha: float, folds: int = 5) -> float:
    """k-fold CV R² of the Lasso at a fixed ``alpha`` (units of :func:`fit_bridge`).

    Folds are contiguous blocks of months (``KFold(shuffle=False)``); the R² pools the
    out-of-fold predictions of all folds.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso
    from sklearn.model_selection import KFold

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    pred = np.empty_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in KFold(n_splits=folds, shuffle=False).split(x):
            m = Lasso(alpha=alpha, max_iter=20000, tol=1e-6).fit(x[train], y[train])
            pred[test] = m.predict(x[test])
    return r2_score(y, pred)
