"""Getting a Dask client for a run (orchestration layer: no maths here).

:func:`cluster_client` builds the cluster that a :class:`~fluxscale.config.ClusterConfig`
names (``local``, ``existing``, ``slurm``, ``pbs``, ``kubernetes``, ``ssh``), connects a
client, waits for the workers and closes everything on exit. Every command that takes
``--scheduler`` goes through it, and so does ``fluxscale cluster`` (the scheduler script,
``deploy/launch.py``), which adds the performance report and runs any stage on the client.

The launchers are the field's own: ``distributed.LocalCluster`` and ``SSHCluster``,
dask-jobqueue's ``SLURMCluster``/``PBSCluster`` and dask-kubernetes' operator
``KubeCluster``. What is ours is only the mapping from the config, the worker preload
(:mod:`fluxscale.preload`), the ``GPU`` resource and TLS (:mod:`fluxscale.security`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ClusterConfig
from .errors import ConfigError, FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["cluster_client", "optional_client", "describe_client", "security", "worker_args",
           "jobqueue_cluster", "kube_cluster_spec", "kube_job_spec", "ssh_cluster_kwargs", "wait_for_workers",
           "strip_network_references"]

PRELOAD = "fluxscale.preload"
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


@contextlib.contextmanager
def jobqueue_cluster(cfg: ClusterConfig, kind: str | None = None):
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` (not yet scaled): the YAML merged
    into ``dask.config``, then the config's ``jobqueue`` keyword arguments on top, plus the
    preload and GPU resource in ``worker_extra_args``."""
    kind = kind or cfg.resolved_kind
    try:
        import dask_jobqueue
    except ImportError:
        raise FluxscaleError(f"cluster kind {kind!r} needs dask-jobqueue: pip install 'fluxscale[jobqueue]'") from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    kwargs = dict(cfg.jobqueue)
    with _merged_dask_config(_jobqueue_yaml(cfg)):
        import dask

        from_yaml = dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or []
        kwargs["worker_extra_args"] = list(kwargs.get("worker_extra_args", from_yaml)) + worker_args(cfg)
        sec = security(cfg)
        if sec is not None:
            kwargs.setdefault("security", sec)
            kwargs.setdefault("protocol", "tls://")
        try:
            cluster = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} cluster settings: {e}") from None
        with cluster:
            yield cluster


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


def ssh_cluster_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Keyword arguments of ``distributed.SSHCluster`` for the config."""
    worker_options: dict[str, Any] = {"n_workers": cfg.n_workers, "nthreads": cfg.threads_per_worker,
                                      "memory_limit": cfg.memory_limit}
    if cfg.preload:
        worker_options["preload"] = [PRELOAD]
    if cfg.gpu:
        worker_options["resources"] = {"GPU": 1}
    kwargs = {"hosts": list(cfg.ssh_hosts), "connect_options": {},
              "worker_options": worker_options,
              "scheduler_options": {"port": 0, "dashboard_address": cfg.dashboard_address or ":0"}}
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
                                   dashboard_address=cfg.dashboard_address, **kw)
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

        with jobqueue_cluster(cfg, kind) as cluster:
            submit = getattr(cluster.job_cls, "submit_command", None)
            if submit and shutil.which(submit.split()[0]) is None:
                raise FluxscaleError(f"{kind} cluster: {submit} not found here; run the scheduler script on a "
                                     f"node that can submit jobs (a login node)")
            cluster.scale(jobs=cfg.n_workers)
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

        try:
            cluster = SSHCluster(**ssh_cluster_kwargs(cfg))
        except Exception as e:  # noqa: BLE001  (asyncssh/OSError on an unreachable host)
            raise FluxscaleError(f"cannot start the SSH cluster on {', '.join(cfg.ssh_hosts)}: {e}") from None
        with cluster:
            yield cluster
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
        wait_for_workers(client, _expected_workers(cfg, kind, cluster), max(1.0, cfg.wait_timeout_s - (time.perf_counter() - t0)),
                         f"{kind} cluster")
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
