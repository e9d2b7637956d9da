"""The plan of global inference, pure: the grid's shape, the days and the settings give the
cube's layout (:class:`CubeLayout`: shapes, chunks, shards), the blocks (:class:`Block`: bands
of ``lat_rows`` grid rows with their land cells) and a block task's memory bound
(:func:`block_memory_bytes`). No I/O: shapes and settings in, tuples and dataclasses out.

**Blocks and chunks.** One block = one band of ``lat_rows`` grid rows × every day: one Dask
task (by default at least ``min_blocks`` bands, so that blocks balance over the workers); it
writes exactly one Zarr *shard* per variable and ensemble/member. Inside a shard the data are
stored in chunks of ``time_chunk`` days × ``lat_rows`` rows × ``n_lon / lon_chunks`` columns
(~``chunk_mib``). ``lat_rows`` is the most rows whose :func:`block_memory_bytes` fits
:attr:`InferConfig.block_memory_mib`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fluxscale.config import InferConfig
from fluxscale.dataset.schema import DRIVER_NAMES

__all__ = ["Block", "CubeLayout", "plan_blocks", "block_memory_bytes", "choose_lat_rows", "block_sizes", "plan_layout",
           "month_index", "SUB_SAMPLES"]

_BYTES = 4  # float32
SUB_SAMPLES = 1 << 16
"""Samples (days × cells) the members run on at a time inside a block on a CPU: their outputs
(members × this × 4 B, 5 MiB for 20 members) stay in cache for the statistics."""


@dataclass(frozen=True)
class Block:
    """Grid rows ``[lat0, lat1)`` (band ``index``) and their land cells ``[cell0, cell1)``
    (land cells are numbered row-major, so a band's cells are contiguous)."""

    index: int
    lat0: int
    lat1: int
    cell0: int
    cell1: int

    @property
    def n_cells(self) -> int:
        return self.cell1 - self.cell0


def plan_blocks(cell_ilat: np.ndarray, n_lat: int, lat_rows: int) -> list[Block]:
    """The bands of ``lat_rows`` rows that contain land cells (bands without land are never
    written: their cube values stay NaN)."""
    blocks = []
    for b, lat0 in enumerate(range(0, n_lat, lat_rows)):
        lat1 = min(lat0 + lat_rows, n_lat)
        c0, c1 = (int(i) for i in np.searchsorted(cell_ilat, [lat0, lat1]))
        if c1 > c0:
            blocks.append(Block(b, lat0, lat1, c0, c1))
    return blocks


def block_memory_bytes(lat_rows: int, n_lon: int, n_days: int, n_months: int, n_ensembles: int, n_members: int,
                       write_members: bool, driver_chunk_days: int) -> int:
    """Peak memory of one block task, bytes (an upper bound: every grid point of the band
    counted as a land cell; checked against tracemalloc in the tests).

    * output buffers, compact: ``4 B × cells × (n_days × (2 × ensembles + written members)
      + n_months × (2 × ensembles + members))``;
    * monthly sums: ``8 B × members × n_months × cells`` (and their float64 means, as much);
    * one driver time chunk: ``4 B × driver_chunk_days × cells × (10 drivers + 2 daily
      reads)``, plus the seasonal drivers ``4 B × 366 × cells × 4``, and the members'
      outputs for :data:`SUB_SAMPLES` samples, ``4 B × members × SUB_SAMPLES``;
    * the write: one lead's shard, compressed (at most its raw size plus Blosc's headers),
      and one inner chunk (at most the daily band of 366 days).
    """
    daily = 2 * n_ensembles + (n_members if write_members else 0)
    monthly = 2 * n_ensembles + n_members
    cells = lat_rows * n_lon  # at most
    buffers = _BYTES * cells * (n_days * daily + n_months * monthly)
    sums = 2 * 8 * n_members * n_months * cells
    work = _BYTES * cells * (driver_chunk_days * (len(DRIVER_NAMES) + 2) + 366 * 4) + _BYTES * n_members * SUB_SAMPLES
    write = 1.1 * _BYTES * cells * n_days + _BYTES * cells * 366
    return int(buffers + sums + work + write)


def choose_lat_rows(n_lat: int, budget_mib: float, **sizes: Any) -> int:
    """The most grid rows per block whose :func:`block_memory_bytes` fits ``budget_mib``
    (at least one row)."""
    rows = 1
    while rows < n_lat and block_memory_bytes(rows + 1, **sizes) <= budget_mib * 2**20:
        rows += 1
    return rows


@dataclass(frozen=True)
class CubeLayout:
    """Shapes, chunks and shards of the cube."""

    n_days: int
    n_months: int
    n_lat: int
    n_lon: int
    lat_rows: int
    time_chunk: int
    lon_chunks: int
    ensembles: tuple[str, ...]
    members: tuple[str, ...]
    member_ensemble: tuple[str, ...]
    write_members: bool
    month_chunk: int = 48
    derived: tuple[str, ...] = ()
    """Ensembles that no block computes, written after the blocks from the computed ones
    (``dual``, :mod:`fluxscale.infer.layer_stage`); they and their members come last."""

    @property
    def computed_ensembles(self) -> tuple[str, ...]:
        """The ensembles the blocks compute (leads ``0 … n−1`` of the ensemble variables)."""
        return tuple(e for e in self.ensembles if e not in self.derived)

    @property
    def computed_members(self) -> tuple[str, ...]:
        """The trained members the blocks run (leads ``0 … n−1`` of the member variables)."""
        return tuple(m for m, e in zip(self.members, self.member_ensemble) if e not in self.derived)

    @property
    def lon_inner(self) -> int:
        return -(-self.n_lon // self.lon_chunks)

    def _grids(self, t: int, tc: int) -> tuple[tuple, tuple, tuple]:
        """(dask chunks = shards clipped to the array, zarr shard, zarr inner chunk)."""
        t_shard = -(-t // tc) * tc  # one shard along time (and lon): padded to whole chunks
        lon_shard = self.lon_inner * self.lon_chunks
        return ((1, t, self.lat_rows, self.n_lon), (1, t_shard, self.lat_rows, lon_shard),
                (1, tc, self.lat_rows, self.lon_inner))

    def variables(self) -> dict[str, tuple[tuple[str, ...], tuple, tuple, tuple]]:
        """name → (dims, dask chunks, shard, inner chunk)."""
        d, m = self._grids(self.n_days, self.time_chunk), self._grids(self.n_months, self.month_chunk)
        out = {"NEE": (("ensemble", "time", "lat", "lon"), *d), "NEE_std": (("ensemble", "time", "lat", "lon"), *d),
               "NEE_monthly": (("ensemble", "month", "lat", "lon"), *m),
               "NEE_monthly_std": (("ensemble", "month", "lat", "lon"), *m),
               "NEE_member_monthly": (("member", "month", "lat", "lon"), *m)}
        if self.write_members:
            out["NEE_member"] = (("member", "time", "lat", "lon"), *d)
        return out

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


def block_sizes(cfg: InferConfig, n_lon: int, n_days: int, n_months: int, n_members: int,
                time_chunks: Sequence[int]) -> dict[str, Any]:
    """The sizes :func:`block_memory_bytes` takes (all but ``lat_rows``): the grid's columns,
    the days and months, the ensembles and members, and the longest driver time chunk."""
    return dict(n_lon=n_lon, n_days=n_days, n_months=n_months, n_ensembles=len(cfg.variants), n_members=n_members,
                write_members=cfg.write_members, driver_chunk_days=max(time_chunks))


def plan_layout(cfg: InferConfig, n_lat: int, sizes: dict[str, Any], members: Sequence[str],
                member_ensemble: Sequence[str]) -> CubeLayout:
    """The cube's layout: ``cfg.lat_rows`` rows per block, else at most ``n_lat //
    cfg.min_blocks`` and the most that fit ``cfg.block_memory_mib``; ``cfg.time_chunk`` days
    per inner chunk, else as many as fit ``cfg.chunk_mib`` (float32, ``lat_rows`` ×
    ``n_lon / lon_chunks``); the months in one chunk. ``sizes`` are :func:`block_sizes`'s;
    ``members`` and ``member_ensemble`` name each member and its ensemble, in order."""
    n_lon, n_days, n_months = sizes["n_lon"], sizes["n_days"], sizes["n_months"]
    rows = cfg.lat_rows or min(max(1, n_lat // cfg.min_blocks), choose_lat_rows(n_lat, cfg.block_memory_mib, **sizes))
    rows = min(rows, n_lat)
    ensembles, members, member_ensemble = tuple(cfg.variants), tuple(members), tuple(member_ensemble)
    derived: tuple[str, ...] = ()
    if cfg.layer_active:  # the layer's members: one per EC member, named after its fold
        derived = ("dual",)
        ec = [m for m, e in zip(members, member_ensemble) if e == "ec"]
        ensembles += derived
        members += tuple("dual-" + m.split("-", 1)[1] for m in ec)
        member_ensemble += ("dual",) * len(ec)
    lon_inner = -(-n_lon // cfg.lon_chunks)
    time_chunk = cfg.time_chunk or max(1, int(cfg.chunk_mib * 2**20 / (_BYTES * rows * lon_inner)))
    return CubeLayout(n_days=n_days, n_months=n_months, n_lat=n_lat, n_lon=n_lon,
                      lat_rows=rows, time_chunk=min(time_chunk, n_days), lon_chunks=cfg.lon_chunks,
                      ensembles=ensembles, members=members,
                      member_ensemble=member_ensemble, write_members=cfg.write_members,
                      month_chunk=n_months, derived=derived)


def month_index(time: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The months of ``time`` (their first days) and each day's month (an index into them)."""
    months = pd.DatetimeIndex(time.to_period("M").unique().to_timestamp())
    return months, months.get_indexer(time.to_period("M").to_timestamp()).astype(np.intp)
