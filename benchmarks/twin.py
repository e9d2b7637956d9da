"""Benchmark: writing the twin, against a raw Zarr write of the same daily bytes.

Each measurement runs in a fresh Python process (so peak RSS is the job's own). The peer
writes random float32 arrays of exactly the shapes and chunks of the twin's daily
variables (``Tair``, ``WAI2``, truth ``NEE``) with xarray + Dask threads: the I/O ceiling
that the twin's simulation work sits on top of.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import textwrap

_TWIN = textwrap.dedent("""
    import json, resource, sys, time
    from fluxscale.twin import make_twin
    t = time.perf_counter()
    make_twin(sys.argv[1], preset=sys.argv[2], show_progress=False)
    wall = time.perf_counter() - t
    print(json.dumps({"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

_RAW = textwrap.dedent("""
    import json, resource, sys, time
    import dask.array as da, xarray as xr
    from fluxscale.config import twin_preset
    from fluxscale.dataset.grid import make_grid
    import pandas as pd
    cfg = twin_preset(sys.argv[2])
    n = make_grid(cfg.resolution_deg).sizes["cell"]
    nd = pd.date_range(f"{cfg.start_year}-01-01", f"{cfg.end_year}-12-31", freq="D").size
    ch = (cfg.chunk_days, cfg.chunk_cells)
    t = time.perf_counter()
    ds = xr.Dataset({v: (("time", "cell"), da.random.default_rng(0).random((nd, n), chunks=ch, dtype="f4"))
                     for v in ("Tair", "WAI2", "NEE")})
    ds.to_zarr(sys.argv[1], mode="w", zarr_format=3, consolidated=False, encoding={v: {"chunks": ch} for v in ds})
    wall = time.perf_counter() - t
    print(json.dumps({"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "bytes": 3 * nd * n * 4, "cells": n, "days": nd}))
""")


def _run(code: str, out: str, size: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, out, size], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_twin(size: str, workdir: str, repeats: int) -> dict:
    """Median wall time and peak RSS of the twin vs the raw write, and their ratio."""
    twin = [_run(_TWIN, f"{workdir}/twin-{size}", size) for _ in range(repeats)]
    raw = [_run(_RAW, f"{workdir}/raw-{size}.zarr", size) for _ in range(repeats)]
    for p in (f"{workdir}/twin-{size}", f"{workdir}/raw-{size}.zarr"):  # 17 GB at full size
        shutil.rmtree(p, ignore_errors=True)
    t_twin = statistics.median(r["wall_s"] for r in twin)
    t_raw = statistics.median(r["wall_s"] for r in raw)
    nbytes = raw[0]["bytes"]
    return {
        "name": f"twin write ({size})",
        "repeats": repeats,
        "cells": raw[0]["cells"], "days": raw[0]["days"],
        "daily_bytes": nbytes,
        "twin_wall_s": t_twin, "twin_peak_rss_mib": max(r["peak_rss_mib"] for r in twin),
        "raw_wall_s": t_raw, "raw_peak_rss_mib": max(r["peak_rss_mib"] for r in raw),
        "twin_daily_MBps": nbytes / t_twin / 1e6, "raw_MBps": nbytes / t_raw / 1e6,
        "ratio_twin_over_raw_time": t_twin / t_raw,
    }
