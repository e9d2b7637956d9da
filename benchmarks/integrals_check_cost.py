"""Benchmark (issue 20): the integral kernel with and without the in-pass count of non-finite
values, on one 31-day 0.5° chunk, interleaved in one process; prints the medians of 15.

    python -m benchmarks.integrals_check_cost
"""
import time

import numpy as np

from fluxscale.dataset.grid import make_grid
from fluxscale.bridges.integrals import _region_sums, _weights
from fluxscale.dataset.regions import REGIONS


def old(x, w, reg):
    """The kernel as it was before the count (fluxscale 0a8c95c)."""
    nspace = w.ndim
    fw, fr = w.ravel(), reg.ravel()
    idx = np.flatnonzero((fr >= 0) & (fw > 0))
    onehot = np.zeros((idx.size, len(REGIONS)))
    onehot[np.arange(idx.size), fr[idx]] = fw[idx]
    xs = np.asarray(x).reshape(x.shape[:x.ndim - nspace] + (-1,))[..., idx].astype(np.float64)
    np.nan_to_num(xs, copy=False, nan=0.0)
    out = xs @ onehot
    return out.reshape(out.shape[:-1] + (1,) * nspace + (len(REGIONS),))


g = make_grid(0.5)
w = _weights(g).values; reg = g.region.values.astype(np.int64); chk = g.land.values.astype(bool)
x = np.random.default_rng(0).normal(size=(31, *w.shape)).astype(np.float32)
x[:, ~(w > 0)] = np.nan
to, tn = [], []
for _ in range(15):
    t = time.perf_counter(); a = old(x, w, reg); to.append(time.perf_counter() - t)
    t = time.perf_counter(); b = _region_sums(x, w, reg, chk); tn.append(time.perf_counter() - t)
assert np.allclose(a[..., 0, 0, :], b[..., 0, 0, :18]) and b[..., -1].sum() == 0
print(f"old {np.median(to)*1e3:.1f} ms, with count {np.median(tn)*1e3:.1f} ms, ratio {np.median(tn)/np.median(to):.2f}")
