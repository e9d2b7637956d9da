"""Skill metrics of the evaluation (paper §4), on xarray objects.

Every function takes DataArrays (or Datasets) ``sim`` and ``ref`` that broadcast against
each other, reduces along ``dim`` and returns a DataArray with ``dim`` removed. Pairs where
either value is NaN are skipped; a result with fewer than two valid pairs (one for
:func:`rmse`) is NaN. Dask-backed input stays lazy.

With ``s_i``, ``r_i`` the valid pairs, ``n`` their number and bars their means:

* :func:`pearson`: ``R = Σ (s_i − s̄)(r_i − r̄) / sqrt(Σ (s_i − s̄)² Σ (r_i − r̄)²)``;
* :func:`rmse`: ``sqrt(Σ (s_i − r_i)² / n)``;
* :func:`nse` (Nash–Sutcliffe efficiency): ``1 − Σ (s_i − r_i)² / Σ (r_i − r̄)²``, in
  (−∞, 1]; 1 is perfect, 0 is no better than the reference's own mean;
* :func:`nnse` (normalised NSE): ``1 / (2 − NSE)``, in (0, 1]; 0.5 ⇔ NSE = 0;
* :func:`mean_seasonal_cycle`: the mean of each calendar month over the years,
  ``MSC_m = mean{x_t : month(t) = m}``, along a new ``month`` dim (1–12);
* :func:`iav` (interannual variability): the standard deviation (``ddof=1``) of the
  residuals of a least-squares line through the annual values ``a_y`` against the year,
  ``sd(a_y − (α + β y))``. ``dim`` holds one value per year (use :func:`annual` first for
  monthly or daily series).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["pearson", "rmse", "bias", "nse", "nnse", "mean_seasonal_cycle", "iav", "annual"]


def _pairs(sim: xr.DataArray, ref: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    sim, ref = xr.broadcast(sim, ref)
    ok = sim.notnull() & ref.notnull()
    return sim.where(ok), ref.where(ok)


def _enough(out: xr.DataArray, s: xr.DataArray, dim: str, least: int) -> xr.DataArray:
    return out.where(s.notnull().sum(dim) >= least)


def pearson(sim: xr.DataArray, ref: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Pearson's correlation coefficient along ``dim`` (formula in the module docstring)."""
    s, r = _pairs(sim, ref)
    ds, dr = s - s.mean(dim), r - r.mean(dim)
    out = (ds * dr).sum(dim) / np.sqrt((ds ** 2).sum(dim) * (dr ** 2).sum(dim))
    return _enough(out, s, dim, 2).rename("pearson_r")


def rmse(sim: xr.DataArray, ref: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Root-mean-square error along ``dim``, in the units of the inputs."""
    s, r = _pairs(sim, ref)
    return _enough(np.sqrt(((s - r) ** 2).mean(dim)), s, dim, 1).rename("rmse")


def bias(sim: xr.DataArray, ref: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Mean error ``sim − ref`` along ``dim`` over the pairs where both are valid."""
    s, r = _pairs(sim, ref)
    return _enough((s - r).mean(dim), s, dim, 1).rename("bias")


def nse(sim: xr.DataArray, ref: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Nash–Sutcliffe efficiency of ``sim`` against ``ref`` along ``dim``."""
    s, r = _pairs(sim, ref)
    out = 1 - ((s - r) ** 2).sum(dim) / ((r - r.mean(dim)) ** 2).sum(dim)
    return _enough(out, s, dim, 2).rename("nse")


def nnse(sim: xr.DataArray, ref: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Normalised Nash–Sutcliffe efficiency ``1 / (2 − NSE)``, in (0, 1]."""
    return (1 / (2 - nse(sim, ref, dim))).rename("nnse")


def mean_seasonal_cycle(x: xr.DataArray, dim: str = "time") -> xr.DataArray:
    """Mean of each calendar month over the years: ``dim`` (datetimes) → ``month`` (1–12),
    NaN skipped. Units unchanged (e.g. PgC month-1 for monthly integrals)."""
    out = x.groupby(x[dim].dt.month).mean(dim)
    return out.rename(x.name) if x.name else out


def annual(x: xr.DataArray, dim: str = "time", how: str = "sum") -> xr.DataArray:
    """Calendar-year ``sum`` (e.g. PgC month-1 → PgC yr-1) or ``mean`` along ``dim`` →
    ``year``; a year with any NaN gives NaN (an incomplete year is not a year's total)."""
    g = x.groupby(x[dim].dt.year)
    out = g.sum(dim, skipna=False) if how == "sum" else g.mean(dim, skipna=False)
    return out


def iav(x: xr.DataArray, dim: str = "year") -> xr.DataArray:
    """Interannual variability: the standard deviation (ddof=1) of the linearly detrended
    annual values along ``dim`` (one value per year; the years are the regressor when
    ``dim`` has integer or datetime coordinates, else the positions). NaN years skipped;
    fewer than three valid years gives NaN."""
    if dim in x.coords and np.issubdtype(x[dim].dtype, np.datetime64):
        t = xr.DataArray(x[dim].dt.year.values.astype(np.float64), dims=dim)
    elif dim in x.coords and np.issubdtype(x[dim].dtype, np.number):
        t = xr.DataArray(x[dim].values.astype(np.float64), dims=dim)
    else:
        t = xr.DataArray(np.arange(x.sizes[dim], dtype=np.float64), dims=dim)
    ok = x.notnull()
    tt = t.where(ok)
    xv = x.where(ok)
    dt = tt - tt.mean(dim)
    beta = (dt * (xv - xv.mean(dim))).sum(dim) / (dt ** 2).sum(dim)
    resid = xv - xv.mean(dim) - beta * dt
    n = ok.sum(dim)
    out = np.sqrt((resid ** 2).sum(dim) / (n - 1))
    return out.where(n >= 3).rename("iav")
