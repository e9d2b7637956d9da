"""The typed config tree: every stage's settings, twin presets, TOML loading.

``base`` (what every section shares: replace, to_dict, key_dict, checks, the setting
parser), ``twin`` (the twin's knobs and presets), ``stages`` (bridge, train, infer,
evaluate), ``cluster``, ``ingest`` (the ingest config and its TOML) and ``load`` (the run's
tree and its TOML).
"""

from fluxscale.config.base import coerce_setting
from fluxscale.config.cluster import ClusterConfig
from fluxscale.config.ingest import GcbInput, GriddedInput, IngestConfig, SitesInput, load_ingest_config
from fluxscale.config.load import RunConfig, load_config
from fluxscale.config.stages import PAPER_TRAIN, BridgeConfig, EvalConfig, InferConfig, TrainConfig
from fluxscale.config.twin import KNOB_RANGES, PRESETS, TwinConfig, draw_world, preset_name, twin_preset

__all__ = [
    "KNOB_RANGES",
    "draw_world",
    "TwinConfig",
    "EvalConfig",
    "BridgeConfig",
    "ClusterConfig",
    "RunConfig",
    "PRESETS",
    "twin_preset",
    "preset_name",
    "load_config",
    "TrainConfig",
    "InferConfig",
    "PAPER_TRAIN",
    "GriddedInput",
    "SitesInput",
    "GcbInput",
    "IngestConfig",
    "load_ingest_config",
    "coerce_setting",
]
