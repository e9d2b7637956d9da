"""The real gridded products in their real layouts: GCB inversions (NetCDF, char-array
member names in a release's own order, all-NaN members, the 2022 and 2023 variable
sets) and FLUXCOM-X-BASE NEE cubes (Zarr v2, ``(time, hour, lat, lon)``, latitude
north → south, blosc-lz4, NaN fill). Every file is written in tmp_path by a function
below that follows the product's layout; expected values are computed here with numpy
from the arrays written, never by fluxscale's code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.config import GriddedInput, IngestConfig
from fluxscale.errors import InputError
from fluxscale.dataset.grid import cell_areas, grid_centres, make_grid
from fluxscale.ingest import build
from fluxscale.ingest.gcb import PAPER_SYSTEMS, canonical_system, choose_members, member_names
from fluxscale.ingest.gridded import ReadLog

from .test_ingest_errors import _check

PGC_M2_YR = 1e15 / 365.25  # gC m-2 d-1 per PgC m-2 yr-1 (the Julian year of fluxscale.dataset.units)




# --- GCB inversions ---------------------------------------------------------------------------

GCB_RES = 20.0
GCB_MONTHS = pd.date_range("2000-07-01", "2001-12-01", freq="MS")  # the file; the record is 2001
# a release's own order (not alphabetical), GCB's spellings, two members that are not the paper's
GCB_MEMBERS = ["UoE in situ", "CAMS-Satellite", "Jena CarboScope", "CT-NOAA", "NISMON-CO2", "CAMS", "CTE"]
V_ONLY = "land_flux_only_fossil_cement_adjusted"
V_RIVER = "land_flux_fossil_cement_and_river_adjusted"


def _gcb_grid():
    g = make_grid(GCB_RES)
    lf = g.land_fraction.values.astype(np.float64)
    return g, lf, (g.cell_area * g.land_fraction.astype(np.float64))


def _gcb_values(seed: int, members: list[str]) -> np.ndarray:
    """(member, time, lat ascending, lon) PgC m-2 yr-1 per m² of cell, 0 off land; NISMON-CO2
    has values in 2000 only (all NaN in the 2001 record); 'UoE in situ' misses one land
    cell in 2001-03 and one ocean cell in 2001-01 (not a gap: the store has no ocean)."""
    _, lf, _ = _gcb_grid()
    rng = np.random.default_rng(seed)
    v = rng.normal(-2e-13, 3e-13, size=(len(members), GCB_MONTHS.size, *lf.shape)) * (lf > 0)
    v = v.astype(np.float32)
    if "NISMON-CO2" in members:
        v[members.index("NISMON-CO2"), GCB_MONTHS.year == 2001] = np.nan
    if "UoE in situ" in members:
        u = members.index("UoE in situ")
        i, j = _gap_cell()
        v[u, GCB_MONTHS.get_loc(pd.Timestamp("2001-03-01")), i, j] = np.nan
        oi, oj = np.argwhere(lf == 0)[0]
        v[u, GCB_MONTHS.get_loc(pd.Timestamp("2001-01-01")), oi, oj] = np.nan
    return v


def _gap_cell() -> tuple[int, int]:
    _, lf, _ = _gcb_grid()
    return tuple(np.argwhere(lf > 0.5)[3])


def write_gcb(path: Path, variables: dict[str, np.ndarray], members: list[str]) -> Path:
    """A GCB ``GCP20xx_inversions_1x1_version*.nc`` layout: ``(ensemble_member, time, latitude,
    longitude)`` float32 PgC m-2 yr-1, latitude south → north, mid-month ``days since``
    times, ``ensemble_member_name (ensemble_member, nchar)`` a space-padded char array."""
    import netCDF4

    lat, lon = grid_centres(GCB_RES)
    nchar = max(map(len, members)) + 3
    t = (GCB_MONTHS + pd.Timedelta(days=14) - pd.Timestamp("1957-01-01")).days.to_numpy(np.float64)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("ensemble_member", len(members))
        nc.createDimension("time", t.size)
        nc.createDimension("latitude", lat.size)
        nc.createDimension("longitude", lon.size)
        nc.createDimension("nchar", nchar)
        for name, vals, units in (("latitude", lat, "degrees_north"), ("longitude", lon, "degrees_east")):
            v = nc.createVariable(name, "f8", (name,))
            v[:], v.units = vals, units
        tv = nc.createVariable("time", "f8", ("time",))
        tv[:], tv.units, tv.calendar = t, "days since 1957-01-01 00:00:00", "standard"
        em = nc.createVariable("ensemble_member", "i4", ("ensemble_member",))
        em[:] = np.arange(1, len(members) + 1)
        nm = nc.createVariable("ensemble_member_name", "S1", ("ensemble_member", "nchar"))
        nm[:] = netCDF4.stringtochar(np.array([m.ljust(nchar) for m in members], dtype=f"S{nchar}"))
        for name, vals in variables.items():
            v = nc.createVariable(name, "f4", ("ensemble_member", "time", "latitude", "longitude"), zlib=True,
                                  fill_value=np.float32(np.nan))
            v[:] = vals
            v.units = "PgC m-2 yr-1"
            v.long_name = name.replace("_", " ")
    return path


@pytest.fixture
def gcb2023(tmp_path):
    vals = _gcb_values(1, GCB_MEMBERS)
    path = write_gcb(tmp_path / "GCP2023_inversions_1x1_version1_1_20231121.nc", {V_ONLY: vals}, GCB_MEMBERS)
    return path, vals


@pytest.fixture
def gcb2022(tmp_path):
    only, river = _gcb_values(2, GCB_MEMBERS), _gcb_values(3, GCB_MEMBERS)
    path = write_gcb(tmp_path / "GCP2022_inversions_1x1_version1_1_20230428.nc", {V_ONLY: only, V_RIVER: river},
                     GCB_MEMBERS)
    assert path.stat().st_size < 200_000
    return path, only, river


def _cfg(path: Path, **inv) -> IngestConfig:
    return IngestConfig(base=str(path.parent), out="stores", sites=None, drivers=(), prior=None,
                        inversions=GriddedInput(files=path.name, **inv), fire=None, gcb=None,
                        start_year=2001, end_year=2001)


def _inversions(path: Path, **inv):
    _, _, w = _gcb_grid()
    log = ReadLog()
    da = build._read_inversions(_cfg(path, **inv), w, log)
    return da.compute(), log


def _expected(vals: np.ndarray, member: str) -> np.ndarray:
    """The record's months of one member in gC m-2 d-1 per m² of land (NaN off land)."""
    _, lf, _ = _gcb_grid()
    v = vals[GCB_MEMBERS.index(member), GCB_MONTHS.year == 2001].astype(np.float64) * PGC_M2_YR
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lf > 0, v / lf, np.nan)


