"""Global inference on the tiny twin: the cube equals each member's in-memory forward, the
ensemble statistics equal numpy's, records make reruns free and interrupted runs resume, a
killed worker changes nothing, and plain xarray reads what the docs promise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
import time

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.config import InferConfig
from fluxscale.dataset.drivers import assemble_driver_block
from fluxscale.errors import FluxscaleError
from fluxscale.infer.cube import records_path
from fluxscale.infer.members import list_members
from fluxscale.infer.plan import block_memory_bytes, plan_blocks
from fluxscale.infer.stage import infer
from fluxscale.learn.model import forward_members, member_weights
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.learn.model import load_member

# several blocks on the tiny grid (90 rows), small chunks so that blocks own several; the
# machinery of the trained ensembles without the layer (its test is test_the_layer_...)
CFG = InferConfig(lat_rows=8, time_chunk=50, write_members=True, layer=False)


@pytest.fixture(scope="module")
def root(tiny_models, tmp_path_factory):
    r = tmp_path_factory.mktemp("infer") / "data"
    shutil.copytree(tiny_models, r)
    return r


@pytest.fixture(scope="module")
def cube(root):
    report = infer(root, CFG, show_progress=False)
    return report, xr.open_zarr(report.path)


def _grid(root):
    return open_store(store_path(root, "grid"), "grid")


def test_cube_equals_each_members_in_memory_forward(root, cube):
    report, ds = cube
    grid = _grid(root)
    drivers = open_store(store_path(root, "drivers"), "drivers")
    days = np.array([0, 1, 58, 59, 364, 365, 700, 1094])  # year ends, 28 Feb / 1 Mar, a leap-free record
    x = assemble_driver_block(drivers, time=days)  # (days, cells, 10)
    ilat, ilon = grid.cell_ilat.values, grid.cell_ilon.values
    assert list(ds.member.values) == ["ec-fold0", "ec-fold1", "ecatm-fold0", "ecatm-fold1"]
    for name in ds.member.values:
        model, _ = load_member(root / "models" / f"{name}.pt")
        with torch.no_grad():
            ref = model(torch.as_tensor(x)).numpy()  # (days, cells)
        got = ds.NEE_member.sel(member=name).isel(time=days).values
        np.testing.assert_allclose(got[:, ilat, ilon], ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())
        # ocean and non-land cells stay NaN, land cells are all filled
        land = np.zeros(got.shape[1:], bool)
        land[ilat, ilon] = True
        assert np.isnan(got[:, ~land]).all() and np.isfinite(got[:, land]).all()
    assert report.written == len(plan_blocks(ilat, grid.sizes["lat"], 8)) > 5 and report.skipped == 0


def test_ensemble_statistics_equal_numpy(cube):
    _, ds = cube
    member = ds.NEE_member.values.astype(np.float64)  # (member, time, lat, lon)
    ens = ds.member_ensemble.values
    months = pd.DatetimeIndex(ds.time.values).to_period("M")
    for e in ds.ensemble.values:
        m = member[ens == e]
        np.testing.assert_allclose(ds.NEE.sel(ensemble=e).values, m.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.NEE_std.sel(ensemble=e).values, m.std(axis=0), rtol=1e-4, atol=1e-5)
        # monthly: pandas' grouping of each member's daily values by calendar month
        monthly = np.stack([m[:, months == p].mean(axis=1) for p in months.unique()], axis=1)  # (members, months, ...)
        np.testing.assert_allclose(ds.NEE_member_monthly.values[ens == e], monthly, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.NEE_monthly.sel(ensemble=e).values, monthly.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.NEE_monthly_std.sel(ensemble=e).values, monthly.std(axis=0), rtol=1e-4, atol=1e-5)
    assert ds.sizes["month"] == 36 and str(ds.month.values[0])[:10] == "2001-01-01"


def test_cube_reads_with_plain_xarray_as_documented(root, cube):
    report, _ = cube
    ds = xr.open_zarr(report.path)
    for v, dims in {"NEE": ("ensemble", "time", "lat", "lon"), "NEE_std": ("ensemble", "time", "lat", "lon"),
                    "NEE_monthly": ("ensemble", "month", "lat", "lon"),
                    "NEE_member_monthly": ("member", "month", "lat", "lon"),
                    "NEE_member": ("member", "time", "lat", "lon")}.items():
        assert ds[v].dims == dims and ds[v].dtype == np.float32
        assert ds[v].attrs["units"] == "gC m-2 d-1" and "uptake" in ds[v].attrs["sign_convention"]
    assert ds.cell_area.attrs["units"] == "m2" and ds.lat.attrs["units"] == "degrees_north"
    assert np.issubdtype(ds.time.dtype, np.datetime64) and ds.sizes["time"] == 1095
    assert ds.attrs["Conventions"].startswith("CF-")
    prov = json.loads(ds.attrs["fluxscale_provenance"])
    assert [m["name"] for m in prov["members"]] == list(ds.member.values)
    assert all(len(m["sha256"]) == 64 for m in prov["members"]) and "torch" in prov["versions"]
    # stored layout: one shard per band, chunks of time_chunk days
    enc = ds.NEE.encoding
    assert enc["shards"][2] == 8 and enc["chunks"][1] == 50 and enc["chunks"][2] == 8
    # the schema check of the store passes, and the global mean is the land-area weighted mean of the cells
    checked = open_store(report.path, "nee")
    w = (checked.cell_area * _grid(root).land_fraction).where(checked.land)
    assert np.isfinite(float(checked.NEE_monthly.isel(ensemble=0, month=0).weighted(w.fillna(0)).mean()))


def test_rerun_writes_nothing_and_a_changed_model_invalidates_every_block(root, cube):
    report, ds = cube
    chunk_files = sorted((p, p.stat().st_mtime_ns) for p in (root / "nee.zarr").rglob("c/*") if p.is_file())
    again = infer(root, CFG, show_progress=False)
    assert (again.written, again.skipped) == (0, report.written)
    assert sorted((p, p.stat().st_mtime_ns) for p in (root / "nee.zarr").rglob("c/*") if p.is_file()) == chunk_files

    # a changed checkpoint (one weight) → a new key: every block is recomputed
    other = root.parent / "changed"
    shutil.copytree(root, other)
    ck = torch.load(other / "models" / "ec-fold1.pt", weights_only=True)
    ck["state_dict"]["net.4.bias"] += 1.0
    torch.save(ck, other / "models" / "ec-fold1.pt")
    changed = infer(other, CFG, show_progress=False)
    assert changed.written == report.written and changed.skipped == 0
    new = xr.open_zarr(changed.path)
    diff = (new.NEE_member - ds.NEE_member).sel(member="ec-fold1")
    np.testing.assert_allclose(float(diff.mean()), 1.0, rtol=1e-5)
    xr.testing.assert_identical(new.NEE_member.sel(member="ecatm-fold0").load(), ds.NEE_member.sel(member="ecatm-fold0").load())
    keys = {json.loads(p.read_text())["key"] for p in records_path(changed.path).glob("0*.json")}
    assert len(keys) == 1 and keys != {json.loads(p.read_text())["key"] for p in records_path(report.path).glob("0*.json")}

    # rewritten inputs (a new manifest: the twin or ingest ran again) → every block again
    man = json.loads((other / "fluxscale.json").read_text())
    man["created"] = "2030-01-01T00:00:00+00:00"
    (other / "fluxscale.json").write_text(json.dumps(man))
    again = infer(other, CFG, show_progress=False)
    assert again.written == report.written and again.skipped == 0


_INTERRUPT = textwrap.dedent("""
    import os, sys
    import fluxscale.infer.block as blk
    from fluxscale.config import InferConfig
    from fluxscale.infer.stage import infer
    real, done = blk.infer_block, []
    def dying(block, *, spec):
        rec = real(block, spec=spec)
        done.append(block.index)
        if len(done) == 3:
            os._exit(9)  # the client process dies mid-run, other blocks half done
        return rec
    blk.infer_block = dying
    infer(sys.argv[1], InferConfig(lat_rows=8, time_chunk=50, write_members=True, layer=False), show_progress=False)
