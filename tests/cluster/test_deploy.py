"""Deploy: the scheduler script (``deploy/launch.py`` = ``fluxscale cluster``) against real
``dask scheduler`` / ``dask worker`` processes on 127.0.0.1, plain and TLS; failures that
must be fast and clear; the generated SLURM/PBS job scripts, the compose file and the
Kubernetes manifests checked as text and parsed YAML (no Docker or Kubernetes here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAUNCH = [sys.executable, str(REPO / "deploy" / "launch.py")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A real ``dask scheduler`` and ``dask worker`` on 127.0.0.1 (optionally TLS)."""

    def __init__(self, tmp: Path, workers: int = 1, nthreads: int = 2, tls: dict | None = None):
        self.file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.log = tmp / "dask.log"
        tls_args = [] if not tls else ["--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls["cert"]),
                                       "--tls-key", str(tls["key"])]
        out = open(self.log, "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(self.file), *(["--protocol", "tls"] if tls else []), *tls_args],
            stdout=out, stderr=subprocess.STDOUT))
        t0 = time.time()
        while not self.file.exists():
            if time.time() - t0 > 60:
                raise RuntimeError(f"the scheduler did not start: {self.log.read_text()}")
            time.sleep(0.2)
        time.sleep(0.3)  # the file is written before it is complete on some file systems
        self.address = json.loads(self.file.read_text())["address"]
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", "--scheduler-file", str(self.file), "--nthreads", str(nthreads),
                 "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--no-dashboard",
                 "--preload", "fluxscale.cluster.preload", "--memory-limit", "4GiB", *tls_args],
                stdout=out, stderr=subprocess.STDOUT))

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def dataset(tiny_twin, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_twin, root)
    return root


