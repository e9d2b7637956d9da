"""What a training task needs, read from the stores (paper §3.2–3.5): the towers' drivers
and NEE with their folds, the bridges' pixels, weights and biases, the chosen inversions'
regional monthly integrals, and the land cells the atmospheric term and the decoupling
monitor sample (:class:`TrainingData`, :func:`load_training_data`).

A task reads what it needs from the stores itself (sites, bridges, integrals, grid, the
drivers of the bridge pixels), so that a Dask task sends only its config. Non-finite
drivers at the bridge pixels are refused here (:class:`~fluxscale.errors.StoreError`
naming the first); the towers' are refused by the member that trains on them
(:class:`fluxscale.learn.member.Member`).

**Bridge validity (§3.5).** A fixed subsample of ``decoupling_cells`` land cells per
region and one full year (drawn with the seed, the same for every member) are read once
here: the member's per-epoch monitor integrates its own output over them
(:meth:`fluxscale.learn.member.Member.monitor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fluxscale.config import TrainConfig
from fluxscale.dataset.drivers import DRIVER_NAMES, assemble_driver_block
from fluxscale.dataset.grid import cell_land_area
from fluxscale.dataset.stores import open_store, store_path
from fluxscale.errors import FluxscaleError, StoreError

__all__ = ["TrainingData", "load_training_data"]


@dataclass
class TrainingData:
    """Everything one member needs, in memory (numpy, float32 unless noted).

    ``site_x`` (site, time, 10), ``site_y`` (site, time) observed NEE (NaN = none),
    ``site_fold`` (site,); ``pix_x`` (days, pixels, 10) drivers of the bridge pixels,
    ``pix_w`` (pixels, regions) bridge weights, ``bias`` (regions,) float64,
    ``inv`` (systems, months, regions) PgC month-1, ``area_w`` (regions,) sums to 1,
    ``day_month`` (days,) month index of each day, ``month_year`` (months,) calendar
    year, ``regions`` names, ``systems`` names; the decoupling monitor: ``mon_year``
    (one full year, drawn with the seed), ``mon_x`` (days of that year, cells, 10) for
    up to ``decoupling_cells`` land cells per region, ``mon_region`` (cells,) their region
    column and ``mon_scale`` (cells,) their land area (m², float64) scaled so that the
    sample's total equals its region's. For the sampled ATM term (:mod:`fluxscale.learn.atm_sample`):
    ``region_ids`` (regions,) the training regions' ids, ``cell_region`` and ``cell_area``
    (cells,) every land cell's region id and land area (m²), ``drivers_path``, ``day_idx``
    (days,) the training days' positions in the drivers' time axis and ``day_doy`` their
    day-of-year rows.
    """

    site_x: np.ndarray
    site_y: np.ndarray
    site_fold: np.ndarray
    pix_x: np.ndarray
    pix_w: np.ndarray
    bias: np.ndarray
    inv: np.ndarray
    area_w: np.ndarray
    day_month: np.ndarray
    month_year: np.ndarray
    month_days: np.ndarray
    regions: list[str]
    systems: list[str]
    mon_year: int
    mon_x: np.ndarray
    mon_region: np.ndarray
    mon_scale: np.ndarray
    region_ids: np.ndarray | None = None
    cell_region: np.ndarray | None = None
    cell_area: np.ndarray | None = None
    drivers_path: str | None = None
    day_idx: np.ndarray | None = None
    day_doy: np.ndarray | None = None


def load_training_data(root: str | Path, cfg: TrainConfig) -> TrainingData:
    """Read the towers, bridges, inversion integrals and the drivers of the bridge pixels."""
    root = Path(root)
    for n in ("bridges", "integrals"):
        if not store_path(root, n).exists():
            raise FluxscaleError(f"{store_path(root, n)}: not found; run `fluxscale bridge {root}` first")
    sites = open_store(store_path(root, "sites"), "sites")
    drivers = open_store(store_path(root, "drivers"), "drivers")
    bridges = open_store(store_path(root, "bridges"), "bridges")
    integ = open_store(store_path(root, "integrals"), "integrals")
    grid = open_store(store_path(root, "grid"), "grid")

    site_x = np.stack([np.asarray(sites[n].values, dtype=np.float32) for n in DRIVER_NAMES], axis=-1)
    site_y = np.asarray(sites.NEE.values, dtype=np.float32)
    site_fold = np.asarray(sites.fold.values, dtype=np.int64)

    regions = [str(r) for r in bridges.region.values]
    has = np.isfinite(bridges.bias.values)
    keep = [i for i, ok in enumerate(has) if ok]
    pix_region = bridges.pixel_region.values.astype(np.int64)
    pix_cell = bridges.pixel_cell.values.astype(np.int64)
    pix_w = np.zeros((pix_cell.size, len(keep)))
    col = {r: j for j, r in enumerate(keep)}
    for p, (r, w) in enumerate(zip(pix_region, bridges.weight.values)):
        if r in col:
            pix_w[p, col[r]] = w

    months = pd.DatetimeIndex(integ.time.values)
    days = pd.DatetimeIndex(drivers.time.values)
    in_months = days.to_period("M").isin(months.to_period("M"))
    day_idx = np.flatnonzero(in_months)
    pix_x = assemble_driver_block(drivers, time=day_idx, cell=pix_cell)
    bad = ~np.isfinite(pix_x)
    if bad.any():
        t, p, v = np.argwhere(bad)[0]
        raise StoreError(str(store_path(root, "drivers")), DRIVER_NAMES[v],
                         f"{int(bad.sum())} non-finite value(s) at the bridges' pixels (first: "
                         f"{days[day_idx[t]]:%Y-%m-%d}, cell {pix_cell[p]}); fix them (`fluxscale validate {root}`)")
    day_month = months.to_period("M").get_indexer(days[day_idx].to_period("M"))

    systems = [str(s) for s in integ.system.values]
    chosen = list(cfg.systems) or systems
    unknown = [s for s in chosen if s not in systems]
    if unknown:
        raise FluxscaleError(f"train config systems: {', '.join(unknown)} not in the inversions ({', '.join(systems)})")
    ireg = [list(integ.region.values).index(regions[i]) for i in keep]
    inv = integ.inversions.sel(system=chosen).values[:, ireg, :].transpose(0, 2, 1).astype(np.float64)
    area = integ.land_area.values[ireg].astype(np.float64)

    # the decoupling monitor: a fixed subsample of land cells per region
    cell_region = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values].astype(np.int64)
    w = cell_land_area(grid)
    rng = np.random.default_rng([cfg.seed, 7])
    mon_cells, mon_region, mon_scale = [], [], []
    for j, r in enumerate(keep):
        cells = np.flatnonzero(cell_region == r)
        take = np.sort(rng.choice(cells, size=min(cfg.decoupling_cells, cells.size), replace=False))
        mon_cells.append(take)
        mon_region.append(np.full(take.size, j))
        mon_scale.append(w[take] * (w[cells].sum() / w[take].sum()))  # the sample stands for the region
    mon_cells = np.concatenate(mon_cells)
    # one year only: at 0.5° the sample is 3 600 cells, 17 years of them would be 0.9 GB
    full_years = [y for y in np.unique(months.year) if np.sum(months.year == y) == 12]
    if not full_years:
        raise FluxscaleError(f"{store_path(root, 'integrals')}: no complete year of inversion months to train on")
    mon_year = int(rng.choice(full_years))
    mon_days = day_idx[months.year.to_numpy()[day_month] == mon_year]
    return TrainingData(
        site_x=site_x, site_y=site_y, site_fold=site_fold, pix_x=pix_x, pix_w=pix_w,
        bias=bridges.bias.values[keep].astype(np.float64), inv=inv, area_w=area / area.sum(),
        day_month=day_month.astype(np.int64), month_year=months.year.to_numpy(),
        month_days=months.days_in_month.to_numpy().astype(np.float64),
        regions=[regions[i] for i in keep], systems=chosen,
        mon_year=mon_year, mon_x=assemble_driver_block(drivers, time=mon_days, cell=mon_cells),
        mon_region=np.concatenate(mon_region), mon_scale=np.concatenate(mon_scale),
        region_ids=np.asarray(keep, dtype=np.int64), cell_region=cell_region, cell_area=np.asarray(w, dtype=np.float64),
        drivers_path=str(store_path(root, "drivers")), day_idx=day_idx,
        day_doy=(days[day_idx].day_of_year.to_numpy() - 1).astype(np.intp),
    )