def test_gcb_default_systems_are_the_papers_five_by_their_gcb_spellings(gcb2023):
    path, vals = gcb2023
    da, log = _inversions(path)
    # the paper's order and short names; NISMON-CO2 is all NaN in 2001 and is skipped
    assert list(da.system.values) == ["CAMS", "CTE", "CarboScope", "UoE"]
    assert da.dims == ("system", "time", "lat", "lon")
    np.testing.assert_array_equal(da.time.values, pd.date_range("2001-01-01", periods=12, freq="MS").values)
    for system, member in zip(da.system.values, ["CAMS", "CTE", "Jena CarboScope", "UoE in situ"]):
        np.testing.assert_allclose(da.sel(system=system).values, _expected(vals, member), rtol=2e-6,
                                   equal_nan=True, err_msg=system)
    skipped = dict(log.skipped)
    assert "all NaN on land in 2001..2001" in skipped[f"{path.name}: member NISMON-CO2"]
    assert "not one of the paper's five" in skipped[f"{path.name}: member CAMS-Satellite"]
    assert f"{path.name}: member CT-NOAA" in skipped
    notes = "\n".join(log.notes)
    assert "'Jena CarboScope' taken as CarboScope" in notes
    # the gap of UoE: file, member, first month and cell (the ocean cell is not a gap)
    i, j = _gap_cell()
    lat, lon = grid_centres(GCB_RES)
    gap = [n for n in log.notes if "NaN on land" in n]
    assert len(gap) == 1 and path.name in gap[0] and "'UoE in situ'" in gap[0], gap
    assert f"1 of 12 months of 2001..2001; first 2001-03 at cell ({lat[i]:g}, {lon[j]:g})" in gap[0], gap


