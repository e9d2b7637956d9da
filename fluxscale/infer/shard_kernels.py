"""The numba kernel of the shard writes (:mod:`fluxscale.infer.shards` encodes and writes
the shards): gridding a block's compact ``(days, cells)`` values into one inner chunk of the
cube, in memory. No I/O here."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["grid_chunk"]


@njit(nogil=True, cache=True)
def grid_chunk(values, t0, t1, li, lj, lon0, out):  # pragma: no cover - numba
    """Fill ``out`` (float32 ``(tc, rows, lon)``, one inner chunk) with NaN and put
    ``values[t0 + t, c]`` (``(time, cells)``) at ``out[t, li[c], lj[c] - lon0]`` for ``t <
    t1 - t0`` and the cells whose column falls inside the chunk. Returns True when any
    value written is not NaN (else the chunk is empty: zarr does not store it)."""
    nt, nr, nl = out.shape
    for t in range(nt):
        for r in range(nr):
            for j in range(nl):
                out[t, r, j] = np.nan
    seen = False
    for t in range(t1 - t0):
        row = values[t0 + t]
        for c in range(li.size):
            j = lj[c] - lon0
            if 0 <= j < nl:
                v = row[c]
                out[t, li[c], j] = v
                if v == v:
                    seen = True
    return seen
