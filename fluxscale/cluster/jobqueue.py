"""SLURM and PBS clusters through dask-jobqueue, and watching their jobs (orchestration
layer: no maths here).

The jobqueue YAML merged into ``dask.config`` and the config's ``jobqueue`` keywords on top;
what is ours: the preload and GPU resource, loopback binding unless an ``interface`` is named,
and jobs that fail fast and say why: a SLURM job larger than any node of its partition is
refused before submission, a refused submission stops the launcher with the submit command's
message, a job SLURM can never start is named with its pending reason. While in use, a worker
job that ends is resubmitted (:class:`JobKeeper`).
"""

from __future__ import annotations

import contextlib
import copy
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxscale.cluster.security import security
from fluxscale.cluster.workers import with_host, worker_args
from fluxscale.config import ClusterConfig
from fluxscale.errors import ConfigError, FluxscaleError

if TYPE_CHECKING:
    import distributed

__all__ = ["jobqueue_cluster", "jobqueue_job_script", "start_jobqueue", "slurm_job_states", "wait_for_jobs",
           "JobKeeper"]

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


def _interface_ip(interface: str) -> str:
    """The IPv4 address of a network interface (``ib0``), as Dask resolves it."""
    from distributed.utils import get_ip_interface

    try:
        return get_ip_interface(interface)
    except ValueError as e:
        raise ConfigError(f"cluster config interface={interface!r}: {e}") from None


def _jobqueue_kwargs(cfg: ClusterConfig, kind: str) -> dict[str, Any]:
    """The jobqueue cluster's keyword arguments (inside :func:`_merged_dask_config`).

    On top of the config's: the preload and GPU resource; workers without their own
    dashboard (``--no-dashboard``: nothing of ours needs it); with no ``interface`` (YAML or
    keyword) and no scheduler ``host``, the scheduler and the workers bind ``cfg.host``
    (127.0.0.1: one node; name the network with ``interface``, e.g. ``ib0``, for several);
    the scheduler's dashboard on a free port of the scheduler's own address (dask-jobqueue's
    default is every interface, port 8787); TLS when configured."""
    import dask

    kwargs = dict(cfg.jobqueue)
    from_yaml = dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or []
    extra = list(kwargs.get("worker_extra_args", from_yaml)) + worker_args(cfg)
    interface = kwargs.get("interface") or dask.config.get(f"jobqueue.{kind}.interface", None)
    sopts = dict(kwargs.get("scheduler_options") or dask.config.get(f"jobqueue.{kind}.scheduler-options", None) or {})
    if not interface and not sopts.get("host") and not sopts.get("interface"):
        sopts["host"] = cfg.host
        if not {"--host", "--listen-address", "--interface"} & set(extra):
            extra += ["--host", cfg.host]
        if "--dashboard-address" not in extra:  # a worker serves /health and /metrics even without a dashboard
            extra += ["--dashboard-address", with_host(":0", cfg.host)]
    if "dashboard_address" not in sopts:
        bind = sopts.get("host") or _interface_ip(sopts.get("interface") or interface)
        sopts["dashboard_address"] = with_host(cfg.dashboard_address, bind)
        sopts.setdefault("dashboard", cfg.dashboard_address is not None)
    if not {"--dashboard", "--no-dashboard"} & set(extra):
        extra.append("--no-dashboard")
    kwargs["worker_extra_args"] = extra
    kwargs["scheduler_options"] = sopts
    sec = security(cfg)
    if sec is not None:
        kwargs.setdefault("security", sec)
        kwargs.setdefault("protocol", "tls://")
    return kwargs


def _jobqueue_class(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise FluxscaleError(f"cluster kind {kind!r} needs dask-jobqueue: pip install 'fluxscale[jobqueue]'") from None
    return {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]


@contextlib.contextmanager
def jobqueue_cluster(cfg: ClusterConfig, kind: str | None = None, job_cls=None):
    """A dask-jobqueue ``SLURMCluster`` or ``PBSCluster`` (not yet scaled): the YAML merged
    into ``dask.config``, then the config's ``jobqueue`` keyword arguments on top, plus what
    :func:`_jobqueue_kwargs` adds (preload, GPU, loopback binding, dashboard)."""
    kind = kind or cfg.resolved_kind
    cls = _jobqueue_class(kind)
    with _merged_dask_config(_jobqueue_yaml(cfg)):
        kwargs = _jobqueue_kwargs(cfg, kind)
        if job_cls is not None:
            kwargs["job_cls"] = job_cls
        try:
            cluster = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} cluster settings: {e}") from None
        with cluster:
            yield cluster


