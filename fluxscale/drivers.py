"""The 10 drivers of Table A2 and the assembly of daily driver blocks.

Layout of ``drivers.zarr`` (land cells gathered on ``cell``, see :mod:`fluxscale.grid`):

* daily ``(time, cell)``: ``Tair`` (degC), ``WAI2`` (mm);
* mean seasonal cycles ``(doy, cell)``, ``doy`` = 1…366 (day of year; in non-leap years
  day 366 is never used, day 60 is 1 March): ``MSC_EVIRpot`` (MJ m-2 d-1),
  ``MSC_FparLST`` (K), ``MSC_LST_Night`` (K), ``Rg_VIMSC`` (MJ m-2 d-1);
* one value per cell ``(cell,)``: ``MIN_MSC_NDWI`` (1), ``AMP_Band4`` (1),
  ``AMP_MSC_NDVI`` (1), ``AMP_MSC_WAI`` (mm).

No daily copies of the seasonal or static drivers are stored; :func:`assemble_driver_block`
builds the ``(days, cells, 10)`` matrix for any block on demand, reading only the
chunks that the block touches.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import xarray as xr
from numba import njit

from .errors import StoreError

__all__ = [
    "DRIVER_NAMES",
    "DAILY_DRIVERS",
    "SEASONAL_DRIVERS",
    "STATIC_DRIVERS",
    "DRIVER_UNITS",
    "assemble_driver_block",
    "CellDrivers",
    "driver_block",
    "day_of_year_index",
]

DRIVER_NAMES: tuple[str, ...] = (
    "WAI2", "MSC_EVIRpot", "MSC_FparLST", "MIN_MSC_NDWI", "AMP_Band4",
    "MSC_LST_Night", "Rg_VIMSC", "AMP_MSC_NDVI", "Tair", "AMP_MSC_WAI",
)
"""The drivers in Table A2 order: the feature order of every driver block."""
DAILY_DRIVERS = ("Tair", "WAI2")
SEASONAL_DRIVERS = ("MSC_EVIRpot", "MSC_FparLST", "MSC_LST_Night", "Rg_VIMSC")
STATIC_DRIVERS = ("MIN_MSC_NDWI", "AMP_Band4", "AMP_MSC_NDVI", "AMP_MSC_WAI")
DRIVER_UNITS = {
    "Tair": "degC", "WAI2": "mm", "MSC_EVIRpot": "MJ m-2 d-1", "MSC_FparLST": "K",
    "MSC_LST_Night": "K", "Rg_VIMSC": "MJ m-2 d-1", "MIN_MSC_NDWI": "1", "AMP_Band4": "1",
    "AMP_MSC_NDVI": "1", "AMP_MSC_WAI": "mm",
}


def day_of_year_index(time: np.ndarray | pd.DatetimeIndex) -> np.ndarray:
    """Row of the ``doy`` axis (0…365) for each date: ``dayofyear - 1``."""
    return (pd.DatetimeIndex(time).day_of_year.to_numpy() - 1).astype(np.intp)


def _assemble(daily: dict[str, np.ndarray], seasonal: dict[str, np.ndarray], static: dict[str, np.ndarray],
              doy_idx: np.ndarray) -> np.ndarray:
    """Kernel: stack daily (days, cells), seasonal (366, cells) rows picked by
    ``doy_idx`` and static (cells,) into a float32 (days, cells, 10) array."""
    ndays = doy_idx.size
    ncells = next(iter(static.values())).shape[0]
    out = np.empty((ndays, ncells, len(DRIVER_NAMES)), dtype=np.float32)
    for k, name in enumerate(DRIVER_NAMES):
        if name in daily:
            out[:, :, k] = daily[name]
        elif name in seasonal:
            out[:, :, k] = seasonal[name][doy_idx]
        else:
            out[:, :, k] = static[name][None, :]
    return out


def assemble_driver_block(drivers: xr.Dataset, time: slice | np.ndarray = slice(None),
                          cell: slice | np.ndarray = slice(None)) -> np.ndarray:
    """The daily driver matrix of a block of days × cells.

    Parameters
    ----------
    drivers : xarray.Dataset
        ``drivers.zarr`` as opened by :func:`fluxscale.stores.open_store` (lazy).
    time, cell : slice or integer array
        Positional selection along ``time`` and ``cell``.

    Returns
    -------
    numpy.ndarray
        float32 ``(days, cells, 10)`` in :data:`DRIVER_NAMES` order. Reads only the
        chunks of the daily variables that the block touches, plus the seasonal and
        static values of the block's cells.
    """
    sub = drivers.isel(time=time, cell=cell)
    doy_idx = day_of_year_index(sub.time.values)
    # One synchronous read of the ten arrays: cheap, and safe inside a task on a Dask worker
    # (no nested graph on the cluster's scheduler).
    (arrays,) = dask.compute({n: sub[n].data for n in DRIVER_NAMES}, scheduler="synchronous")
    arrays = {n: np.asarray(a, dtype=np.float32) for n, a in arrays.items()}
    return _assemble({n: arrays[n] for n in DAILY_DRIVERS}, {n: arrays[n] for n in SEASONAL_DRIVERS},
                     {n: arrays[n] for n in STATIC_DRIVERS}, doy_idx)


def driver_block(drivers: xr.Dataset, time: slice | np.ndarray = slice(None),
                 cell: slice | np.ndarray = slice(None)) -> xr.DataArray:
    """:func:`assemble_driver_block` as a labelled ``(time, cell, driver)`` DataArray."""
    sub = drivers.isel(time=time, cell=cell)
    data = assemble_driver_block(drivers, time, cell)
    coords = {"time": sub.time.values, "cell": sub.cell.values, "driver": list(DRIVER_NAMES)}
    return xr.DataArray(data, dims=("time", "cell", "driver"), coords=coords, name="drivers")


class CellDrivers:
    """The drivers of a fixed range of cells, for many blocks of days: the seasonal and
    static drivers are read once, each :meth:`block` reads only the daily ones.

    ``CellDrivers(path, time, cell).block(days)`` equals ``assemble_driver_block(drivers,
    days, cell)``. It reads the Zarr arrays directly: for global inference, which walks a
    band of cells through the whole record, building and running a Dask graph for every
    block of days cost ~0.1 s per block, as much as the reads themselves.

    Parameters
    ----------
    path : path
        ``drivers.zarr``.
    time : array of datetime64
        The store's decoded ``time`` coordinate (for the day of year).
    cell : slice
        Positional range of land cells.
    """

    def __init__(self, path, time: np.ndarray, cell: slice):
        import zarr

        self._path = str(path)
        self._group = zarr.open_group(self._path, mode="r")
        self._time = pd.DatetimeIndex(time)
        self._cell = cell
        self._seasonal = np.stack([self._read(n, (slice(None), cell)) for n in SEASONAL_DRIVERS])
        self._static = np.stack([self._read(n, (cell,)) for n in STATIC_DRIVERS])

    def _read(self, name: str, sel: tuple) -> np.ndarray:
        """``name[sel]`` as float32; a chunk that cannot be decoded (a flipped byte, a
        truncated or empty file) is a :class:`StoreError` naming the store, the variable and
        the chunk files, not the codec's bare traceback."""
        from .stores import chunk_keys, decode_reason

        arr = self._group[name]
        try:
            return np.asarray(arr[sel], dtype=np.float32)
        except Exception as e:  # noqa: BLE001  (numcodecs/blosc raise RuntimeError, ValueError, …)
            raise StoreError(self._path, name, f"cannot decode {chunk_keys(arr, sel)} ({decode_reason(e)}); the "
                             f"file is corrupt or truncated: rebuild the store") from None

    def block(self, time: slice, out: np.ndarray | None = None) -> np.ndarray:
        """float32 ``(days, cells, 10)`` in :data:`DRIVER_NAMES` order for the days ``time``
        (written into ``out`` when given, e.g. a buffer reused from block to block)."""
        daily = np.stack([self._read(n, (time, self._cell)) for n in DAILY_DRIVERS])
        doy = day_of_year_index(self._time[time])
        if out is None:
            out = np.empty((doy.size, daily.shape[2], len(DRIVER_NAMES)), dtype=np.float32)
        _assemble_rows(daily, self._seasonal, self._static, doy, _KIND, _INDEX, out)
        return out


