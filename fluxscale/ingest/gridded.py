"""Gridded NetCDF inputs, read lazily onto fluxscale's grids and units.

Every reader returns a lazy (Dask) ``xarray.DataArray`` whose axes are normalised:

* ``lat`` ascending and ``lon`` in −180…180 ascending, named ``lat``/``lon`` whatever
  the file calls them (``latitude``, ``longitude``, ``y``, ``x``), checked to be a
  global regular grid of cell centres;
* ``time`` as ``datetime64``: decoded from the file's own encoding (``days since``,
  ``hours since``, ``months since``, any cftime calendar), days floored to the date,
  monthly data moved to month starts, daily data averaged to months where a monthly
  product is wanted (whole months only); files are concatenated in time order,
  refused when they overlap, and the record period must be covered without gaps
  (a ``noleap`` daily record gets 29 February as a copy of the 28th, reported);
* units converted with :mod:`fluxscale.dataset.units` (carbon fluxes to gC m-2 d-1 per m² of
  land, drivers to Table A2's units), unknown units refused;
* grids finer than the target by an integer ratio aggregated by area-conserving sums
  (fluxes) or area-weighted means (drivers); other grids refused.

Chunks: one Dask chunk per file, or per ``time_chunk`` steps of it (full ``lat``/``lon``),
so a task holds at most ``time_chunk × nlat × nlon`` values of the source grid; a member
dimension (GCB's ``ensemble_member``) is split into one chunk per member.

GCB inversion members (names, choice, NaN checks) are in :mod:`fluxscale.ingest.gcb`;
FLUXCOM-X-BASE Zarr cubes (the prior) in :mod:`fluxscale.ingest.xbase`, which reuses the
normalisation and the area-conserving aggregation here.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import InputError
from fluxscale.dataset.grid import cell_areas, default_masks, grid_centres
from fluxscale.dataset.units import UnitError, flux_factor, linear_conversion

__all__ = [
    "ReadLog",
    "expand_files",
    "open_netcdf",
    "normalise_space",
    "decode_time",
    "read_monthly_flux",
    "read_daily_driver",
    "read_seasonal_driver",
    "read_static_driver",
]

LAT_NAMES = ("lat", "latitude", "y")
LON_NAMES = ("lon", "longitude", "x")


@dataclass
class ReadLog:
    """What a reader read, skipped and changed, for the ingest summary."""

    read: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: ReadLog) -> None:
        self.read += other.read
        self.skipped += other.skipped
        self.notes += other.notes


def expand_files(spec: str | Sequence[str], base: Path | None = None, what: str = "files") -> list[Path]:
    """The sorted files matching a glob, or a list of globs, relative to ``base``."""
    pats = [spec] if isinstance(spec, str) else list(spec)
    out: list[Path] = []
    for p in pats:
        full = Path(p) if Path(p).is_absolute() or base is None else Path(base) / p
        hits = sorted(Path(h) for h in glob.glob(str(full)))
        if not hits:
            raise InputError(full, None, f"no {what} match this path")
        out += hits
    return list(dict.fromkeys(out))


def open_netcdf(path: str | Path, time_chunk: int | None = None) -> xr.Dataset:
    """Open a NetCDF file lazily (Dask), times left encoded for :func:`decode_time`."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "file not found")
    try:
        ds = xr.open_dataset(path, decode_times=False, chunks={})
    except Exception as e:  # noqa: BLE001 - any backend failure becomes one message naming the file
        raise InputError(path, None, f"cannot be read as NetCDF ({type(e).__name__}: {e})") from None
    if time_chunk and "time" in ds.dims:
        ds = ds.chunk({"time": time_chunk})
    return ds


def variable_of(ds: xr.Dataset, path: Path, name: str) -> xr.DataArray:
    if name not in ds.data_vars:
        raise InputError(path, f"variable {name!r}", f"missing (the file has {', '.join(sorted(map(str, ds.data_vars))) or 'no variables'})")
    return ds[name]


