"""Bridge models: Lasso fits per second, and robustness repeats per second on Dask.

Setup (not timed): a twin of the size, its integrals, the prior's monthly NEE on land cells
and the regions' integrals (:func:`fluxscale.bridges.build.bridge_inputs`). Candidate sets are
random draws of ``n_candidates`` (100) cells of a region, as in the repeats.

Timed, medians of ``repeats`` runs:

* **Lasso fits**: :func:`fluxscale.bridges.lasso.fit_bridge` (a warm-started ``lasso_path`` over
  the geometric alpha path, in chunks of 8 alphas, stopping at the first alpha whose
  training R² reaches 0.95) against what a user of scikit-learn would write: a cold
  ``Lasso(alpha).fit`` per alpha down the same path until R² ≥ 0.95. Agreement: the share of
  fits that stop at the same alpha, and the largest difference of their R².
* **robustness repeats** (the bridge stage's ``_repeat_task``: a stratified draw and a fit per
  repeat, 25 repeats per task) for every region: on a LocalCluster of 2 single-threaded
  workers and of 1, against the same repeats in a plain loop in this process.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

import numpy as np

from .common import median_time, perf_report

FITS = {"tiny": 4, "small": 10, "full": 10}
"""Candidate sets per region for the Lasso fits."""
REPEATS = {"tiny": 10, "small": 50, "full": 50}
"""Robustness repeats per region."""


def _sklearn_loop(x: np.ndarray, y: np.ndarray, r2_threshold=0.95, n_alphas=60, alpha_min_ratio=1e-4):
    """The peer: cold scikit-learn Lasso fits down the alpha path until R² ≥ threshold (on
    the same scaled problem as fit_bridge, so that the alphas mean the same)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    xc, yc = x - x.mean(0), y - y.mean()
    xs, ys = xc / xc.std(), yc / yc.std()
    amax = float(np.abs(xs.T @ ys).max()) / x.shape[0]
    ss = float(ys @ ys)
    r2 = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, a in enumerate(amax * np.geomspace(1.0, alpha_min_ratio, n_alphas)[1:], start=1):
            m = Lasso(alpha=a, fit_intercept=False, max_iter=5000, tol=1e-6).fit(xs, ys)
            res = ys - xs @ m.coef_
            r2 = 1 - float(res @ res) / ss
            if r2 >= r2_threshold:
                return i, r2
    return n_alphas - 1, r2


