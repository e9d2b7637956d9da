"""Benchmark: the DTW distance matrix against dtaidistance and tslearn on the same series.

Throughput is counted in DTW cell updates per second: pairs × the cells of the band of one
pair (exact count, :func:`fluxscale.bridges.dtw.count_band_cells`). The series are monthly
NEE-like (seasonal cycle of amplitude 1–5 plus noise), float64 for the peers. The peers use
every core: dtaidistance's ``distance_matrix_fast`` (C, OpenMP) and tslearn's ``cdist_dtw``
(``n_jobs=-1``). tslearn is timed on the first ``tslearn_series`` series only (it is slow);
its figure is a rate, so it still compares. Every call is made once before timing
(numba compilation). Sizes: tiny N=100, L=48; small N=500, L=204; full N=1000, L=204; the
band is 10 % of L, then no band. For small and full, the tiled Zarr path on a 2-worker
``LocalCluster`` is timed against the in-memory one as well.
"""

from __future__ import annotations

import contextlib

import shutil
import tempfile

import numpy as np

from .common import median_time

SIZES = {"tiny": (100, 48), "small": (500, 204), "full": (1000, 204)}


def _series(n: int, length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    return rng.uniform(1, 5, (n, 1)) * np.sin(2 * np.pi * t / 12 + phase) + 0.5 * rng.normal(size=(n, length))


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    iu = np.triu_indices(len(a), 1)
    a, b = a[iu], b[iu]
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _case(X: np.ndarray, window, repeats: int, tslearn_series: int) -> dict:
    from dtaidistance import dtw as dtai
    from tslearn.metrics import cdist_dtw

    from fluxscale.bridges.dtw import count_band_cells, distance_matrix

    n, length = X.shape
    per_pair = count_band_cells(length, length, window)
    cells = n * (n - 1) // 2 * per_pair
    k = min(n, tslearn_series)
    cells_ts = k * (k - 1) // 2 * per_pair
    ts_kw = {} if window is None else {"global_constraint": "sakoe_chiba", "sakoe_chiba_radius": window}
    dt_window = 0 if window is None else window + 1  # dtaidistance: |i-j| < window, 0 = no band
    runs = {
        "fluxscale": lambda: distance_matrix(X, window),
        "fluxscale_float64": lambda: distance_matrix(X, window, dtype="float64"),
        "dtaidistance": lambda: np.asarray(dtai.distance_matrix_fast(X, window=dt_window, parallel=True)),
        "tslearn": lambda: cdist_dtw(X[:k], n_jobs=-1, **ts_kw),
    }
    # warm-up (compilation) on a few series
    distance_matrix(X[:20], window), distance_matrix(X[:20], window, dtype="float64")
    dtai.distance_matrix_fast(X[:20], window=dt_window, parallel=True)
    cdist_dtw(X[:20], n_jobs=-1, **ts_kw)
    res = {"window": window, "cells_per_pair": per_pair, "pairs": n * (n - 1) // 2, "cells": cells,
           "tslearn_series": k}
    out = {}
    for name, f in runs.items():
        t, out[name] = median_time(f, repeats)
        c = cells_ts if name == "tslearn" else cells
        res[f"{name}_s"] = t
        res[f"{name}_cells_per_s"] = c / t
    d = out["fluxscale"]
    up = np.triu(out["dtaidistance"], 1)
    res["max_rel_diff_dtaidistance"] = _max_rel(d, up + up.T)
    res["max_rel_diff_tslearn"] = _max_rel(d[:k, :k], out["tslearn"])
    res["max_rel_diff_float64"] = _max_rel(d, out["fluxscale_float64"])
    res["max_rel_diff_float64_vs_dtaidistance"] = _max_rel(out["fluxscale_float64"], up + up.T)
    for peer in ("dtaidistance", "tslearn"):
        res[f"ratio_vs_{peer}"] = res["fluxscale_cells_per_s"] / res[f"{peer}_cells_per_s"]
        res[f"ratio_float64_vs_{peer}"] = res["fluxscale_float64_cells_per_s"] / res[f"{peer}_cells_per_s"]
    return res


def _tiled(X: np.ndarray, window, repeats: int, tile: int, name: str = "dtw") -> dict:
    """The tiled distance matrix to Zarr on LocalClusters of 1 and 2 single-threaded workers
    (the 2-worker run inside a performance report), and the in-memory matrix."""
    from distributed import Client, LocalCluster

    from fluxscale.bridges.dtw import distance_matrix, distance_matrix_tiled

    from .common import perf_report

    work = tempfile.mkdtemp(prefix="fluxscale-bench-dtw-")
    times = {}
    try:
        for n_workers in (1, 2):
            with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                              host="127.0.0.1") as cluster, Client(cluster) as client:
                distance_matrix_tiled(X[:40], f"{work}/warm.zarr", window=window, tile=16, client=client)
                count = iter(range(10**6))  # a fresh store each run: a complete one would be reused
                with perf_report(name) if n_workers == 2 else contextlib.nullcontext():
                    times[n_workers], arr = median_time(lambda: distance_matrix_tiled(
                        X, f"{work}/d{n_workers}-{next(count)}.zarr", window=window, tile=tile, client=client),
                        repeats)
                tiled = arr[:]
        t_mem, d = median_time(lambda: distance_matrix(X, window), repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"window": window, "tile": tile, "tiled_s": times[2], "tiled_1_worker_s": times[1], "in_memory_s": t_mem,
            "ratio_tiled_over_in_memory_time": times[2] / t_mem, "scaling_2_over_1": times[1] / times[2],
            "max_abs_diff": float(np.max(np.abs(tiled - d.astype(np.float32))))}