def normalise_space(da: xr.DataArray, path: Path | str, name: str) -> tuple[xr.DataArray, float]:
    """Rename to ``lat``/``lon``, sort ``lat`` ascending and ``lon`` into −180…180, check
    that the grid is global, regular and of cell centres; returns ``(da, resolution)``."""
    where = f"variable {name!r}"
    lat_d = next((d for d in LAT_NAMES if d in da.dims), None)
    lon_d = next((d for d in LON_NAMES if d in da.dims), None)
    if lat_d is None or lon_d is None:
        raise InputError(path, where, f"needs latitude and longitude dimensions, has {tuple(da.dims)}")
    da = da.rename({lat_d: "lat", lon_d: "lon"})
    if "lat" not in da.coords or "lon" not in da.coords:
        raise InputError(path, where, "has no latitude/longitude coordinate values")
    lat = np.asarray(da["lat"].values, dtype=np.float64)
    lon = np.asarray(da["lon"].values, dtype=np.float64)
    wrapped = (lon + 180.0) % 360.0 - 180.0
    lat_order, lon_order = np.argsort(lat, kind="stable"), np.argsort(wrapped, kind="stable")
    res = 180.0 / lat.size
    try:
        exp_lat, exp_lon = grid_centres(res)
    except ValueError:
        exp_lat = exp_lon = np.array([])
    if (lon.size != 2 * lat.size or exp_lat.size != lat.size
            or not np.allclose(lat[lat_order], exp_lat, atol=1e-4 * res)
            or not np.allclose(wrapped[lon_order], exp_lon, atol=1e-4 * res)):
        raise InputError(path, where, f"not a global regular grid of cell centres: {lat.size} x {lon.size}, "
                                      f"lat {lat.min():g}..{lat.max():g}, lon {lon.min():g}..{lon.max():g}")
    if not np.array_equal(lat_order, np.arange(lat.size)):
        da = da.isel(lat=lat_order)
    if not np.array_equal(lon_order, np.arange(lon.size)):
        k = int(lon_order[0])  # a roll: two contiguous slices keep the Dask graph small
        da = xr.concat([da.isel(lon=slice(k, None)), da.isel(lon=slice(0, k))], dim="lon") \
            if np.array_equal(lon_order, np.r_[k:lon.size, 0:k]) else da.isel(lon=lon_order)
    da = da.assign_coords(lat=("lat", exp_lat, {"units": "degrees_north", "standard_name": "latitude"}),
                          lon=("lon", exp_lon, {"units": "degrees_east", "standard_name": "longitude"}))
    lead = [d for d in da.dims if d not in ("lat", "lon")]
    return da.transpose(*lead, "lat", "lon"), res


_SINCE = re.compile(r"^\s*(\w+)\s+since\s+(.+?)\s*$", re.IGNORECASE)


def decode_time(da: xr.DataArray, path: Path | str, name: str, dim: str = "time") -> tuple[xr.DataArray, str]:
    """Decode ``dim`` into dates (``datetime64[ns]`` at midnight); returns ``(da, calendar)``.

    Any CF encoding (``<unit> since <date>``, every cftime calendar) and ``months
    since`` (whole or mid-month numbers) are accepted.
    """
    where = f"variable {name!r}"
    if dim not in da.dims:
        raise InputError(path, where, f"has no {dim!r} dimension (dims {tuple(da.dims)})")
    t = da[dim]
    vals = np.asarray(t.values)
    calendar = str(t.attrs.get("calendar", "standard")).lower()
    if vals.dtype.kind == "M":
        dates = pd.DatetimeIndex(vals).floor("D")
        return da.assign_coords({dim: dates.values}), "standard"
    units = t.attrs.get("units")
    if units is None:
        raise InputError(path, f"variable {dim!r}", "time has no units attribute (e.g. 'days since 2001-01-01')")
    m = _SINCE.match(str(units))
    if m is None:
        raise InputError(path, f"variable {dim!r}", f"time units {units!r} are not '<unit> since <date>'")
    if vals.size == 0:
        return da.assign_coords({dim: np.array([], dtype="datetime64[ns]")}), calendar
    if not np.all(np.isfinite(vals.astype(np.float64))):
        raise InputError(path, f"variable {dim!r}", "time has missing values")
    step = m.group(1).lower()
    try:
        if step in ("month", "months"):
            ref = pd.Timestamp(m.group(2).split()[0])
            k = np.floor(vals.astype(np.float64)).astype(np.int64) + ref.year * 12 + ref.month - 1
            y, mo, d = k // 12, k % 12 + 1, np.ones_like(k)
        else:
            import cftime

            objs = np.atleast_1d(cftime.num2date(vals, str(units), calendar, only_use_cftime_datetimes=True))
            y = np.array([o.year for o in objs])
            mo = np.array([o.month for o in objs])
            d = np.array([o.day for o in objs])
    except Exception as e:  # noqa: BLE001 - cftime raises ValueError/TypeError for bad units or calendars
        raise InputError(path, f"variable {dim!r}", f"cannot decode time ({units!r}, calendar {calendar!r}): {e}") from None
    try:
        dates = pd.to_datetime(pd.DataFrame({"year": y, "month": mo, "day": d}))
    except (ValueError, OverflowError) as e:
        raise InputError(path, f"variable {dim!r}", f"calendar {calendar!r} has dates that do not exist in the "
                                                    f"standard calendar ({e}); convert the file to a real calendar") from None
    return da.assign_coords({dim: dates.values}), calendar


