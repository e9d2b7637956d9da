"""The twin's products as the files that real data come in (``fluxscale twin --format files``).

:func:`export_files` turns a twin dataset directory into the real formats that
:mod:`fluxscale.ingest` reads, each with the conventions of the real product (so that
twin → files → ingest → pipeline exercises the normalisations), and an ``ingest.toml``
that ingests them back into the same stores:

===========================  ===================================================================
``regions.nc``               ``MASK (region, lat, lon)`` 0/1, latitude descending
``sites.csv``                ``SITE_ID, fold, LOCATION_LAT, LOCATION_LONG, IGBP`` (FLUXNET 2025 and
                             ICOS layouts: ``SITE_ID, fold`` only)
``fluxnet/FLX_*_DD_*.csv``   towers, by ``tower_layout`` (:data:`TOWER_LAYOUTS`, default
                             ``fluxnet2015-dd``): FLUXNET2015 FULLSET daily ``TIMESTAMP,
                             NEE_VUT_REF, NEE_VUT_REF_QC, TA_F``, −9999 for missing, whole years of
                             each tower's record; or FLUXNET2015 HH, AmeriFlux-FLUXNET HR,
                             FLUXNET 2025 FLUXMET HH (+ ``BIF``), ICOS ETC L2 HH (+ ``SITEINFO``):
                             ``TIMESTAMP_START/END``, NEE in µmol m-2 s-1 with a diurnal cycle and
                             integer QC flags, whose daily aggregate is the twin's day
``site_drivers.nc``          the 10 drivers at the towers ``(site, time)``
``drivers/<name>.<YYYY>.nc`` daily ``Tair`` (in K) and ``WAI2``, one file per year, lat descending
``drivers/<name>.nc``        mean seasonal cycles ``(doy, lat, lon)`` and static ``(lat, lon)``
``fluxcom/NEE.RS_METEO…``    FLUXCOM-style monthly NEE, one file per year, lat descending with
                             ``lat_bnds``/``lon_bnds``, ``days since`` mid-month times, per m² of land
``inversions/GCP_…nc``       GCB-style ``land_flux_only_fossil_cement_adjusted (ensemble_member,
                             time, latitude, longitude)``, PgC m-2 yr-1 per m² of cell,
                             longitude 0…360, ``months since`` times, ``ensemble_member_name``
``gfas/cams_gfas_…<YYYY>.nc`` GFAS-style ``co2fire`` kg(CO2) m-2 s-1 per m² of cell, latitude
                             descending, longitude 0…360, ``hours since 1900-01-01``, 0 off land
``gcb/global_carbon_budget.csv`` ``Year, land sink, land sink sigma`` (PgC yr-1, sink positive)
===========================  ===================================================================

Values round-trip exactly except where a unit conversion rounds in float32 (Tair K →
°C, the inversions and fire: relative 1e-6) and, in the HH/HR tower layouts, ``NEE_QC``,
which becomes a whole number of good records per day (the twin's QC rounded to 1/48 or 1/24).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.dataset.schema import DAILY_DRIVERS, DRIVER_NAMES, DRIVER_UNITS
from fluxscale.dataset.grid import coarsen_grid, scatter_cells
from fluxscale.ingest.fluxnet import MISSING
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.dataset.units import M_C, M_CO2

__all__ = ["export_files", "write_twin_files", "write_tower_files", "INGEST_TOML", "TOWER_LAYOUTS"]

INGEST_TOML = "ingest.toml"
_PGC_M2_YR_PER_G_M2_D = 365.25 / 1e15
_KGCO2_M2_S_PER_GC_M2_D = 1e-3 / 86400 * M_CO2 / M_C


def _lat_desc(da: xr.DataArray) -> xr.DataArray:
    return da.isel(lat=slice(None, None, -1))


def _lon_0_360(da: xr.DataArray) -> xr.DataArray:
    k = int(np.searchsorted(da.lon.values, 0.0))
    out = xr.concat([da.isel(lon=slice(k, None)), da.isel(lon=slice(0, k))], dim="lon")
    return out.assign_coords(lon=np.mod(out.lon.values, 360.0))


def _nc(ds: xr.Dataset, path: Path, rename: dict | None = None, time_units: str | None = None) -> None:
    ds = ds.rename(rename or {})
    enc = {v: {"zlib": False, "_FillValue": np.float32(np.nan) if ds[v].dtype.kind == "f" else None}
           for v in ds.data_vars if ds[v].dtype.kind == "f"}
    for c in ("lat", "lon", "latitude", "longitude"):
        if c in ds.coords:
            enc[c] = {"_FillValue": None}
    if "time" in ds.coords and time_units:
        enc["time"] = {"units": time_units, "calendar": "standard", "dtype": "float64"}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, encoding=enc)


def _on_grid(cells: xr.DataArray, grid: xr.Dataset, units: str) -> xr.DataArray:
    """A ``(…, cell)`` field on the ``(…, lat, lon)`` grid (NaN off land), latitude descending."""
    da = scatter_cells(cells.load().drop_encoding(), grid).astype(np.float32)
    da.attrs = {"units": units}
    return _lat_desc(da)


# --- towers in the layouts of the tower products (see fluxscale.ingest.towernames) ---------------

TOWER_LAYOUTS = ("fluxnet2015-dd", "fluxnet2015-hh", "ameriflux-hr", "fluxnet2025-hh", "icos-hh")
"""``tower_layout`` choices: FLUXNET2015 FULLSET daily (the default) or half-hourly,
AmeriFlux-FLUXNET FULLSET hourly, FLUXNET 2025 FLUXMET half-hourly with BIF metadata, ICOS ETC
L2 half-hourly with SITEINFO metadata."""

_NEE_AMP = 5.0
"""Amplitude of the diurnal NEE cycle written into HH/HR records, µmol CO2 m-2 s-1."""
_TA_AMP = 4.0
"""Amplitude of the diurnal TA_F cycle, degC."""
_NET_2025 = {"US": "AMF", "CA": "AMF", "MX": "AMF", "CO": "AMF", "BR": "AMF", "AR": "AMF", "JP": "JPF", "CN": "CNF",
             "KR": "KOF", "AU": "OZF", "ZA": "SAEON"}
"""FLUXNET 2025 network of a twin tower, by the country code of its id (others: EUF)."""


def _check_layout(layout: str) -> None:
    if layout not in TOWER_LAYOUTS:
        from fluxscale.errors import ConfigError

        raise ConfigError(f"tower layout {layout!r}: choose one of {', '.join(TOWER_LAYOUTS)}")


def _subdaily_records(days: pd.DatetimeIndex, nee: np.ndarray, qc: np.ndarray, tair: np.ndarray,
                      per_day: int) -> pd.DataFrame:
    """HH/HR records whose ONEFlux daily aggregates are the given days' values.

    NEE (gC m-2 d-1) → µmol CO2 m-2 s-1 (÷ ONEFlux's ``CO2TOC``) plus a diurnal cosine that
    sums to zero over the day (uptake at midday); the first ``round(QC × per_day)`` records
    of a day are flagged 0/1 (measured, good gap-fill), the others 2/3, so the day's QC
    fraction is QC rounded to 1/per_day; TA_F (degC) plus a zero-mean cycle. A day without
    NEE is −9999 in every record."""
    from fluxscale.ingest.subdaily import CO2TOC

    k = np.arange(per_day)
    shape = np.cos(2.0 * np.pi * (k + 0.5) / per_day)
    step = pd.Timedelta(minutes=1440 // per_day)
    start = pd.DatetimeIndex((days.values[:, None] + k[None, :] * step.to_timedelta64()).ravel())
    nee_rec = nee.astype(np.float64)[:, None] / CO2TOC + _NEE_AMP * shape[None, :]
    n_good = np.round(np.nan_to_num(qc.astype(np.float64)) * per_day)
    flag = np.where(k[None, :] < n_good[:, None], k[None, :] % 2, 2 + k[None, :] % 2)
    flag = np.where(np.isnan(nee)[:, None], int(MISSING), flag)
    ta_rec = tair.astype(np.float64)[:, None] - _TA_AMP * shape[None, :]
    return pd.DataFrame({"TIMESTAMP_START": start.strftime("%Y%m%d%H%M"),
                         "TIMESTAMP_END": (start + step).strftime("%Y%m%d%H%M"),
                         "NEE_VUT_REF": np.nan_to_num(nee_rec.ravel(), nan=MISSING),
                         "NEE_VUT_REF_QC": flag.ravel().astype(np.int64),
                         "TA_F": np.nan_to_num(ta_rec.ravel(), nan=MISSING)})


def _badm_rows(site: str, lat: float, lon: float, igbp: str, y0: int) -> list[tuple[str, str, str, str, str]]:
    """BADM long-format rows (SITE_ID, GROUP_ID, VARIABLE_GROUP, VARIABLE, DATAVALUE)."""
    rows = [(site, "1001", "GRP_LOCATION", "LOCATION_LAT", f"{lat:.17g}"),
            (site, "1001", "GRP_LOCATION", "LOCATION_LONG", f"{lon:.17g}"),
            (site, "1001", "GRP_LOCATION", "LOCATION_DATE_START", f"{y0}0101")]
    if igbp:
        rows.append((site, "2001", "GRP_IGBP", "IGBP", igbp))
    return rows


def write_tower_files(sites: xr.Dataset, time: pd.DatetimeIndex, out: str | Path,
                      tower_layout: str = "fluxnet2015-dd") -> str:
    """Write the twin's towers as the files of one tower product.

    Parameters
    ----------
    sites : xarray.Dataset
        A ``sites`` store: ``NEE`` (gC m-2 d-1), ``NEE_QC``, ``Tair`` (site, time); ``lat``,
        ``lon``, ``fold``, optional ``igbp``, ``first_year``/``last_year`` (site,).
    time : pandas.DatetimeIndex
        The days of ``time``.
    out : path
        Directory: ``sites.csv`` and ``fluxnet/`` are written there.
    tower_layout : str
        One of :data:`TOWER_LAYOUTS`. Daily: ``FLX_<S>_FLUXNET2015_FULLSET_DD_*.csv`` and a
        site table with coordinates. HH/HR: whole days of records (:func:`_subdaily_records`)
        whose daily aggregate is the twin's NEE (QC rounded to whole records); FLUXNET 2025
        and ICOS put coordinates and IGBP in BIF / SITEINFO files and the site table holds
        only the folds.

    Returns
    -------
    str
        The ``[sites]`` lines of ``ingest.toml`` that read these files (``table``,
        ``fluxnet``, ``metadata``).
    """
    _check_layout(tower_layout)
    out = Path(out)
    ids = [str(s) for s in sites.site.values]
    igbp = [str(v) for v in sites.igbp.values] if "igbp" in sites else [""] * len(ids)
    lat, lon = sites.lat.values.astype(np.float64), sites.lon.values.astype(np.float64)
    in_badm = tower_layout in ("fluxnet2025-hh", "icos-hh")
    table = {"SITE_ID": ids, "fold": sites.fold.values}
    if not in_badm:
        table.update(LOCATION_LAT=lat, LOCATION_LONG=lon)
        if any(igbp):
            table["IGBP"] = igbp
    pd.DataFrame(table).to_csv(out / "sites.csv", index=False, float_format="%.17g")
    nee, qc, tair = sites.NEE.values, sites.NEE_QC.values, sites.Tair.values
    fx = out / "fluxnet"
    fx.mkdir(exist_ok=True)
    for i, s in enumerate(ids):
        if "first_year" in sites:
            y0, y1 = int(sites.first_year.values[i]), int(sites.last_year.values[i])
        else:
            yrs = time.year[np.isfinite(nee[i])]
            y0, y1 = int(yrs.min()), int(yrs.max())
        sel = (time.year >= y0) & (time.year <= y1)
        if tower_layout == "fluxnet2015-dd":
            df = pd.DataFrame({"TIMESTAMP": time[sel].strftime("%Y%m%d"), "NEE_VUT_REF": nee[i, sel],
                               "NEE_VUT_REF_QC": qc[i, sel], "TA_F": tair[i, sel]})
            df.fillna(MISSING).to_csv(fx / f"FLX_{s}_FLUXNET2015_FULLSET_DD_{y0}-{y1}_1-4.csv", index=False,
                                      float_format="%.9g")
            continue
        per_day = 24 if tower_layout == "ameriflux-hr" else 48
        rec = _subdaily_records(time[sel], nee[i, sel], qc[i, sel], tair[i, sel], per_day)
        net = _NET_2025.get(s.split("-")[0], "EUF")
        name, cols = {  # each product with its own column order (readers must not rely on one)
            "fluxnet2015-hh": (f"FLX_{s}_FLUXNET2015_FULLSET_HH_{y0}-{y1}_1-4.csv",
                               ["TIMESTAMP_START", "TIMESTAMP_END", "TA_F", "NEE_VUT_REF_QC", "NEE_VUT_REF"]),
            "ameriflux-hr": (f"AMF_{s}_FLUXNET_FULLSET_HR_{y0}-{y1}_3-5.csv",
                             ["TIMESTAMP_START", "TIMESTAMP_END", "NEE_VUT_REF", "TA_F", "NEE_VUT_REF_QC"]),
            "fluxnet2025-hh": (f"{net}_{s}_FLUXNET_FLUXMET_HH_{y0}-{y1}_v1.3_r1.csv",
                               ["TIMESTAMP_START", "TIMESTAMP_END", "NEE_VUT_REF_QC", "NEE_VUT_REF", "TA_F"]),
            "icos-hh": (f"ICOSETC_{s}_FLUXNET_HH_L2.csv",
                        ["TIMESTAMP_START", "TIMESTAMP_END", "TA_F", "NEE_VUT_REF", "NEE_VUT_REF_QC"]),
        }[tower_layout]
        rec[cols].to_csv(fx / name, index=False, float_format="%.17g")
        if tower_layout == "fluxnet2025-hh":
            pd.DataFrame(_badm_rows(s, lat[i], lon[i], igbp[i], y0),
                         columns=["SITE_ID", "GROUP_ID", "VARIABLE_GROUP", "VARIABLE", "DATAVALUE"]) \
                .to_csv(fx / f"{net}_{s}_FLUXNET_BIF_{y0}-{y1}_v1.3_r1.csv", index=False)
        elif tower_layout == "icos-hh":
            pd.DataFrame([r[:2] + r[3:] for r in _badm_rows(s, lat[i], lon[i], igbp[i], y0)],
                         columns=["SITE_ID", "GROUP_ID", "VARIABLE", "DATAVALUE"]) \
                .to_csv(fx / f"ICOSETC_{s}_SITEINFO_L2.csv", index=False)
    glob = {"fluxnet2015-dd": "FLX_*_FLUXNET2015_*_DD_*.csv", "fluxnet2015-hh": "FLX_*_FLUXNET2015_*_HH_*.csv",
            "ameriflux-hr": "AMF_*_FLUXNET_*_HR_*.csv", "fluxnet2025-hh": "*_FLUXNET_FLUXMET_HH_*.csv",
            "icos-hh": "ICOSETC_*_FLUXNET_HH_L2.csv"}[tower_layout]
    lines = ['table = "sites.csv"', f'fluxnet = "fluxnet/{glob}"']
    if in_badm:
        meta = "*_FLUXNET_BIF_*.csv" if tower_layout == "fluxnet2025-hh" else "ICOSETC_*_SITEINFO_L2.csv"
        lines.append(f'metadata = "fluxnet/{meta}"')
    return "\n".join(lines)


def export_files(data_dir: str | Path, out: str | Path, *, stores_out: str = "stores",
                 tower_layout: str = "fluxnet2015-dd") -> Path:
    """Write the twin in ``data_dir`` as real-format files into ``out``; returns the
    ``ingest.toml`` written there (its ``out`` is ``stores_out``, relative to ``out``).
    ``tower_layout`` is the towers' file layout, one of :data:`TOWER_LAYOUTS`."""
    _check_layout(tower_layout)
    data_dir, out = Path(data_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = open_store(store_path(data_dir, "grid"), "grid")
    res = float(grid.attrs["resolution_deg"])
    drivers = open_store(store_path(data_dir, "drivers"), "drivers")
    sites = open_store(store_path(data_dir, "sites"), "sites")
    prior = open_store(store_path(data_dir, "prior"), "prior")
    inv = open_store(store_path(data_dir, "inversions"), "inversions")
    fire = open_store(store_path(data_dir, "fire"), "fire")
    gcb = open_store(store_path(data_dir, "gcb"), "gcb")
    time = pd.DatetimeIndex(drivers.time.values)
    years = sorted(set(time.year))

    # --- region mask: MASK (region, lat, lon), latitude descending ---------------------------
    reg = grid.region.values
    mask = xr.DataArray(np.stack([(reg == r).astype(np.int8) for r in range(18)]), dims=("region", "lat", "lon"),
                        coords={"region": np.arange(18), "lat": grid.lat.values, "lon": grid.lon.values})
    _nc(_lat_desc(mask).to_dataset(name="MASK"), out / "regions.nc")

    # --- plant functional types (where the grid has them): MODIS-style LC_Type1, latitude descending --
    if "pft" in grid:
        lc = xr.DataArray(np.where(grid.pft.values > 0, grid.pft.values, 17).astype(np.uint8), dims=("lat", "lon"),
                          coords={"lat": grid.lat.values, "lon": grid.lon.values},
                          attrs={"long_name": "IGBP class (17 = water: off the land cells)"})
        _nc(_lat_desc(lc).to_dataset(name="LC_Type1"), out / "pft.nc")

    # --- towers: site table / metadata, tower CSVs, drivers at the towers ----------------------
    ids = [str(s) for s in sites.site.values]
    towers_toml = write_tower_files(sites, time, out, tower_layout)
    sd = xr.Dataset({n: (("site", "time"), sites[n].values, {"units": DRIVER_UNITS[n]}) for n in DRIVER_NAMES},
                    coords={"site": np.array(ids, dtype=object), "time": time})
    _nc(sd, out / "site_drivers.nc", time_units=f"days since {time[0].date()}")

    # --- gridded drivers -------------------------------------------------------------------
    dd = out / "drivers"
    for n in DRIVER_NAMES:
        units = "K" if n == "Tair" else DRIVER_UNITS[n]
        if n in DAILY_DRIVERS:
            for y in years:
                v = drivers[n].isel(time=np.flatnonzero(time.year == y))
                if n == "Tair":
                    v = (v.astype(np.float64) + 273.15).astype(np.float32)
                _nc(_on_grid(v, grid, units).to_dataset(name=n), dd / f"{n}.{y}.nc", time_units="days since 1970-01-01")
        else:  # seasonal (doy, cell) and static (cell,)
            _nc(_on_grid(drivers[n], grid, units).to_dataset(name=n), dd / f"{n}.nc")

    # --- FLUXCOM-style prior: one file per year, mid-month times ------------------------------
    months = pd.DatetimeIndex(prior.time.values)
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    for y in sorted(set(months.year)):
        sl = np.flatnonzero(months.year == y)
        da = prior.NEE.isel(time=sl).load().drop_encoding().assign_coords(time=months[sl] + pd.Timedelta(days=14))
        ds = _lat_desc(da).to_dataset(name="NEE")
        half = res / 2  # FLUXCOM files carry the cell bounds
        ds["lat_bnds"] = (("lat", "bnds"), np.stack([ds.lat.values + half, ds.lat.values - half], axis=1))
        ds["lon_bnds"] = (("lon", "bnds"), np.stack([ds.lon.values - half, ds.lon.values + half], axis=1))
        ds.lat.attrs["bounds"], ds.lon.attrs["bounds"] = "lat_bnds", "lon_bnds"
        _nc(ds, out / "fluxcom" / f"NEE.RS_METEO.FP-NONE.MLM-ALL.METEO-ERA5.{nlon}_{nlat}.monthly.{y}.nc",
            time_units="days since 1582-10-15")

    # --- GCB-style inversions: per m² of cell, PgC m-2 yr-1, months since ----------------------
    ig = coarsen_grid(grid, int(round(float(inv.attrs["resolution_deg"]) / res)))
    lf = ig.land_fraction.values.astype(np.float64)
    flux = inv.land_flux.values.astype(np.float64) * lf * _PGC_M2_YR_PER_G_M2_D
    da = xr.DataArray(flux.astype(np.float32), dims=("ensemble_member", "time", "lat", "lon"),
                      coords={"lat": ig.lat.values, "lon": ig.lon.values}, attrs={"units": "PgC m-2 yr-1"})
    ds = _lon_0_360(da).to_dataset(name="land_flux_only_fossil_cement_adjusted")
    ds["ensemble_member_name"] = ("ensemble_member", np.array([str(s) for s in inv.system.values], dtype=object))
    ds = ds.assign_coords(time=("time", np.arange(months.size, dtype=np.float64),
                                {"units": f"months since {months[0].date()}", "calendar": "standard"}))
    _nc(ds, out / "inversions" / f"GCP_inversions_{float(inv.attrs['resolution_deg']):g}deg.nc",
        rename={"lat": "latitude", "lon": "longitude"})

    # --- GFAS-style fire: kg(CO2) m-2 s-1 per m² of cell, 0 off land ----------------------------
    fv = np.nan_to_num(fire.co2fire.values.astype(np.float64) * lf) * _KGCO2_M2_S_PER_GC_M2_D
    for y in sorted(set(months.year)):
        sl = np.flatnonzero(months.year == y)
        da = xr.DataArray(fv[sl].astype(np.float32), dims=("time", "lat", "lon"),
                          coords={"time": months[sl], "lat": ig.lat.values, "lon": ig.lon.values},
                          attrs={"units": "kg m**-2 s**-1", "long_name": "Wildfire flux of Carbon Dioxide"})
        _nc(_lat_desc(_lon_0_360(da)).to_dataset(name="co2fire"), out / "gfas" / f"cams_gfas_co2fire_{y}.nc",
            rename={"lat": "latitude", "lon": "longitude"}, time_units="hours since 1900-01-01 00:00:00.0")

    # --- GCB global budget ---------------------------------------------------------------------
    (out / "gcb").mkdir(exist_ok=True)
    pd.DataFrame({"Year": gcb.year.values, "land sink": -gcb.NEE.values, "land sink sigma": gcb.NEE_sigma.values}) \
        .to_csv(out / "gcb" / "global_carbon_budget.csv", index=False, float_format="%.17g")

    toml = out / INGEST_TOML
    toml.write_text(_ingest_toml(res, float(inv.attrs["resolution_deg"]), years[0], years[-1], stores_out,
                                 drivers["Tair"].encoding["chunks"], towers_toml,
                                 pft="pft.nc" if "pft" in grid else ""))
    return toml


def _ingest_toml(res: float, inv_res: float, y0: int, y1: int, stores_out: str, chunks, towers: str,
                 pft: str = "") -> str:
    pft_line = f'pft = "{pft}"' if pft else "# no PFT map (pft = FILE)"
    drv = "\n".join(f'{n} = "drivers/{n}.*.nc"' if n in DAILY_DRIVERS else f'{n} = "drivers/{n}.nc"'
                    for n in DRIVER_NAMES)
    return f'''# Written by `fluxscale twin --format files`: ingests these files back into the twin's stores.
out = "{stores_out}"
resolution_deg = {res}
inversion_resolution_deg = {inv_res}
start_year = {y0}
end_year = {y1}
region_mask = "regions.nc"
{pft_line}
chunk_days = {int(chunks[0])}
chunk_cells = {int(chunks[1])}

[sites]
{towers}
drivers = "site_drivers.nc"
qc_min = 0.0

[drivers]
{drv}

[prior]
files = "fluxcom/NEE.RS_METEO.*.monthly.*.nc"
variable = "NEE"
basis = "land"

[inversions]
files = "inversions/GCP_inversions_*.nc"
variable = "land_flux_only_fossil_cement_adjusted"
basis = "cell"

[fire]
files = "gfas/cams_gfas_co2fire_*.nc"
variable = "co2fire"
species = "CO2"
basis = "cell"

[gcb]
file = "gcb/global_carbon_budget.csv"
year_column = "Year"
sink_column = "land sink"
sigma_column = "land sink sigma"
'''


def write_twin_files(out: str | Path, cfg, *, client=None, show_progress: bool = True,
                     region_mask: str | Path | None = None, preset: str | None = None,
                     tower_layout: str = "fluxnet2015-dd") -> Path:
    """Make a twin and write it as real-format files into ``out`` (see :func:`export_files`);
    the twin's stores are made in a temporary directory and removed, except ``truth.zarr``,
    which is moved to ``out/stores/`` (where the ingest writes the other stores) so that
    evaluation can score an ingested run against the truth. Returns the ``ingest.toml``."""
    from fluxscale.twin.make import write_twin

    _check_layout(tower_layout)  # before the twin is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".twin-stores-", dir=out))
    try:
        write_twin(tmp, cfg, client=client, show_progress=show_progress, region_mask=region_mask, preset=preset)
        toml = export_files(tmp, out, tower_layout=tower_layout)
        truth = out / "stores" / "truth.zarr"
        truth.parent.mkdir(exist_ok=True)
        if truth.exists():
            shutil.rmtree(truth)
        (tmp / "truth.zarr").rename(truth)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return toml
