"""SSH: ``distributed.SSHCluster`` settings from the ``[cluster]`` section, and starting it
(orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from fluxscale.cluster.security import security
from fluxscale.cluster.workers import PRELOAD, DropRecords, with_host
from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError, FluxscaleError

__all__ = ["ssh_connect_options", "ssh_cluster_kwargs", "start_ssh"]

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
def start_ssh(cfg: ClusterConfig, kind: str = "ssh"):
    """A ``distributed.SSHCluster`` on ``cfg.ssh_hosts`` (the first runs the scheduler), the
    remote processes' lines kept off the terminal; a host that cannot be reached or is not
    trusted is named in one line, with what to do."""
    from distributed import SSHCluster

    kwargs = ssh_cluster_kwargs(cfg)  # a missing key or known_hosts file: ConfigError first
    ssh_log = logging.getLogger("distributed.deploy.ssh")  # every line the remote processes print
    level = ssh_log.level
    ssh_log.setLevel(logging.WARNING)
    try:
        with DropRecords("distributed.deploy.spec", "Cluster closed without starting up"):
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
