"""``fluxscale ingest``: real files → the stores that the twin writes.

Order: grid (shipped land fraction, shipped or user region mask) → prior, inversions,
fire (monthly NetCDF → ``(time, lat, lon)`` on the model and inversion grids) →
drivers (NetCDF → land cells ``(time, cell)``) → sites (FLUXNET CSVs; drivers at the
towers from a site-drivers file or from the tower's cell) → GCB. Each store is written
to ``<name>.zarr.partial``; when every one is written, each is validated deeply against
its schema and the others, and only then are they moved into place and the manifest
``fluxscale.json`` (with the read/skipped summary) written. On any error the partial
stores are removed: nothing incomplete is left looking complete.

Large arrays stay lazy (Dask) and are written chunk by chunk under whatever scheduler
is active (a ``distributed.Client`` if given), so memory per task is bounded by a
source chunk (``time_chunk`` days × the source grid) whatever the record length.
"""

from __future__ import annotations

import json
import shutil
import time as _time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from fluxscale import __version__
from fluxscale.config import GriddedInput, IngestConfig
from fluxscale.dataset.drivers import DAILY_DRIVERS, DRIVER_NAMES, DRIVER_UNITS, SEASONAL_DRIVERS, assemble_driver_block
from fluxscale.errors import InputError
from fluxscale.dataset.grid import coarsen_grid, gather_cells, make_grid
from fluxscale.dataset.schema import REQUIRED_STORES, time_coord, var_attrs
from fluxscale.dataset.stores import cross_checks, begin_dataset, cell_codecs, commit_store, open_store, partial_path, store_path, write_store
from fluxscale.ingest.fluxnet import read_fluxnet_daily, read_site_table
from fluxscale.ingest.sitemeta import read_site_metadata
from fluxscale.ingest.towernames import RESOLUTION_WORDS, TowerName, parse_tower_name
from fluxscale.ingest import gcb
from fluxscale.ingest import xbase
from fluxscale.ingest.gridded import (LAT_NAMES, ReadLog, decode_time, expand_files, open_netcdf, read_daily_driver, read_monthly_flux,
                      read_seasonal_driver, read_static_driver)

__all__ = ["ingest", "IngestReport", "config_dict"]

DEFAULTS = {
    # product: (variable, basis, species)
    "prior": ("NEE", "land", "C"),
    "inversions": ("land_flux_only_fossil_cement_adjusted", "cell", "C"),
    "fire": ("co2fire", "cell", "CO2"),
}


class IngestReport(dict):
    """What was read, skipped (and why), changed and how long it took; JSON-able."""

    def text(self) -> str:
        lines = [f"ingest → {self['out']}"]
        for name, info in self["stores"].items():
            lines.append(f"  {name:<11} {info}")
        lines.append(f"  files read: {self['n_files_read']}")
        if self["skipped"]:
            lines.append(f"  skipped ({len(self['skipped'])}):")
            lines += [f"    {what}: {why}" for what, why in self["skipped"][:40]]
            if len(self["skipped"]) > 40:
                lines.append(f"    … and {len(self['skipped']) - 40} more (see fluxscale.json)")
        if self["notes"]:
            lines.append("  notes:")
            lines += [f"    {n}" for n in self["notes"]]
        return "\n".join(lines)


def _src(cfg: IngestConfig, product: str, gi: GriddedInput) -> tuple[str, str, str]:
    """(variable, basis, default species) of a product: the config's, else the product's."""
    var, basis, species = DEFAULTS[product]
    return gi.variable or var, gi.basis or basis, species


def _files(cfg: IngestConfig, spec, what: str) -> list[Path]:
    return expand_files(spec, Path(cfg.base), what)


