"""Ingest: units, the FLUXNET and NetCDF readers on fixtures in the real formats, and the
twin → files → ingest round trip against the twin's own stores."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.config import load_ingest_config
from fluxscale.dataset.drivers import DRIVER_NAMES
from fluxscale.errors import InputError
from fluxscale.dataset.grid import cell_areas, coarsen_grid, grid_centres, make_grid
from fluxscale.ingest import ingest, read_daily_driver, read_fluxnet_daily, read_monthly_flux, read_seasonal_driver
from fluxscale.ingest.gridded import normalise_space
from fluxscale.dataset.schema import REQUIRED_STORES, SCHEMAS
from fluxscale.dataset.stores import open_store, open_stores, store_path
from fluxscale.twin.files import export_files
from fluxscale.dataset.units import M_C, M_CO2, UnitError, flux_factor, linear_conversion

# --- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize("units, species, expected", [
    ("gC m-2 d-1", None, 1.0),
    ("g C m-2 day-1", None, 1.0),
    ("kg m**-2 s**-1", "CO2", 1000 * 86400 * M_C / M_CO2),     # GFAS co2fire
    ("kgCO2 m-2 s-1", None, 1000 * 86400 * M_C / M_CO2),
    ("PgC/m2/yr", None, 1e15 / 365.25),                        # GCB inversions (Julian year)
    ("PgC m-2 yr-1", None, 1e15 / 365.25),
    ("kgC m-2 s-1", None, 1000 * 86400.0),
    ("umol m-2 s-1", "CO2", 1e-6 * 86400 * M_C),               # towers' half-hourly units
    ("mol m-2 s-1", None, 86400 * M_C),
    ("gC m-2 month-1", None, 12 / 365.25),
])
def test_flux_factor_closed_forms(units, species, expected):
    assert flux_factor(units, species) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("units, species, word", [
    ("bananas m-2 d-1", None, "unknown units"),
    ("kg m-2 s-1", None, "carbon or CO2"),
    ("kgC m-2", None, "not a carbon flux density"),
    ("K", None, "not a carbon flux density"),
    ("gC m-2 d-1", "CO2", "declared as CO2"),
])
def test_flux_factor_refuses(units, species, word):
    with pytest.raises(UnitError, match=word):
        flux_factor(units, species)


def test_a_species_in_the_units_wins_over_the_default():
    assert flux_factor("kgCO2 m-2 s-1", default_species="C") == pytest.approx(1000 * 86400 * M_C / M_CO2)
    assert flux_factor("kg m-2 s-1", default_species="CO2") == pytest.approx(1000 * 86400 * M_C / M_CO2)
    assert flux_factor("kg m-2 s-1", "C", default_species="CO2") == pytest.approx(1000 * 86400.0)


def test_linear_conversion_offsets_and_scales():
    assert linear_conversion("K", "degC") == pytest.approx((1.0, -273.15))
    assert linear_conversion("degC", "degC") == (1.0, 0.0)
    assert linear_conversion("W m-2", "MJ m-2 d-1") == pytest.approx((0.0864, 0.0))
    assert linear_conversion("cm", "mm") == pytest.approx((10.0, 0.0))
    with pytest.raises(UnitError, match="cannot convert"):
        linear_conversion("mm", "K")


# --- FLUXNET2015 daily CSV ---------------------------------------------------------------------

_CSV = """TIMESTAMP,NEE_VUT_REF,NEE_VUT_REF_QC,TA_F,SW_IN_F,OTHER
20010103,-1.5,0.9,5.25,120.5,1
20010101,2.0,0.25,-9999,100,1
20010102,-9999,-9999,3.5,-9999,1
20010104,0.75,1,4.0,90,1
"""


def test_read_fluxnet_daily_missing_qc_units_and_order(tmp_path):
    p = tmp_path / "FLX_DE-Tha_FLUXNET2015_SUBSET_DD_2001-2001_1-4.csv"
    p.write_text(_CSV)
    ds = read_fluxnet_daily(p)
    assert ds.attrs["site"] == "DE-Tha" and ds.attrs["fluxnet_set"] == "SUBSET"
    np.testing.assert_array_equal(ds.time.values, pd.date_range("2001-01-01", periods=4).values)
    np.testing.assert_array_equal(ds.NEE.values, np.float32([2.0, np.nan, -1.5, 0.75]))
    np.testing.assert_array_equal(ds.NEE_QC.values, np.float32([0.25, np.nan, 0.9, 1.0]))
    np.testing.assert_array_equal(ds.TA_F.values, np.float32([np.nan, 3.5, 5.25, 4.0]))
    assert ds.NEE.attrs["units"] == "gC m-2 d-1" and ds.TA_F.attrs["units"] == "degC"
    assert ds.SW_IN_F.attrs["units"] == "W m-2" and "OTHER" not in ds
    strict = read_fluxnet_daily(p, qc_min=0.5)
    np.testing.assert_array_equal(strict.NEE.values, np.float32([np.nan, np.nan, -1.5, 0.75]))
    assert strict.attrs["n_days_below_qc"] == 1


# --- NetCDF normalisation -----------------------------------------------------------------------


def _field(res, seed=0, lead=()):
    lat, lon = grid_centres(res)
    rng = np.random.default_rng(seed)
    return rng.normal(size=(*lead, lat.size, lon.size)), lat, lon


def test_reversed_latitudes_and_0_360_longitudes_are_normalised(tmp_path):
    vals, lat, lon = _field(4.0)
    # the file: latitude descending (FLUXCOM, GFAS), longitude 0…360 (GFAS)
    k = lon.size // 2
    f_vals = np.concatenate([vals[:, k:], vals[:, :k]], axis=1)[::-1]
    f_lon = np.mod(np.concatenate([lon[k:], lon[:k]]), 360)
    da = xr.DataArray(f_vals, dims=("latitude", "longitude"), coords={"latitude": lat[::-1], "longitude": f_lon})
    out, res = normalise_space(da, tmp_path / "x.nc", "x")
    assert res == 4.0
    np.testing.assert_array_equal(out.lat.values, lat)
    np.testing.assert_array_equal(out.lon.values, lon)
    np.testing.assert_array_equal(out.values, vals)


def _write_monthly(path, vals, lat, lon, units, time_vals, time_units, calendar="standard", name="flux",
                   lat_name="lat", lon_name="lon"):
    ds = xr.Dataset({name: (("time", lat_name, lon_name), vals.astype(np.float32), {"units": units})},
                    coords={"time": ("time", time_vals, {"units": time_units, "calendar": calendar}),
                            lat_name: lat, lon_name: lon})
    ds.to_netcdf(path)
    return path


def test_monthly_flux_aggregation_conserves_the_integral_and_converts_units(tmp_path):
    """A 1° per-cell-area CO2 flux in kg m-2 s-1 on a 2° target: Σ value × land area on the
    target equals the integral of the fine field (numpy), in gC d-1."""
    fine, lat, lon = _field(1.0, seed=3, lead=(3,))
    fine = np.abs(fine) * 1e-9  # kg CO2 m-2 s-1, positive
    path = _write_monthly(tmp_path / "fire.nc", fine[:, ::-1], lat[::-1], lon, "kg m-2 s-1",
                          np.array([0.0, 31.0, 59.0]) * 24, "hours since 2001-01-01 00:00:00", name="co2fire")
    g = coarsen_grid(make_grid(1.0), 2)
    w = g.cell_area * g.land_fraction.astype(float)
    out = read_monthly_flux([path], "co2fire", start="2001-01-01", end="2001-03-31", target_weight=w,
                            species="CO2", basis="cell").compute()
    assert out.dims == ("time", "lat", "lon") and out.shape == (3, 90, 180)
    np.testing.assert_array_equal(out.time.values, pd.date_range("2001-01-01", periods=3, freq="MS").values)
    fine32 = fine.astype(np.float32).astype(np.float64)
    expected = (fine32 * cell_areas(1.0).values).sum(axis=(1, 2)) * 1000 * 86400 * M_C / M_CO2  # gC d-1
    # all flux of cells with land is kept; cells without any land lose theirs
    has_land = (w.values > 0)
    fine_on_land = np.repeat(np.repeat(has_land, 2, axis=0), 2, axis=1)
    expected_land = (fine32 * cell_areas(1.0).values * fine_on_land).sum(axis=(1, 2)) * 1000 * 86400 * M_C / M_CO2
    got = np.nansum(out.values.astype(np.float64) * w.values, axis=(1, 2))
    np.testing.assert_allclose(got, expected_land, rtol=1e-6)
    assert expected_land.sum() < expected.sum()
    assert np.isnan(out.values[:, ~has_land]).all() and np.isfinite(out.values[:, has_land]).all()


def test_monthly_time_encodings_agree(tmp_path):
    """Month starts, mid-month days, 'months since' and a noleap calendar all give month starts."""
    vals, lat, lon = _field(4.0, lead=(2,))
    g = make_grid(4.0)
    w = (g.cell_area * g.land_fraction.astype(float)).where(g.land, 0.0)
    variants = {
        "days": (np.array([0.0, 31.0]), "days since 2001-01-01", "standard"),
        "mid": (np.array([14.0, 45.0]), "days since 2001-01-01", "gregorian"),
        "months": (np.array([0.0, 1.0]), "months since 2001-01-01", "standard"),
        "noleap": (np.array([365.0 * 1 + 15, 365.0 + 46]), "days since 2000-01-01", "noleap"),
    }
    outs = []
    for name, (t, units, cal) in variants.items():
        p = _write_monthly(tmp_path / f"{name}.nc", vals, lat, lon, "gC m-2 d-1", t, units, cal)
        outs.append(read_monthly_flux([p], "flux", start="2001-01-01", end="2001-02-28", target_weight=w).compute())
    for o in outs[1:]:
        xr.testing.assert_identical(o, outs[0])
    np.testing.assert_array_equal(outs[0].values[:, g.land.values], vals.astype(np.float32)[:, g.land.values])


def test_daily_file_averaged_to_whole_months(tmp_path):
    lat, lon = grid_centres(4.0)
    days = pd.date_range("2001-01-01", "2001-02-28")
    rng = np.random.default_rng(1)
    vals = rng.normal(size=(days.size, lat.size, lon.size)).astype(np.float32)
    p = _write_monthly(tmp_path / "d.nc", vals, lat, lon, "gC m-2 d-1", np.arange(days.size, dtype=float),
                       "days since 2001-01-01")
    g = make_grid(4.0)
    w = (g.cell_area * g.land_fraction.astype(float)).where(g.land, 0.0)
    out = read_monthly_flux([p], "flux", start="2001-01-01", end="2001-02-28", target_weight=w).compute()
    exp = np.stack([vals[:31].astype(np.float64).mean(0), vals[31:].astype(np.float64).mean(0)])
    np.testing.assert_allclose(out.values[:, g.land.values], exp[:, g.land.values], rtol=1e-5, atol=1e-6)


def test_noleap_daily_driver_gets_29_february(tmp_path):
    lat, lon = grid_centres(4.0)
    n = 365
    vals = (np.arange(n, dtype=np.float32)[:, None, None] + np.zeros((1, lat.size, lon.size), np.float32))
    ds = xr.Dataset({"Tair": (("time", "lat", "lon"), vals + 273.15, {"units": "K"})},
                    coords={"time": ("time", np.arange(n, dtype=float), {"units": "days since 2004-01-01",
                                                                          "calendar": "noleap"}),
                            "lat": lat, "lon": lon})
    ds.to_netcdf(tmp_path / "Tair.2004.nc")
    out = read_daily_driver([tmp_path / "Tair.2004.nc"], "Tair", "degC", start="2004-01-01", end="2004-12-31",
                            target_res=4.0)
    assert out.sizes["time"] == 366
    day = out.isel(lat=0, lon=0).values
    np.testing.assert_allclose(day[58:60], [58, 58], atol=1e-4)  # 28 Feb and the filled 29 Feb
    np.testing.assert_allclose(day[60], 59, atol=1e-4)           # 1 March = the file's day 60
    np.testing.assert_allclose(day[-1], 364, atol=1e-4)


def test_seasonal_cycle_of_365_days_repeats_the_last(tmp_path):
    lat, lon = grid_centres(4.0)
    vals = np.broadcast_to(np.arange(365, dtype=np.float32)[:, None, None], (365, lat.size, lon.size))
    xr.Dataset({"MSC_FparLST": (("dayofyear", "lat", "lon"), vals, {"units": "K"})},
               coords={"lat": lat, "lon": lon}).to_netcdf(tmp_path / "msc.nc")
    out = read_seasonal_driver([tmp_path / "msc.nc"], "MSC_FparLST", "K", target_res=4.0)
    assert out.dims == ("doy", "lat", "lon") and out.sizes["doy"] == 366
    np.testing.assert_array_equal(out.isel(lat=3, lon=7).values[-3:], [363, 364, 364])


def test_driver_aggregation_is_the_area_weighted_mean(tmp_path):
    lat, lon = grid_centres(2.0)
    rng = np.random.default_rng(5)
    vals = rng.normal(20, 5, size=(2, lat.size, lon.size)).astype(np.float32)
    vals[:, 10, 10] = np.nan  # a missing fine cell is left out of its coarse mean
    xr.Dataset({"Tair": (("time", "lat", "lon"), vals, {"units": "degC"})},
               coords={"time": ("time", [0.0, 1.0], {"units": "days since 2001-01-01"}), "lat": lat, "lon": lon}) \
        .to_netcdf(tmp_path / "t.nc")
    out = read_daily_driver([tmp_path / "t.nc"], "Tair", "degC", start="2001-01-01", end="2001-01-02",
                            target_res=4.0).compute()
    a = cell_areas(2.0).values
    v = vals[0].astype(np.float64)
    blk = (slice(10, 12), slice(10, 12))
    ok = np.isfinite(v[blk])
    exp = (v[blk][ok] * a[blk][ok]).sum() / a[blk][ok].sum()
    assert out.values[0, 5, 5] == pytest.approx(exp, rel=1e-6)
    exp2 = (v[0:2, 0:2] * a[0:2, 0:2]).sum() / a[0:2, 0:2].sum()
    assert out.values[0, 0, 0] == pytest.approx(exp2, rel=1e-6)


# --- twin → files → ingest round trip -----------------------------------------------------------


@pytest.fixture(scope="module")
def round_trip(tiny_twin, tmp_path_factory):
    files = tmp_path_factory.mktemp("files") / "files"
    toml = export_files(tiny_twin, files)
    report = ingest(load_ingest_config(toml))
    return tiny_twin, files, toml, report


# float32 rounding of the unit conversions (Tair in K; inversions in PgC m-2 yr-1 per m² of
# cell; fire in kg CO2 m-2 s-1 per m² of cell); everything else must be identical
_TOL = {("drivers", "Tair"): dict(rtol=0, atol=5e-5), ("inversions", "land_flux"): dict(rtol=1e-6, atol=1e-7),
        ("fire", "co2fire"): dict(rtol=1e-6, atol=1e-7), ("sites", "lon"): dict(rtol=1e-12, atol=1e-12)}


def test_twin_files_round_trip_gives_the_direct_stores(round_trip):
    direct, _, toml, report = round_trip
    out = load_ingest_config(toml).path("stores")
    assert report["out"] == str(out)
    a, b = open_stores(direct), open_stores(out, deep=True)
    for name in REQUIRED_STORES:
        for v, spec in SCHEMAS[name].variables.items():
            if v not in a[name].variables:
                continue
            x, y = a[name][v].values, b[name][v].values
            assert x.shape == y.shape, (name, v)
            if x.dtype.kind == "f":
                np.testing.assert_allclose(y, x, equal_nan=True, err_msg=f"{name}.{v}",
                                           **_TOL.get((name, v), dict(rtol=0, atol=0)))
            else:
                np.testing.assert_array_equal(y, x, err_msg=f"{name}.{v}")
    man = json.loads((out / "fluxscale.json").read_text())
    assert man["kind"] == "ingest" and man["ingest"]["n_files_read"] == report["n_files_read"]
    assert not report["skipped"]


def test_towers_without_a_site_drivers_file_take_their_cell_and_ta_f(round_trip, tmp_path):
    direct, files, toml, _ = round_trip
    cfg = load_ingest_config(toml, out=str(tmp_path / "stores"))
    cfg = dataclasses.replace(cfg, sites=dataclasses.replace(cfg.sites, drivers=None, qc_min=0.8))
    rep = ingest(cfg)
    s = open_store(store_path(tmp_path / "stores", "sites"), "sites")
    twin_sites = open_store(store_path(direct, "sites"), "sites")
    drv = open_store(store_path(direct, "drivers"), "drivers")
    cells = s.cell.values
    # WAI2 and the static drivers: the tower's grid cell (the twin's towers add noise to WAI2)
    np.testing.assert_array_equal(s.WAI2.values, drv.WAI2.values[:, cells].T)
    np.testing.assert_array_equal(s.AMP_Band4.values, np.broadcast_to(drv.AMP_Band4.values[cells][:, None], s.AMP_Band4.shape))
    # Tair: the tower's TA_F inside its record years (the CSV), the grid's outside
    ta = twin_sites.Tair.values
    years = pd.DatetimeIndex(s.time.values).year.to_numpy()
    for i in range(s.sizes["site"]):
        rec = (years >= twin_sites.first_year.values[i]) & (years <= twin_sites.last_year.values[i])
        np.testing.assert_array_equal(s.Tair.values[i, rec], ta[i, rec])
        # (the gridded Tair files are in K: float32 rounding)
        np.testing.assert_allclose(s.Tair.values[i, ~rec], drv.Tair.values[~rec, cells[i]], rtol=0, atol=5e-5)
    # QC threshold: days below 0.8 lose their NEE
    q, n = twin_sites.NEE_QC.values, twin_sites.NEE.values
    np.testing.assert_array_equal(s.NEE.values, np.where(q >= 0.8, n, np.nan).astype(np.float32))
    assert any("QC 0.8" in note for note in rep["notes"])


def test_cli_twin_files_then_ingest(tmp_path, tiny_twin, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(app, ["twin", "--out", str(tmp_path / "f"), "--preset", "tiny", "--format", "files",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    toml = tmp_path / "f" / "ingest.toml"
    assert f"fluxscale ingest {toml}" in r.output
    # progress off a terminal: plain lines naming the store being written (CliRunner's output
    # is no terminal), here every 0.05 s
    monkeypatch.setenv("FLUXSCALE_PROGRESS_INTERVAL", "0.05")
    r = runner.invoke(app, ["ingest", str(toml), "--out", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.output
    assert "files read: 65" in r.output and "40 towers" in r.output
    assert re.search(r"^ingest: drivers, \d+:\d\d elapsed$", r.output, re.M), r.output
    got = open_store(store_path(tmp_path / "ds", "prior"), "prior").NEE.values
    np.testing.assert_array_equal(got, open_store(store_path(tiny_twin, "prior"), "prior").NEE.values)
    r = runner.invoke(app, ["info", str(tmp_path / "ds")])
    assert r.exit_code == 0 and f"ingest of {tmp_path / 'f'}: 65 files read, 0 skipped" in r.output, r.output
    # the twin's truth is kept next to the stores the ingest config writes
    assert (tmp_path / "f" / "stores" / "truth.zarr").is_dir()
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "config file not found" in r.output
    # ingesting over a twin is refused, nothing touched; --overwrite replaces it
    twin_dir = tmp_path / "twin"
    shutil.copytree(tiny_twin, twin_dir)
    before = (twin_dir / "fluxscale.json").read_text()
    r = runner.invoke(app, ["ingest", str(toml), "--out", str(twin_dir), "--no-progress"])
    assert r.exit_code == 2 and "holds a twin; nothing was changed" in r.output and "--overwrite" in r.output, r.output
    assert (twin_dir / "fluxscale.json").read_text() == before
    r = runner.invoke(app, ["ingest", str(toml), "--out", str(twin_dir), "--no-progress", "--overwrite"])
    assert r.exit_code == 0 and json.loads((twin_dir / "fluxscale.json").read_text())["kind"] == "ingest", r.output


def test_sites_off_land_or_without_file_are_skipped_with_reasons(round_trip, tmp_path):
    _, files, toml, _ = round_trip
    work = tmp_path / "files"
    shutil.copytree(files, work, ignore=shutil.ignore_patterns("stores"))
    table = pd.read_csv(work / "sites.csv")
    extra = pd.DataFrame({"SITE_ID": ["XX-Sea", "XX-Nof"], "LOCATION_LAT": [0.0, table.LOCATION_LAT[0]],
                          "LOCATION_LONG": [-140.0, table.LOCATION_LONG[0]], "fold": [1, 2]})
    pd.concat([table, extra]).to_csv(work / "sites.csv", index=False, float_format="%.17g")
    src = next((work / "fluxnet").glob("*.csv"))
    shutil.copy(src, work / "fluxnet" / "FLX_XX-Sea_FLUXNET2015_FULLSET_DD_2001-2001_1-4.csv")
    cfg = load_ingest_config(work / "ingest.toml")
    cfg = dataclasses.replace(cfg, sites=dataclasses.replace(cfg.sites, drivers=None))
    rep = ingest(cfg)
    reasons = dict((w, why) for w, why in rep["skipped"])
    assert any("XX-Sea" in w and "not on a land cell" in why for w, why in reasons.items())
    assert any("XX-Nof" in w and "no FLUXNET daily file" in why for w, why in reasons.items())
    assert "XX-Sea" in rep.text() and "skipped (2)" in rep.text()
    s = open_store(store_path(cfg.path(cfg.out), "sites"), "sites")
    assert s.sizes["site"] == len(table)


def test_fluxnet_name_required(tmp_path):
    p = tmp_path / "tower.csv"
    p.write_text(_CSV)
    with pytest.raises(InputError, match="not a FLUXNET2015 daily file name"):
        read_fluxnet_daily(p)


def test_all_ten_drivers_are_in_the_twin_config(round_trip):
    cfg = load_ingest_config(round_trip[2])
    assert [n for n, _ in cfg.drivers] == list(DRIVER_NAMES)


def test_run_on_ingested_files_then_reuses_and_never_overwrites_them(round_trip, tmp_path):
    """`fluxscale run --ingest` runs the stages on real-format files; a second run reuses
    the ingest; a run without --ingest on that directory uses it instead of making a twin."""
    import subprocess
    import sys

    direct, _, toml, _ = round_trip
    out = tmp_path / "run"

    def run(*extra):
        p = subprocess.run([sys.executable, "-m", "fluxscale", "run", "--data-dir", str(out), "--workers", "1",
                            "--no-progress", "--set", "repeats=4", "--until", "bridges", *extra], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    first = run("--ingest", str(toml))
    assert "ingest → " in first and "every store of" in first and "done" in first
    assert json.loads((out / "fluxscale.json").read_text())["kind"] == "ingest"
    got = open_store(out / "integrals.zarr", "integrals")
    ref = open_store(out / "prior.zarr", "prior")
    np.testing.assert_array_equal(ref.NEE.values, open_store(store_path(direct, "prior"), "prior").NEE.values)
    assert got.sizes["system"] == 5 and "truth" not in got
    assert "reusing the complete ingest" in run("--ingest", str(toml))
    third = run()
    assert "using the ingested data" in third
    assert json.loads((out / "fluxscale.json").read_text())["kind"] == "ingest"