def to_monthly(da: xr.DataArray, path: Path, name: str, log: ReadLog) -> xr.DataArray:
    """Month starts for a monthly file; means of whole months for a daily one."""
    t = pd.DatetimeIndex(da.time.values)
    months = t.to_period("M")
    if months.is_unique:
        return da.assign_coords(time=months.to_timestamp().values)
    counts = pd.Series(1, index=months).groupby(level=0).size()
    if not t.is_unique:
        dup = t[t.duplicated()][0]
        raise InputError(path, "variable 'time'", f"duplicated date {dup.date()}")
    incomplete = counts[counts != counts.index.days_in_month]
    if len(incomplete):
        p = incomplete.index[0]
        raise InputError(path, f"variable {name!r}", f"daily data for {p} has {incomplete.iloc[0]} of "
                                                      f"{p.days_in_month} days; monthly means need whole months")
    log.notes.append(f"{path.name}: daily {name} averaged to monthly means")
    out = da.resample(time="MS").mean()
    return out


@dataclass(frozen=True)
class Period:
    start: pd.Timestamp
    end: pd.Timestamp  # inclusive last day

    def index(self, freq: str) -> pd.DatetimeIndex:
        return pd.date_range(self.start, self.end, freq=freq)


def stack_files(parts: list[tuple[Path, xr.DataArray]], name: str, freq: str, period: Period, log: ReadLog,
           calendar_noleap: bool) -> xr.DataArray:
    """Concatenate per-file pieces in time order and select the record period."""
    want = period.index(freq)
    kept: list[tuple[Path, xr.DataArray]] = []
    for path, da in parts:
        t = pd.DatetimeIndex(da.time.values)
        if not t.is_monotonic_increasing or not t.is_unique:
            bad = t[t.duplicated()][0] if not t.is_unique else t[1:][np.diff(t.asi8) <= 0][0]
            what = "duplicated" if not t.is_unique else "out of order at"
            raise InputError(path, "variable 'time'", f"time axis {what} {bad.date()}")
        inside = (t >= want[0]) & (t <= want[-1])
        if not inside.any():
            log.skipped.append((str(path), f"no {name} data in {want[0].date()}..{want[-1].date()}"))
            continue
        kept.append((path, da.isel(time=np.flatnonzero(inside)) if not inside.all() else da))
    if not kept:
        raise InputError(parts[0][0].parent if parts else "?", f"variable {name!r}",
                         f"no file covers the record {want[0].date()}..{want[-1].date()}")
    kept.sort(key=lambda pd_: pd_[1].time.values[0])
    for (p0, a0), (p1, a1) in zip(kept, kept[1:]):
        if a1.time.values[0] <= a0.time.values[-1]:
            raise InputError(p1, "variable 'time'", f"overlaps {p0.name} (both hold "
                                                    f"{pd.Timestamp(a1.time.values[0]).date()})")
    da = xr.concat([a for _, a in kept], dim="time") if len(kept) > 1 else kept[0][1]
    have = pd.DatetimeIndex(da.time.values)
    missing = want.difference(have)
    if freq == "D" and calendar_noleap and len(missing):
        leap = missing[(missing.month == 2) & (missing.day == 29)]
        if len(leap):
            full = have.union(leap)
            src = full.where(~full.isin(leap), full - pd.Timedelta(days=1))  # 29 February ← the 28th
            da = da.isel(time=have.get_indexer(src)).assign_coords(time=full.values)
            log.notes.append(f"{name}: noleap calendar, {len(leap)} × 29 February filled with the 28th")
            missing = missing.difference(leap)
    if len(missing):
        fmt = "%Y-%m-%d" if freq == "D" else "%Y-%m"
        # name the file whose span holds the first missing step, else the one after (or before) it
        first = np.datetime64(missing[0])
        holder = next((p for p, a in kept if a.time.values[0] <= first <= a.time.values[-1]), None)
        after = next((p for p, a in kept if a.time.values[0] > first), None)
        before = next((p for p, a in reversed(kept) if a.time.values[-1] < first), None)
        where = holder or after or kept[-1][0]
        rel = ("inside this file" if holder else f"between {before.name} and this file" if after and before
               else "before this file" if after else "after this file")
        raise InputError(where, f"variable {name!r}",
                         f"time axis has a gap: no data for {missing[0].strftime(fmt)} ({rel})"
                         f"{f' and {len(missing) - 1} more steps' if len(missing) > 1 else ''} "
                         f"in the record {want[0].strftime(fmt)}..{want[-1].strftime(fmt)}")
    return da.sel(time=want)