def bench_dtw(size: str, repeats: int) -> dict:
    """DTW distance matrix throughput of fluxscale and its peers (medians over ``repeats``)."""
    n, length = SIZES[size]
    X = _series(n, length)
    band = max(1, round(0.1 * length))
    res = {"name": f"DTW distance matrix ({size})", "n_series": n, "length": length, "repeats": repeats,
           "cases": [_case(X, w, repeats, tslearn_series=n if size == "tiny" else 200) for w in (band, None)]}
    # the tiled Zarr path on 1 and 2 workers; at tiny size with small tiles, so that it runs in CI
    res["tiled"] = _tiled(X, band, repeats, tile=256 if size != "tiny" else 32, name=f"dtw-{size}")
    return res


def markdown_rows(b: dict) -> list[str]:
    """Rows for the runner's results table (``| benchmark | fluxscale | peer | ratio |``)."""
    rows = []
    for c in b["cases"]:
        band = "no band" if c["window"] is None else f"band {c['window']}"
        head = f"| {b['name']}: {b['n_series']} series × {b['length']}, {band} | "
        mine = f"{c['fluxscale_cells_per_s'] / 1e9:.2f}·10⁹ cells/s ({c['fluxscale_s']:.2f} s)"
        rows.append(head + mine + f" | dtaidistance distance_matrix_fast {c['dtaidistance_cells_per_s'] / 1e9:.2f}·10⁹ "
                    f"({c['dtaidistance_s']:.2f} s), max rel diff {c['max_rel_diff_dtaidistance']:.1e} | "
                    f"{c['ratio_vs_dtaidistance']:.1f}× |")
        rows.append(head + mine + f" | tslearn cdist_dtw {c['tslearn_cells_per_s'] / 1e9:.3f}·10⁹ "
                    f"({c['tslearn_series']} series, {c['tslearn_s']:.2f} s), max rel diff "
                    f"{c['max_rel_diff_tslearn']:.1e} | {c['ratio_vs_tslearn']:.1f}× |")
    if "tiled" in b:
        t = b["tiled"]
        rows.append(f"| {b['name']}: tiled Zarr, 2-worker LocalCluster, tile {t['tile']} | {t['tiled_s']:.2f} s | "
                    f"in memory {t['in_memory_s']:.2f} s | {t['ratio_tiled_over_in_memory_time']:.2f}× the time |")
        if "tiled_1_worker_s" in t:
            rows.append(f"| {b['name']}: tiled Zarr, 2 workers vs 1 (1 thread each), tile {t['tile']} | "
                        f"{t['tiled_s']:.2f} s | 1 worker {t['tiled_1_worker_s']:.2f} s | "
                        f"{t['scaling_2_over_1']:.2f}× |")
    return rows


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=tuple(SIZES), default="tiny")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    r = bench_dtw(a.size, a.repeats)
    print(json.dumps(r, indent=2))
    print("\n".join(markdown_rows(r)))
