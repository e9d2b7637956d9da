"""Tower files in every layout read (FLUXNET2015, AmeriFlux-FLUXNET, FLUXNET 2025, ICOS ETC L2;
DD, HH, HR): names, the HH/HR → daily aggregation against numpy on the raw CSV and against a
DD file of the same records, BIF/SITEINFO metadata, the choice of one file per site, bad
input, and the twin → tower files → sites round trip in each layout."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.config import GcbInput, GriddedInput, IngestConfig, SitesInput, load_ingest_config
from fluxscale.errors import InputError
from fluxscale.ingest import ingest, read_fluxnet_daily
from fluxscale.ingest.sites_store import sites_dataset, tower_files
from fluxscale.ingest.gridded import ReadLog
from fluxscale.ingest.sitemeta import read_site_metadata
from fluxscale.ingest.towernames import parse_tower_name
from fluxscale.dataset.stores import open_store, store_path, write_store
from fluxscale.twin.files import TOWER_LAYOUTS, export_files, write_tower_files

from .test_ingest_errors import _check

DATA = Path(__file__).parents[1] / "data" / "towers"
ONEFLUX_CO2TOC = 1.03772448  # oneflux_steps/common/common.h: µmol CO2 m-2 s-1 → gC m-2 d-1

HH_2015 = "FLX_US-Ha1_FLUXNET2015_FULLSET_HH_2004-2004_1-4.csv"
DD_2015 = "FLX_US-Ha1_FLUXNET2015_FULLSET_DD_2004-2004_1-4.csv"
HR_AMF = "AMF_US-Ha1_FLUXNET_FULLSET_HR_1991-2020_3-5.csv"
HH_2025 = "EUF_DE-Tha_FLUXNET_FLUXMET_HH_2023-2023_v1.3_r1.csv"
HH_ICOS = "ICOSETC_FI-Hyy_FLUXNET_HH_L2.csv"




# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, product, site, kind, res", [
    ("FLX_US-Ha1_FLUXNET2015_FULLSET_HH_1991-2012_1-4.csv", "FLUXNET2015", "US-Ha1", "FULLSET", "HH"),
    ("FLX_AR-SLu_FLUXNET2015_SUBSET_DD_2009-2011_1-4.csv", "FLUXNET2015", "AR-SLu", "SUBSET", "DD"),
    ("AMF_US-Ha1_FLUXNET_FULLSET_HR_1991-2020_3-5.csv", "AmeriFlux-FLUXNET", "US-Ha1", "FULLSET", "HR"),
    ("AMF_US-Ha1_FLUXNET_FLUXMET_HR_1991-2025_v1.3_r1.csv", "FLUXNET2025", "US-Ha1", "FLUXMET", "HR"),
    ("SAEON_ZA-Kru_FLUXNET_FLUXMET_DD_2000-2024_v1.3_r1.csv", "FLUXNET2025", "ZA-Kru", "FLUXMET", "DD"),
    ("ICOSETC_FI-Hyy_FLUXNET_HH_L2.csv", "ICOS ETC L2", "FI-Hyy", "L2", "HH"),
    ("FLX_AR-SLu_FLUXNET2015_ERA5_HH_1989-2014_1-3.csv", "FLUXNET2015", "AR-SLu", "ERA5", "HH"),
    ("FLX_AR-SLu_FLUXNET2015_AUXMETEO_2009-2011_1-3.csv", "FLUXNET2015", "AR-SLu", "AUXMETEO", None),
    ("ICOSETC_FI-Hyy_SITEINFO_L2.csv", "ICOS ETC L2", "FI-Hyy", "SITEINFO", None),
    ("TERN_AU-How_FLUXNET_BIF_2001-2024_v1.3_r1.csv", "FLUXNET2025", "AU-How", "BIF", None),
])
def test_tower_names_are_recognised(name, product, site, kind, res):
    n = parse_tower_name(name)
    assert (n.product, n.site, n.kind, n.resolution) == (product, site, kind, res)


@pytest.mark.parametrize("name, words", [
    ("FLX_AR-SLu_FLUXNET2015_ERA5_HH_1989-2014_1-3.csv", ["ERA5", "not tower NEE"]),
    ("AMF_US-Ha1_FLUXNET_AUXNEE_1991-2020_3-5.csv", ["AUXNEE"]),
    ("FLX_US-Ha1_FLUXNET2015_FULLSET_MM_1991-2012_1-4.csv", ["monthly (MM)", "coarser than daily"]),
    ("OZF_AU-How_FLUXNET_FLUXMET_WW_2001-2024_v1.3_r1.csv", ["weekly (WW)", "coarser than daily"]),
    ("AMF_US-Ha1_FLUXNET_FULLSET_YY_1991-2020_3-5.csv", ["yearly (YY)"]),
])
def test_files_that_are_not_daily_nee_are_refused_by_name(tmp_path, name, words):
    p = tmp_path / name
    shutil.copy(DATA / DD_2015, p)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "not a tower's daily NEE record", *words)


@pytest.mark.parametrize("name", ["US-Ha1_halfhourly.csv", "FLX_US-Ha1_FLUXNET2015_FULLSET_HH_2004.csv",
                                  "ICOSETC_FI-Hyy_FLUXNET_HR_L3.csv", "XYZ_US-Ha1_FLUXNET_FLUXMET_HH_2001-2002_v1.3_r1.csv"])
def test_unknown_layout_names_the_file_and_the_known_patterns(tmp_path, name):
    p = tmp_path / name
    shutil.copy(DATA / HH_2015, p)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "not a known tower file name", "FLX_<SITE>_FLUXNET2015_", "AMF_<SITE>_FLUXNET_",
           "_FLUXNET_FLUXMET_", "ICOSETC_<SITE>_FLUXNET_HH_L2.csv")


# --- HH / HR → daily -------------------------------------------------------------------------------

def _expected_daily(raw: pd.DataFrame, per_day: int) -> dict[str, np.ndarray]:
    """ONEFlux's DD values of the whole days of a raw HH/HR table, in plain numpy."""
    start = pd.to_datetime(raw.TIMESTAMP_START.astype(str), format="%Y%m%d%H%M")
    first = int((start.iloc[0] - start.iloc[0].normalize()) / pd.Timedelta(minutes=1440 // per_day))
    assert first == 0
    n_full = len(raw) // per_day
    out = {}
    for col in raw.columns:
        if col.startswith("TIMESTAMP"):
            continue
        v = raw[col].to_numpy(dtype=np.float64)[: n_full * per_day].reshape(n_full, per_day)
        v = np.where(v == -9999, np.nan, v)
        if col == "NEE_VUT_REF_QC":
            out[col] = ((v == 0) | (v == 1)).sum(axis=1) / per_day
        elif col == "P_F":
            out[col] = v.sum(axis=1)
        elif col in ("NEE_VUT_REF", "GPP_NT_VUT_REF"):
            out[col] = v.mean(axis=1) * 86400 * 12.0107e-6
        else:
            out[col] = v.mean(axis=1)
    out["NEE_VUT_REF_QC"] = np.where(np.isnan(out["NEE_VUT_REF"]), np.nan, out["NEE_VUT_REF_QC"])
    return out


@pytest.mark.parametrize("fname, per_day, product", [(HH_2015, 48, "FLUXNET2015"), (HR_AMF, 24, "AmeriFlux-FLUXNET"),
                                                     (HH_2025, 48, "FLUXNET2025"), (HH_ICOS, 48, "ICOS ETC L2")])
def test_subdaily_files_aggregate_like_oneflux(fname, per_day, product):
    raw = pd.read_csv(DATA / fname)
    exp = _expected_daily(raw, per_day)
    ds = read_fluxnet_daily(DATA / fname)
    assert ds.attrs["product"] == product and ds.attrs["resolution"] == ("HR" if per_day == 24 else "HH")
    assert ds.attrs["records_per_day"] == per_day
    n_full = len(raw) // per_day
    day0 = pd.Timestamp(str(raw.TIMESTAMP_START.iloc[0])[:8])
    np.testing.assert_array_equal(ds.time.values[:n_full], pd.date_range(day0, periods=n_full).values)
    np.testing.assert_allclose(ds.NEE.values[:n_full], exp["NEE_VUT_REF"], rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(ds.NEE_QC.values[:n_full], exp["NEE_VUT_REF_QC"], rtol=1e-6, equal_nan=True)
    for col in exp:
        if col in ds and col != "NEE_VUT_REF_QC":
            np.testing.assert_allclose(ds[col].values[:n_full], exp[col], rtol=1e-6, equal_nan=True, err_msg=col)
    assert ds.NEE.attrs["units"] == "gC m-2 d-1" and ds.NEE_QC.attrs["units"] == "1"
    assert ds.TA_F.attrs["units"] == "degC"
    if "P_F" in ds:
        assert ds.P_F.attrs["units"] == "mm d-1"
    if "VPD_F" in ds:
        assert ds.VPD_F.attrs["units"] == "hPa"
    # a partial last day (only in the FLUXNET2015 fixture) is missing, not a mean of fewer records
    assert ds.sizes["time"] == -(-len(raw) // per_day)
    if len(raw) % per_day:
        assert np.isnan(ds.NEE.values[-1]) and np.isnan(ds.NEE_QC.values[-1]) and np.isnan(ds.TA_F.values[-1])


def test_half_hourly_file_gives_the_dd_file_of_the_same_records():
    hh = read_fluxnet_daily(DATA / HH_2015)
    dd = read_fluxnet_daily(DATA / DD_2015)
    assert hh.attrs["site"] == dd.attrs["site"] == "US-Ha1"
    common = hh.sel(time=dd.time)
    for v in dd.data_vars:
        np.testing.assert_allclose(common[v].values, dd[v].values, rtol=2e-7, atol=1e-7, equal_nan=True, err_msg=v)
    # the fixture's own gaps: day 2 has one NEE record missing, day 3 one TA_F record
    assert np.isnan(dd.NEE.values[1]) and np.isnan(hh.NEE.values[1]) and np.isfinite(hh.TA_F.values[1])
    assert np.isnan(hh.TA_F.values[2]) and np.isfinite(hh.NEE.values[2])


def test_qc_threshold_on_aggregated_days():
    raw = pd.read_csv(DATA / HH_ICOS)
    q = raw.NEE_VUT_REF_QC.to_numpy().reshape(-1, 48)
    frac = ((q == 0) | (q == 1)).mean(axis=1)
    thr = float(np.sort(frac)[-1])  # keeps only the best day
    ds = read_fluxnet_daily(DATA / HH_ICOS, qc_min=thr)
    np.testing.assert_array_equal(np.isfinite(ds.NEE.values), frac >= thr)
    assert ds.attrs["n_days_below_qc"] == int((frac < thr).sum())


# --- metadata ---------------------------------------------------------------------------------------

def test_bif_and_siteinfo_give_coordinates_and_igbp():
    meta = read_site_metadata([DATA / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv",
                               DATA / "ICOSETC_FI-Hyy_SITEINFO_L2.csv"])
    # DE-Tha moved in 2016: the location group with the latest LOCATION_DATE_START counts
    assert meta.loc["DE-Tha", ["lat", "lon"]].tolist() == [50.96256, 13.56515]
    assert meta.loc["FI-Hyy", ["lat", "lon"]].tolist() == [61.84741, 24.29477]
    assert meta.igbp.to_dict() == {"DE-Tha": "ENF", "FI-Hyy": "ENF"}


def test_bif_without_coordinates_is_refused(tmp_path):
    p = tmp_path / "OZF_AU-How_FLUXNET_BIF_2001-2024_v1.3_r1.csv"
    p.write_text("SITE_ID,GROUP_ID,VARIABLE_GROUP,VARIABLE,DATAVALUE\nAU-How,1,GRP_IGBP,IGBP,WSA\n"
                 "AU-How,2,GRP_HEADER,SITE_NAME,Howard Springs\n")
    with pytest.raises(InputError) as e:
        read_site_metadata([p])
    _check(e, p, "site AU-How", "no LOCATION_LAT / LOCATION_LONG")


@pytest.mark.parametrize("row, words", [
    ("DE-Tha,28003,GRP_LOCATION,LOCATION_LAT,north", ["line 7, column DATAVALUE", "LOCATION_LAT of site DE-Tha", "'north'"]),
    ("DE-Tha,28003,GRP_LOCATION,LOCATION_LAT,95.1", ["line 7", "not a latitude -90..90"]),
])
def test_bif_bad_coordinate_names_the_line(tmp_path, row, words):
    lines = (DATA / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv").read_text().splitlines()
    assert lines[6].startswith("DE-Tha,28003,GRP_LOCATION,LOCATION_LAT")
    lines[6] = row
    p = tmp_path / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        read_site_metadata([p])
    _check(e, p, *words)


def test_bif_not_long_format(tmp_path):
    p = tmp_path / "sites_meta.csv"
    p.write_text("SITE_ID,LOCATION_LAT,LOCATION_LONG\nDE-Tha,50.9,13.5\n")
    with pytest.raises(InputError) as e:
        read_site_metadata([p])
    _check(e, p, "header", "missing column(s) GROUP_ID, VARIABLE, DATAVALUE", "long-format")


# --- bad half-hourly files ------------------------------------------------------------------------

def _broken(tmp_path, edit) -> Path:
    lines = (DATA / HH_ICOS).read_text().splitlines()
    edit(lines)
    p = tmp_path / HH_ICOS
    p.write_text("\n".join(lines) + "\n")
    return p


def _set(lines, k, col, value):
    """Set column ``col`` of file line ``k`` (1-based, header = line 1)."""
    header = lines[0].split(",")
    f = lines[k - 1].split(",")
    f[header.index(col)] = value
    lines[k - 1] = ",".join(f)


@pytest.mark.parametrize("edit, words", [
    (lambda ls: ls.pop(30), ["line 31", "gap in the record: 1 half-hourly record(s) missing between 202206201400 and "
                                        "202206201500"]),
    (lambda ls: ls.insert(21, ls[20]), ["line 22", "duplicated TIMESTAMP_START 202206200930", "first at line 21"]),
    (lambda ls: ls.__setitem__(slice(9, 11), ls[10:8:-1]), ["line 11", "before the previous record's"]),
    (lambda ls: _set(ls, 12, "TIMESTAMP_END", "202206200600"), ["line 12, column TIMESTAMP_END",
                                                                "is not TIMESTAMP_START 202206200500 + 30 min"]),
    (lambda ls: (_set(ls, 2, "TIMESTAMP_START", "202206192345"), _set(ls, 2, "TIMESTAMP_END", "202206200015")),
     ["line 2, column TIMESTAMP_START", "202206192345 is not on the half hour"]),
    (lambda ls: _set(ls, 5, "TIMESTAMP_START", "2022-06-20 01:30"), ["line 5, column TIMESTAMP_START",
                                                                     "not a time YYYYMMDDHHMM"]),
    (lambda ls: _set(ls, 40, "NEE_VUT_REF_QC", "4"), ["line 40, column NEE_VUT_REF_QC", "QC 4 outside 0..3"]),
    (lambda ls: _set(ls, 41, "NEE_VUT_REF_QC", "0.5"), ["line 41, column NEE_VUT_REF_QC", "QC 0.5 outside 0..3"]),
    (lambda ls: _set(ls, 42, "NEE_VUT_REF", "abc"), ["line 42, column NEE_VUT_REF", "non-numeric value 'abc'"]),
    (lambda ls: ls.__setitem__(0, ls[0].replace("NEE_VUT_REF_QC", "NEE_QC")), ["header",
                                                                              "missing column(s) NEE_VUT_REF_QC"]),
])
def test_broken_half_hourly_file_is_refused(tmp_path, edit, words):
    p = _broken(tmp_path, edit)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, *words)


def test_hourly_file_with_half_hour_steps_is_refused(tmp_path):
    p = tmp_path / "AMF_FI-Hyy_FLUXNET_FULLSET_HR_2022-2022_3-5.csv"
    shutil.copy(DATA / HH_ICOS, p)
    with pytest.raises(InputError) as e:
        read_fluxnet_daily(p)
    _check(e, p, "line 3, column TIMESTAMP_START", "202206200030 is not on the hour (an hourly file)")


# --- one file per site -------------------------------------------------------------------------------

def test_the_finest_file_of_a_site_is_read_and_the_others_skipped(tmp_path):
    for name in (HH_2015, DD_2015, HR_AMF, HH_2025):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copy(DATA / DD_2015, tmp_path / "FLX_US-Ha1_FLUXNET2015_SUBSET_DD_2004-2004_1-4.csv")
    shutil.copy(DATA / DD_2015, tmp_path / "FLX_US-Ha1_FLUXNET2015_ERA5_HH_2004-2004_1-4.csv")
    shutil.copy(DATA / DD_2015, tmp_path / "EUF_DE-Tha_FLUXNET_FLUXMET_MM_2023-2023_v1.3_r1.csv")
    shutil.copy(DATA / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv", tmp_path)
    log = ReadLog()
    cfg = SimpleNamespace(base=str(tmp_path), sites=SimpleNamespace(fluxnet="*.csv"))
    files = tower_files(cfg, log)
    assert {s: p.name for s, p in files.items()} == {"US-Ha1": HH_2015, "DE-Tha": HH_2025}
    why = {Path(w).name: r for w, r in log.skipped}
    assert set(why) == {DD_2015, HR_AMF, "FLX_US-Ha1_FLUXNET2015_SUBSET_DD_2004-2004_1-4.csv",
                        "FLX_US-Ha1_FLUXNET2015_ERA5_HH_2004-2004_1-4.csv",
                        "EUF_DE-Tha_FLUXNET_FLUXMET_MM_2023-2023_v1.3_r1.csv", "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv"}
    assert f"kept {HH_2015}: half-hourly FULLSET before hourly FULLSET" in why[HR_AMF]
    assert "half-hourly FULLSET before daily SUBSET" in why["FLX_US-Ha1_FLUXNET2015_SUBSET_DD_2004-2004_1-4.csv"]
    assert "ERA5" in why["FLX_US-Ha1_FLUXNET2015_ERA5_HH_2004-2004_1-4.csv"]
    assert "coarser than daily" in why["EUF_DE-Tha_FLUXNET_FLUXMET_MM_2023-2023_v1.3_r1.csv"]
    assert "[sites] metadata" in why["EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv"]


# --- twin → tower files (each layout) → sites -------------------------------------------------------

def _sites_cfg(base: Path, towers_toml: str, y0: int, y1: int, **sites) -> IngestConfig:
    kw = {**tomllib.loads(towers_toml), **sites}
    dummy = GriddedInput(files="unused")
    return IngestConfig(base=str(base), out="stores", sites=SitesInput(qc_min=0.0, **kw), drivers=(), prior=dummy,
                        inversions=dummy, fire=dummy, gcb=GcbInput(file="unused"), resolution_deg=2.0,
                        start_year=y0, end_year=y1)


@pytest.fixture(scope="module")
def twin_towers(tiny_twin):
    """Five towers of the tiny twin (records of 1–3 years, with gaps) and its grid."""
    sites = open_store(store_path(tiny_twin, "sites"), "sites").load()
    grid = open_store(store_path(tiny_twin, "grid"), "grid").load()
    return sites.isel(site=[0, 7, 15, 23, 31]), grid, tiny_twin


@pytest.mark.parametrize("layout", TOWER_LAYOUTS)
def test_twin_towers_round_trip_in_each_layout(twin_towers, tmp_path, layout):
    sub, grid, tiny = twin_towers
    time = pd.DatetimeIndex(sub.time.values)
    toml = write_tower_files(sub, time, tmp_path, layout)
    log = ReadLog()
    cfg = _sites_cfg(tmp_path, toml, int(time.year[0]), int(time.year[-1]))
    got = sites_dataset(cfg, grid, store_path(tiny, "drivers"), log)
    assert not log.skipped, log.skipped
    assert list(got.site.values) == list(sub.site.values)
    np.testing.assert_array_equal(got.NEE.values, sub.NEE.values)
    per_day = {"ameriflux-hr": 24, "fluxnet2015-dd": None}.get(layout, 48)
    q = sub.NEE_QC.values.astype(np.float64)
    # HH/HR: the day's QC is a fraction of whole records, the twin's rounded to 1/per_day
    want_qc = q if per_day is None else np.round(q * per_day) / per_day
    np.testing.assert_allclose(got.NEE_QC.values, want_qc, rtol=1e-7, atol=0, equal_nan=True)
    np.testing.assert_array_equal(got.lat.values, sub.lat.values)
    np.testing.assert_allclose(got.lon.values, sub.lon.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.fold.values, sub.fold.values)
    np.testing.assert_array_equal(got.cell.values, sub.cell.values)
    np.testing.assert_array_equal(got.igbp.values, sub.igbp.values)
    # Tair: the towers' TA_F (daily mean of the records) inside their record years
    years = time.year.to_numpy()
    for i in range(sub.sizes["site"]):
        rec = (years >= sub.first_year.values[i]) & (years <= sub.last_year.values[i])
        np.testing.assert_array_equal(got.Tair.values[i, rec], sub.Tair.values[i, rec])
    if per_day:
        assert any("aggregated to days" in n for n in log.notes)


def test_without_a_site_table_coordinates_come_from_bif_and_folds_round_robin(twin_towers, tmp_path):
    sub, grid, tiny = twin_towers
    time = pd.DatetimeIndex(sub.time.values)
    toml = write_tower_files(sub, time, tmp_path, "icos-hh")
    kw = tomllib.loads(toml)
    kw.pop("table")
    (tmp_path / "sites.csv").unlink()
    log = ReadLog()
    cfg = _sites_cfg(tmp_path, "", int(time.year[0]), int(time.year[-1]), **kw)
    got = sites_dataset(cfg, grid, store_path(tiny, "drivers"), log)
    order = np.argsort([str(s) for s in sub.site.values])
    assert list(got.site.values) == list(sub.site.values[order])
    np.testing.assert_array_equal(got.fold.values, np.arange(order.size) % 10)
    np.testing.assert_array_equal(got.lat.values, sub.lat.values[order])
    np.testing.assert_array_equal(got.igbp.values, sub.igbp.values[order])
    np.testing.assert_array_equal(got.NEE.values, sub.NEE.values[order])
    assert any("round-robin" in n for n in log.notes)
    write_store(got, tmp_path / "sites.zarr", "sites")
    back = open_store(tmp_path / "sites.zarr", "sites", deep=True)
    assert [str(v) for v in back.igbp.values] == [str(v) for v in sub.igbp.values[order]]
    assert back.igbp.attrs["long_name"] == "IGBP vegetation class of the tower"


def test_site_without_coordinates_or_table_entry_is_skipped(twin_towers, tmp_path):
    sub, grid, tiny = twin_towers
    time = pd.DatetimeIndex(sub.time.values)
    toml = write_tower_files(sub, time, tmp_path, "fluxnet2025-hh")
    gone = str(sub.site.values[1])
    bif = next((tmp_path / "fluxnet").glob(f"*_{gone}_FLUXNET_BIF_*.csv"))
    bif.unlink()
    log = ReadLog()
    got = sites_dataset(_sites_cfg(tmp_path, toml, int(time.year[0]), int(time.year[-1])), grid,
                         store_path(tiny, "drivers"), log)
    assert gone not in list(got.site.values) and got.sizes["site"] == sub.sizes["site"] - 1
    assert any(gone in r and "no coordinates" in r for _, r in log.skipped), log.skipped


def test_ingest_reads_a_half_hourly_file_over_the_daily_one_and_refuses_a_broken_one(tiny_twin, twin_towers,
                                                                                    tmp_path):
    """A full ingest with one tower's HH file beside its DD file: the HH file is read (its
    QC rounded to records); with a gap in that HH file the ingest fails naming it and leaves
    no store behind."""
    sub, _, _ = twin_towers
    files = tmp_path / "files"
    toml = export_files(tiny_twin, files)
    one = sub.isel(site=[2])
    hh_dir = tmp_path / "hh"
    hh_dir.mkdir()
    write_tower_files(one, pd.DatetimeIndex(sub.time.values), hh_dir, "fluxnet2015-hh")
    hh = next((hh_dir / "fluxnet").glob("FLX_*_HH_*.csv"))
    shutil.copy(hh, files / "fluxnet" / hh.name)
    toml.write_text(toml.read_text().replace('fluxnet = "fluxnet/FLX_*_FLUXNET2015_*_DD_*.csv"',
                                             'fluxnet = "fluxnet/FLX_*.csv"'))
    rep = ingest(load_ingest_config(toml))
    s = open_store(store_path(files / "stores", "sites"), "sites")
    i = list(s.site.values).index(str(one.site.values[0]))
    np.testing.assert_array_equal(s.NEE.values[i], one.NEE.values[0])
    np.testing.assert_allclose(s.NEE_QC.values[i], np.round(one.NEE_QC.values[0].astype(float) * 48) / 48,
                               rtol=1e-7, equal_nan=True)
    assert [why for w, why in rep["skipped"]] == [f"a second file of {one.site.values[0]} (kept {hh.name}: "
                                                  "half-hourly FULLSET before daily FULLSET)"]
    lines = (files / "fluxnet" / hh.name).read_text().splitlines()
    del lines[1000]
    (files / "fluxnet" / hh.name).write_text("\n".join(lines) + "\n")
    shutil.rmtree(files / "stores")
    with pytest.raises(InputError) as e:
        ingest(load_ingest_config(toml))
    _check(e, hh, "line 1001", "gap in the record")  # lines[1000] was file line 1001
    assert not (files / "stores").exists() or not list((files / "stores").glob("*.zarr*"))


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_twin_tower_layout_is_checked(tmp_path):
    r = CliRunner().invoke(app, ["twin", "--out", str(tmp_path / "t"), "--preset", "tiny", "--format", "files",
                                 "--tower-layout", "fluxnet2015-ww", "--no-progress"])
    assert r.exit_code == 2 and "fluxnet2015-ww" in r.output and "icos-hh" in r.output, r.output
    r = CliRunner().invoke(app, ["twin", "--out", str(tmp_path / "t"), "--preset", "tiny", "--tower-layout",
                                 "icos-hh", "--no-progress"])
    assert r.exit_code == 2 and "--format files" in r.output, r.output
    assert not (tmp_path / "t").exists()


def test_config_needs_a_table_or_metadata(tmp_path):
    from fluxscale.dataset.drivers import DRIVER_NAMES
    from fluxscale.errors import ConfigError

    rest = ("[drivers]\n" + "".join(f'{n} = "d/{n}.nc"\n' for n in DRIVER_NAMES)
            + '[prior]\nfiles = "x"\n[inversions]\nfiles = "x"\n[fire]\nfiles = "x"\n[gcb]\nfile = "x"\n')
    p = tmp_path / "ingest.toml"
    p.write_text('[sites]\nfluxnet = "fluxnet/*.csv"\n' + rest)
    with pytest.raises(ConfigError) as e:
        load_ingest_config(p)
    _check(e, p, "[sites]", "'table' or 'metadata' is required")
    p.write_text('[sites]\nfluxnet = "fluxnet/*.csv"\nmetadata = ["fluxnet/*_BIF_*.csv", "icos/*SITEINFO*.csv"]\n' + rest)
    sc = load_ingest_config(p).sites
    assert sc.table is None and sc.metadata == ("fluxnet/*_BIF_*.csv", "icos/*SITEINFO*.csv")


def test_bif_unknown_igbp_class_names_the_line(tmp_path):
    lines = (DATA / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv").read_text().splitlines()
    assert lines[10] == "DE-Tha,28004,GRP_IGBP,IGBP,ENF"
    lines[10] = "DE-Tha,28004,GRP_IGBP,IGBP,Forest"
    p = tmp_path / "EUF_DE-Tha_FLUXNET_BIF_2023-2023_v1.3_r1.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        read_site_metadata([p])
    _check(e, p, "line 11, column DATAVALUE", "IGBP of site DE-Tha is 'Forest'", "ENF, EBF")


def test_two_metadata_files_disagreeing_about_a_site(tmp_path):
    a = DATA / "ICOSETC_FI-Hyy_SITEINFO_L2.csv"
    b = tmp_path / "ICOS_FI-Hyy_FLUXNET_BIF_2020-2024_v1.3_r1.csv"
    b.write_text(a.read_text().replace("61.84741", "61.9"))
    with pytest.raises(InputError) as e:
        read_site_metadata([a, b])
    _check(e, b, "site FI-Hyy", "(61.9, 24.2948) differ from (61.8474, 24.2948)", a.name)
