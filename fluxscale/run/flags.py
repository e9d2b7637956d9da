"""The command line's flags into the config tree (orchestration only): ``--set`` overrides,
the run config of a command, a stage command's prerequisites (read from the stage table,
:mod:`fluxscale.run.stages`), ``--job`` keywords, and what ``fluxscale cluster --dry-run``
would start. :mod:`fluxscale.run.cli` declares the commands and calls these."""

from __future__ import annotations

from pathlib import Path

from fluxscale.config import ClusterConfig, RunConfig, TwinConfig, coerce_setting
from fluxscale.errors import ConfigError

__all__ = ["RUN_SECTIONS", "CLUSTER_STAGES", "CONFIG_STAGES", "parse_knobs", "parse_run_sets", "stage_config",
           "run_config", "require", "stage_setup", "job_kwargs", "cluster_config", "stage_arguments", "dry_run"]

RUN_SECTIONS = ("twin", "bridge", "train", "infer", "evaluate")
"""The config sections that ``--set SECTION.NAME=VALUE`` of ``fluxscale run`` reaches."""

CLUSTER_STAGES = ("run", "twin", "ingest", "validate", "integrals", "bridge", "train", "infer", "one-against-many",
                  "evaluate")
CONFIG_STAGES = ("run", "integrals", "bridge", "train", "infer", "one-against-many", "evaluate")
"""``fluxscale cluster STAGE``: the commands it runs on the cluster, and those that take ``--config``."""


def parse_knobs(items: list[str] | None, defaults=None, what: str = "twin knob") -> dict:
    """``name=value`` pairs → overrides of a config dataclass (``defaults``: an instance),
    each value parsed by its field's type (:func:`fluxscale.config.coerce_setting`: ``none``
    for an optional field, true/false/1/0 for a flag, comma-separated lists)."""
    out = {}
    defaults = defaults if defaults is not None else TwinConfig()
    known = defaults.to_dict()
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        k = k.strip()
        if k not in known:
            raise ConfigError(f"--set {k}: unknown {what}; known: {', '.join(sorted(known))}")
        out[k] = coerce_setting(type(defaults), k, v, "--set")
    return out


