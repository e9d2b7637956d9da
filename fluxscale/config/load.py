"""The whole run's config tree (:class:`RunConfig`: the twin, the cluster and every stage's
section) and its TOML file (:func:`load_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fluxscale.config.base import coerce_value, read_toml, settings_table
from fluxscale.config.cluster import ClusterConfig
from fluxscale.config.stages import BridgeConfig, EvalConfig, InferConfig, TrainConfig
from fluxscale.config.twin import TwinConfig, twin_preset
from fluxscale.errors import ConfigError

__all__ = ["RunConfig", "load_config"]


@dataclass(frozen=True)
class RunConfig:
    """``fluxscale run``: the whole pipeline on one dataset directory (see
    :mod:`fluxscale.run.pipeline`): the twin (or ingest) in ``data_dir``, validation,
    integrals, bridges, training, inference and evaluation, each with its section here.
    """

    data_dir: str = "fluxscale-run/data"
    twin: TwinConfig = field(default_factory=lambda: twin_preset("small"))
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    reuse: bool = True
    """Reuse a complete twin (or ingest) in ``data_dir`` written with the same config."""
    ingest: str | None = None
    """An ingest TOML (see :func:`load_ingest_config`): the stages run on the real files it
    names, ingested into ``data_dir``, instead of on a twin."""


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML config file into a :class:`RunConfig`.

    Layout (every key optional; unknown keys are errors)::

        data_dir = "fluxscale-run/data"
        ingest = "ingest.toml"   # optional: real files instead of the twin
        [twin]      # preset = "small" plus any TwinConfig field
        [cluster]   # ClusterConfig fields, e.g. scheduler_address = "tcp://host:8786"
        [bridge]    # BridgeConfig fields, e.g. repeats = 200, dtw_window = 6
        [train]     # TrainConfig fields, e.g. epochs = 30, systems = ["CAMS"]
        [infer]     # InferConfig fields, e.g. write_members = true
        [evaluate]  # EvalConfig fields, e.g. out = "report", maps = false
    """
    path = Path(path)
    raw = read_toml(path)
    top = {"data_dir", "reuse", "ingest", "twin", "cluster", "bridge", "train", "infer", "evaluate"}
    unknown = set(raw) - top
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(top))}")
    twin = dict(raw.get("twin", {}))
    preset = twin.pop("preset", "small")
    try:
        return RunConfig(
            data_dir=str(raw.get("data_dir", RunConfig.data_dir)),
            twin=twin_preset(preset, **settings_table(TwinConfig, twin, "[twin]", strict=True)),
            cluster=ClusterConfig(**settings_table(ClusterConfig, raw.get("cluster", {}), "[cluster]", strict=True)),
            bridge=BridgeConfig(**settings_table(BridgeConfig, raw.get("bridge", {}), "[bridge]", strict=True)),
            train=TrainConfig(**settings_table(TrainConfig, raw.get("train", {}), "[train]", strict=True)),
            infer=InferConfig(**settings_table(InferConfig, raw.get("infer", {}), "[infer]", strict=True)),
            evaluate=EvalConfig(**settings_table(EvalConfig, raw.get("evaluate", {}), "[evaluate]", strict=True)),
            reuse=coerce_value(bool, raw.get("reuse", True), "reuse"),
            ingest=str(path.parent / raw["ingest"]) if raw.get("ingest") else None,
        )
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
