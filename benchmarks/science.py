"""The science sweep: the dual-constraint claims on twin worlds drawn at random.

``python -m benchmarks.science --worlds 10 [--split tuning|test] [--preset tiny] [--years 6]
[--folds 5] [--seed 0] [--set train.atm_term=bridges ...] [--out science-out]``

``--split tuning`` (the default) draws the worlds from ``--seed`` (worlds ``w0``, ``w1``, …):
they are for development, to measure candidates on. ``--split test`` draws them from a
separate stream, ``np.random.default_rng([seed, 1])`` (worlds ``t0``, ``t1``, …), their twin
seeds shifted by :data:`TEST_SEED_OFFSET`, apart from every tuning world; run them only for the final numbers of a change (docs/evaluation.md,
"Scorecard and baselines").

Draws ``--worlds`` twin worlds from the documented knob ranges
(:data:`fluxscale.config.KNOB_RANGES`, :func:`fluxscale.config.draw_world`), runs the whole
pipeline on each (``run_pipeline``: twin, integrals, bridges, EC and EC-ATM training,
inference, evaluation) at a reduced size said in the output, and writes per world and
overall: the global period mean and annual RMSE against the truth of EC, EC-ATM and the
inversion mean, every EC-ATM member's global mean, the tropical and extratropical means,
the bridge decoupling of both ensembles, the monthly-R count, the site RMSE ratio, the
per-cell RMSE of mean annual NEE and every science check (:func:`fluxscale.evaluate.
science_checks`). Results go to ``OUT/science.json`` and ``OUT/science.md`` after each
world; a rerun with the same ``--out`` skips the worlds already done.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _value(df: pd.DataFrame, table: str, model: str, region: str, reference: str, metric: str) -> float:
    from fluxscale.evaluate import table_value

    return table_value(df, table, model, region, reference, metric)


def systems_global_means(root: Path) -> dict[str, float]:
    """Each inversion system's period-mean global NEE over complete years, PgC/yr (from
    ``integrals.zarr``): the envelope the ATM term's ℓ3 norm over systems sits in."""
    import xarray as xr

    inv = xr.open_zarr(root / "integrals.zarr").inversions.sel(region="GLOBAL").load()
    t = pd.DatetimeIndex(inv.time.values)
    full = [y for y in np.unique(t.year) if np.sum(t.year == y) == 12]
    ann = inv.groupby("time.year").sum().sel(year=full).mean("year")
    return {str(s): float(v) for s, v in zip(ann.system.values, ann.values)}


def world_result(root: Path) -> dict:
    """The figures of one finished world from its report (``metrics.csv``, ``summary.json``)."""
    rep = root / "report"
    df = pd.read_csv(rep / "metrics.csv")
    summary = json.loads((rep / "summary.json").read_text())
    G = "GLOBAL"
    out = {"checks": summary["science_checks"], "scorecard": summary.get("scorecard")}
    for m in ("truth", "inversions", "EC", "EC-ATM"):
        out[f"{m} mean"] = _value(df, "consistency", m, G, "-", "mean")
        if m != "truth":
            out[f"{m} RMSE"] = _value(df, "consistency", m, G, "truth", "annual RMSE")
    for m in ("truth", "EC", "EC-ATM"):
        for band in ("TROPICS", "EXTRATROPICS"):
            out[f"{m} {band.lower()}"] = _value(df, "consistency", m, band, "-", "mean")
    for m in ("EC", "EC-ATM"):
        out[f"{m} pixel RMSE"] = _value(df, "consistency", m, "PIXELS", "truth", "RMSE mean annual")
        b = df[(df.table == "bridge") & (df.metric == "rel diff") & (df.model == m)]
        out[f"{m} decoupling"] = float(b.value.mean()) if len(b) else float("nan")  # the paper's bridges
        b = df[(df.table == "bridge") & (df.metric == "term rel diff") & (df.model == m)]
        out[f"{m} term decoupling"] = float(b.value.mean()) if len(b) else float("nan")  # the term it trained with
        site = _value(df, "site", m, "ALL", "towers", "RMSE")
        out[f"{m} site RMSE"] = site
    out["truth site RMSE"] = _value(df, "site", "truth", "ALL", "towers", "RMSE")
    mem = df[(df.table == "consistency") & df.region.str.startswith("member ")]
    out["members"] = {r.region.removeprefix("member "): float(r.value) for r in mem.itertuples()}
    r = df[(df.table == "monthly") & (df.reference == "inversions") & (df.metric == "R") & (df.region != G)]
    w = r.pivot_table(index="region", columns="model", values="value")
    out["R count"] = int((w["EC-ATM"] >= w["EC"]).sum())
    out["systems"] = systems_global_means(root)
    members = json.loads((root / "models" / "members.json").read_text())
    out["flagged"] = members.get("flagged", {})
    out["best epochs"] = {k: v["best_epoch"] for k, v in members["members"].items()}
    return out