def _monthly_store(name: str, var: str, da: xr.DataArray, grid: xr.Dataset, title: str) -> tuple[xr.Dataset, dict]:
    lead = [d for d in da.dims if d not in ("time", "lat", "lon")]
    chunks = {**{d: 1 for d in lead}, "time": 12, "lat": -1, "lon": -1}
    da = da.chunk(chunks).assign_coords(lat=grid.lat, lon=grid.lon)
    da.attrs = var_attrs(name, var)
    ds = xr.Dataset({var: da}, attrs={"title": title, "resolution_deg": grid.attrs["resolution_deg"],
                                      "Conventions": "CF-1.10"})
    ds = ds.assign_coords(time=time_coord("time", ds.time.values, "month start"))
    enc = {var: {"chunks": tuple(1 for _ in lead) + (12, grid.sizes["lat"], grid.sizes["lon"])}}
    return ds, enc


def _member_names(path: Path, member_dim: str, n: int) -> list[str] | None:
    """The members' names of a GCB-style file (``ensemble_member_name``, a char array);
    None when the file does not name them."""
    ds = open_netcdf(path)
    with ds:
        names = gcb.member_names(ds, member_dim)
    if names is not None and len(names) != n:
        raise InputError(path, "variable 'ensemble_member_name'", f"{len(names)} names for {n} members")
    return names


def _read_inversions(cfg: IngestConfig, inv_weight: xr.DataArray, log: ReadLog) -> xr.DataArray:
    """The chosen inversion systems ``(system, time, lat, lon)`` gC m-2 d-1 per m² of land
    on the inversions' grid, lazy; members chosen with :func:`gcb.choose_members` and
    checked for NaN on land in the record (:func:`gcb.nan_report`): an all-NaN member is
    refused when named in ``[inversions] systems`` and skipped (logged) when chosen by
    default; partial gaps are logged with their first month and cell."""
    gi = cfg.inversions
    var, basis, species = _src(cfg, "inversions", gi)
    kw = dict(start=cfg.start, end=cfg.end, target_weight=inv_weight, species=gi.species, default_species=species,
              basis=basis, units=gi.units, log=log)
    if gi.files and isinstance(gi.files[0], tuple):  # {system = glob}: one product per system
        source, parts = {}, []
        for s, g in gi.files:
            fs = _files(cfg, g, f"{s} inversion files")
            _check_inversion_variable(fs, var)
            source[s] = (fs[0], s)
            parts.append(read_monthly_flux(fs, var, **kw).expand_dims(system=np.array([s], dtype=object)))
        da, explicit = xr.concat(parts, dim="system"), True
    else:
        files = _files(cfg, gi.files, "inversion files")
        _check_inversion_variable(files, var)
        da = read_monthly_flux(files, var, member_dim=gi.member_dim, **kw)
        n = da.sizes[gi.member_dim]
        names = _member_names(files[0], gi.member_dim, n)
        if names is None:
            if len(gi.systems) != n:
                raise InputError(files[0], f"variable {var!r}", f"{n} ensemble members and no 'ensemble_member_name' "
                                                                f"variable: name them with [inversions] systems = [...]")
            choice = gcb.Choice(list(range(n)), list(gi.systems), list(gi.systems), explicit=True)
        else:
            choice = gcb.choose_members(names, gi.systems, files[0])
        log.notes += choice.notes
        log.skipped += choice.skipped
        da = da.isel({gi.member_dim: choice.index}).rename({gi.member_dim: "system"})
        da = da.assign_coords(system=("system", np.array(choice.names, dtype=object)))
        source = {s: (files[0], fn) for s, fn in zip(choice.names, choice.file_names)}
        explicit = choice.explicit
    period = f"{cfg.start_year}..{cfg.end_year}"
    keep = []
    for gaps in gcb.nan_report(da, np.asarray(inv_weight.values) > 0):
        path, file_name = source[gaps.member]
        if gaps.all_nan:
            if explicit:
                raise InputError(path, f"variable {var!r}", f"member {file_name!r} is all NaN on land in the record "
                                                            f"period {period}: leave it out of [inversions] systems")
            log.skipped.append((f"{path.name}: member {file_name}", f"all NaN on land in {period} (not used)"))
            continue
        keep.append(gaps.member)
        if gaps.n_months_with_nan:
            lat, lon = gaps.first_cell
            log.notes.append(f"{path.name}: member {file_name!r} ({var}) has NaN on land cells in "
                             f"{gaps.n_months_with_nan} of {gaps.n_months} months of {period}; first "
                             f"{gaps.first_month:%Y-%m} at cell ({lat:g}, {lon:g})")
    if not keep:
        raise InputError(next(iter(source.values()))[0], f"variable {var!r}",
                         f"no chosen member has values on land in {period}")
    return da.sel(system=keep) if len(keep) < da.sizes["system"] else da