def units_of(da: xr.DataArray, path: Path, name: str, override: str | None) -> str:
    u = override if override is not None else da.attrs.get("units")
    if u is None:
        raise InputError(path, f"variable {name!r}", "has no units attribute (set 'units' for it in the config)")
    return str(u)


def _land_weight(res: float, basis: str, path: Path, name: str) -> xr.DataArray:
    """m² per cell that a flux density of ``basis`` refers to: the cell, or its land."""
    a = cell_areas(res)
    if basis == "cell":
        return a
    if basis != "land":
        raise InputError(path, f"variable {name!r}", f"area basis {basis!r} must be 'land' or 'cell'")
    try:
        lf, _ = default_masks(res)
    except ValueError:
        raise InputError(path, f"variable {name!r}", f"per-land-area fluxes need the land fraction at {res:g}°; "
                                                     "fluxscale ships it at multiples of 0.5° only") from None
    return a * lf


def _factor(src: float, dst: float, path: Path, name: str) -> int:
    r = dst / src
    k = int(round(r))
    if k < 1 or abs(r - k) > 1e-6:
        raise InputError(path, f"variable {name!r}",
                         f"grid {src:g}° does not match the target {dst:g}°: fluxscale aggregates finer grids by an "
                         "integer ratio and never interpolates to a finer grid")
    return k


def regrid_flux(da: xr.DataArray, res: float, target_res: float, basis: str, target_weight: xr.DataArray,
                 path: Path, name: str) -> xr.DataArray:
    """Flux density per m² of ``basis`` on ``res`` → per m² of land on ``target_res``;
    the integral Σ value × weight is kept; NaN where ``target_weight`` is 0."""
    k = _factor(res, target_res, path, name)
    w_src = _land_weight(res, basis, path, name)
    if k == 1 and basis == "land":
        return da.where(target_weight > 0)
    if basis == "cell":  # cell areas vary with latitude only: a (lat,) factor keeps a 0.05° graph small
        amount = da * xr.DataArray(w_src.values[:, 0], dims="lat")
    else:
        amount = da * w_src.values
    if k > 1:
        defined = amount.notnull().coarsen(lat=k, lon=k).sum() > 0
        amount = amount.fillna(0.0).coarsen(lat=k, lon=k).sum().where(defined)
        amount = amount.assign_coords(lat=target_weight.lat.values, lon=target_weight.lon.values)
    tw = target_weight.values
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(tw > 0, 1.0 / np.where(tw > 0, tw, 1.0), np.nan)
    return amount * inv


def _regrid_mean(da: xr.DataArray, res: float, target_res: float, path: Path, name: str) -> xr.DataArray:
    """Area-weighted mean of the defined fine cells (drivers)."""
    k = _factor(res, target_res, path, name)
    if k == 1:
        return da
    a = xr.DataArray(cell_areas(res).values, dims=("lat", "lon"))
    num = (da * a).fillna(0.0).coarsen(lat=k, lon=k).sum()
    den = a.where(da.notnull(), 0.0).coarsen(lat=k, lon=k).sum()
    lat, lon = grid_centres(target_res)
    return (num / den.where(den > 0)).assign_coords(lat=lat, lon=lon)


