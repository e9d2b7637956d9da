"""A LocalCluster of worker processes on this machine (orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
from typing import Any

from fluxscale.cluster.security import security
from fluxscale.cluster.workers import PRELOAD, DropRecords, children_ignore_sigint, stop_quietly, with_host
from fluxscale.config import ClusterConfig

__all__ = ["start_local"]


@contextlib.contextmanager
def start_local(cfg: ClusterConfig, kind: str = "local"):
    """A ``distributed.LocalCluster`` of ``cfg.n_workers`` processes bound to ``cfg.host``,
    with the preload, the GPU resource and TLS as configured. A terminal's Ctrl-C stops
    its workers at once and quietly (:func:`fluxscale.cluster.workers.stop_quietly`); a
    normal close does not report a worker killed while freeing its memory."""
    from distributed import LocalCluster

    sec = security(cfg)
    kw: dict[str, Any] = {}
    if cfg.preload:
        kw["preload"] = [PRELOAD]
    if cfg.gpu:
        kw["resources"] = {"GPU": 1}
    if sec is not None:
        kw.update(security=sec, protocol="tls://")
    with children_ignore_sigint():
        cluster = LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
                               memory_limit=cfg.memory_limit, host=cfg.host,
                               dashboard_address=with_host(cfg.dashboard_address, cfg.host), **kw)
    with cluster:
        try:
            yield cluster
        except KeyboardInterrupt:
            stop_quietly(cluster)
            raise
        with DropRecords("distributed.nanny", "Worker process still alive after"):
            cluster.close()  # a worker busy freeing its memory is killed after 4 s: no news to the user
