"""Inference against the naive alternatives a user would write, on the same cluster.

Setup (not timed): a twin of the size, ``N_MEMBERS`` untrained members (2 EC + 2 EC-ATM, 1 + 1 at tiny;
see :mod:`benchmarks.infer`). Timed, each on a LocalCluster of 2 single-threaded workers,
every member's daily NEE of every land cell and day written to Zarr:

* **fluxscale**: ``infer`` with those members and ``write_members=True`` (the drivers are read
  once per block and every member evaluated on them; ensemble mean/sd and monthly means are
  written as well);
* **xarray.map_blocks per member**: for each member, ``xr.map_blocks`` over the drivers
  store's chunks (assemble the 10 drivers, one torch forward of the block) → ``to_zarr``;
* **dask-ml ParallelPostFit per member**: the drivers as one ``(samples, 10)`` Dask array
  (stacked and reshaped from the store), ``ParallelPostFit(member).predict`` → ``to_zarr``.

Rates are pixel-day-members per second; the naive outputs are checked against each other
and against fluxscale's ``NEE_member`` on a sample of cells.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .common import perf_report

N_MEMBERS = {"tiny": 2, "small": 4, "full": 4}
"""Members per run: EC and EC-ATM in equal numbers."""


class TorchMember:
    """A fluxscale checkpoint as a scikit-learn style estimator (for ParallelPostFit)."""

    def __init__(self, path: str = ""):
        self.path = path

    def get_params(self, deep=True):
        return {"path": self.path}

    def set_params(self, **p):
        self.path = p.get("path", self.path)
        return self

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        import torch

        from fluxscale.learn.model import load_member

        model, _ = load_member(self.path)
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()


def _map_blocks_member(drivers_path: str, member_path: str, out: str) -> None:
    import torch
    import xarray as xr

    from fluxscale.dataset.drivers import assemble_driver_block
    from fluxscale.learn.model import load_member

    ds = xr.open_zarr(drivers_path).drop_vars(["cell_lat", "cell_lon"]).unify_chunks()

    def block(sub: xr.Dataset) -> xr.DataArray:
        model, _ = load_member(member_path)
        x = assemble_driver_block(sub)  # (days, cells, 10)
        with torch.no_grad():
            y = model(torch.from_numpy(x.reshape(-1, 10))).numpy().reshape(x.shape[:2])
        return xr.DataArray(y, dims=("time", "cell"), coords={"time": sub.time, "cell": sub.cell}, name="NEE")

    template = xr.zeros_like(ds.Tair).rename("NEE")
    nee = xr.map_blocks(block, ds, template=template)
    nee.to_dataset().to_zarr(out, mode="w")


def _ppf_member(drivers_path: str, member_path: str, out: str) -> None:
    import dask.array as da
    import xarray as xr
    from dask_ml.wrappers import ParallelPostFit

    from fluxscale.dataset.drivers import DRIVER_NAMES

    ds = xr.open_zarr(drivers_path)
    doy = ds.time.dt.dayofyear - 1
    cols = []
    for n in DRIVER_NAMES:
        v = ds[n]
        if "doy" in v.dims:
            v = v.isel(doy=doy.variable).drop_vars("doy", errors="ignore")  # the season of each day
        v = v.broadcast_like(ds.Tair).transpose("time", "cell")
        cols.append(v.data.rechunk(ds.Tair.data.chunks))
    X = da.stack(cols, axis=-1).reshape(-1, len(DRIVER_NAMES), merge_chunks=True)
    y = ParallelPostFit(TorchMember(member_path)).predict(X)
    y.reshape(ds.Tair.shape, merge_chunks=True).rechunk(ds.Tair.data.chunks).to_zarr(out, overwrite=True)


def bench_infer_naive(size: str, workdir: str, repeats: int) -> dict:
    import zarr
    from distributed import Client, LocalCluster

    from fluxscale.config import InferConfig
    from fluxscale.infer.members import list_members
    from fluxscale.infer.stage import infer
    from fluxscale.dataset.stores import store_path
    from fluxscale.twin import make_twin

    from .infer import write_untrained_members

    root = Path(workdir) / f"infer-naive-{size}"
    make_twin(root, preset=size, show_progress=False)
    write_untrained_members(root, per_variant=N_MEMBERS[size] // 2)
    cfg = InferConfig(write_members=True, layer=False)
    members = list_members(root, cfg)
    drivers = str(store_path(root, "drivers"))
    times: dict[str, float] = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as lc, Client(lc) as client:
        client.run(lambda: __import__("torch").set_num_threads(1))  # import torch on the workers first
        with perf_report(f"infer-naive-{size}"):
            t = time.perf_counter()
            rep = infer(root, cfg, client=client, show_progress=False)
            times["fluxscale"] = time.perf_counter() - t
            t = time.perf_counter()
            for k, m in enumerate(members):
                _map_blocks_member(drivers, m.path, str(root / f"mb-{k}.zarr"))
            times["map_blocks"] = time.perf_counter() - t
            t = time.perf_counter()
            for k, m in enumerate(members):
                _ppf_member(drivers, m.path, str(root / f"ppf-{k}.zarr"))
            times["parallel_post_fit"] = time.perf_counter() - t
    # agreement on a sample of cells: the two naive outputs, and fluxscale's gridded members
    import xarray as xr

    from fluxscale.dataset.stores import open_store

    grid = open_store(store_path(root, "grid"), "grid").load()
    cells = np.random.default_rng(0).choice(grid.sizes["cell"], 50, replace=False)
    cube = xr.open_zarr(rep.path)
    diffs = {"map_blocks_vs_ppf": 0.0, "map_blocks_vs_fluxscale": 0.0}
    for k, m in enumerate(members):
        a = xr.open_zarr(root / f"mb-{k}.zarr").NEE.isel(cell=cells).values
        b = zarr.open_array(str(root / f"ppf-{k}.zarr"), mode="r")[:, np.sort(cells)][:, np.argsort(np.argsort(cells))]
        c = cube.NEE_member.sel(member=m.name).isel(lat=xr.DataArray(grid.cell_ilat.values[cells], dims="c"),
                                                      lon=xr.DataArray(grid.cell_ilon.values[cells], dims="c")).values
        diffs["map_blocks_vs_ppf"] = max(diffs["map_blocks_vs_ppf"], float(np.nanmax(np.abs(a - b))))
        diffs["map_blocks_vs_fluxscale"] = max(diffs["map_blocks_vs_fluxscale"], float(np.nanmax(np.abs(a - c))))
    n = rep.evaluations if rep.evaluations else grid.sizes["cell"] * cube.sizes["time"] * len(members)
    shutil.rmtree(root, ignore_errors=True)
    res = {"name": f"inference vs naive ({size})", "size": size, "members": len(members), "evaluations": n,
           "seconds": times, "rates": {k: n / v for k, v in times.items()}, "max_abs_diff": diffs}
    res["rows"] = markdown_rows(res)
    return res


def markdown_rows(res: dict) -> list[dict]:
    r, s = res["rates"], res["seconds"]
    what = (f"inference vs naive ({res['size']}): {res['members']} members × every land cell and day "
            f"({res['evaluations']:.3g}), every member's daily NEE to Zarr, LocalCluster 2 workers × 1 thread")
    d = res["max_abs_diff"]
    return [
        {"what": what, "fluxscale": f"{r['fluxscale']:.3g} /s ({s['fluxscale']:.1f} s)",
         "peer": f"xarray.map_blocks per member {r['map_blocks']:.3g} /s ({s['map_blocks']:.1f} s); max abs diff "
                 f"{d['map_blocks_vs_fluxscale']:.1e} gC m-2 d-1",
         "ratio": f"{r['fluxscale'] / r['map_blocks']:.2f}×"},
        {"what": what, "fluxscale": f"{r['fluxscale']:.3g} /s",
         "peer": f"dask-ml ParallelPostFit per member {r['parallel_post_fit']:.3g} /s "
                 f"({s['parallel_post_fit']:.1f} s); max abs diff vs map_blocks {d['map_blocks_vs_ppf']:.1e}",
         "ratio": f"{r['fluxscale'] / r['parallel_post_fit']:.2f}×"},
    ]
