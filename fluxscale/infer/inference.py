"""Global inference (paper §3.4, Fig. 1 green path): every trained member over every land
cell and day of ``drivers.zarr``, written as gridded NEE cubes.

The cube (``<data_dir>/nee.zarr``, Zarr v3; ``xarray.open_zarr(path)`` opens it) holds, in
gC m-2 d-1 (negative = uptake by land, positive = release to the atmosphere):

* ``NEE``, ``NEE_std`` ``(ensemble, time, lat, lon)``: daily mean and standard deviation
  (``ddof=0``, numpy's default) over the ensemble's members;
* ``NEE_monthly``, ``NEE_monthly_std`` ``(ensemble, month, lat, lon)``: the same over the
  members' monthly means;
* ``NEE_member_monthly`` ``(member, month, lat, lon)``: each member's monthly means;
* ``NEE_member`` ``(member, time, lat, lon)``: each member's daily values, when
  :attr:`InferConfig.write_members` is set;
* ``cell_area`` (m²), ``land`` (the cells that were computed; the others are NaN).

**Blocks and chunks.** One block = one band of ``lat_rows`` grid rows × every day: one Dask
task (by default at least ``min_blocks`` bands, so that blocks balance over the workers). It reads the band's drivers one driver time chunk at a time, evaluates every member on
each (a driver block is read once for all members), and writes its band of every variable:
exactly one Zarr *shard* per variable and ensemble/member, so no two tasks write one chunk.
Inside a shard the data are stored in chunks of ``time_chunk`` days × ``lat_rows`` rows ×
``n_lon / lon_chunks`` columns (~``chunk_mib``), so one day's global map and one pixel's full
series both read a bounded number of chunks (numbers in ``benchmarks/RESULTS.md``).

**Memory per task** (:func:`block_memory_bytes`): the band's output buffers, compact over
its land cells, ``4 B × cells × (n_days × (2 × ensembles + written members) + n_months × (2 ×
ensembles + members))``, plus one driver time chunk of work arrays and one compressed shard.
``lat_rows`` is chosen within :attr:`InferConfig.block_memory_mib`, so it does not grow
with the number of cells, members or blocks; nothing is gathered on the client.

**Completion records.** The template is written first (``nee.zarr.partial``); each block
writes its region and then a record ``nee.blocks/<band>.json`` carrying the run's *key*: a
hash of the member checkpoints, the dataset's manifest and driver metadata, and the cube
layout. A rerun skips the blocks whose record has the current key (all-NaN chunks are not
written, so the presence of a chunk proves nothing); an interrupted run resumes with the
rest; a changed model or driver store changes the key, so the template and every record
are rewritten. The store is moved to ``nee.zarr`` when every block has its record.

**Speed.** The forward is torch's ``addmm`` on sub-batches of :attr:`InferConfig.batch`
samples (activations stay in cache), one torch thread per Dask thread, with each member's
input standardisation folded into its first layer; on a worker where torch sees CUDA it
runs there in batches of :attr:`InferConfig.gpu_batch`. The members run on
:data:`SUB_SAMPLES` samples at a time and the statistics follow while their outputs are in
cache; the shards are encoded by :class:`fluxscale.infer.shards.ShardWriter` (see
``docs/inference.md``, "Speed", for what each step saved).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numba import njit

from fluxscale.config import InferConfig
from fluxscale.dataset.drivers import DRIVER_NAMES, CellDrivers
from fluxscale.errors import FluxscaleError, StoreError
from fluxscale.dataset.schema import NEE_UNITS
from fluxscale.dataset.stores import commit_store, open_store, partial_path, read_manifest, store_path, write_region, write_template
from fluxscale.learn.model import forward_members, member_weights, model_weights, models_dir  # noqa: F401  (re-exported)
from fluxscale.parallel import tune_malloc as _tune_malloc

__all__ = ["Member", "Block", "CubeLayout", "list_members", "trained_systems", "plan_blocks", "choose_lat_rows", "block_memory_bytes",
           "forward_members", "member_weights", "infer", "InferReport", "cube_path", "records_path", "read_record",
           "release_buffers"]

FORMAT_VERSION = 1
_BYTES = 4  # float32
SUB_SAMPLES = 1 << 16
"""Samples (days × cells) the members run on at a time inside a block on a CPU: their outputs
(members × this × 4 B, 5 MiB for 20 members) stay in cache for the statistics."""


# --- members ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One trained member: ``name`` = ``<variant>-fold<k>``, its checkpoint and its sha256."""

    name: str
    variant: str
    fold: int
    path: str
    sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trained_systems(root: str | Path, model_set: str = "") -> list[str]:
    """The inversion systems whose ATM term trained a model set (``members.json``; every
    system of the integrals store when training used all of them)."""
    listing = models_dir(root, model_set) / "members.json"
    try:
        members = json.loads(listing.read_text())["members"].values()
        return sorted({s for m in members for s in (m.get("systems") or [])})
    except (OSError, json.JSONDecodeError, KeyError, AttributeError):
        return []