_CLUSTER_ONLY_KEYS = frozenset({"n_workers", "job_cls", "loop", "security", "shared_temp_directory", "silence_logs",
                                "name", "asynchronous", "dashboard_address", "host", "scheduler_options",
                                "scheduler_cls", "interface", "protocol", "config_name"})


def jobqueue_job_script(cfg: ClusterConfig, kind: str | None = None) -> str:
    """The worker job script that :func:`jobqueue_cluster` would submit, built without
    starting a scheduler (``--dry-run``): the scheduler address in it is the host the
    scheduler would bind, with ``<port>`` for the port it would get."""
    kind = kind or cfg.resolved_kind
    cls = _jobqueue_class(kind)
    with _merged_dask_config(_jobqueue_yaml(cfg)):
        import dask

        kwargs = _jobqueue_kwargs(cfg, kind)
        sopts = kwargs["scheduler_options"]
        interface = kwargs.get("interface") or dask.config.get(f"jobqueue.{kind}.interface", None)
        host = sopts.get("host") or _interface_ip(sopts.get("interface") or interface)
        protocol = kwargs.get("protocol") or "tcp://"
        job_kwargs = {k: v for k, v in kwargs.items() if k not in _CLUSTER_ONLY_KEYS}
        job_kwargs.update(config_name=kwargs.get("config_name") or cls.job_cls.default_config_name(),
                          interface=interface, protocol=kwargs.get("protocol"), security=kwargs.get("security"))
        try:
            job = cls.job_cls(f"{protocol}{host}:<port>", name="dummy-name", **job_kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{kind} cluster settings: {e}") from None
        return job.job_script()


@contextlib.contextmanager
def start_jobqueue(cfg: ClusterConfig, kind: str):
    """A SLURM or PBS cluster scaled to ``cfg.n_workers`` jobs: refused at once when the
    submit command is missing here or (SLURM) a job cannot fit any node; refused
    submissions are recorded for :func:`wait_for_jobs`; jobs that end are resubmitted
    (:class:`JobKeeper`)."""
    import shutil

    import dask

    failures: list[str] = []
    base = _jobqueue_class(kind).job_cls
    submit = getattr(base, "submit_command", None)
    if submit and shutil.which(submit.split()[0]) is None:
        raise FluxscaleError(f"{kind} cluster: {submit} not found here; run the scheduler script on a "
                             f"node that can submit jobs (a login node)")
    # a lost worker's job is dropped after this long and a new one submitted (JobKeeper)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"}), \
            jobqueue_cluster(cfg, kind, job_cls=_recording_job_cls(base, failures)) as cluster:
        if kind == "slurm":
            _check_job_fits(cluster)
        cluster._fluxscale_failures = failures
        cluster.scale(jobs=cfg.n_workers)
        with JobKeeper(cluster):
            yield cluster


def _submit_message(e: BaseException) -> str:
    """The submit command's own words from dask-jobqueue's error (its stderr lines)."""
    text = str(e)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) or type(e).__name__


def _recording_job_cls(base, failures: list[str]):
    """A subclass of a dask-jobqueue job class whose refused submissions are recorded in
    ``failures`` (the launcher then stops at once, quoting them) instead of surfacing as
    tracebacks in the event loop while the launcher waits for workers in vain."""
    from distributed.core import Status

    class RecordingJob(base):
        async def start(self):
            try:
                await super().start()
            except Exception as e:  # noqa: BLE001  (RuntimeError from sbatch/qsub, ValueError: no job id)
                failures.append(_submit_message(e))
                self.job_id = None
                self.status = Status.running  # SpecCluster asserts it; the launcher stops right after

    RecordingJob.__name__ = RecordingJob.__qualname__ = base.__name__
    return RecordingJob


def _mb(text: str) -> float:
    """A SLURM memory size (``32G``, ``2048M``, ``2048``: MB) in MB."""
    num, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text.strip().upper()).groups()
    return float(num) * {"K": 2**-10, "": 1, "M": 1, "G": 2**10, "T": 2**20, "P": 2**30}[unit]


