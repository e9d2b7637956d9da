"""Readable summaries of stores and dataset directories (``fluxscale info``) and the end of
``fluxscale run``; the stages' names and outputs come from :mod:`fluxscale.run.stages`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from fluxscale.config import preset_name
from fluxscale.dataset.grid import cell_land_area
from fluxscale.dataset.regions import REGIONS
from fluxscale.dataset.schema import SCHEMAS
from fluxscale.dataset.stores import MANIFEST, open_store, open_stores, read_manifest, store_path
from fluxscale.run.stages import STAGES, stage_named

__all__ = ["summarize_store", "summarize_dataset", "region_table", "run_summary", "stage_time_table", "inventory",
           "scorecard_lines"]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _span(ds: xr.Dataset) -> str:
    parts = []
    for dim in ("time", "month"):
        if dim in ds.coords and ds.sizes.get(dim):
            t = ds[dim].values
            parts.append(f"{dim} {np.datetime_as_string(t[0], 'D')} … {np.datetime_as_string(t[-1], 'D')}")
    if "year" in ds.coords and ds.sizes.get("year"):
        parts.append(f"years {int(ds.year[0])}–{int(ds.year[-1])}")
    return "; ".join(parts) or "-"


def summarize_store(path: str | Path, name: str | None = None, ds: xr.Dataset | None = None) -> str:
    """Variables (dims, dtype, units, chunks), sizes, time span and size on disk of one store."""
    path = Path(path)
    ds = ds if ds is not None else open_store(path, name)
    name = name or ds.attrs.get("fluxscale_store", path.stem)
    lines = [f"{path}  [{name}]  {_du(path) / 2**20:.1f} MiB on disk",
             f"  dims: {', '.join(f'{k}={v}' for k, v in ds.sizes.items())}", f"  span: {_span(ds)}"]
    for v, var in sorted(ds.data_vars.items()):
        chunks = "" if var.chunks is None else " chunks " + "x".join(str(c[0]) for c in var.chunks)
        units = var.attrs.get("units", "")
        lines.append(f"  {v:<20} ({', '.join(var.dims)}) {var.dtype} {units}{chunks}")
    return "\n".join(lines)


def region_table(grid: xr.Dataset, sites: xr.Dataset | None = None) -> str:
    """Per region of Table A1: land cells, land area (10⁶ km²) and towers."""
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    reg = grid.region.values[il, jl]
    area = cell_land_area(grid)
    nsite = np.bincount(reg[sites.cell.values], minlength=len(REGIONS)) if sites is not None else None
    head = f"  {'id':>2} {'abbrev':<5} {'name':<25} {'cells':>7} {'area 1e6 km2':>12}" + (f" {'towers':>6}" if nsite is not None else "")
    lines = [head]
    for r in REGIONS:
        m = reg == r.id
        row = f"  {r.id:>2} {r.abbrev:<5} {r.name:<25} {int(m.sum()):>7} {area[m].sum() / 1e12:>12.2f}"
        lines.append(row + (f" {int(nsite[r.id]):>6}" if nsite is not None else ""))
    total = f"  {'':>2} {'all':<5} {'':<25} {reg.size:>7} {area.sum() / 1e12:>12.2f}"
    lines.append(total + (f" {int(nsite.sum()):>6}" if nsite is not None else ""))
    return "\n".join(lines)


def summarize_dataset(root: str | Path, stores: dict[str, xr.Dataset] | None = None) -> str:
    """Summary of a dataset directory: manifest, every store, the region table.

    ``stores``: the directory's stores if already opened (by :func:`open_stores`)."""
    root = Path(root)
    stores = stores if stores is not None else open_stores(root)
    man = read_manifest(root)
    lines = [f"dataset {root}"]
    if man:
        cfg = man.get("config", {})
        made = (f"ingest of {Path(cfg.get('base', '?'))}: {man.get('ingest', {}).get('n_files_read', '?')} files read, "
                f"{len(man.get('ingest', {}).get('skipped', []))} skipped" if man.get("kind") == "ingest"
                else f"{man.get('kind', '?')} preset={man.get('preset') or preset_name(cfg)} seed={cfg.get('seed')}")
        lines.append(f"  {made} resolution={cfg.get('resolution_deg')}° years={cfg.get('start_year')}–{cfg.get('end_year')} "
                     f"created {man.get('created')} by fluxscale {man.get('fluxscale_version')}")
    else:
        lines.append(f"  (no {MANIFEST}: not written by the twin or fluxscale ingest, or unfinished)")
    for n in SCHEMAS:
        if n in stores:
            lines.append(summarize_store(store_path(root, n), n, stores[n]))
        elif n == "nee" and store_path(root, n).exists():  # the NEE cube (not opened by open_stores)
            lines.append(summarize_store(store_path(root, n), n))
    lines.append("regions (Table A1):")
    lines.append(region_table(stores["grid"], stores.get("sites")))
    if "truth" in stores:
        ann = stores["truth"].NEE_global_annual.values
        lines.append(f"truth: global NEE {ann.mean():.2f} PgC/yr (IAV sd {ann.std(ddof=1):.2f})")
    gcb = stores["gcb"]
    lines.append(f"gcb: global NEE {float(gcb.NEE.mean()):.2f} ± {float(gcb.NEE_sigma.mean()):.2f} PgC/yr")
    return "\n".join(lines)


def integrals_table(ds: xr.Dataset) -> str:
    """Mean annual regional integrals (PgC yr-1) of an ``integrals`` store, one row per region."""
    years = ds.time.dt.year
    ann = {k: ds[k].groupby(years).sum().mean("year") for k in ("prior", "fire", "truth") if k in ds}
    inv = ds.inversions.groupby(years).sum().mean("year")
    head = f"{'region':8s}" + "".join(f"{k:>9s}" for k in ann) + f"{'inversions (min…max over systems)':>36s}"
    lines = [f"regional integrals, mean annual PgC/yr over {int(years.min())}–{int(years.max())}", head]
    for r in ds.region.values:
        row = f"{r!s:8s}" + "".join(f"{float(v.sel(region=r)):9.3f}" for v in ann.values())
        i = inv.sel(region=r)
        lines.append(row + f"{float(i.mean()):18.3f} ({float(i.min()):.3f}…{float(i.max()):.3f})")
    return "\n".join(lines)


def bridge_table(ds: xr.Dataset) -> str:
    """One row per region of a ``bridges`` store: cells, pixels, alpha ratio, R²."""
    lines = [f"{'region':8s}{'cells':>7s}{'pixels':>8s}{'alpha/max':>11s}{'R2 train':>10s}{'R2 CV':>8s}"
             f"{'repeats R2 (median)':>21s}  clustering"]
    for i, r in enumerate(ds.region.values):
        rep = ds.repeat_r2_train.values[i] if "repeat_r2_train" in ds else np.array([])
        med = f"{np.nanmedian(rep):.3f}" if rep.size and np.isfinite(rep).any() else "-"
        lines.append(f"{r!s:8s}{int(ds.n_cells.values[i]):7d}{int(ds.n_pixels.values[i]):8d}"
                     f"{float(ds.alpha_ratio.values[i]):11.2e}{float(ds.r2_train.values[i]):10.3f}"
                     f"{float(ds.r2_cv.values[i]):8.3f}{med:>21s}  {ds.clustering.values[i]!s}")
    return "\n".join(lines)


def stage_time_table(timings: dict[str, float], skipped: list[str] | tuple[str, ...] = ()) -> str:
    """Stage times as a two-row table (``m:ss``; ``skip`` for a stage skipped as unchanged,
    ``-`` for one that did not run)."""
    from fluxscale.parallel import format_duration

    names = [*STAGES, "total"]
    cells = ["skip" if n in skipped else (format_duration(timings[n]) if n in timings else "-") for n in names]
    width = [max(len(n), len(c)) for n, c in zip(names, cells)]
    return "\n".join(["  stage  " + " ".join(n.rjust(w) for n, w in zip(names, width)),
                      "  m:ss   " + " ".join(c.rjust(w) for c, w in zip(cells, width))])


