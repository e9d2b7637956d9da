"""The launcher against a real single-node SLURM (Debian's slurmctld, slurmd, munge) that
this module starts itself (deploy/slurm/single_node.py; as root, installing the packages
when missing): a stage end to end with every listener on loopback, and the failures that
must be fast and say why. Deselect with ``-m 'not slurm'``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ..netcheck import public, run_watching

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, str(REPO / "deploy" / "launch.py")]
SMALL = ["--kind", "slurm", "--job", "cores=1", "--job", "memory=2GiB", "--job", "walltime=00:20:00",
         "--performance-report", ""]


def _single_node():
    spec = importlib.util.spec_from_file_location("fluxscale_single_node", REPO / "deploy" / "slurm" / "single_node.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM (skipped with the reason where it cannot be had; on CI,
    where it must be had, a failure)."""
    mod = _single_node()
    try:
        node = mod.SingleNodeSlurm().start()
    except mod.SlurmUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests: {e}")
        pytest.skip(str(e))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def dataset(tiny_twin, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_twin, root)
    return root


def _launch(slurm, *args, cwd, timeout=240) -> subprocess.CompletedProcess:
    env = {**slurm.env, "COLUMNS": "200"}
    return subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_slurm_runs_here_on_ci(slurm):
    """Where CI is set the fixture must have started SLURM (it fails rather than skips)."""
    assert slurm.node_state() == "idle"
    res = slurm.run("srun", "hostname")
    assert res.returncode == 0 and res.stdout.strip()


def test_integrals_on_slurm_equal_in_process_and_listen_on_loopback(slurm, dataset, tiny_twin, tmp_path):
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.dataset.stores import open_store, store_path

    t0 = time.perf_counter()
    # the launcher's processes, SLURM's daemons and the jobs' (they carry this SLURM_CONF)
    res, seen = run_watching([*LAUNCH, *SMALL, "--workers", "2", "integrals", str(dataset)],
                             env={**slurm.env, "COLUMNS": "200"}, cwd=tmp_path, timeout=240,
                             env_marker=("SLURM_CONF", str(slurm.conf)))
    took = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 workers (2 threads) at tcp://127.0.0.1:" in res.stdout and "dashboard http://127.0.0.1:" in res.stdout
    print(f"integrals on SLURM, 2 jobs: {took:.1f} s")
    ref = tmp_path / "ref"
    shutil.copytree(dataset.parent / "data", ref, ignore=shutil.ignore_patterns("integrals.zarr"))
    compute_integrals(ref)
    got = open_store(store_path(dataset, "integrals"), "integrals").load()
    want = open_store(store_path(ref, "integrals"), "integrals").load()
    for v in ("inversions", "prior", "truth", "land_area"):
        np.testing.assert_allclose(got[v].values, want[v].values, rtol=1e-12, err_msg=v)
    # the scheduler, its dashboard, and per worker job a nanny and a worker: all on loopback
    workers = [x for x in seen.values() if "dask_worker" in x[3] or "multiprocessing" in x[3]]
    assert len(workers) >= 4, seen
    assert any("slurmctld" in x[3] for x in seen.values()) and any("slurmd" in x[3] for x in seen.values()), seen
    assert not public(seen.values()), public(seen.values())
    end = time.monotonic() + 30  # the launcher cancelled them; SLURM may list them while they end
    while slurm.jobs() and time.monotonic() < end:
        time.sleep(0.5)
    assert not slurm.jobs(), f"the worker jobs outlived the launcher: {slurm.jobs()}"


def _one_line_error(res) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr and "tornado" not in res.stderr, res.stderr
    assert len(err.splitlines()) == 1, err
    return err


def test_refused_and_never_running_jobs_fail_fast(slurm, dataset, tmp_path):
    # larger than the node: refused before anything is submitted, the numbers side by side
    t0 = time.perf_counter()
    res = _launch(slurm, *SMALL, "--job", "cores=64", "--workers", "1", "integrals", str(dataset), cwd=tmp_path)
    err = _one_line_error(res)
    assert f"asks for 64 CPUs and 2048 MB, but the nodes of partition debug have at most {slurm.cpus} CPUs" in err
    assert time.perf_counter() - t0 < 30 and not slurm.jobs()
    # sbatch refuses: its own words, at once
    t0 = time.perf_counter()
    res = _launch(slurm, *SMALL, "--job", "queue=nosuch", "--workers", "1", "integrals", str(dataset), cwd=tmp_path)
    err = _one_line_error(res)
    assert "sbatch refused the worker job: sbatch: error: invalid partition specified: nosuch" in err
    assert time.perf_counter() - t0 < 30
    # accepted, but pending for a reason that never changes (a directive the size check does
    # not read: the last --cpus-per-task wins in SLURM): the job id and SLURM's reason
    t0 = time.perf_counter()
    res = _launch(slurm, *SMALL, "--job", 'job_extra_directives=["--cpus-per-task=64"]', "--workers", "1",
                  "--wait-timeout", "120", "integrals", str(dataset), cwd=tmp_path)
    err = _one_line_error(res)
    assert "can never start: SLURM keeps it pending with reason PartitionConfig" in err
    assert "worker job " in err and err.split("worker job ")[1].split()[0].isdigit()
    assert time.perf_counter() - t0 < 30
    assert not (dataset / "integrals.zarr").exists()
    end = time.time() + 20
    while slurm.jobs() and time.time() < end:  # the launcher cancelled its job
        time.sleep(0.5)
    assert not slurm.jobs()


