"""The sampled atmospheric term: regional integrals of the model's own output estimated from
a fresh random sample of every region's land cells each step (an alternative to the paper's
bridges, Eq. 7, selected with ``TrainConfig.atm_term = "sampled"``).

Why: the bridges (Eq. 7) map the monthly NEE of 1–34 pixels per region to the regional
integral with weights fitted on the *prior*. A network trained through them can satisfy the
bridge pixels in ways the rest of the region does not follow (§3.5, "decoupling"); on the
twin every EC-ATM member ended more decoupled than EC, and the global mean of EC-ATM missed
the truth by 2–5 PgC/yr in three of four worlds (docs/evaluation.md). A random sample of the
region's own cells has no fitted weights to exploit: its expectation is the model's full
regional integral whatever the network does, so the only way to lower the loss is to move
the whole region.

The design (a two-phase sample, every estimate unbiased for the full regional integral):

* **Pool.** Per member (seeded by ``(seed, fold)``, so members' pools differ and their
  pool errors average out in the ensemble), each region contributes ``atm_pool_cells`` land
  cells drawn with replacement with probability ∝ land area, weight ``w = A_region / P``
  (Hansen–Hurwitz); a region with no more cells than that contributes all of them, weight
  ``w = A_cell`` (exact). The pool's daily drivers stay in memory compactly: ``Tair`` and
  ``WAI2`` ``(days, cells, 2)`` plus the seasonal ``(366, cells, 4)`` and static ``(cells, 4)``
  drivers, about 8 B × days × cells (229 MB for 4 608 cells × 17 years).
* **Step.** One training year; per region ``atm_sample_cells`` cells drawn uniformly
  without replacement from its pool (weights × pool size / sample size), per month
  ``atm_sample_days`` days drawn uniformly without replacement (their mean is an unbiased
  monthly mean, Eq. 6). 18 regions × 32 cells × 12 months × 8 days = 55 296 forward
  samples, about the bridges' 365 days × 133 pixels.
* **Control variate** (``atm_control_variate``, :class:`StaleTable`). The sample's value
  carries the spread of NEE between a region's cells; through a nonlinear loss that noise
  softens the pull (an ℓ1 distance to a target behaves like a spring of stiffness ~1/noise
  near it) and, with the Kendall weights, the noise floor of the loss lowers its weight.
  Each pool cell keeps the model's monthly value from the last step that sampled it; a
  step's estimate is Σ_pool weight·last-seen + Σ_sample scale·(now − last-seen): unbiased
  whatever the table holds (the correction's expectation is the pool total minus the
  table's), with noise set by how much the network changed since each cell was last seen.
  The gradient is the plain sample's; only the loss's value (and so its slope) is cleaner.
* **Validation.** A fixed subset (the first ``atm_val_cells`` of every region's pool,
  re-weighted to stand for the pool) on every day of the validation months.

Estimates are PgC month⁻¹: ``Σ_i w_i · NEE_i(month) · days_in_month / 10¹⁵`` with NEE in
gC m⁻² d⁻¹ and ``w`` in m².
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluxscale.dataset.driver_kernels import SOURCE_INDEX, SOURCE_KIND, gather_rows
from fluxscale.dataset.schema import DAILY_DRIVERS, DRIVER_NAMES, SEASONAL_DRIVERS, STATIC_DRIVERS

__all__ = ["CellPool", "StaleTable", "draw_pool", "load_pool", "load_pools", "step_sample", "fixed_subset", "member_pool",
           "member_validation_cells"]


@dataclass
class CellPool:
    """The sampling pool of one member (numpy, float32 unless noted).

    ``cells`` (n,) land-cell indices; ``region`` (n,) region column (0…R−1, the training
    regions' order); ``weight`` (n,) float64 m²: Σ over a region's pool of ``weight · NEE``
    estimates the region's integral (gC d⁻¹ for NEE in gC m⁻² d⁻¹); ``daily`` (days, n, 2)
    ``Tair``, ``WAI2`` on the training days; ``seasonal`` (366, n, 4); ``static`` (n, 4);
    ``doy`` (days,) day-of-year row of each training day.
    """

    cells: np.ndarray
    region: np.ndarray
    weight: np.ndarray
    daily: np.ndarray
    seasonal: np.ndarray
    static: np.ndarray
    doy: np.ndarray

    def drivers(self, days: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """float32 ``(len(days), len(idx), 10)`` drivers (:data:`DRIVER_NAMES` order) of pool
        members ``idx`` on training days ``days`` (positions in the training-day axis)."""
        out = np.empty((days.size, idx.size, len(DRIVER_NAMES)), dtype=np.float32)
        gather_rows(self.daily, self.seasonal, self.static, self.doy, np.asarray(days, dtype=np.intp),
                    np.asarray(idx, dtype=np.intp), SOURCE_KIND, SOURCE_INDEX, out)
        return out


class StaleTable:
    """The model's last-seen monthly NEE at every pool cell, for the control variate.

    ``values`` (months, pool) float64 tensor, gC m⁻² d⁻¹; ``pool_w`` (pool, regions) float64
    tensor, m²: the pool's one-hot region weights (``CellPool.weight`` in its region's column).
    """

    def __init__(self, values, pool_w):
        self.values, self.pool_w = values, pool_w

    def estimate(self, monthly, months, idx, w):
        """Control-variate estimate of the regional monthly sums (months, regions), gC d⁻¹,
        from this step's ``monthly`` (len(months), len(idx)) model values at pool members
        ``idx`` (unique) with sample weights ``w`` (len(idx), regions) m²; then records
        ``monthly`` as those cells' last-seen values. ``months`` a tensor of month rows."""
        import torch

        rows = self.values.index_select(0, months)                       # (months, pool)
        stale = rows.index_select(1, idx)
        est = (monthly - stale) @ w + rows @ self.pool_w
        with torch.no_grad():
            self.values[months[:, None], idx[None, :]] = monthly.detach().to(self.values.dtype)
        return est