def _check_inversion_variable(files: list[Path], var: str) -> None:
    for f in files:
        ds = open_netcdf(f)
        with ds:
            gcb.check_variable(ds, f, var)


def _native_resolution(cfg: IngestConfig) -> float:
    gi = cfg.inversions
    spec = gi.files[0][1] if gi.files and isinstance(gi.files[0], tuple) else gi.files
    first = _files(cfg, spec, "inversion files")[0]
    var = _src(cfg, "inversions", gi)[0]
    ds = open_netcdf(first)
    with ds:
        gcb.check_variable(ds, first, var)
        da = ds[var]
        lat = next((d for d in LAT_NAMES if d in da.dims), None)
        if lat is None:
            raise InputError(first, f"variable {var!r}", f"needs latitude and longitude dimensions, has {da.dims}")
        return 180.0 / da.sizes[lat]


def _drivers_dataset(cfg: IngestConfig, grid: xr.Dataset, log: ReadLog) -> tuple[xr.Dataset, dict]:
    res = float(grid.attrs["resolution_deg"])
    cc, cd = cfg.chunk_cells, cfg.chunk_days
    data, enc = {}, {}
    for name, gi in cfg.drivers:
        files = _files(cfg, gi.files, f"{name} driver files")
        kw = dict(variable=gi.variable or name, file_units=gi.units, target_res=res, log=log)
        if name in DAILY_DRIVERS:
            da = read_daily_driver(files, name, DRIVER_UNITS[name], start=cfg.start, end=cfg.end, **kw)
            chunks = {"time": cd, "cell": cc}
        elif name in SEASONAL_DRIVERS:
            da = read_seasonal_driver(files, name, DRIVER_UNITS[name], **kw)
            chunks = {"doy": 366, "cell": cc}
        else:
            da = read_static_driver(files, name, DRIVER_UNITS[name], **kw)
            chunks = {"cell": cc}
        da = gather_cells(da.drop_vars([c for c in da.coords if c not in ("lat", "lon")]), grid).chunk(chunks)
        da = da.drop_vars([c for c in da.coords if c not in da.dims])
        da.attrs = var_attrs("drivers", name)
        data[name] = da
        enc[name] = {"chunks": tuple(chunks[d] if chunks[d] != -1 else da.sizes[d] for d in da.dims),
                     "compressors": cell_codecs()}
    time = pd.date_range(cfg.start, cfg.end, freq="D")
    ds = xr.Dataset(data, coords={
        "time": time_coord("time", time, "day"),
        "doy": ("doy", np.arange(1, 367, dtype=np.int16), {"long_name": "day of year of the mean seasonal cycle"}),
        "cell": grid.cell, "cell_lat": grid.cell_lat, "cell_lon": grid.cell_lon,
    }, attrs={"title": "fluxscale ingest: drivers (Table A2)", "layout": "land cells gathered on 'cell' (see grid.zarr)",
              "Conventions": "CF-1.10"})
    return ds, enc


