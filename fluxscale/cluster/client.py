"""Getting a Dask client for a run (orchestration layer: no maths here).

:func:`cluster_client` builds the cluster that a :class:`~fluxscale.config.ClusterConfig`
names (``local``, ``existing``, ``slurm``, ``pbs``, ``kubernetes``, ``ssh``), connects a
client, waits for the workers and closes everything on exit. Every command that takes
``--scheduler`` goes through it, and so does ``fluxscale cluster`` (the scheduler script,
``deploy/launch.py``), which adds the performance report and runs any stage on the client.

The launchers are the field's own: ``distributed.LocalCluster`` and ``SSHCluster``,
dask-jobqueue's ``SLURMCluster``/``PBSCluster`` and dask-kubernetes' operator
``KubeCluster``, one module each (:mod:`~fluxscale.cluster.local`,
:mod:`~fluxscale.cluster.jobqueue`, :mod:`~fluxscale.cluster.kube`, :mod:`~fluxscale.cluster.ssh`),
started through one table (:data:`STARTERS`, kind → starter). What is ours is only the mapping
from the config, the worker preload (:mod:`fluxscale.cluster.preload`), the ``GPU`` resource
(:mod:`fluxscale.cluster.workers`) and TLS (:mod:`fluxscale.cluster.security`), and:

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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fluxscale.cluster.jobqueue import start_jobqueue, wait_for_jobs
from fluxscale.cluster.kube import start_kubernetes
from fluxscale.cluster.local import start_local
from fluxscale.cluster.security import security
from fluxscale.cluster.ssh import start_ssh
from fluxscale.cluster.workers import expected_workers, wait_for_workers
from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError, FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["cluster_client", "optional_client", "describe_client", "strip_network_references", "STARTERS"]

STARTERS = {"local": start_local, "slurm": start_jobqueue, "pbs": start_jobqueue, "kubernetes": start_kubernetes,
            "ssh": start_ssh}
"""Cluster kind → the context manager that starts a cluster of that kind (its own scheduler)
from a config, ``starter(cfg, kind)``; ``existing`` connects to a running scheduler instead."""


@contextlib.contextmanager
def _connected(cfg: ClusterConfig, sec, kw: dict) -> Iterator["distributed.Client"]:
    """A client of an existing scheduler (``scheduler_address`` or ``scheduler_file``),
    with its workers arrived."""
    from distributed import Client

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
        wait_for_workers(client, expected_workers(cfg, "existing"), cfg.wait_timeout_s, f"scheduler {where}")
        yield client


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
        with _connected(cfg, sec, kw) as client:
            yield client
        return
    t0 = time.perf_counter()
    start = STARTERS.get(kind)
    if start is None:  # pragma: no cover  (ClusterConfig validates kind)
        raise ConfigError(f"cluster kind {kind!r}")
    with start(cfg, kind) as cluster, Client(cluster, **kw) as client:
        left = max(1.0, cfg.wait_timeout_s - (time.perf_counter() - t0))
        if kind in ("slurm", "pbs"):
            wait_for_jobs(client, cluster, expected_workers(cfg, kind, cluster), left, kind)
        else:
            wait_for_workers(client, expected_workers(cfg, kind, cluster), left, f"{kind} cluster")
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
