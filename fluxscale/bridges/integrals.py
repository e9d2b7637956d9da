"""Regional integrals of NEE fields (paper Eq. 2, §2.3), streamed with Dask.

A regional integral is, for each month and each region of Table A1, the sum over every
cell that the grid's ``region`` mask assigns to that region of

    NEE [gC m-2 d-1] × days in the month [d] × cell_area [m2] × land_fraction [1],

in PgC per month (negative = uptake), plus a ``GLOBAL`` entry over all 18 regions. The
spatial sum is a matrix product per chunk (cells × one-hot region weights), so
a 17-year daily 0.5° cube is never loaded whole: each Dask task holds one input chunk
and an 18-value partial sum per time step.

The stage :func:`compute_integrals` writes ``integrals.zarr``: the prior's integrals on
the model grid, each inversion system's on its own (coarser) grid after subtracting the
fire flux cell by cell, the fire's, and (for a twin) the truth's, with each region's land
area for the area weights of Eq. 11.
"""

from __future__ import annotations

import time as _time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr

from fluxscale.errors import StoreError
from fluxscale.dataset.grid import coarsen_grid
from fluxscale.dataset.regions import REGION_ABBREVS, REGIONS
from fluxscale.dataset.schema import NEE_UNITS, normalise_units
from fluxscale.dataset.stores import open_stores, store_path, write_store

__all__ = ["G_PER_PG", "GLOBAL", "REGION_LABELS", "integrate_regions", "integrate_cells", "region_land_area",
           "grid_for", "checked", "compute_integrals"]

G_PER_PG = 1e15
GLOBAL = "GLOBAL"
REGION_LABELS: tuple[str, ...] = (*REGION_ABBREVS, GLOBAL)
"""The ``region`` coordinate of every integral: the Table A1 abbreviations, then GLOBAL."""


def _time_kind(time: xr.DataArray, label: str) -> str:
    """``"daily"`` or ``"monthly"`` (month starts, no gaps); anything else is refused."""
    t = pd.DatetimeIndex(time.values)
    if t.size == 0:
        raise StoreError(label, "time", "empty time axis")
    if t.size == 1 or np.all(np.diff(t.values) == np.timedelta64(1, "D")):
        if t.size > 1 or not t[0].is_month_start:
            return "daily"
    expected = pd.date_range(t[0], periods=t.size, freq="MS")
    if t[0].is_month_start and t.equals(expected):
        return "monthly"
    raise StoreError(label, "time", "time steps are neither consecutive days nor consecutive month starts")


def _check_field(nee: xr.DataArray, grid: xr.Dataset, space: tuple[str, ...], label: str) -> None:
    missing = {"time", *space} - set(nee.dims)
    if missing:
        raise StoreError(label, nee.name, f"dims {nee.dims} lack {sorted(missing)}")
    units = nee.attrs.get("units")
    if units is not None and normalise_units(units) != normalise_units(NEE_UNITS):
        raise StoreError(label, nee.name, f"units {units!r}; integrals need {NEE_UNITS!r}")
    for c in space:
        if c == "cell":
            if nee.sizes["cell"] != grid.sizes["cell"]:
                raise StoreError(label, nee.name, f"{nee.sizes['cell']} cells, the grid has {grid.sizes['cell']}")
        elif nee.sizes[c] != grid.sizes[c] or not np.allclose(nee[c].values, grid[c].values):
            raise StoreError(label, nee.name, f"{c} coordinate does not match the grid "
                                              f"({nee.sizes[c]} vs {grid.sizes[c]} values)")


def _weights(grid: xr.Dataset) -> xr.DataArray:
    """Area × land fraction (lat, lon), m², zero outside every region."""
    w = grid.cell_area * grid.land_fraction.astype(np.float64)
    return w.where(grid.region >= 0, 0.0)