def test_bridge_survives_a_cancelled_worker_job(slurm, dataset, tmp_path):
    """scancel one of the two worker jobs in the middle of the bridge's repeats: the stage
    finishes, a replacement job is submitted, and the store equals an undisturbed run."""
    import xarray as xr

    from fluxscale.bridges.build import build_bridges
    from fluxscale.config import BridgeConfig
    from fluxscale.bridges.integrals import compute_integrals

    compute_integrals(dataset)
    ref = tmp_path / "ref"
    shutil.copytree(dataset, ref)
    env = {**slurm.env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*LAUNCH, *SMALL, "--workers", "2", "bridge", str(dataset), "--set", "repeats=200",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env=env)
    out, ids, cancelled = [], set(), None
    try:
        for line in proc.stdout:
            out.append(line)
            ids |= {j["id"] for j in slurm.jobs()}
            if cancelled is None and "spectral clusters per region" in line:  # the repeats start now
                running = [j["id"] for j in slurm.jobs() if j["state"] == "RUNNING"]
                assert len(running) == 2, (running, "".join(out))
                cancelled = running[0]
                slurm.run("scancel", cancelled)
                t_cancel = time.perf_counter()
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(out)
    assert proc.returncode == 0, log
    assert cancelled is not None, log
    assert "Traceback" not in log and "lose scattered data" not in log, log
    took = time.perf_counter() - t_cancel
    assert len(ids) >= 3, f"no replacement job submitted: jobs {sorted(ids)}\n{log}"
    print(f"bridge on SLURM: job {cancelled} cancelled mid-repeats, finished {took:.1f} s later; jobs {sorted(ids)}")
    build_bridges(ref, BridgeConfig(repeats=200), show_progress=False)  # undisturbed, threads here
    got, want = xr.open_zarr(dataset / "bridges.zarr").load(), xr.open_zarr(ref / "bridges.zarr").load()
    assert set(got.data_vars) == set(want.data_vars)
    for v in want.data_vars:
        np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:g} s")


def test_sbatch_script_sizes_log_and_trap(slurm, dataset, tmp_path):
    """deploy/slurm/fluxscale.sbatch submitted from a directory that is not the repository,
    worker sizes from the environment: the log fills while the job runs (unbuffered), and
    cancelling the scheduler job cancels its worker jobs (no orphans)."""
    from fluxscale.bridges.integrals import compute_integrals

    compute_integrals(dataset)  # the bridge below starts at once
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**slurm.env, "FLUXSCALE_VENV": str(Path(sys.executable).parent.parent), "FLUXSCALE_DATA": str(tmp_path),
           "FLUXSCALE_JOBS": "1", "FLUXSCALE_CORES": "1", "FLUXSCALE_MEMORY": "2GiB", "FLUXSCALE_WALLTIME": "00:20:00",
           "FLUXSCALE_WAIT": "120", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["sbatch", "--parsable", "-c", "1", "--mem=2G", str(REPO / "deploy" / "slurm" / "fluxscale.sbatch"),
                          "bridge", str(dataset), "--set", "repeats=5000", "--no-progress"],
                         capture_output=True, text=True, cwd=elsewhere, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    sched = res.stdout.strip().split(";")[0]
    log = elsewhere / f"fluxscale-scheduler-{sched}.log"
    workers = lambda: [j for j in slurm.jobs() if j["name"] == f"fluxscale-worker-{sched}"]  # noqa: E731
    _wait(lambda: any(j["state"] == "RUNNING" for j in workers()), 90, "no running worker job")
    _wait(lambda: log.exists() and "cluster: fluxscale bridge" in log.read_text(), 60,
          "the scheduler job's log stayed without the launcher's lines")
    text = log.read_text()
    assert "Dask: 1 workers (1 threads) at tcp://127.0.0.1:" in text, text
    # the YAML's log directory, in the submit directory; the worker loaded the preload (the
    # YAML's local-directory expands even where TMPDIR is unset)
    _wait(lambda: any("Import preload module: fluxscale.cluster.preload" in f.read_text(errors="replace")
                      for f in (elsewhere / "fluxscale-logs").glob("*")), 30, "no worker log with the preload")
    slurm.run("scancel", sched)
    _wait(lambda: not slurm.jobs(), 30, f"jobs left after scancel {sched}: {slurm.jobs()}")