def draw_pool(cell_region: np.ndarray, cell_area: np.ndarray, regions: list[int], size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the pool: ``(cells, region column, weight m²)``.

    ``cell_region`` (cells,) region id of every land cell; ``cell_area`` (cells,) land area
    m²; ``regions`` the region ids in training order. A region with at most ``size`` cells
    gives all of them at their own area; a larger one ``size`` draws with replacement,
    probability ∝ area, each weighted by the region's area / ``size`` (unbiased:
    E[Σ w·x] = Σ_region A·x).
    """
    cells, col, weight = [], [], []
    for j, r in enumerate(regions):
        members = np.flatnonzero(cell_region == r)
        if members.size == 0:
            continue
        a = cell_area[members].astype(np.float64)
        if members.size <= size:
            take, w = members, a
        else:
            take = np.sort(rng.choice(members, size=size, replace=True, p=a / a.sum()))
            w = np.full(size, a.sum() / size)
        cells.append(take)
        col.append(np.full(take.size, j))
        weight.append(w)
    return np.concatenate(cells), np.concatenate(col), np.concatenate(weight)


def load_pool(drivers_path: str | Path, cells: np.ndarray, region: np.ndarray, weight: np.ndarray,
              day_idx: np.ndarray, doy: np.ndarray) -> CellPool:
    """Read the pool's drivers from ``drivers.zarr`` (only the days ``day_idx`` of the daily
    ones). The store is read directly with zarr's orthogonal selection (one pass over the
    chunks that hold the pool's cells), as :class:`fluxscale.dataset.drivers.CellDrivers` does."""
    return load_pools(drivers_path, [(cells, region, weight)], day_idx, doy)[0]


