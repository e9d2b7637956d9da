"""fluxscale.evaluate.metrics against scipy, scikit-learn, pandas and closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import scipy.stats
import xarray as xr
from sklearn.metrics import mean_squared_error, r2_score

from fluxscale.evaluate import metrics


def _pair(seed=0, n=120, k=3, nan=0.1):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(k, n))
    sim = 0.7 * ref + rng.normal(scale=0.5, size=(k, n)) + 0.3
    sim[rng.random((k, n)) < nan] = np.nan
    ref[rng.random((k, n)) < nan] = np.nan
    t = pd.date_range("2001-01-01", periods=n, freq="MS")
    mk = lambda a: xr.DataArray(a, dims=("region", "time"), coords={"time": t, "region": list("abc")[:k]})
    return mk(sim), mk(ref)


def _valid(s, r):
    ok = np.isfinite(s) & np.isfinite(r)
    return s[ok], r[ok]


def test_pearson_rmse_nse_match_scipy_and_sklearn():
    sim, ref = _pair()
    r, e, n, nn = (metrics.pearson(sim, ref), metrics.rmse(sim, ref), metrics.nse(sim, ref), metrics.nnse(sim, ref))
    assert r.dims == ("region",)
    for i in range(3):
        s, o = _valid(sim.values[i], ref.values[i])
        assert r.values[i] == pytest.approx(scipy.stats.pearsonr(s, o).statistic, rel=1e-12)
        assert e.values[i] == pytest.approx(np.sqrt(mean_squared_error(o, s)), rel=1e-12)
        assert n.values[i] == pytest.approx(r2_score(o, s), rel=1e-12)  # NSE = R² with ref as truth
        assert nn.values[i] == pytest.approx(1 / (2 - r2_score(o, s)), rel=1e-12)
        assert metrics.bias(sim, ref).values[i] == pytest.approx(np.mean(s - o), rel=1e-12)


def test_closed_forms():
    t = pd.date_range("2001-01-01", periods=24, freq="MS")
    ref = xr.DataArray(np.sin(np.arange(24.0)), dims="time", coords={"time": t})
    assert float(metrics.nse(ref, ref)) == 1.0 and float(metrics.nnse(ref, ref)) == 1.0
    assert float(metrics.rmse(ref + 2, ref)) == pytest.approx(2.0)
    assert float(metrics.pearson(3 * ref - 1, ref)) == pytest.approx(1.0)
    assert float(metrics.pearson(-ref, ref)) == pytest.approx(-1.0)
    mean = xr.full_like(ref, float(ref.mean()))
    assert float(metrics.nse(mean, ref)) == pytest.approx(0.0, abs=1e-12)  # the reference's own mean
    assert float(metrics.nnse(mean, ref)) == pytest.approx(0.5)
    # too few valid pairs → NaN
    one = ref.where(ref.time == t[0])
    assert np.isnan(float(metrics.pearson(one, ref))) and np.isnan(float(metrics.nse(one, ref)))
    assert float(metrics.rmse(one, ref)) == 0.0


def test_mean_seasonal_cycle_matches_pandas():
    sim, _ = _pair(seed=1, n=60)
    msc = metrics.mean_seasonal_cycle(sim)
    assert msc.dims == ("region", "month") and list(msc.month.values) == list(range(1, 13))
    for i in range(3):
        s = pd.Series(sim.values[i], index=sim.time.to_index())
        np.testing.assert_allclose(msc.values[i], s.groupby(s.index.month).mean().values, rtol=1e-12)


def test_annual_sums_complete_years_only():
    t = pd.date_range("2001-01-01", periods=30, freq="MS")
    x = xr.DataArray(np.arange(30.0), dims="time", coords={"time": t})
    a = metrics.annual(x)
    np.testing.assert_allclose(a.sel(year=[2001, 2002]).values, [np.arange(12).sum(), np.arange(12, 24).sum()])
    x2 = x.where(x.time != t[3])
    assert np.isnan(float(metrics.annual(x2).sel(year=2001)))


def test_iav_matches_scipy_detrend():
    rng = np.random.default_rng(3)
    years = np.arange(2001, 2018)
    v = 0.2 * (years - 2001) + rng.normal(scale=0.4, size=(4, years.size))
    x = xr.DataArray(v, dims=("member", "year"), coords={"year": years})
    got = metrics.iav(x)
    want = np.std(scipy.signal.detrend(v, axis=1), axis=1, ddof=1)
    np.testing.assert_allclose(got.values, want, rtol=1e-10)
    # a pure trend has no IAV; NaN years are skipped
    assert float(metrics.iav(xr.DataArray(3.0 * years - 1, dims="year", coords={"year": years}))) == pytest.approx(0, abs=1e-9)
    w = v[0].copy()
    w[5] = np.nan
    ok = np.isfinite(w)
    d = w[ok] - np.polyval(np.polyfit(years[ok], w[ok], 1), years[ok])
    got = float(metrics.iav(xr.DataArray(w, dims="year", coords={"year": years})))
    assert got == pytest.approx(np.std(d, ddof=1), rel=1e-10)


def test_lazy_input_stays_lazy():
    sim, ref = _pair()
    r = metrics.pearson(sim.chunk(time=40), ref.chunk(time=40))
    assert r.chunks is not None
    np.testing.assert_allclose(r.values, metrics.pearson(sim, ref).values, rtol=1e-12)
