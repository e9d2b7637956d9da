"""Dynamic time warping (DTW) distances between time series, in memory: the numba kernels
and the numpy functions around them (no I/O; :mod:`fluxscale.bridges.dtw` tiles them over
Dask into Zarr).

Convention (that of ``tslearn.metrics.dtw``): the distance is the square root of the
minimal cumulative squared difference along a warping path with steps (1, 0), (0, 1) and
(1, 1) from (0, 0) to (n-1, m-1). ``window`` is the Sakoe–Chiba radius r: for equal lengths
only cells with ``|i - j| <= r`` are used; ``None`` means no band. For unequal lengths
n != m the band follows ``tslearn.metrics.sakoe_chiba_mask``: it is widened by the length
difference on the side of the longer series, ``min(0, m-n) - r <= j - i <= max(0, m-n) + r``
(so that the corner (n-1, m-1) is always reachable). dtaidistance's ``window=w`` is the
radius ``w - 1`` (``|i - j| < w``), and its ``window=0`` means no band.

How it is fast. The kernel advances a *lane block* of pairs together: one series against 16
float32 or 8 float64 others (64 bytes per time step; twice that for a narrow band). It sweeps
the DP matrix along anti-diagonals: the cells of one anti-diagonal depend only on the two
previous ones, so the loop over (cells of the anti-diagonal × lanes) is flat, with no
loop-carried dependency, and LLVM's loop vectoriser (on in numba by default) makes it SIMD.
Row-by-row sweeps carry a dependency from cell j-1 to cell j; with the lanes innermost they
vectorise only with numba's SLP vectoriser, which is off by default (numba reported
miscompilations) and which this module does not need: on 2 cores of a Xeon (Sapphire
Rapids) it makes 11–12·10⁹ float32 cell updates per second with numba's defaults (~6·10⁹ in
float64), and the same kernel compiled with SLP on was no faster. Threads come from a pool
over row chunks (the kernels release the GIL), not numba's ``prange``: the same serial code
then runs inside Dask tasks, where concurrent ``parallel=True`` calls would oversubscribe
the cores or, with numba's workqueue threading layer, abort. Out-of-band cells are never
visited (a band of 10 % of the length is ~5× less work than none); early abandoning does
not pay for a full matrix and is not done.

Precision. float32 (the default) accumulates in float32 after subtracting the common mean
of all series (DTW is invariant to a common additive shift): on monthly NEE-like series
(|x| ~ 1–5, 204 steps) distances agree with float64 references to ~1e-6 relative. Distances
between nearly identical series (a small difference of large sums) lose relative
precision in float32: use ``dtype="float64"`` (about half the speed) where that matters.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numba
import numpy as np
from numba import njit

from fluxscale.errors import ConfigError, NonFiniteSeriesError

__all__ = ["NonFiniteSeriesError", "dtw_distance", "distance_matrix", "cross_distance", "count_band_cells",
           "band", "lanes", "pack", "prepare", "fill_rows"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


# --------------------------------------------------------------------------- kernels

@njit(cache=True, nogil=True, boundscheck=False)
def _dtw_lanes(xr, yb, lo, hi, bufs, out):  # pragma: no cover - compiled
    """DTW of ``lanes = out.size`` pairs at once; ``out[k] = dtw(x_k, y_k)``.

    ``xr[(n-1-i)*lanes + k] = x_k[i]`` (each x series reversed, lanes innermost),
    ``yb[j*lanes + k] = y_k[j]``; cells with ``lo <= j - i <= hi`` are used.
    ``bufs`` (3, (m+2)*lanes) holds three anti-diagonals t = i + j, indexed by slot j+1.
    """
    nl = out.shape[0]
    n = xr.shape[0] // nl
    m = yb.shape[0] // nl
    inf = np.inf
    # Only slots 0 and 1 of the diagonals "-1" and "-2" are ever read: cell (0,0) sees the
    # virtual D(-1,-1) = 0 and +inf elsewhere. Later reads stay within the slots that the
    # previous two diagonals wrote (their cells and the +inf border on each side).
    for k in range(nl):
        bufs[1, k] = 0.0
        bufs[1, nl + k] = inf
        bufs[2, k] = inf
        bufs[2, nl + k] = inf
    for t in range(n + m - 1):
        ja = max(0, t - (n - 1), (t + lo + 1) // 2)   # first j in the band on this diagonal
        jb = min(m - 1, t, (t + hi) // 2)             # last
        cur = bufs[t % 3]
        p1 = bufs[(t + 2) % 3]   # diagonal t-1: cells (i-1, j) at slot j+1 and (i, j-1) at slot j
        p2 = bufs[(t + 1) % 3]   # diagonal t-2: cell (i-1, j-1) at slot j
        xoff = (n - 1 - t) * nl  # x_k[t - j] sits at xr[xoff + j*nl + k]: contiguous in (j, k)
        # Unsigned indices: numba wraps negative signed indices with a select per access,
        # which stops LLVM from vectorising this loop (~10× slower).
        for e in range(ja * nl, (jb + 1) * nl):
            d = xr[np.uint64(xoff + e)] - yb[np.uint64(e)]
            a = p2[np.uint64(e)]
            c = p1[np.uint64(e + nl)]
            a = a if a < c else c
            c = p1[np.uint64(e)]
            a = a if a < c else c
            cur[np.uint64(e + nl)] = d * d + a
        for k in range(nl):
            cur[np.uint64(ja * nl + k)] = inf
            cur[np.uint64((jb + 2) * nl + k)] = inf
    last = bufs[(n + m - 2) % 3]
    for k in range(nl):
        out[k] = np.sqrt(last[np.uint64(m * nl + k)])


@njit(cache=True, nogil=True)
def fill_rows(A, Yp, rows, lo, hi, tri, out):  # pragma: no cover - compiled
    """``out[i, j] = dtw(A[i], Y[j])`` for i in ``rows`` and every column j < out.shape[1].

    ``Yp`` (n_blocks, m, lanes) is Y packed by :func:`pack`. With ``tri`` (Y is A) only
    j > i is computed and mirrored into ``out[j, i]``; the diagonal is left as it is.
    """
    n = A.shape[1]
    nblk, m, nl = Yp.shape
    ncols = out.shape[1]
    xr = np.empty(n * nl, A.dtype)
    bufs = np.empty((3, (m + 2) * nl), A.dtype)
    res = np.empty(nl, A.dtype)
    for i in rows:
        for s in range(n):
            v = A[i, n - 1 - s]
            for k in range(nl):
                xr[s * nl + k] = v
        b0 = (i + 1) // nl if tri else 0
        for b in range(b0, nblk):
            _dtw_lanes(xr, Yp[b].reshape(m * nl), lo, hi, bufs, res)
            for k in range(nl):
                j = b * nl + k
                if j < ncols and (j > i or not tri):
                    out[i, j] = res[k]
                    if tri:
                        out[j, i] = res[k]


# --------------------------------------------------------------------------- helpers

def band(n: int, m: int, window: int | None) -> tuple[int, int]:
    """(lo, hi): the cells used are lo <= j - i <= hi (tslearn's Sakoe–Chiba convention)."""
    if window is None:
        return -n, m
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ConfigError(f"window must be None or an integer >= 0 (the Sakoe-Chiba radius), got {window!r}")
    r = int(min(window, n + m))
    return min(0, m - n) - r, max(0, m - n) + r


def count_band_cells(n: int, m: int, window: int | None = None) -> int:
    """Number of DP cells (i, j) in the band of one pair of series of lengths n and m."""
    lo, hi = band(n, m, window)
    i = np.arange(n)
    return int(np.clip(np.minimum(m - 1, i + hi) - np.maximum(0, i + lo) + 1, 0, None).sum())


def lanes(dtype, n: int, m: int, lo: int, hi: int) -> int:
    """Pairs per lane block: 64 bytes per time step (16 float32, 8 float64), 128 for a narrow band.

    More lanes make longer inner loops (~12 % faster with a 10 % band); with a wide band the
    five arrays of a diagonal then outgrow the L1 cache (~25 % slower unbanded).
    """
    width = (min(hi, m - 1) - max(lo, 1 - n)) // 2 + 1  # cells on one anti-diagonal
    return (128 if width <= 64 else 64) // np.dtype(dtype).itemsize


def pack(Y: np.ndarray, nl: int) -> np.ndarray:
    """(n_series, m) → (n_blocks, m, nl), lanes innermost; the last block padded by repetition."""
    nblk = -(-len(Y) // nl)
    idx = np.minimum(np.arange(nblk * nl), len(Y) - 1)
    return np.ascontiguousarray(Y[idx].reshape(nblk, nl, Y.shape[1]).transpose(0, 2, 1))


def _check_finite(a: np.ndarray, name: str | None) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        row, pos = np.argwhere(bad)[0]
        raise NonFiniteSeriesError(int(row) if name is None else name.format(row), pos, a[row, pos])


def prepare(arrays, dtype: str, names=None) -> list[np.ndarray]:
    """Check 2-D finite series, subtract their common mean (in float64), cast to ``dtype``.

    ``names``: per array, a format string for the row of a bad value (``"B[{}]"``); default: the row.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    out = []
    for k, a in enumerate(arrays):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ConfigError(f"series must be a non-empty 2-D array (series × time), got shape {a.shape}")
        _check_finite(a, None if names is None else names[k])
        out.append(a)
    # Centring keeps float32 sums small; DTW is invariant to a common additive shift.
    mean = sum(a.sum() for a in out) / sum(a.size for a in out)
    return [np.ascontiguousarray(a - mean, dtype=_DTYPES[dtype]) for a in out]


def _run_rows(A, Yp, lo, hi, tri, out, n_threads) -> None:
    """Fill ``out`` on ``n_threads`` threads (the kernels release the GIL)."""
    n = len(A)
    if tri:  # row i pairs with row n-1-i: every chunk of the order gets an even share of the triangle
        rows = np.empty(n, np.int64)
        rows[0::2] = np.arange((n + 1) // 2)
        rows[1::2] = n - 1 - np.arange(n // 2)
    else:
        rows = np.arange(n, dtype=np.int64)
    n_threads = numba.get_num_threads() if n_threads is None else max(1, int(n_threads))
    chunks = np.array_split(rows, min(n, 4 * n_threads))
    fill = partial(fill_rows, A, Yp, lo=lo, hi=hi, tri=tri, out=out)
    if n_threads == 1 or len(chunks) == 1:
        fill(rows)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(fill, chunks))


# --------------------------------------------------------------------------- in memory

def dtw_distance(x, y, window: int | None = None, *, dtype: str = "float32") -> float:
    """DTW distance between two 1-D series (lengths may differ).

    Parameters
    ----------
    x, y : array_like, shape (n,) and (m,)
        Finite values, same units; the distance has those units.
    window : int or None
        Sakoe–Chiba radius in time steps (see the module docstring for n != m); None: no band.
    dtype : {"float32", "float64"}
        Precision of the accumulation.

    Returns
    -------
    float

    Raises
    ------
    NonFiniteSeriesError
        If x or y holds NaN/inf (``series`` is ``"x"`` or ``"y"``).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ConfigError(f"x and y must be 1-D series, got shapes {x.shape} and {y.shape}")
    xa, ya = prepare([x[None], y[None]], dtype, names=["x", "y"])
    n, m = xa.shape[1], ya.shape[1]
    lo, hi = band(n, m, window)
    out = np.empty(1, xa.dtype)
    _dtw_lanes(np.ascontiguousarray(xa[0, ::-1]), ya[0], lo, hi, np.empty((3, m + 2), xa.dtype), out)
    return float(out[0])


def distance_matrix(X, window: int | None = None, *, dtype: str = "float32", n_threads: int | None = None) -> np.ndarray:
    """All pairwise DTW distances of equal-length series.

    Parameters
    ----------
    X : array_like, shape (n_series, length)
        Finite values.
    window : int or None
        Sakoe–Chiba radius in time steps; None: no band.
    dtype : {"float32", "float64"}
        Precision of the accumulation (float32: ~2× faster, see the module docstring).
    n_threads : int, optional
        Threads to use; default ``numba.get_num_threads()``.

    Returns
    -------
    numpy.ndarray, shape (n_series, n_series), float64
        Symmetric, zero diagonal. Memory: n² × (4 + 8) bytes at the end for float32.
    """
    (Xp,) = prepare([X], dtype)
    length = Xp.shape[1]
    lo, hi = band(length, length, window)
    out = np.zeros((len(Xp),) * 2, Xp.dtype)
    _run_rows(Xp, pack(Xp, lanes(Xp.dtype, length, length, lo, hi)), lo, hi, True, out, n_threads)
    return out.astype(np.float64, copy=False)


def cross_distance(A, B, window: int | None = None, *, dtype: str = "float32",
                   n_threads: int | None = None) -> np.ndarray:
    """DTW distances between every series of A and every series of B.

    Parameters
    ----------
    A : array_like, shape (n_a, length_a)
    B : array_like, shape (n_b, length_b)
        Finite values; lengths may differ (see the module docstring for the band).
    window, dtype, n_threads
        As in :func:`distance_matrix`.

    Returns
    -------
    numpy.ndarray, shape (n_a, n_b), float64

    Raises
    ------
    NonFiniteSeriesError
        ``series`` is ``"A[i]"`` or ``"B[j]"``.
    """
    Ap, Bp = prepare([A, B], dtype, names=["A[{}]", "B[{}]"])
    lo, hi = band(Ap.shape[1], Bp.shape[1], window)
    out = np.zeros((len(Ap), len(Bp)), Ap.dtype)
    _run_rows(Ap, pack(Bp, lanes(Ap.dtype, Ap.shape[1], Bp.shape[1], lo, hi)), lo, hi, False, out, n_threads)
    return out.astype(np.float64, copy=False)
