"""``sites.zarr`` from real tower files: the finest file per site in any layout users
download, site metadata (lat, lon, IGBP), the towers' cells and the drivers at the towers
(from a site-drivers file or from the tower's cell). Part of ``fluxscale ingest``
(:mod:`fluxscale.ingest.build`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.config import IngestConfig
from fluxscale.dataset.schema import DRIVER_NAMES, DRIVER_UNITS, time_coord, var_attrs
from fluxscale.dataset.drivers import assemble_driver_block
from fluxscale.errors import InputError
from fluxscale.ingest.fluxnet import read_fluxnet_daily, read_site_table
from fluxscale.ingest.gridded import ReadLog, decode_time, expand_files, open_netcdf
from fluxscale.ingest.sitemeta import read_site_metadata
from fluxscale.ingest.towernames import RESOLUTION_WORDS, TowerName, parse_tower_name

__all__ = ["sites_dataset", "tower_files", "site_metadata", "site_drivers_file", "cell_lookup"]

def cell_lookup(grid: xr.Dataset) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    res = float(grid.attrs["resolution_deg"])
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    table = np.full((nlat, nlon), -1, dtype=np.int64)
    table[grid.cell_ilat.values, grid.cell_ilon.values] = np.arange(grid.sizes["cell"])

    def lookup(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        i = np.clip(np.floor((lat + 90.0) / res).astype(np.int64), 0, nlat - 1)
        j = np.floor((((lon + 180.0) % 360.0)) / res).astype(np.int64) % nlon
        return table[i, j]

    return lookup


def site_drivers_file(cfg: IngestConfig, sites: list[str], time: pd.DatetimeIndex, log: ReadLog) -> dict[str, np.ndarray]:
    """The 10 drivers at the towers from a ``(site, time)`` NetCDF: name → (site, time)."""
    path = cfg.path(cfg.sites.drivers)
    ds = open_netcdf(path)
    log.read.append(str(path))
    with ds:
        if "site" not in ds.dims:
            raise InputError(path, None, f"needs a 'site' dimension (dims {tuple(ds.dims)})")
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in ds["site"].values]
        missing = [s for s in sites if s not in names]
        if missing:
            raise InputError(path, "variable 'site'", f"no drivers for site(s) {', '.join(missing[:10])}")
        idx = np.array([names.index(s) for s in sites], dtype=np.int64)
        out = {}
        from fluxscale.ingest.gridded import convert_units

        for n in DRIVER_NAMES:
            if n not in ds.data_vars:
                raise InputError(path, f"variable {n!r}", f"missing (the file has {', '.join(map(str, ds.data_vars))})")
            da = ds[n]
            if set(da.dims) != {"site", "time"}:
                raise InputError(path, f"variable {n!r}", f"expected (site, time), found {tuple(da.dims)}")
            da, _ = decode_time(da.transpose("site", "time"), path, n)
            have = pd.DatetimeIndex(da.time.values)
            gap = time.difference(have)
            if len(gap):
                raise InputError(path, f"variable {n!r}", f"no drivers for {gap[0].date()} ({len(gap)} days of the "
                                                          f"record {time[0].date()}..{time[-1].date()} missing)")
            da = convert_units(da, path, n, None, DRIVER_UNITS[n]).isel(site=idx).sel(time=time)
            vals = np.asarray(da.values, dtype=np.float32)
            if np.isnan(vals).any():
                s, t = np.argwhere(np.isnan(vals))[0]
                raise InputError(path, f"variable {n!r}", f"NaN at site {sites[s]} on {time[t].date()} "
                                                          "(drivers at towers must be gap-filled)")
            out[n] = vals
    return out


def tower_files(cfg: IngestConfig, log: ReadLog) -> dict[str, Path]:
    """The file to read for each site: the finest usable one its globs catch (HH, then HR,
    then DD; FULLSET before SUBSET; :attr:`TowerName.rank`). The others, and files that are
    not a daily NEE record (ERA5, AUX, metadata, WW/MM/YY), are logged as skipped."""
    by_site: dict[str, list[tuple[TowerName, Path]]] = {}
    for f in expand_files(cfg.sites.fluxnet, Path(cfg.base), "FLUXNET tower files"):
        name = parse_tower_name(f)
        if name.problem:
            log.skipped.append((str(f), f"not a tower's daily NEE record: {name.problem}"))
            continue
        by_site.setdefault(name.site, []).append((name, f))
    files: dict[str, Path] = {}
    for site, cands in by_site.items():
        cands.sort(key=lambda c: (c[0].rank, c[1].name))
        best, path = cands[0]
        files[site] = path
        for n, f in cands[1:]:
            log.skipped.append((str(f), f"a second file of {site} (kept {path.name}: {RESOLUTION_WORDS[best.resolution]} "
                                        f"{best.kind} before {RESOLUTION_WORDS[n.resolution]} {n.kind})"))
    return files


def site_metadata(cfg: IngestConfig, log: ReadLog) -> pd.DataFrame:
    """Coordinates and IGBP class from the [sites] metadata files (BIF, SITEINFO)."""
    paths = []
    for f in expand_files(cfg.sites.metadata, Path(cfg.base), "site metadata files") if cfg.sites.metadata else []:
        try:
            kind = parse_tower_name(f).kind
        except InputError:  # any other name: judged by its content
            kind = None
        if kind is not None and kind not in ("BIF", "SITEINFO"):
            log.skipped.append((str(f), f"not site metadata ({kind}): BIF or SITEINFO files give the coordinates"))
            continue
        paths.append(f)
    log.read += [str(p) for p in paths]
    return read_site_metadata(paths)


def sites_dataset(cfg: IngestConfig, grid: xr.Dataset, drivers_path: Path, log: ReadLog) -> xr.Dataset:
    """The ``sites.zarr`` Dataset: each tower's daily record (any tower layout, HH/HR
    aggregated to days), its coordinates (site table, else BIF/SITEINFO metadata), fold
    (table, else sorted ids round-robin into 10 folds), IGBP class and drivers."""
    sc = cfg.sites
    files = tower_files(cfg, log)
    meta = site_metadata(cfg, log)
    if sc.table:
        table_path = cfg.path(sc.table)
        where = table_path.name
        table = read_site_table(table_path, coords_required=not sc.metadata)
        log.read.append(str(table_path))
        for site in sorted(set(files) - set(table.index)):
            log.skipped.append((str(files[site]), f"site {site} is not in the site table {table_path.name}"))
        sites = table.copy()
        m = meta.reindex(sites.index)
        for k in ("lat", "lon"):
            sites[k] = sites[k].where(np.isfinite(sites[k]), m[k])
        sites["igbp"] = [t or (mi if isinstance(mi, str) else "") for t, mi in zip(sites.igbp, m.igbp)]
        sites["label"] = [f"{table_path.name} line {ln}: site {s}" for s, ln in zip(sites.index, sites.line)]
    else:
        table_path = None
        where = "the metadata files"
        for site in sorted(set(files) - set(meta.index)):
            log.skipped.append((str(files[site]), f"site {site} has no coordinates in the [sites] metadata files"))
        sites = meta.sort_index()
        sites["label"] = [f"{src} site {s}" for s, src in zip(sites.index, sites.source)]
    time = pd.date_range(cfg.start, cfg.end, freq="D")
    lookup = cell_lookup(grid)
    located = np.isfinite(sites.lat.to_numpy()) & np.isfinite(sites.lon.to_numpy())
    cells = np.where(located, lookup(np.nan_to_num(sites.lat.to_numpy()), np.nan_to_num(sites.lon.to_numpy())), -1)
    kept, recs, kept_cells = [], [], []
    below = 0
    for (site, row), cell, loc in zip(sites.iterrows(), cells, located):
        if site not in files:
            log.skipped.append((row["label"], "no FLUXNET daily file (no tower file of this site)"))
            continue
        if not loc:
            log.skipped.append((str(files[site]), f"site {site} has no coordinates: not in the site table's lat/lon "
                                                  "nor in the [sites] metadata files"))
            continue
        if cell < 0:
            log.skipped.append((f"site {site}", f"({row.lat:g}, {row.lon:g}) is not on a land cell of the grid"))
            continue
        rec = read_fluxnet_daily(files[site], nee_variable=sc.nee_variable, qc_min=sc.qc_min)
        log.read.append(str(files[site]))
        below += rec.attrs["n_days_below_qc"]
        outside = int((~pd.DatetimeIndex(rec.time.values).isin(time)).sum())
        rec = rec.reindex(time=time)
        if outside:
            log.notes.append(f"{site}: {outside} days outside {time[0].date()}..{time[-1].date()} ignored")
        if not np.isfinite(rec.NEE.values).any():
            log.skipped.append((str(files[site]), f"no NEE passing QC >= {sc.qc_min:g} in the record period"))
            continue
        kept.append(site)
        recs.append(rec)
        kept_cells.append(int(cell))
    if not kept:
        raise InputError(table_path or where, None, "no usable site: every tower was skipped (see the reasons above)")
    if below:
        log.notes.append(f"sites: {below} tower-days with NEE below QC {sc.qc_min:g} dropped")
    sub = [r.attrs["resolution"] for r in recs if r.attrs.get("resolution") in ("HH", "HR")]
    if sub:
        log.notes.append(f"sites: {len(sub)} towers' half-hourly/hourly records aggregated to days (ONEFlux DD rules)")
    cells_k = np.asarray(kept_cells, dtype=np.int64)
    if sc.drivers:
        drv = site_drivers_file(cfg, kept, time, log)
    else:
        block = assemble_driver_block(xr.open_zarr(str(drivers_path), consolidated=True), cell=cells_k)
        drv = {n: block[:, :, k].T.copy() for k, n in enumerate(DRIVER_NAMES)}
        if sc.tower_tair:
            n_tower = 0
            for i, rec in enumerate(recs):
                if "TA_F" in rec:
                    ta = rec.TA_F.values
                    ok = np.isfinite(ta)
                    drv["Tair"][i, ok] = ta[ok]
                    n_tower += int(ok.sum())
            log.notes.append(f"sites: Tair from the towers' TA_F on {n_tower} tower-days, the grid's elsewhere")
    sel = sites.loc[kept]
    if table_path is None:  # no table: sorted ids dealt round-robin into the 10 folds
        fold = np.arange(len(kept)) % 10
        log.notes.append(f"sites: no site table; folds assigned round-robin over the {len(kept)} sorted site ids")
    else:
        fold = sel.fold.to_numpy()
    data = {
        "NEE": (("site", "time"), np.stack([r.NEE.values for r in recs]).astype(np.float32), var_attrs("sites", "NEE")),
        "NEE_QC": (("site", "time"), np.stack([r.NEE_QC.values for r in recs]).astype(np.float32),
                   var_attrs("sites", "NEE_QC")),
        **{n: (("site", "time"), v.astype(np.float32), var_attrs("sites", n)) for n, v in drv.items()},
        "lat": (("site",), sel.lat.to_numpy(dtype=np.float64), var_attrs("sites", "lat")),
        "lon": (("site",), sel.lon.to_numpy(dtype=np.float64), var_attrs("sites", "lon")),
        "fold": (("site",), fold.astype(np.int8), {"long_name": "cross-validation fold (0-9)"}),
        "cell": (("site",), cells_k.astype(np.int32), {"long_name": "land-cell index of the tower's grid cell"}),
    }
    igbp = np.array([str(v) for v in sel.igbp], dtype=object)
    if any(igbp):
        data["igbp"] = (("site",), igbp, {"long_name": "IGBP vegetation class of the tower"})
    layouts = sorted({f"{r.attrs['product']} {r.attrs['resolution']}" for r in recs})
    return xr.Dataset(data, coords={
        "site": ("site", np.array(kept, dtype=object), {"long_name": "tower id", "cf_role": "timeseries_id"}),
        "time": time_coord("time", time, "day")},
        attrs={"title": f"fluxscale ingest: eddy-covariance towers ({', '.join(layouts)})",
               "nee_variable": sc.nee_variable, "qc_min": float(sc.qc_min)})
