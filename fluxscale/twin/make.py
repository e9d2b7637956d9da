"""Writing a twin dataset directory, chunk by chunk with Dask.

Plan (pure, see :func:`cell_block_plan` / :func:`month_block_plan`):

1. ``grid.zarr`` with the PFT map (in memory, small; :mod:`.vegetation`);
2. one task per cell chunk: simulate drivers and truth for those cells over the whole
   record, write their region of ``drivers.zarr`` and ``truth.zarr`` (aligned to the
   stored chunks: a task owns whole chunks), return regional monthly integrals;
3. ``sites.zarr`` (the tower cells simulated again: every draw is per cell, so they
   equal the stored truth);
4. one task per 12-month block: prior (model grid), inversions and fire (inversion
   grid) from the stored monthly truth;
5. ``gcb.zarr``; then every store is moved from ``*.partial`` into place and the
   manifest ``fluxscale.json`` is written last.

Memory per cell task ≈ 12 float32 arrays of (days × chunk_cells): ~1.2 GB at
chunk_cells = 2048 over 17 years; per month task ≈ a few (12, lat, lon) grids.
"""

from __future__ import annotations

import json
import time as _time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from fluxscale import __version__
from fluxscale.config import TwinConfig, preset_name, twin_preset
from fluxscale.dataset.schema import DAILY_DRIVERS, DRIVER_NAMES, SEASONAL_DRIVERS
from fluxscale.dataset.grid import cell_land_area, coarsen_grid, make_grid
from fluxscale.parallel import run_tasks
from fluxscale.dataset.regions import REGIONS
from fluxscale.dataset.schema import INPUT_STORES, time_coord, var_attrs
from fluxscale.dataset.stores import MANIFEST, begin_dataset, cell_codecs, commit_store, partial_path, store_path, write_region, write_store, write_template
from fluxscale.twin.atmosphere import (G_PER_PG, aggregate_to_coarse, fire_field, gcb_series, inversion_fluxes,
                         misplacement_fields, prior_flux, regional_errors, tropical_regions)
from fluxscale.twin.climate import cell_climate, enso_index
from fluxscale.twin.fluxes import climatological_gpp, simulate_cells, sink_shape
from fluxscale.twin.sites import make_sites
from fluxscale.twin.vegetation import pft_variables, tower_igbp

__all__ = ["make_twin", "write_twin", "cell_block_plan", "month_block_plan", "calibrate_sink"]


