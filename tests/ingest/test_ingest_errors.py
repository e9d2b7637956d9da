"""Bad input files are refused by ``fluxscale.ingest`` with an :class:`InputError` that
names the file, the variable or line/column at fault, and the problem; a failed
``ingest`` leaves nothing partial behind. Each test writes its own bad file in tmp_path.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.config import load_ingest_config
from fluxscale.errors import ConfigError, InputError
from fluxscale.dataset.grid import coarsen_grid, make_grid
from fluxscale.ingest import ingest
from fluxscale.ingest.fluxnet import read_fluxnet_daily, read_site_table
from fluxscale.ingest.gridded import (decode_time, normalise_space, read_daily_driver, read_monthly_flux,
                                      read_seasonal_driver, read_static_driver)
from fluxscale.dataset.units import M_C, M_CO2


def _check(excinfo, path, *words):
    """The message names the file (its name) and holds every word (exact substrings)."""
    msg = str(excinfo.value)
    assert Path(path).name in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


# --- FLUXNET2015 daily CSV ----------------------------------------------------------------

FLX = "FLX_US-Ab1_FLUXNET2015_FULLSET_DD_2001-2002_1-4.csv"
HEADER = "TIMESTAMP,NEE_VUT_REF,NEE_VUT_REF_QC,TA_F"


def _flx_lines(n: int = 10) -> list[str]:
    """Header (line 1) and n valid daily rows (lines 2..n+1) from 2001-01-01."""
    days = pd.date_range("2001-01-01", periods=n, freq="D")
    return [HEADER] + [f"{d:%Y%m%d},{-1.5 + 0.25 * i:.2f},{0.5 + 0.05 * i:.2f},{3.0 + i:.1f}"
                       for i, d in enumerate(days)]


def _write(tmp_path: Path, lines: list[str], name: str = FLX, end: str = "\n") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + end)
    return p


def _line(lines: list[str], k: int, col: int, value: str) -> None:
    """Set field ``col`` of file line ``k`` (1-based, header = line 1)."""
    f = lines[k - 1].split(",")
    f[col] = value
    lines[k - 1] = ",".join(f)


def test_fluxnet_valid_missing_code_and_qc(tmp_path):
    lines = _flx_lines(6)
    _line(lines, 3, 1, "-9999")  # NEE missing on 2001-01-02
    _line(lines, 4, 3, "-9999")  # TA_F missing on 2001-01-03
    _line(lines, 5, 2, "0.1")  # low QC on 2001-01-04
    ds = read_fluxnet_daily(_write(tmp_path, lines), qc_min=0.5)
    assert ds.attrs["site"] == "US-Ab1" and ds.attrs["fluxnet_set"] == "FULLSET"
    assert ds.sizes["time"] == 6 and ds.time.values[0] == np.datetime64("2001-01-01")
    nee = ds.NEE.values
    assert np.isnan(nee[1]) and np.isnan(nee[3]), nee  # -9999, and QC 0.1 < 0.5
    assert np.isfinite(nee[[0, 2, 4, 5]]).all()
    assert np.isnan(ds.TA_F.values[2]) and ds.TA_F.attrs["units"] == "degC"
    assert ds.attrs["n_days_below_qc"] == 1
    assert not (ds.NEE.values == -9999).any() and not (ds.TA_F.values == -9999).any()


def test_fluxnet_truncated_last_row(tmp_path):
    lines = _flx_lines(8)
    lines[-1] = lines[-1][:12]  # "20010108,0.2" - the file was cut inside the row (line 9)
    p = _write(tmp_path, lines, end="")
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 9", "truncated")


def test_fluxnet_row_with_extra_field(tmp_path):
    lines = _flx_lines(8)
    lines[5] += ",7.5"  # line 6 has 5 fields
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 6", "too many fields: 5 fields, the header has 4")


def test_fluxnet_wrong_header(tmp_path):
    lines = _flx_lines(5)
    lines[0] = "TIMESTAMP,NEE_CUT_REF,NEE_VUT_REF_QC,TA_F"  # no NEE_VUT_REF
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    msg = _check(e, p, "header", "missing column(s) NEE_VUT_REF", "NEE_CUT_REF")
    assert "NEE_VUT_REF_QC" not in msg.split("missing column(s)")[1].split("(found")[0]


def test_fluxnet_missing_qc_column(tmp_path):
    lines = [",".join(f for k, f in enumerate(ln.split(",")) if k != 2) for ln in _flx_lines(5)]
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "header", "missing column(s) NEE_VUT_REF_QC")


@pytest.mark.parametrize("line", [2, 5, 11])
def test_fluxnet_non_numeric_cell(tmp_path, line):
    lines = _flx_lines(10)
    _line(lines, line, 1, "abc")
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, f"line {line}, column NEE_VUT_REF:", "non-numeric value 'abc'")


def test_fluxnet_non_numeric_met_column(tmp_path):
    lines = _flx_lines(10)
    _line(lines, 7, 3, "12,5".replace(",", ";"))  # a decimal comma gone wrong: "12;5"
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 7, column TA_F", "non-numeric value '12;5'")


def test_fluxnet_line_number_after_blank_line(tmp_path):
    lines = _flx_lines(6)
    lines.insert(3, "")  # line 4 is blank
    _line(lines, 6, 1, "abc")  # file line 6
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 6, column NEE_VUT_REF", "non-numeric")


def test_fluxnet_duplicated_dates(tmp_path):
    lines = _flx_lines(10)
    _line(lines, 8, 0, "20010102")  # line 3 holds 2001-01-02
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 8", "duplicated date 2001-01-02", "first at line 3")


@pytest.mark.parametrize("stamp", ["2001-01-04", "20010230", "200101041200", "abc", ""])
def test_fluxnet_malformed_timestamp(tmp_path, stamp):
    lines = _flx_lines(10)
    _line(lines, 5, 0, stamp)
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 5, column TIMESTAMP", "not a date YYYYMMDD", repr(stamp))


@pytest.mark.parametrize("qc", ["1.5", "-0.2"])
def test_fluxnet_qc_outside_0_1(tmp_path, qc):
    lines = _flx_lines(10)
    _line(lines, 7, 2, qc)
    p = _write(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 7, column NEE_VUT_REF_QC", f"QC {float(qc):g} outside 0..1")


def test_fluxnet_empty_file(tmp_path):
    p = tmp_path / FLX
    p.write_bytes(b"")
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "empty file")


def test_fluxnet_header_only(tmp_path):
    p = _write(tmp_path, [HEADER])
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "no data rows")


@pytest.mark.parametrize("name", ["US-Ab1_daily.csv", "FLX_US-Ab1_FLUXNET2015_FULLSET_HH_2001-2002_1-4.csv",
                                  "FLX_US-Ab1_FLUXNET2015_FULLSET_DD_2001-2002_1-4.txt"])
def test_fluxnet_not_a_fluxnet_name(tmp_path, name):
    p = _write(tmp_path, _flx_lines(5), name=name)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "not a FLUXNET2015 daily file name")


def test_fluxnet_file_not_found(tmp_path):
    p = tmp_path / FLX
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "file not found")


# --- site table ------------------------------------------------------------------------------

SITES_HEADER = "SITE_ID,LOCATION_LAT,LOCATION_LONG,fold"


def _sites_lines() -> list[str]:
    return [SITES_HEADER, "US-Ab1,45.2,-93.1,0", "DE-Tha,50.96,13.57,3", "BR-Sa1,-2.86,305.0,9", "AU-How,-12.49,131.15,4"]


def test_site_table_valid(tmp_path):
    t = read_site_table(_write(tmp_path, _sites_lines(), name="sites.csv"))
    assert list(t.index) == ["US-Ab1", "DE-Tha", "BR-Sa1", "AU-How"]
    assert t.loc["BR-Sa1", "lon"] == pytest.approx(-55.0)  # 0..360 → -180..180
    assert list(t.fold) == [0, 3, 9, 4] and list(t.line) == [2, 3, 4, 5]


@pytest.mark.parametrize("row", ["DE-Tha,95,13.57,3", "DE-Tha,-90.5,13.57,3", "DE-Tha,50.96,400,3"])
def test_site_table_site_outside_grid(tmp_path, row):
    lines = _sites_lines()
    lines[2] = row
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "line 3", "site DE-Tha", "outside the grid")


def test_site_table_missing_fold_column(tmp_path):
    lines = [ln.rsplit(",", 1)[0] for ln in _sites_lines()]
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "header", "no fold column")


def test_site_table_missing_latitude_column(tmp_path):
    lines = _sites_lines()
    lines[0] = "SITE_ID,LAT_DEG,LOCATION_LONG,fold"
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "header", "no lat column")


def test_site_table_duplicated_id(tmp_path):
    lines = _sites_lines()
    lines[4] = "DE-Tha,-12.49,131.15,4"  # line 5 repeats line 3's id
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "line 5", "duplicated site id DE-Tha")


@pytest.mark.parametrize("fold", ["12", "-1", "2.5"])
def test_site_table_bad_fold(tmp_path, fold):
    lines = _sites_lines()
    _line(lines, 4, 3, fold)
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "line 4, column fold", f"fold {float(fold):g} is not an integer 0..9")


def test_site_table_non_numeric_latitude(tmp_path):
    lines = _sites_lines()
    _line(lines, 3, 1, "50°57'N")
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "line 3, column LOCATION_LAT", "non-numeric")


def test_site_table_missing_latitude_value(tmp_path):
    lines = _sites_lines()
    _line(lines, 5, 1, "-9999")
    p = _write(tmp_path, lines, name="sites.csv")
    with pytest.raises(InputError) as e:
        read_site_table(p)
    _check(e, p, "line 5, column LOCATION_LAT", "site AU-How has no lat")


# --- gridded NetCDF ----------------------------------------------------------------------------

RES = 4.0


def _centres(res: float = RES) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(-90 + res / 2, 90, res), np.arange(-180 + res / 2, 180, res)


@pytest.fixture(scope="module")
def weights():
    """Target land-area weights (m²) of the 2° grid and of its 4° coarsening."""
    g = make_grid(2.0)
    g4 = coarsen_grid(g, 2)
    w2 = (g.cell_area * g.land_fraction.astype(float)).where(g.land, 0.0)
    w4 = g4.cell_area * g4.land_fraction.astype(float)
    return {2.0: w2, 4.0: w4}


def _nc(path: Path, var: str, values: np.ndarray, tnum: np.ndarray | None, *, units: str | None,
        time_attrs: dict | None = None, lat: np.ndarray | None = None, lon: np.ndarray | None = None,
        lead: str = "time") -> Path:
    lat0, lon0 = _centres()
    lat = lat0 if lat is None else lat
    lon = lon0 if lon is None else lon
    coords = {"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})}
    dims = ("lat", "lon")
    if tnum is not None:
        coords[lead] = (lead, np.asarray(tnum, dtype=np.float64), dict(time_attrs or {}))
        dims = (lead, "lat", "lon")
    attrs = {} if units is None else {"units": units}
    ds = xr.Dataset({var: (dims, values.astype(np.float32), attrs)}, coords=coords)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def _monthly(path: Path, months: pd.DatetimeIndex, *, var: str = "NEE", units: str | None = "gC m-2 d-1",
             time_units: str = "days since 2001-01-01", value: float = 1.0, **kw) -> Path:
    """A monthly flux file, mid-month times ``days since 2001-01-01``."""
    ref = pd.Timestamp("2001-01-01")
    tnum = ((months + pd.Timedelta(days=14)) - ref).days.to_numpy().astype(np.float64)
    lat, lon = kw.get("lat", _centres()[0]), kw.get("lon", _centres()[1])
    vals = np.full((len(months), len(lat), len(lon)), value)
    return _nc(path, var, vals, tnum, units=units, time_attrs={"units": time_units, "calendar": "standard"}, **kw)


def _year(y: int) -> pd.DatetimeIndex:
    return pd.date_range(f"{y}-01-01", f"{y}-12-01", freq="MS")


def _flux(files, weights, *, start="2001-01-01", end="2003-12-31", target=RES, **kw):
    kw.setdefault("variable", "NEE")
    kw.setdefault("basis", "land")
    variable = kw.pop("variable")
    return read_monthly_flux([Path(f) for f in files], variable, start=start, end=end, target_weight=weights[target], **kw)


def _three_years(tmp_path: Path) -> list[Path]:
    return [_monthly(tmp_path / f"NEE.{y}.nc", _year(y)) for y in (2001, 2002, 2003)]


def test_monthly_flux_valid(tmp_path, weights):
    out = _flux(_three_years(tmp_path), weights)
    assert out.dims == ("time", "lat", "lon") and out.shape == (36, 45, 90)
    assert pd.DatetimeIndex(out.time.values)[[0, -1]].strftime("%Y-%m-%d").tolist() == ["2001-01-01", "2003-12-01"]
    v = out.values
    land = weights[RES].values > 0
    np.testing.assert_allclose(v[:, land], 1.0, rtol=1e-6)
    assert np.isnan(v[:, ~land]).all()


def test_monthly_flux_species_from_caller(tmp_path, weights):
    files = [_monthly(tmp_path / f"fire.{y}.nc", _year(y), var="co2fire", units="kg m-2 s-1", value=1e-9)
             for y in (2001, 2002, 2003)]
    out = _flux(files, weights, variable="co2fire", species="CO2", basis="land")
    land = weights[RES].values > 0
    want = 1e-9 * 1e3 * 86400 * M_C / M_CO2
    np.testing.assert_allclose(out.isel(time=0).values[land], want, rtol=1e-5)


def test_monthly_flux_variable_missing(tmp_path, weights):
    files = _three_years(tmp_path)
    with pytest.raises(InputError) as e:
        _flux(files, weights, variable="co2fire", species="CO2")
    _check(e, files[0], "variable 'co2fire'", "missing", "the file has NEE")


@pytest.mark.parametrize("units, words", [
    ("bananas m-2", ("unknown units 'bananas m-2'",)),
    ("kg m-2 s-1", ("units 'kg m-2 s-1'", "carbon or CO2", "species")),
    ("W m-2", ("units 'W m-2'", "not a carbon flux density")),
    ("gC m-2 d-1 K", ("not a carbon flux density",)),
])
def test_monthly_flux_bad_units(tmp_path, weights, units, words):
    files = _three_years(tmp_path)
    bad = _monthly(files[1], _year(2002), units=units)
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'NEE'", *words)


def test_monthly_flux_species_contradiction(tmp_path, weights):
    files = _three_years(tmp_path)
    with pytest.raises(InputError) as e:
        _flux(files, weights, species="CO2")  # the units say gC
    _check(e, files[0], "variable 'NEE'", "say C", "declared as CO2")


def test_monthly_flux_missing_units_attribute(tmp_path, weights):
    files = _three_years(tmp_path)
    bad = _monthly(files[2], _year(2003), units=None)
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'NEE'", "no units attribute")
    # the config's units override makes it readable
    assert _flux(files, weights, units="gC m-2 d-1").sizes["time"] == 36


@pytest.mark.parametrize("kind", ["regional", "irregular", "edges", "lon_short"])
def test_monthly_flux_not_a_global_regular_grid(tmp_path, weights, kind):
    lat, lon = _centres()
    if kind == "regional":
        lat = lat[lat > -60]  # 38 rows from -58 to 88
        lon = lon[: 2 * lat.size]
    elif kind == "irregular":
        lat = lat.copy()
        lat[20] += 1.3
    elif kind == "edges":
        lat, lon = lat - 2.0, lon - 2.0  # -90..86: edges, not centres
    else:
        lon = lon[:-1]
    files = _three_years(tmp_path)
    bad = _monthly(files[0], _year(2001), lat=lat, lon=lon)
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'NEE'", "not a global regular grid of cell centres", f"{lat.size} x {lon.size}")


def test_monthly_flux_grid_coarser_than_target(tmp_path, weights):
    files = _three_years(tmp_path)  # 4° files
    with pytest.raises(InputError) as e:
        _flux(files, weights, target=2.0)  # a 2° target
    _check(e, files[0], "variable 'NEE'", "grid 4° does not match the target 2°", "never interpolates")


def test_monthly_flux_grid_not_integer_ratio(tmp_path, weights):
    lat, lon = _centres(3.0)  # 3° → 4° is a ratio of 4/3
    files = [_monthly(tmp_path / f"NEE.{y}.nc", _year(y), lat=lat, lon=lon) for y in (2001, 2002, 2003)]
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, files[0], "variable 'NEE'", "grid 3° does not match the target 4°")


def test_monthly_flux_empty_year(tmp_path, weights):
    files = _three_years(tmp_path)
    bad = _monthly(files[1], _year(2002)[:0])
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'NEE'", "no time steps", "empty year")


def test_monthly_flux_year_file_missing(tmp_path, weights):
    files = _three_years(tmp_path)
    files[1].unlink()  # 2001 and 2003 only
    with pytest.raises(InputError) as e:
        _flux([files[0], files[2]], weights)
    _check(e, files[0], "variable 'NEE'", "time axis has a gap", "no data for 2002-01", "and 11 more steps",
           "2001-01..2003-12", files[2].name)


def test_monthly_flux_month_missing_inside_a_file(tmp_path, weights):
    files = _three_years(tmp_path)
    _monthly(files[1], _year(2002).delete(5))  # no June 2002
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    msg = _check(e, files[1], "variable 'NEE'", "time axis has a gap", "no data for 2002-06")
    assert "more steps" not in msg


def test_monthly_flux_gap_names_the_file_with_the_gap(tmp_path, weights):
    files = [_monthly(tmp_path / f"NEE.{y}.nc", _year(y)) for y in range(2001, 2006)]
    _monthly(files[4], _year(2005).delete(7))  # no August 2005
    with pytest.raises(InputError) as e:
        _flux(files, weights, end="2005-12-31")
    _check(e, files[4], "time axis has a gap", "2005-08")


def test_monthly_flux_files_overlap(tmp_path, weights):
    a = _monthly(tmp_path / "NEE.2001-2002.nc", pd.date_range("2001-01-01", "2002-12-01", freq="MS"))
    b = _monthly(tmp_path / "NEE.2002.nc", _year(2002))
    c = _monthly(tmp_path / "NEE.2003.nc", _year(2003))
    with pytest.raises(InputError) as e:
        _flux([a, b, c], weights)
    _check(e, b, "variable 'time'", "overlaps NEE.2001-2002.nc", "2002-01-01")


def test_monthly_flux_duplicated_month(tmp_path, weights):
    files = _three_years(tmp_path)
    m = _year(2002)
    bad = _monthly(files[1], m.insert(3, m[3]))  # April twice
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'time'", "duplicated date 2002-04")


@pytest.mark.parametrize("units, words", [
    ("days after 2001-01-01", ("time units 'days after 2001-01-01' are not '<unit> since <date>'",)),
    ("2001-01-01", ("are not '<unit> since <date>'",)),
    ("days since the start", ("cannot decode time",)),
])
def test_monthly_flux_bad_time_units(tmp_path, weights, units, words):
    files = _three_years(tmp_path)
    bad = _monthly(files[2], _year(2003), time_units=units)
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'time'", *words)


def test_monthly_flux_time_without_units(tmp_path, weights):
    files = _three_years(tmp_path)
    lat, lon = _centres()
    bad = _nc(files[0], "NEE", np.ones((12, lat.size, lon.size)), np.arange(12.0), units="gC m-2 d-1",
              time_attrs={})
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, bad, "variable 'time'", "no units attribute")


def test_monthly_flux_not_netcdf(tmp_path, weights):
    files = _three_years(tmp_path)
    files[1].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, files[1], "cannot be read as NetCDF")


def test_monthly_flux_text_file_named_nc(tmp_path, weights):
    files = _three_years(tmp_path)
    files[0].write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(InputError) as e:
        _flux(files, weights)
    _check(e, files[0], "cannot be read as NetCDF")


def test_normalise_space_lat_descending_lon_0_360():
    lat, lon = _centres()
    lon360 = np.mod(lon, 360.0)
    order = np.argsort(lon360)
    vals = np.add.outer(lat, lon).astype(np.float32)  # value = lat + lon
    da = xr.DataArray(vals[::-1][:, order], dims=("latitude", "longitude"),
                      coords={"latitude": lat[::-1], "longitude": lon360[order]})
    out, res = normalise_space(da, "x.nc", "v")
    assert res == RES and out.dims == ("lat", "lon")
    np.testing.assert_array_equal(out.lat.values, lat)
    np.testing.assert_array_equal(out.lon.values, lon)
    np.testing.assert_array_equal(out.values, np.add.outer(lat, lon).astype(np.float32))


def test_normalise_space_no_lat_lon_dims():
    da = xr.DataArray(np.zeros((3, 4)), dims=("row", "col"))
    with pytest.raises(InputError) as e:
        normalise_space(da, "weird.nc", "v")
    _check(e, "weird.nc", "variable 'v'", "needs latitude and longitude dimensions")


def test_decode_time_months_since():
    da = xr.DataArray(np.zeros(3), dims="time",
                      coords={"time": ("time", [0.5, 1.5, 13.5], {"units": "months since 2001-01-01"})})
    out, cal = decode_time(da, "m.nc", "v")
    assert pd.DatetimeIndex(out.time.values).strftime("%Y-%m-%d").tolist() == ["2001-01-01", "2001-02-01", "2002-02-01"]


# --- daily, seasonal, static drivers -------------------------------------------------------------

def _daily(path: Path, days: pd.DatetimeIndex | np.ndarray, *, var: str = "Tair", units: str | None = "K",
           time_units: str = "days since 2001-01-01", calendar: str = "standard", value: float = 273.15) -> Path:
    """A daily driver file; ``days`` are dates or (for odd calendars) numbers."""
    if isinstance(days, pd.DatetimeIndex):
        tnum = (days - pd.Timestamp(time_units.split("since")[1].strip())).days.to_numpy().astype(np.float64)
    else:
        tnum = np.asarray(days, dtype=np.float64)
    lat, lon = _centres()
    vals = np.full((tnum.size, lat.size, lon.size), value)
    return _nc(path, var, vals, tnum, units=units, time_attrs={"units": time_units, "calendar": calendar})


def _days(y: int) -> pd.DatetimeIndex:
    return pd.date_range(f"{y}-01-01", f"{y}-12-31", freq="D")


def _tair(files, start="2001-01-01", end="2001-12-31", **kw):
    return read_daily_driver([Path(f) for f in files], "Tair", "degC", start=start, end=end, target_res=RES, **kw)


def test_daily_driver_valid_kelvin_to_celsius(tmp_path):
    p = _daily(tmp_path / "Tair.2001.nc", _days(2001), value=283.15)
    out = _tair([p])
    assert out.shape == (365, 45, 90) and out.attrs["units"] == "degC"
    np.testing.assert_allclose(out.isel(time=[0, 200]).values, 10.0, atol=1e-4)


def test_daily_driver_360_day_calendar(tmp_path):
    p = _daily(tmp_path / "Tair.2001.nc", np.arange(360), calendar="360_day")
    with pytest.raises(InputError) as e:
        _tair([p])
    _check(e, p, "variable 'time'", "calendar '360_day'", "do not exist")


def test_daily_driver_noleap_fills_29_february(tmp_path):
    p = _daily(tmp_path / "Tair.2004.nc", np.arange(365), time_units="days since 2004-01-01", calendar="noleap")
    out = _tair([p], start="2004-01-01", end="2004-12-31")
    assert out.sizes["time"] == 366
    assert np.datetime64("2004-02-29") in out.time.values


def test_daily_driver_day_missing_inside_file(tmp_path):
    p = _daily(tmp_path / "Tair.2001.nc", _days(2001).delete(68))  # no 2001-03-10
    with pytest.raises(InputError) as e:
        _tair([p])
    _check(e, p, "variable 'Tair'", "time axis has a gap", "no data for 2001-03-10")


def test_daily_driver_year_missing(tmp_path):
    a = _daily(tmp_path / "Tair.2001.nc", _days(2001))
    c = _daily(tmp_path / "Tair.2003.nc", _days(2003), time_units="days since 2003-01-01")
    with pytest.raises(InputError) as e:
        _tair([a, c], end="2003-12-31")
    _check(e, a, "variable 'Tair'", "time axis has a gap", "no data for 2002-01-01", c.name)


def test_daily_driver_files_overlap(tmp_path):
    a = _daily(tmp_path / "Tair.2001.nc", _days(2001))
    b = _daily(tmp_path / "Tair.2001b.nc", pd.date_range("2001-12-01", "2002-12-31"))
    with pytest.raises(InputError) as e:
        _tair([a, b], end="2002-12-31")
    _check(e, b, "variable 'time'", "overlaps Tair.2001.nc", "2001-12-01")


def test_daily_driver_empty_year(tmp_path):
    a = _daily(tmp_path / "Tair.2001.nc", _days(2001))
    b = _daily(tmp_path / "Tair.2002.nc", _days(2002)[:0])
    with pytest.raises(InputError) as e:
        _tair([a, b], end="2002-12-31")
    _check(e, b, "variable 'Tair'", "no time steps", "empty year")


@pytest.mark.parametrize("units, words", [("bananas", ("unknown units 'bananas'",)),
                                          ("m s-1", ("cannot convert 'm s-1' to 'degC'",)),
                                          (None, ("no units attribute",))])
def test_daily_driver_bad_units(tmp_path, units, words):
    p = _daily(tmp_path / "Tair.2001.nc", _days(2001), units=units)
    with pytest.raises(InputError) as e:
        _tair([p])
    _check(e, p, "variable 'Tair'", *words)


def test_daily_driver_variable_missing(tmp_path):
    p = _daily(tmp_path / "Tair.2001.nc", _days(2001), var="tas")
    with pytest.raises(InputError) as e:
        _tair([p])
    _check(e, p, "variable 'Tair'", "missing", "the file has tas")


def _seasonal(path: Path, n: int, units: str | None = "K") -> Path:
    lat, lon = _centres()
    vals = np.broadcast_to(np.arange(1, n + 1, dtype=float)[:, None, None], (n, lat.size, lon.size))
    return _nc(path, "MSC_FparLST", vals, np.arange(1, n + 1), units=units, lead="doy")


def test_seasonal_driver_365_days_padded(tmp_path):
    p = _seasonal(tmp_path / "MSC_FparLST.nc", 365)
    out = read_seasonal_driver([p], "MSC_FparLST", "K", target_res=RES)
    assert out.dims == ("doy", "lat", "lon") and out.sizes["doy"] == 366
    v = out.isel(lat=10, lon=10).values
    assert v[364] == 365 and v[365] == 365 and v[0] == 1


def test_seasonal_driver_wrong_length(tmp_path):
    p = _seasonal(tmp_path / "MSC_FparLST.nc", 52)
    with pytest.raises(InputError) as e:
        read_seasonal_driver([p], "MSC_FparLST", "K", target_res=RES)
    _check(e, p, "variable 'MSC_FparLST'", "365 or 366 steps, found 52")


def test_seasonal_driver_unknown_units(tmp_path):
    p = _seasonal(tmp_path / "MSC_FparLST.nc", 366, units="kelvins of fun")
    with pytest.raises(InputError) as e:
        read_seasonal_driver([p], "MSC_FparLST", "K", target_res=RES)
    _check(e, p, "variable 'MSC_FparLST'", "unknown units")


def test_static_driver_mismatched_grid(tmp_path):
    lat, lon = _centres()
    lat = lat[5:]
    p = _nc(tmp_path / "AMP_Band4.nc", "AMP_Band4", np.zeros((lat.size, lon.size)), None, units="1", lat=lat, lon=lon)
    with pytest.raises(InputError) as e:
        read_static_driver([p], "AMP_Band4", "1", target_res=RES)
    _check(e, p, "variable 'AMP_Band4'", "not a global regular grid")


def test_static_driver_with_time_axis(tmp_path):
    lat, lon = _centres()
    p = _nc(tmp_path / "AMP_Band4.nc", "AMP_Band4", np.zeros((3, lat.size, lon.size)), np.arange(3.0), units="1",
            time_attrs={"units": "days since 2001-01-01"})
    with pytest.raises(InputError) as e:
        read_static_driver([p], "AMP_Band4", "1", target_res=RES)
    _check(e, p, "variable 'AMP_Band4'", "expected (lat, lon)")


# --- ingest(cfg) end to end -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tiny_twin, tmp_path_factory):
    """A valid file set of the tiny twin (with its ingest.toml), written once; copy before breaking."""
    from fluxscale.twin.files import export_files

    toml = export_files(tiny_twin, tmp_path_factory.mktemp("export") / "files")
    return toml.parent


def _copy(exported: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "files"
    shutil.copytree(exported, dst)
    return dst / "ingest.toml"


def _toml_only(exported: Path, tmp_path: Path) -> Path:
    """Just the ingest.toml (config tests never read the data files)."""
    dst = tmp_path / "ingest.toml"
    shutil.copyfile(exported / "ingest.toml", dst)
    return dst


def _state(out: Path) -> tuple[set[str], set[str], bool]:
    if not out.exists():
        return set(), set(), False
    return ({p.name for p in out.glob("*.zarr")}, {p.name for p in out.glob("*.partial")},
            (out / "fluxscale.json").exists())


def _spy(monkeypatch, reader: str, out: Path) -> list[set[str]]:
    """Record the ``*.partial`` stores present whenever ``<reader>`` is called by ingest
    (looked up in ``ingest.build``, or ``ingest.sites_store`` for the tower readers)."""
    import fluxscale.ingest.build as build
    import fluxscale.ingest.sites_store as sites_store

    module = build if hasattr(build, reader) else sites_store
    seen: list[set[str]] = []
    real = getattr(module, reader)

    def wrapper(*a, **kw):
        seen.append({p.name for p in out.glob("*.partial")})
        return real(*a, **kw)

    monkeypatch.setattr(module, reader, wrapper)
    return seen


def _ingest_fails(toml: Path, broken: Path, *words, monkeypatch, reader: str, partial_before: set[str]) -> str:
    """Run ingest on a broken file set; the error names ``broken``; when ``reader`` ran,
    ``partial_before`` stores had been written (so their removal is really tested)."""
    cfg = load_ingest_config(toml)
    out = cfg.path(cfg.out)
    seen = _spy(monkeypatch, reader, out)
    # an older store that the user keeps there (write_twin_files leaves truth.zarr): it must survive
    (out / "truth.zarr").mkdir(parents=True)
    (out / "truth.zarr" / "marker").write_text("keep")
    before = _state(out)
    with pytest.raises(InputError) as e:
        ingest(cfg)
    msg = _check(e, broken, *words)
    assert seen and partial_before <= seen[-1], seen
    zarrs, partial, manifest = _state(out)
    assert zarrs == before[0] == {"truth.zarr"}, zarrs
    assert not partial, partial
    assert not manifest
    assert (out / "truth.zarr" / "marker").read_text() == "keep"
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    return msg


def test_ingest_driver_variable_missing_in_one_year(exported, tmp_path, monkeypatch):
    toml = _copy(exported, tmp_path)
    bad = toml.parent / "drivers" / "Tair.2002.nc"
    ds = xr.load_dataset(bad, decode_times=False)
    ds.rename_vars({"Tair": "tas"}).to_netcdf(bad)  # rewrite the file without its Tair
    _ingest_fails(toml, bad, "variable 'Tair'", "missing", "the file has tas", monkeypatch=monkeypatch,
                  reader="read_daily_driver",
                  partial_before={f"{n}.zarr.partial" for n in ("grid", "prior", "inversions", "fire")})


def test_ingest_corrupt_fluxnet_csv(exported, tmp_path, monkeypatch):
    toml = _copy(exported, tmp_path)
    bad = sorted((toml.parent / "fluxnet").glob("FLX_*.csv"))[0]
    lines = bad.read_text().splitlines()
    _line(lines, 40, 1, "n/a!")
    bad.write_text("\n".join(lines) + "\n")
    _ingest_fails(toml, bad, "line 40, column NEE_VUT_REF", "non-numeric value 'n/a!'", monkeypatch=monkeypatch,
                  reader="read_fluxnet_daily",
                  partial_before={f"{n}.zarr.partial" for n in ("grid", "prior", "inversions", "fire", "drivers")})


def test_ingest_config_unknown_key(exported, tmp_path):
    toml = _toml_only(exported, tmp_path)
    toml.write_text("resolution = 2.0\n" + toml.read_text())  # not resolution_deg
    with pytest.raises(ConfigError) as e:
        load_ingest_config(toml)
    _check(e, toml, "unknown key(s) resolution", "resolution_deg")


def test_ingest_config_unknown_setting_in_table(exported, tmp_path):
    toml = _toml_only(exported, tmp_path)
    toml.write_text(toml.read_text().replace('qc_min = 0.0', 'qc_min = 0.0\nqc_max = 1.0'))
    with pytest.raises(ConfigError) as e:
        load_ingest_config(toml)
    _check(e, toml, "[sites]", "unknown setting(s) qc_max")


def test_ingest_config_missing_driver(exported, tmp_path):
    toml = _toml_only(exported, tmp_path)
    text = toml.read_text()
    assert re.search(r'^WAI2 = "drivers/WAI2\.\*\.nc"$', text, re.M)
    toml.write_text(re.sub(r'^WAI2 = .*\n', "", text, flags=re.M))
    with pytest.raises(ConfigError) as e:
        load_ingest_config(toml)
    _check(e, toml, "[drivers]", "missing WAI2")


def test_ingest_config_missing_table(exported, tmp_path):
    toml = _toml_only(exported, tmp_path)
    text = toml.read_text()
    toml.write_text(text[: text.index("[fire]")] + text[text.index("[gcb]"):])
    with pytest.raises(ConfigError) as e:
        load_ingest_config(toml)
    _check(e, toml, "missing table(s) [fire]")