def _check_job_fits(cluster) -> None:
    """Refuse, before anything is submitted, a SLURM worker job larger than every node of
    its partition (``sinfo``: CPUs and memory per node), with the numbers side by side."""
    header = cluster.job_header
    cpus = re.search(r"^#SBATCH --cpus-per-task=(\d+)", header, re.M)
    mem = re.search(r"^#SBATCH --mem=(\S+)", header, re.M)
    part = re.search(r"^#SBATCH -p (\S+)", header, re.M)
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return  # sbatch will say
    rows = [ln.split("|") for ln in res.stdout.splitlines() if ln.count("|") == 2]
    default = next((r[0].rstrip("*") for r in rows if r[0].endswith("*")), None)
    name = part.group(1) if part else default
    nodes = [(int(c), _mb(m)) for p_, c, m in rows if p_.rstrip("*") == name and c.isdigit()
             and re.fullmatch(r"\d+(\.\d+)?[KMGTP]?", m.strip().upper())]
    if res.returncode != 0 or not nodes:
        return
    want_c = int(cpus.group(1)) if cpus else 1
    want_m = _mb(mem.group(1)) if mem else 0.0
    if not any(want_c <= c and want_m <= m for c, m in nodes):
        big_c, big_m = max(c for c, _ in nodes), max(m for _, m in nodes)
        raise FluxscaleError(f"slurm cluster: a worker job asks for {want_c} CPUs and {want_m:.0f} MB, but the nodes "
                             f"of partition {name} have at most {big_c} CPUs and {big_m:.0f} MB; lower cores/memory "
                             f"(--job cores=N --job memory=XGiB, or the jobqueue YAML) or pick a partition "
                             f"(--job queue=NAME)")


# SLURM pending reasons that no amount of waiting changes (squeue -o %r)
_NEVER_REASONS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                  "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed", "DependencyNeverSatisfied",
                  "JobHeldAdmin", "PartitionDown", "PartitionInactive", "MaxCpuPerAccount", "QOSMaxCpuPerJobLimit",
                  "QOSMaxMemoryPerJob", "QOSMaxNodePerJobLimit", "AssocMaxCpuPerJobLimit", "AssocMaxMemPerJob",
                  "AssocMaxNodesPerJobLimit", "AssocMaxWallDurationPerJobLimit", "QOSMaxWallDurationPerJobLimit")


def slurm_job_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` from ``squeue`` (jobs SLURM no longer lists are absent)."""
    if not job_ids:
        return {}
    try:
        res = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for ln in res.stdout.splitlines():
        parts = ln.split("|")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def _job_ids(cluster) -> list[str]:
    return [str(j.job_id) for j in list(getattr(cluster, "workers", {}).values()) if getattr(j, "job_id", None)]


def wait_for_jobs(client: "distributed.Client", cluster, n: int, timeout: float, kind: str) -> None:
    """Wait for ``n`` workers of a jobqueue cluster, failing at once when a submission was
    refused (quoting the submit command) or a SLURM job pends for a reason that cannot
    change (naming the job and the reason); after ``timeout`` seconds the message names
    the jobs and SLURM's pending reasons."""
    failures = getattr(cluster, "_fluxscale_failures", [])
    submit = getattr(cluster.job_cls, "submit_command", kind)
    end = time.monotonic() + timeout
    next_poll = 0.0
    got = 0
    while True:
        if failures:
            raise FluxscaleError(f"{kind} cluster: {submit} refused the worker job: {failures[0]}")
        got = len(client.scheduler_info(n_workers=-1)["workers"])
        if got >= n:
            return
        now = time.monotonic()
        if kind == "slurm" and now >= next_poll:
            next_poll = now + 2.0
            for jid, (state, reason) in slurm_job_states(_job_ids(cluster)).items():
                if state == "PENDING" and reason in _NEVER_REASONS:
                    raise FluxscaleError(f"slurm cluster: worker job {jid} can never start: SLURM keeps it pending "
                                         f"with reason {reason} (squeue -j {jid} -o %r); check cores, memory, "
                                         f"walltime, partition and account of the jobqueue settings")
        if now >= end:
            break
        time.sleep(0.5)
    ids = _job_ids(cluster)
    if kind == "slurm":
        states = slurm_job_states(ids)
        jobs = ", ".join(f"{j} {states[j][0]}" + (f" ({states[j][1]})" if states[j][1] not in ("None", "") else "")
                         if j in states else f"{j} gone" for j in ids)
    else:
        jobs = ", ".join(ids)
    raise FluxscaleError(f"{kind} cluster: got {got} of {n} workers within {timeout:g} s; jobs: {jobs or 'none'}; "
                         f"raise --wait-timeout, or check the workers' logs (log-directory)")


class JobKeeper:
    """Keeps a jobqueue cluster at its requested size while in use: every ``interval``
    seconds it asks the cluster to correct its state, so a job that ended (``scancel``,
    a node lost, walltime) and that the cluster has dropped after
    ``distributed.deploy.lost-worker-timeout`` is replaced by a new submission."""

    def __init__(self, cluster, interval: float = 2.0):
        import threading

        self.cluster, self.interval = cluster, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fluxscale-job-keeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if len(self.cluster.workers) < len(self.cluster.worker_spec):
                    self.cluster.loop.add_callback(self.cluster._correct_state)
            except Exception:  # noqa: BLE001  (the cluster closing under us)
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
