"""The block task of global inference: one band of grid rows × every day, run on a worker.

:func:`infer_block` reads the band's drivers one driver time chunk at a time, evaluates every
member on each (a driver block is read once for all members; :func:`fluxscale.learn.model.
forward_members`, torch's ``addmm`` on sub-batches), folds the members' outputs into the
ensemble statistics and monthly sums while they are in cache (:mod:`fluxscale.infer.kernels`),
writes its shard of every variable (:class:`fluxscale.infer.shards.ShardWriter`, gridding one
inner chunk at a time with :func:`fluxscale.infer.shard_kernels.grid_chunk`), and then its
completion record (:mod:`fluxscale.infer.cube`).

A worker keeps, between blocks, the opened driver store and the members' weights (per run key
and device) and the shard writers in :data:`_CACHE`, and each thread its block buffers
(:func:`_buffer`; :func:`release_buffers` frees them). Memory per task:
:func:`fluxscale.infer.plan.block_memory_bytes`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fluxscale.dataset.drivers import CellDrivers
from fluxscale.dataset.schema import DRIVER_NAMES
from fluxscale.dataset.stores import open_store, store_path, write_region
from fluxscale.errors import FluxscaleError, StoreError
from fluxscale.infer.cube import write_json
from fluxscale.infer.kernels import ensemble_stats, monthly_sums
from fluxscale.infer.plan import Block, CubeLayout
from fluxscale.learn.model import forward_members
from fluxscale.parallel import tune_malloc

__all__ = ["infer_block", "release_buffers", "write_block"]

_CACHE: dict[tuple, Any] = {}
_LOCAL = threading.local()


def _buffer(name: str, shape: tuple[int, ...], fill: float | None = np.nan, dtype=np.float32) -> np.ndarray:
    """A buffer of this thread (filled with ``fill``), reused by its next block: a fresh
    ~1 GB ``np.full`` costs ~1 s of page faults per block at 0.5°, refilling a mapped one
    ~0.1 s. A worker thread therefore keeps one block's buffers between blocks."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    size = int(np.prod(shape))
    flat = pool.get(name)
    if flat is None or flat.size < size or flat.dtype != dtype:
        pool.pop(name, None)
        flat = pool[name] = np.empty(size, dtype=dtype)
    buf = flat[:size].reshape(shape)
    if fill is not None:
        buf.fill(fill)
    return buf


def release_buffers() -> None:
    """Free this thread's block buffers."""
    _LOCAL.__dict__.pop("pool", None)


def _worker_device(spec: dict) -> str:
    """The torch device of this worker's blocks: ``cpu``, or its CUDA device when
    ``spec["device"]`` is ``cuda``, or ``auto`` and torch sees one."""
    import torch

    if spec["device"] == "cpu":
        return "cpu"
    if spec["device"] == "cuda" or torch.cuda.is_available():
        if not torch.cuda.is_available():
            raise FluxscaleError(f"infer: device='cuda' but torch sees no CUDA device on {socket.gethostname()}")
        from fluxscale.parallel import cuda_device

        return cuda_device()  # one GPU per worker on a machine with several
    return "cpu"


def _shard_writers(cube: str, names) -> dict | None:
    """A :class:`fluxscale.infer.shards.ShardWriter` per variable of ``cube`` (kept in
    :data:`_CACHE`), or None when the store's layout is not one it encodes."""
    from fluxscale.infer.shards import ShardWriter, UnsupportedLayout

    try:
        writers = {}
        for n in names:
            if ("shards", cube, n) not in _CACHE:
                _CACHE["shards", cube, n] = ShardWriter(Path(cube) / n)
            writers[n] = _CACHE["shards", cube, n]
    except UnsupportedLayout:
        writers = None
    return writers


def _write_gridded(cube: str, lay: CubeLayout, block: Block, li: np.ndarray, lj: np.ndarray,
                   data: dict[str, np.ndarray], leads: tuple[int, int] = (0, 0)) -> None:
    """The fallback: grid the whole band (NaN-padded) and write it with
    :func:`fluxscale.dataset.stores.write_region`."""
    variables = lay.variables()
    shape = (block.lat1 - block.lat0, lay.n_lon)
    gridded, n_lead = {}, {}
    for n, a in data.items():
        g = np.full((*a.shape[:2], *shape), np.nan, dtype=np.float32)
        g[:, :, li, lj] = a
        gridded[n] = (variables[n][0], g)
        n_lead[variables[n][0][0]] = a.shape[0]
    e0, m0 = leads
    region = {"time": slice(None), "month": slice(None), "lat": slice(block.lat0, block.lat1), "lon": slice(None)}
    if "ensemble" in n_lead:
        region["ensemble"] = slice(e0, e0 + n_lead["ensemble"])
    if "member" in n_lead:
        region["member"] = slice(m0, m0 + n_lead["member"])
    write_region(xr.Dataset(gridded), cube, region)