def test_gcb_systems_chosen_by_name_in_config_order(gcb2023):
    path, vals = gcb2023
    da, log = _inversions(path, systems=("CT-NOAA", "cams", "CarbonTracker Europe"))
    assert list(da.system.values) == ["CT-NOAA", "cams", "CarbonTracker Europe"]
    for system, member in zip(da.system.values, ["CT-NOAA", "CAMS", "CTE"]):
        np.testing.assert_allclose(da.sel(system=system).values, _expected(vals, member), rtol=2e-6,
                                   equal_nan=True, err_msg=system)
    assert {w.split("member ")[1] for w, why in log.skipped if "not in [inversions] systems" in why} == \
        {"UoE in situ", "CAMS-Satellite", "Jena CarboScope", "NISMON-CO2"}


def test_gcb_2022_variable_set_both_variables(gcb2022):
    path, only, river = gcb2022
    a, _ = _inversions(path)
    b, _ = _inversions(path, variable=V_RIVER)
    np.testing.assert_allclose(a.sel(system="CTE").values, _expected(only, "CTE"), rtol=2e-6, equal_nan=True)
    np.testing.assert_allclose(b.sel(system="CTE").values, _expected(river, "CTE"), rtol=2e-6, equal_nan=True)


def test_gcb_2023_refuses_the_river_variable_dropped_in_2023(gcb2023):
    path, _ = gcb2023
    with pytest.raises(InputError) as e:
        _inversions(path, variable=V_RIVER)
    _check(e, path, f"variable {V_RIVER!r}", "dropped", "GCB2023", V_ONLY)
    with pytest.raises(InputError) as e:  # the native-resolution probe says the same
        build._native_resolution(_cfg(path, variable=V_RIVER))
    _check(e, path, "dropped", "GCB2023")
    assert build._native_resolution(_cfg(path)) == GCB_RES


def test_gcb_member_not_in_file_lists_those_present(gcb2023):
    path, _ = gcb2023
    with pytest.raises(InputError) as e:
        _inversions(path, systems=("CAMS", "OCO2-MIP"))
    _check(e, path, "variable 'ensemble_member_name'", "no member 'OCO2-MIP'", ", ".join(GCB_MEMBERS))


def test_gcb_member_asked_for_but_all_nan_in_the_period(gcb2023):
    path, _ = gcb2023
    with pytest.raises(InputError) as e:
        _inversions(path, systems=("CAMS", "NISMON"))
    _check(e, path, f"variable {V_ONLY!r}", "member 'NISMON-CO2'", "all NaN", "2001..2001")


def test_gcb_without_the_papers_five_uses_every_member(tmp_path):
    members = ["MIROC4-ACTM", "CT-NOAA", "CMS-Flux"]
    vals = _gcb_values(4, members)
    path = write_gcb(tmp_path / "GCP2024_inversions_1x1_version1_0.nc", {V_ONLY: vals}, members)
    _, lf, w = _gcb_grid()
    log = ReadLog()
    da = build._read_inversions(_cfg(path), w, log).compute()
    assert list(da.system.values) == members
    assert any("none of the paper's inversions" in n and "all 3 members" in n for n in log.notes), log.notes


def test_gcb_every_default_member_all_nan(tmp_path):
    members = ["CAMS", "NISMON-CO2"]
    vals = _gcb_values(5, members)
    vals[:, GCB_MONTHS.year == 2001] = np.nan
    path = write_gcb(tmp_path / "GCP2023_inversions_1x1_version1_1.nc", {V_ONLY: vals}, members)
    with pytest.raises(InputError) as e:
        _inversions(path)
    _check(e, path, "no chosen member has values on land in 2001..2001")