def _read_parts(files: Iterable[Path], variable: str, time_chunk: int | None, log: ReadLog,
                ) -> list[tuple[Path, xr.DataArray, float, str]]:
    parts = []
    for path in files:
        ds = open_netcdf(path, time_chunk)
        da = variable_of(ds, path, variable)
        da, res = normalise_space(da, path, variable)
        parts.append((path, da, res))
        log.read.append(str(path))
    return parts


def read_monthly_flux(files: Sequence[Path], variable: str, *, start: str, end: str, target_weight: xr.DataArray,
                      species: str | None = None, basis: str = "land", units: str | None = None,
                      member_dim: str | None = None, default_species: str | None = None,
                      log: ReadLog | None = None) -> xr.DataArray:
    """A monthly carbon flux (prior, inversion, fire) from NetCDF files, on a target grid.

    Parameters
    ----------
    files : paths
        One file per year (FLUXCOM) or one file for the whole record (GCB, GFAS);
        daily files are averaged to months.
    variable : str
        The flux variable, e.g. ``"NEE"``, ``"land_flux_only_fossil_cement_adjusted"``,
        ``"co2fire"``.
    start, end : str
        The record (``"2001-01-01"``, ``"2017-12-31"``); every month must be present.
    target_weight : DataArray (lat, lon)
        Land area (m²) of the target grid's cells where the store defines the flux
        (0 elsewhere → NaN); its resolution is the target's.
    species : {"C", "CO2"}, optional
        What the mass in the units counts, as declared by the user (a contradicting tag
        in the units is an error).
    default_species : {"C", "CO2"}, optional
        The product's convention when neither the units nor ``species`` say (GFAS: CO2).
    basis : {"land", "cell"}
        Whether the file's flux is per m² of land (FLUXCOM) or of grid cell (GCB,
        GFAS); the result is per m² of land.
    units : str, optional
        Override of the file's units attribute.
    member_dim : str, optional
        A leading dimension kept (``"ensemble_member"`` of GCB inversion files).

    Returns
    -------
    DataArray
        ``([member_dim,] time, lat, lon)`` float32 gC m-2 d-1, lazy, time = month starts.
    """
    log = log if log is not None else ReadLog()
    period = Period(pd.Timestamp(start), pd.Timestamp(end))
    target_res = float(180.0 / target_weight.sizes["lat"])
    pieces = []
    for path, da, res in _read_parts(files, variable, None, log):
        where = f"variable {variable!r}"
        extra = [d for d in da.dims if d not in ("time", "lat", "lon", member_dim)]
        if extra:
            raise InputError(path, where, f"unexpected dimensions {extra} (expected {member_dim or ''} time lat lon)")
        if member_dim and member_dim not in da.dims:
            raise InputError(path, where, f"has no {member_dim!r} dimension (dims {tuple(da.dims)})")
        if member_dim:  # one member per task (a GCB file is ~1 GB; members are chosen after reading)
            da = da.chunk({member_dim: 1})
        try:
            factor = flux_factor(units_of(da, path, variable, units), species, default_species=default_species)
        except UnitError as e:
            raise InputError(path, where, str(e)) from None
        da, _ = decode_time(da, path, variable)
        if da.sizes["time"] == 0:
            raise InputError(path, where, "has no time steps (an empty year)")
        da = to_monthly(da, path, variable, log)
        da = regrid_flux(da * factor, res, target_res, basis, target_weight, path, variable)
        pieces.append((path, da))
    out = stack_files(pieces, variable, "MS", period, log, calendar_noleap=False)
    out = out.astype(np.float32)
    out.attrs = {"units": "gC m-2 d-1", "source_files": len(pieces)}
    return out