def _cell_lookup(grid: xr.Dataset) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    res = float(grid.attrs["resolution_deg"])
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    table = np.full((nlat, nlon), -1, dtype=np.int64)
    table[grid.cell_ilat.values, grid.cell_ilon.values] = np.arange(grid.sizes["cell"])

    def lookup(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        i = np.clip(np.floor((lat + 90.0) / res).astype(np.int64), 0, nlat - 1)
        j = np.floor((((lon + 180.0) % 360.0)) / res).astype(np.int64) % nlon
        return table[i, j]

    return lookup


def _site_drivers_file(cfg: IngestConfig, sites: list[str], time: pd.DatetimeIndex, log: ReadLog) -> dict[str, np.ndarray]:
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


def _tower_files(cfg: IngestConfig, log: ReadLog) -> dict[str, Path]:
    """The file to read for each site: the finest usable one its globs catch (HH, then HR,
    then DD; FULLSET before SUBSET; :attr:`TowerName.rank`). The others, and files that are
    not a daily NEE record (ERA5, AUX, metadata, WW/MM/YY), are logged as skipped."""
    by_site: dict[str, list[tuple[TowerName, Path]]] = {}
    for f in _files(cfg, cfg.sites.fluxnet, "FLUXNET tower files"):
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


def _site_metadata(cfg: IngestConfig, log: ReadLog) -> pd.DataFrame:
    """Coordinates and IGBP class from the [sites] metadata files (BIF, SITEINFO)."""
    paths = []
    for f in _files(cfg, cfg.sites.metadata, "site metadata files") if cfg.sites.metadata else []:
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


def _sites_dataset(cfg: IngestConfig, grid: xr.Dataset, drivers_path: Path, log: ReadLog) -> xr.Dataset:
    """The ``sites.zarr`` Dataset: each tower's daily record (any tower layout, HH/HR
    aggregated to days), its coordinates (site table, else BIF/SITEINFO metadata), fold
    (table, else sorted ids round-robin into 10 folds), IGBP class and drivers."""
    sc = cfg.sites
    files = _tower_files(cfg, log)
    meta = _site_metadata(cfg, log)
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
    lookup = _cell_lookup(grid)
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
        drv = _site_drivers_file(cfg, kept, time, log)
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


def _gcb_dataset(cfg: IngestConfig, log: ReadLog) -> xr.Dataset:
    g = cfg.gcb
    path = cfg.path(g.file)
    from fluxscale.ingest.csvtable import line_of as _line, numeric as _numeric, read_table as _read_table

    df = _read_table(path)
    log.read.append(str(path))
    cols = [g.year_column, g.sink_column] + ([g.sigma_column] if g.sigma_column else [])
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)} (found: {', '.join(df.columns)})")
    year = _numeric(df, g.year_column, path)
    sink = _numeric(df, g.sink_column, path)
    sigma = _numeric(df, g.sigma_column, path) if g.sigma_column else np.full(year.size, g.sigma)
    want = np.arange(cfg.start_year, cfg.end_year + 1)
    rows = []
    for y in want:
        hit = np.flatnonzero(year == y)
        if hit.size == 0:
            raise InputError(path, f"column {g.year_column}", f"no row for year {y} of the record")
        if hit.size > 1:
            raise InputError(path, f"line {_line(df, hit[1])}", f"duplicated year {y}")
        if np.isnan(sink[hit[0]]) or np.isnan(sigma[hit[0]]):
            raise InputError(path, f"line {_line(df, hit[0])}", f"year {y} has no land sink or sigma")
        rows.append(hit[0])
    rows = np.asarray(rows)
    return xr.Dataset({"NEE": (("year",), -sink[rows], var_attrs("gcb", "NEE")),
                       "NEE_sigma": (("year",), sigma[rows], var_attrs("gcb", "NEE_sigma"))},
                      coords={"year": want.astype(np.int32)},
                      attrs={"title": "fluxscale ingest: GCB residual land sink", "source": str(path)})