# where each driver of DRIVER_NAMES comes from: 0 daily, 1 seasonal, 2 static, and its row
_KIND = np.array([0 if n in DAILY_DRIVERS else 1 if n in SEASONAL_DRIVERS else 2 for n in DRIVER_NAMES], np.int64)
_INDEX = np.array([(DAILY_DRIVERS + SEASONAL_DRIVERS + STATIC_DRIVERS).index(n)
                   - (0 if n in DAILY_DRIVERS else len(DAILY_DRIVERS) if n in SEASONAL_DRIVERS
                      else len(DAILY_DRIVERS) + len(SEASONAL_DRIVERS)) for n in DRIVER_NAMES], np.int64)


@njit(nogil=True, cache=True)
def _assemble_rows(daily, seasonal, static, doy, kind, index, out):  # pragma: no cover - numba
    """:func:`_assemble` writing each (day, cell) row of 10 drivers at once: numpy's column
    assignments write every cache line of the (days, cells, 10) output ten times (0.65 s of
    a 20 s inference block at 0.5°)."""
    for d in range(doy.size):
        r = doy[d]
        for c in range(out.shape[1]):
            for k in range(kind.size):
                if kind[k] == 0:
                    out[d, c, k] = daily[index[k], d, c]
                elif kind[k] == 1:
                    out[d, c, k] = seasonal[index[k], r, c]
                else:
                    out[d, c, k] = static[index[k], c]


@njit(nogil=True, cache=True)
def _gather_rows(daily, seasonal, static, doy, days, cells, kind, index, out):  # pragma: no cover - numba
    """The (len(days), len(cells), 10) driver rows of a sampling pool stored cell-minor:
    ``daily`` (days, pool, 2), ``seasonal`` (366, pool, 4), ``static`` (pool, 4), so each
    (day, cell) reads one cache line per source. Reads the selected rows directly, without
    numpy's fancy-indexing copies of whole (days × pool) slabs (those and the driver-major
    layout were 9.5 of a 24 ms training step on the small twin; this is 0.7 ms)."""
    for i in range(days.size):
        d = days[i]
        r = doy[d]
        for j in range(cells.size):
            c = cells[j]
            for k in range(kind.size):
                if kind[k] == 0:
                    out[i, j, k] = daily[d, c, index[k]]
                elif kind[k] == 1:
                    out[i, j, k] = seasonal[r, c, index[k]]
                else:
                    out[i, j, k] = static[c, index[k]]