def bench_bridge(size: str, workdir: str, repeats: int) -> dict:
    from distributed import Client, LocalCluster

    from fluxscale.bridges.build import _repeat_task, bridge_inputs
    from fluxscale.config import BridgeConfig
    from fluxscale.bridges.integrals import compute_integrals
    from fluxscale.bridges.lasso import fit_bridge
    from fluxscale.parallel import run_tasks
    from fluxscale.dataset.regions import REGION_ABBREVS
    from fluxscale.twin import make_twin

    root = Path(workdir) / f"bridge-{size}"
    make_twin(root, preset=size, show_progress=False)
    compute_integrals(root)
    grid, field, prior_int = bridge_inputs(root)
    cell_region = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values].astype(np.int64)
    cfg = BridgeConfig(repeats=REPEATS[size], repeats_per_task=25 if size != "tiny" else 5)
    regions = [r for r in range(len(REGION_ABBREVS)) if (cell_region == r).sum() > cfg.n_candidates]
    series = {r: np.ascontiguousarray(field[:, cell_region == r].T) for r in regions}
    targets = {r: prior_int.sel(region=REGION_ABBREVS[r]).values.astype(np.float64) for r in regions}
    rng = np.random.default_rng(0)
    problems = [(series[r][np.sort(rng.choice(series[r].shape[0], cfg.n_candidates, replace=False))].T, targets[r])
                for r in regions for _ in range(FITS[size])]

    def ours():
        return [fit_bridge(x, y, r2_threshold=cfg.r2_threshold, n_alphas=cfg.n_alphas,
                           alpha_min_ratio=cfg.alpha_min_ratio) for x, y in problems]

    def peer():
        return [_sklearn_loop(x, y, cfg.r2_threshold, cfg.n_alphas, cfg.alpha_min_ratio) for x, y in problems]

    t_ours, fits = median_time(ours, repeats)
    t_peer, peer_fits = median_time(peer, repeats)
    alphas = np.geomspace(1.0, cfg.alpha_min_ratio, cfg.n_alphas)
    same = [int(np.argmin(np.abs(alphas - f.alpha_ratio))) == i for f, (i, _) in zip(fits, peer_fits)]
    r2_diff = max(abs(f.r2_train - r2) for f, (_, r2) in zip(fits, peer_fits))

    # robustness repeats: uniform labels (one cluster), so a draw is a plain random sample
    labels = {r: np.zeros(series[r].shape[0], np.int64) for r in regions}
    batches = [(r, k, min(k + cfg.repeats_per_task, cfg.repeats)) for r in regions
               for k in range(0, cfg.repeats, cfg.repeats_per_task)]
    n_rep = len(regions) * cfg.repeats
    kw = dict(series=series, targets=targets, labels=labels, cfg=cfg)

    def loop():
        return [_repeat_task(b, **kw) for b in batches]

    t_loop, ref = median_time(loop, repeats)
    on_dask = {}
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          host="127.0.0.1") as lc, Client(lc) as c:
            c.run(lambda: __import__("fluxscale.bridges.build"))  # warm every worker: imports, then one task each
            run_tasks(_repeat_task, batches[:n], client=c, show_progress=False, **kw)
            ctx = perf_report(f"bridge-repeats-{size}") if n == 2 else contextlib.nullcontext()
            with ctx:
                t, got = median_time(lambda: run_tasks(_repeat_task, batches, client=c, show_progress=False, **kw),
                                     repeats)
            on_dask[n] = t
            assert all(np.array_equal(a["included"], b["included"]) for a, b in zip(got, ref)), \
                "the repeats on Dask differ from the loop"
    shutil.rmtree(root, ignore_errors=True)
    res = {"name": f"bridges ({size})", "size": size, "regions": len(regions), "candidates": cfg.n_candidates,
           "fits": len(problems), "fits_per_s": len(problems) / t_ours, "peer_fits_per_s": len(problems) / t_peer,
           "fit_speedup": t_peer / t_ours, "same_alpha_share": float(np.mean(same)), "max_r2_diff": float(r2_diff),
           "repeats": n_rep, "repeat_tasks": len(batches), "loop_s": t_loop,
           "dask_s": {str(k): v for k, v in on_dask.items()},
           "repeats_per_s": {"loop": n_rep / t_loop, "1 worker": n_rep / on_dask[1], "2 workers": n_rep / on_dask[2]}}
    res["rows"] = markdown_rows(res)
    return res


def markdown_rows(res: dict) -> list[dict]:
    size, rps = res["size"], res["repeats_per_s"]
    return [
        {"what": f"Lasso bridge fits ({size}): {res['fits']} fits, {res['candidates']} candidate pixels each",
         "fluxscale": f"{res['fits_per_s']:.1f} fits/s (warm-started path)",
         "peer": f"scikit-learn Lasso per alpha, cold {res['peer_fits_per_s']:.1f} fits/s; same alpha in "
                 f"{100 * res['same_alpha_share']:.0f} % of fits, max R² diff {res['max_r2_diff']:.1e}",
         "ratio": f"{res['fit_speedup']:.1f}×"},
        {"what": f"bridge robustness repeats ({size}): {res['repeats']} repeats, {res['regions']} regions, "
                 f"{res['repeat_tasks']} tasks, LocalCluster 2 workers × 1 thread",
         "fluxscale": f"{rps['2 workers']:.1f} repeats/s", "peer": f"a plain loop here {rps['loop']:.1f} repeats/s",
         "ratio": f"{rps['2 workers'] / rps['loop']:.2f}×"},
        {"what": f"bridge robustness repeats ({size}): 2 workers vs 1", "fluxscale": f"{rps['2 workers']:.1f} /s",
         "peer": f"1 worker {rps['1 worker']:.1f} /s", "ratio": f"{rps['2 workers'] / rps['1 worker']:.2f}×"},
    ]
