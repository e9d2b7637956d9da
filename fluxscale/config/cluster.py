"""Where stages run: the ``[cluster]`` section (:class:`ClusterConfig`; :mod:`fluxscale.cluster`
builds the cluster from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fluxscale.config.base import Settings
from fluxscale.errors import ConfigError

__all__ = ["ClusterConfig"]


@dataclass(frozen=True)
class ClusterConfig(Settings):
    """Where stages run (the ``[cluster]`` section; :mod:`fluxscale.cluster` builds it).

    ``kind`` picks the cluster:

    * ``local``: a ``LocalCluster`` of ``n_workers`` processes of ``threads_per_worker``
      threads bound to ``host``;
    * ``existing``: connect to ``scheduler_address`` or ``scheduler_file`` (a given address
      or file implies this kind);
    * ``slurm`` / ``pbs``: dask-jobqueue (``pip install fluxscale[jobqueue]``); the YAML file
      ``jobqueue_config`` is merged into ``dask.config`` and ``jobqueue`` (keyword arguments
      of ``SLURMCluster``/``PBSCluster``) wins over it; ``n_workers`` jobs are requested;
    * ``kubernetes``: the Dask operator's ``KubeCluster`` (``pip install fluxscale[kubernetes]``)
      with ``k8s_image`` in ``k8s_namespace``;
    * ``ssh``: ``distributed.SSHCluster`` on ``ssh_hosts`` (the first runs the scheduler).

    Every kind waits for ``wait_workers`` workers (default ``n_workers``; 0: none) for at most
    ``wait_timeout_s`` seconds. ``dashboard_address=None`` disables the dashboard.
    """

    _section = "cluster"

    kind: str = "local"
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    """A scheduler file written by ``dask scheduler --scheduler-file`` (kind ``existing``)."""
    n_workers: int = 2
    """Worker processes (local, ssh: per host), jobs (slurm, pbs) or pods (kubernetes)."""
    threads_per_worker: int = 1
    memory_limit: str = "6GiB"
    host: str = "127.0.0.1"
    """Address the scheduler, the workers and the dashboard bind to (local, ssh; slurm/pbs
    without an ``interface``); not exposed unless changed."""
    dashboard_address: str | None = ":0"
    connect_timeout_s: float = 10.0
    """How long to try reaching ``scheduler_address`` before failing, seconds."""
    wait_workers: int | None = None
    """Workers to wait for before running (None: ``n_workers`` for the kinds that start
    workers, 1 for ``existing``)."""
    wait_timeout_s: float = 300.0
    """Fail when the workers have not all arrived after this many seconds."""
    preload: bool = True
    """Start workers with ``--preload fluxscale.cluster.preload`` (torch and numba threads = the
    worker's threads)."""
    gpu: bool = False
    """Workers declare the resource ``GPU=1`` (one worker process per GPU): training and,
    with ``infer.gpu_workers``, inference tasks ask for it."""
    jobqueue_config: str | None = None
    """slurm/pbs: a dask-jobqueue YAML (``jobqueue: slurm: {cores: …}``) merged into dask.config."""
    jobqueue: dict = field(default_factory=dict)
    """slurm/pbs: keyword arguments of the jobqueue cluster class; they win over the YAML."""
    ssh_hosts: tuple[str, ...] = ()
    """ssh: hosts; the first runs the scheduler, the rest one worker group each."""
    ssh_port: int | None = None
    """ssh: the sshd port (default 22)."""
    ssh_user: str | None = None
    """ssh: the login name (default: this user's)."""
    ssh_key_file: str | None = None
    """ssh: the client's private key file (default: asyncssh's, ~/.ssh/id_*)."""
    ssh_known_hosts: str | None = None
    """ssh: a known_hosts file with the hosts' keys (default ~/.ssh/known_hosts)."""
    k8s_image: str = "fluxscale:latest"
    k8s_namespace: str | None = None
    k8s_name: str = "fluxscale"
    tls_ca_file: str | None = None
    """TLS: the CA certificate (PEM); with ``tls_cert_file`` and ``tls_key_file`` every
    connection is ``tls://`` and a peer without a certificate from this CA is refused."""
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    performance_report: str | None = None
    """Write a Dask performance report (inline HTML, opens without network) of the run here."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ssh_hosts", tuple(self.ssh_hosts))  # TOML gives lists
        kinds = ("local", "existing", "slurm", "pbs", "kubernetes", "ssh")
        if self.kind not in kinds:
            raise ConfigError(f"cluster config: kind={self.kind!r}; one of {', '.join(kinds)}")
        tls = [self.tls_ca_file, self.tls_cert_file, self.tls_key_file]
        if any(tls) and not all(tls):
            raise ConfigError("cluster config: TLS needs tls_ca_file, tls_cert_file and tls_key_file together")
        if self.kind == "ssh" and not self.ssh_hosts:
            raise ConfigError("cluster config: kind='ssh' needs ssh_hosts (the first runs the scheduler)")
        if self.n_workers < 0 or self.threads_per_worker < 1 or self.wait_timeout_s <= 0:
            raise ConfigError("cluster config: n_workers >= 0, threads_per_worker >= 1 and wait_timeout_s > 0")
        if self.n_workers == 0 and self.kind == "local" and not (self.scheduler_address or self.scheduler_file):
            raise ConfigError("cluster config: n_workers=0 (--workers 0): a LocalCluster needs at least one worker")

    @property
    def resolved_kind(self) -> str:
        """``existing`` when an address or scheduler file is given, else ``kind``."""
        return "existing" if (self.scheduler_address or self.scheduler_file) else self.kind

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file)
