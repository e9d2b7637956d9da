"""One member's training state and its losses (paper §3.2–3.6, Eq. 4–14): the tensors of
one ``(variant, fold)`` member on its device and the terms its steps and validation compute
(:class:`Member`). A group steps several at once (:class:`fluxscale.learn.group.Group`);
:meth:`Member.step` is the same step by plain autograd on one
:class:`~fluxscale.learn.model.NEENet`, the reference the tests compare the group with.

A member trains on the towers of the other nine folds and validates on fold ``fold``. EC
minimises the tower MSE (Eq. 5). EC-ATM adds, each step, one whole training year of the
atmospheric term: the network runs on every contributing pixel of every region for every
day of the year, monthly means per pixel (Eq. 6), the bridges give regional monthly NEE
(Eq. 7), compared with the chosen inversions (Eq. 8–11); the two terms are combined with
learned log-variances (Eq. 12–14, :mod:`fluxscale.learn.losses`). Two random years per fold
are held out of the ATM term and validate it.

**The atmospheric term** (``atm_term``): ``"sampled"`` (the default) estimates each
region's integral from a fresh random sample of its land cells and days every step
(:mod:`fluxscale.learn.atm_sample`, unbiased for the full integral); ``"bridges"`` is the paper's
Eq. 6–7 on the bridge pixels. ``atm_annual_weight`` adds the same terms on annual means.

**The towers' error** (``tower_bias = "linear"``, EC-ATM only): the EC term compares the
towers with the network plus a linear function of the standardised drivers, so the towers'
systematic error (e.g. missed night-time respiration) is not forced into the NEE and the
atmospheric term sets the regional levels. ``val_ec`` validates the term as trained
(network + head), ``val_ec_nee`` the network alone.

**Nothing silent.** Non-finite tower NEE or drivers on observed days are refused before
training (:class:`~fluxscale.errors.FluxscaleError` naming the first).

**Bridge validity (§3.5).** Every epoch, the fixed monitor cells and year of
:class:`~fluxscale.learn.data.TrainingData` estimate the regional integral of the model's
own output; its relative difference from the bridge estimate (area-weighted over regions)
is ``decoupling`` (:meth:`Member.monitor`). The full integral over every land cell and month
against the bridges is computed once, by ``fluxscale evaluate`` from the cube's monthly
means (the ``bridge`` rows of its table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fluxscale.config import TrainConfig
from fluxscale.dataset.drivers import DRIVER_NAMES
from fluxscale.errors import FluxscaleError
from fluxscale.learn.data import TrainingData

__all__ = ["Member", "G_PER_PG"]

G_PER_PG = 1e15


class Member:
    """The tensors and closures of one member's training (kept on ``device``)."""

    def __init__(self, data: TrainingData, cfg: TrainConfig, fold: int, device, share: "Member | None" = None,
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
        """One optimiser step of one member by plain autograd on an :class:`~fluxscale.learn.model.NEENet` and a
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

