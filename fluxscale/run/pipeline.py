"""``fluxscale run``: the whole pipeline (orchestration only).

Stages, in order (:data:`fluxscale.run.stages.STAGES`): ``data`` (make or reuse the twin,
or ingest real files, or use a directory that ``fluxscale ingest`` made) → ``validate``
(every value of every store) → ``integrals`` → ``bridges`` (DTW, clusters, Lasso) →
``train`` (EC and EC-ATM) → ``infer`` (the NEE cube) → ``evaluate`` (tables, figures, report).

**Stage records.** ``<data_dir>/stages.json`` holds, per finished stage, a *key*: a hash of
the stage's config and of the key of the stage it reads from (``data``'s key hashes the
dataset manifest: its kind, creation time and config). A rerun skips a stage whose key is
unchanged and whose outputs exist; a changed config or rewritten input changes that stage's
key and so every key downstream. A stage interrupted midway resumes: training keeps the
members already written under the same key, inference the blocks already recorded, the
bridges their DTW matrices.

The stages themselves (what each reads, writes, keys and runs) are the table of
:mod:`fluxscale.run.stages`; this module runs it: one loop over the table, a stage record
per finished stage, one client for the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from fluxscale.cluster.client import cluster_client, describe_client
from fluxscale.config import RunConfig
from fluxscale.dataset.stores import read_manifest
from fluxscale.errors import FluxscaleError
from fluxscale.run.data_stage import check_replaces_nothing, same_config, twin_is_current  # noqa: F401  (re-exported)
from fluxscale.run.stages import STAGE_TABLE, STAGES, Stage, StageRun, stage_named
from fluxscale.run.summary import inventory, run_summary

__all__ = ["STAGES", "StageLog", "inventory", "run_pipeline", "twin_is_current"]

STAGE_FILE = "stages.json"


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




class _PipelineRun:
    """The state of one ``fluxscale run``: the stage log, each stage's key, the timings,
    the stages skipped and the run's client (started at the first stage with work)."""

    def __init__(self, cfg: RunConfig, root: Path, say, console, show_progress: bool, preset: str | None):
        self.cfg, self.root, self.say = cfg, root, say
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []
        self.keys: dict[str, str] = {}
        self.log: StageLog | None = None
        self.t0 = time.perf_counter()
        self.stack = contextlib.ExitStack()
        self.started: list = []
        self.work = StageRun(root, cfg, self.client, say, console, show_progress, preset, self.record_timings)

    def client(self):
        """The run's Dask client, started at the first stage that has work to do: a rerun
        that skips every stage starts no cluster."""
        if not self.started:
            self.started.append(self.stack.enter_context(cluster_client(self.cfg.cluster)))
            self.say(describe_client(self.started[0]))
        return self.started[0]

    def record_timings(self) -> None:
        """The stage times so far (and the total) into ``stages.json``."""
        self.log.record_timings({**self.timings, "total": time.perf_counter() - self.t0})

    def run(self, stage: Stage) -> None:
        """Run (or skip) one stage of the table."""
        if stage.upstream is None:
            self.make_data(stage)
        else:
            self.run_keyed(stage)

    def make_data(self, stage: Stage) -> None:
        """The data stage: its record is the dataset manifest, whose hash is its key."""
        t = time.perf_counter()
        if stage.work(self.work):
            self.skipped.append(stage.name)
        self.timings[stage.name] = time.perf_counter() - t
        self.log = StageLog(self.root)
        self.keys[stage.name] = _data_key(self.root)

    def run_keyed(self, stage: Stage) -> None:
        """A stage with a record in ``stages.json``: skipped when its key is unchanged and
        its outputs exist, else run and recorded."""
        settings = stage.settings(self.cfg)
        config = stage.key_settings(self.cfg)
        outputs = stage.paths(self.root, self.cfg)
        upstream = self.keys[stage.upstream]
        key = self.keys[stage.name] = StageLog.key(stage.name, config, upstream)
        if self.log.current(stage.name, key, outputs):
            self.say(f"{stage.name}: inputs and config unchanged since "
                     f"{self.log.data['stages'][stage.name]['finished']} (skipped)")
            self.skipped.append(stage.name)
            self.timings[stage.name] = 0.0
            return
        self.log.forget(stage.name)
        t = time.perf_counter()
        stage.work(self.work, settings, key)
        self.timings[stage.name] = time.perf_counter() - t
        self.log.done(stage.name, key, config, upstream, outputs, self.timings[stage.name])

    def result(self, last: int, verbose: bool) -> dict[str, Any]:
        """What :func:`run_pipeline` returns (after the cluster is closed)."""
        self.timings["total"] = time.perf_counter() - self.t0
        self.log.record_timings(self.timings)
        report = stage_named("evaluate").paths(self.root, self.cfg)[0]
        cube = stage_named("infer").paths(self.root, self.cfg)[0]
        reported = last >= STAGES.index("evaluate")
        out: dict[str, Any] = {
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()}, "skipped": self.skipped,
            "summary": run_summary(report.parent if reported else self.root / ".no-report",
                                   cube if last >= STAGES.index("infer") else None, self.timings, self.skipped),
            "stages": self.log.data["stages"], "cluster_started": bool(self.started)}
        if verbose:
            out["inventory"] = inventory(self.root)
        if reported:
            out["report"] = str(report)
        return out


def _say_on(console):
    """Print a line on ``console`` (nothing without one)."""
    return (lambda m: console.print(m, highlight=False)) if console is not None else (lambda *a, **k: None)


def _last_stage(until: str) -> int:
    if until not in STAGES:
        raise FluxscaleError(f"--until {until}: unknown stage; stages: {', '.join(STAGES)}")
    return STAGES.index(until)


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
    last = _last_stage(until)
    say = _say_on(console)
    root = Path(cfg.data_dir)
    replaced = check_replaces_nothing(root, cfg, overwrite)  # before any cluster starts
    if replaced:
        say(f"data: --overwrite: replacing the dataset in {root}; removing what was made from it: "
            f"{', '.join(p.name for p in replaced)}")
    run = _PipelineRun(cfg, root, say, console, show_progress, preset)
    with run.stack:
        for stage in STAGE_TABLE[: last + 1]:
            run.run(stage)
    return run.result(last, verbose)