def parse_run_sets(items: list[str] | None, cfg: RunConfig) -> dict[str, dict]:
    """``--set SECTION.NAME=VALUE`` (or a bare ``NAME=VALUE`` that exactly one section has)
    → typed overrides per section of the run config."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected SECTION.NAME=VALUE")
        name, value = item.split("=", 1)
        if "." in name:
            sec, field_ = name.split(".", 1)
            if sec not in RUN_SECTIONS:
                raise ConfigError(f"--set {item}: unknown section {sec!r}; sections: {', '.join(RUN_SECTIONS)}")
        else:
            field_ = name
            having = [sec for sec in RUN_SECTIONS if field_ in getattr(cfg, sec).to_dict()]
            if len(having) != 1:
                raise ConfigError(f"--set {item}: " + (f"{field_!r} is a setting of {', '.join(having)}; write "
                                                        f"SECTION.{field_}=VALUE" if having else
                                                        f"unknown setting {field_!r} in {', '.join(RUN_SECTIONS)}"))
            sec = having[0]
        out.setdefault(sec, []).append(f"{field_}={value}")
    return {sec: parse_knobs(v, getattr(cfg, sec), f"{sec} setting") for sec, v in out.items()}


def stage_config(data_dir: Path | None, config: Path | None, **cluster) -> RunConfig:
    """The run config of a command: the config file (or defaults), with the command line's
    data directory and the ClusterConfig fields it gives (None = not given) on top."""
    import dataclasses

    from fluxscale.config import load_config

    cfg = load_config(config) if config else RunConfig()
    given = {k: v for k, v in cluster.items() if v is not None}
    return dataclasses.replace(cfg, data_dir=str(data_dir) if data_dir else cfg.data_dir,
                               cluster=dataclasses.replace(cfg.cluster, **given))


def run_config(data_dir: Path | None, config: Path | None, *, preset: str | None, seed: int | None,
               set_: list[str] | None, reuse: bool, ingest_config: Path | None, **cluster) -> RunConfig:
    """``fluxscale run``'s config: :func:`stage_config`, then the twin preset and one seed for
    the run (the twin's, the bridges' repeats and training's), the ``--set`` overrides
    (:func:`parse_run_sets`), ``--reuse`` and ``--ingest``."""
    import dataclasses

    from fluxscale.config import twin_preset

    cfg = stage_config(data_dir, config, **cluster)
    if preset is not None or seed is not None:
        cfg = dataclasses.replace(cfg, twin=twin_preset(preset or "small", seed=cfg.twin.seed if seed is None else seed))
    if seed is not None:  # one seed for the run: the twin's, the bridges' repeats and training's
        cfg = dataclasses.replace(cfg, bridge=cfg.bridge.replace(seed=seed), train=cfg.train.replace(seed=seed))
    sets = parse_run_sets(set_, cfg)
    cfg = dataclasses.replace(cfg, reuse=reuse, **{sec: getattr(cfg, sec).replace(**v) for sec, v in sets.items()})
    if ingest_config is not None:
        cfg = dataclasses.replace(cfg, ingest=str(ingest_config))
    return cfg


def require(cfg: RunConfig, command: str) -> None:
    """Before any cluster starts: refuse (ConfigError, one line, exit 2) a data directory
    that lacks what ``command`` reads (the inputs of its stage in
    :data:`fluxscale.run.stages.STAGE_TABLE`), naming the first missing output and the
    command that makes it."""
    from fluxscale.run.stages import first_missing, stage_of_command

    missing = first_missing(stage_of_command(command), Path(cfg.data_dir), cfg)
    if missing is not None:
        path, what, hint = missing
        raise ConfigError(f"fluxscale {command}: {path}: {what}; {hint}")


def stage_setup(command: str, data_dir: Path | None, config: Path | None, set_: list[str] | None,
                scheduler: str | None, workers: int | None, connect_timeout: float,
                threads_per_worker: int | None = None) -> RunConfig:
    """The run config of a stage command (``integrals``, ``bridge``, ``train``, ``infer``,
    ``evaluate``): :func:`stage_config` with the cluster flags, the ``--set`` overrides of
    its stage's config section on top, and its prerequisites checked (:func:`require`),
    all before any cluster starts."""
    import dataclasses

    from fluxscale.run.stages import stage_of_command

    cfg = stage_config(data_dir, config, scheduler_address=scheduler, n_workers=workers,
                       threads_per_worker=threads_per_worker, connect_timeout_s=connect_timeout if scheduler else None)
    section = stage_of_command(command).section
    if section is not None:
        settings = getattr(cfg, section)
        cfg = dataclasses.replace(cfg, **{section: settings.replace(**parse_knobs(set_, settings,
                                                                                  f"{section} setting"))})
    require(cfg, command)
    return cfg


def job_kwargs(items: list[str] | None) -> dict:
    """``--job KEY=VALUE`` → jobqueue keyword arguments (values read as YAML scalars/lists)."""
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--job {item!r}: expected KEY=VALUE (e.g. --job cores=8 --job walltime=02:00:00)")
        k, v = item.split("=", 1)
        out[k.replace("-", "_")] = v if k in ("walltime",) else yaml.safe_load(v)
    return out


def cluster_config(config: Path | None, job: list[str] | None, **flags) -> ClusterConfig:
    """``fluxscale cluster``'s ClusterConfig: the config file's ``[cluster]`` (or defaults) with
    the flags it was given on top (None = not given; paths become strings, a list of hosts a
    tuple) and ``--job`` keywords over the config's ``jobqueue``."""
    from fluxscale.config import load_config

    base = load_config(config).cluster if config else ClusterConfig()
    given = {k: str(v) if isinstance(v, Path) else (tuple(v) if v else None) if isinstance(v, list) else v
             for k, v in flags.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if job:
        given["jobqueue"] = {**base.jobqueue, **job_kwargs(job)}
    return base.replace(**given)


def stage_arguments(stage: str, args: list[str], config: Path | None) -> list[str]:
    """The arguments that ``fluxscale cluster`` hands to STAGE: its own, and the cluster
    command's ``--config`` for a stage that takes one and was not given one. An unknown
    STAGE is refused (ConfigError)."""
    if stage not in CLUSTER_STAGES:
        raise ConfigError(f"fluxscale cluster: unknown stage {stage!r}; one of {', '.join(CLUSTER_STAGES)}")
    args = list(args)
    if config is not None and stage in CONFIG_STAGES and not {"--config", "-c"} & set(args):
        args += ["--config", str(config)]
    return args


def dry_run(cc: ClusterConfig, stage: str, args: list[str]) -> str:
    """What ``fluxscale cluster`` would start, as text (job script, manifests, settings)."""
    import yaml

    from fluxscale.cluster import jobqueue_job_script, kube_cluster_spec, kube_job_spec, ssh_cluster_kwargs, worker_args

    kind = cc.resolved_kind
    if kind in ("slurm", "pbs"):
        return jobqueue_job_script(cc, kind)  # starts no scheduler
    if kind == "kubernetes":
        command = ["fluxscale", "cluster", "--scheduler", "$(DASK_SCHEDULER_ADDRESS)", "--wait-workers",
                   str(cc.n_workers), "--performance-report", f"/data/performance-{stage}.html", stage, *args]
        return ("# DaskCluster: kubectl apply -f (workers of fluxscale cluster --kind kubernetes)\n"
                + yaml.safe_dump(kube_cluster_spec(cc), sort_keys=False)
                + "---\n# DaskJob: the operator starts the cluster, runs the job pod, then removes both\n"
                + yaml.safe_dump(kube_job_spec(cc, command), sort_keys=False))
    if kind == "ssh":
        return yaml.safe_dump({"SSHCluster": {k: v for k, v in ssh_cluster_kwargs(cc).items() if k != "security"}},
                              sort_keys=False)
    return yaml.safe_dump({"cluster": cc.to_dict(), "worker_args": worker_args(cc),
                           "command": ["fluxscale", stage, *args]}, sort_keys=False)
