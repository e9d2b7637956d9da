"""Ingest throughput: real-format files → validated stores, against the raw read of the
same files.

Setup (not timed): a twin of the size and its export to the real formats
(``fluxscale.twin.files.export_files``). Timed, median of ``repeats``:

* **fluxscale**: ``fluxscale.ingest.ingest`` on Dask's threaded scheduler: read, normalise
  (grids, times, units), gather land cells, write every store, validate deeply;
* **peer**: the raw read of the same bytes: every NetCDF variable loaded with xarray
  (netCDF4) and summed, every CSV parsed with pandas — the floor that any ingest pays.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

SIZES = {"tiny": "tiny", "small": "small", "full": "full"}


def _raw_read(files_dir: Path) -> int:
    import numpy as np
    import pandas as pd
    import xarray as xr

    nbytes = 0
    for p in sorted(files_dir.rglob("*.nc")):
        with xr.open_dataset(p, decode_times=False) as ds:
            for v in ds.data_vars:
                if ds[v].dtype.kind == "f":
                    a = ds[v].values
                    nbytes += a.nbytes
                    float(np.nansum(a, dtype=np.float64))
    for p in sorted(files_dir.rglob("*.csv")):
        nbytes += p.stat().st_size
        pd.read_csv(p)
    return nbytes


def bench_ingest(size: str, workdir: str, repeats: int) -> dict:
    """Median seconds of ``ingest`` vs the raw read of its input files."""
    import dask

    from fluxscale.config import load_ingest_config
    from fluxscale.ingest import ingest
    from fluxscale.twin import make_twin
    from fluxscale.twin.files import export_files

    work = Path(workdir) / f"ingest-{size}"
    make_twin(work / "twin", preset=SIZES[size], show_progress=False)
    toml = export_files(work / "twin", work / "files")
    shutil.rmtree(work / "twin")
    cfg = load_ingest_config(toml)
    times = {"fluxscale": [], "raw": []}
    report = None
    with dask.config.set(scheduler="threads"):
        for _ in range(repeats):
            t = time.perf_counter()
            report = ingest(cfg)
            times["fluxscale"].append(time.perf_counter() - t)
            t = time.perf_counter()
            nbytes = _raw_read(work / "files")
            times["raw"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    shutil.rmtree(work, ignore_errors=True)
    return {
        "name": f"ingest ({size})", "repeats": repeats, "input_bytes": nbytes, "n_files": report["n_files_read"],
        "fluxscale_s": med["fluxscale"], "raw_read_s": med["raw"], "ratio_over_raw": med["fluxscale"] / med["raw"],
        "stage_s": report["timings_s"],
        "rows": [{
            "what": f"ingest ({size}): {report['n_files_read']} files, {nbytes / 1e9:.2f} GB → validated stores",
            "fluxscale": f"{med['fluxscale']:.2f} s ({nbytes / 1e6 / med['fluxscale']:.0f} MB/s)",
            "peer": f"raw read of the same files (xarray load + pandas) {med['raw']:.2f} s",
            "ratio": f"{med['fluxscale'] / med['raw']:.2f}× the time",
        }],
    }
