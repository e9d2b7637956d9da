"""A user's plant-functional-type map → the majority IGBP class of every cell of the grid
(``grid.zarr``'s ``pft``, ``pft_class``, ``pft_name``: ``fluxscale ingest`` with ``pft = FILE``).

The source is a NetCDF file or a Zarr store holding one 2-D variable of IGBP classes on a
regular latitude/longitude grid (e.g. MODIS MCD12Q1 ``LC_Type1`` regridded to 0.05°, or
already on 0.5°): class ids 1–17 (:data:`fluxscale.dataset.schema.IGBP_CLASSES`), or class names
(strings: ``"EBF"`` or ``"evergreen broadleaf forest"``, any case), or ids described by CF
``flag_values`` / ``flag_meanings`` attributes whose meanings are those names. Latitude may
run either way, longitude in −180…180 or 0…360; any other value (0, 255, a fill value, NaN,
an unknown name) is "no class".

Each model-grid cell gets the class most source pixels inside it have (pixels are counted,
not area-weighted: inside one cell their areas differ by < 1 % at 0.5°; ties go to the
lowest class id); a cell with no source pixel inside it (a source coarser than the grid)
takes the class of the source pixel that contains its centre. Cells that are not land
cells of the grid, or have no class, get :data:`fluxscale.dataset.schema.NO_PFT`.

Memory: the source is read in bands of rows (about ``block_pixels`` values at a time) and
only the per-cell class counts ``(lat, lon, 18)`` are kept, so a 500 m global map fits.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from fluxscale.errors import InputError
from fluxscale.dataset.schema import IGBP_CLASSES, NO_PFT, pft_dataset
from fluxscale.ingest.gridded import LAT_NAMES, LON_NAMES, ReadLog

__all__ = ["PFT_VARIABLES", "majority_pft", "class_ids", "read_pft"]

N_CLASSES = len(IGBP_CLASSES)
PFT_VARIABLES = ("pft", "igbp", "LC_Type1", "lc_type1", "Land_Cover_Type_1", "land_cover", "landcover")
"""Variable names tried, in order, when the config names none and the file has several."""


def class_ids(values: np.ndarray, flags: dict[int, str] | None = None) -> np.ndarray:
    """IGBP class ids (int16, 0 = no class) of ``values``: ids 1–17, names (abbreviation
    or full name, any case), or ids whose names ``flags`` ({file id: meaning}) gives."""
    lookup = {}
    for i, abbrev, name in IGBP_CLASSES:
        for key in (abbrev, name, name.replace(" ", "_"), name.replace("/", "_").replace(" ", "_")):
            lookup[key.lower()] = i
    values = np.asarray(values)
    if values.dtype.kind in "OUST" or flags:
        uniq, inv = np.unique(values if values.dtype.kind in "OUST" else np.where(np.isfinite(values), values, -9999),
                              return_inverse=True)
        ids = []
        for u in uniq:
            if flags is not None and values.dtype.kind not in "OUST":
                u = flags.get(int(u), "")
            u = u.decode() if isinstance(u, bytes) else str(u)
            ids.append(lookup.get(u.strip().lower(), 0))
        return np.asarray(ids, dtype=np.int16)[inv].reshape(values.shape)
    v = np.where(np.isfinite(values), values, 0) if values.dtype.kind == "f" else values
    ok = (v >= 1) & (v <= N_CLASSES) & (v == np.round(v))
    return np.where(ok, v, 0).astype(np.int16)


def _cell_index(coord: np.ndarray, start: float, res: float, n: int) -> np.ndarray:
    return np.clip(np.floor((coord - start) / res).astype(np.int64), 0, n - 1)


def count_classes(ids: np.ndarray, lat: np.ndarray, lon: np.ndarray, res: float,
                  counts: np.ndarray | None = None) -> np.ndarray:
    """Add the source pixels ``ids`` (rows ``lat``, columns ``lon``, degrees; ids 1–17, 0 =
    none) to ``counts`` ``(nlat, nlon, 18)`` of the global grid of spacing ``res`` degrees
    (index 0 unused); returns it."""
    nlat, nlon = int(round(180 / res)), int(round(360 / res))
    if counts is None:
        counts = np.zeros((nlat, nlon, N_CLASSES + 1), dtype=np.int64)
    i = _cell_index(np.asarray(lat, dtype=np.float64), -90.0, res, nlat)
    j = _cell_index((np.asarray(lon, dtype=np.float64) + 180.0) % 360.0, 0.0, res, nlon)
    flat = (i[:, None] * nlon + j[None, :]) * (N_CLASSES + 1) + ids
    keep = ids > 0
    counts.reshape(-1)[:] += np.bincount(flat[keep], minlength=counts.size)
    return counts


def majority_pft(counts: np.ndarray) -> np.ndarray:
    """The majority class id of every cell from its class counts ``(..., 18)`` (ties: the
    lowest id), :data:`~fluxscale.dataset.schema.NO_PFT` where no pixel counted; int8."""
    best = np.argmax(counts[..., 1:], axis=-1) + 1
    return np.where(counts[..., 1:].sum(axis=-1) > 0, best, NO_PFT).astype(np.int8)


def _open(path: Path) -> xr.Dataset:
    if not path.exists():
        raise InputError(path, None, "file not found")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            with warnings.catch_warnings():  # a store without consolidated metadata is fine
                warnings.simplefilter("ignore", RuntimeWarning)
                return xr.open_zarr(str(path), consolidated=None, decode_times=False)
        return xr.open_dataset(path, decode_times=False, chunks={})
    except Exception as e:  # noqa: BLE001 - any backend failure becomes one message naming the file
        raise InputError(path, None, f"cannot be read as NetCDF or Zarr ({type(e).__name__}: {e})") from None


def _pick(ds: xr.Dataset, path: Path, variable: str) -> xr.DataArray:
    spatial = [n for n, v in ds.data_vars.items() if any(d in v.dims for d in LAT_NAMES)]
    if variable:
        if variable not in ds.data_vars:
            raise InputError(path, f"variable {variable!r}", f"missing (the file has {', '.join(map(str, ds.data_vars))})")
        return ds[variable]
    named = [n for n in PFT_VARIABLES if n in ds.data_vars]
    if named:
        return ds[named[0]]
    if len(spatial) == 1:
        return ds[spatial[0]]
    raise InputError(path, None, f"which variable holds the classes? (candidates: {', '.join(map(str, spatial)) or 'none'}); "
                                 f"name it with pft_variable = ...")


def read_pft(path: str | Path, grid: xr.Dataset, variable: str = "", log: ReadLog | None = None,
             block_pixels: int = 20_000_000) -> xr.Dataset:
    """The PFT variables of ``grid.zarr`` (in memory) from a user's class map (see the module
    docstring); assign them to the grid before it is written.

    Parameters
    ----------
    path : path
        NetCDF file or Zarr store.
    grid : xarray.Dataset
        The model grid (``grid.zarr``): its spacing and land cells.
    variable : str
        The class variable ('' → :data:`PFT_VARIABLES`, else the only lat/lon variable).
    log : ReadLog, optional
        Gets the file read and a note on land cells without a class.

    Returns
    -------
    xarray.Dataset
        ``pft`` (lat, lon) int8 class ids (:data:`~fluxscale.dataset.schema.NO_PFT` off land),
        ``pft_name``/``pft_long_name`` (pft_class).
    """
    path = Path(path)
    ds = _open(path)
    da = _pick(ds, path, variable)
    where = f"variable {da.name!r}"
    lat_d = next((d for d in LAT_NAMES if d in da.dims), None)
    lon_d = next((d for d in LON_NAMES if d in da.dims), None)
    if lat_d is None or lon_d is None or da.ndim != 2:
        raise InputError(path, where, f"needs exactly the dimensions latitude and longitude, has {tuple(da.dims)}")
    if lat_d not in da.coords or lon_d not in da.coords:
        raise InputError(path, where, "has no latitude/longitude coordinate values")
    da = da.transpose(lat_d, lon_d)
    lat = np.asarray(da[lat_d].values, dtype=np.float64)
    lon = np.asarray(da[lon_d].values, dtype=np.float64)
    if np.abs(lat).max(initial=0) > 90:
        raise InputError(path, where, f"latitudes outside ±90° ({lat.min():g}..{lat.max():g})")
    flags = None
    if "flag_values" in da.attrs and "flag_meanings" in da.attrs:
        fv = np.atleast_1d(np.asarray(da.attrs["flag_values"])).astype(int)
        fm = str(da.attrs["flag_meanings"]).split()
        flags = dict(zip(fv.tolist(), fm))
    res = float(grid.attrs["resolution_deg"])
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    counts = np.zeros((nlat, nlon, N_CLASSES + 1), dtype=np.int64)
    rows = max(1, block_pixels // max(lon.size, 1))
    for r0 in range(0, lat.size, rows):
        block = np.asarray(da.isel({lat_d: slice(r0, r0 + rows)}).values)
        count_classes(class_ids(block, flags), lat[r0:r0 + rows], lon, res, counts)
    pft = majority_pft(counts)
    src_res = np.median(np.abs(np.diff(lat))) if lat.size > 1 else 180.0
    if src_res > res:  # a coarser source: cells without a pixel inside take the one over their centre
        empty = pft == NO_PFT
        ci, cj = np.nonzero(empty)
        if ci.size:
            glat, glon = grid.lat.values[ci], grid.lon.values[cj]
            wl = (lon + 180.0) % 360.0 - 180.0
            si = np.abs(lat[None, :] - glat[:, None]).argmin(axis=1)
            sj = np.abs(((wl[None, :] - glon[:, None]) + 180.0) % 360.0 - 180.0).argmin(axis=1)
            near = np.zeros(ci.size, dtype=np.int16)
            for k in np.unique(si):  # one source row at a time
                m = si == k
                near[m] = class_ids(np.asarray(da.isel({lat_d: int(k)}).values)[sj[m]], flags)
            pft[ci, cj] = np.where(near > 0, near, NO_PFT).astype(np.int8)
    land = np.asarray(grid.land.values, dtype=bool)
    pft[~land] = NO_PFT
    if log is not None:
        log.read.append(str(path))
        none = int((pft[land] == NO_PFT).sum())
        if none:
            log.notes.append(f"pft: {none} of {int(land.sum())} land cells have no class in {path.name}")
    return pft_dataset(pft, grid, f"{path} (variable {da.name})")
