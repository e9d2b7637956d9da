"""Benchmark: regional integrals of a daily gridded NEE cube.

fluxscale's :func:`~fluxscale.bridges.integrals.integrate_regions` (flox map-reduce over the region
mask) against what a user would write with plain xarray (``groupby`` over the region mask
with flox switched off, then a monthly resample), and against the raw Zarr read of the same
field (Dask sum of the array: the I/O ceiling). All three run on Dask's threaded scheduler
over the same Zarr store; results of the two integrals are compared (max relative
difference).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

SIZES = {"tiny": (2.0, 1), "small": (1.0, 2), "full": (0.5, 4)}
"""size → (resolution in degrees, years of daily data)."""


def _write_cube(path: str, res: float, years: int):
    import dask.array as da
    import xarray as xr

    from fluxscale.dataset.grid import make_grid

    grid = make_grid(res)
    time_ = pd.date_range("2001-01-01", f"{2000 + years}-12-31", freq="D")
    nlat, nlon = grid.sizes["lat"], grid.sizes["lon"]
    chunks = (31, nlat, nlon)
    land = da.from_array(np.where(grid.land_fraction.values > 0, 1.0, np.nan).astype("f4"), chunks=(nlat, nlon))
    field = da.random.default_rng(0).normal(-0.5, 2.0, (time_.size, nlat, nlon), chunks=chunks).astype("f4") * land
    ds = xr.Dataset({"NEE": (("time", "lat", "lon"), field, {"units": "gC m-2 d-1"})},
                    coords={"time": time_, "lat": grid.lat.values, "lon": grid.lon.values})
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False, encoding={"NEE": {"chunks": chunks}})
    return grid, time_.size * nlat * nlon * 4


def _plain_xarray(nee, grid, use_flox=False):
    import xarray as xr

    w = grid.cell_area * grid.land_fraction.astype("f8")
    with xr.set_options(use_flox=use_flox):
        per_day = (nee * w).where(grid.region >= 0).groupby(grid.region.rename("rid")).sum()
    per_day = per_day.sel(rid=per_day.rid >= 0)
    return per_day.resample(time="MS").sum() / 1e15


def bench_integrals(size: str, workdir: str, repeats: int) -> dict:
    """Median seconds of fluxscale vs plain xarray groupby vs the raw read of the cube."""
    import dask
    import dask.array as da
    import xarray as xr

    from fluxscale.bridges.integrals import integrate_regions

    res, years = SIZES[size]
    path = f"{workdir}/cube-{size}.zarr"
    grid, nbytes = _write_cube(path, res, years)

    def open_():
        return xr.open_zarr(path, consolidated=False, zarr_format=3).NEE

    times = {"fluxscale": [], "xarray": [], "xarray_flox": [], "raw": []}
    out = {}
    with dask.config.set(scheduler="threads"):
        integrate_regions(open_().isel(time=slice(0, 31)), grid).compute()  # warm up imports and caches
        for _ in range(repeats):
            t = time.perf_counter()
            out["fluxscale"] = integrate_regions(open_(), grid).compute()
            times["fluxscale"].append(time.perf_counter() - t)
            t = time.perf_counter()
            out["xarray"] = _plain_xarray(open_(), grid).compute()
            times["xarray"].append(time.perf_counter() - t)
            t = time.perf_counter()
            _plain_xarray(open_(), grid, use_flox=True).compute()
            times["xarray_flox"].append(time.perf_counter() - t)
            t = time.perf_counter()
            da.from_zarr(path, component="NEE").sum(dtype="f8").compute()
            times["raw"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = out["fluxscale"].isel(region=slice(0, 18)).values
    theirs = out["xarray"].transpose("rid", "time").values
    rel = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    shape = f"{grid.sizes['lat']}×{grid.sizes['lon']} × {nbytes // (4 * grid.sizes['lat'] * grid.sizes['lon'])} days"
    return {
        "name": f"regional integrals ({size})", "repeats": repeats, "cube": shape, "bytes": nbytes,
        "fluxscale_s": med["fluxscale"], "xarray_groupby_s": med["xarray"], "xarray_groupby_flox_s": med["xarray_flox"],
        "raw_read_s": med["raw"],
        "fluxscale_MBps": nbytes / med["fluxscale"] / 1e6, "raw_read_MBps": nbytes / med["raw"] / 1e6,
        "speedup_vs_xarray": med["xarray"] / med["fluxscale"], "fraction_of_raw_read": med["raw"] / med["fluxscale"],
        "max_rel_diff_vs_xarray": rel,
        "rows": [
            {"what": f"regional integrals, daily cube {shape} ({nbytes / 1e9:.2f} GB)",
             "fluxscale": f"{med['fluxscale']:.2f} s ({nbytes / med['fluxscale'] / 1e6:.0f} MB/s)",
             "peer": f"plain xarray groupby {med['xarray']:.2f} s (with flox {med['xarray_flox']:.2f} s)",
             "ratio": f"{med['xarray'] / med['fluxscale']:.2f}× faster (max rel diff {rel:.1e})"},
            {"what": "  … against the raw Zarr read of the same cube",
             "fluxscale": f"{nbytes / med['fluxscale'] / 1e6:.0f} MB/s",
             "peer": f"raw read {med['raw']:.2f} s ({nbytes / med['raw'] / 1e6:.0f} MB/s)",
             "ratio": f"{med['raw'] / med['fluxscale']:.2f} of the read throughput"},
        ],
    }


_STREAM = """
import json, resource, sys, time
import dask, xarray as xr
from fluxscale.dataset.grid import make_grid
from fluxscale.bridges.integrals import integrate_regions
nee = xr.open_zarr(sys.argv[1], consolidated=False, zarr_format=3).NEE
grid = make_grid(float(sys.argv[2]))
t = time.perf_counter()
with dask.config.set(scheduler="threads"):
    out = integrate_regions(nee, grid).compute()
wall = time.perf_counter() - t
print(json.dumps({"integrate_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(nee.shape), "out": list(out.shape)}))
"""


def stream_cube(workdir: str, res: float = 0.5, years: int = 17) -> dict:
    """Write a daily ``years``-long cube at ``res`` degrees and integrate it in a fresh
    process: wall time, throughput and that process's peak RSS (the cube is never loaded)."""
    import json
    import shutil
    import subprocess
    import sys

    path = f"{workdir}/cube-{res}deg-{years}y.zarr"
    _, nbytes = _write_cube(path, res, years)
    try:
        p = subprocess.run([sys.executable, "-c", _STREAM, path, str(res)], capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {**r, "bytes": nbytes, "MBps": nbytes / r["integrate_s"] / 1e6}


if __name__ == "__main__":
    import argparse
    import json
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m benchmarks.integrals",
                                 description="Integrate a long daily cube in bounded memory.")
    ap.add_argument("--res", type=float, default=0.5)
    ap.add_argument("--years", type=int, default=17)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.workdir) as d:
        print(json.dumps(stream_cube(d, a.res, a.years), indent=1))
