"""The launcher's ``--kind ssh`` against a real sshd on 127.0.0.1 that this module starts
itself (deploy/ssh/local_sshd.py: throwaway host and client keys, a known_hosts entry; as
root, installing openssh-server when missing): a stage end to end with every listener on
loopback, and the connection failures as one line. Deselect with ``-m 'not sshd'``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ..netcheck import public, run_watching

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, str(REPO / "deploy" / "launch.py")]


def _local_sshd():
    spec = importlib.util.spec_from_file_location("fluxscale_local_sshd", REPO / "deploy" / "ssh" / "local_sshd.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the SSH tests: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def sshd():
    """A running sshd on 127.0.0.1 (skipped with the reason where it cannot be had; on CI a
    failure)."""
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        _unavailable("--kind ssh needs asyncssh: pip install 'fluxscale[ssh]'")
    mod = _local_sshd()
    try:
        d = mod.LocalSshd().start()
    except (mod.SshdUnavailable, subprocess.CalledProcessError) as e:
        _unavailable(str(e))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def dataset(tiny_twin, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_twin, root)
    return root


def _launch(*args, timeout=240, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_integrals_over_ssh_equal_in_process_and_listen_on_loopback(sshd, dataset, tmp_path):
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.dataset.stores import open_store, store_path

    t0 = time.perf_counter()
    # the launcher's processes and sshd's (the sessions run the remote scheduler and workers)
    res, seen = run_watching([*LAUNCH, "--kind", "ssh", "--ssh-host", "127.0.0.1", "--ssh-host", "127.0.0.1",
                              *sshd.options(), "--workers", "2", "--performance-report", "", "integrals",
                              str(dataset)], env={**os.environ, "COLUMNS": "200"}, timeout=240,
                             roots=(sshd.proc.pid,))
    took = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 workers (2 threads) at tcp://127.0.0.1:" in res.stdout and "dashboard http://127.0.0.1:" in res.stdout
    assert "distributed." not in res.stderr, res.stderr  # the remote processes' log lines are not echoed
    print(f"integrals over SSH, 2 workers: {took:.1f} s (sshd up in {sshd.start_s:.1f} s)")
    ref = tmp_path / "ref"
    shutil.copytree(dataset, ref, ignore=shutil.ignore_patterns("integrals.zarr"))
    compute_integrals(ref)
    got = open_store(store_path(dataset, "integrals"), "integrals").load()
    want = open_store(store_path(ref, "integrals"), "integrals").load()
    for v in ("inversions", "prior", "truth", "land_area"):
        np.testing.assert_allclose(got[v].values, want[v].values, rtol=1e-12, err_msg=v)
    # the scheduler (dask_spec), its dashboard, and per worker a nanny and a worker process
    dask = [x for x in seen.values() if "dask_spec" in x[3] or "multiprocessing" in x[3]]
    assert len(dask) >= 6, seen
    assert not public(seen.values()), public(seen.values())


def test_ssh_failures_are_one_line(sshd, dataset, tmp_path):
    base = ["--kind", "ssh", "--ssh-host", "127.0.0.1", "--ssh-host", "127.0.0.1", "--ssh-port", str(sshd.port),
            "--ssh-user", sshd.user, "--workers", "1", "--performance-report", ""]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cases = {
        "untrusted host": (["--ssh-key", str(sshd.client_key), "--ssh-known-hosts", str(empty)],
                           "Host key is not trusted for host 127.0.0.1; add its key"),
        "missing key": (["--ssh-key", str(tmp_path / "nokey"), "--ssh-known-hosts", str(sshd.known_hosts)],
                        f"cluster config ssh_key_file: {tmp_path / 'nokey'} not found"),
        "wrong key": (["--ssh-key", str(sshd.dir / "host_ed25519"), "--ssh-known-hosts", str(sshd.known_hosts)],
                      f"Permission denied for user {sshd.user} on host 127.0.0.1"),
    }
    # the same as a user with strict warning settings (asyncssh imports cryptography's
    # deprecated DSA: fluxscale.warnfilter keeps that off the terminal, issue 35)
    cases["untrusted host, -W error"] = (*cases["untrusted host"], {"PYTHONWARNINGS": "error::DeprecationWarning"})
    for name, (opts, want, *env) in cases.items():
        t0 = time.perf_counter()
        res = _launch(*base, *opts, "integrals", str(dataset), timeout=120, env=env[0] if env else None)
        err = res.stderr.strip()
        assert res.returncode == 2, (name, res.stdout + res.stderr)
        assert len(err.splitlines()) == 1 and want in err and "Traceback" not in err, (name, err)
        assert time.perf_counter() - t0 < 30, name
    assert not (dataset / "integrals.zarr").exists()


def test_bridge_train_infer_over_ssh_equal_an_undisturbed_local_run(sshd, tiny_models, tmp_path):
    """The other stages end to end on the SSH cluster (2 workers of one thread, the remote
    scheduler and workers on 127.0.0.1) against a LocalCluster of the same shape: the
    bridges agree to 1e-8 (measured: up to 1.3e-10 relative, on weights near the Lasso's
    tolerance; its BLAS sums round in another order on the SSH workers), and from the same
    bridges the members and the NEE cube are bit-identical."""
    import xarray as xr
    from distributed import Client, LocalCluster

    from fluxscale.bridges.build import build_bridges
    from fluxscale.cluster import cluster_client
    from fluxscale.config import BridgeConfig, ClusterConfig, InferConfig, TrainConfig
    from fluxscale.infer.stage import infer
    from fluxscale.learn.ensemble import train_ensemble

    from .test_slurm import _same_members

    bcfg = BridgeConfig(repeats=40)
    tcfg = TrainConfig(epochs=2, steps_per_epoch=3, ec_batch=2000, threads=1, folds=(0, 1))
    roots = {}
    for name in ("ref", "ssh"):
        roots[name] = tmp_path / name
        shutil.copytree(tiny_models, roots[name], ignore=shutil.ignore_patterns("models", "nee*", "bridges.zarr", "dtw"))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="3GiB") as lc, \
            Client(lc) as c:
        build_bridges(roots["ref"], bcfg, client=c, show_progress=False)
        train_ensemble(roots["ref"], tcfg, client=c, show_progress=False)
        infer(roots["ref"], InferConfig(), client=c, show_progress=False)
    cfg = ClusterConfig(kind="ssh", ssh_hosts=("127.0.0.1", "127.0.0.1"), ssh_port=sshd.port, ssh_user=sshd.user,
                        ssh_key_file=str(sshd.client_key), ssh_known_hosts=str(sshd.known_hosts), n_workers=2,
                        threads_per_worker=1, memory_limit="3GiB", wait_timeout_s=120)
    t0 = time.perf_counter()
    with cluster_client(cfg) as client:
        build_bridges(roots["ssh"], bcfg, client=client, show_progress=False)
        t1 = time.perf_counter()
        got, want = (xr.open_zarr(roots[n] / "bridges.zarr").load() for n in ("ssh", "ref"))
        for v in want.data_vars:  # the Lasso's BLAS sums round in another order on the SSH workers
            if want[v].dtype.kind == "f":
                np.testing.assert_allclose(got[v].values, want[v].values, rtol=1e-8, atol=1e-13, err_msg=v)
            else:
                np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)
        shutil.rmtree(roots["ssh"] / "bridges.zarr")  # the same inputs for training: the weights then agree bit for bit
        shutil.copytree(roots["ref"] / "bridges.zarr", roots["ssh"] / "bridges.zarr")
        train_ensemble(roots["ssh"], tcfg, client=client, show_progress=False)
        t2 = time.perf_counter()
        infer(roots["ssh"], InferConfig(), client=client, show_progress=False)
        t3 = time.perf_counter()
    print(f"over SSH, 2 workers: bridge (40 repeats) {t1 - t0:.1f} s, train (4 members, 2 epochs) "
          f"{t2 - t1:.1f} s, infer {t3 - t2:.1f} s")
    _same_members(roots["ssh"] / "models", roots["ref"] / "models")
    got, want = xr.open_zarr(roots["ssh"] / "nee.zarr"), xr.open_zarr(roots["ref"] / "nee.zarr")
    for v in ("NEE", "NEE_std", "NEE_monthly", "NEE_member_monthly"):
        np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)