def _finish(per_step: xr.DataArray, kind: str, label: str) -> xr.DataArray:
    """(time, region + count) gC per day → (region, time) PgC per month with GLOBAL
    appended; the refused-value count per month is the coordinate ``nonfinite``."""
    bad = per_step.isel(region=-1, drop=True)
    per_step = per_step.isel(region=slice(0, len(REGIONS)))
    if kind == "daily":
        t = pd.DatetimeIndex(per_step.time.values)
        counts = pd.Series(1, index=t).resample("MS").sum()
        full = counts.index.days_in_month
        short = counts.index[counts.values != full]
        if len(short):
            raise StoreError(label, per_step.name, f"month {short[0]:%Y-%m} has {int(counts[short[0]])} of "
                                                   f"{short[0].days_in_month} days; integrals need whole months")
        monthly = per_step.resample(time="MS").sum()
        bad = bad.resample(time="MS").sum()
    else:
        monthly = per_step * per_step.time.dt.days_in_month
    monthly = (monthly / G_PER_PG).assign_coords(region=np.array(REGION_ABBREVS, dtype=object))
    glob = monthly.sum("region").expand_dims(region=np.array([GLOBAL], dtype=object))
    out = xr.concat([monthly, glob], dim="region").transpose("region", "time", ...)
    out = out.assign_coords(nonfinite=bad.astype(np.int64))
    out.attrs = {"units": "PgC month-1", "long_name": "regional integral of NEE per month (negative = uptake)",
                 "cell_methods": "area: sum (land) time: sum"}
    return out


def checked(result: xr.DataArray, grid: xr.Dataset,
            sources: list[tuple[str, str, xr.DataArray]]) -> xr.DataArray:
    """``result`` (a computed :func:`integrate_regions` / :func:`integrate_cells`) without
    its ``nonfinite`` count, after refusing any non-finite value the integral met.

    ``sources``: (store, variable, field) the integral was made of, in the order to
    search: the first month with a refused value is re-read from each (one month, one
    slice of the leading dims) to name the first bad value's store, variable, time and
    cell. Raises :class:`~fluxscale.errors.StoreError`.
    """
    if "nonfinite" not in result.coords:
        return result
    n = result.nonfinite
    counts = np.asarray(n.values)
    if not counts.any():
        return result.drop_vars("nonfinite")
    first = dict(zip(n.dims, np.argwhere(counts > 0)[0]))
    sel = {d: n[d].values[i] for d, i in first.items() if d in n.coords}
    month = pd.Timestamp(sel.pop("time"))
    total = int(counts.sum())
    where = ", ".join(f"{d} {v}" for d, v in sel.items())
    for store, var, field in sources:
        part = field.sel({d: v for d, v in sel.items() if d in field.dims})
        part = part.sel(time=slice(month, month + pd.offsets.MonthEnd(0))).load()
        if "cell" in part.dims:
            bad = ~np.isfinite(part.transpose("time", "cell").values)
        else:
            w = _weights(grid).values
            v = part.transpose("time", "lat", "lon").values
            bad = np.isinf(v) & (w > 0) | np.isnan(v) & grid.land.values.astype(bool)
        if bad.any():
            t, *c = np.argwhere(bad)[0]
            day = pd.Timestamp(part.time.values[t])
            at = (f"cell {c[0]}" if len(c) == 1 else
                  f"lat {float(part.lat.values[c[0]]):.2f}, lon {float(part.lon.values[c[1]]):.2f}")
            raise StoreError(store, var, f"{total} non-finite value(s) on land cells, which a regional integral "
                                         f"cannot skip (first: {where + ', ' if where else ''}{day:%Y-%m-%d}, {at}, "
                                         f"value {_value(part, t, c)}); "
                                         f"fill or mask them, or leave that {'system' if 'system' in sel else 'field'} out")
    raise StoreError(sources[0][0], sources[0][1], f"{total} non-finite value(s) on land cells (first in {month:%Y-%m}"
                                                   f"{', ' + where if where else ''})")