""")


def test_an_interrupted_run_resumes_with_only_the_unfinished_blocks(root, cube, tmp_path):
    report, ds = cube
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    r = subprocess.run([sys.executable, "-c", _INTERRUPT, str(data)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 9, r.stderr
    assert not (data / "nee.zarr").exists() and (data / "nee.zarr.partial").exists()  # not committed
    finished = len(list(records_path(data / "nee.zarr").glob("0*.json")))
    assert finished >= 3
    resumed = infer(data, CFG, show_progress=False)
    assert resumed.skipped == finished and resumed.written == report.written - finished
    # bit-identical to the undisturbed run (the global attributes name another directory)
    xr.testing.assert_identical(xr.open_zarr(resumed.path).drop_attrs(deep=False).load(), ds.drop_attrs(deep=False).load())


def test_the_zarr_fallback_writes_the_same_cube(root, cube, tmp_path, monkeypatch):
    """A cube whose layout fluxscale.infer.shards does not encode goes through xarray/zarr's region
    writes: the same values and the same stored chunks as the shard writer's."""
    import fluxscale.infer.block as blk
    import fluxscale.infer.shards as shards

    def refuse(self, array):
        raise shards.UnsupportedLayout(str(array))

    monkeypatch.setattr(shards.ShardWriter, "__init__", refuse)
    monkeypatch.setattr(blk, "_CACHE", {})
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    ours = Path(cube[0].path)
    theirs = Path(infer(data, CFG, show_progress=False).path)
    xr.testing.assert_identical(xr.open_zarr(theirs).drop_attrs(deep=False).load(),
                                cube[1].drop_attrs(deep=False).load())
    stored = lambda p: sorted(str(f.relative_to(p)) for f in p.rglob("c/**/*") if f.is_file())  # noqa: E731
    assert stored(theirs) == stored(ours)


