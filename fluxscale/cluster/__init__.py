"""Getting a Dask client: LocalCluster, SLURM/PBS, Kubernetes, SSH; TLS; the worker preload."""

from fluxscale.cluster.client import (  # noqa: F401
    cluster_client,
    optional_client,
    describe_client,
    strip_network_references,
)
from fluxscale.cluster.jobqueue import (  # noqa: F401
    jobqueue_cluster,
    jobqueue_job_script,
    wait_for_jobs,
    slurm_job_states,
    JobKeeper,
)
from fluxscale.cluster.kube import kube_cluster_spec, kube_job_spec  # noqa: F401
from fluxscale.cluster.security import security  # noqa: F401
from fluxscale.cluster.ssh import ssh_cluster_kwargs, ssh_connect_options  # noqa: F401
from fluxscale.cluster.workers import wait_for_workers, with_host, worker_args  # noqa: F401

__all__ = [
    "cluster_client",
    "optional_client",
    "describe_client",
    "security",
    "worker_args",
    "jobqueue_cluster",
    "jobqueue_job_script",
    "with_host",
    "kube_cluster_spec",
    "kube_job_spec",
    "ssh_cluster_kwargs",
    "ssh_connect_options",
    "wait_for_workers",
    "wait_for_jobs",
    "slurm_job_states",
    "JobKeeper",
    "strip_network_references",
]