def _value(part: xr.DataArray, t: int, c: list[int]) -> float:
    dims = ("time", "cell") if "cell" in part.dims else ("time", "lat", "lon")
    return float(part.transpose(*dims).values[(t, *c)])


def _region_sums(x: np.ndarray, w: np.ndarray, reg: np.ndarray, chk: np.ndarray) -> np.ndarray:
    """Kernel: Σ over the block's cells of x × w per region id, as one matrix product.

    ``x`` (…, *space) NEE, ``w``, ``reg`` and ``chk`` (*space) weights (m², 0 off-region),
    region ids and the cells that must be finite (land cells). Returns (…, 1 per space
    axis, 18 + 1) float64: the 18 regions' sums, then the number of values the check
    refuses among those the sums consume (NaN or ±inf at a ``chk`` cell of a region,
    ±inf at any weighted cell). NaN cells outside ``chk`` contribute nothing (ocean,
    partial coastal cells). The count rides in the same pass, so the values are checked
    as they are read, never in a second read, at no measurable cost (one 31-day 0.5°
    chunk: 19.4 ms against 20.1 ms without the count, medians of 15;
    ``python -m benchmarks.integrals_check_cost``).
    Written by hand rather than with flox's grouped nansum because gathering the
    region cells and multiplying by a one-hot weight matrix (BLAS) ran 6–10× faster per
    chunk here (0.024 s vs 0.15–0.25 s for a 31-day 0.5° chunk; benchmarks/integrals.py).
    """
    nspace = w.ndim
    fw, fr = w.ravel(), reg.ravel()
    idx = np.flatnonzero((fr >= 0) & (fw > 0))
    onehot = np.zeros((idx.size, len(REGIONS)))
    onehot[np.arange(idx.size), fr[idx]] = fw[idx]
    xs = np.asarray(x).reshape(x.shape[:x.ndim - nspace] + (-1,))[..., idx].astype(np.float64)
    missing = ~np.isfinite(xs)
    land = chk.ravel()[idx]
    bad = np.count_nonzero(missing & land, axis=-1) + np.count_nonzero(np.isinf(xs[..., ~land]), axis=-1)
    xs[missing] = 0.0
    out = np.concatenate([xs @ onehot, bad[..., None].astype(np.float64)], axis=-1)
    return out.reshape(out.shape[:-1] + (1,) * nspace + (len(REGIONS) + 1,))


def _reduce(nee: xr.DataArray, w: np.ndarray, reg: np.ndarray, chk: np.ndarray,
            space: tuple[str, ...]) -> xr.DataArray:
    """(…, *space) → (…, region) sums of nee × w, and as a 19th ``region`` entry the count
    of refused values (:func:`_region_sums`); blockwise over nee's chunks (any chunking:
    each task reduces one chunk to 19 numbers per leading index, the partial sums of
    spatial chunks are then added)."""
    nee = nee.transpose(..., *space)
    lead = nee.dims[:nee.ndim - len(space)]
    data = nee.data
    sp_axes = tuple(range(len(lead), nee.ndim))
    if isinstance(data, dask.array.Array):
        wd, rd, cd = (dask.array.from_array(a, chunks=data.chunks[len(lead):]) for a in (w, reg, chk))
        ind = tuple(range(nee.ndim))
        parts = dask.array.blockwise(_region_sums, ind + (nee.ndim,), data, ind, wd, sp_axes, rd, sp_axes, cd, sp_axes,
                                     new_axes={nee.ndim: len(REGIONS) + 1}, adjust_chunks={a: 1 for a in sp_axes},
                                     dtype=np.float64, meta=np.empty((0,) * (nee.ndim + 1)))
        out = parts.sum(axis=sp_axes)
    else:
        out = _region_sums(np.asarray(data), w, reg, chk).sum(axis=sp_axes)
    coords = {k: v for k, v in nee.coords.items() if set(v.dims) <= set(lead)}
    return xr.DataArray(out, dims=(*lead, "region"), coords=coords, name=nee.name)