def list_members(root: str | Path, cfg: InferConfig) -> list[Member]:
    """The members that ``cfg`` selects among those training wrote (``models/members.json``),
    ordered by ensemble (``cfg.variants``) then fold.

    Raises
    ------
    FluxscaleError
        When training has not finished, a requested member does not exist or its checkpoint
        is missing, or an ensemble would have no member.
    """
    mdir = models_dir(root, cfg.model_set)
    listing = mdir / "members.json"
    if not listing.exists():
        raise FluxscaleError(f"{listing}: not found; train the ensembles first (fluxscale train {root})")
    try:
        trained = json.loads(listing.read_text())["members"]
    except (json.JSONDecodeError, KeyError) as e:
        raise FluxscaleError(f"{listing}: not a members list written by fluxscale train ({e})") from None
    unknown = sorted(set(cfg.members) - set(trained))
    if unknown:
        raise FluxscaleError(f"{listing}: no trained member {', '.join(unknown)}; trained: {', '.join(sorted(trained))}")
    out = []
    for variant in cfg.variants:
        names = [n for n in trained if n.startswith(f"{variant}-fold") and (not cfg.members or n in cfg.members)]
        if not names:
            raise FluxscaleError(f"{listing}: the {variant!r} ensemble has no selected member "
                                 f"(trained: {', '.join(sorted(trained))})")
        for n in sorted(names, key=lambda n: int(n.rsplit("fold", 1)[1])):
            path = mdir / f"{n}.pt"
            if not path.exists():
                raise FluxscaleError(f"{path}: checkpoint of member {n} not found (listed in {listing})")
            out.append(Member(n, variant, int(n.rsplit("fold", 1)[1]), str(path), _sha256(path)))
    return out


# --- layout -------------------------------------------------------------------------------

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


_ATTRS = {
    "NEE": ("daily net ecosystem exchange, mean over the ensemble's members", "time: mean member: mean"),
    "NEE_std": ("daily net ecosystem exchange, standard deviation over the ensemble's members (ddof=0)",
                "time: mean member: standard_deviation"),
    "NEE_monthly": ("monthly mean net ecosystem exchange, mean over the ensemble's members",
                    "time: mean within month member: mean"),
    "NEE_monthly_std": ("monthly mean net ecosystem exchange, standard deviation over the members' monthly means "
                        "(ddof=0)", "time: mean within month member: standard_deviation"),
    "NEE_member_monthly": ("monthly mean net ecosystem exchange of each member", "time: mean within month"),
    "NEE_member": ("daily net ecosystem exchange of each member", "time: mean"),
}
SIGN_CONVENTION = "NEE > 0: CO2 released by land to the atmosphere; NEE < 0: uptake by land"


def cube_path(root: str | Path, cfg: InferConfig) -> Path:
    """Where ``cfg``'s cube is written (``cfg.out`` relative to ``root``; with a model set and
    the default ``out``, ``nee-<model_set>.zarr``)."""
    out = f"nee-{cfg.model_set}.zarr" if cfg.model_set and cfg.out == "nee.zarr" else cfg.out
    p = Path(out)
    return p if p.is_absolute() else Path(root) / p


def records_path(cube: str | Path) -> Path:
    """The directory of the block completion records of a cube: ``nee.zarr`` → ``nee.blocks``."""
    cube = Path(cube)
    stem = cube.name[:-5] if cube.name.endswith(".zarr") else cube.name
    return cube.with_name(stem + ".blocks")


def _month_index(time: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, np.ndarray]:
    months = pd.DatetimeIndex(time.to_period("M").unique().to_timestamp())
    return months, months.get_indexer(time.to_period("M").to_timestamp()).astype(np.intp)


