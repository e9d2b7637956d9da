"""Getting a Dask client for a run (orchestration layer: no maths here).

:func:`cluster_client` builds the cluster that a :class:`~fluxscale.config.ClusterConfig`
names (``local``, ``existing``, ``slurm``, ``pbs``, ``kubernetes``, ``ssh``), connects a
client, waits for the workers and closes everything on exit. Every command that takes
``--scheduler`` goes through it, and so does ``fluxscale cluster`` (the scheduler script,
``deploy/launch.py``), which adds the performance report and runs any stage on the client.

The launchers are the field's own: ``distributed.LocalCluster`` and ``SSHCluster``,
dask-jobqueue's ``SLURMCluster``/``PBSCluster`` and dask-kubernetes' operator
``KubeCluster``. What is ours is only the mapping from the config, the worker preload
(:mod:`fluxscale.cluster.preload`), the ``GPU`` resource and TLS (:mod:`fluxscale.cluster.security`), and:

* loopback by default: the scheduler, its dashboard (a free port), the workers and their
  HTTP servers bind ``[cluster] host`` (127.0.0.1) unless the config names another host or,
  for SLURM/PBS, an ``interface`` (Dask's own defaults are every interface);
* jobs that fail fast and say why: a SLURM job larger than any node of its partition is
  refused before submission, a refused submission stops the launcher with the submit
  command's message, a job SLURM can never start with its id and pending reason;
* elastic jobqueue clusters: a worker job that ends under a stage is resubmitted
  (:class:`JobKeeper`); with :func:`fluxscale.parallel.run_tasks` holding shared inputs
  as recomputable tasks, no stage depends on data that dies with a worker.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError, FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["cluster_client", "optional_client", "describe_client", "security", "worker_args",
           "jobqueue_cluster", "jobqueue_job_script", "with_host", "kube_cluster_spec", "kube_job_spec",
           "ssh_cluster_kwargs", "ssh_connect_options", "wait_for_workers", "wait_for_jobs", "slurm_job_states",
           "JobKeeper", "strip_network_references"]

PRELOAD = "fluxscale.cluster.preload"
"""The worker preload module: torch and numba threads = the worker's threads."""


def security(cfg: ClusterConfig):
    """A ``distributed.Security`` from the config's TLS files (None without TLS): the same
    certificate for scheduler, workers and client, encryption required."""
    if not cfg.tls:
        return None
    from distributed.security import Security

    for what in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        p = getattr(cfg, what)
        if not Path(p).is_file():
            raise ConfigError(f"cluster config {what}: {p} not found")
    return Security(tls_ca_file=cfg.tls_ca_file, tls_client_cert=cfg.tls_cert_file,
                    tls_client_key=cfg.tls_key_file, tls_scheduler_cert=cfg.tls_cert_file,
                    tls_scheduler_key=cfg.tls_key_file, tls_worker_cert=cfg.tls_cert_file,
                    tls_worker_key=cfg.tls_key_file, require_encryption=True)


def tls_dask_config(cfg: ClusterConfig) -> dict[str, Any]:
    """The ``dask.config`` keys that make every ``Client``/``Security()`` of this process
    use the config's certificates (empty without TLS)."""
    if not cfg.tls:
        return {}
    return {"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": cfg.tls_ca_file,
            "distributed.comm.tls.client.cert": cfg.tls_cert_file, "distributed.comm.tls.client.key": cfg.tls_key_file,
            "distributed.comm.tls.scheduler.cert": cfg.tls_cert_file,
            "distributed.comm.tls.scheduler.key": cfg.tls_key_file,
            "distributed.comm.tls.worker.cert": cfg.tls_cert_file, "distributed.comm.tls.worker.key": cfg.tls_key_file}


def worker_args(cfg: ClusterConfig) -> list[str]:
    """Extra ``dask worker`` arguments of a config: the preload and the GPU resource."""
    out = ["--preload", PRELOAD] if cfg.preload else []
    return out + (["--resources", "GPU=1"] if cfg.gpu else [])