def _write_shards(writers: dict, lay: CubeLayout, block: Block, li: np.ndarray, lj: np.ndarray,
                  data: dict[str, np.ndarray], leads: tuple[int, int] = (0, 0)) -> None:
    """Encode and write the band's shard of every variable and lead, gridding one inner chunk
    at a time into this thread's reused chunk buffer."""
    from fluxscale.infer.shard_kernels import grid_chunk

    band = block.lat0 // lay.lat_rows
    variables = lay.variables()
    for n, a in data.items():
        w = writers[n]
        first = leads[0] if variables[n][0][0] == "ensemble" else leads[1]
        tc, lon_c = w.chunk[1], w.chunk[3]
        buf = _buffer("chunk", w.chunk[1:], fill=None)
        for lead in range(a.shape[0]):
            values = a[lead]

            def chunk(coords, values=values):
                t0 = coords[1] * tc
                if t0 >= values.shape[0]:
                    return None
                has = grid_chunk(values, t0, min(t0 + tc, values.shape[0]), li, lj, coords[3] * lon_c, buf)
                return buf if has else None

            try:
                w.write((first + lead, 0, band, 0), chunk)
            except OSError as e:
                raise StoreError(str(w.path), n, f"writing the shard of block {block.index} failed: {e}") from e


def write_block(cube: str, lay: CubeLayout, block: Block, li: np.ndarray, lj: np.ndarray,
                data: dict[str, np.ndarray], leads: tuple[int, int] = (0, 0)) -> None:
    """Write the block's shard of every variable and lead (ensemble or member).

    ``data[name]`` is float32 ``(lead, time or month, cells)``, its leads those from
    ``leads`` = (first ensemble, first member) on; ``li``/``lj`` are the cells'
    rows within the band and columns. Each shard is encoded by :class:`fluxscale.infer.shards.
    ShardWriter`, gridding one inner chunk at a time into a reused buffer; a store whose
    layout it does not know (another zarr writing other metadata) goes through
    :func:`fluxscale.dataset.stores.write_region` instead, gridded whole.
    """
    writers = _shard_writers(cube, data)
    if writers is None:
        _write_gridded(cube, lay, block, li, lj, data, leads)
    else:
        _write_shards(writers, lay, block, li, lj, data, leads)