def test_a_killed_worker_loses_nothing_and_the_cube_is_bit_identical(root, tmp_path):
    import threading

    from distributed import Client, LocalCluster

    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    # a small forward batch makes each block last long enough to be caught mid-task
    cfg = CFG.replace(batch=256, lat_rows=16)
    reference = xr.open_zarr(infer(data, cfg.replace(out="reference.zarr"), show_progress=False).path).load()
    killed = []
    records = records_path(data / "nee.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, Client(lc) as c:
        pids = c.run(os.getpid)

        def killer():
            # kill the worker whose pid is in a block's start marker, while that block runs
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                for marker in records.glob("*.started") if records.exists() else []:
                    try:
                        pid = json.loads(marker.read_text())["pid"]
                    except (OSError, ValueError, KeyError):
                        continue
                    worker = next((w for w, p in pids.items() if p == pid), None)
                    time.sleep(0.2)
                    if worker and marker.exists():
                        c.run(lambda: os._exit(1), workers=[worker], on_error="ignore")
                        killed.append(worker)
                        return
                time.sleep(0.02)

        th = threading.Thread(target=killer)
        th.start()
        report = infer(data, cfg, client=c, show_progress=False)
        th.join()
    assert killed, "no worker was killed"
    assert report.retried >= 1 and report.written == len(plan_blocks(_grid(data).cell_ilat.values, 90, 16))
    xr.testing.assert_identical(xr.open_zarr(report.path).drop_attrs(deep=False).load(), reference.drop_attrs(deep=False))


def test_block_memory_bound_holds(root):
    """The documented per-task bound against tracemalloc's peak of one block (numpy's buffers)."""
    import tracemalloc

    import fluxscale.infer.block as blk

    cfg = InferConfig(lat_rows=16, out=str(root / "mem.zarr"), write_members=True)
    grid = _grid(root)
    blocks = plan_blocks(grid.cell_ilat.values, grid.sizes["lat"], 16)
    widest = max(blocks, key=lambda b: b.n_cells)
    peaks = []
    real = blk.infer_block

    def traced(block, *, spec):
        blk.release_buffers()  # the block allocates its buffers afresh, under tracemalloc
        tracemalloc.start()
        try:
            return real(block, spec=spec)
        finally:
            peaks.append((block.index, tracemalloc.get_traced_memory()[1]))
            tracemalloc.stop()

    blk.infer_block = traced
    try:
        with dask.config.set(num_workers=1):  # one block at a time: tracemalloc is per process
            infer(root, cfg, show_progress=False, client=None)
    finally:
        blk.infer_block = real
    bound = block_memory_bytes(16, n_lon=180, n_days=1095, n_months=36, n_ensembles=2, n_members=4, write_members=True,
                               driver_chunk_days=366)
    peak = dict(peaks)[widest.index]
    assert peak <= bound and peak >= 0.4 * bound, (peak, bound)


def test_forward_members_equals_torch_modules_at_any_batch(root):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5003, 10)).astype(np.float32) * 5 + 10
    ms = list_members(root, InferConfig())
    for batch in (1, 700, 100000):
        got = forward_members([member_weights(m.path) for m in ms], x, batch=batch)
        for k, m in enumerate(ms):
            model, _ = load_member(m.path)
            with torch.no_grad():
                ref = model(torch.as_tensor(x)).numpy()
            np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_member_selection_and_errors(root, tmp_path):
    names = [m.name for m in list_members(root, InferConfig(members=("ecatm-fold1", "ec-fold0")))]
    assert names == ["ec-fold0", "ecatm-fold1"]
    with pytest.raises(FluxscaleError, match="no trained member ecatm-fold7"):
        list_members(root, InferConfig(members=("ecatm-fold7",)))
    with pytest.raises(FluxscaleError, match="'ec' ensemble has no selected member"):
        list_members(root, InferConfig(members=("ecatm-fold0",)))
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("models", "nee.*"))
    with pytest.raises(FluxscaleError, match="members.json: not found; train the ensembles first"):
        infer(bare, CFG, show_progress=False)