def with_host(address: str | None, host: str) -> str | None:
    """A dashboard address bound to ``host`` when it names only a port.

    Dask binds a dashboard address without a host (``":0"``, ``":8787"``, ``"8787"``) to
    every interface (0.0.0.0); fluxscale binds it to the interface the scheduler listens
    on instead. An address with a host is kept; None (no dashboard) stays None."""
    if address is None:
        return None
    a = str(address).strip()
    if a.startswith(":"):
        port = a[1:]
    elif a.isdigit():
        port = a
    else:
        return a
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{h}:{port or 0}"


def wait_for_workers(client: "distributed.Client", n: int, timeout: float, where: str) -> None:
    """Wait until ``n`` workers are connected; a clear error after ``timeout`` seconds."""
    if n <= 0:
        return
    try:
        client.wait_for_workers(n, timeout=timeout)
    except (TimeoutError, OSError):
        got = len(client.scheduler_info(n_workers=-1)["workers"])
        raise FluxscaleError(f"{where}: got {got} of {n} workers within {timeout:g} s; check that the workers "
                             f"started (jobs queued? image pulled? firewall?) or lower wait_workers") from None


def _expected_workers(cfg: ClusterConfig, kind: str, cluster=None) -> int:
    if cfg.wait_workers is not None:
        return cfg.wait_workers
    if kind == "existing":
        return 1
    if kind == "ssh":
        return cfg.n_workers * max(1, len(cfg.ssh_hosts) - 1)
    if kind in ("slurm", "pbs"):  # each job runs `processes` workers
        return cfg.n_workers * int(getattr(getattr(cluster, "_dummy_job", None), "worker_processes", 1))
    return cfg.n_workers


# --- the launchers ----------------------------------------------------------------------------

@contextlib.contextmanager
def _merged_dask_config(extra: dict) -> Iterator[None]:
    """Merge a nested dict (a jobqueue YAML) into ``dask.config`` for the block."""
    import dask

    saved = copy.deepcopy(dask.config.config)
    dask.config.update(dask.config.config, copy.deepcopy(extra), priority="new")
    try:
        yield
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)


def _jobqueue_yaml(cfg: ClusterConfig) -> dict:
    if not cfg.jobqueue_config:
        return {}
    import yaml

    p = Path(cfg.jobqueue_config)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"cluster config jobqueue_config: {p} not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobqueue", {}), dict):
        raise ConfigError(f"{p}: expected a mapping with a 'jobqueue:' section (dask-jobqueue's format)")
    return data


def _interface_ip(interface: str) -> str:
    """The IPv4 address of a network interface (``ib0``), as Dask resolves it."""
    from distributed.utils import get_ip_interface

    try:
        return get_ip_interface(interface)
    except ValueError as e:
        raise ConfigError(f"cluster config interface={interface!r}: {e}") from None


def _jobqueue_kwargs(cfg: ClusterConfig, kind: str) -> dict[str, Any]:
    """The jobqueue cluster's keyword arguments (inside :func:`_merged_dask_config`).

    On top of the config's: the preload and GPU resource; workers without their own
    dashboard (``--no-dashboard``: nothing of ours needs it); with no ``interface`` (YAML or
    keyword) and no scheduler ``host``, the scheduler and the workers bind ``cfg.host``
    (127.0.0.1: one node; name the network with ``interface``, e.g. ``ib0``, for several);
    the scheduler's dashboard on a free port of the scheduler's own address (dask-jobqueue's
    default is every interface, port 8787); TLS when configured."""
    import dask

    kwargs = dict(cfg.jobqueue)
    from_yaml = dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or []
    extra = list(kwargs.get("worker_extra_args", from_yaml)) + worker_args(cfg)
    interface = kwargs.get("interface") or dask.config.get(f"jobqueue.{kind}.interface", None)
    sopts = dict(kwargs.get("scheduler_options") or dask.config.get(f"jobqueue.{kind}.scheduler-options", None) or {})
    if not interface and not sopts.get("host") and not sopts.get("interface"):
        sopts["host"] = cfg.host
        if not {"--host", "--listen-address", "--interface"} & set(extra):
            extra += ["--host", cfg.host]
        if "--dashboard-address" not in extra:  # a worker serves /health and /metrics even without a dashboard
            extra += ["--dashboard-address", with_host(":0", cfg.host)]
    if "dashboard_address" not in sopts:
        bind = sopts.get("host") or _interface_ip(sopts.get("interface") or interface)
        sopts["dashboard_address"] = with_host(cfg.dashboard_address, bind)
        sopts.setdefault("dashboard", cfg.dashboard_address is not None)
    if not {"--dashboard", "--no-dashboard"} & set(extra):
        extra.append("--no-dashboard")
    kwargs["worker_extra_args"] = extra
    kwargs["scheduler_options"] = sopts
    sec = security(cfg)
    if sec is not None:
        kwargs.setdefault("security", sec)
        kwargs.setdefault("protocol", "tls://")
    return kwargs