def _mark_started(started: Path, spec: dict) -> int:
    """Write the block's start marker (run, attempt, host, pid) and return the attempt: one
    more than the marker left by a task of this run that died, else 1."""
    try:
        prev = json.loads(started.read_text())
    except (OSError, json.JSONDecodeError):
        prev = {}
    attempt = prev.get("attempt", 0) + 1 if prev.get("run") == spec["run"] else 1
    write_json(started, {"run": spec["run"], "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid()})
    return attempt


def _worker_inputs(spec: dict, device: str) -> tuple[xr.Dataset, list[dict]]:
    """The opened driver store and the members' weights as torch tensors on ``device``, kept
    in :data:`_CACHE` for the next block of the same run key and device."""
    import torch

    ck = (spec["key"], device)
    if ck not in _CACHE:
        _CACHE.clear()
        drivers = open_store(store_path(spec["root"], "drivers"), "drivers")
        # copies: arrays deserialised on a worker may be read-only views at any alignment, on
        # which torch's GEMM ran ~3x slower here
        weights = [{k: torch.tensor(np.array(v), device=device) for k, v in w.items()} for w in spec["weights"]]
        _CACHE[ck] = (drivers, weights)
    return _CACHE[ck]


def _check_finite(x: np.ndarray, spec: dict, drivers: xr.Dataset, block: Block, t0: int) -> None:
    """Refuse non-finite drivers ``x`` (days from ``t0``, the block's cells, drivers), naming
    the first one: no NEE is written from them."""
    if not np.isfinite(x).all():  # a pass over the block in memory: ~1% of its forward
        d, c, k = np.argwhere(~np.isfinite(x))[0]
        raise FluxscaleError(
            f"{store_path(spec['root'], 'drivers')}: {DRIVER_NAMES[k]} is {x[d, c, k]} on "
            f"{str(drivers.time.values[t0 + d])[:10]} at land cell {block.cell0 + c} "
            f"({int((~np.isfinite(x)).any(axis=-1).sum())} cell-days of this block); no NEE is written "
            f"from non-finite drivers: fix them (`fluxscale validate` lists them)")


def infer_block(block: Block, *, spec: dict) -> dict:
    """One band: read its drivers chunk by chunk, run every member, write its region of
    every variable, then its completion record. Returns the record."""
    import torch

    t_start = time.perf_counter()
    records = Path(spec["records"])
    started = records / f"{block.index:05d}.started"
    attempt = _mark_started(started, spec)

    tune_malloc()
    device = _worker_device(spec)
    if device == "cpu":
        torch.set_num_threads(spec["torch_threads"])  # one torch thread per Dask thread (nested is slower)
    drivers, weights = _worker_inputs(spec, device)

    lay = CubeLayout(**spec["layout"])
    li = (np.asarray(spec["cell_ilat"][block.cell0:block.cell1]) - block.lat0).astype(np.intp)
    lj = np.asarray(spec["cell_ilon"][block.cell0:block.cell1]).astype(np.intp)
    n_e, n_m = len(lay.computed_ensembles), len(lay.computed_members)
    ens_idx = [np.flatnonzero(np.array(lay.member_ensemble[:n_m]) == e) for e in lay.computed_ensembles]
    month_idx = np.asarray(spec["month_idx"])
    days_in_month = np.bincount(month_idx, minlength=lay.n_months).astype(np.float64)
    ncell = block.n_cells
    # the block's values stay compact, (lead, days, cells); they are gridded chunk by chunk
    # as the shards are encoded (write_block), never as whole NaN-padded bands
    mean = _buffer("mean", (n_e, lay.n_days, ncell), fill=None)
    std = _buffer("std", (n_e, lay.n_days, ncell), fill=None)
    member = _buffer("member", (n_m, lay.n_days, ncell), fill=None) if lay.write_members else None
    msum = _buffer("msum", (n_m, lay.n_months, ncell), fill=0.0, dtype=np.float64)
    batch = spec["batch"] if device == "cpu" else spec["gpu_batch"]
    t_fwd = 0.0
    bounds = np.cumsum((0, *spec["time_chunks"]))
    band = CellDrivers(store_path(spec["root"], "drivers"), drivers.time.values, slice(block.cell0, block.cell1))
    # The members run on a few days at a time (~64 Ki samples on a CPU) into one reused
    # buffer, and the statistics follow at once while those outputs are still in cache:
    # over whole 365-day chunks, the fresh (members × 10⁶ samples) output of each forward
    # cost page faults, and the statistics and monthly sums re-read it from memory
    # (together ~0.8 s of a 19 s block at 0.5°).
    sub = max(1, (spec["sub_samples"] if device == "cpu" else spec["gpu_batch"]) // max(ncell, 1))
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        t0, t1 = int(t0), int(t1)
        x = band.block(slice(t0, t1), out=_buffer("drivers", (t1 - t0, ncell, len(DRIVER_NAMES)), fill=None))
        _check_finite(x, spec, drivers, block, t0)
        for s0 in range(t0, t1, sub):
            s1 = min(s0 + sub, t1)
            xs = x[s0 - t0:s1 - t0].reshape(-1, len(DRIVER_NAMES))
            t = time.perf_counter()
            vals = forward_members(weights, xs, batch=batch, device=device,
                                   out=_buffer("vals", (n_m, xs.shape[0]), fill=None))
            t_fwd += time.perf_counter() - t
            vals = vals.reshape(n_m, s1 - s0, ncell)
            for e, idx in enumerate(ens_idx):
                ensemble_stats(vals, idx, s0, mean[e], std[e])
            if member is not None:
                member[:, s0:s1] = vals
            monthly_sums(vals, month_idx[s0:s1], msum)
    member_monthly = np.divide(msum, days_in_month[None, :, None], out=msum)  # (members, months, cells)
    # the members' monthly mean and sd per ensemble: the same kernel, in float64
    m_mean = np.empty((n_e, lay.n_months, ncell), dtype=np.float64)
    m_std = np.empty_like(m_mean)
    for e, idx in enumerate(ens_idx):
        ensemble_stats(member_monthly, idx, 0, m_mean[e], m_std[e])
    data = {"NEE": mean, "NEE_std": std, "NEE_monthly": m_mean.astype(np.float32),
            "NEE_monthly_std": m_std.astype(np.float32), "NEE_member_monthly": member_monthly.astype(np.float32)}
    if member is not None:
        data["NEE_member"] = member
    t = time.perf_counter()
    write_block(spec["cube"], lay, block, li, lj, data)
    t_write = time.perf_counter() - t
    rec = {"key": spec["key"], "run": spec["run"], "block": block.index, "lat": [block.lat0, block.lat1],
           "cells": block.n_cells, "evaluations": int(block.n_cells * lay.n_days * n_m), "attempt": attempt,
           "seconds": time.perf_counter() - t_start, "forward_s": t_fwd, "write_s": t_write, "device": device,
           "host": socket.gethostname()}
    write_json(records / f"{block.index:05d}.json", rec)
    started.unlink(missing_ok=True)
    return rec