def test_infer_command(root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    args = ["infer", str(data), "--local", "--no-progress", "--set", "members=ec-fold1,ecatm-fold0",
            "--set", "lat_rows=30"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "3 blocks written, 0 skipped" in r.output and "pixel-day-member evaluations" in r.output
    ds = xr.open_zarr(data / "nee.zarr")
    assert list(ds.member.values) == ["ec-fold1", "ecatm-fold0", "dual-fold1"] and "NEE_member" not in ds
    assert ds.attrs["fluxscale_default_ensemble"] == "dual"
    # one member per ensemble: the spread is zero where there is land
    assert float(ds.NEE_std.max()) == 0.0
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "0 blocks written, 3 skipped" in r.output
    r = CliRunner().invoke(app, ["info", str(data)])  # the dataset summary lists the cube
    assert r.exit_code == 0 and "nee.zarr  [nee]" in r.output and "NEE_monthly_std" in r.output
    r = CliRunner().invoke(app, ["infer", str(data), "--local", "--set", "variants=ecat"])
    assert r.exit_code == 2 and "variants" in r.output


def test_non_finite_drivers_are_refused_naming_the_variable_day_and_cell(root, tmp_path):
    """NaN in a few driver cell-days (written straight into the store, as a corrupt file
    would hold them): `infer` refuses in one line naming drivers.zarr, the driver, the day
    and the land cell, and no cube is left that looks complete."""
    import zarr

    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    g = zarr.open_group(str(store_path(data, "drivers")), mode="r+")
    tair = g["Tair"]
    day, cell = 40, 7
    tair[day, cell:cell + 3] = np.nan
    r = CliRunner().invoke(app, ["infer", str(data), "--local", "--no-progress", "--set", "lat_rows=30"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    when = str(pd.DatetimeIndex(open_store(store_path(data, "drivers"), "drivers").time.values)[day].date())
    assert f"drivers.zarr: Tair is nan on {when} at land cell {cell}" in r.output, r.output
    assert not (data / "nee.zarr").exists()  # the cube is committed (renamed from its .partial) only when complete


def test_a_corrupt_driver_chunk_is_one_line_naming_store_variable_and_chunk(root, tmp_path):
    """An emptied chunk file of Tair (a crash mid-copy): `infer` names drivers.zarr, Tair and
    the chunk's key, exit 2, no traceback, and commits no cube."""
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("nee.*"))
    chunks = sorted(p for p in (data / "drivers.zarr" / "Tair" / "c").rglob("*") if p.is_file())
    victim = chunks[0]
    victim.write_bytes(b"")
    key = "c/" + "/".join(victim.relative_to(data / "drivers.zarr" / "Tair" / "c").parts)
    r = CliRunner().invoke(app, ["infer", str(data), "--local", "--no-progress", "--set", "lat_rows=30"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "drivers.zarr" in r.output and "Tair" in r.output and key in r.output and "corrupt" in r.output, r.output
    assert not (data / "nee.zarr").exists()


def test_the_layer_meets_the_inversions_and_recomputes_from_its_stored_fit(root):
    from fluxscale.infer.layer_stage import layer_at

    cfg = InferConfig(lat_rows=8, time_chunk=50, out="nee-layer.zarr")
    report = infer(root, cfg, show_progress=False)
    ds = xr.open_zarr(report.path)
    assert ds.attrs["fluxscale_default_ensemble"] == "dual" and ds.attrs["fluxscale_infer_key"]
    assert list(ds.ensemble.values) == ["ec", "ecatm", "dual"]
    assert list(ds.member.values)[-2:] == ["dual-fold0", "dual-fold1"]
    grid = _grid(root).load()
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    w = grid.cell_area.values[il, jl] * grid.land_fraction.values[il, jl]
    reg = grid.region.values[il, jl].astype(int)
    months = pd.DatetimeIndex(ds.month.values)
    integ = open_store(store_path(root, "integrals"), "integrals").load()
    inv = integ.inversions.mean("system").sel(time=months.values)
    dual_m = ds.NEE_member_monthly.values[:, :, il, jl].astype(np.float64)  # (member, month, cell)
    members = [k for k, m in enumerate(ds.member.values) if str(m).startswith("dual-")]
    for r in range(18):  # every member meets the inversion mean, region by region and month by month
        want = inv.sel(region=str(inv.region.values[r])).values
        for k in members:
            got = (dual_m[k][:, reg == r] * w[reg == r]).sum(1) * months.days_in_month.values / 1e15
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    mean = ds.NEE_monthly.sel(ensemble="dual").values[:, il, jl]
    np.testing.assert_allclose(mean, dual_m[members].mean(0), rtol=1e-5, atol=1e-6)
    daily = ds.NEE.sel(ensemble="dual").values[:, il, jl].astype(np.float64)
    month_of_day = months.get_indexer(pd.DatetimeIndex(ds.time.values).to_period("M").to_timestamp())
    by_month = np.stack([daily[month_of_day == m].mean(0) for m in range(months.size)])
    np.testing.assert_allclose(by_month, mean, rtol=1e-4, atol=1e-4)
    # dual − EC on any day is the stored fit with the drivers' Tair (what the towers get)
    cells = np.array([0, 17, 400, len(il) - 1])
    tair = open_store(store_path(root, "drivers"), "drivers").Tair.values[:, cells].T  # (site, day)
    corr = layer_at(ds, il[cells], jl[cells], tair, pd.DatetimeIndex(ds.time.values))
    ec = ds.NEE.sel(ensemble="ec").values[:, il[cells], jl[cells]].T
    np.testing.assert_allclose(ds.NEE.sel(ensemble="dual").values[:, il[cells], jl[cells]].T, ec + corr,
                               rtol=1e-4, atol=1e-4)
    again = infer(root, cfg, show_progress=False)  # a rerun writes nothing and keeps the attributes
    assert again.written == 0 and xr.open_zarr(report.path).attrs == ds.attrs
