"""``fluxscale run``: the pipeline runner (orchestration only).

Stages so far: make (or reuse) the twin, or ingest real files (``RunConfig.ingest``), or
use a directory that ``fluxscale ingest`` made → deep validation of every store → regional
integrals → DTW, clusters and Lasso bridges → summary. Later stages (training, inference,
evaluation) append here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .cluster import cluster_client, describe_client
from .config import RunConfig
from .stores import open_store, open_stores, read_manifest

__all__ = ["run_pipeline", "twin_is_current"]


def twin_is_current(data_dir: str | Path, cfg) -> bool:
    """True when ``data_dir`` holds a complete twin written with exactly ``cfg``."""
    man = read_manifest(data_dir)
    # the manifest holds the config as JSON (tuples became lists): compare like with like
    return bool(man) and man.get("kind") == "twin" and man.get("config") == json.loads(json.dumps(cfg.to_dict()))


def run_pipeline(cfg: RunConfig, console=None, show_progress: bool = True, preset: str | None = None) -> dict[str, Any]:
    """Run every available stage on ``cfg``; return timings and the dataset summary."""
    from .bridge import build_bridges
    from .config import load_ingest_config
    from .ingest import ingest
    from .ingest.build import config_dict
    from .integrals import compute_integrals
    from .summary import bridge_table, summarize_dataset
    from .twin import write_twin

    say = console.print if console is not None else (lambda *a, **k: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with cluster_client(cfg.cluster) as client:
        say(describe_client(client))
        t = time.perf_counter()
        man = read_manifest(cfg.data_dir) or {}
        if cfg.ingest:
            icfg = load_ingest_config(cfg.ingest, out=str(Path(cfg.data_dir).resolve()))
            if cfg.reuse and man.get("kind") == "ingest" and man.get("config") == config_dict(icfg):
                say(f"ingest: reusing the complete ingest of {cfg.ingest} in {cfg.data_dir}")
            else:
                report = ingest(icfg, client=client, show_progress=show_progress, say=say)
                say(report.text())
            timings["ingest"] = time.perf_counter() - t
        elif man.get("kind") == "ingest":
            # never overwrite a user's ingested data with a twin
            say(f"data: using the ingested data in {cfg.data_dir} (made by fluxscale ingest)")
        else:
            if cfg.reuse and twin_is_current(cfg.data_dir, cfg.twin):
                say(f"twin: reusing the complete twin in {cfg.data_dir}")
            else:
                write_twin(cfg.data_dir, cfg.twin, client=client, show_progress=show_progress, preset=preset)
            timings["twin"] = time.perf_counter() - t
        t = time.perf_counter()
        if console is not None and show_progress:
            with console.status("validate: checking every value of every store (one Dask pass)"):
                stores = open_stores(cfg.data_dir, deep=True)
        else:
            stores = open_stores(cfg.data_dir, deep=True)
        timings["validate"] = time.perf_counter() - t
        say(f"validate: every store of {cfg.data_dir} matches the schema")
        t = time.perf_counter()
        integ = compute_integrals(cfg.data_dir, client=client)
        timings["integrals"] = time.perf_counter() - t
        say(f"integrals: {integ}")
        t = time.perf_counter()
        bridges = build_bridges(cfg.data_dir, cfg.bridge, client=client, show_progress=show_progress, say=say)
        timings["bridges"] = time.perf_counter() - t
        say(f"bridges: {bridges}")
    timings["total"] = time.perf_counter() - t0
    summary = summarize_dataset(cfg.data_dir, stores) + "\nbridges:\n" + bridge_table(open_store(bridges, "bridges"))
    return {"timings_s": {k: round(v, 2) for k, v in timings.items()}, "summary": summary}