def _compute_store(ds: xr.Dataset, path: Path, name: str, enc: dict, client, show_progress: bool) -> None:
    """Write a lazily computed store to ``path.partial`` (chunk by chunk)."""
    from fluxscale.parallel import plain_progress_wanted, working

    if show_progress and plain_progress_wanted():  # a log file: elapsed-time lines, not a live bar
        with working(f"ingest: {name}"):
            _compute_store(ds, path, name, enc, client, show_progress=False)
        return
    if client is not None:
        delayed = write_store(ds, path, name, enc, commit=False, compute=False)
        fut = client.compute(delayed)
        if show_progress:
            from distributed import progress

            progress(fut)
        fut.result()
    else:
        import contextlib

        from dask.diagnostics import ProgressBar  # shows nothing under a Client, hence the branch above

        with dask.config.set(scheduler="threads"), (ProgressBar(minimum=2.0) if show_progress else contextlib.nullcontext()):
            write_store(ds, path, name, enc, commit=False)


def ingest(cfg: IngestConfig, *, client=None, show_progress: bool = False,
           say: Callable[[str], None] = lambda m: None) -> IngestReport:
    """Read every input of ``cfg`` and write the dataset directory ``cfg.out``.

    Returns
    -------
    IngestReport
        ``out``, per-store descriptions, files read, skipped inputs with reasons,
        notes (conversions, fills), timings; also stored in the manifest.

    Raises
    ------
    InputError, StoreError
        Naming the file and the variable or line; no store is left in place from
        this run (the partial ones are removed).
    """
    out = cfg.path(cfg.out)
    log = ReadLog()
    timings: dict[str, float] = {}
    t_start = _time.perf_counter()
    paths = {n: store_path(out, n) for n in REQUIRED_STORES}
    begin_dataset(out)
    try:
        t = _time.perf_counter()
        grid = make_grid(cfg.resolution_deg, cfg.path(cfg.region_mask) if cfg.region_mask else None)
        if cfg.pft:  # optional: the majority IGBP class of every cell, kept in the grid (fluxscale.ingest.pft)
            from fluxscale.ingest.pft import read_pft

            grid = grid.assign(read_pft(cfg.path(cfg.pft), grid, cfg.pft_variable, log).data_vars)
        write_store(grid, paths["grid"], "grid", commit=False)
        inv_res = cfg.inversion_resolution_deg or _native_resolution(cfg)
        factor = inv_res / cfg.resolution_deg
        if abs(factor - round(factor)) > 1e-6 or round(factor) < 1:
            raise InputError(cfg.path(cfg.out), None, f"the inversions' grid {inv_res:g}° is not an integer coarsening "
                                                      f"of the model grid {cfg.resolution_deg:g}°")
        inv_grid = coarsen_grid(grid, int(round(factor)))
        timings["grid"] = _time.perf_counter() - t
        say(f"ingest: grid {cfg.resolution_deg:g}° ({grid.sizes['cell']} land cells), inversions on {inv_res:g}°")

        w_model = (grid.cell_area * grid.land_fraction.astype(np.float64)).where(grid.land, 0.0)
        w_inv = inv_grid.cell_area * inv_grid.land_fraction.astype(np.float64)
        for name, title in (("prior", "prior NEE (FLUXCOM RS+METEO)"), ("inversions", "atmospheric inversions"),
                            ("fire", "fire CO2 emissions")):
            t = _time.perf_counter()
            gi = getattr(cfg, name)
            var, basis, species = _src(cfg, name, gi)
            if name == "inversions":
                da, g, store_var = _read_inversions(cfg, w_inv, log), inv_grid, "land_flux"
            else:
                g = grid if name == "prior" else inv_grid
                files = _files(cfg, gi.files, f"{name} files")
                if name == "prior" and any(xbase.is_zarr(f) for f in files):  # a FLUXCOM-X-BASE cube
                    if len(files) != 1:
                        raise InputError(files[0], f"variable {var!r}", f"the prior as a Zarr cube comes in one store, "
                                                                        f"{len(files)} paths match")
                    da = xbase.read_xbase_nee(files[0], var, start=cfg.start, end=cfg.end, target_weight=w_model,
                                              basis=gi.basis, units=gi.units, species=gi.species, log=log)
                else:
                    da = read_monthly_flux(files, var, start=cfg.start, end=cfg.end,
                                           target_weight=w_model if name == "prior" else w_inv, species=gi.species,
                                           default_species=species, basis=basis, units=gi.units, log=log)
                store_var = "NEE" if name == "prior" else "co2fire"
            ds, enc = _monthly_store(name, store_var, da, g, f"fluxscale ingest: {title}")
            _compute_store(ds, paths[name], name, enc, client, show_progress)
            timings[name] = _time.perf_counter() - t
            say(f"ingest: {name} ({var}, per m² {basis}) in {timings[name]:.1f} s")

        t = _time.perf_counter()
        ds, enc = _drivers_dataset(cfg, grid, log)
        _compute_store(ds, paths["drivers"], "drivers", enc, client, show_progress)
        timings["drivers"] = _time.perf_counter() - t
        say(f"ingest: drivers ({len(DRIVER_NAMES)}) in {timings['drivers']:.1f} s")

        t = _time.perf_counter()
        sites = _sites_dataset(cfg, grid, partial_path(paths["drivers"]), log)
        write_store(sites, paths["sites"], "sites", commit=False)
        timings["sites"] = _time.perf_counter() - t
        say(f"ingest: sites ({sites.sizes['site']} towers) in {timings['sites']:.1f} s")
        write_store(_gcb_dataset(cfg, log), paths["gcb"], "gcb", commit=False)

        t = _time.perf_counter()
        opened = {n: open_store(partial_path(p), n, deep=True) for n, p in paths.items()}
        cross_checks(opened, out)
        described = {n: _describe(n, opened[n]) for n in paths}  # before the move: they read the .partial paths
        timings["validate"] = _time.perf_counter() - t
    except BaseException:
        for p in paths.values():
            if partial_path(p).exists():
                shutil.rmtree(partial_path(p))
        raise
    for p in paths.values():
        commit_store(p)
    timings["total"] = _time.perf_counter() - t_start
    report = IngestReport(
        out=str(out),
        stores=described,
        n_files_read=len(set(log.read)),
        files_read=sorted(set(log.read)),
        skipped=[list(s) for s in log.skipped],
        notes=log.notes,
        timings_s={k: round(v, 2) for k, v in timings.items()},
    )
    manifest = {"kind": "ingest", "config": config_dict(cfg),
                "fluxscale_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "stores": sorted(f"{n}.zarr" for n in paths), "n_cells": int(grid.sizes["cell"]), "ingest": dict(report)}
    (out / "fluxscale.json").write_text(json.dumps(manifest, indent=2, default=str))
    return report


def config_dict(cfg: IngestConfig) -> dict[str, Any]:
    """``cfg`` as the JSON value stored in the manifest (to tell whether an ingest is current)."""
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _describe(name: str, ds: xr.Dataset) -> str:
    if name == "grid":
        return f"{ds.sizes['lat']}x{ds.sizes['lon']} cells, {ds.sizes['cell']} land cells"
    if name == "sites":
        n_obs = int(np.isfinite(ds.NEE).sum())
        return f"{ds.sizes['site']} towers, {n_obs} tower-days of NEE"
    if name == "gcb":
        return f"{int(ds.year[0])}–{int(ds.year[-1])}"
    if "time" in ds.dims:
        t = pd.DatetimeIndex(ds.time.values)
        extra = f", systems {', '.join(map(str, ds.system.values))}" if "system" in ds.dims else ""
        return f"{t[0].date()}..{t[-1].date()} ({ds.sizes['time']} steps), {ds.sizes.get('lat', '')}x{ds.sizes.get('lon', '')}{extra}" \
            if "lat" in ds.dims else f"{t[0].date()}..{t[-1].date()}, {ds.sizes['cell']} cells"
    return ""

