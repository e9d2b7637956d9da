"""Kubernetes: the dask-kubernetes operator's ``DaskCluster`` and ``DaskJob`` resources for a
config, and starting such a cluster (orchestration layer: no maths here)."""

from __future__ import annotations

import contextlib
from typing import Any

from fluxscale.cluster.workers import worker_args
from fluxscale.config import ClusterConfig
from fluxscale.errors import FluxscaleError

__all__ = ["kube_cluster_spec", "kube_job_spec", "start_kubernetes"]

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


@contextlib.contextmanager
def start_kubernetes(cfg: ClusterConfig, kind: str = "kubernetes"):
    """A dask-kubernetes operator ``KubeCluster`` of :func:`kube_cluster_spec` (no data volume)."""
    spec = kube_cluster_spec(cfg, data_claim=None)
    from dask_kubernetes.operator import KubeCluster

    try:
        cluster = KubeCluster(custom_cluster_spec=spec, namespace=cfg.k8s_namespace)
    except Exception as e:  # noqa: BLE001  (kr8s/kubernetes raise many kinds)
        raise FluxscaleError(f"cannot create the Kubernetes DaskCluster {cfg.k8s_name!r}: {e}") from None
    with cluster:
        yield cluster
