"""The workers of a fluxscale cluster: their extra arguments (the preload, the GPU
resource), binding to the configured host, waiting for them to arrive, and stopping a
LocalCluster's worker processes quietly after Ctrl-C (orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fluxscale.config import ClusterConfig
from fluxscale.errors import FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["PRELOAD", "worker_args", "with_host", "wait_for_workers", "expected_workers", "children_ignore_sigint",
           "DropRecords", "stop_quietly"]

PRELOAD = "fluxscale.cluster.preload"
"""The worker preload module: torch and numba threads = the worker's threads."""


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


def expected_workers(cfg: ClusterConfig, kind: str, cluster=None) -> int:
    """How many workers to wait for: ``wait_workers``, else what the kind starts (1 for an
    existing scheduler; ``processes`` workers per jobqueue job; per host but the first for SSH)."""
    if cfg.wait_workers is not None:
        return cfg.wait_workers
    if kind == "existing":
        return 1
    if kind == "ssh":
        return cfg.n_workers * max(1, len(cfg.ssh_hosts) - 1)
    if kind in ("slurm", "pbs"):  # each job runs `processes` workers
        return cfg.n_workers * int(getattr(getattr(cluster, "_dummy_job", None), "worker_processes", 1))
    return cfg.n_workers


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Start processes with SIGINT ignored (the disposition survives ``exec``, and Python
    keeps an ignored SIGINT ignored): a terminal's Ctrl-C reaches the whole process group,
    and the worker processes of a LocalCluster would each print a ``KeyboardInterrupt``
    of their own while this process, which owns them, stops them (:func:`stop_quietly`).
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


class DropRecords(logging.Filter):
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


def stop_quietly(cluster) -> None:
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