def _jobqueue_class(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise FluxscaleError(f"cluster kind {kind!r} needs dask-jobqueue: pip install 'fluxscale[jobqueue]'") from None
    return {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]


@contextlib.contextmanager
def jobqueue_cluster(cfg: ClusterConfig, kind: str | None = None, job_cls=None):
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` (not yet scaled): the YAML merged
    into ``dask.config``, then the config's ``jobqueue`` keyword arguments on top, plus what
    :func:`_jobqueue_kwargs` adds (preload, GPU, loopback binding, dashboard)."""
    kind = kind or cfg.resolved_kind
    cls = _jobqueue_class(kind)
    with _merged_dask_config(_jobqueue_yaml(cfg)):
        kwargs = _jobqueue_kwargs(cfg, kind)
        if job_cls is not None:
            kwargs["job_cls"] = job_cls
        try:
            cluster = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} cluster settings: {e}") from None
        with cluster:
            yield cluster


_CLUSTER_ONLY_KEYS = frozenset({"n_workers", "job_cls", "loop", "security", "shared_temp_directory", "silence_logs",
                                "name", "asynchronous", "dashboard_address", "host", "scheduler_options",
                                "scheduler_cls", "interface", "protocol", "config_name"})


def jobqueue_job_script(cfg: ClusterConfig, kind: str | None = None) -> str:
    """The worker job script that :func:`jobqueue_cluster` would submit, built without
    starting a scheduler (``--dry-run``): the scheduler address in it is the host the
    scheduler would bind, with ``<port>`` for the port it would get."""
    kind = kind or cfg.resolved_kind
    cls = _jobqueue_class(kind)
    with _merged_dask_config(_jobqueue_yaml(cfg)):
        import dask

        kwargs = _jobqueue_kwargs(cfg, kind)
        sopts = kwargs["scheduler_options"]
        interface = kwargs.get("interface") or dask.config.get(f"jobqueue.{kind}.interface", None)
        host = sopts.get("host") or _interface_ip(sopts.get("interface") or interface)
        protocol = kwargs.get("protocol") or "tcp://"
        job_kwargs = {k: v for k, v in kwargs.items() if k not in _CLUSTER_ONLY_KEYS}
        job_kwargs.update(config_name=kwargs.get("config_name") or cls.job_cls.default_config_name(),
                          interface=interface, protocol=kwargs.get("protocol"), security=kwargs.get("security"))
        try:
            job = cls.job_cls(f"{protocol}{host}:<port>", name="dummy-name", **job_kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} cluster settings: {e}") from None
        return job.job_script()


def _submit_message(e: BaseException) -> str:
    """The submit command's own words from dask-jobqueue's error (its stderr lines)."""
    text = str(e)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or type(e).__name__


def _recording_job_cls(base, failures: list[str]):
    """A subclass of a dask-jobqueue job class whose refused submissions are recorded in
    ``failures`` (the launcher then stops at once, quoting them) instead of surfacing as
    tracebacks in the event loop while the launcher waits for workers in vain."""
    from distributed.core import Status

    class RecordingJob(base):
        async def start(self):
            try:
                await super().start()
            except Exception as e:  # noqa: BLE001  (RuntimeError from sbatch/qsub, ValueError: no job id)
                failures.append(_submit_message(e))
                self.job_id = None
                self.status = Status.running  # SpecCluster asserts it; the launcher stops right after

    RecordingJob.__name__ = RecordingJob.__qualname__ = base.__name__
    return RecordingJob


def _mb(text: str) -> float:
    """A SLURM memory size (``32G``, ``2048M``, ``2048``: MB) in MB."""
    num, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text.strip().upper()).groups()
    return float(num) * {"K": 2**-10, "": 1, "M": 1, "G": 2**10, "T": 2**20, "P": 2**30}[unit]


def _check_job_fits(cluster) -> None:
    """Refuse, before anything is submitted, a SLURM worker job larger than every node of
    its partition (``sinfo``: CPUs and memory per node), with the numbers side by side."""
    header = cluster.job_header
    cpus = re.search(r"^#SBATCH --cpus-per-task=(\d+)", header, re.M)
    mem = re.search(r"^#SBATCH --mem=(\S+)", header, re.M)
    part = re.search(r"^#SBATCH -p (\S+)", header, re.M)
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return  # sbatch will say
    rows = [ln.split("|") for ln in res.stdout.splitlines() if ln.count("|") == 2]
    default = next((r[0].rstrip("*") for r in rows if r[0].endswith("*")), None)
    name = part.group(1) if part else default
    nodes = [(int(c), _mb(m)) for p_, c, m in rows if p_.rstrip("*") == name and c.isdigit()
             and re.fullmatch(r"\d+(\.\d+)?[KMGTP]?", m.strip().upper())]
    if res.returncode != 0 or not nodes:
        return
    want_c = int(cpus.group(1)) if cpus else 1
    want_m = _mb(mem.group(1)) if mem else 0.0
    if not any(want_c <= c and want_m <= m for c, m in nodes):
        big_c, big_m = max(c for c, _ in nodes), max(m for _, m in nodes)
        raise FluxscaleError(f"slurm cluster: a worker job asks for {want_c} CPUs and {want_m:.0f} MB, but the nodes "
                             f"of partition {name} have at most {big_c} CPUs and {big_m:.0f} MB; lower cores/memory "
                             f"(--job cores=N --job memory=XGiB, or the jobqueue YAML) or pick a partition "
                             f"(--job queue=NAME)")


# SLURM pending reasons that no amount of waiting changes (squeue -o %r)
_NEVER_REASONS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                  "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed", "DependencyNeverSatisfied",
                  "JobHeldAdmin", "PartitionDown", "PartitionInactive", "MaxCpuPerAccount", "QOSMaxCpuPerJobLimit",
                  "QOSMaxMemoryPerJob", "QOSMaxNodePerJobLimit", "AssocMaxCpuPerJobLimit", "AssocMaxMemPerJob",
                  "AssocMaxNodesPerJobLimit", "AssocMaxWallDurationPerJobLimit", "QOSMaxWallDurationPerJobLimit")


def slurm_job_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` from ``squeue`` (jobs SLURM no longer lists are absent)."""
    if not job_ids:
        return {}
    try:
        res = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for ln in res.stdout.splitlines():
        parts = ln.split("|")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def _job_ids(cluster) -> list[str]:
    return [str(j.job_id) for j in list(getattr(cluster, "workers", {}).values()) if getattr(j, "job_id", None)]


def wait_for_jobs(client: "distributed.Client", cluster, n: int, timeout: float, kind: str) -> None:
    """Wait for ``n`` workers of a jobqueue cluster, failing at once when a submission was
    refused (quoting the submit command) or a SLURM job pends for a reason that cannot
    change (naming the job and the reason); after ``timeout`` seconds the message names
    the jobs and SLURM's pending reasons."""
    failures = getattr(cluster, "_fluxscale_failures", [])
    submit = getattr(cluster.job_cls, "submit_command", kind)
    end = time.monotonic() + timeout
    next_poll = 0.0
    got = 0
    while True:
        if failures:
            raise FluxscaleError(f"{kind} cluster: {submit} refused the worker job: {failures[0]}")
        got = len(client.scheduler_info(n_workers=-1)["workers"])
        if got >= n:
            return
        now = time.monotonic()
        if kind == "slurm" and now >= next_poll:
            next_poll = now + 2.0
            for jid, (state, reason) in slurm_job_states(_job_ids(cluster)).items():
                if state == "PENDING" and reason in _NEVER_REASONS:
                    raise FluxscaleError(f"slurm cluster: worker job {jid} can never start: SLURM keeps it pending "
                                         f"with reason {reason} (squeue -j {jid} -o %r); check cores, memory, "
                                         f"walltime, partition and account of the jobqueue settings")
        if now >= end:
            break
        time.sleep(0.5)
    ids = _job_ids(cluster)
    if kind == "slurm":
        states = slurm_job_states(ids)
        jobs = ", ".join(f"{j} {states[j][0]}" + (f" ({states[j][1]})" if states[j][1] not in ("None", "") else "")
                         if j in states else f"{j} gone" for j in ids)
    else:
        jobs = ", ".join(ids)
    raise FluxscaleError(f"{kind} cluster: got {got} of {n} workers within {timeout:g} s; jobs: {jobs or 'none'}; "
                         f"raise --wait-timeout, or check the workers' logs (log-directory)")


class JobKeeper:
    """Keeps a jobqueue cluster at its requested size while in use: every ``interval``
    seconds it asks the cluster to correct its state, so a job that ended (``scancel``,
    a node lost, walltime) and that the cluster has dropped after
    ``distributed.deploy.lost-worker-timeout`` is replaced by a new submission."""

    def __init__(self, cluster, interval: float = 2.0):
        import threading

        self.cluster, self.interval = cluster, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fluxscale-job-keeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if len(self.cluster.workers) < len(self.cluster.worker_spec):
                    self.cluster.loop.add_callback(self.cluster._correct_state)
            except Exception:  # noqa: BLE001  (the cluster closing under us)
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def kube_cluster_spec(cfg: ClusterConfig, data_claim: str | None = "fluxscale-data", mount: str = "/data") -> dict:
    """The operator's ``DaskCluster`` resource (dask-kubernetes ``make_cluster_spec``) with
    the workers' threads, memory, preload and GPU, and the data volume mounted in every pod."""
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        raise FluxscaleError("cluster kind 'kubernetes' needs dask-kubernetes: "
                             "pip install 'fluxscale[kubernetes]'") from None
    limits: dict[str, Any] = {"cpu": str(cfg.threads_per_worker), "memory": cfg.memory_limit.replace("iB", "i")}
    if cfg.gpu:
        limits["nvidia.com/gpu"] = 1
    spec = make_cluster_spec(name=cfg.k8s_name, image=cfg.k8s_image, n_workers=cfg.n_workers,
                             resources={"limits": limits, "requests": dict(limits)})
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    worker["args"] += ["--nthreads", str(cfg.threads_per_worker), "--memory-limit", cfg.memory_limit,
                       *worker_args(cfg)]
    sched = spec["spec"]["scheduler"]["spec"]["containers"][0]
    sched["resources"] = {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    if data_claim:
        for pod in (spec["spec"]["worker"]["spec"], spec["spec"]["scheduler"]["spec"]):
            pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": data_claim}}]
            pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": mount}]
    for c in (worker, sched):
        if c.get("env") is None:
            c["env"] = []
    return spec


def kube_job_spec(cfg: ClusterConfig, command: list[str], data_claim: str | None = "fluxscale-data",
                  mount: str = "/data") -> dict:
    """A ``DaskJob`` resource: the operator starts the cluster of :func:`kube_cluster_spec`,
    runs ``command`` in a job pod with ``DASK_SCHEDULER_ADDRESS`` set, then removes it."""
    cluster = kube_cluster_spec(cfg, data_claim, mount)
    job = {"name": "job", "image": cfg.k8s_image, "args": list(command), "env": []}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [job]}
    if data_claim:
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": data_claim}}]
        job["volumeMounts"] = [{"name": "data", "mountPath": mount}]
    return {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskJob", "metadata": {"name": f"{cfg.k8s_name}-job"},
            "spec": {"job": {"spec": pod}, "cluster": {"spec": cluster["spec"]}}}


def ssh_connect_options(cfg: ClusterConfig) -> dict[str, Any]:
    """asyncssh ``connect`` options from the ``[cluster]`` section: ``ssh_port``,
    ``ssh_user``, ``ssh_key_file`` (the client key) and ``ssh_known_hosts`` (a
    known_hosts file; asyncssh's default is ``~/.ssh/known_hosts``)."""
    out: dict[str, Any] = {}
    if cfg.ssh_port is not None:
        out["port"] = int(cfg.ssh_port)
    if cfg.ssh_user:
        out["username"] = cfg.ssh_user
    if cfg.ssh_key_file:
        if not Path(cfg.ssh_key_file).expanduser().is_file():
            raise ConfigError(f"cluster config ssh_key_file: {cfg.ssh_key_file} not found")
        out["client_keys"] = [str(Path(cfg.ssh_key_file).expanduser())]
    if cfg.ssh_known_hosts:
        if not Path(cfg.ssh_known_hosts).expanduser().is_file():
            raise ConfigError(f"cluster config ssh_known_hosts: {cfg.ssh_known_hosts} not found")
        out["known_hosts"] = str(Path(cfg.ssh_known_hosts).expanduser())
    return out


def ssh_cluster_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Keyword arguments of ``distributed.SSHCluster`` for the config: the scheduler, the
    workers and the dashboard bind ``cfg.host`` (127.0.0.1 unless configured), the
    connection options from :func:`ssh_connect_options`."""
    worker_options: dict[str, Any] = {"n_workers": cfg.n_workers, "nthreads": cfg.threads_per_worker,
                                      "memory_limit": cfg.memory_limit}
    if cfg.preload:
        worker_options["preload"] = [PRELOAD]
    if cfg.gpu:
        worker_options["resources"] = {"GPU": 1}
    worker_options["host"] = cfg.host  # the workers' and nannies' comm ports (Dask's default: every interface)
    kwargs = {"hosts": list(cfg.ssh_hosts), "connect_options": ssh_connect_options(cfg),
              "worker_options": worker_options,
              "scheduler_options": {"port": 0, "host": cfg.host,
                                    "dashboard": cfg.dashboard_address is not None,
                                    "dashboard_address": with_host(cfg.dashboard_address or ":0", cfg.host)}}
    sec = security(cfg)
    if sec is not None:
        kwargs["security"] = sec
    return kwargs


@contextlib.contextmanager
def _started(cfg: ClusterConfig, kind: str):
    """The cluster object of a kind that starts its own scheduler."""
    if kind == "local":
        from distributed import LocalCluster

        sec = security(cfg)
        kw: dict[str, Any] = {}
        if cfg.preload:
            kw["preload"] = [PRELOAD]
        if cfg.gpu:
            kw["resources"] = {"GPU": 1}
        if sec is not None:
            kw.update(security=sec, protocol="tls://")
        with _children_ignore_sigint():
            cluster = LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
                                   memory_limit=cfg.memory_limit, host=cfg.host,
                                   dashboard_address=with_host(cfg.dashboard_address, cfg.host), **kw)
        with cluster:
            try:
                yield cluster
            except KeyboardInterrupt:
                _stop_quietly(cluster)
                raise
            with _DropRecords("distributed.nanny", "Worker process still alive after"):
                cluster.close()  # a worker busy freeing its memory is killed after 4 s: no news to the user
    elif kind in ("slurm", "pbs"):
        import shutil

        import dask

        failures: list[str] = []
        base = _jobqueue_class(kind).job_cls
        submit = getattr(base, "submit_command", None)
        if submit and shutil.which(submit.split()[0]) is None:
            raise FluxscaleError(f"{kind} cluster: {submit} not found here; run the scheduler script on a "
                                 f"node that can submit jobs (a login node)")
        # a lost worker's job is dropped after this long and a new one submitted (JobKeeper)
        with dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"}), \
                jobqueue_cluster(cfg, kind, job_cls=_recording_job_cls(base, failures)) as cluster:
            if kind == "slurm":
                _check_job_fits(cluster)
            cluster._fluxscale_failures = failures
            cluster.scale(jobs=cfg.n_workers)
            with JobKeeper(cluster):
                yield cluster
    elif kind == "kubernetes":
        spec = kube_cluster_spec(cfg, data_claim=None)
        from dask_kubernetes.operator import KubeCluster

        try:
            cluster = KubeCluster(custom_cluster_spec=spec, namespace=cfg.k8s_namespace)
        except Exception as e:  # noqa: BLE001  (kr8s/kubernetes raise many kinds)
            raise FluxscaleError(f"cannot create the Kubernetes DaskCluster {cfg.k8s_name!r}: {e}") from None
        with cluster:
            yield cluster
    elif kind == "ssh":
        from distributed import SSHCluster

        kwargs = ssh_cluster_kwargs(cfg)  # a missing key or known_hosts file: ConfigError first
        ssh_log = logging.getLogger("distributed.deploy.ssh")  # every line the remote processes print
        level = ssh_log.level
        ssh_log.setLevel(logging.WARNING)
        try:
            with _DropRecords("distributed.deploy.spec", "Cluster closed without starting up"):
                try:
                    cluster = SSHCluster(**kwargs)
                except Exception as e:  # noqa: BLE001  (asyncssh/OSError on an unreachable host)
                    why = str(e).removeprefix("Cluster failed to start: ").strip().replace("\n", " ")
                    hint = ""
                    if "not trusted" in why:
                        port = kwargs["connect_options"].get("port", 22)
                        hint = (f"; add its key to the known_hosts file (ssh-keyscan -p {port} HOST >> FILE) and "
                                f"name the file with ssh_known_hosts / --ssh-known-hosts")
                    raise FluxscaleError(f"cannot start the SSH cluster on {', '.join(cfg.ssh_hosts)}: "
                                         f"{why or type(e).__name__}{hint}") from None
            with cluster:
                yield cluster
        finally:
            ssh_log.setLevel(level)
    else:  # pragma: no cover  (ClusterConfig validates kind)
        raise ConfigError(f"cluster kind {kind!r}")


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Start processes with SIGINT ignored (the disposition survives ``exec``, and Python
    keeps an ignored SIGINT ignored): a terminal's Ctrl-C reaches the whole process group,
    and the worker processes of a LocalCluster would each print a ``KeyboardInterrupt``
    of their own while this process, which owns them, stops them (:func:`_stop_quietly`).
    A Ctrl-C during the ~2 s of the cluster's start is lost; only the main thread can
    change signal handlers, elsewhere this does nothing. The resource tracker started
    here also gets a filter for the "leaked semaphore" warning that killed workers cause.
    """
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    quiet = "ignore:resource_tracker:UserWarning"  # handed to the tracker process by multiprocessing
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _DropRecords(logging.Filter):
    """While in use, drop the records of ``logger`` whose message starts with ``prefix``."""

    def __init__(self, logger: str, prefix: str):
        super().__init__()
        self.logger, self.prefix = logging.getLogger(logger), prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)

    def __enter__(self):
        self.logger.addFilter(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeFilter(self)


def _stop_quietly(cluster) -> None:
    """After Ctrl-C: end a LocalCluster's worker processes at once and without output.

    Their tasks are interrupted anyway (every write is atomic, so a rerun resumes); a
    graceful close would wait 4 s per worker for a task thread that cannot be stopped and
    print Dask's warnings about it. The nannies are told not to restart the workers, the
    processes are killed and the cluster closed with Dask's loggers in this process at
    ERROR (restored after).
    """
    import os
    import signal

    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        for nanny in list(getattr(cluster, "workers", {}).values()):
            try:
                nanny.close_gracefully(reason="interrupted")  # no restart when the process goes
                pid = nanny.pid
                if pid:
                    os.kill(pid, signal.SIGKILL)
            except (AttributeError, ProcessLookupError, OSError):
                pass
        cluster.close()
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def cluster_client(cfg: ClusterConfig) -> Iterator["distributed.Client"]:
    """A ``distributed.Client`` on the cluster ``cfg`` names (see :class:`ClusterConfig`),
    with its workers arrived; the cluster and client are closed on exit.

    Raises
    ------
    FluxscaleError
        When the scheduler cannot be reached within ``cfg.connect_timeout_s`` seconds, or
        the workers do not arrive within ``cfg.wait_timeout_s``.
    """
    from distributed import Client

    kind = cfg.resolved_kind
    sec = security(cfg)
    kw = {"security": sec} if sec is not None else {}
    if kind == "existing":
        where = cfg.scheduler_address or f"the scheduler file {cfg.scheduler_file}"
        if cfg.scheduler_file and not cfg.scheduler_address and not Path(cfg.scheduler_file).is_file():
            raise FluxscaleError(f"{cfg.scheduler_file}: scheduler file not found (dask scheduler --scheduler-file)")
        import dask

        if (cfg.scheduler_address or "").startswith("tls://") and sec is None \
                and not dask.config.get("distributed.comm.tls.ca-file", None):  # the launcher passes TLS that way
            raise FluxscaleError(f"--scheduler {cfg.scheduler_address}: a TLS scheduler needs this client's "
                                 f"certificates: set tls_ca_file, tls_cert_file and tls_key_file in the [cluster] "
                                 f"section of the config (deploy/README.md, TLS)")
        try:
            client = Client(cfg.scheduler_address, scheduler_file=None if cfg.scheduler_address else cfg.scheduler_file,
                            timeout=cfg.connect_timeout_s, **kw)
        except (OSError, TimeoutError, ValueError) as e:
            raise FluxscaleError(f"cannot reach the Dask scheduler at {where}: {e}") from None
        with client:
            wait_for_workers(client, _expected_workers(cfg, kind), cfg.wait_timeout_s, f"scheduler {where}")
            yield client
        return
    t0 = time.perf_counter()
    with _started(cfg, kind) as cluster, Client(cluster, **kw) as client:
        left = max(1.0, cfg.wait_timeout_s - (time.perf_counter() - t0))
        if kind in ("slurm", "pbs"):
            wait_for_jobs(client, cluster, _expected_workers(cfg, kind, cluster), left, kind)
        else:
            wait_for_workers(client, _expected_workers(cfg, kind, cluster), left, f"{kind} cluster")
        yield client


@contextlib.contextmanager
def optional_client(cfg: ClusterConfig | None) -> Iterator["distributed.Client | None"]:
    """:func:`cluster_client` for ``cfg``, or None (Dask's threads in this process) when
    ``cfg`` is None: for the commands whose default is to run here."""
    if cfg is None:
        yield None
        return
    with cluster_client(cfg) as client:
        yield client


def strip_network_references(path: str | Path) -> None:
    """Drop the one network reference of Dask's inline performance report (its favicon), so
    that the page loads nothing from the network."""
    import re

    p = Path(path)
    p.write_text(re.sub(r"""<link rel="shortcut icon" href="https?://[^"]*"\s*/?>""", "", p.read_text()))


def describe_client(client: "distributed.Client") -> str:
    """One line for the user: workers, threads, scheduler address and dashboard link."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    dash = getattr(client, "dashboard_link", None)
    threads = sum(w.get("nthreads", 0) for w in info.values())
    gpus = sum((w.get("resources") or {}).get("GPU", 0) for w in info.values())
    return (f"Dask: {len(info)} workers ({threads} threads{f', {gpus:g} GPUs' if gpus else ''}) at "
            f"{client.scheduler.address}" + (f", dashboard {dash}" if dash else ""))
