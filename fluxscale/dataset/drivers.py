"""The 10 drivers of Table A2 and the assembly of daily driver blocks.

Layout of ``drivers.zarr`` (land cells gathered on ``cell``, see :mod:`fluxscale.dataset.grid`):

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

from fluxscale.dataset.driver_kernels import SOURCE_INDEX, SOURCE_KIND, assemble, assemble_rows
from fluxscale.dataset.schema import DAILY_DRIVERS, DRIVER_NAMES, DRIVER_UNITS, SEASONAL_DRIVERS, STATIC_DRIVERS
from fluxscale.dataset.stores import chunk_keys, decode_reason
from fluxscale.errors import StoreError

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

def day_of_year_index(time: np.ndarray | pd.DatetimeIndex) -> np.ndarray:
    """Row of the ``doy`` axis (0…365) for each date: ``dayofyear - 1``."""
    return (pd.DatetimeIndex(time).day_of_year.to_numpy() - 1).astype(np.intp)


def assemble_driver_block(drivers: xr.Dataset, time: slice | np.ndarray = slice(None),
                          cell: slice | np.ndarray = slice(None)) -> np.ndarray:
    """The daily driver matrix of a block of days × cells.

    Parameters
    ----------
    drivers : xarray.Dataset
        ``drivers.zarr`` as opened by :func:`fluxscale.dataset.stores.open_store` (lazy).
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
    return assemble({n: arrays[n] for n in DAILY_DRIVERS}, {n: arrays[n] for n in SEASONAL_DRIVERS},
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
        assemble_rows(daily, self._seasonal, self._static, doy, SOURCE_KIND, SOURCE_INDEX, out)
        return out