def _template(grid: xr.Dataset, time: pd.DatetimeIndex, months: pd.DatetimeIndex, layout: CubeLayout,
              attrs: dict[str, Any], cfg: InferConfig) -> tuple[xr.Dataset, dict]:
    import dask.array as da
    from zarr.codecs import BloscCodec

    data_vars, encoding = {}, {}
    lead = {"ensemble": len(layout.ensembles), "member": len(layout.members)}
    codec = BloscCodec(cname=cfg.compressor, clevel=cfg.clevel, shuffle=cfg.shuffle)
    for name, (dims, chunks, shard, inner) in layout.variables().items():
        shape = (lead[dims[0]], layout.n_days if dims[1] == "time" else layout.n_months, layout.n_lat, layout.n_lon)
        arr = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
        long_name, methods = _ATTRS[name]
        data_vars[name] = (dims, arr, {"units": NEE_UNITS, "long_name": long_name, "cell_methods": methods,
                                       "sign_convention": SIGN_CONVENTION})
        encoding[name] = {"chunks": inner, "shards": shard, "compressors": [codec], "fill_value": np.nan}
    coords = {
        "ensemble": ("ensemble", np.array(layout.ensembles, dtype=object), {"long_name": "ensemble (EC or EC-ATM)"}),
        "member": ("member", np.array(layout.members, dtype=object), {"long_name": "member (ensemble-fold)"}),
        "member_ensemble": ("member", np.array(layout.member_ensemble, dtype=object),
                            {"long_name": "ensemble of each member"}),
        "time": ("time", time.values, {"standard_name": "time", "long_name": "day", "axis": "T"}),
        "month": ("month", months.values, {"standard_name": "time", "long_name": "first day of the month"}),
        "lat": grid.lat.variable, "lon": grid.lon.variable,
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds["cell_area"] = grid.cell_area.astype(np.float64)
    ds["land"] = grid.land
    return ds, encoding


def inputs_fingerprint(root: Path) -> dict[str, Any]:
    """What identifies the inputs: the manifest (kind, creation time, config) and the driver
    store's metadata (a rewritten twin or ingest gets a new creation time)."""
    man = read_manifest(root)
    if man is None:
        raise StoreError(str(root / "fluxscale.json"), None, "manifest not found: the dataset is incomplete")
    meta = (store_path(root, "drivers") / "zarr.json").read_bytes()
    return {"kind": man.get("kind"), "created": man.get("created"),
            "config": hashlib.sha256(json.dumps(man.get("config"), sort_keys=True, default=str).encode()).hexdigest(),
            "drivers_metadata": hashlib.sha256(meta).hexdigest()}


def _versions() -> dict[str, str]:
    import dask
    import torch
    import zarr

    from fluxscale import __version__
    return {"fluxscale": __version__, "torch": torch.__version__, "numpy": np.__version__, "xarray": xr.__version__,
            "zarr": zarr.__version__, "dask": dask.__version__}


# --- the block task ------------------------------------------------------------------------

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


@njit(nogil=True, cache=True)
def _ensemble_stats(vals, idx, t0, mean_out, std_out):  # pragma: no cover - numba
    """Mean and standard deviation (ddof=0) over the members ``idx`` of ``vals`` (members,
    days, cells), written into the block's compact ``(time, cells)`` outputs at rows ``t0 +
    day``.

    Hand-written because numpy's ``mean``/``std`` over the member axis took ~2 s of a 26 s
    block at 0.5° (five passes and two temporaries). The inner loops run along cells
    (contiguous, vectorised); the arithmetic is numpy's, in the outputs' dtype and in the
    same order (sum over members, divide; squared deviations, sum, divide, sqrt), so the
    results equal ``np.mean``/``np.std``. Also used, in float64, on the members' monthly
    means (``vals`` = members × months × cells).
    """
    n = idx.size
    nf = np.float32(n)
    ncell = vals.shape[2]
    for t in range(vals.shape[1]):
        s = mean_out[t0 + t]
        q = std_out[t0 + t]
        first = vals[idx[0], t]
        for c in range(ncell):
            s[c] = first[c]
        for k in range(1, n):
            row = vals[idx[k], t]
            for c in range(ncell):
                s[c] += row[c]
        for c in range(ncell):
            s[c] = s[c] / nf
            q[c] = np.float32(0.0)
        for k in range(n):
            row = vals[idx[k], t]
            for c in range(ncell):
                d = row[c] - s[c]
                q[c] += d * d
        for c in range(ncell):
            q[c] = np.sqrt(q[c] / nf)


@njit(nogil=True, cache=True)
def _monthly_sums(vals, month, msum):  # pragma: no cover - numba
    """Add each member's daily values ``vals`` (members, days, cells) to ``msum[member,
    month[day]]`` (float64 ``(members, months, cells)``).

    One pass along cells, accumulated in float64. It replaced a batched ``(months × days) @
    (days × cells)`` one-hot product per member, whose ~2·10¹¹ flops (BLAS at ~20 GFlop/s
    with 13 rows per product) took ~0.4 s of a 19 s block at 0.5° for a few additions.
    """
    for m in range(vals.shape[0]):
        for t in range(vals.shape[1]):
            row = vals[m, t]
            acc = msum[m, month[t]]
            for c in range(row.size):
                acc[c] += row[c]


def _worker_device(spec: dict) -> str:
    import torch

    if spec["device"] == "cpu":
        return "cpu"
    if spec["device"] == "cuda" or torch.cuda.is_available():
        if not torch.cuda.is_available():
            raise FluxscaleError(f"infer: device='cuda' but torch sees no CUDA device on {socket.gethostname()}")
        from fluxscale.parallel import cuda_device

        return cuda_device()  # one GPU per worker on a machine with several
    return "cpu"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def read_record(records: Path, index: int, key: str) -> dict | None:
    """Block ``index``'s completion record if it has ``key``, else None."""
    p = records / f"{index:05d}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if rec.get("key") == key else None


def _write_block(cube: str, lay: CubeLayout, block: Block, li: np.ndarray, lj: np.ndarray,
                 data: dict[str, np.ndarray]) -> None:
    """Write the block's shard of every variable and lead (ensemble or member).

    ``data[name]`` is float32 ``(lead, time or month, cells)``; ``li``/``lj`` are the cells'
    rows within the band and columns. Each shard is encoded by :class:`fluxscale.infer.shards.
    ShardWriter`, gridding one inner chunk at a time into a reused buffer; a store whose
    layout it does not know (another zarr writing other metadata) goes through
    :func:`fluxscale.dataset.stores.write_region` instead, gridded whole.
    """
    from fluxscale.infer.shards import ShardWriter, UnsupportedLayout, grid_chunk

    variables = lay.variables()
    band = block.lat0 // lay.lat_rows
    try:
        writers = {}
        for n in data:
            if ("shards", cube, n) not in _CACHE:
                _CACHE["shards", cube, n] = ShardWriter(Path(cube) / n)
            writers[n] = _CACHE["shards", cube, n]
    except UnsupportedLayout:
        writers = None
    if writers is None:
        shape = (block.lat1 - block.lat0, lay.n_lon)
        gridded = {}
        for n, a in data.items():
            g = np.full((*a.shape[:2], *shape), np.nan, dtype=np.float32)
            g[:, :, li, lj] = a
            gridded[n] = (variables[n][0], g)
        write_region(xr.Dataset(gridded), cube, {"ensemble": slice(None), "member": slice(None), "time": slice(None),
                                                 "month": slice(None), "lat": slice(block.lat0, block.lat1),
                                                 "lon": slice(None)})
        return
    for n, a in data.items():
        w = writers[n]
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
                w.write((lead, 0, band, 0), chunk)
            except OSError as e:
                raise StoreError(str(w.path), n, f"writing the shard of block {block.index} failed: {e}") from e


def _infer_block(block: Block, *, spec: dict) -> dict:
    """One band: read its drivers chunk by chunk, run every member, write its region of
    every variable, then its completion record. Returns the record."""
    import torch

    t_start = time.perf_counter()
    records = Path(spec["records"])
    started = records / f"{block.index:05d}.started"
    try:
        prev = json.loads(started.read_text())
    except (OSError, json.JSONDecodeError):
        prev = {}
    attempt = prev.get("attempt", 0) + 1 if prev.get("run") == spec["run"] else 1
    _write_json(started, {"run": spec["run"], "attempt": attempt, "host": socket.gethostname(), "pid": os.getpid()})

    _tune_malloc()
    device = _worker_device(spec)
    if device == "cpu":
        torch.set_num_threads(spec["torch_threads"])  # one torch thread per Dask thread (nested is slower)
    ck = (spec["key"], device)
    if ck not in _CACHE:
        _CACHE.clear()
        drivers = open_store(store_path(spec["root"], "drivers"), "drivers")
        # copies: arrays deserialised on a worker may be read-only views at any alignment, on
        # which torch's GEMM ran ~3x slower here
        weights = [{k: torch.tensor(np.array(v), device=device) for k, v in w.items()} for w in spec["weights"]]
        _CACHE[ck] = (drivers, weights)
    drivers, weights = _CACHE[ck]

    lay = CubeLayout(**spec["layout"])
    li = (np.asarray(spec["cell_ilat"][block.cell0:block.cell1]) - block.lat0).astype(np.intp)
    lj = np.asarray(spec["cell_ilon"][block.cell0:block.cell1]).astype(np.intp)
    n_e, n_m = len(lay.ensembles), len(lay.members)
    ens_idx = [np.flatnonzero(np.array(lay.member_ensemble) == e) for e in lay.ensembles]
    month_idx = np.asarray(spec["month_idx"])
    days_in_month = np.bincount(month_idx, minlength=lay.n_months).astype(np.float64)
    ncell = block.n_cells
    # the block's values stay compact, (lead, days, cells); they are gridded chunk by chunk
    # as the shards are encoded (_write_block), never as whole NaN-padded bands
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
        if not np.isfinite(x).all():  # a pass over the block in memory: ~1% of its forward
            d, c, k = np.argwhere(~np.isfinite(x))[0]
            raise FluxscaleError(
                f"{store_path(spec['root'], 'drivers')}: {DRIVER_NAMES[k]} is {x[d, c, k]} on "
                f"{str(drivers.time.values[t0 + d])[:10]} at land cell {block.cell0 + c} "
                f"({int((~np.isfinite(x)).any(axis=-1).sum())} cell-days of this block); no NEE is written "
                f"from non-finite drivers: fix them (`fluxscale validate` lists them)")
        for s0 in range(t0, t1, sub):
            s1 = min(s0 + sub, t1)
            xs = x[s0 - t0:s1 - t0].reshape(-1, len(DRIVER_NAMES))
            t = time.perf_counter()
            vals = forward_members(weights, xs, batch=batch, device=device,
                                   out=_buffer("vals", (n_m, xs.shape[0]), fill=None))
            t_fwd += time.perf_counter() - t
            vals = vals.reshape(n_m, s1 - s0, ncell)
            for e, idx in enumerate(ens_idx):
                _ensemble_stats(vals, idx, s0, mean[e], std[e])
            if member is not None:
                member[:, s0:s1] = vals
            _monthly_sums(vals, month_idx[s0:s1], msum)
    member_monthly = np.divide(msum, days_in_month[None, :, None], out=msum)  # (members, months, cells)
    # the members' monthly mean and sd per ensemble: the same kernel, in float64
    m_mean = np.empty((n_e, lay.n_months, ncell), dtype=np.float64)
    m_std = np.empty_like(m_mean)
    for e, idx in enumerate(ens_idx):
        _ensemble_stats(member_monthly, idx, 0, m_mean[e], m_std[e])
    data = {"NEE": mean, "NEE_std": std, "NEE_monthly": m_mean.astype(np.float32),
            "NEE_monthly_std": m_std.astype(np.float32), "NEE_member_monthly": member_monthly.astype(np.float32)}
    if member is not None:
        data["NEE_member"] = member
    t = time.perf_counter()
    _write_block(spec["cube"], lay, block, li, lj, data)
    t_write = time.perf_counter() - t
    rec = {"key": spec["key"], "run": spec["run"], "block": block.index, "lat": [block.lat0, block.lat1],
           "cells": block.n_cells, "evaluations": int(block.n_cells * lay.n_days * n_m), "attempt": attempt,
           "seconds": time.perf_counter() - t_start, "forward_s": t_fwd, "write_s": t_write, "device": device,
           "host": socket.gethostname()}
    _write_json(records / f"{block.index:05d}.json", rec)
    started.unlink(missing_ok=True)
    return rec


# --- the job -------------------------------------------------------------------------------

@dataclass
class InferReport:
    """What :func:`infer` did."""

    path: str
    blocks: int
    written: int
    skipped: int
    retried: int
    evaluations: int
    """pixel-day-member evaluations of the blocks written by this run."""
    seconds: float
    layout: dict
    members: list[str]
    block_seconds: list[float] = field(default_factory=list)
    total_seconds: float = 0.0
    """The whole call: opening, template, blocks, commit."""

    @property
    def rate(self) -> float:
        """pixel-day-members per second of this run (wall clock)."""
        return self.evaluations / self.seconds if self.seconds > 0 else float("nan")

    def text(self) -> str:
        lines = [f"infer: {self.written} blocks written, {self.skipped} skipped (already done), "
                 f"{self.retried} retried, of {self.blocks}; members: {', '.join(self.members)}"]
        if self.written:
            lines.append(f"infer: {self.evaluations:.3g} pixel-day-member evaluations in {self.seconds:.1f} s = "
                         f"{self.rate:.3g} /s ({self.total_seconds:.1f} s with setup and commit)")
        lines.append(f"infer: NEE cube at {self.path}")
        return "\n".join(lines)


def infer(root: str | Path, cfg: InferConfig | None = None, *, client=None, show_progress: bool = True,
          say=lambda m: None, torch_threads: int = 1) -> InferReport:
    """Run the selected members over every land cell and day of ``root``'s drivers and
    write the NEE cube (see the module docstring).

    Parameters
    ----------
    root : path
        A dataset directory with ``grid``, ``drivers`` and ``models/`` (from ``fluxscale train``).
    cfg : InferConfig
    client : distributed.Client, optional
        Run the blocks on this cluster (one task per block, retried ``cfg.retries`` times);
        default: Dask's threads in this process.
    torch_threads : int
        torch threads per block task on a CPU.
    """
    from fluxscale.parallel import run_tasks

    cfg = cfg or InferConfig()
    root = Path(root)
    t_start = time.perf_counter()
    grid = open_store(store_path(root, "grid"), "grid")
    drivers = open_store(store_path(root, "drivers"), "drivers")
    if drivers.sizes["cell"] != grid.sizes["cell"]:
        raise StoreError(str(store_path(root, "drivers")), "cell", "not the grid's land cells")
    members = list_members(root, cfg)
    time_index = pd.DatetimeIndex(drivers.time.values)
    months, month_idx = _month_index(time_index)
    time_chunks = tuple(int(c) for c in drivers.Tair.chunks[0])
    sizes = dict(n_lon=grid.sizes["lon"], n_days=time_index.size, n_months=months.size,
                 n_ensembles=len(cfg.variants), n_members=len(members), write_members=cfg.write_members,
                 driver_chunk_days=max(time_chunks))
    n_lat, n_lon = grid.sizes["lat"], grid.sizes["lon"]
    rows = cfg.lat_rows or min(max(1, n_lat // cfg.min_blocks), choose_lat_rows(n_lat, cfg.block_memory_mib, **sizes))
    rows = min(rows, n_lat)
    lon_inner = -(-n_lon // cfg.lon_chunks)
    time_chunk = cfg.time_chunk or max(1, int(cfg.chunk_mib * 2**20 / (_BYTES * rows * lon_inner)))
    layout = CubeLayout(n_days=time_index.size, n_months=months.size, n_lat=n_lat, n_lon=n_lon,
                        lat_rows=rows, time_chunk=min(time_chunk, time_index.size), lon_chunks=cfg.lon_chunks,
                        ensembles=tuple(cfg.variants), members=tuple(m.name for m in members),
                        member_ensemble=tuple(m.variant for m in members), write_members=cfg.write_members,
                        month_chunk=months.size)
    blocks = plan_blocks(grid.cell_ilat.values, grid.sizes["lat"], rows)
    provenance = {"format": FORMAT_VERSION, "inputs": inputs_fingerprint(root), "layout": layout.to_dict(),
                  "members": [{"name": m.name, "sha256": m.sha256} for m in members],
                  "compressor": [cfg.compressor, cfg.clevel, cfg.shuffle]}
    key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:32]
    cube = cube_path(root, cfg)
    partial = partial_path(cube)
    records = records_path(cube)
    mem_mib = block_memory_bytes(rows, **sizes) / 2**20

    def stored_key(p: Path) -> str | None:
        try:
            import zarr
            return dict(zarr.open_group(str(p), mode="r").attrs).get("fluxscale_infer_key")
        except Exception:  # noqa: BLE001  (absent or unreadable: not ours)
            return None

    done: dict[int, dict] = {}
    if cube.exists() and stored_key(cube) == key:
        done = {b.index: r for b in blocks if (r := read_record(records, b.index, key)) is not None}
        if len(done) == len(blocks):
            report = InferReport(str(cube), len(blocks), 0, len(blocks), 0, 0, 0.0, layout.to_dict(),
                                 list(layout.members), total_seconds=time.perf_counter() - t_start)
            say(report.text())
            return report
        cube.rename(partial)  # records lost: finish it as a partial store
    if partial.exists() and stored_key(partial) == key:
        done = {b.index: r for b in blocks if (r := read_record(records, b.index, key)) is not None}
        say(f"infer: resuming {partial}: {len(done)} of {len(blocks)} blocks already written")
    else:
        if records.exists():
            shutil.rmtree(records)
        attrs = {"title": "fluxscale global NEE", "Conventions": "CF-1.10", "institution": "fluxscale",
                 "source": "fluxscale infer: EC and EC-ATM neural-network ensembles (Upton et al. dual constraint)",
                 "sign_convention": SIGN_CONVENTION, "fluxscale_infer_key": key,
                 "fluxscale_model_set": cfg.model_set,
                 "fluxscale_train_systems": json.dumps(trained_systems(root, cfg.model_set)),
                 "fluxscale_provenance": json.dumps({**provenance, "config": cfg.to_dict(), "versions": _versions(),
                                                     "data_dir": str(root.resolve()),
                                                     "checkpoints": {m.name: m.path for m in members}}),
                 "history": f"{pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')} fluxscale infer {root}"}
        ds, encoding = _template(grid, time_index, months, layout, attrs, cfg)
        write_template(ds, cube, "nee", encoding)
    records.mkdir(parents=True, exist_ok=True)
    # largest first (LPT): the last tasks to start are the shortest, so workers finish together
    todo = sorted((b for b in blocks if b.index not in done), key=lambda b: -b.n_cells)
    say(f"infer: {len(members)} members x {grid.sizes['cell']} land cells x {time_index.size} days; "
        f"{len(blocks)} blocks of {rows} grid rows (≤ {mem_mib:.0f} MiB per task), {len(todo)} to run")
    spec = {"root": str(root), "cube": str(partial), "records": str(records), "key": key, "run": uuid.uuid4().hex,
            "layout": layout.to_dict(), "weights": [member_weights(m.path) for m in members],
            "cell_ilat": grid.cell_ilat.values, "cell_ilon": grid.cell_ilon.values, "month_idx": month_idx,
            "time_chunks": time_chunks, "device": cfg.device, "batch": cfg.batch, "gpu_batch": cfg.gpu_batch,
            "sub_samples": max(cfg.batch, SUB_SAMPLES),
            "torch_threads": torch_threads}
    t_run = time.perf_counter()
    evals = {"n": 0}

    def on_result(rec: dict) -> str:
        evals["n"] += rec["evaluations"]
        rate = evals["n"] / len(members) / max(time.perf_counter() - t_run, 1e-9)
        return f"infer: blocks ({rate:.3g} pixel-days/s)"

    results = run_tasks(_infer_block, todo, client=client, label="infer: blocks", show_progress=show_progress,
                        retries=cfg.retries, resources={"GPU": 1} if cfg.gpu_workers else None,
                        on_result=on_result, spec=spec)
    seconds = time.perf_counter() - t_run
    missing = [b.index for b in blocks if read_record(records, b.index, key) is None]
    if missing:  # cannot happen unless records were removed under us: never commit a cube with holes
        raise FluxscaleError(f"{records}: blocks {missing[:10]} have no completion record; rerun fluxscale infer")
    commit_store(cube)
    report = InferReport(str(cube), len(blocks), len(results), len(done), sum(r["attempt"] > 1 for r in results),
                         sum(r["evaluations"] for r in results), seconds, layout.to_dict(), list(layout.members),
                         [r["seconds"] for r in results], time.perf_counter() - t_start)
    _write_json(records / "report.json", {**report.__dict__, "rate": report.rate})
    say(report.text())
    return report
