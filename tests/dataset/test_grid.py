import numpy as np
import pytest
import xarray as xr

from fluxscale.errors import StoreError
from fluxscale.dataset.grid import (EARTH_RADIUS_M, cell_areas, coarsen_grid, default_masks, gather_cells, make_grid,
                            read_region_mask, scatter_cells)
from fluxscale.dataset.regions import REGIONS, region_by_abbrev


@pytest.mark.parametrize("res", [0.5, 1.0, 2.0, 4.0])
def test_cell_areas_sum_to_sphere(res):
    a = cell_areas(res)
    assert a.dims == ("lat", "lon") and a.shape == (int(180 / res), int(360 / res))
    total = float(a.sum())
    assert abs(total - 4 * np.pi * EARTH_RADIUS_M**2) / total < 1e-9


def test_cell_areas_closed_form_band():
    # A band between latitudes φ1, φ2 has area 2πR²(sin φ2 − sin φ1); each of n cells 1/n of it.
    a = cell_areas(1.0, radius=1.0)
    i = int(np.argmin(np.abs(a.lat.values - 45.5)))
    band = 2 * np.pi * (np.sin(np.deg2rad(46.0)) - np.sin(np.deg2rad(45.0)))
    np.testing.assert_allclose(a.values[i], band / 360, rtol=1e-12)
    # the equatorial cell of a small grid is ~ a flat square of side R·Δ
    assert abs(float(cell_areas(0.5, radius=1.0).sel(lat=0.25, lon=0.25)) - np.deg2rad(0.5) ** 2) / np.deg2rad(0.5) ** 2 < 1e-4


def test_land_cells_and_region_areas_plausible():
    g = make_grid(0.5)
    n = int(g.land.sum())
    assert 60_000 <= n <= 64_000  # "about 62 000"
    assert g.sizes["cell"] == n
    assert not np.any(g.land.values & (g.lat.values[:, None] < -60))
    il, jl = g.cell_ilat.values, g.cell_ilon.values
    reg = g.region.values[il, jl]
    assert reg.min() >= 0  # every land cell has a region
    area = g.cell_area.values[il, jl] * g.land_fraction.values[il, jl] / 1e12  # 10^6 km2
    known = {"USA": (8.5, 10.5), "BRA": (7.8, 9.2), "RUS": (15.5, 18.0), "CHN": (8.8, 10.0),
             "OCE": (7.0, 9.0), "EU": (5.0, 7.0), "KAJ": (0.45, 0.75)}
    for abbrev, (lo, hi) in known.items():
        got = area[reg == region_by_abbrev(abbrev).id].sum()
        assert lo <= got <= hi, (abbrev, got)
    assert 125 <= area.sum() <= 140  # ice-free land outside Antarctica ~ 134e6 km2 + Greenland


def test_points_fall_in_expected_regions():
    g = make_grid(0.5)
    for (lat, lon), abbrev in {(40.0, -100.0): "USA", (-10.0, -55.0): "BRA", (48.5, 2.5): "EU", (60.0, 90.0): "RUS",
                               (-25.0, 135.0): "OCE", (36.0, 138.0): "KAJ", (22.0, 79.0): "SAS", (0.0, 22.0): "EQAF",
                               (25.0, 10.0): "NAF", (35.0, 105.0): "CHN", (45.0, 65.0): "CAS", (24.0, 45.0): "MIDE"}.items():
        r = int(g.region.sel(lat=lat, lon=lon, method="nearest"))
        assert REGIONS[r].abbrev == abbrev, ((lat, lon), REGIONS[r].abbrev)


