"""Training the EC and EC-ATM ensembles (paper §3.2–3.6, Eq. 4–14, Table B1), a group of
members per Dask task, trained together with their weights stacked (:mod:`fluxscale.learn.stacked`).

A member is ``(variant, fold)``: it trains on the towers of the other nine folds and
validates on fold ``fold``. EC minimises the tower MSE (Eq. 5). EC-ATM adds, each step,
one whole training year of the atmospheric term: the network runs on every contributing
pixel of every region for every day of the year, monthly means per pixel (Eq. 6), the
bridges give regional monthly NEE (Eq. 7), compared with the chosen inversions (Eq. 8–11);
the two terms are combined with learned log-variances (Eq. 12–14). Two random years per
fold are held out of the ATM term and validate it.

**Groups** (:func:`train_group`): the members of a group step together, each with exactly
its own draws, losses, Adam moments and stopping; a member's weights do not depend on its
group. :meth:`_Member.step` is the same step by plain autograd on one :class:`NEENet`, the
reference the tests compare the group with.

**The atmospheric term** (``atm_term``): ``"sampled"`` (the default) estimates each
region's integral from a fresh random sample of its land cells and days every step
(:mod:`fluxscale.learn.atm_sample`, unbiased for the full integral); ``"bridges"`` is the paper's
Eq. 6–7 on the bridge pixels. ``atm_annual_weight`` adds the same terms on annual means.
The log-variances start at the log of each term's initial loss (``kendall_init``), the
learning rate follows a cosine (``lr_schedule``), and the validated and kept weights are an
exponential moving average of the trained ones (``ema_decay``); docs/evaluation.md has the
evidence for each default.

**The towers' error** (``tower_bias = "linear"``, EC-ATM only): the EC term compares the
towers with the network plus a linear function of the standardised drivers, so the towers'
systematic error (e.g. missed night-time respiration) is not forced into the NEE and the
atmospheric term sets the regional levels. The head is saved in the checkpoint
(``tower_bias``) and its mean over the tower-days is ``tower_bias_mean`` in the metrics;
``val_ec`` validates the term as trained (network + head), ``val_ec_nee`` the network alone.

**Best epoch.** EC keeps the epoch with the lowest validation tower MSE. EC-ATM keeps the
lowest held-out ATM loss (``selection="val_atm"``) or ``val_ec / val_ec⁰ + val_atm /
val_atm⁰`` (``"relative_sum"``, each relative to its value before training).

**Nothing silent.** Non-finite tower NEE or drivers are refused before training; a loss
that turns non-finite stops the member (:class:`FluxscaleError` naming it and the epoch);
:func:`flag_members` flags EC-ATM members that stayed at EC's level.

**Bridge validity (§3.5).** Every epoch, a fixed subsample of ``decoupling_cells`` land
cells per region estimates the regional integral of the model's own output on one year
(drawn with the seed, the same for every member); its relative difference from the bridge estimate (area-weighted over
regions) is logged as ``decoupling`` and may stop the member (``decoupling_max``). The full
integral over every land cell and month against the bridges is computed once, by
``fluxscale evaluate`` from the cube's monthly means (the ``bridge`` rows of its table).

A task reads what it needs from the stores itself (sites, bridges, integrals, the
drivers of the bridge pixels) and writes, per member, ``models/<variant>-fold<k>.pt`` (atomic) and
``models/logs/<variant>-fold<k>.csv``; it returns only small metrics.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxscale.config import TrainConfig
from fluxscale.dataset.drivers import DRIVER_NAMES, assemble_driver_block
from fluxscale.errors import FluxscaleError, StoreError
from fluxscale.dataset.grid import cell_land_area
from fluxscale.learn.model import load_member, member_name, model_sets, models_dir  # noqa: F401  (re-exported)
from fluxscale.dataset.stores import open_store, store_path

__all__ = ["TrainingData", "load_training_data", "train_member", "train_group", "flag_members", "learning_rate",
           "selection_score", "train_ensemble", "member_name", "models_dir", "model_sets", "load_member"]

G_PER_PG = 1e15


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


def _device(cfg: TrainConfig):
    import torch

    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise FluxscaleError("train config device='cuda', but torch sees no CUDA device")
    from fluxscale.parallel import cuda_device

    return torch.device(cuda_device())  # one GPU per worker on a machine with several


def _threads(cfg: TrainConfig) -> int:
    if cfg.threads:
        return cfg.threads
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


class _Member:
    """The tensors and closures of one member's training (kept on ``device``)."""

    def __init__(self, data: TrainingData, cfg: TrainConfig, fold: int, device, share: "_Member | None" = None,
                 pool=None):
        """``share``: a member of the same fold whose sampling pool (drivers in memory) this
        one reuses; ``pool``: this fold's pool, already loaded (:func:`fluxscale.learn.atm_sample.load_pools`)."""
        import torch

        self.torch, self.device, self.data = torch, device, data
        bad_y = np.isinf(data.site_y)
        obs = ~np.isnan(data.site_y)
        bad_x = obs & ~np.isfinite(data.site_x).all(axis=-1)
        for what, bad in (("NEE", bad_y), ("drivers on observed days", bad_x)):
            if bad.any():
                s, d = np.argwhere(bad)[0]
                raise FluxscaleError(f"sites.zarr: {what}: {int(bad.sum())} tower-day(s) not finite (first: site "
                                     f"index {s}, day index {d}); fix or mask them (`fluxscale validate`)")
        train_sites = data.site_fold != fold
        self.train_idx = np.argwhere(obs & train_sites[:, None])
        self.val_idx = np.argwhere(obs & ~train_sites[:, None])
        if self.train_idx.shape[0] == 0:
            raise FluxscaleError(f"fold {fold}: no training tower-days in the other folds")
        self.train_idx_t = torch.as_tensor(self.train_idx, device=device)
        xs = data.site_x[self.train_idx[:, 0], self.train_idx[:, 1]]
        self.mean, self.std = xs.mean(axis=0), xs.std(axis=0)
        t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        self.site_x, self.site_y = t(data.site_x), t(data.site_y)
        self.site_x_rows = self.site_x.reshape(-1, self.site_x.shape[-1])
        self.train_rows = torch.as_tensor(self.train_idx[:, 0] * data.site_y.shape[1] + self.train_idx[:, 1], device=device)
        f64 = torch.float64  # the bridge and the ATM term in float64: integrals are sums of many pixels
        self.pix_x, self.pix_w, self.bias = t(data.pix_x), t(data.pix_w, f64), t(data.bias, f64)
        self.inv, self.area_w = t(data.inv, f64), t(data.area_w, f64)
        self.day_month = torch.as_tensor(data.day_month, device=device)
        self.mon_x = t(data.mon_x)
        # (cells, regions): each monitor cell's land area, scaled so the sample stands for its region
        scale = np.zeros((data.mon_region.size, data.bias.size))
        scale[np.arange(data.mon_region.size), data.mon_region] = data.mon_scale
        self.mon_scale = t(scale, f64)
        self.month_days = t(data.month_days, f64)
        self.mon_day_month = data.day_month[data.month_year[data.day_month] == data.mon_year]
        years = np.unique(data.month_year)
        full = [y for y in years if np.sum(data.month_year == y) == 12]
        rng = np.random.default_rng([cfg.seed, fold, 11])
        n_hold = min(cfg.holdout_years, max(len(full) - 1, 0))
        self.val_years = sorted(int(y) for y in rng.choice(full, size=n_hold, replace=False)) if n_hold else []
        self.train_years = [int(y) for y in full if y not in self.val_years]
        self.n_months = data.month_year.size
        self.atm_term = cfg.atm_term
        self.annual_weight, self.annual_target = cfg.atm_annual_weight, cfg.atm_annual_target
        if cfg.atm_term == "sampled":
            from fluxscale.learn.atm_sample import fixed_subset, load_pool, member_pool

            if data.cell_region is None:
                raise FluxscaleError("atm_term='sampled' needs the training data's land cells (load_training_data)")
            self.val_x = share.val_x if share is not None and share.atm_term == "sampled" else {}
            if share is not None and share.atm_term == "sampled":
                self.pool = share.pool  # the same fold: the same draw
            elif pool is not None:
                self.pool = pool
            else:
                cells, col, weight = member_pool(cfg, fold, data.cell_region, data.cell_area, list(data.region_ids))
                self.pool = load_pool(data.drivers_path, cells, col, weight, data.day_idx, data.day_doy)
            self.sample_cells, self.sample_days = cfg.atm_sample_cells, cfg.atm_sample_days
            self.val_sel, val_scale = fixed_subset(self.pool.region, self.pool.weight, data.bias.size, cfg.atm_val_cells)
            self.val_onehot = t(self._onehot(self.pool.region[self.val_sel]) * val_scale[:, None], f64)
            self.month_rows = [np.flatnonzero(data.day_month == m) for m in range(self.n_months)]
            self.control_variate = cfg.atm_control_variate
            self.table = None  # the StaleTable, filled by init_table before the first step

    def _onehot(self, region: np.ndarray) -> np.ndarray:
        oh = np.zeros((region.size, self.data.bias.size))
        oh[np.arange(region.size), region] = 1.0
        return oh

    def _monthly(self, x, months: np.ndarray, model, days: np.ndarray | None = None):
        """Eq. 6: monthly means over the days of ``months`` of the model on ``x`` (days, n, 10)
        → (…, len(months), n); ``days`` the month index of each row of ``x`` (default: the
        record's). ``model`` maps drivers (rows, n, 10) to NEE (…, rows, n): one network, or
        a group's members at once (a leading member axis)."""
        torch = self.torch
        day_month = self.data.day_month if days is None else days
        sel = np.flatnonzero(np.isin(day_month, months))
        # a few thousand samples per call, so the (samples, 32) activations stay in cache; all
        # months of the bridge pixels at once (~10^6 samples) ran ~3x slower, and the
        # per-epoch validation was a third of a member's time
        step = max(1, 16384 // max(x.shape[1], 1))
        daily = torch.cat([model(x[torch.as_tensor(sel[i:i + step], device=self.device)])
                           for i in range(0, sel.size, step)], dim=-2)
        idx = torch.as_tensor(np.searchsorted(months, day_month[sel]), device=self.device)
        sums = torch.zeros((*daily.shape[:-2], months.size, daily.shape[-1]), dtype=daily.dtype,
                           device=self.device).index_add(-2, idx, daily)
        counts = torch.bincount(idx, minlength=months.size).to(daily.dtype)
        return sums / counts[:, None]

    def monthly_pixels(self, model, months: np.ndarray):
        """Eq. 6 on the bridge pixels → (len(months), pixels)."""
        return self._monthly(self.pix_x, months, model)

    def bridge_estimate(self, model, months: np.ndarray):
        """Eq. 7: regional monthly NEE (…, months, regions) PgC month-1, float64."""
        m = self.monthly_pixels(model, months).double()
        return m @ self.pix_w + self.bias

    def sampled_inputs(self, months: np.ndarray, rng: np.random.Generator):
        """A training step's sample of the sampled term (:mod:`fluxscale.learn.atm_sample`): a fresh
        ``atm_sample_cells`` pool cells per region and ``atm_sample_days`` days per month →
        ``(x (n, 10), pred)`` with ``pred(y)`` the regional integrals (months, regions),
        PgC month-1, float64, from the model's outputs ``y`` (n,) on ``x``."""
        from fluxscale.learn.atm_sample import step_sample

        torch = self.torch
        idx, scale = step_sample(self.pool, self.data.bias.size, self.sample_cells, rng)
        rows = [rng.choice(self.month_rows[m], size=min(self.sample_days, self.month_rows[m].size), replace=False)
                for m in months]
        d = min(r.size for r in rows)
        days = np.concatenate([r[:d] for r in rows])
        x = torch.as_tensor(self.pool.drivers(days, idx), device=self.device).reshape(-1, len(DRIVER_NAMES))
        w = torch.as_tensor(self._onehot(self.pool.region[idx]) * scale[:, None], device=self.device)
        m_t = torch.as_tensor(months, device=self.device)
        table = self.table

        def pred(y):
            monthly = y.reshape(months.size, d, idx.size).mean(dim=1).double()  # Eq. 6 from d days
            if table is not None:
                sums = table.estimate(monthly, m_t, torch.as_tensor(idx, device=self.device), w)
            else:
                sums = monthly @ w
            return sums * self.month_days[m_t][:, None] / G_PER_PG
        return x, pred

    def bridge_inputs(self, months: np.ndarray):
        """The paper's term on ``months`` (Eq. 6–7): ``(x (days·pixels, 10), pred)`` with
        ``pred(y)`` the bridge estimates (months, regions), PgC month-1, float64."""
        torch = self.torch
        sel = np.flatnonzero(np.isin(self.data.day_month, months))
        x = self.pix_x[torch.as_tensor(sel, device=self.device)].reshape(-1, len(DRIVER_NAMES))
        idx = torch.as_tensor(np.searchsorted(months, self.data.day_month[sel]), device=self.device)
        counts = torch.bincount(idx, minlength=months.size).double()
        n_pix = self.pix_x.shape[1]

        def pred(y):
            daily = y.reshape(sel.size, n_pix).double()
            sums = torch.zeros((months.size, n_pix), dtype=daily.dtype, device=self.device).index_add(0, idx, daily)
            return (sums / counts[:, None]) @ self.pix_w + self.bias
        return x, pred

    def sampled_estimate(self, model, months: np.ndarray, rng: np.random.Generator | None = None):
        """The sampled regional integrals (months, regions), PgC month-1, float64; ``model``
        maps drivers (…, 10) to NEE (…). With ``rng``: a training step's fresh sample
        (:meth:`sampled_inputs`); without: the fixed validation cells on every day of
        ``months``."""
        torch = self.torch
        if rng is not None:
            x, pred = self.sampled_inputs(months, rng)
            return pred(model(x))
        years = np.unique(self.data.month_year[months])
        parts = []
        for y in years:
            ms = months[self.data.month_year[months] == y]
            days = np.concatenate([self.month_rows[m] for m in ms])
            if int(y) in self.val_years:  # validated every epoch: gathered once per fold (17 MB a year at 0.5°)
                key = (int(y), tuple(ms))
                if key not in self.val_x:
                    self.val_x[key] = torch.as_tensor(self.pool.drivers(days, self.val_sel), device=self.device)
                x = self.val_x[key]
            else:
                x = torch.as_tensor(self.pool.drivers(days, self.val_sel), device=self.device)
            parts.append(self._monthly(x, ms, model, days=self.data.day_month[days]).double())
        monthly = torch.cat(parts, dim=-2)
        return (monthly @ self.val_onehot) * self.month_days[torch.as_tensor(months, device=self.device)][:, None] / G_PER_PG

    def init_table(self, model, rng: np.random.Generator) -> None:
        """Fill the control variate's :class:`~fluxscale.learn.atm_sample.StaleTable` with the
        model's monthly values at every pool cell (``atm_sample_days`` days of each month,
        one year per forward pass); a no-op unless the sampled term uses it."""
        from fluxscale.learn.atm_sample import StaleTable

        torch = self.torch
        if self.atm_term != "sampled" or not self.control_variate:
            return
        n = self.pool.cells.size
        values = torch.zeros((self.n_months, n), dtype=torch.float64, device=self.device)
        every = np.arange(n)
        with torch.no_grad():
            for y in np.unique(self.data.month_year):
                months = np.flatnonzero(self.data.month_year == y)
                days = np.concatenate([rng.choice(self.month_rows[m], size=min(self.sample_days, self.month_rows[m].size),
                                                  replace=False) for m in months])
                x = torch.as_tensor(self.pool.drivers(days, every), device=self.device)
                values[torch.as_tensor(months, device=self.device)] = \
                    self._monthly(x, months, model, days=self.data.day_month[days]).double()
        pool_w = torch.as_tensor(self._onehot(self.pool.region) * self.pool.weight[:, None], device=self.device)
        self.table = StaleTable(values, pool_w)

    def _atm_loss(self, pred, months: np.ndarray):
        from fluxscale.learn.losses import atm_loss

        m = self.torch.as_tensor(months, device=self.device)
        return atm_loss(pred, self.inv[:, m, :], self.area_w, annual_weight=self.annual_weight,
                        years=self.torch.as_tensor(self.data.month_year[months], device=self.device),
                        annual_target=self.annual_target)

    def atm(self, model, months: np.ndarray):
        """Eq. 8–11 on ``months`` (validation: no gradient needed) through the configured
        term: the bridges (Eq. 7) or the sampled term's validation cells; one value per
        member for a ``model`` with a leading member axis (see :meth:`_monthly`)."""
        pred = self.sampled_estimate(model, months) if self.atm_term == "sampled" else self.bridge_estimate(model, months)
        if pred.dim() == 3:
            return self.torch.stack([self._atm_loss(p, months) for p in pred])
        return self._atm_loss(pred, months)

    def months_of(self, years: list[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.data.month_year, years))

    def ec_train_loss(self, model) -> float:
        """The EC loss (Eq. 5) over every training tower-day (no gradient)."""
        torch = self.torch
        with torch.no_grad():
            i = self.train_idx_t
            out = torch.cat([model(self.site_x[i[k:k + 65536, 0], i[k:k + 65536, 1]]) for k in range(0, i.shape[0], 65536)])
            return float(((out - self.site_y[i[:, 0], i[:, 1]]) ** 2).mean())

    @staticmethod
    def tower_bias(model, head, x):
        """The tower-bias head on tower drivers ``x`` (n, 10): a linear function of the
        standardised drivers, gC m-2 d-1, (n,)."""
        return head((x - model.x_mean) / model.x_std).squeeze(-1)

    def tower_bias_mean(self, head) -> float:
        """Mean of the tower-bias head (``TrainConfig.tower_bias``; ``head`` maps tower drivers
        (n, 10) to (n,)) over every observed tower-day, gC m-2 d-1: the member's estimate of
        the towers' mean systematic error."""
        torch = self.torch
        idx = torch.as_tensor(np.argwhere(~np.isnan(self.data.site_y)), device=self.device)
        with torch.no_grad():
            return float(head(self.site_x[idx[:, 0], idx[:, 1]]).mean())

    def ec_val(self, model, head=None):
        """The EC term (Eq. 5) on the validation towers: of the network, plus the
        tower-bias ``head`` (drivers (n, 10) → (n,)) when given (the term EC-ATM trains)."""
        return self.ec_vals(lambda x: model(x)[None], [head])[0][0]

    def ec_vals(self, model, heads: list) -> list[tuple[float, float]]:
        """:meth:`ec_val` of several members from one forward: ``model`` maps drivers (n, 10)
        to (members, n), ``heads`` one tower-bias head (or None) per member. Returns per
        member (with its head, the network alone)."""
        torch = self.torch
        if self.val_idx.shape[0] == 0:
            return [(float("nan"), float("nan"))] * len(heads)
        with torch.no_grad():
            i = torch.as_tensor(self.val_idx, device=self.device)
            x, obs = self.site_x[i[:, 0], i[:, 1]], self.site_y[i[:, 0], i[:, 1]]
            out = []
            for y, head in zip(model(x), heads):
                nee = float(((y - obs) ** 2).mean())
                out.append((float(((y + head(x) - obs) ** 2).mean()) if head is not None else nee, nee))
            return out

    def draw(self, variant: str, batch: int, gen, year_rng) -> "_Draw":
        """The inputs of one optimiser step: an EC batch of ``batch`` tower-days (``gen``, a
        torch Generator: the same draws for EC and EC-ATM of a fold) and, for EC-ATM, one
        random training year of the ATM term (``year_rng``)."""
        torch = self.torch
        n = self.train_idx.shape[0]
        pick = torch.randint(n, (min(batch, n),), generator=gen).to(self.device)
        rows = self.train_rows.index_select(0, pick)  # flat (site, day) rows: one gather, not two-index fancy indexing
        x_atm = months = pred = None
        if variant == "ecatm" and self.train_years:
            months = self.months_of([int(year_rng.choice(self.train_years))])
            x_atm, pred = self.sampled_inputs(months, year_rng) if self.atm_term == "sampled" \
                else self.bridge_inputs(months)
        return _Draw(self.site_x_rows.index_select(0, rows), self.site_y.reshape(-1).index_select(0, rows),
                     x_atm, months, pred)

    def loss(self, dr: "_Draw", y_ec, y_atm, log_var, head_ec=None):
        """A step's objective from the model's outputs: ``y_ec`` (batch,) on ``dr.x_ec``,
        ``y_atm`` on ``dr.x_atm`` (EC-ATM), ``head_ec`` the tower-bias head on ``dr.x_ec``.
        Returns ``(loss, L_EC, L_ATM or None)``: Eq. 5 alone, or combined with Eq. 8–11 by
        Eq. 14 with the log-variances ``log_var`` (2,)."""
        from fluxscale.learn.losses import ec_loss, uncertainty_weighted

        l_ec = ec_loss(y_ec + head_ec if head_ec is not None else y_ec, dr.y_ec)
        if dr.pred is None:
            return l_ec, l_ec, None
        l_atm = self._atm_loss(dr.pred(y_atm), dr.months)
        return uncertainty_weighted(l_ec, l_atm.float(), log_var[0], log_var[1]), l_ec, l_atm

    def step(self, model, opt, log_var, variant: str, batch: int, gen, year_rng,
             tower_bias=None) -> tuple[float, float]:
        """One optimiser step of one member by plain autograd on an :class:`NEENet` and a
        ``torch.optim`` optimiser: the reference for the group's batched step (the tests
        and ``benchmarks/train.py`` compare the two). Returns (L_EC, L_ATM or 0)."""
        dr = self.draw(variant, batch, gen, year_rng)
        head = self.tower_bias(model, tower_bias, dr.x_ec) if tower_bias is not None else None
        loss, l_ec, l_atm = self.loss(dr, model(dr.x_ec), model(dr.x_atm) if dr.x_atm is not None else None,
                                      log_var, head)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(l_ec.detach()), float(l_atm.detach()) if l_atm is not None else 0.0

    def monitor(self, model) -> dict[str, float]:
        """The per-epoch monitor on its fixed cells and year: ``decoupling``, the relative
        |bridge − integral of the model over the monitor cells|, area-weighted over regions;
        ``global_monitor`` and ``global_bridge``, the model's total over the training regions
        in that year from the monitor cells and from the bridges, and ``global_inversions``,
        the inversions' mean total (PgC yr-1)."""
        torch = self.torch
        months = self.months_of([self.data.mon_year])
        with torch.no_grad():
            monthly = self._monthly(self.mon_x, months, model, days=self.mon_day_month).double()  # (…, months, cells)
            integral = (monthly @ self.mon_scale) * self.month_days[months][:, None] / G_PER_PG
            bridge = self.bridge_estimate(model, months)
            rel = (bridge - integral).abs().mean(dim=-2) / integral.abs().mean(dim=-2).clamp_min(1e-9)
            inv = self.inv[:, torch.as_tensor(months, device=self.device), :].mean(dim=0)
            # floats, or lists of one per member for a model with a leading member axis
            return {"decoupling": (rel * self.area_w).sum(dim=-1).tolist(),
                    "global_monitor": integral.sum(dim=(-2, -1)).tolist(),
                    "global_bridge": bridge.sum(dim=(-2, -1)).tolist(), "global_inversions": float(inv.sum())}

    def decoupling(self, model) -> float:
        """Relative |bridge − integral of the model over the monitor cells|, area-weighted."""
        return self.monitor(model)["decoupling"]


@dataclass
class _Draw:
    """One step's inputs of one member: the EC batch ``x_ec`` (batch, 10), ``y_ec`` (batch,)
    observed NEE; for EC-ATM the ATM term's drivers ``x_atm`` (n, 10), its ``months`` and
    ``pred`` (model outputs on ``x_atm`` → regional monthly integrals, PgC month-1)."""

    x_ec: Any
    y_ec: Any
    x_atm: Any
    months: np.ndarray | None
    pred: Any


class _Group:
    """The trainable state of a group of members (:func:`train_group`): their ``_Member`` data
    ``mbs``, the stacked networks ``net``, log-variances ``log_var`` (M, 2), tower-bias heads
    ``head_w`` (M, 10) and ``head_b`` (M,), the optimiser, the moving average ``kept``, each
    member's random streams and its ``active`` flag (False: stopped, frozen)."""

    def __init__(self, data: TrainingData, cfg: TrainConfig, members: list[tuple[str, int]], device):
        import torch

        from fluxscale.learn.model import init_model
        from fluxscale.learn.stacked import StackedAdam, StackedNets

        self.cfg, self.device, self.members = cfg, device, members
        self.mbs, by_fold, pools = [], {}, {}
        folds = list(dict.fromkeys(f for _, f in members))
        if cfg.atm_term == "sampled" and data.cell_region is not None:
            from fluxscale.learn.atm_sample import load_pools, member_pool

            draws = [member_pool(cfg, f, data.cell_region, data.cell_area, list(data.region_ids)) for f in folds]
            pools = dict(zip(folds, load_pools(data.drivers_path, draws, data.day_idx, data.day_doy)))
        for variant, fold in members:
            self.mbs.append(_Member(data, cfg, fold, device, share=by_fold.get(fold), pool=pools.get(fold)))
            by_fold.setdefault(fold, self.mbs[-1])
        self.variants = [v for v, _ in members]
        M = len(members)
        models = []
        for (v, f), mb in zip(members, self.mbs):
            net = init_model(seed=cfg.seed * 1000 + f)  # identical for EC and EC-ATM of a fold
            net.set_standardisation(mb.mean, mb.std)
            models.append(net)
        self.net = net = StackedNets(models, device)
        n_in = net.x_mean.shape[1]
        # the log-variances s = log σ² (Eq. 13) and the tower-bias head, one row per member
        self.log_var = torch.zeros((M, 2), device=device, requires_grad=True)
        self.head_w = torch.zeros((M, n_in), device=device, requires_grad=True)
        self.head_b = torch.zeros(M, device=device, requires_grad=True)
        self.is_atm = np.array([v == "ecatm" for v in self.variants])
        self.has_head = self.is_atm & (cfg.tower_bias == "linear")
        self.trains_atm = self.is_atm & np.array([bool(mb.train_years) for mb in self.mbs])
        self.opt = StackedAdam({**net.params, "log_var": self.log_var, "head_w": self.head_w, "head_b": self.head_b})
        self.gens = [torch.Generator().manual_seed(cfg.seed * 1000 + f) for _, f in members]   # EC batches
        self.year_rngs = [np.random.default_rng([cfg.seed, f, 13]) for _, f in members]          # ATM years, samples
        # the weights that are validated and kept: an exponential moving average of the trained
        # ones (ema_decay), or those themselves. The global total is a direction the noisy
        # sampled term and the EC batches barely pin down: on the small twin a member's global
        # total wandered by ±2 PgC/yr from epoch to epoch even at the schedule's smallest rate
        self.kept = net.copy() if cfg.ema_decay else net.params
        self.active = np.ones(M, dtype=bool)

    def fwd(self, m: int):
        """Member ``m``'s kept network as a function of drivers (…, 10) → NEE (…)."""
        many = self.fwd_many([m])
        return lambda x: many(x)[0]

    def fwd_many(self, ms: list[int]):
        """Members ``ms``' kept networks on the same drivers (…, 10) → NEE (len(ms), …)."""
        n_in = self.net.x_mean.shape[1]
        return lambda x: self.net.predict_many(ms, x.reshape(-1, n_in), self.kept).reshape(len(ms), *x.shape[:-1])

    def head(self, m: int):
        """Member ``m``'s tower-bias head as a function of drivers (n, 10) → (n,), or None."""
        if not self.has_head[m]:
            return None
        return lambda x: self.net.standardise(m, x) @ self.head_w[m] + self.head_b[m]

    def step(self, lr: float) -> tuple[np.ndarray, np.ndarray]:
        """One optimiser step of every active member at learning rate ``lr``: its own draws
        (:meth:`_Member.draw`), forward and loss, the hand-written backward
        (:meth:`StackedNets.backward`), then one Adam step and moving-average update over the
        whole stack (frozen rows masked). Returns each member's (L_EC, L_ATM) (M,) arrays
        (NaN for members that did not step)."""
        import torch

        net, cfg, M = self.net, self.cfg, len(self.members)
        l_ecs, l_atms = np.full(M, np.nan), np.full(M, np.nan)
        net.zero_grad()
        for g in (self.log_var, self.head_w, self.head_b):
            g.grad = None
        for m in np.flatnonzero(self.active):
            dr = self.mbs[m].draw(self.variants[m], cfg.ec_batch, self.gens[m], self.year_rngs[m])
            n_ec = dr.x_ec.shape[0]
            x = torch.cat([dr.x_ec, dr.x_atm]) if dr.x_atm is not None else dr.x_ec
            xs = net.standardise(m, x)
            y = net.forward(m, xs).requires_grad_()  # the outputs as a leaf: the loss graph stays small
            head_ec = xs[:n_ec] @ self.head_w[m] + self.head_b[m] if self.has_head[m] else None
            loss, l_ec, l_atm = self.mbs[m].loss(dr, y[:n_ec], y[n_ec:], self.log_var[m], head_ec)
            loss.backward()
            net.backward(m, xs, y.grad)
            l_ecs[m] = float(l_ec.detach())
            l_atms[m] = float(l_atm.detach()) if l_atm is not None else 0.0
        grad = lambda p: p.grad if p.grad is not None else torch.zeros_like(p)  # noqa: E731
        act = self.active
        self.opt.step({**net.grads, "log_var": grad(self.log_var), "head_w": grad(self.head_w),
                       "head_b": grad(self.head_b)},
                      {**{k: act for k in net.params}, "log_var": act & self.trains_atm,
                       "head_w": act & self.has_head, "head_b": act & self.has_head}, lr)
        if self.kept is not net.params:
            with torch.no_grad():
                idx = torch.as_tensor(np.flatnonzero(act), device=self.device)
                for key, p in net.params.items():
                    self.kept[key].index_copy_(0, idx, self.kept[key].index_select(0, idx).lerp_(
                        p.index_select(0, idx), 1.0 - cfg.ema_decay))
        return l_ecs, l_atms

def train_member(root: str | Path, cfg: TrainConfig, variant: str, fold: int, *,
                 data: TrainingData | None = None, write: bool = True, resume_key: str | None = None) -> dict[str, Any]:
    """Train one member (a group of one, :func:`train_group`); its result."""
    return train_group(root, cfg, [(variant, fold)], data=data, write=write, resume_key=resume_key)[0]


def train_group(root: str | Path, cfg: TrainConfig, members: list[tuple[str, int]], *,
                data: TrainingData | None = None, write: bool = True, resume_key: str | None = None,
                on_epoch=None) -> list[dict[str, Any]]:
    """Train the ``(variant, fold)`` ``members`` together as one stacked model
    (:mod:`fluxscale.learn.stacked`); write each one's checkpoint and log; return each one's
    ``{"metrics", "log"}`` (``"state_dict"`` too with ``write=False``), in order.

    Every member keeps its own semantics: its fold's towers and EC batches (EC and EC-ATM of
    a fold: the same starting weights and batches), its held-out ATM years and samples, its
    log-variances, Adam moments, moving average, best epoch and decoupling stop (a stopped
    member is frozen: its rows are masked out of every update). Members of one fold share
    their sampling pool's drivers. ``on_epoch(name, epoch)`` is called after each member's
    epoch (progress). ``resume_key`` is stored in each checkpoint (see :func:`train_ensemble`).

    Deterministic for a given ``cfg``, member list and thread count: a task retried after
    its worker was lost writes the same weights; a member's weights do not depend on which
    other members share its group.
    """
    import torch

    from fluxscale.parallel import tune_malloc as _tune_malloc

    t_start = time.perf_counter()
    _tune_malloc()  # on a Dask worker: large tensors from the heap, not fresh mmaps (see there)
    torch.set_num_threads(_threads(cfg))
    device = _device(cfg)
    data = data if data is not None else load_training_data(root, cfg)
    grp = _Group(data, cfg, members, device)
    mbs, net, log_var, head_w, head_b = grp.mbs, grp.net, grp.log_var, grp.head_w, grp.head_b
    names = [member_name(v, f) for v, f in members]
    variants, is_atm, has_head, active = grp.variants, grp.is_atm, grp.has_head, grp.active
    M = len(members)
    val_months = [mb.months_of(mb.val_years) for mb in mbs]
    all_months = np.arange(mbs[0].n_months)
    kept, fwd, head = grp.kept, grp.fwd, grp.head

    lr_now = float(learning_rate(cfg, 0))

    def evaluate(ms: list[int], epoch: int, tr_ec: np.ndarray, tr_atm: np.ndarray,
                 seconds: float) -> dict[int, dict[str, float]]:
        """The log rows of members ``ms`` after ``epoch``, their forwards batched: the monitor
        (shared cells and pixels) over all of them, the validation towers and cells over each
        fold's members (EC and EC-ATM of a fold validate on the same)."""
        rows = {}
        with torch.no_grad():
            mon = mbs[ms[0]].monitor(grp.fwd_many(ms))
            for fold in dict.fromkeys(members[m][1] for m in ms):
                fm = [m for m in ms if members[m][1] == fold]
                mb, f = mbs[fm[0]], grp.fwd_many(fm)
                val_atm = mb.atm(f, val_months[fm[0]]).tolist() if val_months[fm[0]].size else [float("nan")] * len(fm)
                # every month: cheap through the bridges' pixels; the sampled term's validation
                # cells over the whole record cost ~10x a step, so only before and after training
                atm_all = mb.atm(f, all_months).tolist() \
                    if cfg.atm_term == "bridges" or epoch in (0, cfg.epochs) else [float("nan")] * len(fm)
                ec = mb.ec_vals(f, [head(m) for m in fm])
                for k, m in enumerate(fm):
                    sig = torch.exp(0.5 * log_var[m]).cpu().numpy()
                    j = ms.index(m)
                    rows[m] = {"epoch": epoch, "train_ec": float(tr_ec[m]), "train_atm": float(tr_atm[m]),
                               "sigma_ec": float(sig[0]), "sigma_atm": float(sig[1]), "val_ec": ec[k][0],
                               "val_ec_nee": ec[k][1], "val_atm": val_atm[k], "atm_all": atm_all[k],
                               "decoupling": mon["decoupling"][j], "global_monitor": mon["global_monitor"][j],
                               "global_bridge": mon["global_bridge"][j],
                               "global_inversions": mon["global_inversions"], "lr": lr_now, "seconds": seconds}
        return rows

    expected = [["train_ec"] + (["train_atm"] if is_atm[m] else []) + (["val_ec"] if mbs[m].val_idx.shape[0] else [])
                + (["val_atm"] if val_months[m].size else []) for m in range(M)]
    row0 = evaluate(list(range(M)), 0, np.full(M, np.nan), np.full(M, np.nan), 0.0)
    logs = [[row0[m]] for m in range(M)]
    refs = [lg[0] for lg in logs]
    with torch.no_grad():
        for m in range(M):
            if cfg.kendall_init == "initial_losses" and is_atm[m]:
                # s = log σ² starts at the log of each term's loss before training: Eq. 14's
                # equilibrium (∂/∂s = 0 ⇔ σ² = L), so both terms weigh as much from the first
                # step instead of waiting for Adam to walk s there at ~lr per step
                l_ec0 = mbs[m].ec_train_loss(fwd(m))
                log_var[m] = torch.tensor([np.log(max(l_ec0, 1e-12)), np.log(max(refs[m]["atm_all"], 1e-12))],
                                          dtype=log_var.dtype)
            if is_atm[m]:
                mbs[m].init_table(fwd(m), np.random.default_rng([cfg.seed, members[m][1], 19]))

    def snapshot(m: int) -> dict[str, Any]:
        return {"state": net.state_dict(m, kept), "log_var": log_var[m].detach().clone().cpu(),
                "head": {"weight": head_w[m].detach()[None, :].clone().cpu(), "bias": head_b[m].detach()[None].clone().cpu()}}

    # the start competes too: a member whose every epoch scores no better than its starting
    # weights never learned anything, and is refused below rather than written
    best = [snapshot(m) for m in range(M)]
    best_score = [selection_score(cfg, variants[m], row0[m], refs[m]) for m in range(M)]
    best_score = [b if np.isfinite(b) else np.inf for b in best_score]  # no validation data: the start has no score
    best_epoch, stopped = [0] * M, [None] * M
    seconds = np.zeros(M)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        ec_sum, atm_sum = np.zeros(M), np.zeros(M)
        for k in range(cfg.steps_per_epoch):
            lr_now = float(learning_rate(cfg, (epoch - 1) * cfg.steps_per_epoch + k))
            l_ec, l_atm = grp.step(lr_now)
            ec_sum, atm_sum = ec_sum + np.nan_to_num(l_ec), atm_sum + np.nan_to_num(l_atm)
        dt = time.perf_counter() - t
        ms = [int(m) for m in np.flatnonzero(active)]
        rows = evaluate(ms, epoch, ec_sum / cfg.steps_per_epoch,
                        np.where(is_atm, atm_sum / cfg.steps_per_epoch, np.nan), dt)
        for m in ms:
            seconds[m] += dt / len(ms)
            row = rows[m]
            logs[m].append(row)
            bad = [k for k in expected[m] if not np.isfinite(row[k])]
            if bad:
                raise FluxscaleError(
                    f"{names[m]}: the loss went non-finite at epoch {epoch} ({', '.join(f'{k}={row[k]}' for k in bad)}); "
                    f"no checkpoint written. Check the inputs: `fluxscale validate {root}` (towers' NEE and drivers)")
            score = selection_score(cfg, variants[m], row, refs[m])
            if score < best_score[m]:
                best_score[m], best_epoch[m], best[m] = score, epoch, snapshot(m)
            if cfg.decoupling_max is not None and row["decoupling"] > cfg.decoupling_max:
                stopped[m] = f"decoupling {row['decoupling']:.3f} > {cfg.decoupling_max} at epoch {epoch}"
                active[m] = False  # grp.active: frozen, masked out of every later update
            if on_epoch is not None:
                on_epoch(names[m], epoch)
        if not active.any():
            break

    stuck = [m for m in range(M) if best_epoch[m] == 0]
    if stuck:
        m = stuck[0]
        after = min(selection_score(cfg, variants[m], r, refs[m]) for r in logs[m][1:])
        raise FluxscaleError(
            f"{names[m]}: no epoch of 1-{logs[m][-1]['epoch']} improved on the starting weights (selection score "
            f"{best_score[m]:.4g} at epoch 0, at best {after:.4g} after it); "
            f"no checkpoint written{'' if len(stuck) == 1 else f' (nor for {len(stuck) - 1} other member(s) of its group)'}. "
            f"Train longer or faster (epochs, steps_per_epoch, learning_rate) or check the inputs (`fluxscale validate {root}`)")

    results = []
    for m, ((variant, fold), mb, name) in enumerate(zip(members, mbs, names)):
        tower_bias_mean = None
        if has_head[m]:
            hw, hb = best[m]["head"]["weight"][0].to(device), best[m]["head"]["bias"][0].to(device)
            mean, std = best[m]["state"]["x_mean"].to(device), best[m]["state"]["x_std"].to(device)
            tower_bias_mean = mb.tower_bias_mean(lambda x: ((x - mean) / std) @ hw + hb)
        metrics = {"member": name, "variant": variant, "fold": fold, "best_epoch": best_epoch[m],
                   "best": logs[m][best_epoch[m]], "stopped": stopped[m], "val_years": mb.val_years,
                   "systems": data.systems, "regions": data.regions, "n_train_obs": int(mb.train_idx.shape[0]),
                   "n_val_obs": int(mb.val_idx.shape[0]), "tower_bias_mean": tower_bias_mean,
                   "seconds": float(seconds[m]), "group": names, "group_seconds": time.perf_counter() - t_start,
                   "device": str(device), "threads": torch.get_num_threads()}
        result = {"metrics": metrics, "log": logs[m]}
        if write:
            out = models_dir(root, cfg.model_set)
            (out / "logs").mkdir(parents=True, exist_ok=True)
            ckpt = {"state_dict": best[m]["state"], "log_var": best[m]["log_var"],
                    **({"tower_bias": best[m]["head"]} if has_head[m] else {}),
                    "meta": json.dumps({"config": cfg.to_dict(), "metrics": metrics, "resume_key": resume_key,
                                        "drivers": list(DRIVER_NAMES), "units": "gC m-2 d-1"}, default=float)}
            tmp = out / f".{name}.pt.{os.getpid()}"
            torch.save(ckpt, tmp)
            os.replace(tmp, out / f"{name}.pt")
            pd.DataFrame(logs[m]).to_csv(out / "logs" / f"{name}.csv", index=False)
        else:
            result["state_dict"] = best[m]["state"]
        results.append(result)
    return results


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Adam's learning rate at optimiser step ``step`` (0-based): ``learning_rate`` throughout
    (``lr_schedule="constant"``, Table B1) or a cosine decay from it to ``learning_rate ×
    lr_final`` at the last step (``"cosine"``)."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    total = max(cfg.epochs * cfg.steps_per_epoch - 1, 1)
    frac = min(step / total, 1.0)
    return cfg.learning_rate * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + np.cos(np.pi * frac)))