def test_gcb_member_names_from_a_char_array_and_aliases():
    chars = np.array([list("CTE  "), list("UoE\0\0")], dtype="S1")
    ds = xr.Dataset({"ensemble_member_name": (("ensemble_member", "nchar"), chars)})
    assert member_names(ds, "ensemble_member") == ["CTE", "UoE"]
    ds = xr.Dataset({"ensemble_member_name": (("ensemble_member",), np.array([b"CAMS   ", b"THU"]))})
    assert member_names(ds, "ensemble_member") == ["CAMS", "THU"]
    assert [canonical_system(n) for n in ["Jena CarboScope (sEXTocNEET)", "CarbonTracker Europe (CTE)",
                                          "NISMOM-CO2", "UoE in situ", "CAMS-Satellite", "CT-NOAA", "cams"]] == \
        ["CarboScope", "CTE", "NISMON", "UoE", None, None, "CAMS"]
    ch = choose_members(["THU", "CAMS", "CAMS-Satellite"], (), "f.nc")
    assert ch.names == ["CAMS"] and ch.index == [1] and not ch.explicit
    assert set(PAPER_SYSTEMS) == {"CAMS", "CTE", "CarboScope", "UoE", "NISMON"}


# --- FLUXCOM-X-BASE Zarr cubes ---------------------------------------------------------------

from fluxscale.ingest.xbase import is_zarr, read_xbase_nee  # noqa: E402


def write_xbase(path: Path, values: np.ndarray, res: float, time_days: np.ndarray, *, hour: bool = True,
                variable: str = "NEE", chunks: tuple[int, ...] | None = None, zarr_format: int = 2) -> Path:
    """A FLUXCOM-X-BASE cube: Zarr format 2, ``NEE (time, hour, lat, lon)`` (or without
    ``hour``), latitude north → south, ``units "gC m-2 d-1"``, blosc-lz4, NaN fill, time
    ``days since 2001-01-01``. ``values`` are given with latitude ascending."""
    from numcodecs import Blosc

    lat, lon = grid_centres(res)
    dims = ("time", "hour", "lat", "lon") if hour else ("time", "lat", "lon")
    da = xr.DataArray(values[..., ::-1, :].astype(np.float32), dims=dims,
                      attrs={"units": "gC m-2 d-1", "standard_name": "net_ecosystem_exchange_of_carbon",
                             "long_name": "Net Ecosystem Exchange"})
    coords = {"time": ("time", time_days, {"units": "days since 2001-01-01", "calendar": "gregorian"}),
              "lat": ("lat", lat[::-1], {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})}
    if hour:
        coords["hour"] = ("hour", np.arange(values.shape[1], dtype=np.int32))
    ds = xr.Dataset({variable: da}, coords=coords)
    chunks = chunks or ((1, values.shape[1], 90, 180) if hour else (1, 90, 180))
    if zarr_format == 2:
        enc = {variable: {"chunks": chunks, "compressors": (Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),),
                          "_FillValue": np.float32(np.nan)}, "time": {"dtype": "float64"}}
    else:  # format 3: zarr's own blosc codec
        from zarr.codecs import BloscCodec

        enc = {variable: {"chunks": chunks, "compressors": (BloscCodec(cname="lz4", clevel=5),),
                          "fill_value": np.float32(np.nan)}, "time": {"dtype": "float64"}}
    ds.to_zarr(path, zarr_format=zarr_format, encoding=enc, consolidated=zarr_format == 2, mode="w")
    return path


def _box_values(rng, shape_lead, res, lat0, lat1, lon0, lon1):
    """NaN everywhere except a box of random NEE (latitude ascending)."""
    lat, lon = grid_centres(res)
    v = np.full((*shape_lead, lat.size, lon.size), np.nan, np.float32)
    i = np.flatnonzero((lat > lat0) & (lat < lat1))
    j = np.flatnonzero((lon > lon0) & (lon < lon1))
    v[..., i[:, None], j] = rng.normal(-0.5, 2.0, size=(*shape_lead, i.size, j.size))
    return v


