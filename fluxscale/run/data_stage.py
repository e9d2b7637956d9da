"""The ``data`` stage of ``fluxscale run``: make the dataset (the twin, or an ingest of real
files), reuse a complete one made with the same config, or refuse to replace one made
otherwise (orchestration only).

A dataset directory's identity is its manifest (:func:`fluxscale.dataset.stores.read_manifest`):
its kind (``twin`` or ``ingest``), creation time and config. :func:`check_replaces_nothing`
runs before any cluster starts; :func:`make_data` is the stage's work.
"""

from __future__ import annotations

import json
from pathlib import Path

from fluxscale.config import RunConfig
from fluxscale.dataset.stores import read_manifest
from fluxscale.errors import FluxscaleError

__all__ = ["check_replaces_nothing", "make_data", "same_config", "twin_is_current"]


def twin_is_current(data_dir: str | Path, cfg) -> bool:
    """True when ``data_dir`` holds a complete twin written with exactly ``cfg``."""
    man = read_manifest(data_dir)
    # the manifest holds the config as JSON (tuples became lists): compare like with like
    return bool(man) and man.get("kind") == "twin" and same_config(man.get("config"), json.loads(json.dumps(cfg.to_dict())))


def same_config(old, new) -> bool:
    """Whether a manifest's recorded config ``old`` (JSON) is ``new``'s, where a setting
    that ``old`` lacks counts as the same when ``new`` leaves it empty (None, "", [], {}
    or false): a setting added by a later fluxscale version, at its off default, does not
    make a dataset made before it look foreign."""
    if isinstance(old, dict) and isinstance(new, dict):
        return all(same_config(old[k], new[k]) if k in old else new[k] in (None, "", [], {}, False)
                   for k in new) and set(old) <= set(new)
    return old == new


def _config_difference(old: dict, new: dict, limit: int = 4) -> str:
    """``key: old → new`` for the settings that differ (the first ``limit``)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_replaces_nothing(root: Path, cfg: RunConfig, overwrite: bool, twin_over_ingest: bool = False) -> list[Path]:
    """Refuse (:class:`FluxscaleError`) to build a dataset in ``root`` over a complete one
    made with another config (or a twin over an ingest, or the reverse), naming the
    difference, unless ``overwrite``; returns what the new dataset would remove
    (:func:`fluxscale.dataset.stores.stale_outputs`) when it is replaced. ``twin_over_ingest``: the
    caller writes a twin whatever is there (``fluxscale twin``); without it an ingested
    dataset is left alone and used (``fluxscale run``)."""
    from fluxscale.ingest.build import config_dict
    from fluxscale.dataset.stores import stale_outputs

    root = Path(root)
    man = read_manifest(root)
    if not man:
        return []
    if cfg.ingest:
        from fluxscale.config import load_ingest_config

        want = config_dict(load_ingest_config(cfg.ingest, out=str(root.resolve())))
        if man.get("kind") == "ingest" and same_config(man.get("config"), want):
            return []
        what = "a twin" if man.get("kind") == "twin" else \
            f"an ingest with another config ({_config_difference(man.get('config') or {}, want)})"
    else:
        if twin_is_current(root, cfg.twin):
            return []
        if man.get("kind") != "twin":
            if not twin_over_ingest:
                return []  # `run` uses an ingested dataset as it is, never replaces it with a twin
            what = "an ingested dataset (fluxscale ingest)"
        else:
            what = "a twin made with other settings (" + \
                _config_difference(man.get("config") or {}, json.loads(json.dumps(cfg.twin.to_dict()))) + ")"
    stale = stale_outputs(root)
    if not overwrite:
        raise FluxscaleError(
            f"{root}: holds {what}; nothing was changed. Rerun with the settings it was made with, choose "
            f"another --out, or add --overwrite to replace it"
            + (f" (removes {', '.join(p.name for p in stale)})" if stale else ""))
    return stale


def make_data(run, _settings=None, _key: str | None = None) -> bool:
    """The data stage's work (``run``: a :class:`fluxscale.run.stages.StageRun`): ingest ``run.cfg.ingest`` or write the twin into ``run.root``,
    unless a complete dataset of the same config is there (with ``reuse``) or the
    directory holds an ingest and the run asks for a twin (a user's ingested data is never
    overwritten with a twin). Returns True when nothing was made (the stage is skipped)."""
    from fluxscale.config import load_ingest_config
    from fluxscale.ingest import ingest
    from fluxscale.ingest.build import config_dict
    from fluxscale.twin import write_twin

    cfg, root, say = run.cfg, run.root, run.say
    man = read_manifest(root) or {}
    if cfg.ingest:
        icfg = load_ingest_config(cfg.ingest, out=str(root.resolve()))
        if cfg.reuse and man.get("kind") == "ingest" and same_config(man.get("config"), config_dict(icfg)):
            say(f"ingest: reusing the complete ingest of {cfg.ingest} in {root}")
            return True
        report = ingest(icfg, client=run.client(), show_progress=run.show_progress, say=say)
        say(report.text())
        return False
    if man.get("kind") == "ingest":
        # never overwrite a user's ingested data with a twin
        say(f"data: using the ingested data in {root} (made by fluxscale ingest)")
        return True
    if cfg.reuse and twin_is_current(root, cfg.twin):
        say(f"twin: reusing the complete twin in {root}")
        return True
    write_twin(root, cfg.twin, client=run.client(), show_progress=run.show_progress, preset=run.preset)
    return False
