import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.errors import StoreError
from fluxscale.dataset.grid import coarsen_grid, make_grid
from fluxscale.bridges.integrals import (REGION_LABELS, checked, compute_integrals, integrate_cells, integrate_regions,
                                 region_land_area)
from fluxscale.dataset.regions import REGIONS
from fluxscale.dataset.stores import open_store, open_stores

from ..conftest import raise_if_dask_computes


@pytest.fixture(scope="module")
def grid4():
    return make_grid(4.0)


def _np_land_area(grid):
    """Per-region land area in plain numpy (the closed form's A_r)."""
    w = grid.cell_area.values * grid.land_fraction.values.astype(np.float64)
    reg = grid.region.values
    return np.array([w[reg == r.id].sum() for r in REGIONS])


def _const(grid, time, value=1.5):
    data = np.full((time.size, grid.sizes["lat"], grid.sizes["lon"]), value, dtype=np.float32)
    return xr.DataArray(data, dims=("time", "lat", "lon"),
                        coords={"time": time, "lat": grid.lat, "lon": grid.lon},
                        attrs={"units": "gC m-2 d-1"}).chunk({"time": 7, "lat": 20})


def test_constant_field_monthly_is_land_area_times_days(grid4):
    time = pd.date_range("2004-01-01", periods=14, freq="MS")
    out = integrate_regions(_const(grid4, time), grid4).compute()
    area = _np_land_area(grid4)
    expect = 1.5 * area[:, None] * time.days_in_month.values[None, :] / 1e15
    np.testing.assert_allclose(out.values[:-1], expect, rtol=1e-6)
    np.testing.assert_allclose(out.sel(region="GLOBAL").values, expect.sum(0), rtol=1e-6)
    assert list(out.region.values) == list(REGION_LABELS)
    assert out.attrs["units"] == "PgC month-1"
    # Leap February: 29 days.
    assert out.sel(region="GLOBAL", time="2004-02-01").item() == pytest.approx(1.5 * area.sum() * 29 / 1e15, rel=1e-6)


def test_constant_field_daily_sums_days(grid4):
    time = pd.date_range("2003-01-01", "2003-03-31", freq="D")
    out = integrate_regions(_const(grid4, time, 2.0), grid4).compute()
    area = _np_land_area(grid4)
    np.testing.assert_allclose(out.values[:-1], 2.0 * area[:, None] * np.array([31, 28, 31])[None] / 1e15, rtol=1e-6)
    np.testing.assert_allclose(region_land_area(grid4).values[:-1], area, rtol=1e-12)


def test_building_the_graph_computes_nothing(grid4):
    time = pd.date_range("2003-01-01", "2003-02-28", freq="D")
    field = _const(grid4, time)
    with raise_if_dask_computes():
        out = integrate_regions(field, grid4)
    assert out.chunks is not None


def test_prior_integrals_match_numpy(tiny_twin):
    s = open_stores(tiny_twin, names=["grid", "prior"])
    grid = s["grid"].load()
    prior = s["prior"].NEE.load()
    out = integrate_regions(prior, grid).compute()
    w = grid.cell_area.values * grid.land_fraction.values.astype(np.float64)
    days = prior.time.dt.days_in_month.values
    vals = np.nan_to_num(prior.values.astype(np.float64))
    for r in REGIONS:
        m = grid.region.values == r.id
        expect = (vals[:, m] * w[m]).sum(axis=1) * days / 1e15
        np.testing.assert_allclose(out.sel(region=r.abbrev).values, expect, rtol=1e-9, atol=1e-12)


def test_daily_and_monthly_truth_agree_and_match_twin(tiny_twin):
    s = open_stores(tiny_twin, names=["grid", "truth"])
    grid = s["grid"].load()
    daily = integrate_cells(s["truth"].NEE, grid).compute()
    monthly = integrate_cells(s["truth"].NEE_monthly.rename({"month": "time"}), grid).compute()
    np.testing.assert_allclose(daily.values, monthly.values, rtol=1e-5, atol=1e-7)
    annual = monthly.sel(region="GLOBAL").groupby("time.year").sum().values
    np.testing.assert_allclose(annual, s["truth"].NEE_global_annual.values, rtol=1e-6)


def test_fire_adjusted_inversions_match_direct_computation(tiny_twin, tmp_path):
    path = compute_integrals(tiny_twin, out=tmp_path / "integrals.zarr")
    ds = open_store(path, deep=True)
    s = open_stores(tiny_twin, names=["grid", "inversions", "fire"])
    grid = s["grid"].load()
    factor = grid.sizes["lat"] // s["inversions"].sizes["lat"]
    inv_grid = coarsen_grid(grid, factor)
    w = inv_grid.cell_area.values * inv_grid.land_fraction.values.astype(np.float64)
    land_flux = s["inversions"].land_flux.values.astype(np.float64)
    fire = s["fire"].co2fire.values.astype(np.float64)
    days = s["fire"].time.dt.days_in_month.values
    for k, system in enumerate(s["inversions"].system.values):
        adj = np.nan_to_num(land_flux[k] - fire)
        for r in REGIONS:
            m = inv_grid.region.values == r.id
            expect = (adj[:, m] * w[m]).sum(axis=1) * days / 1e15
            np.testing.assert_allclose(ds.inversions.sel(system=system, region=r.abbrev).values, expect,
                                       rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ds.inversions.sel(region="GLOBAL").values,
                               ds.inversions.isel(region=slice(0, 18)).sum("region").values, rtol=1e-12)
    # The fire-adjusted systems bracket the truth within the twin's regional errors.
    truth = ds.truth.sel(region="GLOBAL").groupby("time.year").sum()
    inv = ds.inversions.sel(region="GLOBAL").groupby("time.year").sum()
    assert float(abs(inv.mean("system") - truth).max()) < 2.0