def _launch(*args, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _no_network_tags(html: str) -> bool:
    """No <script src> / <link href> that would load from the network (bokeh's bundle
    mentions CDN URLs in code it only runs on demand)."""
    return not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", html)


def _integrals_here(tiny_twin, tmp_path) -> xr.Dataset:
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.dataset.stores import open_store, store_path

    ref = tmp_path / "ref"
    shutil.copytree(tiny_twin, ref)
    compute_integrals(ref)
    return open_store(store_path(ref, "integrals"), "integrals").load()


def test_stage_on_real_scheduler_and_worker(dataset, tiny_twin, tmp_path):
    from distributed import Client

    from fluxscale.dataset.stores import open_store, store_path

    procs = DaskProcesses(tmp_path, workers=1, nthreads=2)
    try:
        assert procs.address.startswith("tcp://127.0.0.1:")
        report = tmp_path / "perf.html"
        res = _launch("--scheduler-file", str(procs.file), "--wait-workers", "1", "--performance-report",
                      str(report), "integrals", str(dataset))
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"at {procs.address}" in res.stdout and "dashboard http://" in res.stdout
        assert "1 workers (2 threads)" in res.stdout
        # the preload gave torch the worker's threads
        with Client(procs.address, timeout=10) as c:
            threads = c.run(lambda: (__import__("torch").get_num_threads(), os.environ.get("OMP_NUM_THREADS")))
        assert list(threads.values()) == [(2, "2")]
    finally:
        procs.close()
    got = open_store(store_path(dataset, "integrals"), "integrals").load()
    want = _integrals_here(tiny_twin, tmp_path)  # the same stage in this process, threads
    for v in ("inversions", "prior", "truth", "land_area"):
        np.testing.assert_allclose(got[v].values, want[v].values, rtol=1e-12, err_msg=v)
    html = report.read_text()
    assert "Dask Performance Report" in html and "Task Stream" in html
    assert _no_network_tags(html)


def test_tls_cluster_and_refused_clients(dataset, tmp_path):
    from distributed import Client
    from distributed.security import Security

    from fluxscale.cluster.security import make_test_certificates
    from fluxscale.dataset.stores import open_store, store_path

    certs = make_test_certificates(tmp_path / "certs")
    other = make_test_certificates(tmp_path / "other")  # a different CA
    assert oct(certs["key"].stat().st_mode & 0o777) == "0o600"
    procs = DaskProcesses(tmp_path, workers=1, nthreads=1, tls=certs)
    try:
        assert procs.address.startswith("tls://127.0.0.1:")
        res = _launch("--scheduler", procs.address, "--tls-ca-file", str(certs["ca"]), "--tls-cert",
                      str(certs["cert"]), "--tls-key", str(certs["key"]), "--performance-report", "",
                      "integrals", str(dataset))
        assert res.returncode == 0, res.stdout + res.stderr
        assert open_store(store_path(dataset, "integrals"), "integrals").sizes["region"] == 19
        # a client whose certificate another CA signed is refused, and so is plain TCP
        wrong = Security(tls_ca_file=str(other["ca"]), tls_client_cert=str(other["cert"]),
                         tls_client_key=str(other["key"]), require_encryption=True)
        with pytest.raises((OSError, TimeoutError)):
            Client(procs.address, security=wrong, timeout=3)
        with pytest.raises((OSError, TimeoutError)):
            Client(procs.address.replace("tls://", "tcp://"), timeout=3)
        res = _launch("--scheduler", procs.address, "--connect-timeout", "3", "--tls-ca-file", str(other["ca"]),
                      "--tls-cert", str(other["cert"]), "--tls-key", str(other["key"]), "integrals", str(dataset))
        assert res.returncode == 2 and "cannot reach the Dask scheduler" in res.stderr, res.stderr
    finally:
        procs.close()


def test_unreachable_and_workerless_fail_fast(dataset, tmp_path):
    port = _free_port()
    t0 = time.perf_counter()
    res = _launch("--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "3", "integrals", str(dataset))
    assert res.returncode == 2 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in res.stderr
    assert time.perf_counter() - t0 < 30
    assert not (dataset / "integrals.zarr").exists()
    res = _launch("--scheduler-file", str(tmp_path / "nope.json"), "integrals", str(dataset))
    assert res.returncode == 2 and "nope.json: scheduler file not found" in res.stderr
    procs = DaskProcesses(tmp_path, workers=0)
    try:
        res = _launch("--scheduler", procs.address, "--wait-workers", "2", "--wait-timeout", "3", "integrals",
                      str(dataset))
        assert res.returncode == 2 and "got 0 of 2 workers within 3 s" in res.stderr, res.stderr
        assert not (dataset / "integrals.zarr").exists()
    finally:
        procs.close()
    res = _launch("nonsense", str(dataset))
    assert res.returncode == 2 and "unknown stage 'nonsense'" in res.stderr


def test_local_cluster_binds_localhost_with_preload_and_gpu_resource():
    from fluxscale.cluster import cluster_client, describe_client

    cfg = ClusterConfig(n_workers=1, threads_per_worker=2, gpu=True, memory_limit="2GiB")
    with cluster_client(cfg) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        (w,) = client.scheduler_info()["workers"].values()
        assert w["host"] == "127.0.0.1" and w["resources"] == {"GPU": 1}
        assert list(client.run(lambda: __import__("torch").get_num_threads()).values()) == [2]
        assert "1 GPUs" in describe_client(client)


def _external_ipv4() -> str | None:
    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


def test_default_local_cluster_listens_on_loopback_only():
    """Every listening socket of the default LocalCluster (scheduler, dashboard, nannies,
    workers) is on 127.0.0.1 (psutil's table = ``ss -ltnp``), and the dashboard does not
    answer on the machine's external address."""
    import urllib.request

    from fluxscale.cluster import cluster_client

    from ..netcheck import dask_listeners, public

    with cluster_client(ClusterConfig(n_workers=2, memory_limit="2GiB")) as client:
        listeners = dask_listeners()  # this process and its children
        dash = client.dashboard_link
        port = client.scheduler_info()["services"]["dashboard"]
        assert "127.0.0.1" in dash
        assert urllib.request.urlopen(dash, timeout=10).status == 200
        ext = _external_ipv4()
        if ext:
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{ext}:{port}/status", timeout=5)
    # scheduler + dashboard + (nanny + worker) x 2, all on loopback
    assert len(listeners) >= 6, listeners
    assert not public(listeners), public(listeners)


def test_with_host():
    from fluxscale.cluster import with_host

    assert with_host(":0", "127.0.0.1") == "127.0.0.1:0"
    assert with_host("8787", "10.0.0.5") == "10.0.0.5:8787"
    assert with_host("0.0.0.0:8787", "127.0.0.1") == "0.0.0.0:8787"  # said explicitly: kept
    assert with_host(":0", "::1") == "[::1]:0"
    assert with_host(None, "127.0.0.1") is None


def test_cluster_config_errors():
    with pytest.raises(ConfigError, match="TLS needs"):
        ClusterConfig(tls_ca_file="ca.pem")
    with pytest.raises(ConfigError, match="ssh_hosts"):
        ClusterConfig(kind="ssh")
    with pytest.raises(ConfigError, match="kind='yarn'"):
        ClusterConfig(kind="yarn")
    assert ClusterConfig(scheduler_file="s.json").resolved_kind == "existing"


# --- generated job scripts and manifests ------------------------------------------------------

def _dry(*args) -> str:
    from typer.testing import CliRunner

    from fluxscale.run.cli import app

    res = CliRunner().invoke(app, ["cluster", *args], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    return res.output


def test_slurm_and_pbs_job_scripts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dask-jobqueue makes the config's log-directory (fluxscale-logs) in the cwd
    jq = REPO / "deploy" / "slurm" / "jobqueue.yaml"
    conf = yaml.safe_load(jq.read_text())["jobqueue"]
    assert conf["slurm"]["cores"] == 8 and conf["slurm"]["processes"] == 1
    # the YAML, with the command line's keywords winning
    script = _dry("--kind", "slurm", "--jobqueue-config", str(jq), "--job", "cores=4", "--job", "account=proj1",
                  "--gpu", "--dry-run", "run")
    lines = script.splitlines()
    assert "#SBATCH --cpus-per-task=4" in lines and "#SBATCH -A proj1" in lines
    assert "#SBATCH --mem=32G" in lines and "#SBATCH -t 02:00:00" in lines  # from the YAML
    worker = next(ln for ln in lines if "dask_worker" in ln)
    assert "--nthreads 4" in worker and "--preload fluxscale.cluster.preload" in worker and "--resources GPU=1" in worker
    # loopback unless an interface is named, no worker dashboard, and no scheduler started for
    # a dry run (the address has no port yet)
    assert "tcp://127.0.0.1:<port>" in worker and "--host 127.0.0.1" in worker
    assert "--no-dashboard" in worker and "--dashboard-address 127.0.0.1:0" in worker
    lo = _dry("--kind", "slurm", "--jobqueue-config", str(jq), "--job", "interface=lo", "--dry-run", "run")
    worker = next(ln for ln in lo.splitlines() if "dask_worker" in ln)
    assert "--interface lo" in worker and "--host" not in worker and "tcp://127.0.0.1:<port>" in worker
    pbs = _dry("--kind", "pbs", "--jobqueue-config", str(jq), "--dry-run", "run")
    assert "#PBS -l select=1:ncpus=8:mem=32GB" in pbs and "#PBS -l walltime=02:00:00" in pbs
    assert "--preload fluxscale.cluster.preload" in pbs and "GPU=1" not in pbs
    # the same from the run config's [cluster] section (passed on to the stage as well)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[cluster]\nkind = "slurm"\njobqueue_config = "{jq}"\nn_workers = 3\n'
                   '[cluster.jobqueue]\ncores = 2\nqueue = "short"\n')
    script = _dry("-c", str(cfg), "--dry-run", "run")
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH -p short" in script
    ssh = yaml.safe_load(_dry("--kind", "ssh", "--ssh-host", "head", "--ssh-host", "node1", "--workers", "3",
                              "--dry-run", "run"))["SSHCluster"]
    assert ssh["hosts"] == ["head", "node1"] and ssh["worker_options"]["n_workers"] == 3
    assert ssh["worker_options"]["preload"] == ["fluxscale.cluster.preload"]
    # the example scheduler job runs the scheduler script with that YAML
    sbatch = (REPO / "deploy" / "slurm" / "fluxscale.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(REPO / "deploy" / "slurm" / "fluxscale.sbatch")]).returncode == 0
    assert 'fluxscale cluster "${ARGS[@]}"' in sbatch and '--kind slurm --jobqueue-config "$JOBQUEUE"' in sbatch
    assert 'JOBQUEUE="${FLUXSCALE_JOBQUEUE:-$HERE/jobqueue.yaml}"' in sbatch  # beside the script, from any directory
    assert "export PYTHONUNBUFFERED=1" in sbatch and "trap cancel_workers EXIT" in sbatch


def test_compose_and_dockerfile():
    compose = yaml.safe_load((REPO / "deploy" / "docker" / "compose.yaml").read_text())
    svc = compose["services"]
    assert set(svc) == {"scheduler", "worker", "job"}
    sched = svc["scheduler"]["command"]
    assert sched[:2] == ["dask", "scheduler"] and sched[sched.index("--port") + 1] == "8786"
    assert all(p.startswith("127.0.0.1:") for p in svc["scheduler"]["ports"])  # dashboard on localhost only
    worker = svc["worker"]["command"]
    assert worker[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert worker[worker.index("--preload") + 1] == "fluxscale.cluster.preload"
    job = svc["job"]["command"]
    assert job[1].endswith("deploy/launch.py") and job[job.index("--scheduler") + 1] == "tcp://scheduler:8786"
    assert job[job.index("run") + 1:] == ["--out", "/data/run"]
    for s in svc.values():
        assert s["build"]["dockerfile"] == "deploy/docker/Dockerfile" and "/data" in s["volumes"][0]
        assert (REPO / "deploy" / "docker" / s["build"]["context"] / s["build"]["dockerfile"]).resolve() == \
            (REPO / "deploy" / "docker" / "Dockerfile").resolve()
    docker = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert '"torch>=2.4,<2.14"' in docker and "download.pytorch.org/whl/cpu" in docker
    assert re.search(r"^USER fluxscale$", docker, re.M)  # not root


def test_kubernetes_manifests_are_the_generated_ones():
    from dask_kubernetes.operator import make_cluster_spec

    head = (REPO / "deploy" / "k8s" / "daskcluster.yaml").read_text().splitlines()[0]
    cmd = head.removeprefix("# Generated by: fluxscale cluster ").split()
    out = _dry(*cmd)
    gen = list(yaml.safe_load_all(out))
    shipped = [yaml.safe_load((REPO / "deploy" / "k8s" / f).read_text()) for f in ("daskcluster.yaml", "daskjob.yaml")]
    assert gen == shipped, "deploy/k8s is stale: regenerate it with the command in its header"
    cluster, job = shipped
    # the operator's own spec, with our worker arguments, resources and volume on top
    ref = make_cluster_spec(name="fluxscale", image="fluxscale:0.1", n_workers=2)
    assert cluster["apiVersion"] == ref["apiVersion"] and cluster["kind"] == "DaskCluster"
    w, rw = cluster["spec"]["worker"], ref["spec"]["worker"]
    assert w["replicas"] == 2
    args = w["spec"]["containers"][0]["args"]
    assert args[:len(rw["spec"]["containers"][0]["args"])] == rw["spec"]["containers"][0]["args"]
    assert args[args.index("--nthreads") + 1] == "2" and args[args.index("--preload") + 1] == "fluxscale.cluster.preload"
    assert w["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "6Gi"}
    assert w["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
        yaml.safe_load((REPO / "deploy" / "k8s" / "pvc.yaml").read_text())["metadata"]["name"]
    assert cluster["spec"]["scheduler"]["service"] == ref["spec"]["scheduler"]["service"]
    assert job["kind"] == "DaskJob" and job["spec"]["cluster"]["spec"] == cluster["spec"]
    jargs = job["spec"]["job"]["spec"]["containers"][0]["args"]
    assert jargs[:4] == ["fluxscale", "cluster", "--scheduler", "$(DASK_SCHEDULER_ADDRESS)"]
    assert jargs[jargs.index("run"):] == ["run", "--out", "/data/run"]
    # GPU workers: one GPU per worker pod, and the GPU resource for the tasks
    gpu = list(yaml.safe_load_all(_dry("--kind", "kubernetes", "--gpu", "--dry-run", "train", "/data/run")))[0]
    c = gpu["spec"]["worker"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and "GPU=1" in c["args"]


def test_no_secrets_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert not [f for f in tracked if f.endswith((".pem", ".key", ".crt"))]
    key = re.compile("-----BEGIN [A-Z ]*" + "PRIVATE KEY-----")
    for f in tracked:
        p = REPO / f
        if p.is_file() and p.stat().st_size < 2**20:
            assert not key.search(p.read_text(errors="ignore")), f"{f} holds a private key"