def integrate_regions(nee: xr.DataArray, grid: xr.Dataset) -> xr.DataArray:
    """Regional monthly integrals of a gridded NEE field (paper Eq. 2).

    Parameters
    ----------
    nee : xarray.DataArray
        ``(time, lat, lon)`` (other leading dims such as ``system`` are kept) in
        gC m-2 d-1, daily (consecutive days covering whole months) or monthly means
        (one step per month start). Dask-backed input stays lazy; any chunking works,
        each task reduces one chunk. NaN cells (e.g. ocean) contribute nothing.
    grid : xarray.Dataset
        A grid from :func:`fluxscale.dataset.grid.make_grid` (or ``grid.zarr``) whose ``lat``,
        ``lon`` match ``nee``'s: ``cell_area``, ``land_fraction``, ``region``.

    Returns
    -------
    xarray.DataArray
        ``(region, time, …)`` PgC per month, ``region`` = the 18 abbreviations of Table A1
        then ``GLOBAL``; ``time`` = month starts. Lazy when ``nee`` is; one chunk along
        ``region``.
    """
    label = f"NEE field {nee.name or ''}".strip()
    _check_field(nee, grid, ("lat", "lon"), label)
    kind = _time_kind(nee.time, label)
    per_step = _reduce(nee, _weights(grid).values, grid.region.values.astype(np.int64),
                       grid.land.values.astype(bool), ("lat", "lon"))
    return _finish(per_step.rename(nee.name), kind, label)


def integrate_cells(nee: xr.DataArray, grid: xr.Dataset) -> xr.DataArray:
    """:func:`integrate_regions` for a field on the grid's land cells, ``(time, cell)``
    (the truth's and the model outputs' layout)."""
    label = f"NEE field {nee.name or ''}".strip()
    _check_field(nee, grid, ("cell",), label)
    kind = _time_kind(nee.time, label)
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    per_step = _reduce(nee, _weights(grid).values[il, jl], grid.region.values[il, jl].astype(np.int64),
                       np.ones(il.size, dtype=bool), ("cell",))
    return _finish(per_step.rename(nee.name), kind, label)


def region_land_area(grid: xr.Dataset) -> xr.DataArray:
    """Land area of each region (and GLOBAL), m²: Σ cell_area × land_fraction."""
    w = _weights(grid).values
    reg = grid.region.values
    a = np.array([w[reg == r].sum() for r in range(len(REGIONS))])
    return xr.DataArray(np.append(a, a.sum()), dims="region", coords={"region": np.array(REGION_LABELS, dtype=object)},
                        attrs={"units": "m2", "long_name": "land area of the region (cell_area x land_fraction)"})


def grid_for(field: xr.Dataset | xr.DataArray, grid: xr.Dataset, label: str) -> xr.Dataset:
    """The grid of ``field``: ``grid`` itself or its integer coarsening (inversions, fire)."""
    if field.sizes["lat"] == grid.sizes["lat"]:
        return grid
    factor, rem = divmod(grid.sizes["lat"], field.sizes["lat"])
    if rem or grid.sizes["lon"] != factor * field.sizes["lon"]:
        raise StoreError(label, None, f"grid {field.sizes['lat']}x{field.sizes['lon']} is not an integer "
                                      f"coarsening of the model grid {grid.sizes['lat']}x{grid.sizes['lon']}")
    return coarsen_grid(grid, factor)