def cell_block_plan(n_cells: int, chunk: int) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` cell ranges, one per Zarr chunk, covering every cell once."""
    return [(s, min(s + chunk, n_cells)) for s in range(0, n_cells, chunk)]


def month_block_plan(n_months: int, block: int = 12) -> list[tuple[int, int]]:
    """Half-open month ranges of ``block`` months (the monthly stores' chunk length)."""
    return [(s, min(s + block, n_months)) for s in range(0, n_months, block)]


def calibrate_sink(cfg: TwinConfig, grid: xr.Dataset, block: int = 8192) -> float:
    """The global sink-fraction scale s0 giving a mean global NEE of ``cfg.global_sink``
    PgC yr-1, from each cell's climatological GPP (weather changes it by a few %)."""
    lat, lon = grid.cell_lat.values, grid.cell_lon.values
    w = cell_land_area(grid)
    total = 0.0
    for s in range(0, lat.size, block):
        sl = slice(s, s + block)
        g = climatological_gpp(cfg, lat[sl], lon[sl])
        shape = sink_shape(cfg, cell_climate(cfg.seed, lat[sl], lon[sl]))
        total += float((shape * g * w[sl]).sum())
    return -cfg.global_sink * G_PER_PG / (365.25 * total)


def _zeros(shape, chunks):
    return da.zeros(shape, chunks=chunks, dtype=np.float32)


def _drivers_template(cfg: TwinConfig, grid: xr.Dataset, time: pd.DatetimeIndex) -> tuple[xr.Dataset, dict]:
    n, nd, cc, ct = grid.sizes["cell"], time.size, cfg.chunk_cells, cfg.chunk_days
    data, enc = {}, {}
    for name in DRIVER_NAMES:
        if name in DAILY_DRIVERS:
            dims, shape, chunks = ("time", "cell"), (nd, n), (ct, cc)
        elif name in SEASONAL_DRIVERS:
            dims, shape, chunks = ("doy", "cell"), (366, n), (366, cc)
        else:
            dims, shape, chunks = ("cell",), (n,), (cc,)
        data[name] = (dims, _zeros(shape, chunks), var_attrs("drivers", name))
        enc[name] = {"chunks": chunks, "compressors": cell_codecs()}
    ds = xr.Dataset(data, coords={
        "time": time_coord("time", time, "day"),
        "doy": ("doy", np.arange(1, 367, dtype=np.int16), {"long_name": "day of year of the mean seasonal cycle"}),
        "cell": grid.cell,
        "cell_lat": grid.cell_lat, "cell_lon": grid.cell_lon,
    }, attrs={"title": "fluxscale twin: drivers (Table A2)", "layout": "land cells gathered on 'cell' (see grid.zarr)",
              "Conventions": "CF-1.10"})
    return ds, enc


def _truth_template(cfg: TwinConfig, grid: xr.Dataset, time: pd.DatetimeIndex, months: pd.DatetimeIndex,
                    years: np.ndarray) -> tuple[xr.Dataset, dict]:
    n, cc = grid.sizes["cell"], cfg.chunk_cells
    data = {"NEE": (("time", "cell"), _zeros((time.size, n), (cfg.chunk_days, cc)), var_attrs("truth", "NEE"))}
    enc = {"NEE": {"chunks": (cfg.chunk_days, cc), "compressors": cell_codecs()}}
    for v in ("NEE_monthly", "GPP_monthly", "Reco_monthly"):
        data[v] = (("month", "cell"), _zeros((months.size, n), (months.size, cc)), var_attrs("truth", v))
        enc[v] = {"chunks": (months.size, cc), "compressors": cell_codecs()}
    data["NEE_global_annual"] = (("year",), da.zeros(years.size, chunks=-1, dtype=np.float64),
                                 var_attrs("truth", "NEE_global_annual"))
    ds = xr.Dataset(data, coords={"time": time_coord("time", time, "day"),
                                  "month": time_coord("month", months, "month start"),
                                  "year": ("year", years, {"long_name": "calendar year"}), "cell": grid.cell,
                                  "cell_lat": grid.cell_lat, "cell_lon": grid.cell_lon},
                    attrs={"title": "fluxscale twin: the true NEE (negative = uptake)"})
    return ds, enc


def _gridded_template(store: str, var: str, months: pd.DatetimeIndex, g: xr.Dataset, lead: dict | None = None,
                      title: str = "") -> tuple[xr.Dataset, dict]:
    lead = lead or {}
    dims = tuple(lead) + ("time", "lat", "lon")
    shape = tuple(len(v) for v in lead.values()) + (months.size, g.sizes["lat"], g.sizes["lon"])
    chunks = (1,) * len(lead) + (12, g.sizes["lat"], g.sizes["lon"])
    arr = da.full(shape, np.nan, chunks=chunks, dtype=np.float32)
    ds = xr.Dataset({var: (dims, arr, var_attrs(store, var))},
                    coords={**{k: (k, np.asarray(v, dtype=object)) for k, v in lead.items()}, "time": time_coord("time", months, "month start"), "lat": g.lat, "lon": g.lon},
                    attrs={"title": title, "resolution_deg": g.attrs["resolution_deg"], "Conventions": "CF-1.10"})
    return ds, {var: {"chunks": chunks}}


def _monthly_means(x: np.ndarray, starts: np.ndarray, days: np.ndarray) -> np.ndarray:
    return (np.add.reduceat(x, starts, axis=0, dtype=np.float64) / days[:, None]).astype(np.float32)


def _cell_task(block: tuple[int, int], *, cfg: TwinConfig, lat: np.ndarray, lon: np.ndarray, weight: np.ndarray,
               region: np.ndarray, time: pd.DatetimeIndex, enso: np.ndarray, sink_scale: float,
               month_starts: np.ndarray, month_days: np.ndarray, drivers_path: str, truth_path: str) -> np.ndarray:
    """Simulate and write one cell chunk; return its regional monthly integrals (19, months) PgC."""
    c0, c1 = block
    cells = np.arange(c0, c1)
    sim = simulate_cells(cfg, lat[c0:c1], lon[c0:c1], cells, time, enso, sink_scale)
    drv = xr.Dataset({n: (("time", "cell") if n in DAILY_DRIVERS else ("doy", "cell") if n in SEASONAL_DRIVERS
                          else ("cell",), sim[n]) for n in DRIVER_NAMES})
    write_region(drv, drivers_path, {"cell": slice(c0, c1)})
    monthly = {k: _monthly_means(sim[k], month_starts, month_days) for k in ("NEE", "GPP", "Reco")}
    del drv
    tr = xr.Dataset({"NEE": (("time", "cell"), sim["NEE"]),
                     **{f"{k}_monthly": (("month", "cell"), v) for k, v in monthly.items()}})
    write_region(tr, truth_path, {"cell": slice(c0, c1)})
    flux = monthly["NEE"].astype(np.float64) * month_days[:, None] * weight[c0:c1][None, :] / G_PER_PG
    out = np.zeros((len(REGIONS), month_days.size))
    for r in REGIONS:
        m = region[c0:c1] == r.id
        out[r.id] = flux[:, m].sum(axis=1)
    return out


def _month_task(block: tuple[int, int], *, cfg: TwinConfig, geo: dict[str, np.ndarray], truth_path: str,
                errors: np.ndarray, misplace: np.ndarray, fire: np.ndarray, month_days: np.ndarray,
                prior_path: str, inv_path: str, fire_path: str) -> None:
    """Write one 12-month block of the prior, the inversions and the fire flux.

    ``geo``: numpy arrays of the model grid (``cell_ilat``, ``cell_ilon``, ``cell_lat``,
    ``cell_lon``, ``fine_weight`` (lat, lon)) and of the inversion grid (``coarse_weight``
    (lat, lon), ``coarse_region`` (lat, lon)); weights are area × land fraction, m².
    """
    m0, m1 = block
    truth = xr.open_zarr(truth_path, consolidated=False, zarr_format=3)
    nee = truth.NEE_monthly[m0:m1].values
    reco = truth.Reco_monthly[m0:m1].values
    il, jl = geo["cell_ilat"], geo["cell_ilon"]
    nlat, nlon = geo["fine_weight"].shape
    prior = np.full((m1 - m0, nlat, nlon), np.nan, dtype=np.float32)
    prior[:, il, jl] = prior_flux(cfg, nee, reco, geo["cell_lat"], geo["cell_lon"])
    write_region(xr.Dataset({"NEE": (("time", "lat", "lon"), prior)}), prior_path, {"time": slice(m0, m1)})

    fine = np.full((m1 - m0, nlat, nlon), np.nan)
    fine[:, il, jl] = nee
    coarse_w = geo["coarse_weight"]
    truth_c = aggregate_to_coarse(fine, geo["fine_weight"], nlat // coarse_w.shape[0], coarse_w)
    ci, cj = np.nonzero(coarse_w > 0)
    flux = inversion_fluxes(cfg, truth_c[:, ci, cj], geo["coarse_region"][ci, cj], coarse_w[ci, cj],
                            errors[:, :, m0:m1], misplace, fire[m0:m1], month_days[m0:m1])
    out = np.full((flux.shape[0], m1 - m0) + coarse_w.shape, np.nan, dtype=np.float32)
    out[:, :, ci, cj] = flux
    write_region(xr.Dataset({"land_flux": (("system", "time", "lat", "lon"), out)}), inv_path, {"time": slice(m0, m1)})
    fgrid = np.full((m1 - m0,) + coarse_w.shape, np.nan, dtype=np.float32)
    fgrid[:, ci, cj] = fire[m0:m1]
    write_region(xr.Dataset({"co2fire": (("time", "lat", "lon"), fgrid)}), fire_path, {"time": slice(m0, m1)})


def make_twin(out: str | Path, preset: str = "small", seed: int | None = None, *, client=None,
              show_progress: bool = True, region_mask: str | Path | None = None, **knobs: Any) -> Path:
    """Write every store of a synthetic twin Earth into ``out``.

    Parameters
    ----------
    out : path
        Dataset directory (created; existing stores are replaced).
    preset : {"tiny", "small", "full"}
        Sizes, see :data:`fluxscale.config.PRESETS`; ``knobs`` override any field of
        :class:`fluxscale.config.TwinConfig`.
    seed : int, optional
        Overrides ``TwinConfig.seed``.
    client : distributed.Client, optional
        Run the tasks on this cluster (default: threads in this process).
    region_mask : path, optional
        A user's region-mask NetCDF instead of the shipped one.

    Returns
    -------
    pathlib.Path
        ``out``, holding ``grid.zarr``, ``drivers.zarr``, ``sites.zarr``,
        ``inversions.zarr``, ``fire.zarr``, ``prior.zarr``, ``gcb.zarr``,
        ``truth.zarr`` and ``fluxscale.json``.
    """
    if seed is not None:
        knobs["seed"] = seed
    return write_twin(out, twin_preset(preset, **knobs), client=client, show_progress=show_progress,
                      region_mask=region_mask, preset=preset)


def write_twin(out: str | Path, cfg: TwinConfig, *, client=None, show_progress: bool = True,
               region_mask: str | Path | None = None, preset: str | None = None) -> Path:
    """:func:`make_twin` for an explicit :class:`TwinConfig`."""
    out = begin_dataset(out)
    t_start = _time.perf_counter()
    timings: dict[str, float] = {}
    paths = {n: store_path(out, n) for n in INPUT_STORES}

    grid = make_grid(cfg.resolution_deg, region_mask)
    factor = int(round(cfg.inversion_resolution_deg / cfg.resolution_deg))
    inv = coarsen_grid(grid, factor)
    grid = grid.assign(pft_variables(cfg.seed, grid).data_vars)  # the majority IGBP class per cell
    write_store(grid, paths["grid"], "grid", commit=False)
    time = pd.date_range(f"{cfg.start_year}-01-01", f"{cfg.end_year}-12-31", freq="D")
    months = pd.date_range(time[0], time[-1], freq="MS")
    years = np.arange(cfg.start_year, cfg.end_year + 1, dtype=np.int32)
    month_starts = np.searchsorted(time.values, months.values)
    month_days = np.asarray(months.days_in_month, dtype=np.float64)
    enso = enso_index(cfg.seed, time)
    t = _time.perf_counter()
    sink_scale = calibrate_sink(cfg, grid)
    timings["calibrate"] = _time.perf_counter() - t

    # --- drivers and truth, one task per cell chunk ----------------------------------
    t = _time.perf_counter()
    dt, enc = _drivers_template(cfg, grid, time)
    write_template(dt, paths["drivers"], "drivers", enc)
    tt, enc = _truth_template(cfg, grid, time, months, years)
    write_template(tt, paths["truth"], "truth", enc)
    weight = cell_land_area(grid)
    cell_region = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values]
    parts = run_tasks(
        _cell_task, cell_block_plan(grid.sizes["cell"], cfg.chunk_cells), client=client,
        label="twin: drivers + truth", show_progress=show_progress,
        cfg=cfg, lat=grid.cell_lat.values, lon=grid.cell_lon.values, weight=weight, region=cell_region, time=time,
        enso=enso, sink_scale=sink_scale, month_starts=month_starts, month_days=month_days,
        drivers_path=str(partial_path(paths["drivers"])), truth_path=str(partial_path(paths["truth"])),
    )
    integrals = np.sum(parts, axis=0)  # (18, months) PgC per month
    annual = integrals.sum(axis=0).reshape(years.size, 12).sum(axis=1)
    write_region(xr.Dataset({"NEE_global_annual": (("year",), annual)}), partial_path(paths["truth"]),
                 {"year": slice(0, years.size)})
    timings["drivers_truth"] = _time.perf_counter() - t

    # --- towers ---------------------------------------------------------------------
    t = _time.perf_counter()
    sites = make_sites(cfg, grid, time, enso, sink_scale)
    cell_pft = grid.pft.values[grid.cell_ilat.values, grid.cell_ilon.values]
    sites["igbp"] = ("site", tower_igbp(cfg.seed, cell_pft, sites.cell.values), var_attrs("sites", "igbp"))
    write_store(sites, paths["sites"], "sites", commit=False)
    timings["sites"] = _time.perf_counter() - t

    # --- inversions, fire, prior, one task per 12 months ------------------------------
    t = _time.perf_counter()
    coarse_w = inv.cell_area.values * inv.land_fraction.values.astype(np.float64)
    ci, cj = np.nonzero(coarse_w > 0)
    fine_w = np.zeros(grid.land.shape)
    fine_w[grid.cell_ilat.values, grid.cell_ilon.values] = weight
    geo = {"cell_ilat": grid.cell_ilat.values, "cell_ilon": grid.cell_ilon.values, "cell_lat": grid.cell_lat.values,
           "cell_lon": grid.cell_lon.values, "fine_weight": fine_w, "coarse_weight": coarse_w,
           "coarse_region": inv.region.values}
    c_lat, c_lon = inv.lat.values[ci], inv.lon.values[cj]
    tropical = tropical_regions(cell_region, grid.cell_lat.values, weight)
    errors = regional_errors(cfg, integrals, tropical)
    misplace = misplacement_fields(cfg, c_lat, c_lon, inv.region.values[ci, cj], coarse_w[ci, cj])
    enso_month = pd.Series(enso, index=time).resample("MS").mean().to_numpy()
    enso_year = np.repeat(enso_month.reshape(years.size, 12).mean(axis=1), 12)
    fire = fire_field(cfg, c_lat, c_lon, coarse_w[ci, cj], np.asarray(months.day_of_year + 14, dtype=float),
                      month_days, enso_year)
    for name, var, g, lead, title in (
        ("prior", "NEE", grid, None, "fluxscale twin: prior NEE (FLUXCOM RS+METEO role)"),
        ("inversions", "land_flux", inv, {"system": list(cfg.inversion_systems)},
         "fluxscale twin: atmospheric inversions (fire included, per m2 of land)"),
        ("fire", "co2fire", inv, None, "fluxscale twin: fire CO2 emissions (GFAS role, per m2 of land)"),
    ):
        ds, enc = _gridded_template(name, var, months, g, lead, title)
        write_template(ds, paths[name], name, enc)
    run_tasks(
        _month_task, month_block_plan(months.size), client=client, label="twin: inversions + fire + prior",
        show_progress=show_progress, cfg=cfg, geo=geo, truth_path=str(partial_path(paths["truth"])),
        errors=errors, misplace=misplace, fire=fire, month_days=month_days,
        prior_path=str(partial_path(paths["prior"])), inv_path=str(partial_path(paths["inversions"])),
        fire_path=str(partial_path(paths["fire"])),
    )
    timings["inversions_fire_prior"] = _time.perf_counter() - t

    gcb, sigma = gcb_series(cfg, annual)
    gcb_ds = xr.Dataset({"NEE": (("year",), gcb, var_attrs("gcb", "NEE")),
                         "NEE_sigma": (("year",), sigma, var_attrs("gcb", "NEE_sigma"))},
                        coords={"year": years}, attrs={"title": "fluxscale twin: GCB residual land sink role"})
    write_store(gcb_ds, paths["gcb"], "gcb", commit=False)

    for p in paths.values():
        commit_store(p)
    timings["total"] = _time.perf_counter() - t_start
    manifest = {
        "kind": "twin",
        "preset": preset or preset_name(cfg),  # `fluxscale run` without --preset: the preset cfg is
        "config": cfg.to_dict(),
        "region_mask": str(region_mask) if region_mask else None,
        "fluxscale_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stores": sorted(f"{n}.zarr" for n in paths),
        "n_cells": int(grid.sizes["cell"]),
        "sink_scale": sink_scale,
        "truth_global_annual_PgC": [round(float(x), 4) for x in annual],
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out