def selection_score(cfg: TrainConfig, variant: str, row: dict[str, float], ref: dict[str, float]) -> float:
    """The best-epoch score of an epoch's log ``row`` (``ref``: epoch 0's), lower is better.

    EC: the validation towers' MSE. EC-ATM (``cfg.selection``): ``"relative_sum"``,
    ``val_ec/val_ec⁰ + val_atm/val_atm⁰``; ``"val_atm"``, the held-out years' ATM loss
    alone (the validation towers carry the towers' bias that the ATM term exists to
    correct, so their error may rightly rise). Falls back to the training EC loss where a
    validation loss is missing."""
    if variant == "ec" or not np.isfinite(row["val_atm"]):
        score = row["val_ec"]
    elif cfg.selection == "val_atm":
        score = row["val_atm"]
    else:
        score = row["val_ec"] / ref["val_ec"] + row["val_atm"] / ref["val_atm"]
    return score if np.isfinite(score) else row["train_ec"]


def _group_task(root: str, cfg: TrainConfig, members: list[tuple[str, int]], data: TrainingData | None = None,
                resume_key: str | None = None, on_epoch=None) -> list[dict[str, Any]]:
    """One group of members (:func:`train_group`): on a Dask worker it reads the stores itself
    (``data`` None); writes the checkpoints; returns only the small metrics and logs. On a
    worker each finished member-epoch is logged as an event on the topic
    :data:`PROGRESS_TOPIC` (the client's progress counts epochs, not groups).

    The reads compute here, on Dask's synchronous scheduler: on a worker, ``.values`` of a
    Dask-backed store otherwise goes back through the cluster, and the task seceded to
    wait for its own reads behind the other tasks (on the small twin, members took 5-10x
    longer on a 2-worker cluster than in a process, and more as the run went on).
    """
    import dask

    if on_epoch is None:
        try:
            from distributed import get_worker

            worker = get_worker()
            on_epoch = lambda name, epoch: worker.log_event(PROGRESS_TOPIC, {"member": name, "epoch": epoch})  # noqa: E731
        except (ImportError, ValueError):
            pass
    with dask.config.set(scheduler="synchronous"):
        res = train_group(root, cfg, members, data=data, resume_key=resume_key, on_epoch=on_epoch)
    return [{"metrics": r["metrics"], "log": r["log"]} for r in res]


