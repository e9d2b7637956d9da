"""The CLI end to end on temporary directories."""

import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from fluxscale.run.cli import app
from fluxscale.dataset.stores import open_stores

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
    assert "drivers.zarr  [drivers]" in r.output  # the store kind, not swallowed as rich markup
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
                        "--workers", "2", "--no-progress", "--set", "repeats=10", "--until", "bridges", "--verbose"],
                       capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "every store of" in p.stdout and "done" in p.stdout
    from fluxscale.dataset.stores import open_store

    bridges = open_store(out / "bridges.zarr")
    assert bridges.sizes["repeat"] == 10 and bool(bridges.met_threshold.all())
    assert f"{'EQAF':8s}{int(bridges.n_cells.values[8]):7d}" in p.stdout  # --verbose: the inventory and bridges
    a, b = open_stores(out), open_stores(tiny_twin)  # distributed path == threaded path
    np.testing.assert_array_equal(a["truth"].NEE.values, b["truth"].NEE.values)
    np.testing.assert_array_equal(a["inversions"].land_flux.values, b["inversions"].land_flux.values)
    # a second run reuses the complete twin
    p = subprocess.run([sys.executable, "-m", "fluxscale", "run", "--preset", "tiny", "--data-dir", str(out),
                        "--workers", "1", "--no-progress", "--set", "repeats=4", "--until", "bridges"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "reusing the complete twin" in p.stdout, p.stdout + p.stderr
    assert "EQAF" not in p.stdout and "dims:" not in p.stdout  # without --verbose: no inventory


def test_unreachable_scheduler_fails_fast(tmp_path):
    import time

    t = time.perf_counter()
    r = runner.invoke(app, ["validate", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "2"])
    assert r.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in r.output
    assert time.perf_counter() - t < 15  # the timeout is honoured, not distributed's default


def test_import_does_not_import_torch():
    code = "import sys, fluxscale, fluxscale.dataset.stores, fluxscale.dataset.grid; print('torch' in sys.modules)"
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


def test_integrals_and_bridge_commands_with_a_config_file(tmp_path, tiny_twin):
    import shutil

    from fluxscale.dataset.stores import open_store

    data = tmp_path / "data"
    shutil.copytree(tiny_twin, data)
    cfg = tmp_path / "fluxscale.toml"
    cfg.write_text(f'data_dir = "{data}"\n[cluster]\nn_workers = 1\ndashboard_address = ""\n'
                   "[bridge]\nrepeats = 6\nrepeats_per_task = 3\nn_candidates = 30\nseed = 1\n")
    r = runner.invoke(app, ["integrals", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    integ = open_store(data / "integrals.zarr")
    glob = integ.prior.sel(region="GLOBAL").groupby("time.year").sum().mean("year")
    assert f"GLOBAL  {float(glob):9.3f}" in r.output  # the table shows the stored numbers
    r = runner.invoke(app, ["bridge", "--config", str(cfg), "--set", "n_clusters=4", "--no-progress"])
    assert r.exit_code == 0, r.output
    b = open_store(data / "bridges.zarr")
    assert b.sizes["repeat"] == 6 and b.sizes["cluster_id"] == 4
    assert "'seed': 1" in b.attrs["config"]
    assert f"{float(b.r2_train.values[0]):10.3f}" in r.output


def test_stage_commands_refuse_bad_config(tmp_path, tiny_twin):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[bridge]\nrepeat = 5\n")
    r = runner.invoke(app, ["bridge", str(tiny_twin), "--config", str(cfg)])
    assert r.exit_code == 2 and "unknown setting(s) repeat" in r.output
    cfg.write_text("[bridge]\nr2_threshold = 1.5\n")
    r = runner.invoke(app, ["integrals", str(tiny_twin), "--config", str(cfg)])
    assert r.exit_code == 2 and "r2_threshold" in r.output
    r = runner.invoke(app, ["bridge", str(tiny_twin), "--set", "n_clusters=many"])
    assert r.exit_code == 2 and "n_clusters = 'many': expected an integer" in r.output
    r = runner.invoke(app, ["integrals", str(tmp_path / "nowhere"), "--workers", "1"])
    assert r.exit_code == 2 and "dataset directory not found" in r.output


def test_permission_denied_and_ctrl_c_are_one_line(tmp_path, monkeypatch):
    """A refused write (raised anywhere below the command, as on a worker) is one line naming
    the path, exit 2; Ctrl-C is one line saying how to resume, exit 130. (The tests run as
    root, which a chmod would not stop, so the writer itself raises.)"""
    import fluxscale.twin as twin_mod

    def refuse(out, *a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "grid.zarr"))

    monkeypatch.setattr(twin_mod, "write_twin", refuse)
    r = CliRunner().invoke(app, ["twin", "--preset", "tiny", "--out", str(tmp_path / "ro"), "--no-progress"])
    assert r.exit_code == 2, r.output
    assert f"{tmp_path / 'ro' / 'grid.zarr'}: permission denied" in r.output and "Traceback" not in r.output

    def interrupt(out, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(twin_mod, "write_twin", interrupt)
    r = CliRunner().invoke(app, ["twin", "--preset", "tiny", "--out", str(tmp_path / "x"), "--no-progress"])
    assert r.exit_code == 130 and "interrupted; rerun the same command to resume" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_tls_scheduler_without_certificates_and_config_sections_are_one_line(tiny_twin, tmp_path):
    r = CliRunner().invoke(app, ["integrals", str(tiny_twin), "--scheduler", "tls://127.0.0.1:1"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "tls://127.0.0.1:1: a TLS scheduler needs this client's certificates" in r.output
    assert "[cluster] section" in r.output  # a section name is text, not rich markup
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[train]\nepochs = "five"\n')
    r = CliRunner().invoke(app, ["train", str(tiny_twin), "--config", str(cfg), "--local"])
    assert r.exit_code == 2 and f"{cfg}: [train]: epochs = 'five': expected an integer" in r.output


def test_zero_local_workers_is_refused_at_once(tiny_twin):
    r = CliRunner().invoke(app, ["integrals", str(tiny_twin), "--workers", "0", "--no-progress"])
    assert r.exit_code == 2 and "n_workers=0 (--workers 0): a LocalCluster needs at least one worker" in r.output
    assert "Traceback" not in r.output


def test_twin_refuses_to_replace_another_dataset_unless_told(tiny_twin, tmp_path):
    import shutil

    out = tmp_path / "data"
    shutil.copytree(tiny_twin, out)
    (out / "models").mkdir()  # something made from the old dataset
    before = (out / "fluxscale.json").read_text()
    r = CliRunner().invoke(app, ["twin", "--preset", "tiny", "--seed", "3", "--out", str(out), "--no-progress"])
    assert r.exit_code == 2 and "holds a twin made with other settings (seed: 0 → 3)" in r.output, r.output
    assert (out / "fluxscale.json").read_text() == before and (out / "models").exists()
    r = CliRunner().invoke(app, ["twin", "--preset", "tiny", "--seed", "3", "--out", str(out), "--no-progress",
                                 "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "removing what was made from the old dataset: models" in r.output and not (out / "models").exists()
    assert json.loads((out / "fluxscale.json").read_text())["config"]["seed"] == 3


def test_a_real_ctrl_c_stops_the_workers_quietly(tiny_models, tmp_path):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group, main process and
    LocalCluster workers alike, in the middle of `fluxscale bridge`. The command exits 130
    within seconds with one line that repeats the command to resume; no traceback and no
    Dask warning from any process; no process of the group is left; a rerun then finishes."""
    import os
    import shutil
    import signal
    import time

    root = tmp_path / "data"
    shutil.copytree(tiny_models, root, ignore=shutil.ignore_patterns("nee.*", "report", "models", "bridges.zarr", "dtw"))
    cmd = [sys.executable, "-m", "fluxscale", "bridge", str(root), "--workers", "2", "--no-progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal starts it
    lines = []
    for line in p.stdout:  # wait until the workers are busy with the robustness repeats
        lines.append(line)
        if "spectral clusters per region" in line:
            break
    time.sleep(2.0)
    os.killpg(p.pid, signal.SIGINT)
    t = time.perf_counter()
    rest, _ = p.communicate(timeout=60)
    took = time.perf_counter() - t
    out = "".join(lines) + rest
    assert p.returncode == 130, out
    assert took < 15, (took, out)
    after = [ln for ln in rest.splitlines() if ln.strip()]
    assert after == [f"interrupted; rerun `fluxscale bridge {root} --workers 2 --no-progress` to resume (finished "
                     f"stages, members and blocks are kept)"], out
    for noise in ("Traceback", "KeyboardInterrupt", "WARNING", "CancelledError", "leaked"):
        assert noise not in out, (noise, out)
    left = []
    for _ in range(20):  # the resource tracker exits once it sees the main process gone
        left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(p.pid)], capture_output=True,
                              text=True).stdout.strip()
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"processes of the interrupted command still running:\n{left}"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and (root / "bridges.zarr").exists(), again.stdout + again.stderr