def test_bad_input_is_refused(grid4):
    time = pd.date_range("2004-01-01", periods=3, freq="MS")
    f = _const(grid4, time)
    with pytest.raises(StoreError, match="units"):
        integrate_regions(f.assign_attrs(units="kg m-2 s-1"), grid4)
    with pytest.raises(StoreError, match="lat coordinate does not match"):
        integrate_regions(f, make_grid(2.0))
    daily = _const(grid4, pd.date_range("2004-01-01", "2004-02-10", freq="D"))
    with pytest.raises(StoreError, match="2004-02 has 10 of 29 days"):
        integrate_regions(daily, grid4)
    gappy = _const(grid4, pd.DatetimeIndex(["2004-01-01", "2004-03-01"]))
    with pytest.raises(StoreError, match="neither consecutive days nor consecutive month starts"):
        integrate_regions(gappy, grid4)


def test_non_finite_land_values_are_counted_in_the_same_pass_and_refused(grid4):
    """NaN on a land cell, or ±inf on any weighted cell, is refused with the store, variable,
    day and cell; NaN on a weighted cell outside the land mask (a partial coastal cell) is
    skipped, and the sums then equal numpy's nansum of the same weights."""
    time = pd.date_range("2003-01-01", "2003-03-31", freq="D")
    base = _const(grid4, time, 2.0).load()
    w = grid4.cell_area.values * grid4.land_fraction.values * (grid4.region.values >= 0)
    land = grid4.land.values.astype(bool)
    coastal = np.argwhere((w > 0) & ~land)[0]
    on_land = np.argwhere(land)[3]

    f = base.copy()
    f.values[40, coastal[0], coastal[1]] = np.nan  # skipped, not refused
    out = checked(integrate_regions(f.chunk({"time": 10}), grid4).compute(), grid4, [("x.zarr", "NEE", f)])
    assert "nonfinite" not in out.coords
    feb = f.sel(time=slice("2003-02-01", "2003-02-28")).values.astype(np.float64)
    expect = np.nansum(feb * w, axis=(1, 2)).sum() / 1e15
    assert out.sel(region="GLOBAL", time="2003-02-01").item() == pytest.approx(expect, rel=1e-12)

    for value, at, day in ((np.nan, on_land, 45), (np.inf, coastal, 70), (-np.inf, on_land, 3)):
        f = base.copy()
        f.values[day, at[0], at[1]] = value
        f.values[day + 5, at[0], at[1]] = value
        res = integrate_regions(f.chunk({"time": 10, "lat": 11}), grid4).compute()
        assert int(res.nonfinite.sum()) == 2
        with pytest.raises(StoreError, match=(rf"x.zarr: variable 'NEE': 2 non-finite value\(s\) on land cells.*"
                                              rf"first: {time[day]:%Y-%m-%d}, lat {float(grid4.lat[at[0]]):.2f}, "
                                              rf"lon {float(grid4.lon[at[1]]):.2f}, value {value}")):
            checked(res, grid4, [("x.zarr", "NEE", f)])


def test_an_inversion_system_with_a_gap_names_its_system(tiny_twin, tmp_path):
    """compute_integrals refuses an inversion system with NaN on a land cell of its grid,
    naming inversions.zarr, land_flux, the system and the day; nothing is written."""
    import shutil

    import zarr

    from fluxscale.bridges.integrals import grid_for

    root = tmp_path / "d"
    shutil.copytree(tiny_twin, root, ignore=shutil.ignore_patterns("integrals.zarr"))
    s = open_stores(root, names=["grid", "inversions"])
    ig = grid_for(s["inversions"], s["grid"].load(), "inv")
    i, j = np.argwhere(ig.land.values)[5]
    g = zarr.open_group(str(root / "inversions.zarr"), mode="r+")
    g["land_flux"][2, 7, i, j] = np.nan
    system = str(s["inversions"].system.values[2])
    month = pd.Timestamp(s["inversions"].time.values[7])
    with pytest.raises(StoreError, match=rf"inversions.zarr: variable 'land_flux': 1 non-finite .*system {system}, "
                                         rf"{month:%Y-%m-%d}, lat"):
        compute_integrals(root)
    assert not (root / "integrals.zarr").exists()