def load_pools(drivers_path: str | Path, pools: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
               day_idx: np.ndarray, doy: np.ndarray) -> list[CellPool]:
    """:func:`load_pool` for several ``(cells, region, weight)`` pools (a training group's
    folds) with one read of the union of their cells: a pool's 4 600 cells touch nearly every
    chunk of the daily drivers, so each separate read decompressed the whole record again
    (1.3 s per fold on the small twin)."""
    import zarr

    g = zarr.open_group(str(drivers_path), mode="r")
    uniq, inverse = np.unique(np.concatenate([p[0] for p in pools]), return_inverse=True)
    t0, t1 = int(day_idx.min()), int(day_idx.max()) + 1
    # cell-minor layouts (the drivers of one cell and day side by side): see gather_rows
    daily = np.stack([np.asarray(g[n].oindex[t0:t1, uniq], dtype=np.float32)[day_idx - t0] for n in DAILY_DRIVERS],
                     axis=-1)
    seasonal = np.stack([np.asarray(g[n].oindex[:, uniq], dtype=np.float32) for n in SEASONAL_DRIVERS], axis=-1)
    static = np.stack([np.asarray(g[n].oindex[uniq], dtype=np.float32) for n in STATIC_DRIVERS], axis=-1)
    out, start = [], 0
    for cells, region, weight in pools:
        inv = inverse[start:start + cells.size]
        start += cells.size
        out.append(CellPool(cells=cells, region=region, weight=weight, daily=np.ascontiguousarray(daily[:, inv]),
                            seasonal=np.ascontiguousarray(seasonal[:, inv]), static=np.ascontiguousarray(static[inv]),
                            doy=np.asarray(doy, dtype=np.intp)))
    return out


def step_sample(pool: CellPool, n_regions: int, n_cells: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per region ``n_cells`` pool members uniformly without replacement (all of a smaller
    pool): ``(idx, scale)`` with ``scale`` (m², float64) = weight × pool size / sample size,
    so that Σ scale·NEE over a region's sample is unbiased for its pool's Σ weight·NEE."""
    idx, scale = [], []
    for j in range(n_regions):
        members = np.flatnonzero(pool.region == j)
        if members.size == 0:
            continue
        k = min(n_cells, members.size)
        take = np.sort(rng.choice(members, size=k, replace=False)) if k < members.size else members
        idx.append(take)
        scale.append(pool.weight[take] * (members.size / k))
    return np.concatenate(idx), np.concatenate(scale)


def fixed_subset(region: np.ndarray, weight: np.ndarray, n_regions: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed validation cells: per region ``n_cells`` pool members evenly spaced through
    the pool (every pool member is an independent random draw, so any fixed subset is itself
    a random sample of the region), re-weighted so that their weights sum to the region's pool
    total. ``region``, ``weight``: the pool's. Returns ``(idx into the pool, scale m²)``."""
    idx, scale = [], []
    for j in range(n_regions):
        members = np.flatnonzero(region == j)
        if members.size == 0:
            continue
        take = np.unique(members[np.linspace(0, members.size - 1, min(n_cells, members.size)).round().astype(int)])
        idx.append(take)
        scale.append(weight[take] * (weight[members].sum() / weight[take].sum()))
    return np.concatenate(idx), np.concatenate(scale)


def member_pool(cfg, fold: int, cell_region: np.ndarray, cell_area: np.ndarray,
                region_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`draw_pool` for member ``fold`` of ``cfg`` (a :class:`fluxscale.config.TrainConfig`),
    seeded by ``(seed, fold)``: each member has its own pool."""
    return draw_pool(cell_region, cell_area, region_ids, cfg.atm_pool_cells, np.random.default_rng([cfg.seed, fold, 17]))


def member_validation_cells(cfg, fold: int, cell_region: np.ndarray, cell_area: np.ndarray,
                            region_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The land cells, region columns and weights (m²) of the fixed validation sample that
    member ``fold`` of ``cfg`` trains with (the same draws as training), for evaluating the
    sampled term's own view of a member's field after training."""
    cells, col, weight = member_pool(cfg, fold, cell_region, cell_area, region_ids)
    idx, scale = fixed_subset(col, weight, len(region_ids), cfg.atm_val_cells)
    return cells[idx], col[idx], scale
