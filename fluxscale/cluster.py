"""Getting a Dask client for a run (orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .config import ClusterConfig
from .errors import FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["cluster_client", "optional_client", "describe_client"]


@contextlib.contextmanager
def cluster_client(cfg: ClusterConfig) -> Iterator["distributed.Client"]:
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


@contextlib.contextmanager
def optional_client(cfg: ClusterConfig | None) -> Iterator["distributed.Client | None"]:
    """:func:`cluster_client` for ``cfg``, or None (Dask's threads in this process) when
    ``cfg`` is None: for the commands whose default is to run here."""
    if cfg is None:
        yield None
        return
    with cluster_client(cfg) as client:
        yield client


def describe_client(client: "distributed.Client") -> str:
    """One line for the user: workers, scheduler address and dashboard link."""
    dash = getattr(client, "dashboard_link", None)
    return (f"Dask: {len(client.scheduler_info()['workers'])} workers at {client.scheduler.address}"
            + (f", dashboard {dash}" if dash else ""))
