"""Getting a Dask client for a run (orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .config import ClusterConfig
from .errors import FluxscaleError

__all__ = ["cluster_client"]


@contextlib.contextmanager
def cluster_client(cfg: ClusterConfig) -> Iterator["distributed.Client"]:  # noqa: F821
    """A ``distributed.Client``: connected to ``cfg.scheduler_address`` or to a new
    ``LocalCluster`` of worker processes bound to ``cfg.host``; closed on exit.

    Raises
    ------
    FluxscaleError
        When the scheduler cannot be reached within ``cfg.connect_timeout_s`` seconds.
    """
    from distributed import Client, LocalCluster

    if cfg.scheduler_address:
        try:
            client = Client(cfg.scheduler_address, timeout=cfg.connect_timeout_s)
        except (OSError, TimeoutError) as e:
            raise FluxscaleError(f"cannot reach the Dask scheduler at {cfg.scheduler_address}: {e}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker, processes=True,
                      memory_limit=cfg.memory_limit, host=cfg.host, dashboard_address=cfg.dashboard_address) as cluster, \
            Client(cluster) as client:
        yield client