def _coarse_expected(monthly: np.ndarray, res: float, target_res: float, w_target: np.ndarray) -> np.ndarray:
    """numpy: Σ NEE × fine-cell area over each k×k block (NaN cells count 0; a block with no
    value is NaN), divided by the target cell's land area (NaN where it has none)."""
    k = int(round(target_res / res))
    a = cell_areas(res).values
    amount = np.nan_to_num(monthly.astype(np.float64)) * a
    nt, ny, nx = monthly.shape
    s = amount.reshape(nt, ny // k, k, nx // k, k).sum(axis=(2, 4))
    defined = np.isfinite(monthly).reshape(nt, ny // k, k, nx // k, k).any(axis=(2, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined & (w_target > 0), s / np.where(w_target > 0, w_target, 1.0), np.nan)


def _model_weight(res: float):
    g = make_grid(res)
    return (g.cell_area * g.land_fraction.astype(np.float64)).where(g.land, 0.0)


def test_xbase_hourly_cube_to_monthly_means_on_the_model_grid(tmp_path):
    rng = np.random.default_rng(7)
    res, target = 0.25, 0.5
    # Dec 2000 (outside the record), Jan and Feb 2001: month starts in days since 2001-01-01
    t = np.array([-31.0, 0.0, 31.0])
    # a box across Zarr chunk boundaries (45°N, 0°E), NaN elsewhere (the fill: chunks not written)
    v = _box_values(rng, (3, 24), res, 43.0, 46.0, -2.0, 2.5)
    lat, lon = grid_centres(res)
    i0, j0 = np.flatnonzero(lat > 44.0)[0], np.flatnonzero(lon > 0.0)[0]
    v[1, 5, i0, j0] = np.nan  # one missing hour: that fine cell has no January mean
    path = write_xbase(tmp_path / "X-BASE_NEE_025deg_hourly.zarr", v, res, t)
    assert is_zarr(path) and (path / ".zgroup").exists()
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < 200_000
    w = _model_weight(target)
    log = ReadLog()
    out = read_xbase_nee(path, "NEE", start="2001-01-01", end="2001-02-28", target_weight=w, log=log)
    assert out.dims == ("time", "lat", "lon") and out.dtype == np.float32 and out.attrs["units"] == "gC m-2 d-1"
    got = out.compute()
    np.testing.assert_array_equal(got.time.values, pd.date_range("2001-01-01", periods=2, freq="MS").values)
    monthly = v[1:].astype(np.float64).mean(axis=1)  # hour mean, NaN where any hour is missing
    assert np.isnan(monthly[0, i0, j0])
    exp = _coarse_expected(monthly, res, target, w.values)
    np.testing.assert_allclose(got.values, exp, rtol=2e-6, atol=1e-7, equal_nan=True)
    # the integral over the model grid's land cells is the fine integral of their blocks
    a = cell_areas(res).values
    on_land = np.repeat(np.repeat(w.values > 0, 2, axis=0), 2, axis=1)
    fine_integral = (np.nan_to_num(monthly) * a * on_land).sum(axis=(1, 2))
    np.testing.assert_allclose(np.nansum(got.values.astype(np.float64) * w.values, axis=(1, 2)), fine_integral,
                               rtol=1e-6)
    assert any("24 hours" in n for n in log.notes) and str(path) in log.read


def test_xbase_daily_cube_without_hour_averaged_to_months(tmp_path):
    rng = np.random.default_rng(8)
    res, target = 1.0, 2.0
    days = pd.date_range("2001-01-01", "2001-02-28")
    v = _box_values(rng, (days.size,), res, -10.0, 10.0, 10.0, 40.0)
    path = write_xbase(tmp_path / "X-BASE_NEE_1deg_daily.zarr", v, res, np.arange(days.size, dtype=np.float64),
                       hour=False, chunks=(31, 45, 90))
    w = _model_weight(target)
    got = read_xbase_nee(path, start="2001-01-01", end="2001-02-28", target_weight=w).compute()
    monthly = np.stack([v[:31].astype(np.float64).mean(0), v[31:].astype(np.float64).mean(0)])
    np.testing.assert_allclose(got.values, _coarse_expected(monthly, res, target, w.values), rtol=2e-6, atol=1e-7,
                               equal_nan=True)


def test_xbase_zarr_format_3_monthly_cube(tmp_path):
    rng = np.random.default_rng(13)
    v = _box_values(rng, (2,), 1.0, 30.0, 60.0, -10.0, 30.0)
    path = write_xbase(tmp_path / "X-BASE_NEE_1deg_monthly.zarr", v, 1.0, np.array([0.0, 31.0]), hour=False,
                       chunks=(1, 90, 180), zarr_format=3)
    assert (path / "zarr.json").exists() and not (path / ".zgroup").exists() and is_zarr(path)
    w = _model_weight(5.0)
    got = read_xbase_nee(path, start="2001-01-01", end="2001-02-28", target_weight=w).compute()
    np.testing.assert_allclose(got.values, _coarse_expected(v.astype(np.float64), 1.0, 5.0, w.values), rtol=2e-6,
                               atol=1e-7, equal_nan=True)


def test_xbase_grid_not_an_integer_refinement(tmp_path):
    v = _box_values(np.random.default_rng(9), (1,), 1.5, 0.0, 10.0, 0.0, 10.0)
    path = write_xbase(tmp_path / "X-BASE_NEE_1.5deg_monthly.zarr", v, 1.5, np.array([0.0]), hour=False,
                       chunks=(1, 60, 120))
    with pytest.raises(InputError) as e:
        read_xbase_nee(path, start="2001-01-01", end="2001-01-31", target_weight=_model_weight(2.0))
    _check(e, path, "variable 'NEE'", "grid 1.5° is not an integer refinement of the model grid 2°")


def test_xbase_missing_nee_variable(tmp_path):
    v = _box_values(np.random.default_rng(10), (1,), 1.0, 0.0, 10.0, 0.0, 10.0)
    path = write_xbase(tmp_path / "X-BASE_GPP_1deg_monthly.zarr", v, 1.0, np.array([0.0]), hour=False,
                       variable="GPP", chunks=(1, 90, 180))
    with pytest.raises(InputError) as e:
        read_xbase_nee(path, start="2001-01-01", end="2001-01-31", target_weight=_model_weight(2.0))
    _check(e, path, "variable 'NEE'", "missing", "the file has GPP")


def test_xbase_months_of_the_record_missing(tmp_path):
    v = _box_values(np.random.default_rng(11), (1,), 1.0, 0.0, 10.0, 0.0, 10.0)
    path = write_xbase(tmp_path / "X-BASE_NEE_1deg_monthly.zarr", v, 1.0, np.array([0.0]), hour=False,
                       chunks=(1, 90, 180))
    with pytest.raises(InputError) as e:
        read_xbase_nee(path, start="2001-01-01", end="2001-03-31", target_weight=_model_weight(2.0)).compute()
    _check(e, path, "variable 'NEE'", "no data for 2001-02")


# --- the products through `fluxscale ingest` (the tiny twin's files, one product replaced) ---

import dataclasses  # noqa: E402
import shutil  # noqa: E402

from fluxscale.config import load_ingest_config  # noqa: E402
from fluxscale.ingest import ingest  # noqa: E402
from fluxscale.dataset.stores import open_store, store_path  # noqa: E402


@pytest.fixture(scope="module")
def exported(tiny_twin, tmp_path_factory):
    from fluxscale.twin.files import export_files

    return export_files(tiny_twin, tmp_path_factory.mktemp("products") / "files").parent


def _copy(exported: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "files"
    shutil.copytree(exported, dst, ignore=shutil.ignore_patterns("stores"))
    return dst


def _state(out: Path) -> set[str]:
    return {p.name for p in out.glob("*")} if out.exists() else set()


def test_ingest_xbase_zarr_prior(exported, tiny_twin, tmp_path):
    """``[prior] files = "X-BASE….zarr"``: a 1° monthly cube onto the twin's 2° grid."""
    work = _copy(exported, tmp_path)
    grid = open_store(store_path(tiny_twin, "grid"), "grid")
    prior = open_store(store_path(tiny_twin, "prior"), "prior").NEE.values.astype(np.float64)
    months = pd.DatetimeIndex(open_store(store_path(tiny_twin, "prior"), "prior").time.values)
    rng = np.random.default_rng(12)
    fine = np.repeat(np.repeat(prior, 2, axis=1), 2, axis=2) + rng.normal(0, 0.3, (prior.shape[0], 180, 360))
    days = (months - pd.Timestamp("2001-01-01")).days.to_numpy(np.float64)
    write_xbase(work / "X-BASE_NEE_1deg_monthly.zarr", fine, 1.0, days, hour=False, chunks=(12, 90, 180))
    toml = work / "ingest.toml"
    text = toml.read_text()
    old = 'files = "fluxcom/NEE.RS_METEO.*.monthly.*.nc"\nvariable = "NEE"\nbasis = "land"\n'
    assert text.count(old) == 1
    toml.write_text(text.replace(old, 'files = "X-BASE_NEE_*.zarr"\nvariable = "NEE"\n'))
    cfg = load_ingest_config(toml)
    assert cfg.prior == GriddedInput(files="X-BASE_NEE_*.zarr", variable="NEE")
    rep = ingest(cfg)
    got = open_store(store_path(cfg.path(cfg.out), "prior"), "prior").NEE.values
    w = (grid.cell_area * grid.land_fraction.astype(np.float64)).where(grid.land, 0.0).values
    np.testing.assert_allclose(got, _coarse_expected(fine.astype(np.float32), 1.0, 2.0, w), rtol=2e-6, atol=1e-6,
                               equal_nan=True)
    assert any("X-BASE_NEE_1deg_monthly.zarr" in f for f in rep["files_read"])


def test_ingest_gcb_all_nan_member_skipped_by_default_refused_by_name(exported, tmp_path, monkeypatch):
    work = _copy(exported, tmp_path)
    [inv] = sorted((work / "inversions").glob("*.nc"))
    ds = xr.load_dataset(inv, decode_times=False)
    names = [str(s) for s in ds.ensemble_member_name.values]
    k = names.index("NISMON")
    v = ds.land_flux_only_fossil_cement_adjusted.values.copy()
    v[k] = np.nan
    ds["land_flux_only_fossil_cement_adjusted"].values = v
    inv.unlink()
    ds.to_netcdf(inv)
    cfg = load_ingest_config(work / "ingest.toml")
    out = cfg.path(cfg.out)
    rep = ingest(cfg)  # by default: skipped, with the reason in the report
    why = dict(map(tuple, rep["skipped"]))[f"{inv.name}: member NISMON"]
    assert "all NaN on land in 2001..2003" in why
    assert list(open_store(store_path(out, "inversions"), "inversions").system.values) == \
        ["CAMS", "CTE", "CarboScope", "UoE"]
    # by name: refused, naming file, member and period; no store of this run is left
    shutil.rmtree(out)
    cfg = dataclasses.replace(cfg, inversions=dataclasses.replace(cfg.inversions, systems=("CAMS", "NISMON")))
    with pytest.raises(InputError) as e:
        ingest(cfg)
    _check(e, inv, "member 'NISMON'", "all NaN", "2001..2003")
    left = _state(out)
    assert not any(n.endswith(".partial") or n.endswith(".zarr") for n in left) and "fluxscale.json" not in left, left


def test_ingest_xbase_cube_on_a_non_integer_refinement_leaves_nothing(exported, tmp_path):
    work = _copy(exported, tmp_path)
    v = _box_values(np.random.default_rng(14), (36,), 1.5, 0.0, 30.0, 0.0, 30.0)
    days = (pd.date_range("2001-01-01", periods=36, freq="MS") - pd.Timestamp("2001-01-01")).days.to_numpy(float)
    cube = write_xbase(work / "X-BASE_NEE_1.5deg_monthly.zarr", v, 1.5, days, hour=False, chunks=(12, 60, 120))
    cfg = load_ingest_config(work / "ingest.toml")
    cfg = dataclasses.replace(cfg, prior=GriddedInput(files="X-BASE_NEE_*.zarr"))
    out = cfg.path(cfg.out)
    with pytest.raises(InputError) as e:
        ingest(cfg)
    _check(e, cube, "variable 'NEE'", "not an integer refinement of the model grid 2°")
    left = _state(out)
    assert not any(n.endswith(".partial") or n.endswith(".zarr") for n in left) and "fluxscale.json" not in left, left


def test_xbase_unexpected_dimensions(tmp_path):
    lat, lon = grid_centres(2.0)
    da = xr.DataArray(np.zeros((1, 2, lat.size, lon.size), np.float32), dims=("time", "member", "lat", "lon"),
                      attrs={"units": "gC m-2 d-1"})
    path = tmp_path / "X-BASE_NEE_ens.zarr"
    xr.Dataset({"NEE": da}, coords={"time": ("time", [0.0], {"units": "days since 2001-01-01"}), "lat": lat[::-1],
                                    "lon": lon}).to_zarr(path, zarr_format=2, mode="w")
    with pytest.raises(InputError) as e:
        read_xbase_nee(path, start="2001-01-01", end="2001-01-31", target_weight=_model_weight(2.0))
    _check(e, path, "variable 'NEE'", "expected (time, hour, lat, lon) or (time, lat, lon)", "'member'")
