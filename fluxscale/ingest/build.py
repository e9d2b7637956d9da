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
from fluxscale.dataset.drivers import DAILY_DRIVERS, DRIVER_NAMES, DRIVER_UNITS, SEASONAL_DRIVERS
from fluxscale.errors import InputError
from fluxscale.dataset.grid import coarsen_grid, gather_cells, make_grid
from fluxscale.dataset.schema import REQUIRED_STORES, time_coord, var_attrs
from fluxscale.dataset.stores import cross_checks, begin_dataset, cell_codecs, commit_store, open_store, partial_path, store_path, write_store
from fluxscale.ingest.sites_store import sites_dataset
from fluxscale.ingest import gcb
from fluxscale.ingest import xbase
from fluxscale.ingest.gridded import (LAT_NAMES, ReadLog, expand_files, open_netcdf, read_daily_driver, read_monthly_flux,
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
        sites = sites_dataset(cfg, grid, partial_path(paths["drivers"]), log)
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

