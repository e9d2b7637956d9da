"""FLUXCOM-X-BASE NEE cubes (Zarr) as the prior, streamed onto the model grid.

The product (Nelson et al. 2024) is a Zarr cube (format 2; format 3 is read too):

=============  =====================================================================
``NEE``        ``(time, hour, lat, lon)`` for the hourly product (a mean diurnal cycle
               of 24 hours per month), ``(time, lat, lon)`` for the daily and monthly
               aggregates; float32, NaN fill (off land), blosc-lz4
units          ``"gC m-2 d-1"``, ``standard_name = net_ecosystem_exchange_of_carbon``
grid           global, 0.05° native, 0.25° and 0.5° aggregates; latitude north → south,
               longitude −180 … 180
time           ``days since 2001-01-01``
=============  =====================================================================

:func:`read_xbase_nee` returns the monthly mean NEE ``(time, lat, lon)`` float32 in
gC m-2 d-1 per m² of land on the model grid (time = month starts of the record):

* ``hour`` is averaged (a cell with a missing hour in a month is NaN for that month);
  daily cubes are averaged over whole months, monthly cubes kept;
* the grid must be an integer refinement of the model grid (0.05° or 0.25° → 0.5° or
  coarser): the k×k blocks are summed with area weights, so the integral
  Σ NEE × area over the fine cells is kept (:func:`fluxscale.ingest.gridded.regrid_flux`,
  as for the other fluxes), and divided by the model cell's land area. The weight of a
  fine cell is its area (``basis = "cell"``, the default for a cube: fluxscale has no land
  fraction at 0.05°); ``basis = "land"`` uses fluxscale's land fraction, at multiples of
  0.5° only;
* unit conversions as for every flux (:func:`fluxscale.dataset.units.flux_factor`).

Memory: the cube is opened lazily on its own Zarr chunks (reads are chunk-aligned);
latitude is flipped with a reversed slice (no reordering), months outside the record are
dropped before anything is read, and the hour mean and block sums are done chunk by
chunk, so a task holds one source chunk and its coarse result, never the cube.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import InputError
from fluxscale.dataset.units import UnitError, flux_factor
from fluxscale.ingest.gridded import (LAT_NAMES, LON_NAMES, ReadLog, Period, regrid_flux, stack_files, to_monthly, units_of, variable_of,
                      decode_time, normalise_space)

__all__ = ["is_zarr", "open_zarr", "read_xbase_nee"]


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr store: a directory holding ``zarr.json`` (format 3),
    ``.zgroup``/``.zarray``/``.zmetadata`` (format 2), or named ``*.zarr``."""
    p = Path(path)
    if not p.is_dir():
        return False
    return p.suffix == ".zarr" or any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray", ".zmetadata"))


def open_zarr(path: str | Path) -> xr.Dataset:
    """Open a Zarr cube lazily on its own chunks, times left encoded."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no consolidated metadata: read the groups instead
            return xr.open_zarr(path, consolidated=None, decode_times=False, chunks={})
    except Exception as e:  # noqa: BLE001 - any zarr failure becomes one message naming the store
        raise InputError(path, None, f"cannot be read as Zarr ({type(e).__name__}: {e})") from None


def read_xbase_nee(path: str | Path, variable: str = "NEE", *, start: str, end: str, target_weight: xr.DataArray,
                   basis: str | None = None, units: str | None = None, species: str | None = None,
                   log: ReadLog | None = None) -> xr.DataArray:
    """FLUXCOM-X-BASE NEE from a Zarr cube → monthly means on the model grid.

    Parameters
    ----------
    path : path
        The Zarr store (directory).
    variable : str
        ``"NEE"`` (X-BASE's name).
    start, end : str
        The record (``"2001-01-01"``, ``"2017-12-31"``); every month must be present.
    target_weight : DataArray (lat, lon)
        Land area (m²) of the model grid's cells where the prior is defined (0 → NaN).
    basis : {"cell", "land"}, optional
        What a fine cell's flux is per: its area (default) or its land (shipped land
        fraction, multiples of 0.5° only).
    units, species : str, optional
        Override of the cube's ``units``; the mass species when the units do not say (C).

    Returns
    -------
    DataArray
        ``(time, lat, lon)`` float32 gC m-2 d-1 per m² of land, lazy, time = month starts.

    Raises
    ------
    InputError
        Naming the store and the variable: a missing variable, dimensions other than
        ``(time, [hour,] lat, lon)``, a grid that is not global or not an integer
        refinement of the model grid, unknown units, months of the record missing.
    """
    log = log if log is not None else ReadLog()
    path = Path(path)
    period = Period(pd.Timestamp(start), pd.Timestamp(end))
    target_res = float(180.0 / target_weight.sizes["lat"])
    ds = open_zarr(path)
    da = variable_of(ds, path, variable)
    where = f"variable {variable!r}"
    lat_d = next((d for d in LAT_NAMES if d in da.dims), None)
    lon_d = next((d for d in LON_NAMES if d in da.dims), None)
    extra = [d for d in da.dims if d not in ("time", "hour", lat_d, lon_d)]
    if extra or "time" not in da.dims or lat_d is None or lon_d is None:
        raise InputError(path, where, f"expected (time, hour, lat, lon) or (time, lat, lon), found {tuple(da.dims)}")
    if lat_d in da.coords and da.sizes[lat_d] > 1 and float(da[lat_d][0]) > float(da[lat_d][-1]):
        da = da.isel({lat_d: slice(None, None, -1)})  # north → south: a reversed slice keeps the chunks whole
    da, res = normalise_space(da, path, variable)
    if res > target_res * (1 + 1e-9) or abs(target_res / res - round(target_res / res)) > 1e-6:
        raise InputError(path, where, f"grid {res:g}° is not an integer refinement of the model grid {target_res:g}° "
                                      "(fluxscale sums whole blocks of finer cells and never interpolates)")
    try:
        factor = flux_factor(units_of(da, path, variable, units), species, default_species="C")
    except UnitError as e:
        raise InputError(path, where, str(e)) from None
    da, _ = decode_time(da, path, variable)
    t = pd.DatetimeIndex(da.time.values)
    inside = (t >= period.start) & (t <= period.end)
    if not inside.any():
        raise InputError(path, where, f"no data in the record {period.start.date()}..{period.end.date()} "
                                      f"(the cube has {t[0].date() if t.size else '-'}..{t[-1].date() if t.size else '-'})")
    if not inside.all():
        da = da.isel(time=np.flatnonzero(inside))
    if "hour" in da.dims:
        n = da.sizes["hour"]
        da = da.mean("hour", skipna=False)
        log.notes.append(f"{path.name}: {variable} averaged over its {n} hours per time step")
    da = to_monthly(da, path, variable, log)
    if basis is None:
        basis = "cell"
        if res < target_res:
            log.notes.append(f"{path.name}: {variable} on {res:g}° summed with cell-area weights onto {target_res:g}°")
    da = regrid_flux(da * factor if factor != 1.0 else da, res, target_res, basis, target_weight, path, variable)
    log.read.append(str(path))
    out = stack_files([(path, da)], variable, "MS", period, log, calendar_noleap=False).astype(np.float32)
    out.attrs = {"units": "gC m-2 d-1", "source_files": 1}
    return out