def compute_integrals(root: str | Path, *, out: str | Path | None = None, client=None) -> Path:
    """Write ``integrals.zarr`` for the dataset directory ``root``.

    Variables (PgC per month, negative = uptake; ``region`` = Table A1 + GLOBAL,
    ``time`` = the inversions' month starts):

    - ``prior`` (region, time): the prior NEE on the model grid;
    - ``inversions`` (system, region, time): each system's land flux minus the fire
      flux, cell by cell on the inversions' grid;
    - ``fire`` (region, time): the fire flux on the inversions' grid;
    - ``truth`` (region, time): the twin's true NEE, when ``truth.zarr`` exists;
    - ``land_area`` (region) m² on the model grid, and ``land_area_inversions`` on
      theirs.

    The Dask graph runs on ``client`` when given (else the current scheduler); only the
    small (region, time) results reach this process.
    """
    root = Path(root)
    t0 = _time.perf_counter()
    s = open_stores(root, names=[n for n in ("grid", "prior", "inversions", "fire", "truth")
                                 if n != "truth" or store_path(root, "truth").exists()])
    grid = s["grid"].load()
    inv_grid = grid_for(s["inversions"], grid, str(store_path(root, "inversions")))
    # float64 before subtracting: the difference of two float32 fluxes loses digits
    adjusted = (s["inversions"].land_flux.astype(np.float64) - s["fire"].co2fire.astype(np.float64)).rename("inversions")
    adjusted.attrs["units"] = NEE_UNITS
    fields = {
        "prior": integrate_regions(s["prior"].NEE.rename("prior"), grid),
        "inversions": integrate_regions(adjusted, inv_grid).transpose("system", "region", "time"),
        "fire": integrate_regions(s["fire"].co2fire.rename("fire"), inv_grid),
    }
    if "truth" in s:
        truth = s["truth"].NEE_monthly.rename({"month": "time"}).rename("truth")
        fields["truth"] = integrate_cells(truth, grid)
    if client is not None:
        computed = dict(zip(fields, client.compute(list(fields.values()), sync=True)))
    else:
        computed = dict(zip(fields, dask.compute(*fields.values())))
    inv_path, fire_path = str(store_path(root, "inversions")), str(store_path(root, "fire"))
    sources = {"prior": [(str(store_path(root, "prior")), "NEE", s["prior"].NEE)],
               "inversions": [(inv_path, "land_flux", s["inversions"].land_flux), (fire_path, "co2fire", s["fire"].co2fire)],
               "fire": [(fire_path, "co2fire", s["fire"].co2fire)]}
    if "truth" in s:
        sources["truth"] = [(str(store_path(root, "truth")), "NEE_monthly",
                             s["truth"].NEE_monthly.rename({"month": "time"}))]
    for k in ("fire", "inversions", "prior", "truth"):  # fire first: it would otherwise be blamed on an inversion
        if k in computed:
            computed[k] = checked(computed[k], inv_grid if k in ("fire", "inversions") else grid, sources[k])
    # One monthly axis: the months that every field covers.
    months = computed["inversions"].time.to_index()
    for k, v in computed.items():
        months = months.intersection(v.time.to_index())
    if months.empty:
        raise StoreError(str(root), "time", "the prior, inversions and fire share no month")
    ds = xr.Dataset({k: v.sel(time=months) for k, v in computed.items()})
    long = {"prior": "prior (FLUXCOM role) NEE", "inversions": "inversion land flux minus fire",
            "fire": "fire CO2 emission", "truth": "true NEE of the twin"}
    for k in computed:
        ds[k].attrs = {**computed[k].attrs, "long_name": f"regional integral per month of the {long[k]}"}
    ds["land_area"] = region_land_area(grid)
    ds["land_area_inversions"] = region_land_area(inv_grid)
    ds.attrs.update(title="fluxscale regional integrals", source=str(root),
                    grid_resolution_deg=float(grid.attrs["resolution_deg"]),
                    inversion_resolution_deg=float(inv_grid.attrs["resolution_deg"]),
                    elapsed_s=round(_time.perf_counter() - t0, 3), Conventions="CF-1.10")
    return write_store(ds, out or store_path(root, "integrals"), "integrals")