PROGRESS_TOPIC = "fluxscale-train-epoch"
"""Dask event topic of the training groups' per-member epochs (``{"member", "epoch"}``)."""


def plan_groups(members: list[tuple[str, int]], cfg: TrainConfig, slots: int,
                max_folds: int | None = None) -> list[list[tuple[str, int]]]:
    """Split ``(variant, fold)`` ``members`` into training groups.

    ``cfg.group_size`` > 0: consecutive runs of that many members (fold by fold).
    0: the folds split as evenly as possible into ``min(folds, slots)`` groups (``slots``:
    the cluster's worker threads), every variant of a fold in its fold's group, and no
    group with more than ``max_folds`` folds (memory)."""
    folds = list(dict.fromkeys(f for _, f in members))
    order = sorted(members, key=lambda m: (folds.index(m[1]), m[0]))
    if cfg.group_size:
        return [order[i:i + cfg.group_size] for i in range(0, len(order), cfg.group_size)]
    n = max(1, min(len(folds), slots))
    if max_folds:
        n = max(n, -(-len(folds) // max_folds))
    parts = [list(p) for p in np.array_split(np.asarray(folds), n) if len(p)]
    return [[m for m in order if m[1] in p] for p in parts]


def fold_bytes(root: str | Path, cfg: TrainConfig) -> float:
    """Rough memory of one fold in a training group, bytes: its sampling pool's drivers
    (:func:`fluxscale.learn.atm_sample.load_pool`: 8 B × days × cells daily, 16 B × 366 × cells
    seasonal), its held-out years' validation drivers and the step's buffers."""
    drivers = open_store(store_path(root, "drivers"), "drivers")
    days = drivers.sizes["time"]
    cells = cfg.atm_pool_cells * 18
    return 8.0 * days * cells + 16.0 * 366 * cells + 40.0 * 366 * cfg.holdout_years * cfg.atm_val_cells * 18 + 50e6


def _kept_member(path: Path, resume_key: str | None) -> dict | None:
    """The metrics of the checkpoint at ``path`` if it was written under ``resume_key``."""
    if resume_key is None or not path.exists():
        return None
    try:
        _, meta = load_member(path)
    except Exception:  # noqa: BLE001  (unreadable: train it again)
        return None
    return meta["metrics"] if meta.get("resume_key") == resume_key else None


FLAG_ATM_RATIO = 0.8
"""An EC-ATM member whose held-out ATM loss is at least this fraction of its fold's EC member's
did not take the atmospheric constraint up (flagged)."""
FLAG_GLOBAL_RATIO = 0.5
"""… or whose monitor total is at least this fraction as far from the inversions as EC's."""


def flag_members(members: dict[str, dict]) -> dict[str, str]:
    """EC-ATM members that stayed at EC's level, by their fold's EC member: ``{name: why}``.

    A member is flagged when its best epoch's held-out ATM loss is ≥ ``FLAG_ATM_RATIO`` × EC's,
    or when its global total over the monitor cells and year (``global_monitor``, PgC yr-1)
    is ≥ ``FLAG_GLOBAL_RATIO`` × as far from the inversions' as EC's. Members without an EC
    partner are not judged."""
    out = {}
    for name, m in members.items():
        if m.get("variant") != "ecatm":
            continue
        ec = members.get(member_name("ec", m["fold"]))
        if ec is None:
            continue
        b, e = m["best"], ec["best"]
        why = []
        if np.isfinite(b.get("val_atm", np.nan)) and np.isfinite(e.get("val_atm", np.nan)) \
                and b["val_atm"] >= FLAG_ATM_RATIO * e["val_atm"]:
            why.append(f"held-out ATM loss {b['val_atm']:.4f} is {b['val_atm'] / e['val_atm']:.2f} of EC's "
                       f"{e['val_atm']:.4f} (best epoch {m['best_epoch']})")
        if "global_monitor" in b and "global_monitor" in e:
            gap, gap_ec = abs(b["global_monitor"] - b["global_inversions"]), abs(e["global_monitor"] - e["global_inversions"])
            if gap_ec > 0 and gap >= FLAG_GLOBAL_RATIO * gap_ec:
                why.append(f"its total over the monitor year is {b['global_monitor']:.2f} PgC/yr against the "
                           f"inversions' {b['global_inversions']:.2f} (EC: {e['global_monitor']:.2f})")
        if why:
            out[name] = "; ".join(why) + ": the atmospheric constraint did not take hold"
    return out


def train_ensemble(root: str | Path, cfg: TrainConfig, *, client=None, show_progress: bool = True,
                   say=lambda m: None, resume_key: str | None = None) -> dict[str, Any]:
    """Train every ``(variant, fold)`` member of ``cfg``; returns ``members.json``'s content.

    ``resume_key`` (``fluxscale run`` passes its stage key: a hash of this config and of the
    inputs) is written into each checkpoint; a member whose checkpoint already carries the
    same key is kept, not trained again, so an interrupted run resumes with the rest.

    The members train in groups (:func:`plan_groups`, ``cfg.group_size``), each group one
    stacked model (:func:`train_group`). With a ``distributed.Client`` each group is one
    task (``client.submit``, retried ``cfg.retries`` times if its worker is lost; the
    retry writes the same weights), by default one group per worker thread; on workers
    that declare a ``GPU`` resource the tasks ask for one (one group per GPU) and train
    with CUDA when torch sees it. Without a client the groups run here, sharing one read
    of the data. The progress bar counts member-epochs (Dask events from the workers).
    """
    from fluxscale.parallel import progress_bar

    root = Path(root)
    members = [(v, f) for f in cfg.folds for v in cfg.variants]
    out = models_dir(root, cfg.model_set)
    out.mkdir(parents=True, exist_ok=True)
    (out / "members.json").unlink(missing_ok=True)  # incomplete until rewritten below
    results: dict[str, dict] = {}
    t0 = time.perf_counter()

    def report(res: dict) -> None:
        m = res["metrics"]
        b = m["best"]
        results[m["member"]] = res
        glob = (f"global {b['global_monitor']:.2f} (inversions {b['global_inversions']:.2f}) PgC/yr"
                if "global_monitor" in b else f"atm_all {b['atm_all']:.4f}")
        say(f"train: {m['member']:<12} best epoch {m['best_epoch']:>3}  val_ec {b['val_ec']:.3f}  "
            f"val_atm {b['val_atm']:.4f}  {glob}  decoupling {b['decoupling']:.3f}  "
            f"({m['seconds']:.1f} s, {m['device']}){'  stopped: ' + m['stopped'] if m['stopped'] else ''}")

    kept = {member_name(v, f): m for v, f in members
            if (m := _kept_member(out / f"{member_name(v, f)}.pt", resume_key)) is not None}
    if kept:
        say(f"train: keeping {len(kept)} members already trained with this config and inputs: {', '.join(kept)}")
        for name, m in kept.items():
            results[name] = {"metrics": m, "log": []}
    members = [(v, f) for v, f in members if member_name(v, f) not in kept]
    names = [member_name(v, f) for v, f in members]
    done_epochs = dict.fromkeys(names, 0)
    with progress_bar(show_progress) as progress:
        task = progress.add_task("train: member-epochs", total=len(members) * cfg.epochs)

        def on_epoch(name: str, epoch: int) -> None:
            # a retried group reports its epochs again: count each member's furthest epoch
            if epoch > done_epochs.get(name, cfg.epochs):
                done_epochs[name] = epoch
                progress.update(task, completed=sum(done_epochs.values()))

        def finished(group_results: list[dict]) -> None:
            for res in group_results:
                report(res)
                on_epoch(res["metrics"]["member"], cfg.epochs)  # a member stopped early is done too

        if client is not None:
            from distributed import as_completed

            workers = client.scheduler_info()["workers"].values()
            gpu = any("GPU" in (w.get("resources") or {}) for w in workers)
            slots = sum(int(w.get("nthreads", 1)) for w in workers) if not gpu else \
                sum(int((w.get("resources") or {}).get("GPU", 0)) for w in workers)
            mem = min((float(w.get("memory_limit") or 0) for w in workers), default=0.0)
            max_folds = max(1, int(0.5 * mem // fold_bytes(root, cfg))) if mem else None
            groups = plan_groups(members, cfg, max(slots, 1), max_folds)
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: on_epoch(event[1]["member"], event[1]["epoch"]))
            try:
                futures = [client.submit(_group_task, str(root), cfg, g, None, resume_key,
                                         key=f"train-{member_name(*g[0])}-{len(g)}-{time.time_ns()}",
                                         pure=False, retries=cfg.retries, resources={"GPU": 1} if gpu else None)
                           for g in groups]
                if groups:
                    say(f"train: {len(members)} members in {len(groups)} group(s) of "
                        f"{', '.join(str(len(g)) for g in groups)} on {slots} worker thread(s)")
                for fut in as_completed(futures):
                    finished(fut.result())
            finally:
                client.unsubscribe_topic(PROGRESS_TOPIC)
        elif members:
            data = load_training_data(root, cfg)
            for g in plan_groups(members, cfg, 1):
                finished(_group_task(root, cfg, g, data, resume_key, on_epoch=on_epoch))
    summary = {"config": cfg.to_dict(), "members": {k: r["metrics"] for k, r in sorted(results.items())},
               "seconds": time.perf_counter() - t0}
    summary["flagged"] = flag_members(summary["members"])
    for name, why in summary["flagged"].items():
        say(f"train: [yellow]warning[/] {name}: {why}")
    (out / "members.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary

