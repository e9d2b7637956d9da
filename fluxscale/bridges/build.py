"""The bridge stage: DTW → spectral clusters → candidate pixels → Lasso bridges, with the
robustness repeats, on Dask (paper §3.3.1, Eq. 1–3, Fig. B2).

Per region of Table A1, from the prior's monthly NEE on the region's land cells and the
prior's regional integral (``integrals.zarr``):

1. the DTW distance matrix of the cells' series, tiled on the workers and kept in
   ``dtw/<REGION>.zarr`` (computed once; reused while the series and settings are the
   same); regions above ``max_exact_cells`` skip it and use the Nyström path;
2. spectral clusters on the DTW affinity (:mod:`fluxscale.bridges.clustering`);
3. ``repeats`` robustness repeats, each with a fresh stratified sample of
   ``n_candidates`` cells and a Lasso bridge (:func:`fluxscale.bridges.lasso.fit_bridge`), run in
   batches of ``repeats_per_task`` per Dask task; per-cell inclusion counts (Fig. B2) and
   the contributing pixels' composition by cluster;
4. the final bridge: a Lasso on the ``n_candidates`` cells that the repeats included most
   often (ties: lower cell index), with the same alpha rule, checked by contiguous-block
   k-fold CV. Why: a single random draw can miss the pixels that carry the region (the
   repeats then pick their neighbours); the most-included cells are the stable constraint
   the repeats keep finding, so the final bridge does not hinge on one lucky or unlucky
   sample. With ``repeats = 0`` the seed's first stratified sample is used.

Every random draw is seeded by ``(seed, region, repeat)``, so results do not depend on
how the repeats are batched or on the number of workers.
"""

from __future__ import annotations

import time as _time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fluxscale.bridges.clustering import nystrom_clusters, spectral_clusters, stratified_sample
from fluxscale.config import BridgeConfig
from fluxscale.errors import StoreError
from fluxscale.dataset.grid import gather_cells
from fluxscale.bridges.lasso import cv_r2, fit_bridge, predict_bridge
from fluxscale.parallel import progress_bar, run_tasks
from fluxscale.dataset.regions import REGION_ABBREVS, REGIONS
from fluxscale.dataset.stores import open_store, open_stores, store_path, write_store

__all__ = ["build_bridges", "apply_bridges", "bridge_inputs", "dtw_dir"]

_PRIMARY = 1  # seed stream of the primary sample (repeats use stream 0)


def dtw_dir(root: str | Path) -> Path:
    """Where a dataset's DTW matrices live: ``root/dtw/<REGION>.zarr``."""
    return Path(root) / "dtw"


def bridge_inputs(root: str | Path) -> tuple[xr.Dataset, np.ndarray, xr.DataArray]:
    """The grid, the prior's monthly NEE on land cells ``(time, cell)`` float64 and the
    prior's regional integrals ``(region, time)`` on the same months (PgC month-1)."""
    root = Path(root)
    s = open_stores(root, names=["grid", "prior"])
    grid = s["grid"].load()
    integ = open_store(store_path(root, "integrals"), "integrals")
    prior = s["prior"].NEE
    months = np.intersect1d(prior.time.values, integ.time.values)
    if months.size < 24:
        raise StoreError(str(store_path(root, "integrals")), "prior",
                         f"only {months.size} months shared with the prior store; bridges need at least 24")
    field = gather_cells(prior.sel(time=months), grid).values.astype(np.float64)
    bad = np.isnan(field)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise StoreError(str(store_path(root, "prior")), "NEE",
                         f"{int(bad.sum())} NaN values on land cells (first: month {str(months[t])[:7]}, "
                         f"cell {c} at {grid.cell_lat.values[c]:.2f}N {grid.cell_lon.values[c]:.2f}E)")
    return grid, field, integ.prior.sel(time=months).load()


# --- tasks (module level so they pickle) ------------------------------------------------

def _exact_cluster_task(region: int, *, cfg: BridgeConfig, dtw_paths: dict) -> tuple[np.ndarray, float, str]:
    """Spectral clusters from the region's stored DTW matrix (the worker reads it itself)."""
    import zarr

    d = zarr.open_array(dtw_paths[region], mode="r")[...]
    labels, scale = spectral_clusters(d, cfg.n_clusters, cfg.seed + region)
    return labels, scale, "exact"


def _sample(labels: np.ndarray, cfg: BridgeConfig, region: int, stream: int, k: int) -> np.ndarray:
    return stratified_sample(labels, cfg.n_candidates, np.random.default_rng([cfg.seed, region, stream, k]))


def _repeat_task(batch: tuple[int, int, int], *, series: dict, targets: dict, labels: dict,
                 cfg: BridgeConfig) -> dict[str, Any]:
    """Repeats ``r0 ≤ k < r1`` of one region: counts of offers and inclusions per cell,
    and each repeat's training R² and number of contributing pixels."""
    region, r0, r1 = batch
    x, y, lab = series[region], targets[region], labels[region]
    offered = np.zeros(x.shape[0], np.int64)
    included = np.zeros(x.shape[0], np.int64)
    r2 = np.empty(r1 - r0)
    npix = np.empty(r1 - r0, np.int64)
    for i, k in enumerate(range(r0, r1)):
        cand = _sample(lab, cfg, region, 0, k)
        fit = fit_bridge(x[cand].T, y, r2_threshold=cfg.r2_threshold, n_alphas=cfg.n_alphas,
                         alpha_min_ratio=cfg.alpha_min_ratio)
        offered[cand] += 1
        included[cand[fit.pixels]] += 1
        r2[i], npix[i] = fit.r2_train, fit.pixels.size
    return {"region": region, "r0": r0, "offered": offered, "included": included, "r2": r2, "n_pixels": npix}


def _final_task(region: int, *, series: dict, targets: dict, labels: dict, included: dict,
                cfg: BridgeConfig) -> dict[str, Any]:
    x, y = series[region], targets[region]
    if cfg.repeats > 0:
        order = np.lexsort((np.arange(x.shape[0]), -included[region]))
        cand = np.sort(order[:min(cfg.n_candidates, x.shape[0])])
    else:
        cand = _sample(labels[region], cfg, region, _PRIMARY, 0)
    fit = fit_bridge(x[cand].T, y, r2_threshold=cfg.r2_threshold, n_alphas=cfg.n_alphas,
                     alpha_min_ratio=cfg.alpha_min_ratio)
    folds = min(cfg.cv_folds, y.size)
    return {"region": region, "candidates": cand, "fit": fit,
            "r2_cv": cv_r2(x[cand].T, y, fit.alpha, folds) if fit.pixels.size else float("nan")}


def _pairs(x: np.ndarray) -> int:
    """Cell pairs of a region's DTW matrix (its upper triangle with the diagonal)."""
    return x.shape[0] * (x.shape[0] + 1) // 2


# --- the stage ---------------------------------------------------------------------------

def build_bridges(root: str | Path, cfg: BridgeConfig = BridgeConfig(), *, client=None, show_progress: bool = True,
                  out: str | Path | None = None, say=None) -> Path:
    """Build the bridge store ``bridges.zarr`` of the dataset directory ``root``.

    Needs ``grid``, ``prior`` and ``integrals`` (run :func:`fluxscale.bridges.integrals.compute_integrals`
    first). Runs the DTW tiles, the clustering, the repeats and the final fits as tasks on
    ``client`` (default: threads here). Returns the store's path; see
    :func:`_bridge_dataset` for its contents.
    """
    from fluxscale.bridges.dtw import distance_matrix_tiled

    say = say or (lambda *a: None)
    root = Path(root)
    timings: dict[str, float] = {}
    t = _time.perf_counter()
    grid, field, prior_int = bridge_inputs(root)
    cell_region = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values].astype(np.int64)
    cells = {r.id: np.flatnonzero(cell_region == r.id) for r in REGIONS}
    regions = [r for r, c in cells.items() if c.size >= 2]
    skipped = [REGION_ABBREVS[r] for r, c in cells.items() if c.size < 2]
    if skipped:
        say(f"bridge: regions with fewer than 2 land cells get no bridge: {', '.join(skipped)}")
    series = {r: np.ascontiguousarray(field[:, cells[r]].T) for r in regions}  # (cells, months)
    targets = {r: prior_int.sel(region=REGION_ABBREVS[r]).values.astype(np.float64) for r in regions}
    timings["inputs"] = _time.perf_counter() - t

    t = _time.perf_counter()
    dtw_paths = {}
    exact_r = [r for r in regions if series[r].shape[0] <= cfg.max_exact_cells]
    # one bar over every region, counted in cell pairs (a region's cost), not 18 bars
    with progress_bar(show_progress) as progress:
        task = progress.add_task("bridge: DTW cell pairs", total=sum(_pairs(series[r]) for r in exact_r))
        for r in exact_r:
            path = dtw_dir(root) / f"{REGION_ABBREVS[r]}.zarr"
            distance_matrix_tiled(series[r], path, window=cfg.dtw_window, tile=cfg.dtw_tile, client=client,
                                  show_progress=False, label=f"bridge: DTW {REGION_ABBREVS[r]}")
            dtw_paths[r] = str(path)
            progress.update(task, advance=_pairs(series[r]))
    timings["dtw"] = _time.perf_counter() - t
    say(f"bridge: DTW matrices of {len(dtw_paths)} regions in {dtw_dir(root)} ({timings['dtw']:.1f} s)")
    t = _time.perf_counter()
    nystrom = [r for r in regions if r not in dtw_paths]
    exact = [r for r in regions if r in dtw_paths]
    res = dict(zip(exact, run_tasks(_exact_cluster_task, exact, client=client, label="bridge: clusters",
                                    show_progress=show_progress, cfg=cfg, dtw_paths=dtw_paths)))
    for r in nystrom:  # dask-ml runs its own graph (on the client's cluster when there is one)
        labels_r, scale = nystrom_clusters(series[r], cfg.n_clusters, cfg.seed, window=cfg.dtw_window,
                                           n_components=cfg.nystrom_components)
        res[r] = (labels_r, scale, "nystrom")
    labels = {r: res[r][0] for r in regions}
    timings["clusters"] = _time.perf_counter() - t
    say(f"bridge: {cfg.n_clusters} spectral clusters per region ({len(exact)} exact, {len(nystrom)} Nyström"
        f"{': ' + ', '.join(REGION_ABBREVS[r] for r in nystrom) if nystrom else ''}; {timings['clusters']:.1f} s)")

    t = _time.perf_counter()
    batches = [(r, k, min(k + cfg.repeats_per_task, cfg.repeats)) for r in regions
               for k in range(0, cfg.repeats, cfg.repeats_per_task)]
    offered = {r: np.zeros(series[r].shape[0], np.int64) for r in regions}
    included = {r: np.zeros(series[r].shape[0], np.int64) for r in regions}
    rep_r2 = np.full((len(REGIONS), cfg.repeats), np.nan)
    rep_n = np.zeros((len(REGIONS), cfg.repeats), np.int64)
    for b in run_tasks(_repeat_task, batches, client=client, label="bridge: repeats", show_progress=show_progress,
                       series=series, targets=targets, labels=labels, cfg=cfg):
        r, r0 = b["region"], b["r0"]
        offered[r] += b["offered"]
        included[r] += b["included"]
        rep_r2[r, r0:r0 + b["r2"].size] = b["r2"]
        rep_n[r, r0:r0 + b["r2"].size] = b["n_pixels"]
    timings["repeats"] = _time.perf_counter() - t
    say(f"bridge: {cfg.repeats} robustness repeats × {len(regions)} regions in {len(batches)} tasks "
        f"({timings['repeats']:.1f} s)")

    t = _time.perf_counter()
    finals = run_tasks(_final_task, regions, client=client, label="bridge: final fits", show_progress=show_progress,
                       series=series, targets=targets, labels=labels, included=included, cfg=cfg)
    timings["final"] = _time.perf_counter() - t
    ds = _bridge_dataset(grid, cells, labels, {r: res[r][1:] for r in regions}, finals, offered, included,
                         rep_r2, rep_n, cfg)
    ds.attrs.update(source=str(root), timings_s=str({k: round(v, 2) for k, v in timings.items()}))
    bad = [REGION_ABBREVS[f["region"]] for f in finals if not f["fit"].met]
    if bad:
        say(f"bridge: training R² stayed below {cfg.r2_threshold} in {', '.join(bad)} (end of the alpha path kept)")
    return write_store(ds, out or store_path(root, "bridges"), "bridges")


def _bridge_dataset(grid, cells, labels, cluster_info, finals, offered, included, rep_r2, rep_n,
                    cfg: BridgeConfig) -> xr.Dataset:
    """The bridge store: per region (``region``), per contributing pixel (``pixel``,
    grouped by region), per land cell (``cell``: cluster, inclusion counts) and per
    (region, cluster) composition."""
    nreg, ncell, k = len(REGIONS), grid.sizes["cell"], cfg.n_clusters
    per = {n: np.full(nreg, np.nan) for n in ("bias", "alpha", "alpha_ratio", "r2_train", "r2_cv", "affinity_scale")}
    n_pix = np.zeros(nreg, np.int32)
    n_cand = np.zeros(nreg, np.int32)
    met = np.zeros(nreg, bool)
    method = np.array([""] * nreg, dtype=object)
    pix = {n: [] for n in ("region", "cell", "weight", "cluster")}
    cluster = np.full(ncell, -1, np.int32)
    size = np.zeros((nreg, k), np.int32)
    comp = np.zeros((nreg, k), np.int32)
    comp_rep = np.zeros((nreg, k), np.int64)
    for f in finals:
        r, fit = f["region"], f["fit"]
        lab = labels[r]
        cluster[cells[r]] = lab
        size[r] = np.bincount(lab, minlength=k)[:k]
        comp_rep[r] = np.bincount(lab, weights=included[r], minlength=k)[:k]
        sel = f["candidates"][fit.pixels]
        comp[r] = np.bincount(lab[sel], minlength=k)[:k]
        per["bias"][r], per["alpha"][r], per["alpha_ratio"][r] = fit.bias, fit.alpha, fit.alpha_ratio
        per["r2_train"][r], per["r2_cv"][r], per["affinity_scale"][r] = fit.r2_train, f["r2_cv"], cluster_info[r][0]
        n_pix[r], n_cand[r], met[r], method[r] = sel.size, f["candidates"].size, fit.met, cluster_info[r][1]
        pix["region"].append(np.full(sel.size, r, np.int16))
        pix["cell"].append(cells[r][sel].astype(np.int32))
        pix["weight"].append(fit.weights)
        pix["cluster"].append(lab[sel].astype(np.int32))
    pix = {n: np.concatenate(v) if v else np.zeros(0) for n, v in pix.items()}
    inc = np.zeros(ncell, np.int64)
    off = np.zeros(ncell, np.int64)
    for r in included:
        inc[cells[r]] = included[r]
        off[cells[r]] = offered[r]
    pc = pix["cell"].astype(np.int64)
    bridge_units = "PgC month-1 (gC m-2 d-1)-1"
    ds = xr.Dataset(
        {
            "bias": ("region", per["bias"], {"units": "PgC month-1", "long_name": "bridge intercept b_r (Eq. 7)"}),
            "alpha": ("region", per["alpha"], {"long_name": "Lasso alpha, objective (1/2T)|y-b-Xw|^2 + alpha|w|_1"}),
            "alpha_ratio": ("region", per["alpha_ratio"], {"units": "1", "long_name": "alpha / alpha_max"}),
            "r2_train": ("region", per["r2_train"], {"units": "1", "long_name": "training R2 of the bridge"}),
            "r2_cv": ("region", per["r2_cv"], {"units": "1", "long_name":
                                               f"{cfg.cv_folds}-fold CV R2, folds = contiguous blocks of months"}),
            "met_threshold": ("region", met, {"long_name": f"training R2 >= {cfg.r2_threshold}"}),
            "n_pixels": ("region", n_pix, {"long_name": "contributing pixels"}),
            "n_candidates": ("region", n_cand, {"long_name": "candidate pixels of the final fit"}),
            "n_cells": ("region", np.array([cells[r.id].size for r in REGIONS], np.int32),
                        {"long_name": "land cells of the region"}),
            "affinity_scale": ("region", per["affinity_scale"], {"units": "gC m-2 d-1", "long_name":
                               "sigma of the DTW Gaussian affinity exp(-d^2 / (2 sigma^2)): median DTW distance"}),
            "clustering": ("region", method, {"long_name": "exact (full DTW matrix) or nystrom (dask-ml)"}),
            "pixel_region": ("pixel", pix["region"].astype(np.int16), {"long_name": "region id (Table A1)"}),
            "pixel_cell": ("pixel", pix["cell"].astype(np.int32), {"long_name": "land cell index of the grid"}),
            "weight": ("pixel", pix["weight"].astype(np.float64), {"units": bridge_units,
                                                                   "long_name": "bridge weight beta_p (Eq. 7)"}),
            "pixel_cluster": ("pixel", pix["cluster"].astype(np.int32), {"long_name": "spectral cluster of the pixel"}),
            "cluster": ("cell", cluster, {"long_name": "spectral cluster within the cell's region (-1: none)"}),
            "inclusion_count": ("cell", inc, {"long_name": "repeats in which the cell was a contributing pixel (Fig. B2)"}),
            "candidate_count": ("cell", off, {"long_name": "repeats in which the cell was a candidate"}),
            "cluster_size": (("region", "cluster_id"), size, {"long_name": "land cells per cluster"}),
            "composition": (("region", "cluster_id"), comp, {"long_name": "contributing pixels of the final bridge per cluster"}),
            "composition_repeats": (("region", "cluster_id"), comp_rep,
                                    {"long_name": "contributing pixels per cluster, summed over the repeats"}),
            "repeat_r2_train": (("region", "repeat"), rep_r2, {"units": "1", "long_name": "training R2 of each repeat"}),
            "repeat_n_pixels": (("region", "repeat"), rep_n, {"long_name": "contributing pixels of each repeat"}),
        },
        coords={
            "region": ("region", np.array(REGION_ABBREVS, dtype=object)),
            "cluster_id": ("cluster_id", np.arange(k, dtype=np.int32)),
            "repeat": ("repeat", np.arange(cfg.repeats, dtype=np.int32)),
            "cell": ("cell", grid.cell.values),
            "cell_lat": ("cell", grid.cell_lat.values, {"units": "degrees_north"}),
            "cell_lon": ("cell", grid.cell_lon.values, {"units": "degrees_east"}),
            "pixel": ("pixel", np.arange(pc.size, dtype=np.int32)),
            "pixel_lat": ("pixel", grid.cell_lat.values[pc], {"units": "degrees_north", "standard_name": "latitude"}),
            "pixel_lon": ("pixel", grid.cell_lon.values[pc], {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "fluxscale Lasso bridge models (paper Eq. 3, 7)", "Conventions": "CF-1.10",
               "config": str(cfg.to_dict()),
               "bridge_equation": "NEE_region[t] = bias[region] + sum(weight[p] * NEE[t, pixel_cell[p]] "
                                  "for p with pixel_region == region), PgC month-1 from gC m-2 d-1"},
    )
    return ds


def apply_bridges(bridges: xr.Dataset, nee: xr.DataArray) -> xr.DataArray:
    """Eq. 7 for every region: the bridges applied to monthly NEE on land cells.

    ``nee``: ``(time, cell)`` gC m-2 d-1 (monthly means). Returns ``(region, time)``
    PgC month-1 (NaN for a region without a bridge).
    """
    vals = np.asarray(nee.transpose("time", "cell").values, dtype=np.float64)
    out = np.full((bridges.sizes["region"], vals.shape[0]), np.nan)
    reg = bridges.pixel_region.values
    for r in range(bridges.sizes["region"]):
        m = reg == r
        if np.isfinite(bridges.bias.values[r]):
            out[r] = predict_bridge(vals[:, bridges.pixel_cell.values[m]], bridges.weight.values[m], bridges.bias.values[r])
    return xr.DataArray(out, dims=("region", "time"), coords={"region": bridges.region.values, "time": nee.time.values},
                        attrs={"units": "PgC month-1", "long_name": "regional NEE from the bridge models (Eq. 7)"})
