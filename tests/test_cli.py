"""The CLI end to end on temporary directories."""

import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from fluxscale.cli import app
from fluxscale.stores import open_stores

runner = CliRunner()


def test_twin_info_validate(tmp_path):
    out = tmp_path / "d"
    r = runner.invoke(app, ["twin", "--preset", "tiny", "--out", str(out), "--seed", "3", "--set", "n_sites=25",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    s = open_stores(out)
    assert s["sites"].sizes["site"] == 25
    assert json.loads((out / "fluxscale.json").read_text())["config"]["seed"] == 3
    r = runner.invoke(app, ["info", str(out)])
    assert r.exit_code == 0, r.output
    assert "EQAF" in r.output and "3842" in r.output and "2001-01-01" in r.output
    # the summary's numbers are the stores' numbers
    truth_mean = float(s["truth"].NEE_global_annual.mean())
    assert f"truth: global NEE {truth_mean:.2f} PgC/yr" in r.output
    r = runner.invoke(app, ["info", str(out / "drivers.zarr")])
    assert r.exit_code == 0 and "Tair" in r.output and "degC" in r.output
    r = runner.invoke(app, ["validate", str(out)])
    assert r.exit_code == 0 and "valid" in r.output


def test_bad_input_exits_2_with_message(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "dataset directory not found" in r.output
    r = runner.invoke(app, ["twin", "--preset", "tiny", "--out", str(tmp_path / "x"), "--set", "bogus=1"])
    assert r.exit_code == 2 and "unknown twin knob" in r.output
    r = runner.invoke(app, ["twin", "--preset", "gigantic", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown preset 'gigantic'" in r.output


def test_run_on_a_local_cluster_matches_threaded_twin(tmp_path, tiny_twin):
    # the console script, as a user types it: LocalCluster with worker processes
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "fluxscale", "run", "--preset", "tiny", "--data-dir", str(out),
                        "--workers", "2", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "every store of" in p.stdout and "done" in p.stdout
    a, b = open_stores(out), open_stores(tiny_twin)  # distributed path == threaded path
    np.testing.assert_array_equal(a["truth"].NEE.values, b["truth"].NEE.values)
    np.testing.assert_array_equal(a["inversions"].land_flux.values, b["inversions"].land_flux.values)
    # a second run reuses the complete twin
    p = subprocess.run([sys.executable, "-m", "fluxscale", "run", "--preset", "tiny", "--data-dir", str(out),
                        "--workers", "1", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "reusing the complete twin" in p.stdout, p.stdout + p.stderr


def test_unreachable_scheduler_fails_fast(tmp_path):
    import time

    t = time.perf_counter()
    r = runner.invoke(app, ["validate", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "2"])
    assert r.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in r.output
    assert time.perf_counter() - t < 15  # the timeout is honoured, not distributed's default


def test_import_does_not_import_torch():
    code = "import sys, fluxscale, fluxscale.stores, fluxscale.grid; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_bad_store_exits_2_naming_store_variable_problem(tmp_path, tiny_twin):
    import shutil

    import zarr

    d = tmp_path / "d"
    shutil.copytree(tiny_twin, d)
    zarr.open_group(str(d / "fire.zarr"), mode="r+")["co2fire"].attrs["units"] = "kg m-2 s-1"
    for cmd in (["validate", str(d)], ["info", str(d)], ["validate", str(d / "fire.zarr")]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2, r.output
        assert "fire.zarr: variable 'co2fire': has units 'kg m-2 s-1', expected 'gC m-2 d-1'" in r.output
        assert "Traceback" not in r.output
