"""``fluxscale run``: the whole pipeline (orchestration only).

Stages, in order (:data:`STAGES`): ``data`` (make or reuse the twin, or ingest real files,
or use a directory that ``fluxscale ingest`` made) → ``validate`` (every value of every
store) → ``integrals`` → ``bridges`` (DTW, clusters, Lasso) → ``train`` (EC and EC-ATM) →
``infer`` (the NEE cube) → ``evaluate`` (tables, figures, report).

**Stage records.** ``<data_dir>/stages.json`` holds, per finished stage, a *key*: a hash of
the stage's config and of the key of the stage it reads from (``data``'s key hashes the
dataset manifest: its kind, creation time and config). A rerun skips a stage whose key is
unchanged and whose outputs exist; a changed config or rewritten input changes that stage's
key and so every key downstream. A stage interrupted midway resumes: training keeps the
members already written under the same key, inference the blocks already recorded, the
bridges their DTW matrices.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from fluxscale.cluster.client import cluster_client, describe_client
from fluxscale.config import RunConfig
from fluxscale.errors import FluxscaleError
from fluxscale.dataset.stores import open_store, open_stores, read_manifest, store_path

__all__ = ["STAGES", "StageLog", "inventory", "run_pipeline", "twin_is_current"]

STAGES = ("data", "validate", "integrals", "bridges", "train", "infer", "evaluate")
STAGE_FILE = "stages.json"


def twin_is_current(data_dir: str | Path, cfg) -> bool:
    """True when ``data_dir`` holds a complete twin written with exactly ``cfg``."""
    man = read_manifest(data_dir)
    # the manifest holds the config as JSON (tuples became lists): compare like with like
    return bool(man) and man.get("kind") == "twin" and same_config(man.get("config"), json.loads(json.dumps(cfg.to_dict())))


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class StageLog:
    """``<data_dir>/stages.json``: each finished stage's key, config, upstream, outputs,
    seconds and finish time (rewritten atomically after every stage)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / STAGE_FILE
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {}
        self.data.setdefault("stages", {})

    @staticmethod
    def key(name: str, config: Any, upstream: str | None) -> str:
        return _hash({"stage": name, "config": config, "upstream": upstream})

    def current(self, name: str, key: str, outputs: list[Path]) -> bool:
        rec = self.data["stages"].get(name)
        return bool(rec) and rec.get("key") == key and all(Path(p).exists() for p in outputs)

    def forget(self, name: str) -> None:
        if self.data["stages"].pop(name, None) is not None:
            self._write()

    def done(self, name: str, key: str, config: Any, upstream: str | None, outputs: list[Path], seconds: float) -> None:
        self.data["stages"][name] = {"key": key, "config": config, "upstream": upstream,
                                     "outputs": [str(p) for p in outputs], "seconds": round(seconds, 2),
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write()

    def record_timings(self, timings: dict[str, float]) -> None:
        self.data["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        self._write()

    def _write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


def _data_key(root: Path) -> str:
    man = read_manifest(root)
    if not man:
        raise FluxscaleError(f"{root}: no dataset manifest after the data stage")
    return _hash({k: man.get(k) for k in ("kind", "created", "config")})


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


def run_pipeline(cfg: RunConfig, console=None, show_progress: bool = True, preset: str | None = None,
                 until: str = "evaluate", overwrite: bool = False, verbose: bool = False) -> dict[str, Any]:
    """Run the stages of ``cfg`` up to ``until`` (see the module docstring); return the
    timings (s, per stage that ran; 0 for a skipped one), which stages were skipped, the
    report path, the end-of-run ``summary`` (:func:`fluxscale.run.summary.run_summary`: science
    checks, headline numbers, paths, stage times), whether a cluster was started
    (``cluster_started``: not when every stage is skipped) and, with ``verbose``, the store
    ``inventory``. Stages report progress with counts and an ETA
    (:func:`fluxscale.parallel.progress_bar`: plain lines when stdout is not a terminal).

    A complete dataset in ``cfg.data_dir`` made with another config is refused unless
    ``overwrite`` (:func:`check_replaces_nothing`); replacing it removes everything made from
    it (models, cube, report, stage log) first, and says so."""
    from fluxscale.bridges.build import build_bridges
    from fluxscale.config import load_ingest_config
    from fluxscale.infer.cube import cube_path
    from fluxscale.infer.stage import infer as run_infer
    from fluxscale.ingest import ingest
    from fluxscale.ingest.build import config_dict
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.evaluate.report import evaluate
    from fluxscale.parallel import working
    from fluxscale.run.summary import run_summary
    from fluxscale.learn.ensemble import train_ensemble
    from fluxscale.learn.model import models_dir
    from fluxscale.twin import write_twin

    if until not in STAGES:
        raise FluxscaleError(f"--until {until}: unknown stage; stages: {', '.join(STAGES)}")
    last = STAGES.index(until)
    say = (lambda m: console.print(m, highlight=False)) if console is not None else (lambda *a, **k: None)
    root = Path(cfg.data_dir)
    replaced = check_replaces_nothing(root, cfg, overwrite)  # before any cluster starts
    if replaced:
        say(f"data: --overwrite: replacing the dataset in {root}; removing what was made from it: "
            f"{', '.join(p.name for p in replaced)}")
    timings: dict[str, float] = {}
    skipped: list[str] = []
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    stack = contextlib.ExitStack()
    started: list = []

    def client():
        """The run's Dask client, started at the first stage that has work to do: a rerun
        that skips every stage starts no cluster."""
        if not started:
            started.append(stack.enter_context(cluster_client(cfg.cluster)))
            say(describe_client(started[0]))
        return started[0]

    with stack:
        t = time.perf_counter()
        man = read_manifest(root) or {}
        if cfg.ingest:
            icfg = load_ingest_config(cfg.ingest, out=str(root.resolve()))
            if cfg.reuse and man.get("kind") == "ingest" and same_config(man.get("config"), config_dict(icfg)):
                say(f"ingest: reusing the complete ingest of {cfg.ingest} in {root}")
                skipped.append("data")
            else:
                report = ingest(icfg, client=client(), show_progress=show_progress, say=say)
                say(report.text())
        elif man.get("kind") == "ingest":
            # never overwrite a user's ingested data with a twin
            say(f"data: using the ingested data in {root} (made by fluxscale ingest)")
            skipped.append("data")
        else:
            if cfg.reuse and twin_is_current(root, cfg.twin):
                say(f"twin: reusing the complete twin in {root}")
                skipped.append("data")
            else:
                write_twin(root, cfg.twin, client=client(), show_progress=show_progress, preset=preset)
        timings["data"] = time.perf_counter() - t
        log = StageLog(root)
        upstream = _data_key(root)
        keys = {"data": upstream}

        def stage(name: str, config: Any, after: str, outputs: list[Path], work: Callable[[str], None]) -> None:
            if STAGES.index(name) > last:
                return
            key = StageLog.key(name, config, keys[after])
            keys[name] = key
            if log.current(name, key, outputs):
                say(f"{name}: inputs and config unchanged since {log.data['stages'][name]['finished']} "
                    f"(skipped)")
                skipped.append(name)
                timings[name] = 0.0
                return
            log.forget(name)
            t = time.perf_counter()
            work(key)
            timings[name] = time.perf_counter() - t
            log.done(name, key, config, keys[after], outputs, timings[name])

        def validate(_key: str) -> None:
            client()
            with working("validate: checking every value of every store (one Dask pass)",
                         console is not None and show_progress, console):
                open_stores(root, deep=True)
            say(f"validate: every store of {root} matches the schema")

        def integrals(_key: str) -> None:
            with working("integrals: regional sums of the prior, inversions and fire (one Dask pass)",
                         console is not None and show_progress, console):
                path = compute_integrals(root, client=client())
            say(f"integrals: {path}")

        stage("validate", {}, "data", [root / "fluxscale.json"], validate)
        stage("integrals", {}, "data", [store_path(root, "integrals")], integrals)
        stage("bridges", cfg.bridge.to_dict(), "integrals", [store_path(root, "bridges")],
              lambda _k: say(f"bridges: {build_bridges(root, cfg.bridge, client=client(), show_progress=show_progress, say=say)}"))
        # how the members are scheduled (group_size, retries) does not change their weights
        stage("train", cfg.train.key_dict(),
              "bridges", [models_dir(root) / "members.json"],
              lambda k: train_ensemble(root, cfg.train, client=client(), show_progress=show_progress, say=say,
                                       resume_key=k))
        stage("infer", cfg.infer.to_dict(), "train", [cube_path(root, cfg.infer)],
              lambda _k: run_infer(root, cfg.infer, client=client(), show_progress=show_progress, say=say))
        ev_cfg = cfg.evaluate.replace(cube=cfg.infer.out)  # both relative to the data directory
        report_dir = Path(ev_cfg.out) if Path(ev_cfg.out).is_absolute() else root / ev_cfg.out

        def run_eval(_key: str) -> None:
            log.record_timings({**timings, "total": time.perf_counter() - t0})  # for the report's provenance
            with working("evaluate: tables, figures and the report", console is not None and show_progress, console):
                evaluate(root, ev_cfg, client=client(), say=say)

        stage("evaluate", ev_cfg.to_dict(), "infer", [report_dir / "report.html"], run_eval)
    timings["total"] = time.perf_counter() - t0
    log.record_timings(timings)
    out.update(timings_s={k: round(v, 2) for k, v in timings.items()}, skipped=skipped,
               summary=run_summary(report_dir if last >= STAGES.index("evaluate") else root / ".no-report",
                                   cube_path(root, cfg.infer) if last >= STAGES.index("infer") else None,
                                   timings, skipped),
               stages=log.data["stages"], cluster_started=bool(started))
    if verbose:
        out["inventory"] = inventory(root)
    if last >= STAGES.index("evaluate"):
        out["report"] = str(report_dir / "report.html")
    return out


def inventory(root: str | Path) -> str:
    """The store inventory of a dataset directory (every store's variables, the region
    table; the bridges' table when there are bridges): ``fluxscale info DIR`` and
    ``fluxscale run --verbose``."""
    from fluxscale.run.summary import bridge_table, summarize_dataset

    root = Path(root)
    text = summarize_dataset(root, open_stores(root))
    if store_path(root, "bridges").exists():
        text += "\nbridges:\n" + bridge_table(open_store(store_path(root, "bridges"), "bridges"))
    return text