def read_daily_driver(files: Sequence[Path], name: str, units: str, *, start: str, end: str, target_res: float,
                      variable: str | None = None, file_units: str | None = None, time_chunk: int = 366,
                      log: ReadLog | None = None) -> xr.DataArray:
    """A daily driver (``Tair``, ``WAI2``) from per-year (or one) NetCDF files.

    Returns ``(time, lat, lon)`` float32 in ``units`` on the ``target_res`` grid, lazy,
    one chunk per ``time_chunk`` days of a file (default: a per-year file is one chunk, so
    that each 365-day store chunk is assembled from at most two of them).
    """
    log = log if log is not None else ReadLog()
    variable = variable or name
    period = Period(pd.Timestamp(start), pd.Timestamp(end))
    pieces, noleap = [], False
    for path, da, res in _read_parts(files, variable, time_chunk, log):
        da = convert_units(da, path, variable, file_units, units)
        da, cal = decode_time(da, path, variable)
        if da.sizes["time"] == 0:
            raise InputError(path, f"variable {variable!r}", "has no time steps (an empty year)")
        noleap |= cal in ("noleap", "365_day")
        pieces.append((path, _regrid_mean(da, res, target_res, path, variable)))
    out = stack_files(pieces, variable, "D", period, log, calendar_noleap=noleap).astype(np.float32)
    out.attrs = {"units": units}
    return out


def convert_units(da: xr.DataArray, path: Path, name: str, file_units: str | None, units: str) -> xr.DataArray:
    try:
        scale, offset = linear_conversion(units_of(da, path, name, file_units), units)
    except UnitError as e:
        raise InputError(path, f"variable {name!r}", str(e)) from None
    if (scale, offset) == (1.0, 0.0):
        return da
    return da * scale + offset


_DOY_NAMES = ("doy", "dayofyear", "day_of_year", "time")


def _read_one(files: Sequence[Path], variable: str, what: str, log: ReadLog) -> tuple[Path, xr.DataArray, float]:
    """The one file of a product that comes in one file (``what`` names it in the error)."""
    if len(files) != 1:
        raise InputError(files[0] if files else variable, f"variable {variable!r}",
                         f"{what} comes in one file, {len(files)} match")
    [(path, da, res)] = _read_parts(files, variable, None, log)
    return path, da, res


def read_seasonal_driver(files: Sequence[Path], name: str, units: str, *, target_res: float,
                         variable: str | None = None, file_units: str | None = None,
                         log: ReadLog | None = None) -> xr.DataArray:
    """A mean-seasonal-cycle driver: ``(doy, lat, lon)`` with doy = 1…366.

    The file holds 366 (or 365: day 366 repeats day 365) steps along ``doy``,
    ``dayofyear`` or ``time`` (a leap year's days, in order).
    """
    log = log if log is not None else ReadLog()
    variable = variable or name
    path, da, res = _read_one(files, variable, "a mean seasonal cycle", log)
    dim = next((d for d in _DOY_NAMES if d in da.dims), None)
    if dim is None or da.ndim != 3:
        raise InputError(path, f"variable {variable!r}", f"expected (doy, lat, lon), found dims {tuple(da.dims)}")
    n = da.sizes[dim]
    if n not in (365, 366):
        raise InputError(path, f"variable {variable!r}", f"a daily mean seasonal cycle has 365 or 366 steps, found {n}")
    da = da.drop_vars(dim, errors="ignore").rename({dim: "doy"})
    if n == 365:
        da = xr.concat([da, da.isel(doy=[364])], dim="doy")
        log.notes.append(f"{path.name}: 365-day seasonal cycle, day 366 repeats day 365")
    da = convert_units(da, path, variable, file_units, units)
    da = _regrid_mean(da, res, target_res, path, variable).assign_coords(doy=np.arange(1, 367))
    out = da.astype(np.float32)
    out.attrs = {"units": units}
    return out


def read_static_driver(files: Sequence[Path], name: str, units: str, *, target_res: float,
                       variable: str | None = None, file_units: str | None = None,
                       log: ReadLog | None = None) -> xr.DataArray:
    """A one-value-per-cell driver: ``(lat, lon)`` (a singleton ``time`` is dropped)."""
    log = log if log is not None else ReadLog()
    variable = variable or name
    path, da, res = _read_one(files, variable, "a static driver", log)
    extra = [d for d in da.dims if d not in ("lat", "lon")]
    if any(da.sizes[d] != 1 for d in extra):
        raise InputError(path, f"variable {variable!r}", f"expected (lat, lon), found dims {dict(da.sizes)}")
    da = da.squeeze(extra, drop=True) if extra else da
    da = convert_units(da, path, variable, file_units, units)
    out = _regrid_mean(da, res, target_res, path, variable).astype(np.float32)
    out.attrs = {"units": units}
    return out