def _cancel_a_busy_job(client, slurm, after: float, timeout: float = 120) -> str | None:
    """Once a task has been running ``after`` seconds, scancel the job of its worker."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            time.sleep(after)
            info = client.scheduler_info(n_workers=-1)["workers"]
            busy = [w for w, keys in client.processing().items() if keys and w in info]
            if not busy:
                continue
            job = client.cluster.workers[info[busy[0]]["name"]].job_id
            slurm.run("scancel", str(job))
            return str(job)
        time.sleep(0.1)
    return None


def _same_members(a: Path, b: Path) -> None:
    import json

    import torch

    names = sorted(p.name for p in a.glob("*.pt"))
    assert names and names == sorted(p.name for p in b.glob("*.pt"))
    for n in names:
        x, y = torch.load(a / n, weights_only=False), torch.load(b / n, weights_only=False)
        assert x["state_dict"].keys() == y["state_dict"].keys()
        for k in x["state_dict"]:
            assert torch.equal(x["state_dict"][k], y["state_dict"][k]), (n, k)
        assert torch.equal(x["log_var"], y["log_var"]), n
        mx, my = json.loads(x["meta"])["metrics"]["best"], json.loads(y["meta"])["metrics"]["best"]
        mx.pop("seconds"), my.pop("seconds")
        assert json.dumps(mx) == json.dumps(my), n


def test_train_and_infer_survive_a_cancelled_worker_job(slurm, tiny_models, tmp_path, monkeypatch):
    """On two SLURM worker jobs, one job is cancelled while it trains, then one while it
    infers: both stages finish, a replacement job brings the cluster back to two workers,
    and the members and the NEE cube are bit-identical to an undisturbed run."""
    import xarray as xr
    from distributed import Client, LocalCluster

    from fluxscale.cluster import cluster_client
    from fluxscale.config import ClusterConfig, InferConfig, TrainConfig
    from fluxscale.infer.stage import infer
    from fluxscale.learn.ensemble import train_ensemble

    tcfg = TrainConfig(epochs=2, steps_per_epoch=3, ec_batch=2000, threads=1, folds=(0, 1))
    roots = {}
    for name in ("ref", "slurm"):
        roots[name] = tmp_path / name
        shutil.copytree(tiny_models, roots[name], ignore=shutil.ignore_patterns("models", "nee*"))
    # the undisturbed run: two workers of one thread, as on SLURM below
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="3GiB") as lc, \
            Client(lc) as c:
        train_ensemble(roots["ref"], tcfg, client=c, show_progress=False)
        infer(roots["ref"], InferConfig(), client=c, show_progress=False)
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.chdir(tmp_path)  # the worker jobs' output files
    cfg = ClusterConfig(kind="slurm", n_workers=2, threads_per_worker=1, wait_timeout_s=120,
                        jobqueue={"cores": 1, "memory": "3GiB", "walltime": "00:20:00"})
    killed = []
    with cluster_client(cfg) as client:
        for stage in (lambda: train_ensemble(roots["slurm"], tcfg, client=client, show_progress=False),
                      lambda: infer(roots["slurm"], InferConfig(), client=client, show_progress=False)):
            box: list = []
            t = threading.Thread(target=lambda: box.append(_cancel_a_busy_job(client, slurm, after=1.0)))
            t.start()
            t0 = time.perf_counter()
            stage()
            t.join()
            killed.append((box[0], round(time.perf_counter() - t0, 1)))
            assert box[0] is not None, "no task ever ran"
            client.wait_for_workers(2, timeout=60)  # the replacement job arrived
        print(f"train and infer on SLURM with a job cancelled in each (job, seconds): {killed}")
    _same_members(roots["slurm"] / "models", roots["ref"] / "models")
    got, want = xr.open_zarr(roots["slurm"] / "nee.zarr"), xr.open_zarr(roots["ref"] / "nee.zarr")
    for v in ("NEE", "NEE_std", "NEE_monthly", "NEE_member_monthly"):
        np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)
