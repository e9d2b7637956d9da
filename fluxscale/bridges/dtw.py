"""DTW distance matrices tiled over Dask into Zarr (the stage's I/O around
:mod:`fluxscale.bridges.dtw_kernels`, whose in-memory functions are re-exported here).

See :mod:`fluxscale.bridges.dtw_kernels` for the distance's convention, how the kernels are
fast, and their precision.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from fluxscale.bridges.dtw_kernels import (NonFiniteSeriesError, band, count_band_cells, cross_distance, distance_matrix,
                                           dtw_distance, fill_rows, lanes, pack, prepare)
from fluxscale.errors import ConfigError, FluxscaleError, StoreError

__all__ = ["NonFiniteSeriesError", "dtw_distance", "distance_matrix", "cross_distance", "count_band_cells",
           "tile_plan", "distance_matrix_tiled"]


# --------------------------------------------------------------------------- tiled, on Dask

def tile_plan(n: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Upper-triangle tiles ``(i0, i1, j0, j1)`` of an n × n matrix cut in ``tile`` × ``tile`` chunks.

    One tile per chunk (I, J) with J >= I; tile (I, J) also stands for its mirror (J, I).
    Pure: no I/O.
    """
    if n < 0 or tile < 1:
        raise ConfigError(f"tile_plan needs n >= 0 and tile >= 1, got n={n}, tile={tile}")
    nt = -(-n // tile)
    return [(a * tile, min(n, (a + 1) * tile), b * tile, min(n, (b + 1) * tile))
            for a in range(nt) for b in range(a, nt)]


def _compute_tile(block, *, X, path, lo, hi):
    """One task: DTW of rows i0:i1 against columns j0:j1, written to chunk (I, J) and its mirror."""
    import zarr

    i0, i1, j0, j1 = block
    try:
        rows = np.arange(i1 - i0, dtype=np.int64)
        out = np.zeros((i1 - i0, j1 - j0), X.dtype)
        diag = (i0, i1) == (j0, j1)
        nl = lanes(X.dtype, X.shape[1], X.shape[1], lo, hi)
        fill_rows(X[i0:i1], pack(X[j0:j1], nl), rows, lo, hi, diag, out)
        arr = zarr.open_array(path, mode="r+")
        tile = out.astype(np.float32, copy=False)
        arr[i0:i1, j0:j1] = tile
        if not diag:
            arr[j0:j1, i0:i1] = tile.T
    except Exception as e:
        raise FluxscaleError(f"DTW tile rows {i0}:{i1} × columns {j0}:{j1} of {path}: {e}") from e
    return block


def _fingerprint(X: np.ndarray, window, dtype: str) -> dict:
    h = hashlib.sha256(str(X.shape).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    return {"fluxscale_kind": "dtw_distance_matrix", "n": int(X.shape[0]), "length": int(X.shape[1]),
            "window": None if window is None else int(window), "dtype": dtype, "x_sha256": h.hexdigest()}


def distance_matrix_tiled(X, path, *, window: int | None = None, tile: int = 1024, client=None,
                          dtype: str = "float32", show_progress: bool = False, label: str = "DTW tiles"):
    """All pairwise DTW distances, computed as tiles on Dask and stored in Zarr once.

    The matrix is a Zarr v3 array at ``path``: shape (n, n), chunks (tile, tile), float32 (also
    for ``dtype="float64"``, which sets the precision of the computation only).
    One task per upper-triangle tile (:func:`tile_plan`) computes it with the same kernels as
    :func:`distance_matrix` and writes it and its transpose, each exactly one chunk, so no two
    tasks write one chunk. The series are shared with the workers once, as a task of their own
    (:func:`fluxscale.parallel.run_tasks`; recomputed if a worker is lost). Everything is
    written under ``path + ".partial"`` and renamed to ``path`` when every tile is done; a
    complete store made from the same series, window and dtype is reused, not recomputed.

    Parameters
    ----------
    X : array_like, shape (n_series, length)
        Finite values.
    path : str or Path
        Local or shared directory that every worker can write.
    window, dtype
        As in :func:`distance_matrix`.
    tile : int
        Tile edge in series. Memory per task ≈ 2·tile²·4 bytes (its float32 tile and the
        transposed copy that Zarr makes), + tile²·8 for dtype="float64", + the series
        (n·length·4 or 8 bytes, once per worker): ~8 MiB + the series for tile=1024.
    client : distributed.Client, optional
        Run there; default: Dask's threaded scheduler here.
    show_progress : bool
        Show a progress bar.
    label : str
        Its label (and the prefix of the task keys).

    Returns
    -------
    zarr.Array
        Opened read-only, attributes: ``fluxscale_complete``, ``n``, ``length``, ``window``,
        ``dtype``, ``x_sha256``.
    """
    import zarr

    from fluxscale.parallel import run_tasks
    from fluxscale.dataset.stores import checksum_codecs, commit_store, partial_path

    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ConfigError(f"tile must be an integer >= 1, got {tile!r}")
    X = np.asarray(X, dtype=np.float64)
    (Xp,) = prepare([X], dtype)
    lo, hi = band(Xp.shape[1], Xp.shape[1], window)
    attrs = _fingerprint(X, window, dtype)
    path = Path(path).absolute()
    if path.exists():
        try:
            old = dict(zarr.open_array(str(path), mode="r").attrs)
        except Exception:
            old = {}
        if old.get("fluxscale_kind") != attrs["fluxscale_kind"]:
            raise StoreError(str(path), None, "exists and is not a DTW distance matrix; not overwriting it")
        if old.get("fluxscale_complete") and all(old.get(k) == v for k, v in attrs.items()):
            return zarr.open_array(str(path), mode="r")
    tmp = partial_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run
    n = len(Xp)
    arr = zarr.create_array(store=str(tmp), shape=(n, n), chunks=(tile, tile), dtype="float32",
                            fill_value=np.nan, zarr_format=3, compressors=checksum_codecs(),
                            attributes={**attrs, "fluxscale_complete": False})
    run_tasks(_compute_tile, tile_plan(n, tile), client=client, label=label, show_progress=show_progress,
              X=Xp, path=os.fspath(tmp), lo=lo, hi=hi)
    arr.attrs["fluxscale_complete"] = True
    commit_store(path)
    return zarr.open_array(str(path), mode="r")