def run_summary(report_dir: str | Path, cube: str | Path | None = None, timings: dict[str, float] | None = None,
                skipped: list[str] | tuple[str, ...] = ()) -> str:
    """The end of ``fluxscale run`` in about a dozen lines, read from what the run wrote:
    the science checks (PASS/FAIL with their values, from ``summary.json``; the scorecard's
    name the best baseline of each metric and its value), the default product's scorecard
    rows that no check covers (real data: every row; :func:`scorecard_lines`), the headline
    numbers (from ``metrics.csv``, as the report's headline), where the report and the cube
    are, and the stage times (:func:`stage_time_table`). The store inventory is
    :func:`summarize_dataset` (``fluxscale info DIR``, ``fluxscale run --verbose``)."""
    import json

    import pandas as pd

    from fluxscale.evaluate.report import headline_numbers, truth_note

    report_dir = Path(report_dir)
    lines: list[str] = []
    summ = report_dir / "summary.json"
    if summ.exists():
        summary = json.loads(summ.read_text())
        checks = summary.get("science_checks", [])
        if checks:
            n_pass = sum(bool(c["passed"]) for c in checks)
            lines.append(f"science checks against the twin's truth: {n_pass} of {len(checks)} pass")
            lines += [f"  {'PASS' if c['passed'] else 'FAIL'}  {c['check']} = {c['value']:.3g} (bound {c['bound']}"
                      f"{truth_note(c)})" for c in checks]
        lines += scorecard_lines(summary)
    metrics = report_dir / "metrics.csv"
    if metrics.exists():
        head = headline_numbers(pd.read_csv(metrics))
        lines.append("headline:")
        lines += [f"  {k}: {v}" for k, v in head.items() if "members'" not in k]
    if (report_dir / "report.html").exists():
        lines.append(f"report: {report_dir / 'report.html'}")
    if cube is not None and Path(cube).exists():
        lines.append(f"cube:   {cube} (xarray.open_zarr)")
    if timings:
        lines.append("stage times:")
        lines.append(stage_time_table(timings, skipped))
    return "\n".join(lines)


def scorecard_lines(summary: dict) -> list[str]:
    """The default product's scorecard in a few lines from ``summary.json``: per metric its
    value, the best baseline's and which it is; metrics a scorecard check already prints
    (a twin) are left out."""
    from fluxscale.evaluate.baselines import BASELINES

    sc = summary.get("scorecard")
    if not sc:
        return []
    default = sc.get("default", "EC-ATM")
    covered = {c["check"].removeprefix("scorecard: ").split(" vs ")[0] for c in summary.get("science_checks", [])
               if "best" in c}
    rows = []
    for metric, unit in sc.get("unit", {}).items():
        vals = sc.get(metric, {})
        v = vals.get(default)
        if metric in covered or v is None:
            continue
        base = {p: vals[p] for p in BASELINES if vals.get(p) is not None}
        best = min(base, key=base.get) if base else None
        rows.append(f"  {metric} vs {sc['reference'][metric]}: {default} {v:.4g}"
                    + (f", best baseline {best} {base[best]:.4g}" if best else "") + f" {unit}")
    return ([f"scorecard of {default}:"] + rows) if rows else []


def inventory(root: str | Path) -> str:
    """The store inventory of a dataset directory (every store's variables, the region
    table; the bridges' table when there are bridges): ``fluxscale info DIR`` and
    ``fluxscale run --verbose``."""
    root = Path(root)
    text = summarize_dataset(root, open_stores(root))
    bridges = stage_named("bridges").found_at(root)
    if bridges.exists():
        text += "\nbridges:\n" + bridge_table(open_store(bridges, "bridges"))
    return text