def test_coarsening_keeps_land_area_and_all_regions():
    fine = make_grid(0.5)
    for factor in (2, 4):
        coarse = coarsen_grid(fine, factor)
        a_f = float((fine.cell_area * fine.land_fraction.astype(float)).sum())
        a_c = float((coarse.cell_area * coarse.land_fraction.astype(float)).sum())
        assert abs(a_f - a_c) / a_f < 1e-6
        il, jl = coarse.cell_ilat.values, coarse.cell_ilon.values
        assert set(np.unique(coarse.region.values[il, jl])) == set(range(18))
        # the coarse land fraction equals an independent area-weighted mean with numpy
        lf = fine.land_fraction.values.astype(float) * fine.cell_area.values
        ref = lf.reshape(360 // factor, factor, 720 // factor, factor).sum((1, 3)) / coarse.cell_area.values
        np.testing.assert_allclose(coarse.land_fraction.values, ref.reshape(coarse.land_fraction.shape), rtol=1e-5)


def test_user_region_mask_netcdf_roundtrip(tmp_path):
    lf, region = default_masks(2.0)
    # write it the way users' files come: descending latitude, 0..360 longitude, float ids with NaN
    da = region.astype(float).where(region >= 0)
    da = da.assign_coords(lon=(da.lon % 360)).sortby("lon").sortby("lat", ascending=False)
    da.to_dataset(name="region").to_netcdf(tmp_path / "mask.nc")
    got = read_region_mask(tmp_path / "mask.nc", 2.0)
    np.testing.assert_array_equal(got.values, region.values)
    # the MASK (region, lat, lon) layout
    onehot = np.stack([(region.values == r.id).astype("f4") for r in REGIONS])
    xr.Dataset({"MASK": (("region", "lat", "lon"), onehot)}, coords={"lat": region.lat, "lon": region.lon}).to_netcdf(tmp_path / "m2.nc")
    np.testing.assert_array_equal(read_region_mask(tmp_path / "m2.nc", 2.0).values, region.values)
    g = make_grid(2.0, region_mask=tmp_path / "mask.nc")
    np.testing.assert_array_equal(g.region.values, make_grid(2.0).region.values)


def test_user_region_mask_errors(tmp_path):
    _, region = default_masks(2.0)
    bad = region.copy()
    bad.values[40, 40] = 42
    bad.to_dataset(name="region").to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(StoreError, match=r"bad.nc.*'region'.*unknown region ids \[42\]"):
        read_region_mask(tmp_path / "bad.nc", 2.0)
    with pytest.raises(StoreError, match=r"grid is 90x180.*expected the 1.0° global grid"):
        read_region_mask(tmp_path / "bad.nc", 1.0)
    holes = region.where(region != region_by_abbrev("EU").id, -1)
    holes.to_dataset(name="region").to_netcdf(tmp_path / "holes.nc")
    with pytest.raises(StoreError, match="land cells have no region"):
        make_grid(2.0, region_mask=tmp_path / "holes.nc")


def test_gather_scatter_inverse():
    g = make_grid(4.0)
    rng = np.random.default_rng(0)
    field = xr.DataArray(rng.normal(size=(3,) + g.land.shape), dims=("time", "lat", "lon"))
    field = field.where(g.land.values)
    cells = gather_cells(field.chunk({"time": 1}), g)
    assert cells.dims == ("time", "cell") and cells.chunks is not None
    back = scatter_cells(cells, g).compute()
    np.testing.assert_array_equal(np.isnan(back.values), ~np.broadcast_to(g.land.values, back.shape))
    np.testing.assert_allclose(back.values, field.values, equal_nan=True)


def test_gather_cells_blockwise_and_vindex_paths_equal_numpy():
    """Whole-grid chunks take the blockwise path, split lat/lon chunks the vindex path:
    both equal numpy fancy indexing, with coordinates, and the index is one graph key."""
    g = make_grid(4.0)
    rng = np.random.default_rng(1)
    vals = rng.normal(size=(4, 2) + g.land.shape).astype(np.float32)
    field = xr.DataArray(vals, dims=("time", "k", "lat", "lon"), coords={"time": np.arange(4)})
    expected = vals[..., g.cell_ilat.values, g.cell_ilon.values]
    whole = gather_cells(field.chunk({"time": 2, "k": 1}), g)
    split = gather_cells(field.chunk({"time": 2, "lat": 10, "lon": 30}), g)
    for got in (whole, split):
        assert got.dims == ("time", "k", "cell") and got.dtype == np.float32
        np.testing.assert_array_equal(got.values, expected)
        np.testing.assert_array_equal(got.cell_lat.values, g.cell_lat.values)
        np.testing.assert_array_equal(got.time.values, np.arange(4))
    assert whole.chunks == ((2, 2), (1, 1), (g.sizes["cell"],))
    import pickle

    src = field.chunk({"time": 2, "k": 1})
    added = len(pickle.dumps(dict(whole.data.__dask_graph__()))) - len(pickle.dumps(dict(src.data.__dask_graph__())))
    index_bytes = 2 * g.sizes["cell"] * np.dtype(np.intp).itemsize
    assert added < 2 * index_bytes  # the index is in the graph once, not once per block (4 blocks)