def scorecard_markdown(sc: dict) -> list[str]:
    """One world's scorecard (``summary.json``'s ``scorecard``) as a markdown table: metrics
    as rows, products as columns, the best of each row in bold, the default marked ``*``."""
    metrics = list(sc.get("unit", {}))
    products = list(dict.fromkeys(p for m in metrics for p in sc.get(m, {})))
    default = sc.get("default")
    head = ["metric", *[p + (" *" if p == default else "") for p in products]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        cells = []
        for p in products:
            v = sc[m].get(p)
            text = "–" if v is None else f"{v:.4g}"
            cells.append(f"**{text}**" if p in sc.get("best", {}).get(m, []) else text)
        lines.append(f"| {m} ({sc['unit'][m]}; vs {sc['reference'][m]}) | " + " | ".join(cells) + " |")
    return lines


def to_markdown(res: dict) -> str:
    split = res.get("split", "tuning")
    lines = [f"# Science sweep: {len(res['worlds'])} {split} twin worlds", "",
             f"Command: `{res['command']}`", "",
             f"Size: {res['size']}. Knobs drawn uniformly from `fluxscale.config.KNOB_RANGES`; "
             "PgC/yr; RMSE = global annual RMSE against the truth; decoupling = mean over regions of the "
             "relative difference from the member's full integral (§3.5) of the atmospheric term EC-ATM trained "
             "with (term) and of the paper's bridges, against EC's bridges; site ratio = EC-ATM's site RMSE / "
             "EC's (the truth's own in brackets).", "",
             "| world | truth | inversions (RMSE) | EC (RMSE) | EC-ATM (RMSE) | EC-ATM members | "
             "tropics EC-ATM / truth | extratropics EC-ATM / truth | decoupling EC-ATM term, bridges / EC | "
             "R count | site ratio | pixel RMSE EC-ATM / EC | checks failed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    n_pass = 0
    for w in res["worlds"]:
        r = w["result"]
        mem = list(v for k, v in r["members"].items() if k.startswith("ecatm")) or [float("nan")]
        failed = [c["check"] for c in r["checks"] if not c["passed"]]
        n_pass += not failed
        lines.append(
            f"| {w['name']} | {r['truth mean']:.2f} | {r['inversions mean']:.2f} ({r['inversions RMSE']:.2f}) | "
            f"{r['EC mean']:.2f} ({r['EC RMSE']:.2f}) | {r['EC-ATM mean']:.2f} ({r['EC-ATM RMSE']:.2f}) | "
            f"{min(mem):.2f} … {max(mem):.2f} | {r['EC-ATM tropics']:.2f} / {r['truth tropics']:.2f} | "
            f"{r['EC-ATM extratropics']:.2f} / {r['truth extratropics']:.2f} | "
            f"{r['EC-ATM term decoupling']:.3f}, {r['EC-ATM decoupling']:.3f} / {r['EC decoupling']:.3f} | "
            f"{r['R count']} | {r['EC-ATM site RMSE'] / r['EC site RMSE']:.3f} "
            f"({r['truth site RMSE'] / r['EC site RMSE']:.3f}) | "
            f"{r['EC-ATM pixel RMSE'] / r['EC pixel RMSE']:.2f} | {'; '.join(failed) or 'none'} |")
    lines += ["", f"Worlds passing every check: **{n_pass} of {len(res['worlds'])}**.", ""]
    checks: dict[str, list[bool]] = {}
    for w in res["worlds"]:
        for c in w["result"]["checks"]:
            checks.setdefault(c["check"], []).append(bool(c["passed"]))
    lines += ["| check | worlds passing |", "|---|---|"]
    lines += [f"| {k} | {sum(v)} of {len(v)} |" for k, v in checks.items()]
    for w in res["worlds"]:
        sc = w["result"].get("scorecard")
        if sc:
            lines += ["", f"Scorecard of {w['name']} ({split}; * the default product, bold the best of each row):", ""]
            lines += scorecard_markdown(sc)
    lines += ["", "World knobs:", ""]
    lines += [f"- {w['name']}: " + ", ".join(f"{k}={v}" for k, v in w["knobs"].items()) for w in res["worlds"]]
    return "\n".join(lines) + "\n"


TEST_SEED_OFFSET = 10_000
"""Added to a test world's twin seed (:func:`fluxscale.config.draw_world` draws it in [0, 10 000)),
so that no test world shares its twin seed with a tuning world."""


def world_stream(seed: int, split: str) -> np.random.Generator:
    """The random stream the worlds of a split are drawn from: ``default_rng(seed)`` for the
    tuning worlds (as before the split), ``default_rng([seed, 1])`` for the test worlds (a
    stream apart: no test world repeats a tuning world's draw)."""
    if split not in ("tuning", "test"):
        raise ValueError(f"split {split!r}: tuning or test")
    return np.random.default_rng(seed if split == "tuning" else [seed, 1])


def paper_formulation(root: Path, cfg) -> None:
    """Train the paper's formulation of EC-ATM (:data:`fluxscale.config.PAPER_TRAIN`, the run's
    folds and epochs) as model set ``paper``, infer its cube ``nee-paper.zarr`` (no layer) and
    evaluate the run again with that cube in the scorecard (``evaluate.compare``)."""
    from fluxscale.cluster.client import cluster_client
    from fluxscale.config import PAPER_TRAIN, InferConfig
    from fluxscale.evaluate.report import evaluate
    from fluxscale.infer.stage import infer
    from fluxscale.learn.ensemble import train_ensemble

    train = cfg.train.replace(**PAPER_TRAIN, model_set="paper", variants=("ecatm",))
    with cluster_client(cfg.cluster) as client:
        train_ensemble(root, train, client=client, show_progress=False)
        infer(root, InferConfig(model_set="paper", variants=("ecatm",), layer=False), client=client,
              show_progress=False)
        evaluate(root, cfg.evaluate.replace(compare=("nee-paper.zarr",)), client=client)


def main(argv=None) -> dict:
    from fluxscale.run.flags import parse_run_sets
    from fluxscale.config import (BridgeConfig, ClusterConfig, EvalConfig, RunConfig, TrainConfig, draw_world,
                                  twin_preset, PRESETS)
    from fluxscale.run.pipeline import run_pipeline

    ap = argparse.ArgumentParser(prog="python -m benchmarks.science", description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw of the worlds")
    ap.add_argument("--split", default="tuning", choices=("tuning", "test"),
                    help="tuning worlds (drawn from --seed; for development) or test worlds (drawn apart, from "
                         "[seed, 1]; only for the final numbers of a change)")
    ap.add_argument("--preset", default="tiny", choices=("tiny", "small"))
    ap.add_argument("--years", type=int, default=6, help="years of record from 2001 (the preset's if 0)")
    ap.add_argument("--folds", type=int, default=5, help="members per ensemble")
    ap.add_argument("--repeats", type=int, default=50, help="bridge robustness repeats per region")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE",
                    help="train.* or bridge.* settings for every world, e.g. train.atm_term=bridges")
    ap.add_argument("--keep", action="store_true", help="keep each world's data directory")
    ap.add_argument("--paper", action="store_true",
                    help="also train the paper's formulation of EC-ATM (fluxscale.config.PAPER_TRAIN) as model set "
                         "'paper' in every world and score it in the same scorecard ('EC-ATM [paper]')")
    ap.add_argument("--out", default="science-out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = TrainConfig(folds=tuple(range(args.folds)))
    bridge = BridgeConfig(repeats=args.repeats)
    sets = parse_run_sets(args.set, RunConfig(train=train, bridge=bridge))
    unknown = set(sets) - {"train", "bridge"}
    if unknown:
        ap.error(f"--set: only train.* and bridge.* settings apply to every world, not {', '.join(sorted(unknown))}")
    train, bridge = train.replace(**sets.get("train", {})), bridge.replace(**sets.get("bridge", {}))
    base_sites = PRESETS[args.preset].get("n_sites", 300) if args.preset != "tiny" else 120
    size = {"n_sites": base_sites}
    if args.years:
        size["end_year"] = 2001 + args.years - 1
    rng = world_stream(args.seed, args.split)
    path = out / "science.json"
    res = json.loads(path.read_text()) if path.exists() else {"worlds": [], "split": args.split}
    if res.get("split", "tuning") != args.split:
        ap.error(f"{path} holds {res.get('split', 'tuning')} worlds; use another --out for --split {args.split}")
    res["split"] = args.split
    done = {w["name"] for w in res["worlds"]}
    res.update(command="python -m benchmarks.science " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
               size=f"preset {args.preset} (resolution {twin_preset(args.preset).resolution_deg}°), "
                    f"{args.years or 'all'} years, ~{base_sites} towers (×0.8–1.2), {args.folds} members per "
                    f"ensemble, {train.epochs} epochs × {train.steps_per_epoch} steps, {args.repeats} bridge repeats",
               train=train.to_dict())
    for i in range(args.worlds):
        knobs = draw_world(rng, size["n_sites"])
        if args.split == "test":  # the twin's own seed apart too: tuning worlds draw theirs in [0, 10 000)
            knobs["seed"] += TEST_SEED_OFFSET
        name = f"{'w' if args.split == 'tuning' else 't'}{i}"
        if name in done:
            continue
        root = out / name
        shutil.rmtree(root, ignore_errors=True)
        cfg = RunConfig(data_dir=str(root), twin=twin_preset(args.preset, **{**size, **knobs}),
                        cluster=ClusterConfig(n_workers=args.workers), bridge=bridge, train=train,
                        evaluate=EvalConfig(maps=False))
        t = time.perf_counter()
        run_pipeline(cfg, show_progress=False)
        if args.paper:
            paper_formulation(root, cfg)
        result = world_result(root)
        res["worlds"].append({"name": name, "knobs": knobs, "seconds": time.perf_counter() - t, "result": result})
        path.write_text(json.dumps(res, indent=2, default=float))
        (out / "science.md").write_text(to_markdown(res))
        print(f"{name}: EC-ATM {result['EC-ATM mean']:.2f} (RMSE {result['EC-ATM RMSE']:.2f}) truth "
              f"{result['truth mean']:.2f}; failed: {[c['check'] for c in result['checks'] if not c['passed']]}",
              flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(to_markdown(res))
    return res


if __name__ == "__main__":
    main()
